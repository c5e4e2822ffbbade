"""Settings of the servo daemon: the clock lock, the auxiliary wavemeter locks, health rules and
recovery policy. Plain frozen dataclasses, read from the lab file's `servo:`, `health:` and
`recovery:` sections by the config loader."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from ionpilot.core.units import Quantity

FaultKind = Literal[
    "ion_loss",
    "ion_dark",
    "mode_hop",
    "cavity_unlock",
    "rf_trip",
    "stray_field",
    "comb_unlock",
    "wavemeter_invalid",
    "driver_stale",
    "unrecognised",
]


@dataclass(frozen=True)
class ClockLockSettings:
    """How the clock laser is steered onto the ion's line (REFERENCE.md §1)."""

    pulser: str = "pulser"
    comb: str = "comb"
    beat_counter: str = "beat_counter"
    wavemeter: str = "wavemeter"
    wavemeter_channel: int = 4
    cavity_laser: str = "laser_435"
    interrogation: Literal["rabi", "ramsey"] = "rabi"
    probe_time: Annotated[float, "s"] = 0.08
    ramsey_dark_time: Annotated[float, "s"] = 0.3
    ramsey_pulse_time: Annotated[float, "s"] = (
        0.01  # π/2 at full power of a 25 Hz clock Rabi frequency
    )
    probes_per_side: int = 10
    cycle_overhead: Annotated[float, "s"] = 0.02
    gain: float = 0.5
    drift_gain: float = 0.0625
    servo_order: Literal["first", "second"] = "second"
    aom_center: Annotated[float, "Hz"] = 200e6
    line_search_span: Annotated[float, "Hz"] = 2000.0
    lock_detect_excitation: float = 0.2
    # Added by the clock-lock engineer (names above are the lead's and stay).
    clock_frequency: Annotated[float, "Hz"] = 688_358_979_309_308.0  # ν₀, for fractional figures
    initial_drift: Annotated[float, "Hz/s"] = 0.0  # clock-laser drift assumed before any estimate
    acquisition_probe_time: Annotated[float, "s"] = 0.02  # short Rabi π pulse: wide line to find
    acquisition_threshold: float = 0.5  # excitation that marks a scan point as "on the line"
    centring_updates: int = 6  # two-sided updates (gain 1/k) per centring stage
    handover_updates: int = 150  # Ramsey only: Rabi-locked updates that learn the drift first
    lock_lost_updates: int = 3  # consecutive updates below lock_detect_excitation = lost
    holdover_limit: Annotated[float, "s"] = 600.0  # longer pauses re-verify the line on resume
    persist_period: Annotated[float, "s"] = 10.0  # how often the locked state is written
    max_state_age: Annotated[float, "s"] = 600.0  # older persisted state is stale: reacquire
    comb_period: Annotated[float, "s"] = 10.0  # how often the optical frequency is measured
    ceo_sign: int = 1  # ν = n·f_rep + s₁·f_ceo + s₂·f_beat
    beat_sign: int = 1
    # The servo time constant allowed while user jobs share the pulse controller: it sets the
    # clock's minimum interrogation rate in the sequencer's queue (interrogation.clock_duty).
    shared_time_constant: Annotated[float, "s"] = 0.0  # with user jobs; 0: 3 x the lock's own

    def alone_time_constant_s(self) -> float:
        """The servo time constant with the controller to itself: T_update / gain, T_update =
        two sides of `probes_per_side` probe cycles (interrogation.servo_time_constant_s)."""
        probe = (
            self.probe_time
            if self.interrogation == "rabi"
            else self.ramsey_dark_time + 2 * self.ramsey_pulse_time
        )
        return 2 * self.probes_per_side * (probe + self.cycle_overhead) / self.gain

    def __post_init__(self) -> None:
        if not 0 < self.gain < 2:
            raise ValueError(f"gain must be in (0, 2), found {self.gain}")
        if not 0 <= self.drift_gain < self.gain:
            raise ValueError(
                f"drift_gain must be in [0, gain={self.gain}), found {self.drift_gain}"
            )
        if self.probes_per_side < 1:
            raise ValueError(f"probes_per_side must be at least 1, found {self.probes_per_side}")
        if self.probe_time <= 0 or self.acquisition_probe_time <= 0:
            raise ValueError("probe_time and acquisition_probe_time must be positive")
        if self.ceo_sign not in (-1, 1) or self.beat_sign not in (-1, 1):
            raise ValueError("ceo_sign and beat_sign must be +1 or -1")
        alone = self.alone_time_constant_s()
        shared = self.shared_time_constant
        if shared != 0.0 and not alone < shared <= self.holdover_limit:
            raise ValueError(
                f"shared_time_constant must be more than the lock's own time constant "
                f"({alone:.3g} s: 2 x probes_per_side x probe cycle / gain) and at most "
                f"holdover_limit ({self.holdover_limit:g} s), or 0 for three times the lock's "
                f"own; found {shared:g} s"
            )


