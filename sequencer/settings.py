"""Settings of the trapped-ion processor as the sequencer sees it: ions, native gates and their
calibrated figures, the pulse controller's channels and timeline, and the simulator's error model.

Defaults describe a five-ion 171Yb+ hyperfine-qubit processor driven by 355 nm Raman beams (one
global, one addressed beam per ion), with the 435.5 nm E2 clock beam on the same controller.
Figures follow typical published values (single-qubit 10-135 us, two-qubit 100-600 us, fidelities
99.9-99.99 % / 99-99.9 %, SPAM 99.6 %, T2 ~ 1 s). Imports nothing of ours (the calibration
validities are checked against the calibration record's table, imported when there are some).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

ChannelKind = Literal["beam_global", "beam_addressed", "ttl", "shutter", "detection"]


@dataclass(frozen=True)
class ChannelSettings:
    """One pulse-controller output: an AOM-driven beam, a TTL, a shutter or a detection gate."""

    kind: ChannelKind = "beam_addressed"
    ion: int | None = None
    aom_center_frequency: Annotated[float, "Hz"] = 110e6
    aom_bandwidth: Annotated[float, "Hz"] = 20e6
    max_amplitude: float = 1.0
    min_duration: Annotated[float, "s"] = 100e-9
    rabi_frequency: Annotated[float, "Hz"] = 25e3


@dataclass(frozen=True)
class GateCalibration:
    """Duration and benchmarked fidelity (with its standard error) of one native gate."""

    duration: Annotated[float, "s"]
    fidelity: float
    fidelity_error: float


@dataclass(frozen=True)
class ErrorModelSettings:
    """What the simulated ion chain gets wrong: coherent over-rotation and detuning, dephasing, SPAM."""

    over_rotation: float = 0.002
    detuning: Annotated[float, "Hz"] = 2.0
    dephasing_time: Annotated[float, "s"] = 1.0
    prep_error: float = 0.001
    readout_error_dark: float = 0.002
    readout_error_bright: float = 0.006
    addressing_crosstalk: float = 0.0  # an addressed beam's Rabi frequency on each neighbour


def _default_channels() -> dict[str, ChannelSettings]:
    channels: dict[str, ChannelSettings] = {
        "raman_global": ChannelSettings(
            kind="beam_global", aom_center_frequency=200e6, aom_bandwidth=40e6
        ),
    }
    for ion in range(5):
        channels[f"raman_addr_{ion}"] = ChannelSettings(kind="beam_addressed", ion=ion)
    channels["clock_435"] = ChannelSettings(
        kind="beam_global",
        aom_center_frequency=80e6,
        aom_bandwidth=10e6,
        rabi_frequency=5e3,
    )
    channels["cool_369"] = ChannelSettings(kind="ttl", aom_center_frequency=0.0, aom_bandwidth=0.0)
    channels["pump_369"] = ChannelSettings(kind="ttl", aom_center_frequency=0.0, aom_bandwidth=0.0)
    channels["repump_935"] = ChannelSettings(
        kind="shutter", aom_center_frequency=0.0, aom_bandwidth=0.0, min_duration=2e-3
    )
    channels["pmt"] = ChannelSettings(kind="detection", aom_center_frequency=0.0, aom_bandwidth=0.0)
    return channels


@dataclass(frozen=True)
class DeviceSettings:
    """The trapped-ion processor: ions, native gates, calibrated figures, channels and timeline."""

    name: str = "ionpilot-yb171-5"
    species: str = "171Yb+"
    ions: int = 5
    native_gates: tuple[str, ...] = ("r", "rz", "ms", "rxx")
    connectivity: Literal["all_to_all"] = "all_to_all"
    r_gate: GateCalibration = field(
        default_factory=lambda: GateCalibration(
            duration=10e-6, fidelity=0.9995, fidelity_error=0.0002
        )
    )
    ms_gate: GateCalibration = field(
        default_factory=lambda: GateCalibration(
            duration=200e-6, fidelity=0.995, fidelity_error=0.001
        )
    )
    t1: Annotated[float, "s"] = 100.0
    t1_error: Annotated[float, "s"] = 10.0
    t2: Annotated[float, "s"] = 1.0
    t2_error: Annotated[float, "s"] = 0.1
    spam_fidelity: float = 0.996
    spam_fidelity_error: float = 0.001
    motional_frequency: Annotated[float, "Hz"] = 3.0e6
    time_unit: Annotated[float, "s"] = 1e-9
    grid_mu: int = 4
    max_schedule_duration: Annotated[float, "s"] = 2.0
    max_event_rate: Annotated[float, "Hz"] = 15e6
    event_fifo_depth: int = 256
    cooling_duration: Annotated[float, "s"] = 1e-3
    pumping_duration: Annotated[float, "s"] = 20e-6
    detection_duration: Annotated[float, "s"] = 300e-6
    global_channel: str = "raman_global"
    clock_channel: str = "clock_435"
    cooling_channel: str = "cool_369"
    pumping_channel: str = "pump_369"
    detection_channel: str = "pmt"
    feedback_latency: Annotated[float, "s"] = 2e-6  # detection end -> a branch on it may start
    detection_threshold: int = 1  # photons per ion and window at or above which it reads |0>
    pulse_controller: str = "pulser"  # the lab instrument the trap backend plays schedules on
    channels: dict[str, ChannelSettings] = field(default_factory=_default_channels)
    error_model: ErrorModelSettings = field(default_factory=ErrorModelSettings)
    # how long a recorded calibration stays valid, per quantity (`ms_fidelity: 12 h`); older, the
    # device reports NEEDSCALIBRATION. Absent quantities keep sequencer/calibrations.py's defaults
    calibration_validity: dict[str, Annotated[float, "s"]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.calibration_validity:  # checked against the calibration record's own table
            from ionpilot.sequencer.calibrations import validity_table

            validity_table(self.calibration_validity)
