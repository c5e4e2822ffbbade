"""`ionpilot clock-sim`: the clock lock on virtual time against the simulated lab's physics.

The daemon's own servo (`assemble_servo`, its `LockCycle`) steps here against the in-process
`World` (through `ionpilot.harness`), its clock pulses the sequencer's programs played by the
simulated pulse controller; a simulated day takes a few seconds. The wavemeter locks
of the cooling and repump lasers run alongside (the cooling laser walks and would heat the ion
out of the trap). Without `--faults` the faults are switched off: this measures the lock. With
`--faults default|FILE` the health monitor and the recovery playbooks run too, under a campaign
of faults (the config's `recovery.scenario`, or a scenario file), and the JSON gains `uptime`,
`faults`, `escalations` and `stuck`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from ionpilot.config import ConfigError, load_config
from ionpilot.core.units import UnitError, parse_quantity
from ionpilot.harness.campaign import DRIVER_CRASH, FaultEvent, periodic_events, run_campaign
from ionpilot.harness.clock_sim import clock_sim
from ionpilot.harness.lab import world_device
from ionpilot.labfile import add_config_option, default_lab_file
from ionpilot.sequencer.settings import DeviceSettings
from ionpilot.servo.settings import (
    AuxLockSettings,
    ClockLockSettings,
    FaultScenarioSettings,
    HealthSettings,
    PulseCalibration,
    RecoverySettings,
)
from ionpilot.sim.scenario import parse_events, read_scenario
from ionpilot.sim.settings import SimSettings
from ionpilot.sim.world import LASER_SPECS, World

DEFAULT_DRIFT_HZ_PER_S = 0.3


class ClockSimError(Exception):
    """Bad input to the simulation (reported as one `error:` line)."""


def load_settings(
    config_path: str | None,
) -> tuple[ClockLockSettings, SimSettings, dict[str, AuxLockSettings], str]:
    """Clock-lock, sim and aux-lock settings from the lab file; the default file if it loads,
    else built-in defaults. An explicitly named file must load."""
    if config_path is not None:
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            raise ClockSimError(f"{config_path} is invalid: {str(exc).splitlines()[0]}") from exc
        except OSError as exc:
            raise ClockSimError(f"cannot read {config_path}: {exc}") from exc
        source = config_path
    else:
        try:
            default = default_lab_file()
            config = load_config(default)
            source = str(default)
        except (ConfigError, OSError):
            sim = SimSettings()
            return ClockLockSettings(), sim, default_aux_locks(sim), "built-in defaults"
    aux = dict(config.servo.aux_locks) or default_aux_locks(config.sim)
    return config.servo.clock_lock, config.sim, aux, source


def load_calibration(config_path: str | None) -> tuple[PulseCalibration, DeviceSettings]:
    """The daemon's pulse calibration and the sequencer's device from the lab file (the ones
    the `daemon` process uses); built-in defaults with the clock beam centred on the simulated
    AOM when the default file does not load."""
    try:
        config = load_config(config_path or default_lab_file())
    except (ConfigError, OSError) as exc:
        if config_path is not None:
            raise ClockSimError(f"{config_path} is invalid: {str(exc).splitlines()[0]}") from exc
        return PulseCalibration(), world_device()
    return config.servo.pulses, config.device


def default_aux_locks(sim: SimSettings) -> dict[str, AuxLockSettings]:
    """Cooling (369 nm, at its working detuning) and repump (935 nm, on resonance) locks on the
    simulated wavemeter, stepped every 30 s: the sim lasers walk ~50 kHz/√s (~0.3 MHz in 30 s
    against a 20 MHz tolerance), so an integral lock with loop gain 0.5 per step (plus a little
    proportional) holds them, at a small cost per simulated day."""
    tuning = sim.aux_lasers.piezo_tuning  # Hz/V
    period = 30.0
    integral = 0.5 / (tuning * period)
    proportional = 0.1 / tuning
    return {
        "cooling": AuxLockSettings(
            laser="laser_369",
            wavemeter_channel=1,
            target=LASER_SPECS["369"].resonance_hz + sim.ion.cooling_detuning,
            proportional_gain=proportional,
            integral_gain=integral,
            update_period=period,
        ),
        "repump": AuxLockSettings(
            laser="laser_935",
            wavemeter_channel=2,
            target=LASER_SPECS["935"].resonance_hz,
            proportional_gain=proportional,
            integral_gain=integral,
            update_period=period,
        ),
    }


def sim_world_settings(
    sim: SimSettings, laser: str, seed: int, drift_hz_per_s: float
) -> SimSettings:
    """The lab file's physics with faults off and the chosen clock laser."""
    ion = dataclasses.replace(sim.ion, loss_rate=0.0)
    clock_laser = sim.clock_laser
    if laser == "ideal":
        clock_laser = dataclasses.replace(
            clock_laser, cavity_drift=0.0, flicker_floor=0.0, linewidth=0.0, unlock_rate=0.0
        )
    else:
        clock_laser = dataclasses.replace(clock_laser, cavity_drift=drift_hz_per_s, unlock_rate=0.0)
    return dataclasses.replace(
        sim,
        seed=seed,
        n_ions=sim.clock_ions,  # the clock's ions, not the processor's chain
        ion=ion,
        clock_laser=clock_laser,
        trap=dataclasses.replace(sim.trap, rf_trip_rate=0.0),
        aux_lasers=dataclasses.replace(sim.aux_lasers, mode_hop_rate=0.0),
    )


