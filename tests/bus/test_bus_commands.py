"""Commands: whitelisted dispatch, structured errors, timeouts, retries, concurrency, clients."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace

import pytest
import zmq

from ionpilot.bus import (
    AsyncCommandClient,
    BusError,
    BusSettings,
    Codec,
    CommandClient,
    CommandServer,
    Directory,
    HeartbeatPublisher,
    ProcessSettings,
    Reply,
    Request,
    Subscriber,
)

MAX_IN_FLIGHT = 150


@pytest.fixture
def release():
    gate = threading.Event()
    yield gate
    gate.set()  # never leave a blocked handler behind


@pytest.fixture
def server(settings, ctx, release):
    srv = CommandServer("drivers", replace(settings, max_in_flight=MAX_IN_FLIGHT), context=ctx)
    srv.bind("tcp://127.0.0.1:0")
    state = {"frequency": 25e6, "reads": 0}

    def get(req: Request):
        state["reads"] += 1
        return state[req.args["name"]]

    def set_(req: Request):
        value = req.args["value"]
        if not 20e6 <= value <= 40e6:
            raise BusError("out_of_limits", f"{value} Hz outside 20-40 MHz")
        state[req.args["name"]] = value
        return value

    def slow_get(req: Request):
        state["reads"] += 1
        release.wait(30)
        return "late"

    async def async_echo(req: Request):
        await asyncio.sleep(0)
        return req.args

    def broken(req: Request):
        raise RuntimeError("driver bug")

    srv.register("rf_drive", "get", get, inline=True)
    srv.register("rf_drive", "set", set_)
    srv.register("slow", "get", slow_get)
    srv.register("slow", "set", slow_get)
    srv.register("echo", "call", async_echo)
    srv.register("broken", "call", broken)
    srv.state = state  # type: ignore[attr-defined]
    srv.start()
    yield srv
    release.set()
    srv.close()


@pytest.fixture
def client(settings, server, ctx):
    with CommandClient(settings, server.endpoint, context=ctx, name="pytest") as c:
        yield c


def test_get_set_and_structured_refusals(client, server):
    assert client.call("rf_drive", "get", {"name": "frequency"}) == 25e6
    assert client.call("rf_drive", "set", {"name": "frequency", "value": 30e6}) == 30e6
    assert client.call("rf_drive", "get", {"name": "frequency"}) == 30e6
    refused = client.request("rf_drive", "set", {"name": "frequency", "value": 41e6})
    assert (refused.ok, refused.code) == (False, "out_of_limits")
    assert server.state["frequency"] == 30e6  # nothing applied when refused
    assert client.request("nobody", "get").code == "unknown_target"
    assert client.request("rf_drive", "call").code == "unknown_method"
    assert client.request("rf_drive", "__class__").code == "unknown_method"
    assert client.request("rf_drive", "get", {"name": "__dict__"}).code == "forbidden"
    failed = client.request("broken", "call")
    assert failed.code == "internal" and "driver bug" in failed.message
    assert client.call("echo", "call", {"x": [1, 2]}) == {"x": [1, 2]}
    assert client.call("drivers", "ping")["process"] == "drivers"
    assert "rf_drive" in client.call("drivers", "list")
    with pytest.raises(BusError) as info:
        client.call("rf_drive", "set", {"name": "frequency", "value": 1.0})
    assert info.value.code == "out_of_limits"


def test_timeouts_are_reported_and_only_reads_are_retried(client, server):
    reads = server.state["reads"]
    reply = client.request("slow", "get", timeout=0.05, retries=1)
    assert (reply.ok, reply.code) == (False, "timeout")
    assert "2 attempt(s)" in reply.message
    reply = client.request("slow", "set", {"name": "x", "value": 1}, timeout=0.05, retries=3)
    assert reply.code == "timeout" and "1 attempt(s)" in reply.message
    assert client.call("rf_drive", "get", {"name": "frequency"}) == 25e6  # still serving
    # two attempts of the read + one of the set reached the handler, the fast read too
    assert server.state["reads"] - reads == 4


def test_timeout_without_any_server(settings, ctx, dead_endpoint):
    with CommandClient(settings, dead_endpoint, context=ctx) as c:
        reply = c.request("x", "set", {"value": 1}, timeout=0.05)
    assert reply.code == "timeout"


def test_busy_beyond_max_in_flight(settings, server, ctx):
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(server.endpoint)
    codec = Codec()
    for i in range(MAX_IN_FLIGHT + 2):
        dealer.send(codec.encode_request(Request(i + 1, "get", "slow")))
    replies = [codec.decode_reply(dealer.recv()) for _ in range(2)]
    assert {r.code for r in replies} == {"busy"}
    assert {r.id for r in replies} == {MAX_IN_FLIGHT + 1, MAX_IN_FLIGHT + 2}
    dealer.close()


def test_socket_loop_answers_envelopes_and_garbage_then_still_serves(settings, server, ctx):
    """The loop's fast path takes [identity, payload]; anything longer goes the general way."""
    assert server.endpoint.startswith("tcp://127.0.0.1:")  # not the internal wake-up address
    codec = Codec()
    req = ctx.socket(zmq.REQ)  # REQ framing: an empty delimiter before the payload
    req.connect(server.endpoint)
    req.send(codec.encode_request(Request(7, "get", "rf_drive", {"name": "frequency"})))
    assert codec.decode_reply(req.recv()).value == 25e6
    req.close()
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(server.endpoint)
    dealer.send_multipart([b"x" * 300, b"junk"])  # oversized routing frame
    dealer.send(b"\xc1")  # never valid msgpack
    replies = [codec.decode_reply(dealer.recv_multipart()[-1]) for _ in range(2)]
    assert [r.code for r in replies] == ["bad_request", "bad_request"]
    dealer.send(codec.encode_request(Request(8, "get", "rf_drive", {"name": "frequency"})))
    assert codec.decode_reply(dealer.recv()).id == 8
    dealer.close()


