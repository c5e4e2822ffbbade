"""A diode-laser mode hop in the simulated world is hysteretic, as an ECDL's is: the laser stays
on the new mode until its current is taken `mode_hop_current_excursion` below where it hopped;
there it drops back to its own mode and stays there when the current comes back. Nothing but
the current does it (no magic restore), and the current arrives over the DLC pro's protocol."""

from __future__ import annotations

import dataclasses

import pytest
from simclients import DlcClient, visa

from ionpilot.sim.lab import Lab
from ionpilot.sim.settings import AuxLaserSettings, SimSettings
from ionpilot.sim.world import World

EXCURSION_A = SimSettings().aux_lasers.mode_hop_current_excursion


def quiet_world(**aux: float) -> World:
    """No frequency walk: the laser's frequency is its settings plus the hop, exactly."""
    lasers = AuxLaserSettings(frequency_walk=0.0, **aux)
    return World(SimSettings(seed=11, aux_lasers=lasers))


def sweep(world: World, key: str, depth_a: float, step_a: float = 0.25e-3) -> None:
    """Down by `depth_a` in steps and back to the set point, as the mode search does."""
    start = world.lasers[key].current_a
    n = round(depth_a / step_a)
    for i in list(range(1, n + 1)) + list(range(n - 1, -1, -1)):
        world.set_laser(key, current_a=start - i * step_a)
        world.advance(0.1)
    assert world.lasers[key].current_a == start


def test_the_default_excursion_is_an_ecdl_hysteresis_width() -> None:
    assert 1e-3 <= EXCURSION_A <= 2e-3  # ~1-2 mA for a 369/935 nm ECDL


@pytest.mark.parametrize("key", ["369", "935"])
def test_a_small_sweep_leaves_the_laser_hopped_a_deep_one_brings_it_back(key: str) -> None:
    world = quiet_world()
    before = world.laser_frequency_hz(key)
    world.inject("mode_hop", f"laser_{key}")
    hop = world.laser_frequency_hz(key) - before
    assert abs(abs(hop) - world.settings.aux_lasers.mode_hop_size) < 1.0
    sweep(world, key, EXCURSION_A - 0.5e-3)  # not through the hop region
    assert world.laser_frequency_hz(key) - before == pytest.approx(hop, abs=1.0)
    assert world.lasers[key].hop_hz != 0.0
    sweep(world, key, EXCURSION_A + 0.25e-3)  # through it and back
    assert world.lasers[key].hop_hz == 0.0
    assert world.laser_frequency_hz(key) == pytest.approx(before, abs=1.0)
    assert any("back on its mode" in text for _, text in world.events)


def test_the_laser_returns_at_the_bottom_and_stays_on_its_mode_on_the_way_up() -> None:
    world = quiet_world()
    laser = world.lasers["369"]
    i0 = laser.current_a
    world.inject("mode_hop", "laser_369")
    world.set_laser("369", current_a=i0 - EXCURSION_A + 0.1e-3)
    assert laser.hop_hz != 0.0  # not yet below the hop region
    world.set_laser("369", current_a=i0 - EXCURSION_A)
    assert laser.hop_hz == 0.0
    # at the bottom the laser is on its own mode, tuned by the lower current (−0.1 GHz/mA)
    tuning = world.settings.aux_lasers.current_tuning
    offset = world.laser_detuning_hz("369") - world.settings.ion.cooling_detuning
    assert offset == pytest.approx(tuning * -EXCURSION_A, rel=1e-6)
    world.set_laser("369", current_a=i0)
    assert laser.hop_hz == 0.0  # hysteresis: no hop back on the way up
    assert world.laser_detuning_hz("369") == pytest.approx(world.settings.ion.cooling_detuning)


def test_going_up_in_current_does_not_undo_the_hop() -> None:
    world = quiet_world()
    i0 = world.lasers["935"].current_a
    world.inject("mode_hop", "laser_935")
    world.set_laser("935", current_a=i0 + 5e-3)
    world.set_laser("935", current_a=i0)
    assert world.lasers["935"].hop_hz != 0.0


def test_the_excursion_is_a_setting_and_is_measured_from_the_hop_point() -> None:
    world = quiet_world(mode_hop_current_excursion=3e-3)
    i0 = world.lasers["369"].current_a
    world.set_laser("369", current_a=i0 - 1e-3)  # the laser hops while at a lower current
    world.inject("mode_hop", "laser_369")
    sweep(world, "369", 2.5e-3)  # 3.5 mA below the set point, 2.5 mA below the hop point
    assert world.lasers["369"].hop_hz != 0.0
    sweep(world, "369", 3.0e-3)
    assert world.lasers["369"].hop_hz == 0.0


def test_a_sweep_of_a_laser_that_did_not_hop_changes_nothing_lasting() -> None:
    world = quiet_world()
    before = world.laser_frequency_hz("369")
    sweep(world, "369", 3e-3)
    assert world.laser_frequency_hz("369") == pytest.approx(before, abs=1.0)
    assert world.lasers["369"].hop_current_a is None


def test_a_spontaneous_hop_is_recovered_the_same_way() -> None:
    settings = SimSettings(seed=5)
    aux = dataclasses.replace(settings.aux_lasers, mode_hop_rate=1 / 60, frequency_walk=0.0)
    world = World(dataclasses.replace(settings, aux_lasers=aux))
    while world.lasers["935"].hop_hz == 0.0:
        world.advance(10.0)
    world.settings = dataclasses.replace(
        world.settings, aux_lasers=dataclasses.replace(aux, mode_hop_rate=0.0)
    )
    sweep(world, "935", EXCURSION_A)
    assert world.lasers["935"].hop_hz == 0.0


def test_the_sweep_reaches_the_world_over_the_dlc_pro_protocol() -> None:
    """Current set points in mA over `param-set!` on the DLC pro's TCP port, frequencies read
    on the Bristol wavemeter: the hop survives a shallow sweep and not a deep one."""
    settings = SimSettings(seed=3, aux_lasers=AuxLaserSettings(frequency_walk=0.0))
    instruments = {
        "laser_369": ("dlc_pro", "TCPIP0::127.0.0.1::1::SOCKET"),
        "wavemeter": ("bristol_871a", "TCPIP0::127.0.0.1::1::SOCKET"),
    }
    with Lab(instruments, settings, free_ports=True) as lab:
        res = lab.resources()
        dlc = DlcClient(res["laser_369"])
        wm = visa(res["wavemeter"], term="\r\n")
        assert wm.read().startswith("Bristol")
        wm.write(":ROUT:CHAN 1")

        def frequency() -> float:
            return float(wm.query(":MEAS:FREQ?")) * 1e12

        def wire_sweep(depth_ma: float) -> None:
            start = float(dlc.query("(param-ref 'laser1:dl:cc:current-set)"))
            n = round(depth_ma / 0.25)
            for i in list(range(1, n + 1)) + list(range(n - 1, -1, -1)):
                dlc.set("laser1:dl:cc:current-set", f"{start - 0.25 * i:.3f}")
            assert float(dlc.query("(param-ref 'laser1:dl:cc:current-set)")) == start

        before = frequency()
        lab.inject("mode_hop", "laser_369")
        assert abs(abs(frequency() - before) - 3e9) < 10e6
        wire_sweep(EXCURSION_A * 1e3 - 0.5)
        assert abs(abs(frequency() - before) - 3e9) < 10e6  # still hopped
        wire_sweep(EXCURSION_A * 1e3 + 0.5)
        assert abs(frequency() - before) < 10e6  # back on its mode, at the set point
        dlc.inst.close()
        wm.close()
