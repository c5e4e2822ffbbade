"""Bounds for weeks-long running: stream tables, heartbeat sources, stuck deferred requests."""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
import zmq

from ionpilot.bus import BusSettings, CommandClient, CommandServer, Hub, Publisher, Subscriber
from ionpilot.bus.codec import Reply, Request
from ionpilot.bus.pubsub import GapCounter, Liveness
from ionpilot.core.clock import ManualClock


def test_gap_counter_forgets_least_recently_seen_without_false_gaps() -> None:
    counter = GapCounter(max_keys=3)
    for topic in ("a", "b", "c"):
        assert counter.observe("src", topic, 1) == 0
    assert counter.observe("src", "a", 2) == 0  # "a" is now the most recent: "b" goes first
    assert counter.observe("src", "d", 1) == 0
    assert (len(counter), counter.evictions) == (3, 1)
    assert counter.observe("src", "b", 50) == 0  # forgotten: taken up afresh, no gap
    assert counter.observe("src", "a", 4) == 1  # still tracked: a real gap is still seen
    assert counter.total_gaps == 1 and counter.restarts == {}
    assert len(counter) == 3 and counter.evictions == 2  # "c" made room for "b"


def test_gap_counter_stays_bounded_under_a_new_topic_per_message() -> None:
    counter = GapCounter(max_keys=100)
    for i in range(10_000):
        counter.observe("script", f"tlm.script.t{i}", 1)
    assert len(counter) == 100
    assert counter.evictions == 9_900
    assert counter.total_gaps == 0 and counter.received == {"script": 10_000}


def test_gap_counter_per_source_counts_stay_bounded_under_a_new_source_per_message() -> None:
    counter = GapCounter(max_keys=10)
    counter.observe("daemon", "tlm.daemon.x", 1)
    counter.observe("daemon", "tlm.daemon.x", 3)  # one lost
    for i in range(1_000):  # a script per message, each a new source
        counter.observe(f"script-{i}", "tlm.script.y", 1)
        counter.observe("daemon", "tlm.daemon.x", 4 + i)  # heard all along: never forgotten
    assert len(counter.received) == len(counter.gaps) + 9 == 10
    assert counter.gaps == {"daemon": 1} and counter.received["daemon"] == 1_002
    assert counter.source_evictions == 991 and counter.total_gaps == 1
    assert counter.observe("daemon", "tlm.daemon.x", 1_005) == 1  # still tracked exactly


def test_liveness_forgets_departed_sources_but_not_expected_ones() -> None:
    clock = ManualClock()
    live = Liveness(3.0, clock, forget_after=3600.0)
    live.expect("daemon", "drivers")
    live.beat("drivers")
    live.beat("script")
    clock.advance(10)
    assert live.stale() == ["daemon", "drivers", "script"]
    clock.advance(3600)
    assert live.stale() == ["daemon", "drivers"]  # expected ones stay reported
    assert live.sources() == ["daemon", "drivers"]
    assert live.forgotten == 1
    assert live.is_stale("script")  # unknown again: never seen counts as stale
    live.beat("script")  # it comes back: known and alive again
    assert not live.is_stale("script")


def test_liveness_stays_bounded_when_nobody_asks() -> None:
    clock = ManualClock()
    live = Liveness(3.0, clock, forget_after=100.0)
    for i in range(2_000):  # a new short-lived source every second
        live.beat(f"script-{i}")
        clock.advance(1.0)
    assert len(live.sources()) <= 100
    assert live.forgotten >= 1_900


def test_publisher_forgets_least_recently_published_topics(settings, ctx, dead_endpoint) -> None:
    with Publisher(replace(settings, max_topics=2), "p", context=ctx, connect=dead_endpoint) as pub:
        pub.publish("tlm.p.a", 1)
        pub.publish("tlm.p.b", 1)
        pub.publish("tlm.p.a", 2)  # "a" is the most recent now
        pub.publish_event("note")  # evicts "b"
        assert list(pub._seq) == ["tlm.p.a", "evt.p.note"]
        assert pub.evicted_topics == 1
        assert set(pub._topics) == set(pub._seq)