def test_many_clients_concurrently_while_a_handler_is_slow(settings, server, ctx, bus, release):
    """One slow request blocks neither other clients nor the process's heartbeats."""
    slow = CommandClient(settings, server.endpoint, context=ctx)
    slow_reply: list = []
    t = threading.Thread(target=lambda: slow_reply.append(slow.request("slow", "get", timeout=30)))
    t.start()
    beats = HeartbeatPublisher(replace(bus, heartbeat_period=0.01), "drivers", context=ctx)
    errors: list = []

    def worker(k: int) -> None:
        with CommandClient(settings, server.endpoint, context=ctx, name=f"w{k}") as c:
            for i in range(200):
                got = c.call("echo", "call", {"k": k, "i": i})
                if got != {"k": k, "i": i}:
                    errors.append(got)

    with Subscriber(bus, ["hb."], context=ctx) as sub:
        beats.start()
        workers = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(60)
        heard = 0
        while heard < 5:  # heartbeats keep coming while the slow request is still pending
            assert sub.recv(timeout=10) is not None
            heard += 1
        assert not slow_reply
        beats.stop()
    release.set()
    t.join(10)
    slow.close()
    assert errors == [] and slow_reply[0].value == "late"


def test_async_client_many_concurrent_calls(settings, server, ctx):
    async def main():
        client = AsyncCommandClient(settings, server.endpoint, context=ctx)
        got = await asyncio.gather(*(client.call("echo", "call", {"i": i}) for i in range(100)))
        late = await client.request("slow", "get", timeout=0.05, retries=0)
        ping = await client.call("drivers", "ping")
        client.close()
        return got, late, ping

    got, late, ping = asyncio.run(main())
    assert got == [{"i": i} for i in range(100)]
    assert late.code == "timeout" and ping["process"] == "drivers"