@dataclass(frozen=True)
class AuxLockSettings:
    """A wavemeter PI lock of one diode laser through its piezo (cooling or repump)."""

    laser: str
    wavemeter_channel: int
    target: Annotated[float, "Hz"]
    wavemeter: str = "wavemeter"
    proportional_gain: Annotated[float, "V/Hz"] = 2e-9
    integral_gain: Annotated[float, "V/Hz"] = 1e-9
    max_step: Annotated[float, "V"] = 0.5
    capture_range: Annotated[float, "Hz"] = 2e9
    tolerance: Annotated[float, "Hz"] = 20e6
    update_period: Annotated[float, "s"] = 0.5
    relock_timeout: Annotated[float, "s"] = 15.0
    piezo_min: Annotated[float, "V"] = 10.0  # rails: a lock that needs more has railed
    piezo_max: Annotated[float, "V"] = 130.0
    invalid_timeout: Annotated[float, "s"] = 5.0  # wavemeter reading invalid this long = alarm
    # Mode search after a mode hop: the diode current is swept down through the hop and back
    # (ECDL hops are hysteretic), deeper on each try, never beyond the instrument's limits.
    mode_search_excursion: Annotated[float, "A"] = 2e-3  # first sweep: this far below the set point
    mode_search_deepen: Annotated[float, "A"] = 1e-3  # each further sweep goes this much deeper
    mode_search_max_excursion: Annotated[float, "A"] = 5e-3  # never further from the set point
    mode_search_tries: int = 3  # sweeps before giving up (escalation)
    mode_search_step: Annotated[float, "A"] = 0.25e-3  # current step of the sweep
    mode_search_dwell: Annotated[float, "s"] = 0.1  # time at each step (~2.5 mA/s)
    mode_search_settle: Annotated[float, "s"] = 0.5  # back at the set point: before the wavemeter

    def __post_init__(self) -> None:
        if self.mode_search_tries < 1:
            raise ValueError(
                f"mode_search_tries must be at least 1, found {self.mode_search_tries}"
            )
        if not 0 < self.mode_search_excursion <= self.mode_search_max_excursion:
            raise ValueError(
                "mode_search_excursion must be positive and at most mode_search_max_excursion"
            )
        if self.mode_search_step <= 0 or self.mode_search_deepen < 0:
            raise ValueError("mode_search_step must be positive, mode_search_deepen not negative")


@dataclass(frozen=True)
class PulseCalibration:
    """How the live daemon turns a probe into pulses on the pulse controller: the clock beam's
    calibrated Rabi frequency and the detection that tells an excited (dark) ion."""

    clock_rabi_frequency: Annotated[float, "Hz"] = 25.0  # at full amplitude
    cooling_time: Annotated[float, "s"] = 0.002
    detection_time: Annotated[float, "s"] = 0.001
    dark_threshold: int = 2  # counts at or below this in the detection window: excited (dark)
    presence_count_time: Annotated[float, "s"] = 0.05
    presence_threshold_rate: Annotated[float, "1/s"] = 3000.0  # cooled counts above: an ion
    # the ion is watched in the interrogation's own shots (servo/ion_watch.py)
    watch_cooling: bool = True  # count each shot's cooling window; no fluorescence: ion lost
    ion_check_interval: Annotated[float, "s"] = 0.5  # longest pulser run between looks at it

    def __post_init__(self) -> None:
        if self.cooling_time <= 0 or self.ion_check_interval <= 0:
            raise ValueError("cooling_time and ion_check_interval must be positive")


@dataclass(frozen=True)
class ServoSettings:
    """All locks the daemon runs."""

    clock_lock: ClockLockSettings = field(default_factory=ClockLockSettings)
    pulses: PulseCalibration = field(default_factory=PulseCalibration)
    aux_locks: dict[str, AuxLockSettings] = field(default_factory=dict)


@dataclass(frozen=True)
class HealthRule:
    """Alarm bands of one signal, EPICS style: LOLO < LOW < value < HIGH < HIHI, with hysteresis."""

    lolo: Quantity | None = None
    low: Quantity | None = None
    high: Quantity | None = None
    hihi: Quantity | None = None
    hysteresis: Quantity | None = None
    max_rate: Quantity | None = None
    stale_after: Annotated[float, "s"] = 5.0
    debounce: Annotated[float, "s"] = 0.0
    unit: str = ""  # of the signal's value, for people ("counts/s"); "" = the limits' unit


@dataclass(frozen=True)
class HealthSettings:
    """Rules per signal; signal names are `<instrument>.<parameter>` or `servo.<loop>.<quantity>`."""

    rules: dict[str, HealthRule] = field(default_factory=dict)


