"""Settings of the simulated 171Yb+ E2 clock lab: run parameters and physics, with defaults from
REFERENCE.md §2–5. The lab file's `sim:` section maps onto `SimSettings` field by field.

Imports nothing of ours: the world and the simulated instruments are read-only consumers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated


@dataclass(frozen=True)
class IonSettings:
    """The ion: clock line, coherent drive strengths, fluorescence, loss and reloading."""

    clock_frequency: Annotated[float, "Hz"] = 688_358_979_309_308.0
    natural_linewidth: Annotated[float, "Hz"] = 3.1
    clock_rabi_frequency: Annotated[float, "Hz"] = 25.0  # Omega/2pi at amplitude 1
    gate_rabi_frequency: Annotated[float, "Hz"] = 50e3  # 435.5 nm gate R(theta, phi) at amplitude 1
    ms_rate: Annotated[float, "Hz"] = 1250.0  # MS theta = 2pi * rate * amplitude * t
    bright_count_rate: Annotated[float, "1/s"] = 20_000.0  # detected photons, nominal cooling
    background_count_rate: Annotated[float, "1/s"] = 500.0
    cooling_linewidth: Annotated[float, "Hz"] = 19.6e6  # 369 nm S1/2-P1/2 natural width
    cooling_detuning: Annotated[float, "Hz"] = -10e6  # nominal laser_369 detuning, -Gamma/2
    repump_linewidth: Annotated[float, "Hz"] = 30e6  # effective (power-broadened) 935 width
    pi_linewidth: Annotated[float, "Hz"] = 100e6  # 399 nm photoionisation acceptance (HWHM)
    loss_rate: Annotated[float, "1/s"] = 1e-5  # background-gas loss per ion (~28 h lifetime)
    reload_time: Annotated[float, "s"] = 30.0  # mean loading time: hot oven, PI beam on
    dark_state_lifetime: Annotated[float, "s"] = 600.0  # ion_dark clears by itself after ~this
    heating_loss_rate: Annotated[float, "1/s"] = 0.05  # loss rate with blue-detuned cooling


@dataclass(frozen=True)
class ClockLaserSettings:
    """The 435.5 nm clock laser locked to its ULE reference cavity."""

    cavity_drift: Annotated[float, "Hz/s"] = 0.05
    flicker_floor: float = 1e-16  # fractional Allan deviation floor
    linewidth: Annotated[float, "Hz"] = 0.1  # Lorentzian (white FM) linewidth
    initial_offset: Annotated[float, "Hz"] = 37.0  # line centre sits at AOM 200 MHz + this
    relock_time: Annotated[float, "s"] = 5.0
    unlocked_offset: Annotated[float, "Hz"] = 30e6  # free-running laser scatter when unlocked
    unlock_rate: Annotated[float, "1/s"] = 0.0  # spontaneous cavity unlocks


@dataclass(frozen=True)
class AuxLaserSettings:
    """Cooling, repump and photoionisation diode lasers (Toptica DL pro heads)."""

    piezo_tuning: Annotated[float, "Hz/V"] = 0.4e9
    current_tuning: Annotated[float, "Hz/A"] = -0.1e12  # -0.1 GHz/mA
    mode_hop_size: Annotated[float, "Hz"] = 3e9
    # ECDL mode hops are hysteretic: a hopped laser drops back to its mode once its diode
    # current is taken this far below the current it hopped at (and stays there on the way up)
    mode_hop_current_excursion: Annotated[float, "A"] = 1.5e-3
    frequency_walk: Annotated[float, "Hz"] = 50e3  # random-walk rms after 1 s (grows as sqrt t)
    mode_hop_rate: Annotated[float, "1/s"] = 0.0  # spontaneous hops per laser


@dataclass(frozen=True)
class TrapSettings:
    """RF and DC trap supplies and the micromotion they cause."""

    rf_min_power: Annotated[float, "dBm"] = -10.0
    rf_min_frequency: Annotated[float, "Hz"] = 20e6
    rf_max_frequency: Annotated[float, "Hz"] = 40e6
    rf_off_survival_time: Annotated[float, "s"] = 1.0  # ion survives RF off ~exp(-t/this)
    rf_trip_rate: Annotated[float, "1/s"] = 0.0
    dc_field_per_volt: Annotated[float, "V/m"] = 100.0  # field per compensation volt
    micromotion_field_scale: Annotated[float, "V/m"] = 50.0  # residual field giving beta = 1
    stray_field_x: Annotated[float, "V/m"] = 0.0
    stray_field_y: Annotated[float, "V/m"] = 0.0
    stray_field_step: Annotated[float, "V/m"] = 30.0  # size of a stray_field_step fault


@dataclass(frozen=True)
class OvenSettings:
    """Resistively heated Yb oven on the bench supply."""

    resistance: Annotated[float, "V/A"] = 0.8  # ohm
    nominal_current: Annotated[float, "A"] = 2.0  # reload_time applies at this current
    current_scale: Annotated[float, "A"] = 0.15  # flux grows e-fold per this much current
    time_constant: Annotated[float, "s"] = 20.0  # thermal lag of the flux


@dataclass(frozen=True)
class WavemeterSettings:
    """Bristol 871A behind the fibre switch."""

    noise_ppm: float = 0.002  # rms per reading
    offset_ppm: float = 0.0  # fixed calibration error (spec: within +-0.2 ppm)
    invalid_duration: Annotated[float, "s"] = 10.0  # length of a wavemeter_invalid fault


@dataclass(frozen=True)
class CombSettings:
    """Menlo FC1500 comb and the beat-note counter."""

    repetition_rate: Annotated[float, "Hz"] = 250e6  # nominal; fine-tuned to place the beat
    offset_frequency: Annotated[float, "Hz"] = 20e6
    beat_frequency: Annotated[float, "Hz"] = 60e6  # where the clock-laser beat sits
    relock_time: Annotated[float, "s"] = 20.0
    counter_jitter: Annotated[float, "s"] = 20e-12  # 53230A single-shot time resolution


@dataclass(frozen=True)
class ChainSettings:
    """The chain as a processor (sim/PROTOCOLS.md §10): the optical qubit's gate beams (the clock
    laser, addressed or global), the axial motional mode the MS gate uses, optical pumping, and
    the per-ion detector (one camera region or PMT-array pixel per ion)."""

    gate_over_rotation: float = 0.002  # the gate beams' Rabi frequency is this much above nominal
    addressing_crosstalk: float = 0.01  # Rabi frequency on each neighbour / on the addressed ion
    lamb_dicke: float = 0.02  # eta of the axial COM mode: 0.045 (one ion, 3 MHz) / sqrt(5)
    mean_phonons: float = 3.0  # n of the COM mode after Doppler cooling (~Gamma / 2 omega)
    heating_rate: Annotated[float, "Hz"] = 30.0  # COM-mode quanta gained per second (1/s)
    prep_error: float = 0.001  # optical pumping leaves an ion in |1> with this probability
    hiding_error: float = 5e-4  # a spectator's phase flip while others are detected or reset
    detection_crosstalk: float = 2e-4  # fraction of an ion's photons seen by each neighbour's pixel
    pixel_background_rate: Annotated[float, "Hz"] = 10.0  # stray-light counts per second in a pixel


@dataclass(frozen=True)
class SimSettings:
    """The simulated lab: seed, speed, ion count and the physics of every part."""

    seed: int = 1
    speed: float = 1.0  # real-time mode: world seconds per wall second
    # ions in the trap: one unless the lab file says more (the default lab's `sim.n_ions` holds
    # the five-ion chain the device describes; single-ion physics tests build on this default)
    n_ions: int = 1
    clock_ions: int = 1  # ions `ionpilot clock-sim` interrogates (a single-ion clock by default)
    epoch_unix: Annotated[float, "s"] = 1_700_000_000.0  # virtual time's Unix start
    ion: IonSettings = field(default_factory=IonSettings)
    clock_laser: ClockLaserSettings = field(default_factory=ClockLaserSettings)
    aux_lasers: AuxLaserSettings = field(default_factory=AuxLaserSettings)
    trap: TrapSettings = field(default_factory=TrapSettings)
    oven: OvenSettings = field(default_factory=OvenSettings)
    wavemeter: WavemeterSettings = field(default_factory=WavemeterSettings)
    comb: CombSettings = field(default_factory=CombSettings)
    chain: ChainSettings = field(default_factory=ChainSettings)

    def __post_init__(self) -> None:
        if not 1 <= self.n_ions <= 10:
            raise ValueError(f"n_ions must be 1..10, found {self.n_ions}")
        if not 1 <= self.clock_ions <= 10:
            raise ValueError(f"clock_ions must be 1..10, found {self.clock_ions}")
        if self.speed <= 0:
            raise ValueError(f"speed must be positive, found {self.speed}")
