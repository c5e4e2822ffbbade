"""The socket loops' fast paths answer exactly as the general paths do.

The server's socket loop and `CommandClient.request` write the common case out inline (for
latency); anything unusual falls back to the general decoder and dispatcher. Generated request
maps (valid ones and every kind of near miss) are sent through a running server's socket and
the replies compared with `handle_frames` on an identical server, field by field.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from ionpilot.bus import BusError, BusSettings, Codec, CommandClient, CommandServer
from ionpilot.bus.codec import Reply, Request
from ionpilot.core.clock import ManualClock

MAX_BYTES = 4096
MISSING = object()


def echo(request: Request) -> Any:
    return {"name": request.args.get("name"), "client": request.client, "n": len(request.args)}


def refuse(request: Request) -> Any:
    if request.args.get("value", 0) > 10:
        raise BusError("out_of_limits", "value above 10")
    return request.args.get("value")


def broken(request: Request) -> Any:
    raise RuntimeError("handler bug")


def unencodable(request: Request) -> Any:
    return object() if request.args.get("name") == "object" else b"x" * (2 * MAX_BYTES)


def build(settings: BusSettings, ctx: zmq.Context) -> CommandServer:
    server = CommandServer("drivers", settings, context=ctx, clock=ManualClock())
    server.register("rf_drive", "get", echo, inline=True)
    server.register("rf_drive", "set", refuse, inline=True)
    server.register("rf_drive", "describe", broken, inline=True)
    server.register("rf_drive", "call", unencodable, inline=True)
    return server


@pytest.fixture
def pair(settings: BusSettings, ctx: zmq.Context) -> Iterator[tuple[CommandServer, Any]]:
    small = replace(settings, max_message_bytes=MAX_BYTES)
    running = build(small, ctx)
    endpoint = running.bind("tcp://127.0.0.1:0")
    running.start()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(endpoint)
    yield build(small, ctx), dealer
    dealer.close()
    running.close()


scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=6)
)
names = st.sampled_from(["frequency", "_secret", "__class__", "object", "big"])
arg_value = st.one_of(
    names, names, scalar, st.lists(scalar, max_size=2), st.just(msgpack.ExtType(3, b"\x00"))
)
# Each field: (mostly) what a real client sends, or a near miss of the right or wrong type.
fields: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "id": (
        st.integers(0, 2**63 - 1),
        st.integers(2**63, 2**64 - 1) | st.integers(-5, -1) | scalar,
    ),
    "method": (
        st.sampled_from(["get", "set", "call", "describe", "ping", "list"]),
        st.sampled_from(["eval", "", "x" * 33]) | st.text(max_size=8) | st.integers(0, 9),
    ),
    "target": (
        st.sampled_from(["drivers", "rf_drive"]),
        st.sampled_from(["nobody", "nobody", "", "x" * 129])
        | st.lists(st.integers(0, 9), max_size=2),
    ),
    "args": (
        st.dictionaries(st.sampled_from(["name", "value", "x"]), arg_value, max_size=3),
        st.lists(scalar, max_size=2) | scalar | st.just({"k": {"deep": [[[[]]]]}}),
    ),
    "client": (
        st.sampled_from(["", "pytest", "x" * 128]),
        st.sampled_from(["x" * 129]) | st.integers(0, 9) | st.none(),
    ),
    "ttl_s": (
        st.floats(1e-3, 86_400.0) | st.integers(1, 86_400),
        st.sampled_from([0, -1, 0.0, math.nan, math.inf, 86_401, 1e9, True, "5", None, [1]]),
    ),
}
valid = st.fixed_dictionaries({key: ok for key, (ok, _) in fields.items()})
near_miss = st.tuples(
    valid, st.sampled_from(sorted(fields)).flatmap(lambda k: st.tuples(st.just(k), fields[k][1]))
).map(lambda v: {**v[0], v[1][0]: v[1][1]})
missing = st.tuples(valid, st.sampled_from(sorted(fields))).map(
    lambda v: {k: x for k, x in v[0].items() if k != v[1]}
)
frame = st.one_of(
    valid.map(msgpack.packb),
    valid.map(msgpack.packb),
    valid.map(msgpack.packb),
    valid.map(lambda m: msgpack.packb({**m, "extra": 1})),
    near_miss.map(msgpack.packb),
    missing.map(msgpack.packb),
    st.binary(max_size=24),
    st.just(b""),
)


def same(a: Reply, b: Reply) -> bool:
    if (a.id, a.ok, a.code, a.message) != (b.id, b.ok, b.code, b.message):
        return False
    if isinstance(a.value, float) and isinstance(b.value, float):
        return a.value == b.value or (math.isnan(a.value) and math.isnan(b.value))
    return bool(a.value == b.value)


def test_socket_fast_path_answers_like_the_general_path(pair):
    general, dealer = pair
    codec = Codec(MAX_BYTES)
    outcomes: dict[str, int] = {}

    @hyp_settings(
        max_examples=60,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(frame, min_size=20, max_size=20))
    def batch(payloads):
        compare(payloads)

    def compare(payloads):
        for payload in payloads:
            dealer.send(payload)
        for payload in payloads:
            assert dealer.poll(10_000), "server stopped answering"
            fast = codec.decode_reply(dealer.recv())
            expected = general.handle_frames([b"\x00peer", payload])
            assert expected is not None
            slow = codec.decode_reply(expected[-1])
            assert same(fast, slow), (msgpack.unpackb(payload, strict_map_key=False), fast, slow)
            key = "ok" if fast.ok else fast.code
            outcomes[key] = outcomes.get(key, 0) + 1

    base = {"id": 5, "method": "get", "target": "rf_drive", "args": {}, "client": "c"}
    compare(  # one of each outcome for certain, then the generated ones
        [
            msgpack.packb(base),
            msgpack.packb({**base, "args": {"name": "_private"}}),
            msgpack.packb({**base, "method": "set", "args": {"value": 11}}),
            msgpack.packb({**base, "method": "describe"}),
            msgpack.packb({**base, "target": "nobody"}),
            msgpack.packb({**base, "method": "eval"}),
            msgpack.packb({**base, "id": -1}),
        ]
    )
    batch()
    # every branch was taken: successes, refusals, failures, bad requests, unknown names
    assert outcomes.get("ok", 0) > 50, outcomes
    for code in (
        "bad_request",
        "forbidden",
        "out_of_limits",
        "internal",
        "unknown_target",
        "unknown_method",
    ):
        assert outcomes.get(code, 0) >= 1, outcomes


def test_client_fast_path_reports_like_the_general_path(settings, ctx):
    """Successes, refusals, bad arguments and unencodable results through `request`."""
    server = build(replace(settings, max_message_bytes=MAX_BYTES), ctx)
    endpoint = server.bind("tcp://127.0.0.1:0")
    server.start()
    small = replace(settings, max_message_bytes=MAX_BYTES)
    with CommandClient(small, endpoint, context=ctx, name="pytest") as client:
        assert client.call("rf_drive", "get", {"name": "frequency"}) == {
            "name": "frequency",
            "client": "pytest",
            "n": 1,
        }
        assert client.call("rf_drive", "get", {"name": ["nested", {"ok": 1}]})["n"] == 1
        reply = client.request("rf_drive", "set", {"value": 11})
        assert (reply.ok, reply.code, reply.message) == (False, "out_of_limits", "value above 10")
        assert client.request("rf_drive", "describe").code == "internal"
        assert client.request("rf_drive", "call", {"name": "object"}).code == "internal"
        assert client.request("rf_drive", "call", {"name": "big"}).code == "internal"
        assert client.request("rf_drive", "get", {"name": "_secret"}).code == "forbidden"
        assert client.request("rf_drive", "get", {"v": object()}).code == "bad_request"
        assert client.request("rf_drive", "get", {"v": "x" * MAX_BYTES}).code == "bad_request"
        assert client.request("rf_drive", "get", [1, 2]).code == "bad_request"  # type: ignore[arg-type]
        # the receive timeout follows each call's timeout, also after the general path ran
        assert client.request("rf_drive", "set", {"value": 1}, timeout=0.5).value == 1
        assert client.request("nobody", "get", timeout=0.2).code == "unknown_target"
        assert client.call("rf_drive", "set", {"value": 2}) == 2
    server.close()
