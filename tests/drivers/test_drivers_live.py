"""Every driver against the running simulated lab: opened through the registry with the lab
config's limits, on the lab's loopback servers, checked against the simulated world's truth.

The lab runs on a virtual clock: counter gates, photon counting and pulse programs take world
time, not wall time, and the comb and wavemeter settle only when the test moves time on.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from drivertools import unique_name
from labprocs import driver_host, lab_instruments  # type: ignore[import-not-found]

from ionpilot.bus.client import CommandClient
from ionpilot.bus.codec import BusError
from ionpilot.bus.settings import BusSettings
from ionpilot.config import LabConfig, load_config
from ionpilot.drivers.base import IonpilotDriver
from ionpilot.drivers.errors import InstrumentCommandError, InstrumentReplyError, OutOfLimitsError
from ionpilot.drivers.host import InstrumentSpec
from ionpilot.drivers.registry import open_instrument
from ionpilot.sim.clock import VirtualClock
from ionpilot.sim.lab import Lab
from ionpilot.sim.settings import ClockLaserSettings, SimSettings
from ionpilot.sim.world import World

ROOT = Path(__file__).resolve().parents[2]
CONFIG: LabConfig = load_config(ROOT / "configs" / "sim-lab.yaml")


@dataclasses.dataclass
class LiveSim:
    lab: Lab
    resources: dict[str, str]

    @property
    def world(self) -> World:
        return self.lab.world

    def open(self, name: str, **kwargs: Any) -> Any:
        """Instrument `name` of the lab config, through the registry, with its limits."""
        inst = CONFIG.instruments[name]
        driver: IonpilotDriver = open_instrument(
            unique_name(name),
            inst.model,
            self.resources[name],
            inst.limit_values(),
            timeout_s=2.0,
            **kwargs,
        )
        return driver


@pytest.fixture
def sim() -> Iterator[LiveSim]:
    """The whole lab of configs/sim-lab.yaml on free ports; a noiseless clock laser."""
    quiet = ClockLaserSettings(cavity_drift=0.0, flicker_floor=0.0, linewidth=0.0)
    settings = SimSettings(seed=11, clock_laser=quiet)
    with Lab(lab_instruments(CONFIG), settings, VirtualClock(), free_ports=True) as lab:
        yield LiveSim(lab, lab.resources())


class WorldTime:
    """Sleep/monotonic for a driver that waits: sleeping moves the virtual world on."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.world.advance(seconds)

    def monotonic(self) -> float:
        return self.world.now()


def _near(world: World, key: str, reading_hz: float) -> bool:
    """Within the 871A's 1 MHz display digit plus 5 sigma of the simulated wavemeter noise."""
    truth = world.laser_frequency_hz(key)
    noise = world.settings.wavemeter.noise_ppm * 1e-6 * truth
    return abs(reading_hz - truth) < 5 * noise + 1e6


# ------------------------------------------------------------------------------ wavemeter


def test_wavemeter_switches_channels_and_reads_each_laser(sim: LiveSim) -> None:
    clock = WorldTime(sim.world)
    wm = sim.open("wavemeter", sleep=clock.sleep, monotonic=clock.monotonic)
    try:
        assert wm.switch_channel() == 1
        assert _near(sim.world, "369", wm.frequency())
        wm.switch_channel(2)
        assert wm.switch_channel() == 2
        assert _near(sim.world, "935", wm.frequency())
        assert wm.wavelength() == pytest.approx(299_792_458 / wm.frequency(), rel=1e-8)
        assert wm.power() == pytest.approx(0.40e-3, rel=1e-3)
        # one call: switch, settle, read
        assert _near(sim.world, "399", wm.measure(3))
        assert wm.switch_channel() == 3
        assert clock.sleeps == [wm.switch_settle_s]
        with pytest.raises(OutOfLimitsError):
            wm.measure(9)
        assert wm.switch_channel() == 3  # a refused channel changes nothing
        # during a calibration the readings are invalid: measure waits them out
        wm.calibrate()
        t0 = sim.world.now()
        assert _near(sim.world, "435", wm.measure(4))
        assert sim.world.now() - t0 >= 1.0
        # a dark input (5..8 carry no fibre) is refused, the connection stays good
        with pytest.raises(InstrumentCommandError, match="no valid exposure"):
            wm.measure(5)
        assert _near(sim.world, "369", wm.measure(1))
    finally:
        wm.close()


