"""Telemetry publishing and subscribing through the hub, with loss accounting and liveness.

Sequence numbers count per topic at the publisher (a per-process counter would show false
gaps to a subscriber that listens to a prefix only). The subscriber keeps the last number per
(source, topic): a jump is a gap of exactly the missing count, a step backwards is a restart.
Both sides keep at most `max_topics` streams, forgetting the least recently used: a publisher
that forgot a topic numbers it from 1 again, which its subscribers count as a restart, and a
subscriber that forgot a stream takes it up again like a new one; neither shows a false gap.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import cast

import zmq

from ionpilot.bus.codec import (
    Codec,
    DecodeError,
    Event,
    Heartbeat,
    Message,
    Value,
    check_reading,
    check_topic,
)
from ionpilot.bus.hub import endpoint, hard_frame_limit
from ionpilot.bus.security import ClientKeys
from ionpilot.bus.settings import BusSettings
from ionpilot.bus.wire import keep_alive
from ionpilot.core.clock import Clock, SystemClock

Context = zmq.Context[zmq.Socket[bytes]]
_MORE_NOBLOCK = zmq.SNDMORE | zmq.NOBLOCK


def _hwm(value: int) -> int:
    if value <= 0:
        raise ValueError("high-water marks must be positive (0 would mean unbounded queues)")
    return value


class Publisher:
    """Publishes telemetry, events and heartbeats of one source `src` to the hub.

    Never blocks: the socket is a PUB with a bounded queue, so when a peer is slow messages
    are dropped there and subscribers see the gap. One publisher belongs to one thread.
    """

    def __init__(
        self,
        settings: BusSettings,
        src: str,
        *,
        clock: Clock | None = None,
        context: Context | None = None,
        connect: str | None = None,
        send_hwm: int | None = None,
        keys: ClientKeys | None = None,
    ) -> None:
        """With `settings.security.curve` on, connects with the config's CURVE identity (or
        `keys`); the hub takes publications from operators and admins only."""
        if not src or len(src) > 128:
            raise ValueError("src must be a short non-empty name")
        self.src = src
        self._clock = clock or SystemClock()
        self._wall_ns = self._clock.wall_ns
        self._codec = Codec(settings.pubsub_bytes)
        self._pack = self._codec.pack
        self._sock = (context or zmq.Context.instance()).socket(zmq.PUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        keep_alive(self._sock)
        # bounded in bytes: at most `max_queued_bytes` of `max_publish_bytes` messages
        self._sock.setsockopt(zmq.SNDHWM, _hwm(send_hwm or settings.pubsub_hwm))
        _secure(self._sock, settings, keys)
        self._sock.connect(connect or endpoint(settings.host, settings.publish_port))
        self._send = self._sock.send
        self._seq: OrderedDict[str, int] = OrderedDict()  # least recently published first
        self._topics: dict[str, bytes] = {}  # the same keys as `_seq`
        self._max_topics = settings.max_topics
        self.evicted_topics = 0  # topics forgotten (they count from 1 again when next used)
        self.dropped = 0  # messages the socket refused (EAGAIN); PUB normally drops silently

    def _add_topic(self, topic: str) -> bytes:
        """Check and remember a new topic, forgetting the least recently published one when
        full (its subscribers see it restart from 1 next time: a restart, not a gap)."""
        raw = check_topic(topic)
        seqs = self._seq
        while len(seqs) >= self._max_topics:
            old, _ = seqs.popitem(last=False)
            del self._topics[old]
            self.evicted_topics += 1
        self._topics[topic] = raw
        seqs[topic] = 0
        return raw

    def _next(self, topic: str) -> tuple[bytes, int]:
        raw = self._topics.get(topic)
        if raw is None:
            raw = self._add_topic(topic)
        seqs = self._seq
        seq = seqs[topic] + 1
        seqs[topic] = seq
        seqs.move_to_end(topic)
        return raw, seq

    def _emit(self, raw_topic: bytes, payload: bytes) -> bool:
        try:
            self._send(raw_topic, _MORE_NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            return False
        self._send(payload, zmq.NOBLOCK)  # parts after the first are never refused
        return True

    def publish(
        self, topic: str, value: Value, unit: str = "", status: str = "OK", t: int | None = None
    ) -> bool:
        """Publish one reading on `topic` (e.g. `tlm.rf_drive.frequency`); False if dropped.
        A NaN or infinite reading goes out as `INVALID` (subscribers refuse it as anything
        else); text longer than `MAX_MESSAGE_CHARS` raises `ValueError`."""
        kind = type(value)
        if kind is float:
            if value - value != 0.0:  # NaN or infinite: not a reading
                status = "INVALID"
        elif kind is not int and kind is not bool and value is not None:
            check_reading(value, status)
        raw = self._topics.get(topic)
        if raw is None:
            raw = self._add_topic(topic)
        seqs = self._seq
        seq = seqs[topic] + 1
        seqs[topic] = seq
        seqs.move_to_end(topic)
        payload = self._pack(
            {
                "seq": seq,
                "t": self._wall_ns() if t is None else t,
                "src": self.src,
                "value": value,
                "unit": unit,
                "status": status,
            }
        )
        try:
            self._send(raw, _MORE_NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            return False
        self._send(payload, zmq.NOBLOCK)
        return True

    def publish_event(
        self,
        kind: str,
        message: str = "",
        severity: str = "OK",
        data: dict[str, Value] | None = None,
        topic: str | None = None,
    ) -> bool:
        """Publish an event on `evt.<src>.<kind>` (or the given topic)."""
        raw, seq = self._next(topic or f"evt.{self.src}.{kind}")
        event = Event(seq, self._wall_ns(), self.src, kind, message, severity, data or {})
        return self._emit(raw, self._codec.encode_event(event))

    def publish_heartbeat(self, period: float, status: str = "OK") -> bool:
        """Publish `hb.<src>`: this source is alive and promises to say so every `period` s."""
        raw, seq = self._next(f"hb.{self.src}")
        beat = Heartbeat(seq, self._wall_ns(), self.src, period, status)
        return self._emit(raw, self._codec.encode_heartbeat(beat))

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class GapCounter:
    """Loss accounting per (source, topic): exact gaps, restarts, last sequence number seen.

    `restarts[src]` counts topic streams of `src` that started again from a lower number (a
    restarted publisher shows one per topic it publishes); those are not counted as loss.
    At most `max_keys` streams are tracked: beyond that the least recently seen is forgotten
    (counted in `evictions`) and, should it come back, is taken up like a new stream. The
    per-source counts are bounded the same way (scripts come and go for weeks, each a source):
    the least recently heard source's counts are dropped (`source_evictions`); the totals keep
    everything.
    """

    def __init__(self, max_keys: int = 10_000) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.max_keys = max_keys
        # Kept in recency order by popping a key and putting it back (two operations a message,
        # half the time of get, set, move_to_end); OrderedDict, not dict, so that dropping the
        # least recent stays O(1) (a plain dict's first key is found past every deleted slot).
        self._last: OrderedDict[tuple[str, str], int] = OrderedDict()  # least recent first
        self.gaps: dict[str, int] = {}  # per source
        self.restarts: dict[str, int] = {}  # per source
        self.received: OrderedDict[str, int] = OrderedDict()  # per source, least recent first
        self.total_gaps = 0
        self.evictions = 0
        self.source_evictions = 0

    def __len__(self) -> int:
        """How many (source, topic) streams are tracked now."""
        return len(self._last)

    def observe(self, src: str, topic: str, seq: int) -> int:
        """Record one message; returns the number of messages missed just before it."""
        key = (src, topic)
        streams = self._last
        last = streams.pop(key, None)
        streams[key] = seq  # now the most recent
        if last is None and len(streams) > self.max_keys:
            streams.popitem(last=False)  # the least recently seen stream
            self.evictions += 1
        received = self.received
        count = received.pop(src, 0)
        received[src] = count + 1
        if not count and len(received) > self.max_keys:
            self._forget_source(next(iter(received)))
        if last is None:
            return 0
        missed = seq - last - 1
        if missed > 0:
            self.gaps[src] = self.gaps.get(src, 0) + missed
            self.total_gaps += missed
            return missed
        if missed < 0:  # the publisher restarted and counts from 1 again
            self.restarts[src] = self.restarts.get(src, 0) + 1
        return 0

    def gaps_of(self, src: str) -> int:
        return self.gaps.get(src, 0)

    def _forget_source(self, src: str) -> None:
        del self.received[src]
        self.gaps.pop(src, None)
        self.restarts.pop(src, None)
        self.source_evictions += 1


class Liveness:
    """Heartbeat bookkeeping: a source is stale when its last beat is older than the bound.

    A source that was not `expect`ed and has not beaten for `forget_after` seconds is forgotten
    (it left: a script that ended), so it is not reported stale forever and the table stays
    bounded; expected sources are never forgotten, their silence is what `stale()` is for.
    """

    def __init__(
        self, stale_after: float, clock: Clock | None = None, forget_after: float = 3600.0
    ) -> None:
        if stale_after <= 0:
            raise ValueError("stale_after must be positive")
        if not forget_after > 0:
            raise ValueError("forget_after must be positive")
        self.stale_after = stale_after
        self.forget_after = forget_after
        self._clock = clock or SystemClock()
        self._last: dict[str, float] = {}
        self._expected: set[str] = set()
        self._next_prune = -math.inf
        self.forgotten = 0  # sources forgotten after `forget_after` of silence

    def expect(self, *sources: str) -> None:
        """Sources that must beat: stale until their first heartbeat arrives, never forgotten."""
        for src in sources:
            self._expected.add(src)
            self._last.setdefault(src, float("-inf"))

    def beat(self, src: str, at: float | None = None) -> None:
        now = self._clock.now() if at is None else at
        self._last[src] = now
        if now >= self._next_prune:  # a full pass at most every forget_after / 4
            self._prune(now)

    def _prune(self, now: float) -> None:
        expected = self._expected
        cutoff = now - self.forget_after
        gone = [s for s, last in self._last.items() if last < cutoff and s not in expected]
        for src in gone:
            del self._last[src]
        self.forgotten += len(gone)
        self._next_prune = now + self.forget_after / 4

    def age(self, src: str) -> float:
        """Seconds since the last heartbeat of `src` (inf if never seen)."""
        last = self._last.get(src)
        return float("inf") if last is None else self._clock.now() - last

    def is_stale(self, src: str) -> bool:
        return self.age(src) > self.stale_after

    def stale(self) -> list[str]:
        """Every known source whose heartbeat is too old, sorted."""
        now = self._clock.now()
        self._prune(now)
        return sorted(s for s, last in self._last.items() if now - last > self.stale_after)

    def sources(self) -> list[str]:
        self._prune(self._clock.now())
        return sorted(self._last)


class Subscriber:
    """Receives messages under topic prefixes from the hub; counts gaps, drops and heartbeats.

    Bad frames are counted in `bad_frames` and skipped, never raised. For event loops, watch
    `fd` and call `drain()` whenever it signals (ZeroMQ's FD is edge-triggered: `drain` reads
    until the socket reports no more input).
    """

    def __init__(
        self,
        settings: BusSettings,
        prefixes: Iterable[str] = ("",),
        *,
        clock: Clock | None = None,
        context: Context | None = None,
        connect: str | None = None,
        recv_hwm: int | None = None,
        keys: ClientKeys | None = None,
    ) -> None:
        """With `settings.security.curve` on, connects with the config's CURVE identity (or
        `keys`): any client on the allow-list may listen, nobody else."""
        self._clock = clock or SystemClock()
        self._codec = Codec(settings.pubsub_bytes)
        self._decode = self._codec.decode_message
        self._sock = (context or zmq.Context.instance()).socket(zmq.SUB)
        self._sock.setsockopt(zmq.LINGER, 0)
        keep_alive(self._sock)
        self._sock.setsockopt(zmq.RCVHWM, _hwm(recv_hwm or settings.pubsub_hwm))
        self._sock.setsockopt(zmq.MAXMSGSIZE, hard_frame_limit(settings.pubsub_bytes))
        _secure(self._sock, settings, keys)
        self._sock.connect(connect or endpoint(settings.host, settings.subscribe_port))
        self._recv = self._sock.recv
        for prefix in prefixes:
            self.subscribe(prefix)
        self.counter = GapCounter(settings.max_topics)
        self._observe = self.counter.observe
        self.liveness = Liveness(settings.stale_after, self._clock, settings.forget_after)
        self.bad_frames = 0
        self.last_error = ""

    @property
    def fd(self) -> int:
        """File descriptor to watch in an event loop (readable = "check `drain()`")."""
        fd = cast(int, self._sock.getsockopt(zmq.FD))
        return fd

    @property
    def socket(self) -> zmq.Socket[bytes]:
        return self._sock

    def subscribe(self, prefix: str) -> None:
        self._sock.setsockopt(zmq.SUBSCRIBE, prefix.encode("ascii"))

    def unsubscribe(self, prefix: str) -> None:
        self._sock.setsockopt(zmq.UNSUBSCRIBE, prefix.encode("ascii"))

    @property
    def gaps(self) -> dict[str, int]:
        return self.counter.gaps

    def handle_frames(self, frames: list[bytes]) -> Message | None:
        """Decode one received multipart message; None (and counted) when it is malformed."""
        if len(frames) != 2:
            self._bad(f"expected [topic, payload], got {len(frames)} frames")
            return None
        return self._handle_pair(frames[0], frames[1])

    def _bad(self, error: str) -> None:
        """Count a malformed message (nothing is delivered for it)."""
        self.bad_frames += 1
        self.last_error = error

    def _handle_pair(self, topic: bytes, payload: bytes) -> Message | None:
        try:
            msg = self._decode(topic, payload)
        except DecodeError as exc:
            self._bad(str(exc))
            return None
        self._observe(msg.src, msg.topic, msg.seq)
        if type(msg) is Heartbeat and msg.topic == f"hb.{msg.src}":
            # the hub checks who sends the topic, not the source named inside: a host's own
            # `hb.<host>` only may say that host is alive
            self.liveness.beat(msg.src)
        return msg

    def _next(self, flags: int) -> Message | None:
        """One message off the socket: its topic frame (a Frame, for its `more` flag) and its
        payload as bytes (no second Frame: ~0.7 us a message less than `recv_frames`). A
        frame beyond the second is read as the next message (a lone frame: counted bad);
        ZeroMQ never interleaves publishers within a message, so nothing is mixed up."""
        recv = self._recv
        first = recv(flags, False)
        if not first.more:
            self._bad("expected [topic, payload], got 1 frame")
            return None
        payload = recv(0, True)  # the rest of a message is there with its first
        # `_handle_pair` written out (one call less a message: the subscriber's hot path)
        try:
            msg = self._decode(first.bytes, payload)
        except DecodeError as exc:
            self._bad(str(exc))
            return None
        self._observe(msg.src, msg.topic, msg.seq)
        if type(msg) is Heartbeat and msg.topic == f"hb.{msg.src}":
            self.liveness.beat(msg.src)
        return msg

    def recv(self, timeout: float | None = None) -> Message | None:
        """The next valid message, or None after `timeout` seconds (None: wait forever)."""
        sock = self._sock
        next_message = self._next
        if timeout is None:
            while True:
                msg = next_message(0)
                if msg is not None:
                    return msg
        deadline = time.monotonic() + timeout
        wait_ms = max(0, int(timeout * 1000))
        while True:
            if not sock.poll(wait_ms, zmq.POLLIN):
                return None
            msg = next_message(zmq.NOBLOCK)
            if msg is not None:
                return msg
            wait_ms = max(0, int((deadline - time.monotonic()) * 1000))

    def drain(self, max_messages: int = 10_000) -> list[Message]:
        """Every message already queued (up to `max_messages`), without waiting."""
        out: list[Message] = []
        next_message = self._next
        while len(out) < max_messages:
            try:
                msg = next_message(zmq.NOBLOCK)
            except zmq.Again:
                break
            if msg is not None:
                out.append(msg)
        return out

    def stats(self) -> dict[str, object]:
        c = self.counter
        return {
            "received": dict(c.received),
            "gaps": dict(c.gaps),
            "restarts": dict(c.restarts),
            "evicted_streams": c.evictions,
            "bad_frames": self.bad_frames,
            "stale": self.liveness.stale(),
        }

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class HeartbeatPublisher:
    """Beats `hb.<process>` every `heartbeat_period` from its own thread and socket.

    Its own thread means no handler, however slow, delays it. `beat()` sends one now (tests).
    """

    def __init__(
        self,
        settings: BusSettings,
        process: str,
        *,
        clock: Clock | None = None,
        context: Context | None = None,
        connect: str | None = None,
    ) -> None:
        self.period = settings.heartbeat_period
        if self.period <= 0:
            raise ValueError("heartbeat_period must be positive")
        self._settings = settings
        self._process = process
        self._clock = clock
        self._context = context
        self._connect = connect
        self._lock = threading.Lock()
        self._publisher: Publisher | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.status = "OK"

    def _pub(self) -> Publisher:
        if self._publisher is None:
            self._publisher = Publisher(
                self._settings,
                self._process,
                clock=self._clock,
                context=self._context,
                connect=self._connect,
            )
        return self._publisher

    def beat(self) -> None:
        with self._lock:
            self._pub().publish_heartbeat(self.period, self.status)

    def start(self) -> HeartbeatPublisher:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._run, name=f"ionpilot-heartbeat-{self._process}", daemon=True
        )
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.beat()
            self._stop.wait(self.period)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        with self._lock:
            if self._publisher is not None:
                self._publisher.close()
                self._publisher = None


def _secure(sock: zmq.Socket[bytes], settings: BusSettings, keys: ClientKeys | None) -> None:
    """Make `sock` a CURVE client when security is on (or keys are given), before it connects."""
    if keys is None and settings.security.curve:
        keys = ClientKeys.from_settings(settings.security)
    if keys is not None:
        keys.apply(sock)
