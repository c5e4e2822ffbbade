"""Acceptance: the physics measured through the simulated instruments' own protocols."""

from __future__ import annotations

import math
import xmlrpc.client
from fractions import Fraction
from typing import Any

from simclients import DlcClient, JsonClient, Sc10Client, visa

from ionpilot.sim.lab import Lab
from ionpilot.sim.physics import rabi_excitation

WINDOW_NS = 1_000_000  # 1 ms detection


def dark_given_excited(rate: float, window: float, tau: float) -> float:
    """P(no ion photon | ion in D3/2): it does not decay, or decays but emits no photon."""
    k = rate - 1 / tau
    decayed_dark = (1 / tau) * math.exp(-rate * window) * (math.exp(k * window) - 1) / k
    return math.exp(-window / tau) + decayed_dark


def test_rabi_line_through_the_pulser_matches_the_formula(quiet_lab: Lab) -> None:
    world = quiet_lab.world
    pulser = JsonClient(quiet_lab.resources()["pulser"])
    ion = world.settings.ion
    probe_s = 0.020  # pi pulse at amplitude 1 (25 Hz Rabi frequency)
    centre = world.clock_line_aom_hz()
    rate = ion.bright_count_rate * world.fluorescence_factor()
    tau = 1 / (2 * math.pi * ion.natural_linewidth)
    window = WINDOW_NS * 1e-9
    no_background = math.exp(-ion.background_count_rate * window)
    q = dark_given_excited(rate, window, tau) * no_background  # P(0 counts | excited)
    bright_dark = math.exp(-rate * window) * no_background  # P(0 counts | ground)
    shots = 200
    worst = 0.0
    for detuning in (-80, -50, -30, -20, -10, -5, 0, 5, 10, 20, 30, 50, 80):
        schedule = [
            {"t_ns": 0, "duration_ns": 1_000_000, "channel": "cool"},
            {
                "t_ns": 1_000_000,
                "duration_ns": int(probe_s * 1e9),
                "channel": "clock",
                "amplitude": 1.0,
                "frequency_hz": centre + detuning,
            },
            {"t_ns": 21_000_000, "duration_ns": WINDOW_NS, "channel": "detect", "window": "d"},
        ]
        result = pulser.result("run", shots=shots, schedule=schedule)
        dark = sum(1 for (c,) in result["counts"] if c == 0)
        p_rabi = rabi_excitation(ion.clock_rabi_frequency, detuning, probe_s)
        p = p_rabi * q + (1 - p_rabi) * bright_dark
        sigma = math.sqrt(max(p * (1 - p), 1 / shots) / shots)
        worst = max(worst, abs(dark / shots - p) / sigma)
        assert abs(dark / shots - p) <= 4.5 * sigma, (detuning, dark / shots, p)
    pulser.close()
    assert worst > 0  # the outcomes are random, not the formula


def test_wavemeter_follows_drift_and_jumps_on_a_mode_hop(lab: Lab) -> None:
    res = lab.resources()
    wm = visa(res["wavemeter"], term="\r\n")
    assert wm.read().startswith("Bristol")
    wm.write(":ROUT:CHAN 1")
    noise = lab.world.settings.wavemeter.noise_ppm * 1e-6 * 811e12

    def check() -> float:
        reading = float(wm.query(":MEAS:FREQ?")) * 1e12
        truth = lab.world.laser_frequency_hz("369")
        assert abs(reading - truth) < 5 * noise + 1e6
        return reading

    check()
    for _ in range(4):  # the free-running laser wanders; the readings follow it
        lab.world.advance(3 * 3600)
        drifted = check()
    dlc = DlcClient(res["laser_369"])
    dlc.set("laser1:dl:pc:voltage-set", 71.0)  # +1 V piezo: +0.4 GHz
    stepped = check()
    assert abs(stepped - drifted - 0.4e9) < 10 * noise
    lab.inject("mode_hop", "laser_369")
    hopped = check()
    assert abs(abs(hopped - stepped) - 3e9) < 10 * noise


def test_comb_formula_recovers_the_clock_laser_to_the_counter_resolution(quiet_lab: Lab) -> None:
    res = quiet_lab.resources()
    world = quiet_lab.world
    comb = xmlrpc.client.ServerProxy(res["comb"])
    counter = visa(res["beat_counter"])
    counter.write("CONF:FREQ (@1)")
    counter.write("SENS:FREQ:GATE:TIME 1")
    beat = float(counter.query("READ?"))
    truth = Fraction(world.clock_reference_hz) + Fraction(world.clock_offset_hz())
    t: Any = comb.data.last_timestamp()
    records: Any = comb.data.query(t - 0.5, ["reprate.freq", "offset.freq", "system.locked"])
    data = records[max(records, key=float)]  # {timestamp: record}, the newest
    assert data["system.locked"] is True
    f_rep, f_ceo = Fraction(data["reprate.freq"]), Fraction(data["offset.freq"])
    wm = visa(res["wavemeter"], term="\r\n")
    wm.read()
    wm.write(":ROUT:CHAN 4")
    nu_wm = Fraction(float(wm.query(":MEAS:FREQ?")) * 1e12)
    n = round((nu_wm - f_ceo - Fraction(beat)) / f_rep)
    recovered = n * f_rep + f_ceo + Fraction(beat)
    resolution = beat * world.settings.comb.counter_jitter / 1.0
    assert abs(float(recovered - truth)) < 5 * resolution + 1e-6


def test_ion_loss_and_reload_through_oven_and_photoionisation(lab: Lab) -> None:
    res = lab.resources()
    world = lab.world
    pulser = JsonClient(res["pulser"])
    ion = world.settings.ion
    window = 0.1
    background = ion.background_count_rate * window
    threshold = background + 6 * math.sqrt(background)

    def counts() -> int:
        return int(pulser.result("count", duration_s=window)["counts"])

    assert counts() > 10 * threshold
    lab.inject("ion_loss")
    assert counts() < threshold
    oven = visa(res["oven"])
    oven.write("INST:NSEL 1;:VOLT 3;:CURR 2;:OUTP:CHAN ON;:OUTP:MAST ON")
    world.advance(10 * world.settings.oven.time_constant)  # oven at temperature, PI beam blocked
    assert counts() < threshold
    shutter = Sc10Client(res["shutter_399"])
    assert shutter.command("ens") == ["ens"]
    assert shutter.command("ens?") == ["ens?", "1"]
    times = []
    for _trial in range(40):
        lab.inject("ion_loss")
        start = world.now()
        while counts() < threshold:
            assert world.now() - start < 20 * ion.reload_time
        times.append(world.now() - start)
    mean = sum(times) / len(times)
    # exponential waiting times: the mean of 40 has sigma = reload_time / sqrt(40)
    assert abs(mean - ion.reload_time) < 3.5 * ion.reload_time / math.sqrt(40) + window
    pulser.close()
    shutter.close()
