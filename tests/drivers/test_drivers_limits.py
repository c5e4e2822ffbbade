"""Safety limits: they narrow the hardware range, never widen it, and cannot be bypassed."""

import itertools
import math
import textwrap

import pytest
from drivertools import record_writes
from qcodes.station import Station
from qcodes.validators import Numbers

from ionpilot.drivers.errors import LimitsConfigError, OutOfLimitsError
from ionpilot.drivers.hardware import MODELS
from ionpilot.drivers.limits import apply_limits, limit_bounds
from ionpilot.drivers.registry import open_instrument
from ionpilot.drivers.rs_smb100a import RsSmb100a

ADDRESS = "TCPIP0::127.0.0.1::5025::SOCKET"
_names = itertools.count()


def _open(model, limits=None):
    inst = open_instrument(
        f"{model}_{next(_names)}", model, ADDRESS, limits, simulated=True, timeout_s=0.2
    )
    if model == "rs_smb100a":
        inst.power.inter_delay = 0
    return inst


@pytest.fixture
def rf():
    inst = _open("rs_smb100a", {"power": {"min": -30.0, "max": 10.0}})
    yield inst
    inst.close()


@pytest.fixture
def qdac():
    inst = _open("qdac2", {"voltage": {"min": -5, "max": 5}, "ch05.voltage": {"min": -1, "max": 1}})
    yield inst
    inst.close()


def test_hardware_range_is_read_from_hardware_py(rf):
    hw = MODELS["rs_smb100a"].parameters["power"]
    assert rf.power.hardware_range() == (hw.minimum, hw.maximum)
    vals = rf.power.vals
    assert isinstance(vals, Numbers) and (vals.min_value, vals.max_value) == (
        hw.minimum,
        hw.maximum,
    )


def test_limit_wider_than_hardware_is_refused_and_nothing_applied():
    inst = _open("rs_smb100a")
    try:
        with pytest.raises(LimitsConfigError, match="wider than the hardware range"):
            apply_limits(
                inst,
                {"frequency": {"min": 20e6, "max": 40e6}, "power": {"min": -30, "max": 35}},
            )
        assert inst.frequency.allowed_range() == inst.frequency.hardware_range()
    finally:
        inst.close()


def test_open_instrument_with_bad_limits_closes_it():
    with pytest.raises(LimitsConfigError):
        _open("rs_smb100a", {"power": {"min": -200, "max": 0}})
    inst = _open("rs_smb100a")  # the resource was released
    inst.close()


@pytest.mark.parametrize(
    "limits",
    [
        {"amplitude": {"min": 0, "max": 1}},
        {"power": {"min": 5, "max": -5}},
        {"power": {"low": 0}},
        {"power": {"min": "0 dBm"}},
        {"power": {"min": math.nan, "max": 0}},
    ],
)
def test_malformed_limits_are_refused(rf, limits):
    with pytest.raises(LimitsConfigError):
        apply_limits(rf, limits)


def test_limits_only_narrow(rf):
    apply_limits(rf, {"power": {"min": -100, "max": 20}})  # within hardware: intersected
    assert rf.power.allowed_range() == (-30.0, 10.0)
    apply_limits(rf, {"power": {"max": 0}})
    assert rf.power.allowed_range() == (-30.0, 0.0)
    with pytest.raises(LimitsConfigError, match="nothing allowed"):
        apply_limits(rf, {"power": (5.0, 8.0)})


def test_si_float_noise_at_the_hardware_edge_is_accepted():
    inst = _open("dlc_pro", {"current": {"min": 0, "max": 0.1 + 0.15}})  # 0.25000000000000006
    try:
        assert inst.current.allowed_range() == (0.0, 0.25)
    finally:
        inst.close()


def test_limit_bounds_forms():
    assert limit_bounds({"min": 1.0}) == (1.0, None)
    assert limit_bounds((1, 2)) == (1.0, 2.0)


def test_out_of_limits_error_carries_the_facts(rf):
    with pytest.raises(OutOfLimitsError) as info:
        rf.power(12.0)
    err = info.value
    assert isinstance(err, ValueError) and err.code == "out_of_limits"
    assert err.value == 12.0 and err.allowed == (-30.0, 10.0) and err.unit == "dBm"
    assert err.parameter.endswith("power")


@pytest.mark.parametrize(
    "bypass",
    [
        lambda p: p.set(12.0),
        lambda p: p(12.0),
        lambda p: p.set_raw(12.0),
        lambda p: p.validate(12.0),
    ],
)
def test_public_api_cannot_bypass(rf, bypass):
    rf.power.vals = Numbers(-1000, 1000)  # what a station `limits:` entry does
    rf.power.remove_validator()
    rf.power.vals = None
    with pytest.raises(OutOfLimitsError):
        bypass(rf.power)
    assert rf.power.get() == 0.0


def test_station_limits_cannot_widen(tmp_path):
    config = tmp_path / "station.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            instruments:
              rf_station:
                type: ionpilot.drivers.rs_smb100a.RsSmb100a
                address: {ADDRESS}
                init:
                  pyvisa_sim_file: "ionpilot.sim:yaml/rs_smb100a.yaml"
                  timeout: 0.2
                parameters:
                  power: {{limits: [-200, 100]}}
            """
        )
    )
    station = Station(config_file=str(config))
    rf = station.load_instrument("rf_station")
    assert isinstance(rf, RsSmb100a)
    try:
        widened = rf.power.vals
        assert isinstance(widened, Numbers) and widened.max_value == 100  # station widened vals ...
        apply_limits(rf, {"power": {"min": -30, "max": 10}})
        rf.power.inter_delay = 0
        with pytest.raises(OutOfLimitsError):  # ... but not the guard
            rf.power(50)
        with pytest.raises(OutOfLimitsError):
            rf.power(11)
    finally:
        rf.close()
        station.close_all_registered_instruments()


def test_every_ramp_step_is_guarded():
    inst = _open("rs_smb100a")
    try:
        inst.power(20.0)  # ramps up from 0 dBm (no limits yet)
        apply_limits(inst, {"power": {"min": -30, "max": 10}})
        with pytest.raises(OutOfLimitsError):
            inst.power(15.0)
        inst.power(5.0)  # ramping back into range passes 19 ... 6: only towards safety
        assert inst.power() == 5.0
        with pytest.raises(OutOfLimitsError):  # the ramp window does not outlive its ramp
            inst.power.validate(12.0)
        inst.power.step = 100.0  # a single step could jump anywhere: still guarded
        with pytest.raises(OutOfLimitsError):
            inst.power(25.0)
    finally:
        inst.close()


def test_global_key_applies_to_every_channel_and_channel_key_to_one(qdac):
    assert qdac.ch01.voltage.allowed_range() == (-5, 5)
    assert qdac.ch24.voltage.allowed_range() == (-5, 5)
    assert qdac.ch05.voltage.allowed_range() == (-1, 1)
    apply_limits(qdac, {"ch7.voltage": {"min": 0, "max": 2}})  # zero padding is optional
    assert qdac.ch07.voltage.allowed_range() == (0, 2)
    with pytest.raises(LimitsConfigError):
        apply_limits(qdac, {"ch25.voltage": {"min": 0, "max": 1}})


def test_channel_list_set_is_all_or_nothing(qdac):
    sent = record_writes(qdac)
    with pytest.raises(OutOfLimitsError):
        qdac.channels.voltage(3.0)  # ch05 refuses 3 V: no channel may move
    assert sent == []
    assert qdac.ch01.voltage() == 0.0
    qdac.channels.voltage(0.5)
    assert set(qdac.channels.voltage()) == {0.5}
