"""The schema and codec: round trips, stable error codes, and refusal of anything else."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from ionpilot.bus import (
    ERROR_CODES,
    BusError,
    Codec,
    DecodeError,
    Event,
    Heartbeat,
    Reply,
    Request,
    Telemetry,
)
from ionpilot.bus.codec import DEEP_SCAN_AT, check_topic, decode_topic, safe_unpackb


def test_error_codes_are_the_stable_list():
    assert {
        "bad_request",
        "unknown_target",
        "unknown_method",
        "out_of_limits",
        "forbidden",
        "timeout",
        "busy",
        "instrument_error",
        "instrument_timeout",
        "internal",
    } == ERROR_CODES


def test_messages_round_trip():
    codec = Codec()
    tlm = Telemetry(7, 1_700_000_000_000_000_000, "drivers", 25e6, "Hz", "MINOR")
    got = codec.decode_message(b"tlm.rf_drive.frequency", codec.encode_telemetry(tlm))
    assert got == Telemetry(7, tlm.t, "drivers", 25e6, "Hz", "MINOR", "tlm.rf_drive.frequency")
    evt = Event(1, 5, "daemon", "ion_lost", "no fluorescence", "MAJOR", {"counts": [1, 2]})
    got_evt = codec.decode_message(b"evt.daemon.ion_lost", codec.encode_event(evt))
    assert isinstance(got_evt, Event) and got_evt.data == {"counts": [1, 2]}
    beat = Heartbeat(3, 9, "daemon", 1.0)
    got_beat = codec.decode_message(b"hb.daemon", codec.encode_heartbeat(beat))
    assert isinstance(got_beat, Heartbeat) and got_beat.period == 1.0
    req = Request(42, "set", "rf_drive", {"name": "frequency", "value": 2.5e7}, "gui")
    assert codec.decode_request(codec.encode_request(req)) == req
    ok = Reply(42, True, {"a": [1, None, b"x"]})
    assert codec.decode_reply(codec.encode_reply(ok)) == ok
    bad = Reply.failure(42, "out_of_limits", "40 MHz is above 40 MHz")
    assert codec.decode_reply(codec.encode_reply(bad)) == bad
    with pytest.raises(BusError) as info:
        bad.unwrap()
    assert info.value.code == "out_of_limits"


def test_numpy_scalars_are_converted():
    codec = Codec()
    req = Request(1, "set", "dac", {"value": np.float64(1.5), "n": np.int32(3)})
    got = codec.decode_request(codec.encode_request(req))
    assert got.args == {"value": 1.5, "n": 3} and type(got.args["n"]) is int


@pytest.mark.parametrize("value", [{1, 2}, object(), {1: "int key"}, complex(1, 2)])
def test_values_that_are_not_wire_data_are_refused(value):
    codec = Codec()
    with pytest.raises((BusError, DecodeError)):
        codec.encode_request(Request(1, "set", "x", {"value": value}))


def test_decoder_rejects_wrong_types_and_sizes():
    deep: list = [1]
    for _ in range(40):
        deep = [deep]
    codec = Codec(max_message_bytes=256)
    pack = msgpack.packb
    good = {"seq": 1, "t": 2, "src": "s", "value": 1.0, "unit": "V", "status": "OK"}
    for broken in (
        {**good, "seq": -1},
        {**good, "seq": "1"},
        {**good, "t": 1.5},
        {**good, "src": ""},
        {**good, "status": "FINE"},
        {**good, "value": {"deep": deep}},
        [1, 2, 3],
    ):
        with pytest.raises(DecodeError):
            codec.decode_telemetry(pack(broken))
    with pytest.raises(DecodeError):
        codec.decode_telemetry(pack({**good, "unit": "x" * 300}))  # oversized frame
    with pytest.raises(DecodeError):
        codec.decode_telemetry(pack(msgpack.ExtType(5, b"boom")))
    with pytest.raises(DecodeError):
        codec.decode_telemetry(b"\xc1")  # never-used msgpack byte
    with pytest.raises(DecodeError) as info:
        codec.decode_request(pack({"id": 5, "method": 3, "target": "x"}))
    assert info.value.request_id == 5  # the error can still be matched to its request
    with pytest.raises(DecodeError) as info:
        codec.decode_request(pack({"id": 2**64 - 1, "method": "get", "target": "x"}))
    assert info.value.request_id is None


def test_topics():
    assert check_topic("tlm.rf_drive.ch01.voltage") == b"tlm.rf_drive.ch01.voltage"
    assert decode_topic(b"hb.daemon") == "hb.daemon"
    for bad in ("", "tlm..x", ".tlm", "tlm.a b", "Tlm.x", "tlm.é"):
        with pytest.raises(ValueError):
            check_topic(bad)


def test_extension_types_are_refused_everywhere():
    """The decoders use msgpack's defaults (no ext hook): ExtType and Timestamp values come
    back as objects that no field check lets through."""
    codec = Codec()
    pack = msgpack.packb
    ext, stamp = msgpack.ExtType(7, b"x"), msgpack.Timestamp(1, 2)
    request = {"id": 1, "method": "get", "target": "x", "args": {}, "client": ""}
    for odd in (ext, stamp):
        for bad in (
            {**request, "args": {"name": odd}},
            {**request, "args": {"v": [1, {"deep": odd}]}},
            {**request, "target": odd},
            {**request, "id": odd},
        ):
            with pytest.raises(DecodeError):
                codec.decode_request(pack(bad))
        with pytest.raises(DecodeError):
            codec.decode_request(pack(odd))
        with pytest.raises(DecodeError):
            codec.decode_reply(pack({"id": 1, "ok": True, "value": odd}))
        with pytest.raises(DecodeError):
            codec.decode_reply(pack({"id": 1, "ok": True, "value": [odd]}))
        good = {"seq": 1, "t": 5, "src": "drivers", "value": 1.0, "unit": "Hz", "status": "OK"}
        with pytest.raises(DecodeError):
            codec.decode_telemetry(pack({**good, "value": odd}))
        with pytest.raises(DecodeError):
            codec.decode_telemetry(pack({**good, "t": odd}))
        event = {"seq": 1, "t": 5, "src": "daemon", "kind": "x", "data": {"a": [odd]}}
        with pytest.raises(DecodeError):
            codec.decode_event(pack(event))
        with pytest.raises(DecodeError):
            codec.decode_heartbeat(pack({"seq": 1, "t": 5, "src": "d", "period": odd}))


def test_telemetry_without_optional_fields_takes_their_defaults():
    codec = Codec()
    msg = codec.decode_telemetry(msgpack.packb({"seq": 3, "t": 4, "src": "s"}), "tlm.s.x")
    assert (msg.seq, msg.t, msg.src, msg.value, msg.unit, msg.status) == (3, 4, "s", None, "", "OK")
    for missing in ("seq", "t", "src"):
        fields = {"seq": 3, "t": 4, "src": "s", "value": 1.0, "unit": "V", "status": "OK"}
        del fields[missing]
        with pytest.raises(DecodeError, match=missing):
            codec.decode_telemetry(msgpack.packb(fields))


@pytest.mark.parametrize("size", [DEEP_SCAN_AT - 1, DEEP_SCAN_AT, DEEP_SCAN_AT + 1])
def test_frames_too_short_to_be_counted_cannot_reach_the_c_decoders_stack(size):
    """Frames shorter than DEEP_SCAN_AT skip the header count: as deep as such a frame can
    nest stays far inside msgpack's own stack (no StackError, whose objects it leaks); from
    DEEP_SCAN_AT headers on, the walk refuses a frame before msgpack sees it."""
    assert DEEP_SCAN_AT <= 1024 // 2  # msgpack's C stack (1024 levels), with room to spare
    deepest = b"\x91" * (size - 1) + b"\xc0"  # every byte but the last opens a level
    codec = Codec()
    with pytest.raises(DecodeError) as info:
        codec.decode_message(b"tlm.s.x", deepest)
    if size - 1 < DEEP_SCAN_AT:  # fewer headers than that: the C decoder's stack holds them
        assert "not a map" in str(info.value)  # msgpack built it: it was within its stack
        assert msgpack.unpackb(deepest) is not None
    else:
        assert "nested" in str(info.value)  # the walk refused it, msgpack never saw it
        with pytest.raises(DecodeError, match="nested"):
            safe_unpackb(deepest)  # every decoder's guard, not only telemetry's
