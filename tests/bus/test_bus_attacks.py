"""Issue 19: attacks on the bus that must not work (each fails on the code before the fix).

Finding 1: frames nested past msgpack's C stack (1 kB each) leaked ~80 kB per decode in every
command server and subscriber. Finding 8: a set that had started was answered `timeout`. Finding
9: NaN, infinity and 100 kB strings passed as valid telemetry."""

from __future__ import annotations

import concurrent.futures
import gc
import os
import subprocess
import sys
import threading
from dataclasses import replace

import msgpack
import pytest
import zmq

from ionpilot.bus import BusError, CommandServer, Publisher, Subscriber
from ionpilot.bus.codec import Codec, DecodeError, Request, check_depth

DEEP = b"\x91" * 1100 + b"\xc0"  # a list in a list ... 1,100 deep: 1,101 bytes
FRAMES = 1000  # enough to show ~80 MB per 1,000 on the C decoder, little enough to be quick
RSS_BOUND = 10e6


def _rss() -> int:
    """Resident bytes of this process now (Linux)."""
    gc.collect()
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.parametrize(
    "frame",
    [DEEP, b"\x81\xa1a" * 600 + b"\xc0", b"\xdc\x00\x01" * 700 + b"\xc0"],
    ids=["arrays", "maps", "array16"],
)
def test_deep_frames_are_refused_before_the_c_decoder(monkeypatch, frame) -> None:
    def never(data: bytes) -> object:
        raise AssertionError("msgpack saw a deep frame")

    monkeypatch.setattr("ionpilot.bus.codec._msgpack_unpackb", never)
    codec = Codec()
    for decode in (codec.decode_request, codec.decode_reply, codec.decode_telemetry):
        with pytest.raises(DecodeError, match="nested more than"):
            decode(frame)
    with pytest.raises(DecodeError):
        codec.decode_message(b"hb.x", frame)


def test_the_depth_walk_accepts_what_a_bus_message_may_hold() -> None:
    nested: object = 1.5
    for _ in range(30):
        nested = [nested, {"k": "v" * 40}, b"\x91" * 20]
    wide = {"value": [[float(i), "\x80" * 3] for i in range(2000)], "seq": 1}
    for value in (nested, wide):
        data = msgpack.packb(value, use_bin_type=True)
        assert len(data) - len(data.translate(None, bytes(range(0x80, 0xA0)))) > 512
        check_depth(data)  # walked (many header-like bytes), accepted
        assert msgpack.unpackb(data) is not None
    with pytest.raises(DecodeError, match="not msgpack"):
        check_depth(b"\xdc\x03\x00" + b"\x80" * 600)  # 768 items announced, 600 there


def test_deep_frames_do_not_grow_a_command_server(settings, ctx) -> None:
    srv = CommandServer("victim", settings, context=ctx)
    srv.bind("tcp://127.0.0.1:0")
    srv.start()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(srv.endpoint)
    try:
        for _ in range(50):  # warm up: buffers, caches
            dealer.send(DEEP)
            assert dealer.poll(5000)
            dealer.recv()
        before = _rss()
        for _ in range(FRAMES):
            dealer.send(DEEP)
            assert dealer.poll(5000)
            reply = msgpack.unpackb(dealer.recv())
            assert reply["ok"] is False and reply["error"]["code"] == "bad_request"
        grown = _rss() - before
        assert srv.stats["bad_frames"] == FRAMES + 50
    finally:
        dealer.close()
        srv.close()
    assert grown < RSS_BOUND, f"{FRAMES} deep frames grew the server by {grown / 1e6:.0f} MB"


def test_deep_frames_through_the_hub_do_not_grow_a_subscriber(bus, ctx, hub, join) -> None:
    s = bus
    with Subscriber(s, ["tlm."], context=ctx) as sub, Publisher(s, "src", context=ctx) as pub:
        join(pub, sub)
        raw = ctx.socket(zmq.PUB)
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(hub.publish_endpoint)
        try:
            join(pub, sub)  # the raw socket has joined once a later probe arrives
            before = _rss()
            sent = 0
            while sent < FRAMES:
                raw.send_multipart([b"tlm.forged.deep", DEEP])
                sent += 1
            pub.publish("tlm.end.marker", 1)
            while sub.recv(timeout=5.0) is not None:
                if sub.bad_frames >= FRAMES:
                    break
            grown = _rss() - before
        finally:
            raw.close()
    assert sub.bad_frames >= FRAMES * 0.9  # a few may be dropped by the HWM, none decoded
    assert grown < RSS_BOUND, f"{FRAMES} deep frames grew the subscriber by {grown / 1e6:.0f} MB"


