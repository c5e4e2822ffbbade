"""Pulse-controller driver against a loopback replay of the newline-JSON protocol."""

import itertools
import json

import pytest

from ionpilot.drivers.errors import InstrumentReplyError, InstrumentTimeoutError, OutOfLimitsError
from ionpilot.drivers.ionpilot_pulser import PulserCommandError
from ionpilot.drivers.registry import open_instrument
from ionpilot.drivers.replay import Exchange, ReplayServer

_names = itertools.count()
DESCRIBE = {
    "model": "ionpilot_pulser",
    "protocol": 1,
    "n_ions": 1,
    "dds_channels": ["clock_aom"],
    "pulse_channels": ["cool", "detect", "repump", "clock", "raman", "ms"],
    "limits": {"dds_frequency_hz": [1e6, 4e8], "dds_amplitude": [0, 1]},
}
DDS = {"channel": "clock_aom", "frequency_hz": 200e6, "amplitude": 1.0, "phase_rad": 0.0}


def op(name, result=None, error=None, **fields):
    """Expect request `op` with `fields` (id aside); reply with the same id."""

    def matches(raw):
        request = json.loads(raw)
        body = {k: v for k, v in request.items() if k not in ("id", "op")}
        return request.get("op") == name and body == fields

    def reply(raw):
        rid = json.loads(raw)["id"]
        if error is not None:
            message = {"id": rid, "ok": False, "error": {"code": error, "message": "no"}}
        else:
            message = {"id": rid, "ok": True, "result": result if result is not None else {}}
        return json.dumps(message).encode() + b"\n"

    return Exchange(matches, reply)


def raw(name, reply_bytes):
    return Exchange(lambda r: json.loads(r).get("op") == name, reply_bytes)


def _run(script, body, limits=None, timeout_s=2.0):
    with ReplayServer([op("describe", DESCRIBE), *script]) as server:
        pulser = open_instrument(
            f"pulser{next(_names)}",
            "ionpilot_pulser",
            f"tcp://127.0.0.1:{server.port}",
            limits,
            timeout_s=timeout_s,
        )
        try:
            body(pulser)
        finally:
            pulser.close()
        assert server.failures == []
        assert server.remaining == 0


def test_dds_get_and_set():
    script = [
        op("get_dds", DDS, channel="clock_aom"),
        op("set_dds", {**DDS, "frequency_hz": 201e6}, channel="clock_aom", frequency_hz=201e6),
        op("set_dds", {**DDS, "amplitude": 0.5}, channel="clock_aom", amplitude=0.5),
    ]

    def body(pulser):
        assert pulser.dds_frequency() == 200e6
        pulser.dds_frequency(201e6)
        pulser.dds_amplitude(0.5)

    _run(script, body)


def test_limits_refuse_before_sending():
    def body(pulser):
        with pytest.raises(OutOfLimitsError):
            pulser.dds_frequency(260e6)
        with pytest.raises(OutOfLimitsError):
            pulser.dds_amplitude(1.5)

    _run([], body, limits={"dds_frequency": {"min": 150e6, "max": 250e6}})


def test_counts_and_run():
    schedule = [{"t_ns": 0, "duration_ns": 1000, "channel": "detect", "window": "det"}]
    script = [
        op("count", {"counts": 1234, "duration_s": 0.1}, duration_s=0.1),
        op("run", {"windows": ["det"], "counts": [[3], [0]]}, shots=2, schedule=schedule),
        op("ping"),
    ]

    def body(pulser):
        assert pulser.counts() == 1234
        assert pulser.run(2, schedule)["counts"] == [[3], [0]]
        pulser.ping()

    _run(script, body)


def test_refusals_and_bad_replies():
    script = [
        op("set_dds", error="out_of_range", channel="clock_aom", phase_rad=1.0),
        raw("get_dds", b"not json\n"),
        raw("count", b'{"id": 999, "ok": true, "result": {"counts": 1}}\n'),
    ]

    def body(pulser):
        with pytest.raises(PulserCommandError) as info:
            pulser.dds_phase(1.0)
        assert info.value.remote_code == "out_of_range"
        with pytest.raises(InstrumentReplyError, match="JSON"):
            pulser.dds_frequency()
        with pytest.raises(InstrumentReplyError, match="id"):
            pulser.counts()
        with pytest.raises(InstrumentTimeoutError):  # out of step: the connection was dropped
            pulser.ping()

    _run(script, body)


def test_negative_counts_are_refused():
    def body(pulser):
        with pytest.raises(InstrumentReplyError):
            pulser.counts()

    _run([op("count", {"counts": -1}, duration_s=0.1)], body)


def test_wrong_model_is_refused():
    with (
        ReplayServer([op("describe", {**DESCRIBE, "model": "other"})]) as server,
        pytest.raises(InstrumentReplyError),
    ):
        open_instrument("pulser_x", "ionpilot_pulser", f"tcp://127.0.0.1:{server.port}")


def test_a_schedule_with_a_register_is_sent_and_a_bad_register_refused_before_sending():
    detect = {"t_ns": 0, "duration_ns": 1000, "channel": "detect", "window": "d", "per_ion": True}
    register = {"register": "r1", "t_ns": 2000, "condition": {"bits": [["d", 0]], "accept": [1]}}
    schedule = [register, detect]
    script = [op("run", {"windows": ["d"], "counts": [[[0]]]}, shots=1, schedule=schedule)]

    def body(pulser):
        assert pulser.run(1, schedule)["counts"] == [[[0]]]
        with pytest.raises(ValueError, match="entry 0: t_ns must be a non-negative int"):
            pulser.run(1, [{**register, "t_ns": -1}, detect])
        with pytest.raises(ValueError, match="a register needs a condition"):
            pulser.run(1, [{"register": "r1", "t_ns": 0}, detect])

    _run(script, body)
