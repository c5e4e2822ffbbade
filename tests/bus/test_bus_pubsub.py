# mypy: disable-error-code="union-attr,assignment"
"""Telemetry through the hub: order, exact loss accounting, restarts, heartbeats and staleness."""

from __future__ import annotations

from ionpilot.bus import (
    GapCounter,
    Heartbeat,
    HeartbeatPublisher,
    Liveness,
    Publisher,
    Subscriber,
    Telemetry,
)
from ionpilot.core.clock import ManualClock


def test_ordered_delivery_through_the_hub(bus, ctx, join):
    s = bus
    with Publisher(s, "drivers", context=ctx) as pub, Subscriber(s, ["tlm."], context=ctx) as sub:
        join(pub, sub)
        for i in range(2000):
            pub.publish("tlm.rf_drive.frequency", 25e6 + i, "Hz")
        got = [sub.recv(timeout=5.0) for _ in range(2000)]
    assert all(isinstance(m, Telemetry) for m in got)
    assert [m.value for m in got] == [25e6 + i for i in range(2000)]
    assert [m.seq for m in got] == list(range(1, 2001))
    assert {m.topic for m in got} == {"tlm.rf_drive.frequency"}
    assert sub.counter.total_gaps == 0 and sub.bad_frames == 0


def test_prefix_subscription_shows_no_false_gaps(bus, ctx, join):
    """Sequence numbers count per topic, so listening to one topic of many is not loss."""
    s = bus
    with Publisher(s, "drivers", context=ctx) as pub, Subscriber(s, ["tlm.a."], context=ctx) as sub:
        join(pub, sub, "tlm.a.probe")
        for i in range(300):
            pub.publish("tlm.a.x", i)
            pub.publish("tlm.b.y", i)
        got = [sub.recv(timeout=5.0) for _ in range(300)]
    assert [m.value for m in got] == list(range(300))
    assert sub.counter.total_gaps == 0


def test_gap_count_equals_messages_dropped_at_forced_high_water_marks(
    settings, ctx, join, settings_of
):
    """A subscriber that does not read while the publisher floods: ZeroMQ drops at the
    high-water marks, the publisher never blocks, and the gaps count exactly what is missing."""
    from dataclasses import replace

    from ionpilot.bus import Hub

    small = replace(settings, high_water_mark=20)
    with Hub(small, ctx) as hub:
        s = settings_of(small, hub)
        pub = Publisher(s, "drivers", context=ctx, send_hwm=20)
        sub = Subscriber(s, ["tlm."], context=ctx, recv_hwm=20)
        join(pub, sub)
        n = 100_000
        for i in range(n):  # returns although nobody reads: PUB drops instead of blocking
            pub.publish("tlm.flood.x", i)
        seqs: list[int] = []
        for msg in sub.drain(max_messages=n):
            if msg.topic == "tlm.flood.x":
                seqs.append(msg.seq)
        # The tail of the flood may be lost too, and a gap is only visible once a later
        # message arrives: send markers until one gets through.
        marker = None
        while marker is None:
            pub.publish("tlm.flood.x", -1)
            msg = sub.recv(timeout=0.01)  # a wait for the marker to travel, not a sync
            while msg is not None:
                if msg.topic == "tlm.flood.x":
                    seqs.append(msg.seq)
                    if msg.value == -1:
                        marker = msg.seq
                msg = sub.recv(timeout=0.0)
        pub.close()
        sub.close()
    first, last = seqs[0], seqs[-1]
    missing = set(range(first, last + 1)) - set(seqs)
    assert len(missing) > 0, "the high-water marks did not force any drop"
    assert sub.counter.total_gaps == len(missing)
    assert sub.counter.gaps == {"drivers": len(missing)}  # probes were never dropped
    assert len(seqs) + sub.counter.total_gaps == last - first + 1
    assert seqs == sorted(seqs)


def test_gap_counter_counts_restarts_not_gaps():
    c = GapCounter()
    for seq in (1, 2, 5, 6, 1, 2, 4):
        c.observe("sim", "tlm.sim.x", seq)
    assert c.gaps == {"sim": 2 + 1}
    assert c.restarts == {"sim": 1}
    assert c.received == {"sim": 7}


def test_publisher_restart_through_the_hub(bus, ctx, join):
    s = bus
    with Subscriber(s, ["tlm."], context=ctx) as sub:
        for run in range(2):
            with Publisher(s, "sim", context=ctx) as pub:
                # a probe topic of its own per run: how many probes the slow joiner loses
                # varies, and a later first probe would hide that stream's restart
                join(pub, sub, f"tlm.warmup.probe{run}")
                for i in range(5):
                    pub.publish("tlm.sim.x", i)
                for _ in range(5):
                    assert sub.recv(timeout=5.0) is not None
    # the data topic of the restarted publisher started again from 1: a restart, not a gap
    assert sub.counter.restarts.get("sim") == 1
    assert sub.counter.gaps.get("sim", 0) == 0


def test_liveness_on_a_virtual_clock():
    clock = ManualClock()
    live = Liveness(stale_after=3.0, clock=clock)
    live.expect("daemon", "drivers")
    assert live.stale() == ["daemon", "drivers"]  # never heard from: stale
    live.beat("daemon")
    clock.advance(2.9)
    live.beat("drivers")
    assert live.stale() == []
    clock.advance(0.2)
    assert live.stale() == ["daemon"] and not live.is_stale("drivers")
    assert abs(live.age("daemon") - 3.1) < 1e-9
    clock.advance(3.0)
    assert live.stale() == ["daemon", "drivers"]


def test_heartbeats_over_the_bus_and_staleness(bus, ctx, join):
    s = bus
    clock = ManualClock()
    beats = HeartbeatPublisher(s, "daemon", clock=clock, context=ctx)
    with Subscriber(s, ["hb."], clock=clock, context=ctx) as sub:
        sub.liveness.expect("daemon")
        got = None
        while got is None:  # slow joiner: beat until one arrives
            beats.beat()
            got = sub.recv(timeout=0.01)
        assert isinstance(got, Heartbeat) and got.topic == "hb.daemon" and got.period == 1.0
        assert sub.stats()["stale"] == []
        clock.advance(3.5)
        assert sub.stats()["stale"] == ["daemon"]
        beats.beat()
        assert sub.recv(timeout=5.0) is not None
        assert sub.liveness.stale() == []
    beats.stop()


def test_malformed_publications_are_counted_not_raised(bus, hub, ctx, join):
    import zmq

    s = bus
    rogue = ctx.socket(zmq.PUB)
    rogue.connect(hub.publish_endpoint)
    with Publisher(s, "drivers", context=ctx) as pub, Subscriber(s, [""], context=ctx) as sub:
        join(pub, sub)
        bad = [
            [b"tlm.x", b"\xc1"],
            [b"tlm.x", b"not msgpack at all"],
            [b"tlm.x"],
            [b"tlm.x", b"\x80", b"extra"],
            [b"tlm. bad topic", b"\x80"],
            [b"hb.x", b"\x81\xa3seq\xff"],
        ]
        while sub.bad_frames < len(bad):
            for frames in bad:
                rogue.send_multipart(frames)
            sub.recv(timeout=0.05)
        pub.publish("tlm.after.ok", 1)
        msg = sub.recv(timeout=5.0)
        while msg is not None and msg.topic != "tlm.after.ok":
            msg = sub.recv(timeout=5.0)
        assert msg is not None and msg.value == 1
    rogue.close()