@pytest.fixture
def joined(settings: BusSettings, ctx) -> Iterator[tuple[Publisher, Subscriber]]:
    with Hub(settings, ctx) as hub:
        on_hub = replace(
            settings,
            publish_port=int(hub.publish_endpoint.rsplit(":", 1)[1]),
            subscribe_port=int(hub.subscribe_endpoint.rsplit(":", 1)[1]),
        )
        pub_settings = replace(on_hub, max_topics=2)
        with (
            Publisher(pub_settings, "script", context=ctx) as pub,
            Subscriber(on_hub, ("tlm.",), context=ctx) as sub,
        ):
            for _ in range(2000):  # ZeroMQ's slow joiner: probe until the subscriber sees one
                pub.publish("tlm.warmup", 0)
                if sub.recv(timeout=0.01) is not None:
                    break
            else:
                raise AssertionError("subscriber never joined")
            sub.drain()
            yield pub, sub


def test_evicted_topic_restarting_looks_like_a_restart_not_a_gap(joined) -> None:
    pub, sub = joined
    for seq in range(1, 4):
        pub.publish("tlm.a", seq)  # topics now: warmup, a
    pub.publish("tlm.b", 0)  # evicts warmup
    pub.publish("tlm.c", 0)  # evicts a
    pub.publish("tlm.a", 99)  # evicts b; "a" is numbered from 1 again
    assert pub.evicted_topics == 3
    got: list[Any] = []
    while not got or got[-1].value != 99:
        msg = sub.recv(timeout=10.0)
        assert msg is not None, "message lost on loopback"
        if msg.topic != "tlm.warmup":
            got.append(msg)
    assert [(m.topic, m.seq) for m in got] == [
        ("tlm.a", 1),
        ("tlm.a", 2),
        ("tlm.a", 3),
        ("tlm.b", 1),
        ("tlm.c", 1),
        ("tlm.a", 1),
    ]
    assert sub.gaps == {}
    assert sub.counter.restarts == {"script": 1}


class _Stuck:
    """Deferred handlers whose futures complete only when the test says so: work that has
    started (stuck in a driver call) or, with `started=False`, work still queued."""

    def __init__(self, started: bool = True) -> None:
        self.futures: list[concurrent.futures.Future[object]] = []
        self.arrived = threading.Semaphore(0)
        self.started = started

    def handler(self, request: Request) -> concurrent.futures.Future[object]:
        future: concurrent.futures.Future[object] = concurrent.futures.Future()
        if self.started:
            assert future.set_running_or_notify_cancel()
        self.futures.append(future)
        self.arrived.release()
        return future


def _in_thread(client: CommandClient, name: str) -> concurrent.futures.Future[Reply]:
    pool = concurrent.futures.ThreadPoolExecutor(1)
    future = pool.submit(
        lambda: client.request("pulser", "get", {"name": name}, timeout=70.0, retries=0)
    )
    pool.shutdown(wait=False)
    return future


def test_stuck_deferred_requests_time_out_and_free_their_slots(settings, ctx) -> None:
    clock = ManualClock()
    stuck = _Stuck()
    srv = CommandServer(
        "drivers",
        replace(settings, max_in_flight=2, deferred_timeout=60.0),
        context=ctx,
        clock=clock,
    )
    srv.register("pulser", "get", stuck.handler, deferred=True)
    srv.register("pulser", "status", lambda r: concurrent.futures.Future(), deferred=True)
    done: concurrent.futures.Future[object] = concurrent.futures.Future()
    done.set_result("fine")
    srv.register("pulser", "describe", lambda r: done, deferred=True)
    srv.bind("tcp://127.0.0.1:0")
    srv.start()
    try:
        with (
            CommandClient(settings, srv.endpoint, context=ctx) as a,
            CommandClient(settings, srv.endpoint, context=ctx) as b,
            CommandClient(settings, srv.endpoint, context=ctx) as c,
        ):
            replies = [_in_thread(a, "one"), _in_thread(b, "two")]
            for _ in replies:
                assert stuck.arrived.acquire(timeout=10.0)
            busy = c.request("pulser", "get", {"name": "three"}, timeout=10.0, retries=0)
            assert busy.code == "busy"
            clock.advance(59.0)
            srv.check_deadlines()
            assert c.call("drivers", "ping", {})  # the loop answers; nothing expired yet
            assert srv.in_flight == 2
            clock.advance(2.0)
            srv.check_deadlines()
            for reply in replies:
                r = reply.result(timeout=10.0)
                assert (r.ok, r.code) == (False, "timeout")
            assert srv.in_flight == 0
            # Slots are free again; the stuck handlers finish late and are not answered twice.
            for future in stuck.futures:
                future.set_result({"value": 1.0})
            ok = c.request("pulser", "describe", {}, timeout=10.0, retries=0)
            assert ok.ok and ok.value == "fine"
            stats = srv.stats
            assert stats["timeouts"] == 2 and stats["late_results"] == 2
            assert stats["requests"] == 5  # the late results were dropped, not answered
            assert a.bad_replies == b.bad_replies == 0
    finally:
        srv.close()


