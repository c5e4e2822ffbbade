"""`clock-sim` without faults: the daemon's servo on virtual time against the World, and the
figures of its frequency record — Allan deviation against the quantum projection limit (with χ²
bands), the mean offset and its uncertainty, the drift estimate."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from ionpilot.harness.stability import (
    ONE_SIGMA,
    allan,
    loglog_slope,
    mean_uncertainty,
    ratio_band,
    white_fm_coefficient,
)
from ionpilot.harness.virtual import assemble_on_world, run_until
from ionpilot.sequencer.settings import DeviceSettings
from ionpilot.servo.settings import AuxLockSettings, ClockLockSettings, PulseCalibration
from ionpilot.sim.world import World


def settle_time_s(settings: ClockLockSettings, update_s: float) -> float:
    """Data before this much locked time is dropped: ten time constants of the slowest loop."""
    slowest = settings.drift_gain if settings.servo_order == "second" else settings.gain
    slowest = slowest or settings.gain
    return 10 * update_s / slowest


def clock_sim(
    world: World,
    settings: ClockLockSettings,
    hours: float,
    seed: int = 1,
    *,
    ci_level: float = ONE_SIGMA,
    band_level: float = 0.999,
    servo_excess: float = 0.15,
    aux_locks: dict[str, AuxLockSettings] | None = None,
    pulses: PulseCalibration | None = None,
    device: DeviceSettings | None = None,
) -> dict[str, Any]:
    """Run the daemon's servo (no recovery engine: this measures the lock) for `hours` and
    summarise it: ADEV against the QPN limit, mean offset, drift. Keys as `ionpilot clock-sim
    --json` prints them."""
    drift_true = float(world.settings.clock_laser.cavity_drift)
    wall0 = time.perf_counter()
    cpu0 = time.process_time()
    vs = assemble_on_world(
        world, settings, dict(aux_locks or {}), pulses=pulses, device=device, seed=seed
    )
    vs.servo.cycle.start()
    run_until(vs, world.now() + hours * 3600.0)
    wall = time.perf_counter() - wall0
    cpu = time.process_time() - cpu0
    lock, auxes, record = vs.servo.lock, vs.servo.auxes, vs.trace
    t = np.asarray(record.t_s)
    y = np.asarray(record.y)
    update_s = lock.update_interval_s
    tc = lock.time_constant_s
    result: dict[str, Any] = {
        "sim_hours": hours,
        "wall_s": wall,
        "speedup": hours * 3600.0 / wall if wall > 0 else math.inf,
        "cpu_s": cpu,  # wall_s includes time lost to other processes on a shared machine
        "seed": seed,
        "servo_order": settings.servo_order,
        "interrogation": settings.interrogation,
        "final_state": lock.state.value,
        "updates": lock.updates,
        "acquisition_steps": lock.acquisition_steps,
        "update_interval_s": update_s,
        "servo_time_constant_s": tc,
        "drift_true_hz_per_s": drift_true,
        "drift_estimated_hz_per_s": lock.drift_hz_per_s,
        "drift_estimate_final_hz_per_s": lock.drift_hz_per_s,
        "aux_locks": {aux.name: aux.state for aux in auxes},
        "ions_present": int(sum(world.present)),
    }
    if len(t) == 0:
        result["error"] = "the lock never locked"
        return result
    settle = settle_time_s(settings, update_s)
    keep = t >= t[0] + settle
    y = y[keep]
    rate = 1.0 / update_s
    coefficient = lock.probe.qpn_coefficient(settings.clock_frequency)
    if len(y) < 20:
        result["error"] = f"only {len(y)} locked points after settling"
        return result
    adev = allan(y, rate, ci_level)
    qpn = [coefficient / math.sqrt(tau) for tau in adev.tau_s]
    ratios = [s / q for s, q in zip(adev.sigma, qpn, strict=True)]
    long_taus = [i for i, tau in enumerate(adev.tau_s) if tau >= 20 * tc]
    checks = []
    for i in long_taus:
        lo, hi = ratio_band(adev.edf[i], band_level, servo_excess)
        checks.append(
            {
                "tau_s": adev.tau_s[i],
                "ratio": ratios[i],
                "band": [lo, hi],
                "ok": lo <= ratios[i] <= hi,
            }
        )
    slope = loglog_slope(
        [adev.tau_s[i] for i in long_taus],
        [adev.sigma[i] for i in long_taus],
        [adev.edf[i] for i in long_taus],
    )
    drift = np.asarray(record.drift_hz_per_s)[keep]
    mean = float(np.mean(y))
    white = white_fm_coefficient(
        [adev.tau_s[i] for i in long_taus],
        [adev.sigma[i] for i in long_taus],
        [adev.edf[i] for i in long_taus],
    )
    uncertainty = mean_uncertainty(white, len(y) / rate)
    result.update(
        {
            "settle_s": settle,
            # the drift integrator is noisy update to update: report its mean once settled
            "drift_estimated_hz_per_s": float(np.mean(drift)),
            "drift_estimate_std_hz_per_s": float(np.std(drift)),
            "locked_points": len(y),
            "adev": {
                "tau_s": adev.tau_s,
                "sigma": adev.sigma,
                "ci_low": adev.ci_low,
                "ci_high": adev.ci_high,
                "ci_level": adev.ci_level,
                "edf": adev.edf,
            },
            "qpn_sigma": qpn,
            "qpn_coefficient": coefficient,
            "white_fm_coefficient": white,
            "adev_qpn_ratio": ratios[-1],
            "adev_qpn_ratio_tau_s": adev.tau_s[-1],
            "qpn_checks": checks,
            "qpn_band_level": band_level,
            "slope": slope,
            "mean_fractional_offset": mean,
            "offset_uncertainty": uncertainty,
            "offset_sigmas": mean / uncertainty if uncertainty > 0 else math.inf,
            "first_order_offset_expected": drift_true
            * update_s
            / settings.gain
            / settings.clock_frequency,
        }
    )
    result["_record"] = (t[keep], y)
    return result