@dataclass(frozen=True)
class PlaybookSettings:
    """Bounds of one recovery playbook."""

    enabled: bool = True
    max_retries: int = 3
    step_timeout: Annotated[float, "s"] = 60.0
    total_timeout: Annotated[float, "s"] = 600.0


@dataclass(frozen=True)
class SafeStateSettings:
    """Where the lab is left when recovery gives up: nothing that can hurt the trap or the ion."""

    oven_off: bool = True
    keep_rf: bool = True
    park_lasers: bool = True


@dataclass(frozen=True)
class FaultScenarioSettings:
    """The fault campaign of `ionpilot clock-sim --faults default` (the autonomy issue's month):
    periodic faults (0 = never) with staggered first occurrences so they do not coincide."""

    ion_loss_every: Annotated[float, "s"] = 4 * 3600.0
    cooling_mode_hop_every: Annotated[float, "s"] = 8 * 3600.0
    repump_mode_hop_every: Annotated[float, "s"] = 12 * 3600.0
    cavity_unlock_every: Annotated[float, "s"] = 86400.0
    rf_trip_every: Annotated[float, "s"] = 3 * 86400.0
    driver_crash_every: Annotated[float, "s"] = 86400.0
    stray_field_step_every: Annotated[float, "s"] = 0.0
    wavemeter_invalid_fraction: float = 0.01  # of single wavemeter readings
    first_ion_loss: Annotated[float, "s"] = 3600.0
    first_cooling_mode_hop: Annotated[float, "s"] = 2.5 * 3600.0
    first_repump_mode_hop: Annotated[float, "s"] = 5.3 * 3600.0
    first_cavity_unlock: Annotated[float, "s"] = 7.7 * 3600.0
    first_rf_trip: Annotated[float, "s"] = 11.1 * 3600.0
    first_driver_crash: Annotated[float, "s"] = 13.9 * 3600.0
    first_stray_field_step: Annotated[float, "s"] = 17.3 * 3600.0


@dataclass(frozen=True)
class RecoverySettings:
    """Recovery policy: one playbook per fault kind, and the safe state."""

    playbooks: dict[str, PlaybookSettings] = field(default_factory=dict)
    safe_state: SafeStateSettings = field(default_factory=SafeStateSettings)
    restart_backoff_initial: Annotated[float, "s"] = 1.0
    restart_backoff_max: Annotated[float, "s"] = 60.0
    # Added by the autonomy engineer.
    retry_delay: Annotated[float, "s"] = 2.0  # between a failed attempt and the next
    repeat_limit: int = 6  # more trips of one kind than this within repeat_window: escalate
    repeat_window: Annotated[float, "s"] = 3600.0
    unrecognised_after: Annotated[float, "s"] = 60.0  # a MAJOR signal no playbook covers
    lab_error_grace: Annotated[float, "s"] = 2.0  # lock paused by a lab error: retry after
    holdover_drift_uncertainty: Annotated[float, "Hz/s"] = 0.01  # error growth in hold-over
    holdover_line_fraction: float = 0.5  # of the probe half-width: resume without a search
    health_period: Annotated[float, "s"] = 1.0  # how often the signals are read
    micromotion_period: Annotated[float, "s"] = 600.0  # how often micromotion is measured
    dc_compensation_period: Annotated[float, "s"] = 0.0  # scheduled DC scans (0 = on alarm)
    fluorescence_threshold: Annotated[float, "1/s"] = 3000.0  # cooled counts above: an ion
    single_ion_rate: Annotated[float, "1/s"] = 20_000.0  # expected for one bright ion (net)
    chain_ions: int = 1  # ions the trap holds when whole: reloads until each one fluoresces
    oven_current: Annotated[float, "A"] = 2.4  # during a reload (hot start, within limits)
    oven_voltage: Annotated[float, "V"] = 3.0  # compliance: the oven is current-driven
    oven_supply: str = "oven"
    oven_channel: int = 1
    pi_shutter: str = "shutter_399"
    repump_shutter: str = "shutter_935"
    rf_drive: str = "rf_drive"
    rf_power: Annotated[float, "dBm"] = 0.0  # the trap's operating RF power
    rf_ramp_start: Annotated[float, "dBm"] = -20.0
    rf_ramp_step: Annotated[float, "dBm"] = 2.0
    rf_ramp_interval: Annotated[float, "s"] = 0.5
    dc_electrodes: str = "dc_electrodes"
    dc_channels: tuple[int, ...] = (1, 2)
    dc_scan_step: Annotated[float, "V"] = 0.1
    recool_time: Annotated[float, "s"] = 2.0
    driver_process: str = "drivers"
    heartbeat_stale_after: Annotated[float, "s"] = 2.0
    scenario: FaultScenarioSettings = field(default_factory=FaultScenarioSettings)