@pytest.mark.parametrize(
    "value",
    [float("nan"), float("inf"), -float("inf"), "x" * 100_000, {"text": "x" * 100_000}],
    ids=["nan", "inf", "-inf", "100kB-text", "100kB-field"],
)
def test_values_that_cannot_be_are_not_telemetry(value) -> None:
    codec = Codec()
    frame = codec.pack({"seq": 1, "t": 1, "src": "forger", "value": value, "status": "OK"})
    with pytest.raises(DecodeError):
        codec.decode_telemetry(frame)


def test_a_nan_reading_travels_only_as_invalid(bus, ctx, join) -> None:
    s = bus
    with Subscriber(s, ["tlm."], context=ctx) as sub, Publisher(s, "src", context=ctx) as pub:
        join(pub, sub)
        pub.publish("tlm.src.reading", float("nan"))
        msg = sub.recv(timeout=5.0)
        assert msg is not None and msg.status == "INVALID"  # type: ignore[union-attr]
        with pytest.raises(ValueError):
            pub.publish("tlm.src.reading", "x" * 100_000)


def test_a_set_that_started_reports_its_outcome_not_a_timeout(settings, ctx) -> None:
    """`ttl_s` 0.001: the set starts (its worker marks it running) and takes 50 ms; the reply
    is its outcome. Work that had not started by then would have been cancelled instead."""
    applied: list[float] = []
    release = threading.Event()

    def set_power(request: Request) -> concurrent.futures.Future[object]:
        future: concurrent.futures.Future[object] = concurrent.futures.Future()
        assert future.set_running_or_notify_cancel()

        def work() -> None:
            release.wait(5.0)
            applied.append(float(request.args["value"]))
            future.set_result({"name": "power", "value": applied[-1]})

        threading.Thread(target=work).start()
        return future

    srv = CommandServer("drivers", replace(settings, deferred_timeout=60.0), context=ctx)
    srv.register("rf_drive", "set", set_power, deferred=True)
    srv.bind("tcp://127.0.0.1:0")
    srv.start()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(srv.endpoint)
    try:
        request = {"id": 7, "method": "set", "target": "rf_drive", "client": "attacker"}
        request["args"] = {"name": "power", "value": -2.0}
        request["ttl_s"] = 0.001
        dealer.send(msgpack.packb(request))
        assert not dealer.poll(100)  # well past its ttl_s: no `timeout` for started work
        srv.check_deadlines()
        assert not dealer.poll(100)
        release.set()
        assert dealer.poll(5000)
        reply = msgpack.unpackb(dealer.recv())
    finally:
        release.set()
        dealer.close()
        srv.close()
    assert reply["ok"] is True and reply["value"]["value"] == -2.0 and applied == [-2.0]


ATTACKER = """
import sys, time, msgpack, zmq
sock = zmq.Context.instance().socket(zmq.PUB)
sock.setsockopt(zmq.LINGER, 2000)
sock.connect(sys.argv[1])
time.sleep(0.3)  # the attacker's own pace; nothing in the test waits on it
frame = msgpack.packb({"seq": 1, "t": 1, "src": "big", "value": b"x" * 1_000_000})
for _ in range(200):
    sock.send_multipart([b"tlm.big.blob", frame])
sock.close()
"""


def test_pubsub_queues_are_bounded_in_bytes(bus, ctx, hub, join) -> None:
    """Finding 5: 10,000 queued 1 MB messages per slow subscriber (10 GiB). Now a pub/sub
    message is at most `max_publish_bytes` and a queue at most `max_queued_bytes` of them."""
    s = bus
    assert s.pubsub_hwm * s.pubsub_bytes <= s.max_queued_bytes == 256 * 2**20
    with Subscriber(s, ["tlm."], context=ctx) as sub, Publisher(s, "src", context=ctx) as pub:
        assert sub.socket.getsockopt(zmq.RCVHWM) == s.pubsub_hwm == 4096
        join(pub, sub)
        with pytest.raises(BusError, match="exceeds"):
            pub.publish("tlm.src.blob", b"x" * (s.max_publish_bytes + 1))
        before = _rss()
        attacker = subprocess.run(  # its own send queue is its own memory, not the hub's
            [sys.executable, "-c", ATTACKER, hub.publish_endpoint],
            check=False,
            timeout=60,
            capture_output=True,
            text=True,
        )
        assert attacker.returncode == 0, attacker.stderr
        pub.publish("tlm.src.after", 1)
        got = []
        while (msg := sub.recv(timeout=0.5)) is not None:
            got.append(msg.topic)
        grown = _rss() - before
    assert "tlm.big.blob" not in got and "tlm.src.after" in got
    assert grown < RSS_BOUND
