"""What the console knows of the lab, fed from the bus and read by every panel (no Qt here).

Messages arrive at up to thousands per second; panels repaint a few to thirty times per second.
So the store only records (latest value per topic, a fixed ring of numbers per numeric topic,
heartbeats, a bounded event log) and bumps counters; panels poll what changed on their own timer.

A console stays open for weeks, and any script may publish: topics, plotted series and
heartbeat sources are capped (`max_topics`, `max_series`; a series ring is 32 bytes a point),
and what is beyond a cap is counted in `refused`, not stored.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ionpilot.bus.codec import STATUSES, Event, Heartbeat, Message, Telemetry
from ionpilot.core.units import unit_of_field

FloatArray = npt.NDArray[np.float64]
SEVERITY_RANK = {name: i for i, name in enumerate(STATUSES)}  # OK < MINOR < MAJOR < INVALID


def severity_rank(name: str) -> int:
    return SEVERITY_RANK.get(name, 0)


class RingBuffer:
    """A fixed number of (t, value) samples; `view()` is a contiguous, copy-free window.

    Every sample is written twice (at i and i + capacity), so the newest `capacity` samples are
    always one slice of the backing array: strip charts hand that slice straight to pyqtgraph.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 2:
            raise ValueError("a ring buffer needs room for at least two samples")
        self.capacity = capacity
        self._t = np.zeros(2 * capacity)
        self._y = np.zeros(2 * capacity)
        self._next = 0  # index of the next write in [0, capacity)
        self.count = 0  # samples ever written (a plot redraws when this changed)

    def append(self, t: float, y: float) -> None:
        i = self._next
        c = self.capacity
        self._t[i] = self._t[i + c] = t
        self._y[i] = self._y[i + c] = y
        self._next = i + 1 if i + 1 < c else 0
        self.count += 1

    def __len__(self) -> int:
        return min(self.count, self.capacity)

    def view(self) -> tuple[FloatArray, FloatArray]:
        """Times and values, oldest first (views into the buffer: do not keep them)."""
        n = len(self)
        end = self._next + self.capacity
        return self._t[end - n : end], self._y[end - n : end]

    def last(self) -> tuple[float, float] | None:
        if self.count == 0:
            return None
        i = (self._next - 1) % self.capacity
        return float(self._t[i]), float(self._y[i])


@dataclass
class Latest:
    """The newest message of one telemetry topic, and when it arrived here (monotonic s)."""

    value: Any
    unit: str
    status: str
    t_ns: int
    src: str
    received: float
    count: int = 1


@dataclass
class EventRecord:
    """One event as shown in the log (a plain copy of the bus `Event`)."""

    t_ns: int
    src: str
    kind: str
    message: str
    severity: str
    topic: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProcessBeat:
    """The newest heartbeat of a process."""

    status: str
    period: float
    received: float
    count: int = 0


def numeric(value: Any) -> float | None:
    """A plottable number, or None (booleans plot as 0/1, text and maps do not plot)."""
    kind = type(value)
    if kind is float:
        return float(value) if math.isfinite(value) else None
    if kind is int or kind is bool:
        return float(value)
    return None


