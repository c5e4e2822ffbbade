"""The record on disk: every bus message in one SQLite file, in tiers like an archiver's.

One writer (the recorder's intake thread) appends in batched transactions; readers (history
requests) use their own connections, which WAL lets run beside the writer. Each message is one
row of its topic's series (`field` ""): the number, the text, or the record/event as JSON, with
its sequence number. A record's numeric fields are series of their own (`servo.clock.update`
field `error_hz`), so they plot and aggregate like any reading.

Tiers: `raw` (every row, `raw_retention`), `agg_1min` and `agg_1h` (mean, min, max, count of
the numbers; the last text for text series), rolled up from the tier below once a minute is
`ROLLUP_LAG_S` old, and thinned by their own retentions. Loss is data too: a jump in a stream's
sequence numbers is a row in `gaps` (the numbers missed and the time between), and so is the
recorder's own absence, from its last commit before a stop or crash to its next start. A
message already stored (same series, time and number) is never stored twice.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ionpilot.bus.codec import STATUSES, Event, Heartbeat, Message, Telemetry
from ionpilot.core.clock import Clock, SystemClock
from ionpilot.core.units import unit_of_field
from ionpilot.recorder.settings import RecorderSettings

NS = 1_000_000_000
MINUTE_NS = 60 * NS
HOUR_NS = 3600 * NS
ROLLUP_LAG_S = 120.0  # a minute is aggregated once it is this old (late messages still count)
ROLLUP_CHUNK_NS = 6 * HOUR_NS  # at most this much raw time per rollup statement
MAX_SERIES = 200_000  # beyond this, new series are refused and counted (a runaway publisher)
STATUS_CODE = {name: i for i, name in enumerate(STATUSES)}

SCHEMA = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    topic TEXT NOT NULL,
    field TEXT NOT NULL,
    kind TEXT NOT NULL,      -- number, text, record, event, heartbeat
    unit TEXT NOT NULL,
    src TEXT NOT NULL,
    UNIQUE (topic, field)
);
CREATE TABLE IF NOT EXISTS raw (
    series INTEGER NOT NULL,
    t_ns INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    value REAL,
    text TEXT,
    status INTEGER NOT NULL,
    PRIMARY KEY (series, t_ns, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agg_1min (
    series INTEGER NOT NULL, t_ns INTEGER NOT NULL,
    mean REAL, min REAL, max REAL, count INTEGER NOT NULL, text TEXT,
    PRIMARY KEY (series, t_ns)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agg_1h (
    series INTEGER NOT NULL, t_ns INTEGER NOT NULL,
    mean REAL, min REAL, max REAL, count INTEGER NOT NULL, text TEXT,
    PRIMARY KEY (series, t_ns)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS gaps (
    id INTEGER PRIMARY KEY,
    topic TEXT,              -- NULL: the recorder itself was away (every topic)
    src TEXT,
    first_seq INTEGER,       -- the sequence numbers missed, first..last
    last_seq INTEGER,
    start_ns INTEGER NOT NULL,
    end_ns INTEGER NOT NULL,
    reason TEXT NOT NULL     -- lost (on the bus), recorder_down
);
CREATE INDEX IF NOT EXISTS gaps_time ON gaps (end_ns);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

TIERS = ("raw", "agg_1min", "agg_1h")
TIER_STEP_NS = {"agg_1min": MINUTE_NS, "agg_1h": HOUR_NS}


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection in WAL mode (readers never block the writer, nor it them)."""
    if readonly:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
    db.execute("PRAGMA busy_timeout=5000")
    return db


@dataclass(slots=True)
class Stream:
    """Where one topic's sequence stands: its publisher, last number and time."""

    src: str
    seq: int
    t_ns: int
    fresh: bool  # taken over from the file at start: the next jump is the recorder's absence


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=repr, allow_nan=True)


