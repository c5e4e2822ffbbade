"""The audit log: every automatic decision and action of the recovery layer, with its reason,
as a row in SQLite and as an event handed to sinks (the daemon puts them on the bus as
`evt.daemon.<kind>`; the simulation keeps them in memory)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ionpilot.bus.clock import Clock

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    wall_ns INTEGER NOT NULL,
    t_s REAL NOT NULL,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    action TEXT NOT NULL,
    reason TEXT NOT NULL,
    severity TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_time ON audit (wall_ns);
"""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One decision: what (`kind`: trip, step, retry, escalate, resume, ack, ...), on what
    (`action`), and why."""

    t_s: float
    wall_ns: int
    source: str  # recovery, health, operator
    kind: str
    action: str
    reason: str
    severity: str = "OK"  # OK, MINOR, MAJOR, ALERT
    data: dict[str, object] = field(default_factory=dict)


AuditSink = Callable[[AuditEntry], None]


class AuditLog:
    """Append-only log in one SQLite file (":memory:" for simulations); thread-safe."""

    def __init__(
        self,
        clock: Clock,
        path: str | Path = ":memory:",
        sinks: list[AuditSink] | None = None,
        keep: int = 1000,
    ) -> None:
        self.clock = clock
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()
        self.sinks: list[AuditSink] = list(sinks or [])
        self.recent: list[AuditEntry] = []
        self._keep = keep
        self.count = 0

    def record(
        self,
        kind: str,
        action: str,
        reason: str,
        *,
        source: str = "recovery",
        severity: str = "OK",
        **data: object,
    ) -> AuditEntry:
        entry = AuditEntry(
            self.clock.now(), self.clock.wall_ns(), source, kind, action, reason, severity, data
        )
        with self._lock:
            self._db.execute(
                "INSERT INTO audit (wall_ns, t_s, source, kind, action, reason, severity, data) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    entry.wall_ns,
                    entry.t_s,
                    source,
                    kind,
                    action,
                    reason,
                    severity,
                    json.dumps(data, default=str, sort_keys=True),
                ),
            )
            self.count += 1
            self._db.commit()  # readable by other processes at once (a few per fault)
            self.recent.append(entry)
            if len(self.recent) > 2 * self._keep:
                del self.recent[: -self._keep]
        for sink in self.sinks:
            sink(entry)
        return entry

    def rows(self, kind: str | None = None) -> list[tuple[object, ...]]:
        """(t_s, source, kind, action, reason, severity, data) rows, oldest first."""
        with self._lock:
            self._db.commit()
            query = "SELECT t_s, source, kind, action, reason, severity, data FROM audit"
            if kind is None:
                return list(self._db.execute(query + " ORDER BY id"))
            return list(self._db.execute(query + " WHERE kind = ? ORDER BY id", (kind,)))

    def close(self) -> None:
        with self._lock:
            self._db.commit()
            self._db.close()
