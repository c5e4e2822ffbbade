"""10,000 malformed frames: each gets a structured error (commands) or a counted drop
(pub/sub); nothing raises out of a socket loop, and the server still answers afterwards."""

from __future__ import annotations

from dataclasses import replace

import msgpack
from hypothesis import HealthCheck, given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from ionpilot.bus import ERROR_CODES, Codec, CommandClient, CommandServer, Subscriber

MAX_BYTES = 2048
BATCH = 100
EXAMPLES = 100  # x BATCH = 10,000 frames
VALID = {"id": 1, "method": "get", "target": "drivers", "args": {}, "client": "fuzz"}

plain = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=4), kids, max_size=3)
    ),
    max_leaves=4,
)
# VALID itself is refused (`drivers` serves no `get`), so a replacement of the same type
# still has to come back as an error: no filtering needed.
wrong_field = st.tuples(st.sampled_from(sorted(VALID)), plain).map(
    lambda kv: msgpack.packb({**VALID, kv[0]: kv[1]})
)
frame = st.one_of(
    st.binary(max_size=64),  # random bytes
    st.integers(1, 40).map(lambda n: msgpack.packb(VALID)[:n]),  # truncated msgpack
    wrong_field,  # wrong types
    plain.map(msgpack.packb),  # not a request map at all
    st.integers(MAX_BYTES + 1, 3 * MAX_BYTES).map(
        lambda n: msgpack.packb({**VALID, "args": {"blob": b"x" * n}})
    ),  # oversized
    st.text(min_size=1, max_size=12)
    .filter(lambda m: m not in {"ping", "list"})
    .map(lambda m: msgpack.packb({**VALID, "method": m})),  # unknown methods
    st.one_of(st.integers(2**63, 2**64 - 1), st.integers(-(2**63), -1), st.text(max_size=300)).map(
        lambda i: msgpack.packb({**VALID, "id": i})
    ),  # huge (or otherwise bad) ids
    st.just(msgpack.packb(msgpack.ExtType(3, b"\x00")))  # extension types
    | st.just(msgpack.packb({**VALID, "args": {"name": "__class__"}})),  # private names
)
envelope = st.sampled_from(  # routing frames between the identity and the payload
    [[], [], [], [b""], [b"hop"], [b"x" * 300], [b""] * 9, [b"a", b""]]
)


def check_reply(codec: Codec, frames: list[bytes] | None, server: CommandServer) -> None:
    if frames is None:  # nothing to route an answer to: must have been counted
        return
    reply = codec.decode_reply(frames[-1])
    assert reply.ok is False and reply.code in ERROR_CODES, reply


def test_ten_thousand_malformed_frames(settings, ctx, dead_endpoint):
    small = replace(settings, max_message_bytes=MAX_BYTES)
    server = CommandServer("drivers", small, context=ctx)
    endpoint = server.bind("tcp://127.0.0.1:0")
    codec = Codec(MAX_BYTES)
    seen = {"frames": 0}
    subscriber = Subscriber(small, connect=dead_endpoint, context=ctx)

    @hyp_settings(
        max_examples=EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.lists(st.tuples(envelope, frame), min_size=BATCH, max_size=BATCH))
    def batch(items):
        for extra, payload in items:
            seen["frames"] += 1
            before = server.stats["bad_frames"]
            frames = [b"\x00peer", *extra, payload]
            reply = server.handle_frames(frames)
            check_reply(codec, reply, server)
            if reply is None:
                assert server.stats["bad_frames"] == before + 1
            # the same bytes published on the bus: a counted drop, never an exception
            drops = subscriber.bad_frames
            assert subscriber.handle_frames([b"tlm.fuzz.x", payload]) is None
            assert subscriber.bad_frames == drops + 1

    batch()
    assert seen["frames"] == EXAMPLES * BATCH
    subscriber.close()

    # A real-socket portion, then a valid request over the same socket.
    import zmq

    server.start()
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(endpoint)
    garbage = [b"", b"\xc1", msgpack.packb([1, 2]), msgpack.packb({**VALID, "id": 2**64 - 1})]
    garbage += [msgpack.packb({**VALID, "method": "eval"}), b"\x92" * 3000]
    for _ in range(50):
        for g in garbage:
            dealer.send(g)
    answered = 0
    while answered < 50 * len(garbage):
        assert dealer.poll(10_000), "server stopped answering"
        reply = codec.decode_reply(dealer.recv_multipart()[-1])
        assert not reply.ok and reply.code in ERROR_CODES
        answered += 1
    dealer.close()
    with CommandClient(small, endpoint, context=ctx) as client:
        assert client.call("drivers", "ping")["process"] == "drivers"
    server.close()