def _bus_for_tests() -> BusSettings:
    # nobody listens at these ports: telemetry is dropped, commands go straight to the host
    return dataclasses.replace(CONFIG.bus, publish_port=1, subscribe_port=2)


def test_wavemeter_measure_is_one_bus_call_through_the_host(sim: LiveSim) -> None:
    inst = CONFIG.instruments["wavemeter"]
    spec = InstrumentSpec("wavemeter", inst.model, sim.resources["wavemeter"], timeout_s=2.0)
    bus = _bus_for_tests()
    with (
        driver_host([spec], bus, connected_within_s=10) as host,
        CommandClient(bus, host.endpoint) as client,
    ):
        hz = client.call("wavemeter", "call", {"name": "measure", "args": [2]})
        assert isinstance(hz, float) and _near(sim.world, "935", hz)
        assert client.call("wavemeter", "get", {"name": "switch_channel"})["value"] == 2
        with pytest.raises(BusError) as refused:
            client.call("wavemeter", "call", {"name": "measure", "args": [0]})
        assert refused.value.code == "out_of_limits"
        with pytest.raises(BusError) as refused:
            client.call("wavemeter", "call", {"name": "measure", "args": [6]})
        assert refused.value.code == "instrument_error"
        assert host.workers["wavemeter"].state == "connected"  # dark, not broken
        assert "measure" in client.call("wavemeter", "describe", {})["methods"]


# ----------------------------------------------------------------------------- comb, counter


def test_comb_rates_and_lock_flag(sim: LiveSim) -> None:
    comb = sim.open("comb")
    try:
        world = sim.world
        assert comb.repetition_rate() == pytest.approx(world.comb_repetition_rate, rel=1e-12)
        assert 249e6 < comb.repetition_rate() < 251e6
        assert comb.offset_frequency() == pytest.approx(world.settings.comb.offset_frequency)
        assert comb.locked() is True
        record = comb.readings()
        assert record["timestamp_s"] == pytest.approx(world.unix_time(float(int(world.now()))))
        assert record["beat_frequency"] == pytest.approx(60e6, abs=1e3)
        sim.lab.inject("comb_unlock")
        world.advance(1.0)  # the next one-second record
        assert comb.locked() is False
        world.advance(world.settings.comb.relock_time + 1.0)
        assert comb.locked() is True
    finally:
        comb.close()


def test_counter_reads_the_clock_laser_beat(sim: LiveSim) -> None:
    counter = sim.open("beat_counter")
    comb = sim.open("comb")
    try:
        counter.gate_time(0.1)
        assert counter.gate_time() == pytest.approx(0.1)
        t0 = sim.world.now()
        beat = counter.frequency()
        assert sim.world.now() - t0 == pytest.approx(0.1)  # the gate took world time
        assert beat == pytest.approx(comb.beat_frequency(), abs=1.0)  # the same beat note
        assert 50e6 < beat < 70e6
        with pytest.raises(OutOfLimitsError):
            counter.gate_time(20.0)  # the lab allows at most 10 s
        assert counter.gate_time() == pytest.approx(0.1)
        counter.input_channel(2)  # no signal on input 2: the counter's NaN is refused
        with pytest.raises(InstrumentReplyError):
            counter.frequency()
    finally:
        counter.close()
        comb.close()


# ------------------------------------------------------------------------ shutters, oven, ...