def _stuck_server(
    settings: BusSettings, ctx: zmq.Context, deferred_timeout: float, started: bool = True
) -> tuple[ManualClock, _Stuck, CommandServer]:
    """A running server on a manual clock whose `pulser.get` never completes by itself."""
    clock = ManualClock()
    stuck = _Stuck(started)
    srv = CommandServer(
        "drivers", replace(settings, deferred_timeout=deferred_timeout), context=ctx, clock=clock
    )
    srv.register("pulser", "get", stuck.handler, deferred=True)
    srv.bind("tcp://127.0.0.1:0")
    srv.start()
    return clock, stuck, srv


def test_a_deferred_request_lives_as_long_as_its_sender_waits(settings, ctx) -> None:
    """The request's `ttl_s` (the client's timeout) bounds work not yet started below the
    server-wide bound; such work is cancelled, never started late."""
    clock, stuck, srv = _stuck_server(settings, ctx, deferred_timeout=60.0, started=False)
    pool = concurrent.futures.ThreadPoolExecutor(1)
    try:
        with (
            CommandClient(settings, srv.endpoint, context=ctx) as a,
            CommandClient(settings, srv.endpoint, context=ctx) as b,
        ):
            reply = pool.submit(
                lambda: a.request("pulser", "get", {"name": "x"}, timeout=8.0, retries=0)
            )
            assert stuck.arrived.acquire(timeout=10.0)
            clock.advance(7.0)
            srv.check_deadlines()
            assert b.call("drivers", "ping", {})  # the loop answers; nothing expired yet
            assert srv.in_flight == 1  # 7 s < 8 s: still running
            clock.advance(1.5)
            srv.check_deadlines()
            r = reply.result(timeout=10.0)
            assert (r.code, r.message) == (
                "timeout",
                "drivers: not started within 8 s; not applied",
            )
            assert srv.in_flight == 0 and srv.stats["timeouts"] == 1
            assert stuck.futures[0].cancelled()  # its worker will never start it
    finally:
        pool.shutdown(wait=False)
        srv.close()


def test_deadlines_are_checked_without_a_wake_up(settings, ctx) -> None:
    """The socket thread looks at the deadlines by itself (its receive timeout)."""
    clock, stuck, srv = _stuck_server(settings, ctx, deferred_timeout=5.0)
    try:
        with CommandClient(settings, srv.endpoint, context=ctx) as a:
            reply = _in_thread(a, "one")
            assert stuck.arrived.acquire(timeout=10.0)
            clock.advance(6.0)
            r = reply.result(timeout=10.0)
            assert r.code == "timeout" and srv.stats["timeouts"] == 1
    finally:
        srv.close()


def test_pool_handler_overrunning_its_deadline_times_out(settings, ctx) -> None:
    clock = ManualClock()
    release = threading.Event()
    started = threading.Event()

    def slow(request: Request) -> str:
        started.set()
        release.wait(30.0)
        return "late"

    srv = CommandServer(
        "drivers", replace(settings, deferred_timeout=5.0), context=ctx, clock=clock
    )
    srv.register("pulser", "get", slow)
    srv.bind("tcp://127.0.0.1:0")
    srv.start()
    try:
        with CommandClient(settings, srv.endpoint, context=ctx) as a:
            reply = _in_thread(a, "one")
            assert started.wait(10.0)
            clock.advance(6.0)
            srv.check_deadlines()
            assert reply.result(timeout=10.0).code == "timeout"
            release.set()
            assert a.call("drivers", "ping", {})
    finally:
        release.set()
        srv.close()


def test_settings_refuse_unbounded_values() -> None:
    for bad in ({"deferred_timeout": 0.0}, {"max_topics": 0}, {"forget_after": -1.0}):
        with pytest.raises(ValueError):
            BusSettings(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        GapCounter(0)
    assert zmq.RCVTIMEO  # the server's sweep relies on the receive timeout