def test_server_runs_coroutines_on_the_callers_loop(settings, ctx):
    async def main():
        loop = asyncio.get_running_loop()
        srv = CommandServer("daemon", settings, context=ctx)
        endpoint = srv.bind("tcp://127.0.0.1:0")

        async def where(req):
            return asyncio.get_running_loop() is loop

        srv.register("daemon", "status", where)
        srv.start(loop=loop)
        client = AsyncCommandClient(settings, endpoint, context=ctx)
        result = await client.call("daemon", "status")
        client.close()
        srv.close()
        return result

    assert asyncio.run(main()) is True


def test_directory_resolves_processes_and_instruments():
    procs = {"drivers": ProcessSettings(15611), "daemon": ProcessSettings(15612)}
    d = Directory.from_config("127.0.0.1", procs, ["rf_drive"])
    assert d.resolve("rf_drive") == "tcp://127.0.0.1:15611"
    assert d.resolve("daemon") == "tcp://127.0.0.1:15612"
    with pytest.raises(BusError) as info:
        d.resolve("nothing")
    assert info.value.code == "unknown_target"


def test_settings_defaults():
    s = BusSettings()
    assert (s.host, s.publish_port, s.subscribe_port) == ("127.0.0.1", 15600, 15601)
    assert (s.max_message_bytes, s.high_water_mark) == (1 << 20, 10_000)
    assert (s.heartbeat_period, s.stale_after, s.request_timeout) == (1.0, 3.0, 2.0)


def test_deferred_handlers_reply_when_their_future_completes(settings, ctx):
    """A deferred handler hands work to its own thread and returns a Future: the reply waits
    for it without holding the socket loop, failures come back structured, and nothing is
    handed over once the server is at its in-flight limit."""
    import concurrent.futures

    pending: list[concurrent.futures.Future[object]] = []
    handed_over: list[str] = []

    def deferred(request: Request) -> concurrent.futures.Future[object]:
        handed_over.append(str(request.args.get("name")))
        future: concurrent.futures.Future[object] = concurrent.futures.Future()
        pending.append(future)
        return future

    srv = CommandServer("drivers", replace(settings, max_in_flight=2), context=ctx)
    srv.register("pulser", "get", deferred, deferred=True)
    srv.bind("tcp://127.0.0.1:0")
    srv.start()
    try:
        with (
            CommandClient(settings, srv.endpoint, context=ctx) as a,
            CommandClient(settings, srv.endpoint, context=ctx) as b,
            CommandClient(settings, srv.endpoint, context=ctx) as c,
        ):
            results: dict[str, object] = {}
            threads = [
                threading.Thread(
                    target=lambda n=n, cl=cl: results.__setitem__(
                        n, cl.request("pulser", "get", {"name": n}, timeout=10.0, retries=0)
                    )
                )
                for n, cl in (("one", a), ("two", b))
            ]
            for t in threads:
                t.start()
            deadline = time.monotonic() + 10
            while len(pending) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            assert len(pending) == 2
            busy = c.request("pulser", "get", {"name": "three"}, timeout=5.0, retries=0)
            assert not busy.ok and busy.code == "busy"
            assert "three" not in handed_over  # refused before the handler was called
            assert c.call("drivers", "ping", {})  # the loop is free meanwhile
            by_name = dict(zip(handed_over, pending, strict=True))  # arrival order varies
            by_name["one"].set_result({"value": 1.5})
            by_name["two"].set_exception(BusError("instrument_timeout", "no answer"))
            for t in threads:
                t.join(10)
        one, two = results["one"], results["two"]
        assert isinstance(one, Reply) and isinstance(two, Reply)
        assert one.ok and one.value == {"value": 1.5}
        assert not two.ok and two.code == "instrument_timeout"
    finally:
        for future in pending:  # never leave a client waiting on a failed test
            if not future.done():
                future.set_result(None)
        srv.close()