def test_shutters_open_and_close_and_read_back(sim: LiveSim) -> None:
    s399 = sim.open("shutter_399")
    s935 = sim.open("shutter_935")
    try:
        assert s399.open() is False and s935.open() is True  # as the lab is found
        s399.open_shutter()
        assert s399.open() is True and sim.world.shutters["399"] is True
        s399.open_shutter()  # idempotent: no toggle back
        assert s399.open() is True
        s935.close_shutter()
        assert s935.open() is False and sim.world.shutters["935"] is False
        s399.open(False)
        assert s399.open() is False and sim.world.shutters["399"] is False
        assert s399.IDN()["model"] == "SC10"
    finally:
        s399.close()
        s935.close()


def test_pulser_runs_a_short_schedule_and_counts(sim: LiveSim) -> None:
    pulser = sim.open("pulser")
    try:
        schedule = [
            {"t_ns": 0, "duration_ns": 2_000_000, "channel": "cool", "window": "cool"},
            {"t_ns": 2_000_000, "duration_ns": 1_000_000, "channel": "detect", "window": "det"},
        ]
        t0 = sim.world.now()
        result = pulser.run(20, schedule)
        assert sim.world.now() - t0 == pytest.approx(20 * 3e-3)
        assert result["windows"] == ["cool", "det"]
        assert len(result["counts"]) == 20
        assert all(isinstance(c, int) and c >= 0 for shot in result["counts"] for c in shot)
        bright = sum(det for _cool, det in result["counts"]) / 20
        assert bright > 5  # a cooled ion in |0>: ~20 photons per 1 ms window
        pulser.count_duration(0.01)
        assert pulser.counts() > 50
        pulser.dds_frequency(210e6)
        assert pulser.dds_frequency() == pytest.approx(210e6)
        assert sim.world.dds["clock_aom"]["frequency_hz"] == pytest.approx(210e6)
        with pytest.raises(OutOfLimitsError):
            pulser.dds_frequency(300e6)  # within the hardware, beyond the lab's 250 MHz
        assert sim.world.dds["clock_aom"]["frequency_hz"] == pytest.approx(210e6)
    finally:
        pulser.close()


def test_oven_current_is_set_and_read_back(sim: LiveSim) -> None:
    oven = sim.open("oven")
    try:
        ch1 = oven.ch1
        ch1.voltage(3.0)
        ch1.current(2.0)
        ch1.output(True)
        assert ch1.current() == pytest.approx(2.0)
        assert ch1.voltage() == pytest.approx(3.0)
        assert ch1.output() is True
        assert sim.world.supply[0].current_a == pytest.approx(2.0)
        assert ch1.measured_current() == pytest.approx(2.0, abs=0.01)  # 1 mA rms noise
        with pytest.raises(OutOfLimitsError):
            ch1.current(2.6)  # the lab allows 2.5 A of the supply's 3 A
        assert ch1.current() == pytest.approx(2.0)
        oven.all_outputs_off()
        assert ch1.output() is False
        assert ch1.measured_current() == 0.0
    finally:
        oven.close()


def test_rf_dc_and_laser_drivers_move_the_world(sim: LiveSim) -> None:
    rf = sim.open("rf_drive")
    dc = sim.open("dc_electrodes")
    laser = sim.open("laser_369")
    try:
        rf.frequency(25e6)
        assert rf.frequency() == pytest.approx(25e6)
        assert sim.world.rf_frequency_hz == pytest.approx(25e6)
        dc.ch01.voltage(0.5)
        assert dc.ch01.voltage() == pytest.approx(0.5)
        assert sim.world.dc[0].level_v == pytest.approx(0.5)
        before = sim.world.laser_frequency_hz("369")
        laser.piezo_voltage(laser.piezo_voltage() + 1.0)
        assert sim.world.laser_frequency_hz("369") - before == pytest.approx(0.4e9, rel=1e-3)
        assert laser.emission() is True
    finally:
        rf.close()
        dc.close()
        laser.close()