class Store:
    """The writer side: series, batched appends, gap accounting, rollups and retention."""

    def __init__(
        self,
        path: str | Path,
        settings: RecorderSettings | None = None,
        clock: Clock | None = None,
        *,
        max_streams: int = 100_000,
    ) -> None:
        self.path = Path(path)
        self.settings = settings or RecorderSettings()
        self._clock = clock or SystemClock()
        self.db = connect(self.path)
        self.db.executescript(SCHEMA)
        self._series: dict[tuple[str, str], int] = {}
        self._kinds: dict[int, str] = {}
        for sid, topic, fld, kind in self.db.execute("SELECT id, topic, field, kind FROM series"):
            self._series[(topic, fld)] = sid
            self._kinds[sid] = kind
        self._streams: OrderedDict[str, Stream] = OrderedDict()
        self._max_streams = max_streams
        self._load_streams()
        self._rows: list[tuple[int, int, int, float | None, str | None, int]] = []
        self._gaps: list[tuple[str | None, str | None, int | None, int | None, int, int, str]] = []
        self.rows_written = 0
        self.messages = 0
        self.duplicates = 0
        self.refused_series = 0
        self.gaps_recorded = 0
        self.missed = 0  # sequence numbers missed, all streams
        self.restarts = 0  # publishers seen counting from 1 again
        self._note_absence()

    # ------------------------------------------------------------------------- start-up

    def _meta(self, key: str) -> int | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def _set_meta(self, key: str, value: int) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def _load_streams(self) -> None:
        """The last number of every topic's stream, so a restart neither doubles nor misses."""
        rows = self.db.execute(
            "SELECT s.topic, s.src, r.seq, r.t_ns FROM series s, raw r "
            "WHERE s.field = '' AND r.series = s.id AND r.t_ns = "
            "(SELECT max(t_ns) FROM raw WHERE series = s.id) ORDER BY r.t_ns"
        ).fetchall()
        for topic, src, seq, t_ns in rows:
            self._streams[topic] = Stream(src, int(seq), int(t_ns), fresh=True)

    def _note_absence(self) -> None:
        """A gap for the time between the last commit of the previous run and this start."""
        last = self._meta("alive_ns")
        now = self._clock.wall_ns()
        if last is not None and now > last:
            self.db.execute("BEGIN")
            self._gaps.append((None, None, None, None, last, now, "recorder_down"))
            self._write_gaps()
            self._set_meta("alive_ns", now)
            self.db.execute("COMMIT")

    # ------------------------------------------------------------------------------ intake

    def series_id(self, topic: str, field: str, kind: str, unit: str, src: str) -> int | None:
        key = (topic, field)
        sid = self._series.get(key)
        if sid is not None:
            return sid
        if len(self._series) >= MAX_SERIES:
            self.refused_series += 1
            return None
        cur = self.db.execute(
            "INSERT INTO series (topic, field, kind, unit, src) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (topic, field) DO UPDATE SET unit = excluded.unit RETURNING id",
            (topic, field, kind, unit, src),
        )
        sid = int(cur.fetchone()[0])
        self._series[key] = sid
        self._kinds[sid] = kind
        return sid

    def _sequence(self, msg: Message) -> bool:
        """Account `msg`'s number in its stream; False for a message already stored."""
        topic = msg.topic
        streams = self._streams
        last = streams.get(topic)
        if last is None:
            if len(streams) >= self._max_streams:
                streams.popitem(last=False)
            streams[topic] = Stream(msg.src, msg.seq, msg.t, fresh=False)
            return True
        streams.move_to_end(topic)
        if msg.src == last.src and msg.seq <= last.seq:
            if msg.t <= last.t_ns:  # the same message again (or an older one): never twice
                self.duplicates += 1
                return False
            self.restarts += 1  # the publisher counts from 1 again
        elif msg.src == last.src and msg.seq > last.seq + 1:
            reason = "recorder_down" if last.fresh else "lost"
            first, end = last.seq + 1, msg.seq - 1
            self._gaps.append((topic, msg.src, first, end, last.t_ns, msg.t, reason))
            self.missed += end - first + 1
        elif msg.src != last.src:
            self.restarts += 1
        last.src, last.seq, last.t_ns, last.fresh = msg.src, msg.seq, msg.t, False
        return True

    def add(self, msg: Message) -> int:
        """Queue the rows of one message for the next commit; how many rows (0: a duplicate)."""
        if not self._sequence(msg):
            return 0
        self.messages += 1
        rows = self._rows
        status = STATUS_CODE.get(getattr(msg, "status", "OK"), 0)
        kind_of = type(msg)
        if kind_of is Heartbeat:
            assert isinstance(msg, Heartbeat)
            sid = self.series_id(msg.topic, "", "heartbeat", "s", msg.src)
            if sid is None:
                return 0
            rows.append((sid, msg.t, msg.seq, msg.period, None, status))
            return 1
        if kind_of is Event:
            assert isinstance(msg, Event)
            sid = self.series_id(msg.topic, "", "event", "", msg.src)
            if sid is None:
                return 0
            doc = {"kind": msg.kind, "message": msg.message, "data": msg.data}
            rows.append((sid, msg.t, msg.seq, None, _json(doc), STATUS_CODE.get(msg.severity, 0)))
            return 1
        assert isinstance(msg, Telemetry)
        value = msg.value
        kind = type(value)
        if kind is float or kind is int or kind is bool:
            sid = self.series_id(msg.topic, "", "number", msg.unit, msg.src)
            if sid is None:
                return 0
            number = float(value)
            rows.append(
                (sid, msg.t, msg.seq, number if math.isfinite(number) else None, None, status)
            )
            return 1
        if kind is str:
            sid = self.series_id(msg.topic, "", "text", msg.unit, msg.src)
            if sid is None:
                return 0
            if self._kinds[sid] == "record":  # a topic of texts and records (the lock state)
                self._kinds[sid] = "text"
                self.db.execute("UPDATE series SET kind = 'text' WHERE id = ?", (sid,))
            rows.append((sid, msg.t, msg.seq, None, value, status))
            return 1
        sid = self.series_id(msg.topic, "", "record", msg.unit, msg.src)
        if sid is None:
            return 0
        rows.append((sid, msg.t, msg.seq, None, _json(value), status))
        count = 1
        if kind is dict:
            for name, item in value.items():
                if type(item) in (float, int) and isinstance(name, str):
                    fid = self.series_id(msg.topic, name, "number", unit_of_field(name), msg.src)
                    if fid is not None:
                        number = float(item)
                        rows.append(
                            (
                                fid,
                                msg.t,
                                msg.seq,
                                number if math.isfinite(number) else None,
                                None,
                                status,
                            )
                        )
                        count += 1
        return count

    @property
    def pending(self) -> int:
        return len(self._rows)

    def commit(self) -> int:
        """Write the queued rows and gaps in one transaction; the rows written."""
        rows, self._rows = self._rows, []
        db = self.db
        db.execute("BEGIN")
        try:
            if rows:
                db.executemany("INSERT OR IGNORE INTO raw VALUES (?, ?, ?, ?, ?, ?)", rows)
            self._write_gaps()
            self._set_meta("alive_ns", self._clock.wall_ns())
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self.rows_written += len(rows)
        return len(rows)

    def _write_gaps(self) -> None:
        gaps, self._gaps = self._gaps, []
        if gaps:
            self.db.executemany(
                "INSERT INTO gaps (topic, src, first_seq, last_seq, start_ns, end_ns, reason) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                gaps,
            )
            self.gaps_recorded += len(gaps)

    # ---------------------------------------------------------------------------- tiers

    def rolled_until(self, tier: str) -> int | None:
        """Times before this are in `tier` (agg_1min, agg_1h); None before the first rollup."""
        return self._meta(f"rolled_{tier}")

    def rollup(self) -> int:
        """Aggregate every complete minute (and hour) not yet aggregated; rows written."""
        now = self._clock.wall_ns()
        target = (now - int(ROLLUP_LAG_S * NS)) // MINUTE_NS * MINUTE_NS
        written = 0
        start = self.rolled_until("agg_1min")
        if start is None:
            first = self.db.execute("SELECT min(t_ns) FROM raw").fetchone()[0]
            start = target if first is None else int(first) // MINUTE_NS * MINUTE_NS
            self._set_meta("rolled_agg_1min", start)
            self._set_meta("rolled_agg_1h", start // HOUR_NS * HOUR_NS)
        while start < target:
            end = min(target, start + ROLLUP_CHUNK_NS)
            written += self._aggregate("raw", "agg_1min", MINUTE_NS, start, end)
            start = end
        hour_target = start // HOUR_NS * HOUR_NS
        hour = self.rolled_until("agg_1h")
        if hour is None:
            hour = hour_target
            self._set_meta("rolled_agg_1h", hour)
        if hour < hour_target:
            written += self._aggregate("agg_1min", "agg_1h", HOUR_NS, hour, hour_target)
        return written

    def _aggregate(self, source: str, tier: str, step: int, start: int, end: int) -> int:
        db = self.db
        db.execute("BEGIN")
        try:
            if source == "raw":
                numbers = (
                    f"INSERT OR REPLACE INTO {tier} SELECT r.series, r.t_ns / {step} * {step} AS b,"
                    " avg(r.value), min(r.value), max(r.value), count(r.value), NULL"
                    " FROM series s CROSS JOIN raw r ON r.series = s.id"
                    " WHERE s.kind IN ('number', 'heartbeat') AND r.t_ns >= ? AND r.t_ns < ?"
                    " AND r.value IS NOT NULL GROUP BY r.series, b"
                )
                texts = (
                    f"INSERT OR REPLACE INTO {tier} SELECT series, b, NULL, NULL, NULL, n, text"
                    f" FROM (SELECT r.series, r.t_ns / {step} * {step} AS b, count(*) AS n,"
                    " r.text, max(r.t_ns) FROM series s CROSS JOIN raw r ON r.series = s.id"
                    " WHERE s.kind = 'text' AND r.t_ns >= ? AND r.t_ns < ? AND r.text NOT LIKE '{%'"
                    " GROUP BY r.series, b)"
                )
            else:
                numbers = (
                    f"INSERT OR REPLACE INTO {tier} SELECT a.series, a.t_ns / {step} * {step} AS b,"
                    " sum(a.mean * a.count) / sum(a.count), min(a.min), max(a.max), sum(a.count),"
                    " NULL FROM series s CROSS JOIN agg_1min a ON a.series = s.id"
                    " WHERE s.kind IN ('number', 'heartbeat') AND a.t_ns >= ? AND a.t_ns < ?"
                    " AND a.mean IS NOT NULL GROUP BY a.series, b"
                )
                texts = (
                    f"INSERT OR REPLACE INTO {tier} SELECT series, b, NULL, NULL, NULL, n, text"
                    f" FROM (SELECT a.series, a.t_ns / {step} * {step} AS b, sum(a.count) AS n,"
                    " a.text, max(a.t_ns) FROM series s CROSS JOIN agg_1min a"
                    " ON a.series = s.id WHERE s.kind = 'text' AND a.t_ns >= ? AND a.t_ns < ?"
                    " GROUP BY a.series, b)"
                )
            written = db.execute(numbers, (start, end)).rowcount
            written += db.execute(texts, (start, end)).rowcount
            self._set_meta(f"rolled_{tier}", end)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return max(0, written)

    def enforce_retention(self) -> int:
        """Delete what is older than each tier keeps (raw only once it is aggregated)."""
        s = self.settings
        now = self._clock.wall_ns()
        rolled = self.rolled_until("agg_1min") or 0
        cutoffs = {
            "raw": min(now - int(s.raw_retention * NS), rolled),
            "agg_1min": now - int(s.minute_retention * NS),
            "agg_1h": now - int(s.hour_retention * NS),
        }
        deleted = 0
        db = self.db
        ids = list(self._kinds)
        db.execute("BEGIN")
        try:
            for tier, cutoff in cutoffs.items():
                for sid in ids:  # per series: a range of the primary key, no table scan
                    deleted += db.execute(
                        f"DELETE FROM {tier} WHERE series = ? AND t_ns < ?", (sid, cutoff)
                    ).rowcount
            deleted += db.execute(
                "DELETE FROM gaps WHERE end_ns < ?", (cutoffs["agg_1min"],)
            ).rowcount
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return deleted

    def stats(self) -> dict[str, int]:
        return {
            "messages": self.messages,
            "rows_written": self.rows_written,
            "duplicates": self.duplicates,
            "gaps": self.gaps_recorded,
            "missed": self.missed,
            "restarts": self.restarts,
            "series": len(self._series),
            "refused_series": self.refused_series,
            "pending": len(self._rows),
        }

    def close(self) -> None:
        if self._rows or self._gaps:
            self.commit()
        self.db.close()
