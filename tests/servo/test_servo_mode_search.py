"""The mode-hop playbook's mode search on the simulated lab's virtual time: the wavemeter lock
stopped, the diode current swept down through the hop and back (the World's hop is hysteretic,
nothing else undoes it), the wavemeter checked, deeper sweeps on a miss, the set point always
restored, and a clear escalation when the laser's limits forbid the sweep or the search is
exhausted. Also the live lab's side of it (refusals, limits from the driver host), and two
small items of the same area: a fresh start's state event and the units of health messages."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

import pytest

from ionpilot.bus.codec import BusError, ErrorCode
from ionpilot.commands.clock_sim import default_aux_locks, sim_world_settings
from ionpilot.harness import campaign
from ionpilot.harness.lab import WorldLab, world_clock
from ionpilot.servo.clock_lock import ClockLock, LockState
from ionpilot.servo.daemon import BusLab
from ionpilot.servo.health import HealthMonitor
from ionpilot.servo.outputs import RecordingOutputs, ServoAlarm
from ionpilot.servo.persistence import StateStore
from ionpilot.servo.playbooks import default_rules, mode_search_timeout_s
from ionpilot.servo.seams import LabError, LabRefused
from ionpilot.servo.settings import (
    AuxLockSettings,
    ClockLockSettings,
    HealthRule,
    PulseCalibration,
    RecoverySettings,
)
from ionpilot.sim.settings import SimSettings
from ionpilot.sim.world import World

LOCK = ClockLockSettings(comb_period=60.0)
BOOK = "mode_hop:cooling"


def make(seed: int = 3, hysteresis_a: float | None = None, **aux_changes: Any):
    """A locked clock with its wavemeter locks on a World; every current set point recorded."""
    sim = SimSettings()
    settings = sim_world_settings(sim, "default", seed, 0.3)
    if hysteresis_a is not None:
        settings = dataclasses.replace(
            settings,
            aux_lasers=dataclasses.replace(
                settings.aux_lasers, mode_hop_current_excursion=hysteresis_a
            ),
        )
    world = World(settings)
    aux = {
        name: dataclasses.replace(s, **aux_changes) for name, s in default_aux_locks(sim).items()
    }
    run = campaign.build(world, LOCK, RecoverySettings(), aux, seed, wavemeter_invalid_fraction=0)
    currents: list[float] = []
    set_laser = world.set_laser

    def recording(
        key: str,
        current_a: float | None = None,
        piezo_v: float | None = None,
        enabled: bool | None = None,
    ) -> None:
        if key == "369" and current_a is not None:
            currents.append(current_a)
        set_laser(key, current_a, piezo_v, enabled)

    world.set_laser = recording  # type: ignore[method-assign]
    campaign.start(run)
    campaign.go_until(run, world.now() + 120.0)
    assert run.lock.state is LockState.LOCKED
    return world, run, currents


def go(world: World, run: campaign.Campaign, seconds: float) -> None:
    campaign.go_until(run, world.now() + seconds)


def audit(run: campaign.Campaign) -> list[tuple[str, str, str]]:
    return [(str(row[2]), str(row[3]), str(row[4])) for row in run.audit.rows()]


def notes(run: campaign.Campaign, kind: str, action: str) -> list[str]:
    return [reason for k, a, reason in audit(run) if k == kind and a == action]


def escalation(run: campaign.Campaign) -> str:
    (only,) = run.engine.escalations
    return str(only["reason"])


def test_a_mode_hop_is_swept_back_relocked_and_the_set_point_restored() -> None:
    world, run, currents = make()
    i0 = world.lasers["369"].current_a
    world.inject("mode_hop", "laser_369")
    go(world, run, 120)
    (record,) = [f for f in run.uptime.faults if f.kind == "mode_hop"]
    assert not record.escalated and record.recovered_s is not None
    assert record.finished_s - record.tripped_s <= 15
    assert run.lock.state is LockState.LOCKED
    assert world.lasers["369"].hop_hz == 0.0
    # the sweep: 0.25 mA steps down to 2 mA below the set point and back, exactly to it
    assert min(currents) == pytest.approx(i0 - 2e-3)
    assert currents[-1] == i0 and world.lasers["369"].current_a == i0
    steps = [b - a for a, b in itertools.pairwise(currents)]
    assert max(abs(d) for d in steps) <= 0.25e-3 + 1e-12
    (searched,) = notes(run, "step", f"{BOOK}.mode_search")
    assert "back on its mode after a 2.00 mA current sweep (sweep 1)" in searched
    assert ("step", f"{BOOK}.wavemeter_relock") in [(k, a) for k, a, _ in audit(run)]
    assert run.auxes["cooling"].state == "locked"
    # the World was not told to restore anything: the current did it
    assert not any("restore" in text for _, text in world.events)
    assert any("laser 369 back on its mode" in text for _, text in world.events)


def test_a_miss_is_swept_again_deeper() -> None:
    world, run, currents = make(hysteresis_a=2.6e-3)  # the first, 2 mA sweep is too shallow
    i0 = world.lasers["369"].current_a
    world.inject("mode_hop", "laser_369")
    go(world, run, 120)
    (searched,) = notes(run, "step", f"{BOOK}.mode_search")
    assert "after a 3.00 mA current sweep (sweep 2)" in searched
    waits = notes(run, "wait", f"{BOOK}.mode_search")
    assert any("sweep 2 of 3" in w and "GHz from target" in w for w in waits), waits
    assert min(currents) == pytest.approx(i0 - 3e-3)
    assert world.lasers["369"].current_a == i0 and world.lasers["369"].hop_hz == 0.0
    assert run.engine.escalations == []


def test_limits_that_forbid_the_excursion_escalate_with_the_reason_and_touch_nothing() -> None:
    world, run, currents = make()
    i0 = world.lasers["369"].current_a
    run.lab.limits_si["laser_369.current"] = (i0 - 1e-3, 0.150)  # only 1 mA of room below
    world.inject("mode_hop", "laser_369")
    go(world, run, 60)
    assert run.engine.safe
    reason = escalation(run)
    assert "laser_369" in reason and "lower current limit is 59.00 mA" in reason
    assert "not sweeping" in reason and "not retried" in reason
    assert currents == [] and run.lab.refused == []  # never asked for a current out of limits
    assert ("retry", BOOK) not in [(k, a) for k, a, _ in audit(run)]


def test_a_refused_current_set_ends_the_search_with_an_audit_entry_not_a_crash() -> None:
    world, run, currents = make()
    i0 = world.lasers["369"].current_a
    run.lab.limits_si["laser_369.current"] = (i0 - 1e-3, 0.150)
    run.lab.limits = lambda parameter: None  # type: ignore[method-assign]  # host won't tell
    world.inject("mode_hop", "laser_369")
    go(world, run, 60)
    assert run.lab.refused, "the host refused a set"
    reason = escalation(run)
    assert "refused current 58.75 mA" in reason and "set point 60.00 mA restored" in reason
    assert world.lasers["369"].current_a == i0 and currents[-1] == i0
    assert ("escalate", "mode_hop") in [(k, a) for k, a, _ in audit(run)]


def test_an_exhausted_search_gives_up_after_its_tries_with_the_set_point_restored() -> None:
    world, run, currents = make(hysteresis_a=10e-3)  # deeper than the 5 mA the servo may go
    i0 = world.lasers["369"].current_a
    world.inject("mode_hop", "laser_369")
    go(world, run, 120)
    reason = escalation(run)
    assert "3 current sweeps, the last 4.00 mA deep, did not bring it back" in reason
    assert "GHz from target" in reason
    assert min(currents) == pytest.approx(i0 - 4e-3)
    assert world.lasers["369"].current_a == i0
    waits = notes(run, "wait", f"{BOOK}.mode_search")
    assert sum("of 3:" in w for w in waits) >= 3


def test_the_max_excursion_caps_the_deeper_sweeps() -> None:
    world, run, currents = make(hysteresis_a=10e-3, mode_search_max_excursion=2.5e-3)
    i0 = world.lasers["369"].current_a
    world.inject("mode_hop", "laser_369")
    go(world, run, 120)
    assert min(currents) == pytest.approx(i0 - 2.5e-3)
    assert "3 current sweeps, the last 2.50 mA deep" in escalation(run)


def test_a_search_cut_short_by_a_driver_crash_still_returns_to_the_original_set_point() -> None:
    world, run, currents = make()
    i0 = world.lasers["369"].current_a
    world.inject("mode_hop", "laser_369")
    end = world.now() + 30
    while world.now() < end and not (currents and currents[-1] <= i0 - 1e-3):
        go(world, run, 0.05)
    assert currents[-1] <= i0 - 1e-3  # half way down
    run.lab.crash_driver_host()
    go(world, run, 200)
    kinds = [(k, a) for k, a, _ in audit(run)]
    assert ("preempt", BOOK) in kinds
    assert ("abort_failed", BOOK) in kinds  # the host was down: the tidy-up could not set
    assert run.engine.escalations == []
    assert world.lasers["369"].current_a == i0 and world.lasers["369"].hop_hz == 0.0
    assert run.lock.state is LockState.LOCKED


def test_the_step_timeout_covers_every_sweep() -> None:
    s = default_aux_locks(SimSettings())["cooling"]
    sweeping = s.mode_search_tries * (
        2 * s.mode_search_max_excursion / s.mode_search_step * s.mode_search_dwell
        + s.mode_search_settle
    )
    assert sweeping < mode_search_timeout_s(s) < 600.0


def test_settings_refuse_a_search_that_cannot_run() -> None:
    with pytest.raises(ValueError, match="mode_search_tries"):
        AuxLockSettings("laser_369", 1, 811e12, mode_search_tries=0)
    with pytest.raises(ValueError, match="mode_search_excursion"):
        AuxLockSettings("laser_369", 1, 811e12, mode_search_excursion=6e-3)


# ---- the live lab's side: refusals and limits over the bus ------------------------------------


def fake_bus(replies: dict[tuple[str, str], Any]):
    def call(target: str, method: str, args: dict[str, Any], timeout: float = 5.0) -> Any:
        reply = replies[(target, method)]
        if isinstance(reply, BusError):
            raise reply
        return reply

    return call


def test_bus_lab_maps_a_limit_refusal_to_lab_refused_and_a_timeout_to_lab_error() -> None:
    lab = BusLab(
        fake_bus(
            {
                ("laser_369", "set"): BusError(ErrorCode.OUT_OF_LIMITS, "57 mA below 58 mA"),
                ("laser_935", "set"): BusError(ErrorCode.INSTRUMENT_TIMEOUT, "no answer"),
            }
        ),
        LOCK,
        PulseCalibration(),
    )
    with pytest.raises(LabRefused, match="out_of_limits"):
        lab.set("laser_369.current", 0.057)
    with pytest.raises(LabError) as info:
        lab.set("laser_935.current", 0.1)
    assert not isinstance(info.value, LabRefused)


def test_bus_lab_reads_the_allowed_range_from_the_driver_hosts_describe() -> None:
    describe = {"parameters": {"current": {"unit": "A", "allowed": [0.0, 0.15]}, "emission": {}}}
    lab = BusLab(fake_bus({("laser_369", "describe"): describe}), LOCK, PulseCalibration())
    assert lab.limits("laser_369.current") == (0.0, 0.15)
    assert lab.limits("laser_369.emission") is None
    assert lab.limits("laser_369.nothing") is None


def test_the_simulated_lab_refuses_out_of_limits_and_applies_nothing() -> None:
    world = World(SimSettings())
    lab = WorldLab(world, limits={"laser_369.current": (0.058, 0.150)})
    with pytest.raises(LabRefused):
        lab.set("laser_369.current", 0.0575)
    assert world.lasers["369"].current_a == 0.060
    lab.set("laser_369.current", 0.059)
    assert lab.read("laser_369.current") == 0.059


# ---- same area: a fresh start is information, health messages carry units ------------------


def test_a_fresh_start_without_state_is_information_a_bad_state_file_a_minor_alarm(
    tmp_path,
) -> None:
    world = World(sim_world_settings(SimSettings(), "ideal", 1, 0.0))
    lab = WorldLab(world)
    store = StateStore(tmp_path)
    outputs = RecordingOutputs()
    ClockLock(ClockLockSettings(), lab, world_clock(world), outputs, store).start()
    (fresh,) = outputs.of_type(ServoAlarm)
    assert (fresh.kind, fresh.severity) == ("state_fresh", "OK")
    assert "no saved state" in fresh.message
    store.directory.mkdir(parents=True, exist_ok=True)
    store.path.write_text('{"version": 1, "aom_frequency_hz": ')
    outputs = RecordingOutputs()
    ClockLock(ClockLockSettings(), lab, world_clock(world), outputs, store).start()
    (rejected,) = outputs.of_type(ServoAlarm)
    assert (rejected.kind, rejected.severity) == ("state_rejected", "MINOR")
    assert "corrupt" in rejected.message


def test_health_messages_carry_the_unit_of_their_signal() -> None:
    world = World(SimSettings())
    published: dict[str, dict[str, object]] = {}
    aux = default_aux_locks(SimSettings())
    rules = default_rules(RecoverySettings(), aux, "laser_435")
    rules["x.voltage"] = HealthRule(unit="V")
    health = HealthMonitor(
        rules, world_clock(world), sink=lambda topic, fields: published.update({topic: fields})
    )
    health.observe("servo.ion.fluorescence", 540.0)
    health.observe("servo.cooling.error", 3e9)
    health.publish()
    assert published["health.servo.ion.fluorescence"]["unit"] == "counts/s"
    assert published["health.servo.cooling.error"]["unit"] == "Hz"
    assert published["health.x.voltage"]["unit"] == "V"
    assert published["health.laser_435.lock_state"]["unit"] == ""  # a state code
