"""The audit log: every automatic decision and action of the recovery layer, with its reason,
as a row in SQLite and as an event handed to sinks (the daemon puts them on the bus as
`evt.daemon.<kind>`; the simulation keeps them in memory).

Bounded for weeks of unattended running: the file keeps the newest `max_rows` rows (older ones
are deleted in batches, and the freed pages are reused), and a file SQLite cannot open is moved
aside (`audit.sqlite.corrupt-<time>`) so a damaged log never stops the daemon from starting."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ionpilot.core.clock import Clock

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


def _open(path: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False)
    try:
        db.executescript(SCHEMA)
        db.execute("SELECT COUNT(*) FROM audit").fetchone()
    except sqlite3.DatabaseError:
        db.close()
        raise
    return db


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """Not an SQLite database, or a malformed one (not: locked, busy, read-only)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is None:
        return not isinstance(exc, sqlite3.OperationalError)
    return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


class AuditLog:
    """Append-only log in one SQLite file (":memory:" for simulations), keeping the newest
    `max_rows` rows; thread-safe."""

    def __init__(
        self,
        clock: Clock,
        path: str | Path = ":memory:",
        sinks: list[AuditSink] | None = None,
        keep: int = 1000,
        *,
        max_rows: int = 200_000,
        prune_every: int = 1000,
    ) -> None:
        self.clock = clock
        self.path = str(path)
        self.open_error: str | None = None  # why an unreadable file was set aside, if it was
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = _open(self.path)
        except sqlite3.DatabaseError as exc:
            if self.path == ":memory:" or not _damaged(exc):
                raise  # e.g. locked by another process: not ours to move aside
            aside = f"{self.path}.corrupt-{time.time_ns()}"
            os.replace(self.path, aside)
            for suffix in ("-journal", "-wal", "-shm"):  # they belong to the damaged file
                with contextlib.suppress(FileNotFoundError):
                    os.replace(self.path + suffix, aside + suffix)
            self.open_error = f"{self.path} unreadable ({exc}); moved to {aside}"
            self._db = _open(self.path)
        self._lock = threading.Lock()
        self.sinks: list[AuditSink] = list(sinks or [])
        self.recent: list[AuditEntry] = []
        self._keep = keep
        self.max_rows = max(1, max_rows)
        self._prune_every = max(1, prune_every)
        self.count = 0
        self.pruned = 0  # rows deleted to keep the file bounded
        with self._lock:  # also at open: a daemon that restarts often may never reach a batch
            self._prune()
            self._db.commit()
        if self.open_error is not None:
            self.record("audit_restore_failed", "audit_log", self.open_error, severity="MAJOR")

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
            if self.count % self._prune_every == 0:
                self._prune()
            self._db.commit()  # readable by other processes at once (a few per fault)
            self.recent.append(entry)
            if len(self.recent) > 2 * self._keep:
                del self.recent[: -self._keep]
        for sink in self.sinks:
            sink(entry)
        return entry

    def _prune(self) -> None:
        """Delete all but the newest `max_rows` rows (called with the lock held)."""
        cursor = self._db.execute(
            "DELETE FROM audit WHERE id <= (SELECT MAX(id) FROM audit) - ?", (self.max_rows,)
        )
        self.pruned += max(0, cursor.rowcount)

    def row_count(self) -> int:
        with self._lock:
            (count,) = self._db.execute("SELECT COUNT(*) FROM audit").fetchone()
            return int(count)

    def rows(self, kind: str | None = None) -> list[tuple[object, ...]]:
        """(t_s, source, kind, action, reason, severity, data) rows, oldest first."""
        with self._lock:
            self._db.commit()
            query = "SELECT t_s, source, kind, action, reason, severity, data FROM audit"
            if kind is None:
                return list(self._db.execute(query + " ORDER BY id"))
            return list(self._db.execute(query + " WHERE kind = ? ORDER BY id", (kind,)))

    def latest(self, limit: int) -> list[dict[str, object]]:
        """The newest `limit` entries, oldest first, as plain maps (for `get name=audit` on the
        bus: a console opened after a recovery still shows it)."""
        with self._lock:
            rows = list(
                self._db.execute(
                    "SELECT wall_ns, source, kind, action, reason, severity FROM audit "
                    "ORDER BY id DESC LIMIT ?",
                    (max(0, limit),),
                )
            )
        keys = ("wall_ns", "source", "kind", "action", "reason", "severity")
        return [dict(zip(keys, row, strict=True)) for row in reversed(rows)]

    def close(self) -> None:
        with self._lock:
            self._db.commit()
            self._db.close()