class LabStore:
    """Latest values, histories, heartbeats and events, as received from the bus."""

    def __init__(
        self,
        history_points: int = 10_000,
        max_events: int = 5_000,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_topics: int = 5_000,
        max_series: int = 500,
    ) -> None:
        self.history_points = history_points
        self.clock = clock
        self.max_topics = max_topics
        self.max_series = max_series
        self.refused = {"topics": 0, "series": 0, "sources": 0}  # messages beyond the caps
        self.latest: dict[str, Latest] = {}
        self.history: dict[str, RingBuffer] = {}
        self.changes: dict[str, deque[tuple[float, str]]] = {}  # text topics: (t_s, new value)
        self.beats: dict[str, ProcessBeat] = {}
        self.events: deque[EventRecord] = deque(maxlen=max_events)
        self.events_seen = 0  # events ever received (the log appends what is new)
        self.events_backfilled = 0  # older events merged in from the audit log (`backfill`)
        self.messages = 0
        self.topics_version = 0  # bumped when a topic appears for the first time
        self.last_message = -math.inf  # monotonic time of the newest message
        self.listeners: list[Callable[[Message], None]] = []  # for the few that need each one

    # ------------------------------------------------------------------------------ intake

    def ingest(self, msg: Message) -> None:
        """Record one message from the bus (the hot path: keep it short)."""
        now = self.clock()
        self.messages += 1
        self.last_message = now
        kind = type(msg)
        if kind is Telemetry:
            assert isinstance(msg, Telemetry)
            self._telemetry(msg, now)
        elif kind is Heartbeat:
            assert isinstance(msg, Heartbeat)
            beat = self.beats.get(msg.src)
            if beat is None:
                if len(self.beats) >= self.max_topics:
                    self.refused["sources"] += 1
                    return
                beat = self.beats[msg.src] = ProcessBeat(msg.status, msg.period, now)
                self.topics_version += 1
            beat.status = msg.status
            beat.period = msg.period
            beat.received = now
            beat.count += 1
        elif kind is Event:
            assert isinstance(msg, Event)
            self.events.append(
                EventRecord(
                    msg.t, msg.src, msg.kind, msg.message, msg.severity, msg.topic, dict(msg.data)
                )
            )
            self.events_seen += 1
        for listener in self.listeners:
            listener(msg)

    def backfill_events(self, records: list[EventRecord]) -> int:
        """Merge events that happened before this console listened (the daemon's audit log,
        fetched over the bus) into the log in time order; one already received live (same kind
        and message within 2 s) is not repeated. Returns how many were added."""
        seen: dict[tuple[str, str], list[int]] = {}
        for event in self.events:
            seen.setdefault((event.kind, event.message), []).append(event.t_ns)
        fresh = [
            r
            for r in records
            if not any(abs(t - r.t_ns) < 2e9 for t in seen.get((r.kind, r.message), ()))
        ]
        if fresh:
            merged = sorted([*self.events, *fresh], key=lambda e: e.t_ns)
            self.events.clear()
            self.events.extend(merged)  # the deque keeps the newest `max_events`
            self.events_backfilled += len(fresh)
        return len(fresh)

    def _telemetry(self, msg: Telemetry, now: float) -> None:
        topic = msg.topic
        latest = self.latest.get(topic)
        if latest is None:
            if len(self.latest) >= self.max_topics:
                self.refused["topics"] += 1
                return
            self.latest[topic] = Latest(msg.value, msg.unit, msg.status, msg.t, msg.src, now)
            self.topics_version += 1
        else:
            latest.value = msg.value
            latest.unit = msg.unit
            latest.status = msg.status
            latest.t_ns = msg.t
            latest.src = msg.src
            latest.received = now
            latest.count += 1
        y = numeric(msg.value)
        t_s = msg.t * 1e-9
        if y is not None:
            self._record(topic, t_s, y)
        elif type(msg.value) is str:
            self._text_change(topic, t_s, msg.value)
        elif type(msg.value) is dict:  # a record (servo update): each number is a series
            for key, item in msg.value.items():
                number = numeric(item)
                if number is not None:
                    self._record(f"{topic}:{key}", t_s, number)

    def _record(self, series: str, t_s: float, y: float) -> None:
        ring = self.history.get(series)
        if ring is None:
            if len(self.history) >= self.max_series:
                self.refused["series"] += 1
                return
            ring = self.history[series] = RingBuffer(self.history_points)
            self.topics_version += 1
        ring.append(t_s, y)

    def backfill(self, series: str, t_s: FloatArray, y: FloatArray) -> int:
        """Put stored history (the recorder's) before what arrived live: samples older than
        the first live one, then the live ones again; how many were added."""
        ring = self.history.get(series)
        live_t, live_y = ring.view() if ring is not None else (np.empty(0), np.empty(0))
        live_t, live_y = live_t.copy(), live_y.copy()
        first = live_t[0] if len(live_t) else np.inf
        keep = np.isfinite(y) & (t_s < first)
        if not keep.any():
            return 0
        if ring is None:
            if len(self.history) >= self.max_series:
                self.refused["series"] += 1
                return 0
            self.topics_version += 1
        ring = self.history[series] = RingBuffer(self.history_points)
        for a, b in zip(t_s[keep], y[keep], strict=True):
            ring.append(float(a), float(b))
        for a, b in zip(live_t, live_y, strict=True):
            ring.append(float(a), float(b))
        return int(keep.sum())

    def backfill_changes(self, topic: str, t_s: list[float], values: list[str]) -> None:
        """Stored changes of a text topic (the lock state) before the live ones."""
        live = list(self.changes.get(topic, ()))
        first = live[0][0] if live else math.inf
        merged: deque[tuple[float, str]] = deque(maxlen=2000)
        for t, v in zip(t_s, values, strict=True):
            if t < first and (not merged or merged[-1][1] != v):
                merged.append((t, v))
        for t, v in live:
            if not merged or merged[-1][1] != v:
                merged.append((t, v))
        self.changes[topic] = merged

    def _text_change(self, topic: str, t_s: float, value: str) -> None:
        changes = self.changes.get(topic)
        if changes is None:
            changes = self.changes[topic] = deque(maxlen=2000)
        if not changes or changes[-1][1] != value:
            changes.append((t_s, value))

    # ------------------------------------------------------------------------------ queries

    def fraction_in(self, topic: str, value: str, now_s: float) -> float | None:
        """Fraction of the time since `topic` was first seen that it read `value`."""
        changes = self.changes.get(topic)
        if not changes:
            return None
        total = now_s - changes[0][0]
        if total <= 0:
            return 1.0 if changes[-1][1] == value else 0.0
        inside = 0.0
        items = list(changes)
        for (t0, v), (t1, _) in zip(items, [*items[1:], (now_s, "")], strict=True):
            if v == value:
                inside += max(0.0, t1 - t0)
        return inside / total

    def value(self, topic: str) -> Any:
        latest = self.latest.get(topic)
        return None if latest is None else latest.value

    def age(self, topic: str) -> float:
        """Seconds since `topic` last arrived (inf if never)."""
        latest = self.latest.get(topic)
        return math.inf if latest is None else self.clock() - latest.received

    def beat_age(self, process: str) -> float:
        beat = self.beats.get(process)
        return math.inf if beat is None else self.clock() - beat.received

    def silence(self) -> float:
        """Seconds since any message arrived."""
        return self.clock() - self.last_message

    def topics(self, prefix: str = "") -> list[str]:
        return sorted(t for t in self.latest if t.startswith(prefix))

    def numeric_topics(self) -> list[str]:
        return sorted(self.history)


def series_unit(store: LabStore, series: str) -> str:
    """The unit of a plotted series: the topic's own, or read off a record field's suffix."""
    topic, _, key = series.partition(":")
    if not key:
        latest = store.latest.get(topic)
        return latest.unit if latest is not None else ""
    return unit_of_field(key)
