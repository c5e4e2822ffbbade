"""History out of the record: one series over a time range, at a resolution chosen from the
tiers, with its unit and (for the clock's topics) the lock state at each point.

Resolution: `every_s` if asked (below a minute from the raw samples, else from the 1-minute or
hourly aggregates, whichever still covers the range), otherwise the finest tier whose points over
the range fit in `max_points`. Minutes not yet rolled up are aggregated from the raw rows on the
fly, so a 1-minute history reaches up to now. A reply holds at most `max_points` points; `next_ns`
says where the next page starts.
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ionpilot.bus.codec import STATUSES, BusError, ErrorCode
from ionpilot.core.clock import Clock, SystemClock
from ionpilot.recorder.settings import RecorderSettings
from ionpilot.recorder.store import HOUR_NS, MINUTE_NS, NS, connect

LOCK_STATE_TOPIC = "servo.clock.state"


@dataclass(frozen=True)
class SeriesInfo:
    id: int
    name: str
    topic: str
    field: str
    kind: str
    unit: str


class History:
    """Read-only queries on a recorder's file (thread-safe: one connection per call)."""

    def __init__(
        self, path: str | Path, settings: RecorderSettings | None = None, clock: Clock | None = None
    ) -> None:
        self.path = Path(path)
        self.settings = settings or RecorderSettings()
        self._clock = clock or SystemClock()

    def _db(self) -> sqlite3.Connection:
        if not self.path.exists():
            raise BusError(ErrorCode.UNKNOWN_TARGET, f"no record yet at {self.path}")
        return connect(self.path, readonly=True)

    # ------------------------------------------------------------------------------ names

    def series(self, prefix: str = "") -> list[dict[str, str]]:
        """Every stored series whose name starts with `prefix`: name, kind, unit."""
        db = self._db()
        try:
            rows = db.execute(
                "SELECT topic, field, kind, unit FROM series ORDER BY topic, field"
            ).fetchall()
        finally:
            db.close()
        out = []
        for topic, fld, kind, unit in rows:
            name = f"{topic}.{fld}" if fld else topic
            if name.startswith(prefix):
                out.append({"name": name, "kind": kind, "unit": unit})
        return out

    def resolve(self, db: sqlite3.Connection, name: str) -> SeriesInfo:
        """`topic` or `topic.field` to its series; `unknown_target` naming near matches."""
        candidates = [(name, "")]
        if "." in name:
            topic, _, fld = name.rpartition(".")
            candidates.append((topic, fld))
        for topic, fld in candidates:
            row = db.execute(
                "SELECT id, kind, unit FROM series WHERE topic = ? AND field = ?", (topic, fld)
            ).fetchone()
            if row is not None:
                return SeriesInfo(int(row[0]), name, topic, fld, row[1], row[2])
        stem = name.rsplit(".", 1)[0]
        near = [
            f"{t}.{f}" if f else t
            for t, f in db.execute(
                "SELECT topic, field FROM series WHERE topic LIKE ? ORDER BY topic, field LIMIT 12",
                (stem.replace("%", "") + "%",),
            )
        ]
        hint = f"; stored under {stem}: {', '.join(near)}" if near else ""
        raise BusError(ErrorCode.UNKNOWN_TARGET, f"nothing recorded as {name!r}{hint}")

    # ---------------------------------------------------------------------------- history

    def history(
        self,
        name: str,
        since_ns: int,
        until_ns: int | None = None,
        *,
        every_s: float | None = None,
        max_points: int | None = None,
        raw: bool = False,
    ) -> dict[str, Any]:
        """Points of `name` in [since, until); `raw` asks for every sample (paged)."""
        now = self._clock.wall_ns()
        until = now if until_ns is None else until_ns
        limit = min(max_points or self.settings.max_points, self.settings.max_points)
        if until <= since_ns:
            raise BusError(ErrorCode.BAD_REQUEST, "until must be later than since")
        if every_s is not None and not every_s > 0:
            raise BusError(ErrorCode.BAD_REQUEST, f"every must be positive (got {every_s})")
        db = self._db()
        try:
            info = self.resolve(db, name)
            if raw and every_s is None:
                tier, step = "raw", 0
            else:
                tier, step = self._choose(
                    db, info, since=since_ns, until=until, every_s=every_s, limit=limit, now=now
                )
            if tier == "raw" and step == 0:
                points = self._raw(db, info, since_ns, until, limit + 1)
            else:
                points = self._buckets(
                    db, info, tier=tier, step=step, since=since_ns, until=until, limit=limit + 1
                )
            more = len(points["t_ns"]) > limit
            if more:
                for column in points.values():
                    del column[limit:]
            if info.topic.startswith("servo.clock.") and info.topic != LOCK_STATE_TOPIC:
                points["lock_state"] = self._states_at(db, points["t_ns"], since_ns, until)
        finally:
            db.close()
        return {
            "series": info.name,
            "kind": info.kind,
            "unit": info.unit,
            "tier": tier,
            "every_s": step / NS if step else None,
            "since_ns": since_ns,
            "until_ns": until,
            "next_ns": points["t_ns"][-1] + 1 if more and points["t_ns"] else None,
            **points,
        }

    def _choose(
        self,
        db: sqlite3.Connection,
        info: SeriesInfo,
        *,
        since: int,
        until: int,
        every_s: float | None,
        limit: int,
        now: int,
    ) -> tuple[str, int]:
        """(tier, bucket ns): ("raw", 0) for every sample."""
        s = self.settings
        raw_from = now - int(s.raw_retention * NS)
        minute_from = now - int(s.minute_retention * NS)
        if every_s is not None:
            step = round(every_s * NS)
            if step < MINUTE_NS:
                if since < raw_from:
                    raise BusError(
                        ErrorCode.BAD_REQUEST,
                        f"raw samples are kept {s.raw_retention / 86400:g} d: ask for --every "
                        "1min or coarser before then",
                    )
                return "raw", step
            if step < HOUR_NS and since >= minute_from:
                return "agg_1min", step
            return "agg_1h", max(step, HOUR_NS)
        if since >= raw_from and info.kind in ("number", "heartbeat", "text", "record", "event"):
            (count,) = db.execute(
                "SELECT count(*) FROM (SELECT 1 FROM raw WHERE series = ? AND t_ns >= ? "
                "AND t_ns < ? LIMIT ?)",
                (info.id, since, until, limit + 1),
            ).fetchone()
            if count <= limit or info.kind not in ("number", "heartbeat", "text"):
                return "raw", 0
        span = until - since
        if since >= minute_from and span // MINUTE_NS <= limit:
            return "agg_1min", MINUTE_NS
        step = HOUR_NS
        while span // step > limit:
            step *= 2
        return "agg_1h", step

    @staticmethod
    def _raw(
        db: sqlite3.Connection, info: SeriesInfo, since: int, until: int, limit: int
    ) -> dict[str, list[Any]]:
        rows = db.execute(
            "SELECT t_ns, seq, value, text, status FROM raw WHERE series = ? AND t_ns >= ? "
            "AND t_ns < ? ORDER BY t_ns, seq LIMIT ?",
            (info.id, since, until, limit),
        ).fetchall()
        out: dict[str, list[Any]] = {
            "t_ns": [r[0] for r in rows],
            "seq": [r[1] for r in rows],
            "status": [STATUSES[r[4]] if 0 <= r[4] < len(STATUSES) else "INVALID" for r in rows],
        }
        if info.kind in ("number", "heartbeat"):
            out["value"] = [r[2] for r in rows]
        elif info.kind == "text":  # a record on a text topic (the lock state's) stays JSON
            out["value"] = [r[3] for r in rows]
        else:
            out["value"] = [json.loads(r[3]) if r[3] is not None else None for r in rows]
        return out

    def _buckets(
        self,
        db: sqlite3.Connection,
        info: SeriesInfo,
        *,
        tier: str,
        step: int,
        since: int,
        until: int,
        limit: int,
    ) -> dict[str, list[Any]]:
        """Mean, min, max and count per `step` bucket (text: the last value of the bucket)."""
        if info.kind not in ("number", "heartbeat", "text"):
            raise BusError(
                ErrorCode.BAD_REQUEST,
                f"{info.name} holds {info.kind}s, which are not aggregated: ask for a shorter "
                "range (raw) or one of its numeric fields",
            )
        text = info.kind == "text"
        parts: list[tuple[Any, ...]] = []
        rolled = since
        if tier != "raw":
            key = "rolled_agg_1min" if tier == "agg_1min" else "rolled_agg_1h"
            row = db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
            rolled = min(until, int(row[0])) if row is not None else since
            rolled = max(rolled, since)
            if rolled > since:
                native = MINUTE_NS if tier == "agg_1min" else HOUR_NS
                first = since // native * native  # the stored bucket holding `since`
                if step == native:  # the tier's own buckets: read in key order, no grouping
                    sql = (
                        "SELECT t_ns, mean, min, max, count, text, t_ns FROM "
                        f"{tier} WHERE series = ? AND t_ns >= ? AND t_ns < ? ORDER BY t_ns LIMIT ?"
                    )
                else:
                    sql = (
                        f"SELECT t_ns / {step} * {step} AS b, sum(mean * count) / sum(count),"
                        " min(min), max(max), sum(count), text, max(t_ns) FROM "
                        f"{tier} WHERE series = ? AND t_ns >= ? AND t_ns < ? GROUP BY b ORDER BY b"
                        " LIMIT ?"
                    )
                parts += db.execute(sql, (info.id, first, rolled, limit)).fetchall()
        if rolled < until and len(parts) < limit:  # not yet aggregated: from the raw rows
            parts += db.execute(
                f"SELECT t_ns / {step} * {step} AS b, avg(value), min(value), max(value),"
                " count(*), text, max(t_ns) FROM raw WHERE series = ? AND t_ns >= ? AND t_ns < ?"
                " AND (text IS NULL OR text NOT LIKE '{%') GROUP BY b ORDER BY b LIMIT ?",
                (info.id, rolled, until, limit),
            ).fetchall()
        rows = _merge(parts)[:limit]
        columns = list(zip(*rows, strict=True)) if rows else [()] * 7
        out: dict[str, list[Any]] = {"t_ns": list(columns[0])}
        if text:
            out["value"] = list(columns[5])
            out["count"] = list(columns[4])
            return out
        out["value"] = list(columns[1])
        out["min"] = list(columns[2])
        out["max"] = list(columns[3])
        out["count"] = list(columns[4])
        return out

    @staticmethod
    def _states_at(db: sqlite3.Connection, times: list[int], since: int, until: int) -> list[str]:
        """The clock's lock state at each time: its last plain-text value at or before it."""
        row = db.execute(
            "SELECT id FROM series WHERE topic = ? AND field = ''", (LOCK_STATE_TOPIC,)
        ).fetchone()
        if row is None or not times:
            return ["unknown"] * len(times)
        sid = int(row[0])
        before = db.execute(
            "SELECT text FROM raw WHERE series = ? AND t_ns <= ? AND text NOT LIKE '{%' "
            "ORDER BY t_ns DESC LIMIT 1",
            (sid, since),
        ).fetchone()
        changes = db.execute(
            "SELECT t_ns, text FROM raw WHERE series = ? AND t_ns > ? AND t_ns <= ? "
            "AND text NOT LIKE '{%' ORDER BY t_ns",
            (sid, since, max(times)),
        ).fetchall()
        if not changes and before is None:  # raw thinned: the aggregates' last states
            changes = db.execute(
                "SELECT t_ns, text FROM agg_1min WHERE series = ? AND t_ns <= ? ORDER BY t_ns",
                (sid, max(times)),
            ).fetchall()
        state = before[0] if before is not None else "unknown"
        out = []
        i = 0
        for t in times:
            while i < len(changes) and changes[i][0] <= t:
                state = changes[i][1]
                i += 1
            out.append(state)
        return out

    def gaps(
        self, since_ns: int, until_ns: int | None = None, topic: str | None = None
    ) -> list[Any]:
        """Recorded gaps overlapping the range: [topic, src, first_seq, last_seq, start, end,
        reason] (topic None: the recorder itself was away)."""
        until = self._clock.wall_ns() if until_ns is None else until_ns
        db = self._db()
        try:
            sql = (
                "SELECT topic, src, first_seq, last_seq, start_ns, end_ns, reason FROM gaps "
                "WHERE end_ns >= ? AND start_ns <= ?"
            )
            args: tuple[Any, ...] = (since_ns, until)
            if topic is not None:
                sql += " AND (topic = ? OR topic IS NULL)"
                args += (topic,)
            rows = db.execute(sql + " ORDER BY start_ns LIMIT 10000", args).fetchall()
        finally:
            db.close()
        return [list(r) for r in rows]


def _merge(parts: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Bucket rows (b, mean, min, max, count, last text, ...) in time order, a bucket found in
    both the tier and the raw rows combined (count-weighted mean)."""
    if all(a[0] < b[0] for a, b in itertools.pairwise(parts)):
        return parts  # the usual case: the tier ends where the raw rows begin
    merged: dict[int, list[Any]] = {}
    for b, mean, lo, hi, count, last_text, *_ in parts:
        have = merged.get(b)
        if have is None:
            merged[b] = [b, mean, lo, hi, count, last_text]
            continue
        if mean is not None and have[1] is not None:
            total = have[4] + count
            have[1] = (have[1] * have[4] + mean * count) / total
            have[2], have[3] = min(have[2], lo), max(have[3], hi)
        have[4] += count
        have[5] = last_text if last_text is not None else have[5]
    return [tuple(merged[k]) for k in sorted(merged)]