def run(
    hours: float,
    seed: int = 1,
    *,
    laser: str = "default",
    servo: str | None = None,
    config_path: str | None = None,
    drift_hz_per_s: float = DEFAULT_DRIFT_HZ_PER_S,
    interrogation: str | None = None,
    lock_settings: ClockLockSettings | None = None,
) -> dict[str, Any]:
    """One accelerated run; the result dict of `ionpilot.harness.clock_sim.clock_sim` (with the
    frequency record under `_record`)."""
    if not hours > 0 or not math.isfinite(hours):
        raise ClockSimError(f"--hours must be a positive number, found {hours}")
    if laser not in ("ideal", "default"):
        raise ClockSimError(f"--laser must be ideal or default, found {laser!r}")
    settings, sim, aux, source = load_settings(config_path)
    if lock_settings is not None:
        settings = lock_settings
    if servo is not None:
        settings = dataclasses.replace(settings, servo_order=servo)  # type: ignore[arg-type]
    if interrogation is not None:
        settings = dataclasses.replace(settings, interrogation=interrogation)  # type: ignore[arg-type]
    # the optical frequency through the comb once a minute is plenty for a simulated day
    settings = dataclasses.replace(settings, comb_period=max(settings.comb_period, 60.0))
    pulses, device = load_calibration(config_path)
    world = World(sim_world_settings(sim, laser, seed, drift_hz_per_s))
    result = clock_sim(
        world, settings, hours, seed=seed, aux_locks=aux, pulses=pulses, device=device
    )
    result["laser"] = laser
    result["config"] = source
    return result


def load_recovery(config_path: str | None) -> RecoverySettings:
    """The lab file's `recovery:` section (defaults when the default file does not load), for
    the clock's own world: the ions it counts are the clock's (`sim.clock_ions`)."""
    try:
        config = load_config(config_path or default_lab_file())
        return dataclasses.replace(config.recovery, chain_ions=config.sim.clock_ions)
    except (ConfigError, OSError) as exc:
        if config_path is not None:
            raise ClockSimError(f"{config_path} is invalid: {str(exc).splitlines()[0]}") from exc
        return RecoverySettings()


def load_health(config_path: str | None) -> HealthSettings:
    """The lab file's `health:` rules, as the daemon gets them (defaults if none load)."""
    try:
        return load_config(config_path or default_lab_file()).health
    except (ConfigError, OSError):
        return HealthSettings()


def load_faults(
    spec: str, recovery: RecoverySettings, hours: float
) -> tuple[list[FaultEvent], float]:
    """`default` → the config's periodic scenario; else a YAML file: a mapping with fields of
    `FaultScenarioSettings` ("4 h", 0 = never; unnamed fields keep the config's values) and
    an optional `events:` list of `{at, fault, target}`, or a plain list of such events (one
    format and one parser with the lab's scenarios, `ionpilot.sim.scenario`; `fault:
    driver_crash` is understood too). Returns the events and the
    fraction of invalid wavemeter readings."""
    if spec == "default":
        scenario = recovery.scenario
        return periodic_events(scenario, hours), scenario.wavemeter_invalid_fraction
    try:
        data = read_scenario(spec)
    except ValueError as exc:
        raise ClockSimError(str(exc)) from exc
    if isinstance(data, list):
        data = {
            "events": data,
            **{
                f.name: 0.0
                for f in dataclasses.fields(FaultScenarioSettings)
                if f.name.endswith("_every")
            },
        }
    if not isinstance(data, dict):
        raise ClockSimError(f"{spec}: a fault file is a mapping (periods, events) or a list")
    raw_events = data.pop("events", []) or []
    fields = {f.name: f for f in dataclasses.fields(FaultScenarioSettings)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in fields:
            raise ClockSimError(f"{spec}: unknown key '{key}'; known: events, {', '.join(fields)}")
        try:
            if key == "wavemeter_invalid_fraction" or (
                isinstance(value, int | float) and not isinstance(value, bool)
            ):
                values[key] = float(value)
            else:
                values[key] = parse_quantity(str(value), "s").value
        except (UnitError, ValueError) as exc:
            raise ClockSimError(f"{spec}: {key}: {exc}") from exc
    scenario = dataclasses.replace(recovery.scenario, **values)
    events = periodic_events(scenario, hours)
    try:
        listed = parse_events(raw_events, spec, also=frozenset({DRIVER_CRASH}))
    except ValueError as exc:
        raise ClockSimError(str(exc)) from exc
    events.extend(FaultEvent(e.at_s, e.fault, e.target) for e in listed)
    events.sort(key=lambda e: e.at_s)
    return events, scenario.wavemeter_invalid_fraction


def run_faults(
    hours: float,
    seed: int = 1,
    *,
    faults: str = "default",
    config_path: str | None = None,
    drift_hz_per_s: float = DEFAULT_DRIFT_HZ_PER_S,
    audit_path: str | None = None,
) -> dict[str, Any]:
    """Unattended operation under a fault campaign: the lock, the health monitor and the
    recovery playbooks on virtual time. The keys of `ionpilot.harness.campaign.summarise`."""
    if not hours > 0 or not math.isfinite(hours):
        raise ClockSimError(f"the simulated time must be positive, found {hours} h")
    settings, sim, aux, source = load_settings(config_path)
    recovery = load_recovery(config_path)
    events, fraction = load_faults(faults, recovery, hours)
    recovery = dataclasses.replace(
        recovery,
        scenario=dataclasses.replace(recovery.scenario, wavemeter_invalid_fraction=fraction),
    )
    settings = dataclasses.replace(settings, comb_period=max(settings.comb_period, 60.0))
    pulses, device = load_calibration(config_path)
    world = World(sim_world_settings(sim, "default", seed, drift_hz_per_s))
    _, result = run_campaign(
        world,
        settings,
        recovery,
        aux,
        hours=hours,
        seed=seed,
        events=events,
        audit_path=audit_path or ":memory:",
        pulses=pulses,
        device=device,
        rules=load_health(config_path).rules,
    )
    result["seed"] = seed
    result["faults_source"] = faults
    result["config"] = source
    return result


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "clock-sim",
        help="run the clock lock on virtual time against the simulated ion (days in seconds)",
    )
    parser.add_argument("--hours", type=float, default=None, help="simulated hours (24)")
    parser.add_argument(
        "--days", type=float, default=None, help="simulated days (instead of --hours)"
    )
    parser.add_argument(
        "--faults",
        default=None,
        metavar="default|FILE",
        help="run the health monitor and recovery under a fault campaign: the config's "
        "default scenario or a YAML file; adds uptime, faults, escalations, stuck",
    )
    parser.add_argument(
        "--audit", default=None, metavar="FILE.sqlite", help="with --faults: keep the audit log"
    )
    parser.add_argument("--seed", type=int, default=1, help="random seed (1)")
    parser.add_argument(
        "--laser",
        choices=("ideal", "default"),
        default="default",
        help="ideal: noiseless, no drift; default: the lab's laser with drift",
    )
    parser.add_argument(
        "--servo",
        choices=("first", "second"),
        default=None,
        help="servo order (default: the config's)",
    )
    parser.add_argument(
        "--interrogation",
        choices=("rabi", "ramsey"),
        default=None,
        help="probe scheme (default: the config's)",
    )
    parser.add_argument(
        "--drift",
        type=float,
        default=DEFAULT_DRIFT_HZ_PER_S,
        help="cavity drift of the default laser, Hz/s (0.3)",
    )
    add_config_option(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--plot",
        default=None,
        metavar="FILE.png",
        help="draw the ADEV with the QPN line and the frequency record",
    )
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    if args.days is not None and args.hours is not None:
        print("error: give --hours or --days, not both", file=sys.stderr)
        return 2
    hours = 24.0 if args.hours is None else args.hours
    if args.days is not None:
        hours = 24.0 * args.days
    if args.faults is not None:
        return main_faults(args, hours)
    try:
        result = run(
            hours,
            args.seed,
            laser=args.laser,
            servo=args.servo,
            config_path=args.config,
            drift_hz_per_s=args.drift,
            interrogation=args.interrogation,
        )
    except ClockSimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    record = result.pop("_record", None)
    if args.plot:
        if record is None:
            print("error: no locked data to plot", file=sys.stderr)
            return 1
        try:
            plot(result, record, Path(args.plot))
        except (OSError, RuntimeError) as exc:
            print(f"error: cannot write {args.plot}: {exc}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(summary(result))
    return 0 if "error" not in result else 1


def main_faults(args: argparse.Namespace, hours: float) -> int:
    if args.plot:
        print("error: --plot is not available with --faults", file=sys.stderr)
        return 2
    try:
        result = run_faults(
            hours,
            args.seed,
            faults=args.faults,
            config_path=args.config,
            drift_hz_per_s=args.drift,
            audit_path=args.audit,
        )
    except ClockSimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        print(summary_faults(result))
    return 0


def summary_faults(r: dict[str, Any]) -> str:
    lines = [
        f"{r['sim_days']:g} days simulated in {r['wall_s']:.1f} s (speed-up {r['speedup']:.0f}); "
        f"faults {r['faults_source']}, seed {r['seed']}",
        f"uptime {r['uptime']:.4f}; escalations {r['escalations']}; stuck {r['stuck']}; "
        f"final state {r['final_state']}",
    ]
    for kind, f in r["faults"].items():
        mttr = f["mttr_s"]
        lines.append(
            f"  {kind:14s} {f['count']:4d} faults, {f['recovered']:4d} recovered, "
            f"{f['escalated']:2d} escalated; time to recover median {mttr['median']:.1f} s, "
            f"max {mttr['max']:.1f} s"
        )
    return "\n".join(lines)


def summary(r: dict[str, Any]) -> str:
    lines = [
        f"{r['sim_hours']:g} h simulated in {r['wall_s']:.2f} s (speed-up {r['speedup']:.0f}); "
        f"{r['laser']} laser, {r['servo_order']}-order servo, seed {r['seed']}",
        f"final state {r['final_state']}, {r['updates']} updates, "
        f"servo time constant {r['servo_time_constant_s']:.1f} s",
    ]
    if "error" in r:
        lines.append(f"error: {r['error']}")
        return "\n".join(lines)
    lines.append(
        f"ADEV/QPN at {r['adev_qpn_ratio_tau_s']:.0f} s: {r['adev_qpn_ratio']:.3f}; "
        f"slope {r['slope']:+.3f}/decade; QPN {r['qpn_coefficient']:.3g}/√τ"
    )
    lines.append(
        f"mean fractional offset {r['mean_fractional_offset']:.3g} ± "
        f"{r['offset_uncertainty']:.2g} ({r['offset_sigmas']:+.1f} σ)"
    )
    lines.append(
        f"drift true {r['drift_true_hz_per_s']:.4f} Hz/s, "
        f"estimated {r['drift_estimated_hz_per_s']:.4f} Hz/s"
    )
    return "\n".join(lines)


def plot(result: dict[str, Any], record: Any, path: Path) -> None:
    """ADEV (with χ² bars and the QPN line) above the frequency record; pyqtgraph offscreen."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    import numpy as np
    import pyqtgraph as pg
    import pyqtgraph.exporters

    pg.mkQApp()
    pg.setConfigOptions(background="w", foreground="k", antialias=True)
    layout = pg.GraphicsLayoutWidget()
    layout.setFixedSize(900, 900)
    layout.show()
    adev = result["adev"]
    taus = np.asarray(adev["tau_s"])
    sigma = np.asarray(adev["sigma"])
    top = layout.addPlot(row=0, col=0, title="Allan deviation of the locked light vs the ion")
    top.setLogMode(x=True, y=True)
    top.setLabel("bottom", "averaging time τ", units="s")
    top.setLabel("left", "σ_y(τ)")
    top.getAxis("left").enableAutoSIPrefix(False)
    top.getAxis("bottom").enableAutoSIPrefix(False)
    top.addLegend()
    top.plot(taus, sigma, pen=None, symbol="o", symbolBrush="b", name="overlapping ADEV")
    low = np.log10(sigma) - np.log10(adev["ci_low"])
    high = np.log10(adev["ci_high"]) - np.log10(sigma)
    top.addItem(pg.ErrorBarItem(x=np.log10(taus), y=np.log10(sigma), top=high, bottom=low))
    top.plot(taus, result["qpn_sigma"], pen=pg.mkPen("r", width=2), name="QPN limit")
    bottom = layout.addPlot(row=1, col=0, title="fractional frequency offset per servo update")
    t, y = record
    bottom.plot(np.asarray(t) / 3600.0, np.asarray(y) * 1e15, pen=pg.mkPen((80, 80, 80)))
    bottom.setLabel("bottom", "time", units="h")
    bottom.setLabel("left", "y (10⁻¹⁵)")
    bottom.getAxis("left").enableAutoSIPrefix(False)
    bottom.getAxis("bottom").enableAutoSIPrefix(False)
    pg.QtWidgets.QApplication.processEvents()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pyqtgraph's own parameters
        exporter = pyqtgraph.exporters.ImageExporter(layout.scene())
        exporter.export(str(path))
    layout.close()
    if not path.exists():
        raise RuntimeError("the exporter wrote nothing")
