"""The physics of the simulated 171Yb+ E2 clock lab, advanced lazily on an injectable clock.

Every public method first brings the world up to the clock's "now" (`_sync`), then reads or
changes it. Measurements that take time (a counter gate, a pulse schedule, a clock probe)
*consume* world time: on a virtual clock they push the clock forward, on a real clock the world
runs ahead and the caller waits (`ready_in`) before replying. Stochastic events (ion loss,
loading, spontaneous faults, scheduled scenario faults) are drawn as exact waiting times, so one
hour with nobody looking costs a few hundred small steps.

The clock laser's frequency is kept as an offset from a reference (`clock_reference_hz`):
float64 resolves 0.125 Hz at 688 THz, too coarse for the line.
"""

from __future__ import annotations

import cmath
import heapq
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import partial

import numpy as np

from .chain import IonChain, detuned_pulse
from .chain_models import own_photons
from .chain_run import ChainRun, RunConditions
from .clock import RealClock, VirtualClock, WorldClock
from .physics import (
    SPEED_OF_LIGHT,
    FlickerNoise,
    NormalStream,
    bessel_j,
    lorentzian,
    poisson,
    rabi_excitation,
    scattering,
)
from .settings import SimSettings

AOM_CENTRE_HZ = 200e6
MAX_STEP_S = 10.0
N_DC_CHANNELS = 24
N_SUPPLY_CHANNELS = 3
NOMINAL_PIEZO_V = 70.0
LASER_THRESHOLD_A = 0.010


@dataclass(frozen=True)
class LaserSpec:
    """A laser's line and nominal operating point (the DLC pro's power-on state)."""

    key: str
    resonance_hz: float
    nominal_current_a: float
    fibre_power_w: float  # at the wavemeter, at nominal current


LASER_SPECS: dict[str, LaserSpec] = {
    "369": LaserSpec("369", 811_291_450e6, 0.060, 0.25e-3),  # 171Yb+ S1/2 F=1 - P1/2 F=0
    "935": LaserSpec("935", 320_569_250e6, 0.100, 0.40e-3),  # D3/2 - 3D[3/2]1/2
    "399": LaserSpec("399", 751_526_500e6, 0.050, 0.15e-3),  # neutral 171Yb 1S0 - 1P1
    "435": LaserSpec("435", 688_358_979_309_308.0, 0.120, 0.05e-3),  # clock laser
}
WAVEMETER_CHANNELS: dict[int, str] = {1: "369", 2: "935", 3: "399", 4: "435"}
SHUTTERS = ("399", "935")
COMB_HISTORY_S = 3600  # the comb's data server keeps the last hour of records

FAULT_KINDS = (
    "ion_loss",
    "ion_dark",
    "mode_hop",
    "cavity_unlock",
    "rf_trip",
    "stray_field_step",
    "comb_unlock",
    "wavemeter_invalid",
    "instrument_hang",
    "instrument_disconnect",
    "garbage_reply",
    "chain_melt",
    "restore",
)
INSTRUMENT_FAULTS = {
    "instrument_hang": "hang",
    "instrument_disconnect": "disconnect",
    "garbage_reply": "garbage",
}


class FaultError(ValueError):
    """A fault request the world cannot apply (unknown kind, missing or unknown target)."""


@dataclass
class Laser:
    """One diode laser: DLC pro settings plus the frequency offsets they and faults cause.

    A mode hop moves the laser to a neighbouring external-cavity mode (`hop_hz`) at the diode
    current it had then (`hop_current_a`). Hops are hysteretic: the laser stays on the new mode
    until the current is taken `mode_hop_current_excursion` below that point, where it drops
    back to its own mode and stays there when the current is brought back (`sweep_current`)."""

    spec: LaserSpec
    current_a: float
    piezo_v: float = NOMINAL_PIEZO_V
    enabled: bool = True
    hop_hz: float = 0.0
    walk_hz: float = 0.0
    hop_current_a: float | None = None  # diode current when it hopped (None: on its mode)

    def hop(self, offset_hz: float) -> None:
        """Jump to another mode; a second hop before the first is undone keeps the first's
        current as the point the hysteresis is measured from."""
        self.hop_hz += offset_hz
        if self.hop_hz == 0.0:
            self.hop_current_a = None  # hopped back by itself
        elif self.hop_current_a is None:
            self.hop_current_a = self.current_a

    def return_to_mode(self) -> None:
        self.hop_hz = 0.0
        self.hop_current_a = None

    def sweep_current(self, current_a: float, excursion_a: float) -> bool:
        """A new current set-point; True if it took a hopped laser back to its mode."""
        self.current_a = current_a
        if self.hop_current_a is None or current_a > self.hop_current_a - excursion_a:
            return False
        self.return_to_mode()
        return True

    @property
    def emitting(self) -> bool:
        return self.enabled and self.current_a > LASER_THRESHOLD_A

    def tuning_hz(self, piezo_hz_per_v: float, current_hz_per_a: float) -> float:
        return (
            piezo_hz_per_v * (self.piezo_v - NOMINAL_PIEZO_V)
            + current_hz_per_a * (self.current_a - self.spec.nominal_current_a)
            + self.hop_hz
            + self.walk_hz
        )

    def power_w(self) -> float:
        if not self.emitting:
            return 0.0
        span = self.spec.nominal_current_a - LASER_THRESHOLD_A
        return self.spec.fibre_power_w * (self.current_a - LASER_THRESHOLD_A) / span


@dataclass
class DcChannel:
    """A QDAC-II channel slewing from `start_v` (at `start_t`) towards `level_v`."""

    level_v: float = 0.0
    start_v: float = 0.0
    start_t: float = 0.0
    slew_v_per_s: float = 2e7
    #: a running sweep or list generator: the output as a function of world time
    profile: Callable[[float], float] | None = None

    def output(self, t: float) -> float:
        if self.profile is not None:
            return self.profile(t)
        span = self.level_v - self.start_v
        reach = self.slew_v_per_s * max(0.0, t - self.start_t)
        if abs(span) <= reach:
            return self.level_v
        return self.start_v + math.copysign(reach, span)


@dataclass
class SupplyChannel:
    """One HMC8043 output."""

    voltage_v: float = 0.0
    current_a: float = 0.0
    enabled: bool = False


@dataclass(frozen=True)
class WavemeterReading:
    """One wavemeter exposure; frequency and wavelength are 0 when the exposure is invalid."""

    valid: bool
    frequency_hz: float
    wavelength_m: float
    power_w: float
    index: int


@dataclass(frozen=True)
class CombRecord:
    """One Menlo data record (once per second of world time)."""

    timestamp: float
    repetition_rate_hz: float
    offset_frequency_hz: float
    beat_hz: float
    locked: bool


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of one clock interrogation: ions present, how many were projected to the upper
    clock state, and the detection counts (background only when no ion fluoresces)."""

    ions: int
    excited: int
    counts: int
    detuning_hz: float


@dataclass(frozen=True)
class Pulse:
    """One validated pulse of a pulser schedule (times in ns, as on the wire)."""

    t_ns: int
    duration_ns: int
    channel: str
    amplitude: float = 1.0
    phase_rad: float = 0.0
    frequency_hz: float | None = None
    target: int | None = None
    targets: tuple[int, int] = (0, 1)
    phase_b_rad: float = 0.0
    window: str | None = None
    per_ion: bool = False
    ions: tuple[int, ...] | None = None  # detect / repump on these ions only (others hidden)
    # a conditional segment: played only if this returns True for the windows counted so far
    # in the same shot (the pulser builds it from the request's `condition`)
    condition: Callable[[dict[str, int | list[int]]], bool] | None = field(
        default=None, compare=False
    )


@dataclass
class _Scheduled:
    at: float
    seq: int
    kind: str
    target: str | None = field(compare=False)

    def __lt__(self, other: _Scheduled) -> bool:
        return (self.at, self.seq) < (other.at, other.seq)


_CLOCK_CHANNELS = frozenset({"cool", "repump", "clock", "detect"})


class World:
    """The simulated lab's physics. Thread-safe: every public method holds one lock."""

    def __init__(self, settings: SimSettings | None = None, clock: WorldClock | None = None):
        self.settings = s = settings or SimSettings()
        self.clock: WorldClock = (
            clock if clock is not None else VirtualClock(wall_start_ns=round(s.epoch_unix * 1e9))
        )
        self._lock = threading.RLock()
        self.rng = random.Random(s.seed)
        self.nprng = np.random.default_rng(s.seed)
        self.normal = NormalStream(np.random.default_rng([s.seed, 1]))
        self._flicker_pending = 0.0  # noise steps are batched until someone looks
        self._walk_pending = 0.0
        self.t = self.clock.now()
        self.epoch_unix = (
            time.time() - self.t if isinstance(self.clock, RealClock) else s.epoch_unix
        )
        self.events: deque[tuple[float, str]] = deque(maxlen=2000)
        self._listeners: list[Callable[[str, str | None], None]] = []
        self._schedule: list[_Scheduled] = []
        self._seq = 0

        # Lasers and shutters (the lab as found in the morning: lasers on, repump unblocked).
        self.lasers = {k: Laser(spec, spec.nominal_current_a) for k, spec in LASER_SPECS.items()}
        self.shutters = {"399": False, "935": True}
        # Clock laser and its cavity: offset of the locked light from clock_reference_hz.
        cl = s.clock_laser
        self.clock_reference_hz = s.ion.clock_frequency - AOM_CENTRE_HZ - cl.initial_offset
        self.flicker = FlickerNoise.for_floor(cl.flicker_floor, s.ion.clock_frequency, self.rng)
        self.white_fm_h0 = cl.linewidth / math.pi  # Hz^2/Hz; Lorentzian FWHM = pi h0
        self.cavity_lock_enabled = True
        self.cavity_state = 2  # 0 unlocked, 1 locking, 2 locked
        self.cavity_relock_at = 0.0
        self.free_running_hz = 0.0
        # Trap.
        self.rf_output = True
        self.rf_frequency_hz = 30e6
        self.rf_power_dbm = 0.0
        self.dc = [DcChannel() for _ in range(N_DC_CHANNELS)]
        self.stray_field = [s.trap.stray_field_x, s.trap.stray_field_y]
        # Oven supply (channel 1 heats the oven).
        self.supply = [SupplyChannel() for _ in range(N_SUPPLY_CHANNELS)]
        self.supply_master = False
        self.oven_effective_a = 0.0
        # Ions.
        self.present = [True] * s.n_ions
        self.dark = [False] * s.n_ions
        self.lost_at = [math.inf] * s.n_ions  # world time each ion last left the trap
        self.processor = ChainRun(s, self.nprng)  # the chain as a processor (chain_run.py)
        self.chain = IonChain(s.n_ions, self.nprng)  # one shot's state (the clock fast path)
        # Wavemeter.
        self.wavemeter_invalid_until = -math.inf
        self.wavemeter_index = 0
        # Comb: choose f_rep so the clock-laser beat sits at the configured frequency, and keep
        # the reference exact (Fraction) so the comb formula can be checked to the last digit.
        c = s.comb
        n = round(
            (self.clock_reference_hz - c.offset_frequency - c.beat_frequency) / c.repetition_rate
        )
        self.comb_mode_number = n
        self.comb_repetition_rate = (
            self.clock_reference_hz - c.offset_frequency - c.beat_frequency
        ) / n
        exact = (
            Fraction(self.clock_reference_hz)
            - n * Fraction(self.comb_repetition_rate)
            - Fraction(c.offset_frequency)
        )
        self.comb_beat_at_reference = float(exact)
        self.comb_locked = True
        self.comb_relock_at = 0.0
        self.comb_unlocked_at = 0.0
        self.comb_unlocks: deque[tuple[float, float]] = deque(maxlen=256)  # (from, to) world s
        self.comb_records: dict[int, CombRecord] = {}
        self.comb_rng = random.Random(f"{s.seed}-comb")
        # Pulser.
        self.dds: dict[str, dict[str, float]] = {
            "clock_aom": {"frequency_hz": AOM_CENTRE_HZ, "amplitude": 1.0, "phase_rad": 0.0}
        }
        # Faults on instruments (name -> "hang" | "disconnect" | "garbage").
        self.instrument_faults: dict[str, str] = {}
        self.wall_start = time.time()
        self.last_clock_detunings_hz: list[float] = []  # truth of the last clock run, per shot
        # shot by shot: when the last clock pulse ended (free precession runs from there)

    # ---- time -------------------------------------------------------------------------------

    def now(self) -> float:
        with self._lock:
            return max(self.t, self.clock.now())

    def unix_time(self, t: float | None = None) -> float:
        return self.epoch_unix + (self.now() if t is None else t)

    def advance(self, seconds: float) -> None:
        """Let `seconds` of world time pass (on a virtual clock this moves the clock)."""
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        with self._lock:
            self._sync()
            self._consume(seconds)

    def advance_to(self, t: float) -> None:
        with self._lock:
            self._sync()
            if t > self.t:
                self._consume(t - self.t)

    def ready_in(self) -> float:
        """Real seconds until the clock reaches the world's time (a real clock that the world ran
        ahead of by a measurement); 0 on a virtual clock."""
        if isinstance(self.clock, RealClock):
            return self.clock.seconds_until(self.t)
        return 0.0

    def _sync(self) -> None:
        now = self.clock.now()
        if now > self.t:
            self._evolve(now - self.t)

    def _consume(self, seconds: float) -> None:
        self._evolve(seconds)
        if isinstance(self.clock, VirtualClock):
            self.clock.advance_to(self.t)

    def _evolve(self, dt: float) -> None:
        """Advance the state by dt: continuous noise exactly, random events at exact times."""
        end = self.t + dt
        while self.t < end:
            h = min(end - self.t, MAX_STEP_S)
            if self._schedule and self._schedule[0].at < self.t + h:
                h = max(0.0, self._schedule[0].at - self.t)
            hazards = self._hazards()
            total = sum(rate for rate, _ in hazards)
            wait = self.rng.expovariate(total) if total > 0 else math.inf
            if wait < h:
                self._continuous(wait)
                pick = self.rng.random() * total
                for rate, action in hazards:
                    pick -= rate
                    if pick <= 0:
                        action()
                        break
                continue
            last = h >= end - self.t  # decided before the step moves t
            self._continuous(h)
            if last:
                self.t = max(self.t, end)
            while self._schedule and self._schedule[0].at <= self.t:
                item = heapq.heappop(self._schedule)
                self._apply_fault(item.kind, item.target)

    def _continuous(self, h: float) -> None:
        s = self.settings
        self.t += h
        self._flicker_pending += h
        self._walk_pending += h
        if self.cavity_state == 1 and self.t >= self.cavity_relock_at:
            self.cavity_state = 2
            self.free_running_hz = 0.0
            self._log("cavity locked")
        if not self.comb_locked and self.t >= self.comb_relock_at:
            self.comb_locked = True
            self._log("comb locked")
        target = self.oven_current_a()
        if self.oven_effective_a != target:
            tau = s.oven.time_constant
            a = math.exp(-h / tau) if tau > 0 else 0.0
            self.oven_effective_a = target + (self.oven_effective_a - target) * a

    def _hazards(self) -> list[tuple[float, Callable[[], object]]]:
        s = self.settings
        out: list[tuple[float, Callable[[], object]]] = []
        loss = s.ion.loss_rate
        if not self.trap_on():
            loss += 1.0 / s.trap.rf_off_survival_time
        if self._cooling_blue():
            loss += s.ion.heating_loss_rate
        for i in range(s.n_ions):
            if self.present[i]:
                if loss > 0:
                    out.append((loss, partial(self._lose, i, "lost")))
                if self.dark[i] and s.ion.dark_state_lifetime > 0:
                    rate = 1.0 / s.ion.dark_state_lifetime
                    out.append((rate, partial(self._undark, i)))
        if not all(self.present):
            rate = self.loading_rate()
            if rate > 0:
                out.append((rate, self._load))
        if s.clock_laser.unlock_rate > 0 and self.cavity_state == 2:
            out.append(
                (s.clock_laser.unlock_rate, partial(self._apply_fault, "cavity_unlock", None))
            )
        if s.trap.rf_trip_rate > 0 and self.rf_output:
            out.append((s.trap.rf_trip_rate, partial(self._apply_fault, "rf_trip", None)))
        if s.aux_lasers.mode_hop_rate > 0:
            for key in ("369", "935", "399"):
                out.append(
                    (s.aux_lasers.mode_hop_rate, partial(self._apply_fault, "mode_hop", key))
                )
        return out

    def _log(self, text: str) -> None:
        self.events.append((self.t, text))

    # ---- ions, trap, oven ---------------------------------------------------------------------

    def trap_on(self) -> bool:
        tr = self.settings.trap
        return (
            self.rf_output
            and self.rf_power_dbm >= tr.rf_min_power
            and tr.rf_min_frequency <= self.rf_frequency_hz <= tr.rf_max_frequency
        )

    def ions_present(self) -> int:
        with self._lock:
            self._sync()
            return sum(self.present)

    def _lose(self, i: int, why: str) -> None:
        self.present[i] = False
        self.lost_at[i] = self.t
        self.dark[i] = False
        self._log(f"ion {i} {why}")

    def _undark(self, i: int) -> None:
        self.dark[i] = False
        self._log(f"ion {i} left the dark state")

    def _load(self) -> None:
        i = self.present.index(False)
        self.present[i] = True
        self.lost_at[i] = math.inf
        self.dark[i] = False
        self._log(f"ion {i} loaded")

    def oven_current_a(self) -> float:
        ch = self.supply[0]
        if not (self.supply_master and ch.enabled):
            return 0.0
        return min(ch.current_a, ch.voltage_v / self.settings.oven.resistance)

    def loading_rate(self) -> float:
        """Ions loaded per second: oven flux × photoionisation × cooling capture × trap."""
        s = self.settings
        if not self.trap_on() or self.oven_effective_a < 0.25 * s.oven.nominal_current:
            return 0.0
        pi_laser = self.lasers["399"]
        if not (self.shutters["399"] and pi_laser.emitting and self.lasers["369"].emitting):
            return 0.0
        flux = math.exp((self.oven_effective_a - s.oven.nominal_current) / s.oven.current_scale)
        pi = lorentzian(self.laser_detuning_hz("399"), 2 * s.ion.pi_linewidth)
        return flux * pi / s.ion.reload_time

    def micromotion_beta(self) -> float:
        tr = self.settings.trap
        ex = self.stray_field[0] - tr.dc_field_per_volt * self.dc[0].output(self.t)
        ey = self.stray_field[1] - tr.dc_field_per_volt * self.dc[1].output(self.t)
        return math.hypot(ex, ey) / tr.micromotion_field_scale

    def _cooling_blue(self) -> bool:
        return self.lasers["369"].emitting and self.laser_detuning_hz("369") > 0

    def fluorescence_factor(self) -> float:
        """Scattering of one bright, cooled ion relative to the nominal operating point."""
        s = self.settings.ion
        cool, rep = self.lasers["369"], self.lasers["935"]
        if not (cool.emitting and rep.emitting and self.shutters["935"] and self.trap_on()):
            return 0.0
        sat = cool.power_w() / cool.spec.fibre_power_w
        cooling = self.laser_detuning_hz("369")
        rel = scattering(cooling, s.cooling_linewidth, sat) / scattering(
            s.cooling_detuning, s.cooling_linewidth, 1.0
        )
        if cooling > 0:  # blue of the line (`_cooling_blue`: the laser emits, checked above)
            rel *= 0.1  # Doppler heating: the ion is hot and scatters little
        rel *= lorentzian(self.laser_detuning_hz("935"), s.repump_linewidth)
        rel *= bessel_j(0, self.micromotion_beta()) ** 2
        return rel

    def _bright_ions(self) -> list[bool]:
        return [p and not d for p, d in zip(self.present, self.dark, strict=True)]

    def cooled_count_rate(self) -> float:
        with self._lock:
            self._sync()
            s = self.settings.ion
            n = sum(self._bright_ions())
            return n * s.bright_count_rate * self.fluorescence_factor() + s.background_count_rate

    # ---- lasers -------------------------------------------------------------------------------

    def laser_frequency_hz(self, key: str) -> float:
        """Optical frequency of a laser (for the clock laser: the light the comb sees)."""
        with self._lock:
            self._sync()
            if key == "435":
                return self.clock_reference_hz + self.clock_offset_hz()
            return self._aux_frequency(key)

    def _aux_frequency(self, key: str) -> float:
        a = self.settings.aux_lasers
        if self._walk_pending > 0:
            if a.frequency_walk > 0:
                scale = a.frequency_walk * math.sqrt(self._walk_pending)
                for k in ("369", "935", "399"):
                    self.lasers[k].walk_hz += scale * self.normal()
            self._walk_pending = 0.0
        laser = self.lasers[key]
        nominal = laser.spec.resonance_hz
        if key == "369":
            nominal += self.settings.ion.cooling_detuning
        return nominal + laser.tuning_hz(a.piezo_tuning, a.current_tuning)

    def laser_detuning_hz(self, key: str) -> float:
        laser = self.lasers[key]
        return self._aux_frequency(key) - laser.spec.resonance_hz

    def clock_offset_hz(self, t: float | None = None, white_over: float = 0.0) -> float:
        """Clock-laser frequency minus clock_reference_hz; with `white_over` > 0, the mean over an
        interval of that length (white FM averaged, flicker and drift at the present state)."""
        s = self.settings.clock_laser
        t = self.t if t is None else t
        if self._flicker_pending > 0:
            self.flicker.step(self._flicker_pending, self.normal)
            self._flicker_pending = 0.0
        off = s.cavity_drift * t + self.flicker.value
        if white_over > 0 and self.white_fm_h0 > 0:
            off += math.sqrt(self.white_fm_h0 / (2 * white_over)) * self.normal()
        if self.cavity_state != 2:
            a = self.settings.aux_lasers
            off += self.free_running_hz + self.lasers["435"].tuning_hz(
                a.piezo_tuning, a.current_tuning
            )
        return off

    def set_laser(
        self,
        key: str,
        current_a: float | None = None,
        piezo_v: float | None = None,
        enabled: bool | None = None,
    ) -> None:
        with self._lock:
            self._sync()
            laser = self.lasers[key]
            was_repumping = self._repump_on()
            if current_a is not None:
                excursion = self.settings.aux_lasers.mode_hop_current_excursion
                if laser.sweep_current(current_a, excursion):
                    self._log(
                        f"laser {key} back on its mode (current {current_a * 1e3:.2f} mA, "
                        f"{excursion * 1e3:g} mA below the hop)"
                    )
            if piezo_v is not None:
                laser.piezo_v = piezo_v
            if enabled is not None:
                laser.enabled = enabled
            self._repump_edge(was_repumping)

    def set_cavity_lock(self, enabled: bool) -> None:
        with self._lock:
            self._sync()
            self.cavity_lock_enabled = enabled
            if enabled:
                self.cavity_state = 1
                self.cavity_relock_at = self.t + self.settings.clock_laser.relock_time
            else:
                self._unlock_cavity()

    def _unlock_cavity(self) -> None:
        self.cavity_state = 0
        span = self.settings.clock_laser.unlocked_offset
        self.free_running_hz = self.rng.uniform(-span, span)
        self._log("cavity unlocked")

    def _repump_on(self) -> bool:
        return self.shutters["935"] and self.lasers["935"].emitting

    def _repump_edge(self, was_on: bool) -> None:
        """Repump light returning after a block clears the dark state (the recovery check)."""
        if not was_on and self._repump_on() and any(self.dark):
            self.dark = [False] * len(self.dark)
            self._log("repump cleared the dark state")

    def set_shutter(self, key: str, open_: bool) -> None:
        with self._lock:
            self._sync()
            was = self._repump_on()
            self.shutters[key] = open_
            self._repump_edge(was)

    # ---- trap supplies ------------------------------------------------------------------------

    def set_rf(
        self,
        frequency_hz: float | None = None,
        power_dbm: float | None = None,
        output: bool | None = None,
    ) -> None:
        with self._lock:
            self._sync()
            if frequency_hz is not None:
                self.rf_frequency_hz = frequency_hz
            if power_dbm is not None:
                self.rf_power_dbm = power_dbm
            if output is not None:
                self.rf_output = output

    def set_dc(
        self, channel: int, level_v: float | None = None, slew_v_per_s: float | None = None
    ) -> None:
        """QDAC-II channel (1-based): a new level starts a slew from the present output."""
        with self._lock:
            self._sync()
            ch = self.dc[channel - 1]
            if ch.profile is not None:  # a new DC level ends a generator where it stands
                ch.start_v, ch.start_t, ch.level_v = ch.output(self.t), self.t, ch.output(self.t)
                ch.profile = None
            if slew_v_per_s is not None:
                ch.start_v, ch.start_t = ch.output(self.t), self.t
                ch.slew_v_per_s = slew_v_per_s
            if level_v is not None:
                ch.start_v, ch.start_t = ch.output(self.t), self.t
                ch.level_v = level_v

    def ramp_dc(self, channel: int, start_v: float, level_v: float, slew_v_per_s: float) -> None:
        """QDAC-II channel output restarted at `start_v` now, slewing to `level_v` (a sweep
        starting, or the reset jumping to 0 V)."""
        with self._lock:
            self._sync()
            ch = self.dc[channel - 1]
            ch.start_v, ch.start_t = start_v, self.t
            ch.level_v, ch.slew_v_per_s = level_v, slew_v_per_s
            ch.profile = None

    def run_dc_profile(self, channel: int, profile: Callable[[float], float] | None) -> None:
        """QDAC-II channel driven by a generator (`profile(t)`, world time) from now; None stops
        it, holding the output where it stands."""
        with self._lock:
            self._sync()
            ch = self.dc[channel - 1]
            if profile is None and ch.profile is not None:
                here = ch.profile(self.t)
                ch.start_v, ch.start_t, ch.level_v = here, self.t, here
            ch.profile = profile

    def dc_output(self, channel: int) -> float:
        with self._lock:
            self._sync()
            return self.dc[channel - 1].output(self.t)

    def set_supply(
        self,
        channel: int,
        voltage_v: float | None = None,
        current_a: float | None = None,
        enabled: bool | None = None,
    ) -> None:
        with self._lock:
            self._sync()
            ch = self.supply[channel - 1]
            if voltage_v is not None:
                ch.voltage_v = voltage_v
            if current_a is not None:
                ch.current_a = current_a
            if enabled is not None:
                ch.enabled = enabled

    def set_supply_master(self, on: bool) -> None:
        with self._lock:
            self._sync()
            self.supply_master = on

    def supply_measure(self, channel: int) -> tuple[float, float]:
        """(voltage V, current A) at the output; channel 1 drives the oven, 2 and 3 are open."""
        with self._lock:
            self._sync()
            ch = self.supply[channel - 1]
            if not (self.supply_master and ch.enabled):
                return 0.0, 0.0
            if channel != 1:
                return ch.voltage_v, 0.0
            current = self.oven_current_a()
            noise = self.rng.gauss(0.0, 1e-3)
            return current * self.settings.oven.resistance, max(0.0, current + noise)

    # ---- wavemeter, comb, counter -------------------------------------------------------------

    def wavemeter_read(self, channel: int) -> WavemeterReading:
        with self._lock:
            self._sync()
            self.wavemeter_index += 1
            key = WAVEMETER_CHANNELS.get(channel)
            laser = self.lasers[key] if key else None
            if laser is None or not laser.emitting or self.t < self.wavemeter_invalid_until:
                return WavemeterReading(False, 0.0, 0.0, 0.0, self.wavemeter_index)
            assert key is not None
            nu = self.laser_frequency_hz(key)
            w = self.settings.wavemeter
            nu *= 1 + w.offset_ppm * 1e-6 + self.rng.gauss(0.0, w.noise_ppm * 1e-6)
            return WavemeterReading(
                True, nu, SPEED_OF_LIGHT / nu, laser.power_w(), self.wavemeter_index
            )

    def wavemeter_calibrate(self, duration_s: float = 1.0) -> None:
        with self._lock:
            self._sync()
            self.wavemeter_invalid_until = max(self.wavemeter_invalid_until, self.t + duration_s)

    def _beat(self, gate_s: float) -> float:
        """Beat of the clock laser with the nearest comb line, mean over a gate ending now."""
        if not self.comb_locked:
            return self.rng.uniform(1e6, self.comb_repetition_rate / 2)
        mid = self.t - gate_s / 2
        raw = self.comb_beat_at_reference + self.clock_offset_hz(mid, white_over=gate_s)
        folded = raw % self.comb_repetition_rate
        beat = min(folded, self.comb_repetition_rate - folded)
        jitter = self.settings.comb.counter_jitter
        return beat + self.rng.gauss(0.0, beat * jitter / gate_s)

    def count_beat(self, gate_s: float) -> float:
        """One 53230A reading: consumes the gate time."""
        with self._lock:
            self._sync()
            self._consume(gate_s)
            return self._beat(gate_s)

    def beat_now(self, gate_s: float) -> float:
        """The beat averaged over a gate that has just ended (INIT ... FETC?)."""
        with self._lock:
            self._sync()
            return self._beat(gate_s)

    def comb_offset_frequency(self) -> float:
        c = self.settings.comb
        if self.comb_locked:
            return c.offset_frequency
        return self.rng.uniform(0.0, self.comb_repetition_rate / 2)

    def comb_last_timestamp(self) -> float:
        with self._lock:
            self._sync()
            second = math.floor(self.t)
            self._comb_record(second)
            return self.epoch_unix + second

    def _comb_locked_at(self, second: int) -> bool:
        if not self.comb_locked and self.comb_unlocked_at <= second:
            return False
        return not any(start <= second < end for start, end in self.comb_unlocks)

    def _comb_record(self, second: int) -> CombRecord:
        """The record of one second of world time, made when first asked for. Its noise comes
        from the comb's own random stream, so reading the comb leaves the rest of the world's
        random sequence as it was; the flicker of the clock laser is its present value."""
        rec = self.comb_records.get(second)
        if rec is not None:
            return rec
        c = self.settings.comb
        rng = self.comb_rng
        f_rep = self.comb_repetition_rate
        if self._comb_locked_at(second):
            offset = c.offset_frequency
            raw = self.comb_beat_at_reference + self.clock_offset_hz(float(second) - 0.5)
            if self.white_fm_h0 > 0:  # white FM averaged over the record's 1 s gate
                raw += math.sqrt(self.white_fm_h0 / 2.0) * rng.gauss(0.0, 1.0)
            folded = raw % f_rep
            beat = min(folded, f_rep - folded)
            beat += rng.gauss(0.0, beat * c.counter_jitter)
            locked = True
        else:
            offset = rng.uniform(0.0, f_rep / 2)
            beat = rng.uniform(1e6, f_rep / 2)
            locked = False
        rec = CombRecord(self.epoch_unix + second, f_rep, offset, beat, locked)
        self.comb_records[second] = rec
        return rec

    def _comb_prune(self, newest: int) -> None:
        if len(self.comb_records) > COMB_HISTORY_S + 64:
            for old in [k for k in self.comb_records if k < newest - COMB_HISTORY_S]:
                del self.comb_records[old]

    def comb_query(self, unix_t: float) -> CombRecord | None:
        """The newest record at or before `unix_t`, or None when there is none (future / >1 h)."""
        with self._lock:
            self._sync()
            second = math.floor(unix_t - self.epoch_unix + 1e-9)
            newest = math.floor(self.t)
            if second > newest or second < newest - COMB_HISTORY_S:
                return None
            self._comb_prune(newest)
            return self._comb_record(second)

    def comb_records_after(self, unix_t: float) -> list[CombRecord]:
        """Every record (one per second of world time, the last hour kept) with a timestamp
        after `unix_t`, oldest first: what the comb's data server answers to a query."""
        with self._lock:
            self._sync()
            newest = math.floor(self.t)
            first = max(math.floor(unix_t - self.epoch_unix + 1e-9) + 1, newest - COMB_HISTORY_S)
            first = max(first, 0)
            self._comb_prune(newest)
            return [self._comb_record(second) for second in range(first, newest + 1)]

    # ---- the clock interrogation (fast path, also used by `ionpilot clock-sim`) ---------------

    def clock_line_aom_hz(self) -> float:
        """Truth: the AOM frequency that would put the probe on the carrier right now."""
        with self._lock:
            self._sync()
            return AOM_CENTRE_HZ + self.settings.clock_laser.initial_offset - self.clock_offset_hz()

    def pi_amplitude(self, duration_s: float) -> float:
        return min(1.0, 1.0 / (2 * self.settings.ion.clock_rabi_frequency * duration_s))

    def _clock_coupling(self, aom_hz: float, duration_s: float) -> tuple[float, float]:
        """(detuning Hz, Rabi-frequency factor) of the nearest of carrier and micromotion
        sidebands, for a probe through the AOM at `aom_hz` lasting `duration_s` from now."""
        init = self.settings.clock_laser.initial_offset
        off = self.clock_offset_hz(self.t + duration_s / 2, white_over=duration_s)
        carrier = (aom_hz - (AOM_CENTRE_HZ + init)) + off
        beta = self.micromotion_beta()
        if beta == 0.0:
            return carrier, 1.0
        f_rf = self.rf_frequency_hz
        best = min((carrier, carrier - f_rf, carrier + f_rf), key=abs)
        return best, bessel_j(0 if best == carrier else 1, beta)

    def probe_clock(
        self,
        aom_frequency_hz: float,
        duration_s: float,
        amplitude: float | None = None,
        detection_s: float = 0.0,
        dead_time_s: float = 0.0,
    ) -> ProbeResult:
        """One Rabi interrogation of every ion (π pulse unless `amplitude` is given), a
        projection per ion, optionally a detection window; consumes all of it in world time."""
        with self._lock:
            self._sync()
            s = self.settings.ion
            amp = self.pi_amplitude(duration_s) if amplitude is None else amplitude
            detuning, factor = self._clock_coupling(aom_frequency_hz, duration_s)
            self._consume(duration_s)
            p = rabi_excitation(s.clock_rabi_frequency * amp * factor, detuning, duration_s)
            ions = excited = 0
            bright: list[bool] = []
            for i in range(self.settings.n_ions):
                if self.present[i]:
                    ions += 1
                    up = self.rng.random() < p
                    excited += up
                    bright.append(not up and not self.dark[i])
            counts = 0
            if detection_s > 0:
                counts = self._detect_counts(bright, [not b for b in bright], detection_s)[0]
            if dead_time_s > 0:
                self._consume(dead_time_s)
            return ProbeResult(ions, excited, counts, detuning)

    def _detect_counts(
        self, bright: Sequence[bool], excited: Sequence[bool], window_s: float
    ) -> tuple[int, list[int], list[bool]]:
        """Counts of a detection window: bright ions fluoresce, excited ones may decay (τ of the
        D3/2 level) and fluoresce for the rest of it. Returns (total, per ion, decayed)."""
        s = self.settings.ion
        rate = s.bright_count_rate * self.fluorescence_factor()
        tau = 1.0 / (2 * math.pi * s.natural_linewidth)
        per_ion: list[int] = []
        decayed: list[bool] = []
        for is_bright, is_up in zip(bright, excited, strict=True):
            on_time = 0.0
            fell = False
            if is_bright:
                on_time = window_s
            elif is_up:
                t_dec = self.rng.expovariate(1.0 / tau)
                if t_dec < window_s:
                    on_time, fell = window_s - t_dec, True
            per_ion.append(poisson(self.rng, rate * on_time) if on_time > 0 else 0)
            decayed.append(fell)
        self._consume(window_s)
        background = poisson(self.rng, s.background_count_rate * window_s)
        return sum(per_ion) + background, per_ion, decayed

    # ---- the pulse controller ------------------------------------------------------------------

    def set_dds(self, channel: str, **values: float) -> dict[str, float]:
        with self._lock:
            self.dds[channel].update(values)
            return dict(self.dds[channel])

    def count_photons(self, duration_s: float) -> int:
        """Cooling fluorescence + background over `duration_s` (consumes it)."""
        with self._lock:
            rate = self.cooled_count_rate()
            self._consume(duration_s)
            return poisson(self.rng, rate * duration_s)

    def count_photons_per_ion(self, duration_s: float) -> tuple[int, list[int]]:
        """Cooling fluorescence over `duration_s` (consumed): the PMT's total and each ion's
        pixel of the per-ion detector (the chain's ions counted, PROTOCOLS §10)."""
        with self._lock:
            self._sync()
            s = self.settings.ion
            rate = s.bright_count_rate * self.fluorescence_factor()
            fluorescing = np.array(self._bright_ions(), dtype=bool)[None, :]
            self._consume(duration_s)
            own = own_photons(self.nprng, rate, duration_s, fluorescing)
            detector = self.processor.detector
            total = int(detector.total(self.nprng, own, duration_s)[0])
            return total, detector.pixels(self.nprng, own, duration_s)[0].tolist()

    def run_schedule(self, pulses: Sequence[Pulse], shots: int) -> list[list[int | list[int]]]:
        """Execute a validated schedule `shots` times; counts per shot per counting window."""
        with self._lock:
            self._sync()
            ordered = sorted(pulses, key=lambda p: p.t_ns)
            shot_ns = max(p.t_ns + p.duration_ns for p in ordered)
            if self.settings.n_ions == 1 and all(p.channel in _CLOCK_CHANNELS for p in ordered):
                return self._run_clock_shots(ordered, shots, shot_ns * 1e-9)
            return self._run_chain_shots(ordered, shots, shot_ns * 1e-9)

    def _run_chain_shots(
        self, ordered: Sequence[Pulse], shots: int, shot_s: float
    ) -> list[list[int | list[int]]]:
        """Every shot of a run on the chain at once (sim/chain_run.py): the conditions at the
        run's start (fluorescence, micromotion, the clock AOM), the line's drift across the run
        interpolated per shot, then the run's time consumed; an ion lost during the run (its
        exact time drawn as it passes) is absent from the shots that start after it left."""
        s = self.settings
        t0 = self.t
        init = s.clock_laser.initial_offset
        off_first = self.clock_offset_hz(t0 + shot_s / 2)
        off_last = self.clock_offset_hz(t0 + (shots - 0.5) * shot_s) if shots > 1 else off_first
        k = np.arange(shots, dtype=np.float64)
        slope = (off_last - off_first) / (shots - 1) if shots > 1 else 0.0
        dds = self.dds["clock_aom"]
        present = np.array(self.present, dtype=bool)
        cond = RunConditions(
            present=np.repeat(present[None, :], shots, axis=0),
            shelved=np.array(self.dark, dtype=bool),
            bright_rate_hz=s.ion.bright_count_rate * self.fluorescence_factor(),
            line_aom_hz=np.asarray(AOM_CENTRE_HZ + init - (off_first + slope * k), np.float64),
            white_fm_h0=self.white_fm_h0,
            clock_aom_hz=dds["frequency_hz"],
            clock_amplitude=dds["amplitude"],
            clock_phase_rad=dds["phase_rad"],
            micromotion_beta=self.micromotion_beta(),
            rf_frequency_hz=self.rf_frequency_hz,
        )
        clock = [p.frequency_hz or dds["frequency_hz"] for p in ordered if p.channel == "clock"]
        truth = sum(clock) / len(clock) - cond.line_aom_hz if clock else np.zeros(0)
        self.last_clock_detunings_hz = truth.tolist()  # mean probe detuning per shot
        self._consume(shots * shot_s)
        ends = t0 + (k + 1) * shot_s
        lost = np.array(self.lost_at)
        cond.present &= lost[None, :] >= ends[:, None]
        return self.processor.run(ordered, shots, cond)

    def _run_clock_shots(
        self, ordered: Sequence[Pulse], shots: int, shot_s: float
    ) -> list[list[int | list[int]]]:
        """A single ion's clock shots (cool, repump, clock pulses, detect), all shots of the run
        at once: the state seen at the run's start (presence, fluorescence, micromotion), the
        laser's offset interpolated between the first and the last shot (drift is linear, the
        noise state held over a run of at most a second or so) plus white FM per pulse, the
        clock pulses composed with the free precession between them (Rabi: one pulse; Ramsey:
        two around the dark time), then the whole run's time consumed in one step. A run with a
        scheduled fault inside is split there; a random event (a loss at `loss_rate`) happens
        at its exact time and is seen from the next run on. Same windows and counts as shot by
        shot, ~50x cheaper (a simulated day in seconds)."""
        t0 = self.t
        if self._schedule and shots > 1:
            # a scheduled fault inside the run: the shots after it see it
            split = math.floor((self._schedule[0].at - t0) / shot_s)
            if split < shots:
                split = max(1, split)
                first = self._run_clock_shots(ordered, split, shot_s)
                truth = self.last_clock_detunings_hz
                rest = self._run_clock_shots(ordered, shots - split, shot_s)
                self.last_clock_detunings_hz = truth + self.last_clock_detunings_hz
                return first + rest
        s = self.settings.ion
        nprng = self.nprng
        bright = self.present[0] and not self.dark[0]
        rate = s.bright_count_rate * self.fluorescence_factor() if bright else 0.0
        background = s.background_count_rate
        clock = [p for p in ordered if p.channel == "clock"]
        if clock:
            excited_p, detunings = self._clock_excitation(clock, shots, shot_s, t0)
        else:
            excited_p, detunings = [0.0] * shots, [0.0] * shots
        self.last_clock_detunings_hz = detunings
        uniforms = nprng.random(shots).tolist()
        # the shots found excited, in order (an excited ion may decay during detection)
        excited = [k for k, (u, p) in enumerate(zip(uniforms, excited_p, strict=True)) if u < p]
        columns: list[list[int | list[int]]] = []
        for p in ordered:
            if p.window is None:
                continue
            window = p.duration_ns * 1e-9
            if p.channel == "cool":
                columns.append(nprng.poisson((rate + background) * window, shots).tolist())
                continue
            # detect: bright ions fluoresce; excited ones may decay (D3/2) during the window
            if rate > 0:
                own = nprng.poisson(rate * window, shots).tolist()
                if excited:
                    rng = self.rng
                    decay_rate = 1.0 / (1.0 / (2 * math.pi * s.natural_linewidth))
                    for k in excited:
                        t_dec = rng.expovariate(decay_rate)
                        own[k] = poisson(rng, rate * (window - t_dec)) if t_dec < window else 0
            else:
                own = [0] * shots
            if p.per_ion:
                per_ion: list[int | list[int]] = [[c] for c in own]
                columns.append(per_ion)
            else:
                noise = nprng.poisson(background * window, shots).tolist()
                total: list[int | list[int]] = [c + b for c, b in zip(own, noise, strict=True)]
                columns.append(total)
        self._consume(shots * shot_s)
        self.chain.reset()
        if not columns:
            return [[] for _ in range(shots)]
        if len(columns) == 2:  # a cooling and a detection window: the clock program
            cooled, detected = columns
            return [[a, b] for a, b in zip(cooled, detected, strict=True)]
        return [list(shot) for shot in zip(*columns, strict=True)]

    def _clock_excitation(
        self, clock: Sequence[Pulse], shots: int, shot_s: float, t0: float
    ) -> tuple[list[float], list[float]]:
        """(P(excited), mean detuning) per shot for the clock pulses of one shot."""
        s = self.settings.ion
        dds = self.dds["clock_aom"]
        init = self.settings.clock_laser.initial_offset
        first, last = clock[0], clock[-1]
        mid_first = t0 + (first.t_ns + last.t_ns + last.duration_ns) * 0.5e-9
        off_first = self.clock_offset_hz(mid_first)
        off_last = self.clock_offset_hz(mid_first + (shots - 1) * shot_s) if shots > 1 else 0.0
        slope = (off_last - off_first) / (shots - 1) if shots > 1 else 0.0
        beta = self.micromotion_beta()
        f_rf = self.rf_frequency_hz
        normal = self.normal
        h0 = self.white_fm_h0
        two_pi = 2 * math.pi
        probs: list[float] = []
        means: list[float] = []
        pieces = []
        for p in clock:
            duration = p.duration_ns * 1e-9
            freq = dds["frequency_hz"] if p.frequency_hz is None else p.frequency_hz
            white = math.sqrt(h0 / (2 * duration)) if h0 > 0 else 0.0
            pieces.append(
                (
                    p.t_ns * 1e-9,
                    duration,
                    freq - (AOM_CENTRE_HZ + init),
                    s.clock_rabi_frequency * p.amplitude * dds["amplitude"],
                    p.phase_rad + dds["phase_rad"],
                    white,
                )
            )
        if len(pieces) == 1:  # Rabi: one pulse, its own white FM per shot
            _, duration, aom, rabi, _, white = pieces[0]
            sin, sqrt = math.sin, math.sqrt
            omega = two_pi * rabi * 1.0  # off the micromotion sidebands
            draws = normal.draws(shots) if white else [0.0] * shots
            for k in range(shots):
                d = aom + (off_first + slope * k) + (white * draws[k] if white else 0.0)
                if beta:
                    best = min((d, d - f_rf, d + f_rf), key=abs)
                    omega = two_pi * rabi * bessel_j(0 if best == d else 1, beta)
                    d = best
                delta = two_pi * d
                g2 = omega * omega + delta * delta
                if g2 > 0:
                    sine = sin(duration * sqrt(g2) / 2)
                    probs.append(omega * omega / g2 * sine * sine)
                else:
                    probs.append(0.0)
                means.append(d)
            return probs, means
        span = (last.t_ns + last.duration_ns - first.t_ns) * 1e-9
        span_white = math.sqrt(h0 / (2 * span)) if h0 > 0 and span > 0 else 0.0
        for k in range(shots):
            laser = off_first + slope * k
            total = 0.0
            # several pulses: the two-level state through pulses and free precession, with the
            # laser's white FM averaged over the whole sequence (one draw: the phase that the
            # free evolution accumulates is the integral of the frequency over it)
            a, b = 1.0 + 0j, 0j
            end = pieces[0][0]
            noise = span_white * normal() if span_white else 0.0
            d = 0.0
            for start, duration, aom, rabi, phase, _ in pieces:
                d = aom + laser + noise
                factor = 1.0
                if beta:
                    best = min((d, d - f_rf, d + f_rf), key=abs)
                    factor = bessel_j(0 if best == d else 1, beta)
                    d = best
                gap = start - end
                if gap > 0:  # free precession in the frame of the light: H = -Δ/2 Z
                    turn = cmath.exp(0.5j * two_pi * d * gap)
                    a, b = a * turn, b / turn
                u = detuned_pulse(rabi * factor, d, duration, phase)
                a, b = u[0, 0] * a + u[0, 1] * b, u[1, 0] * a + u[1, 1] * b
                end = start + duration
                total += d
            probs.append(min(1.0, abs(b) ** 2))
            means.append(total / len(pieces))
        return probs, means

    # ---- faults ---------------------------------------------------------------------------------

    def add_fault_listener(self, listener: Callable[[str, str | None], None]) -> None:
        """Called (kind, target) after every applied fault or restore (servers use it to drop
        connections on instrument_disconnect)."""
        with self._lock:
            self._listeners.append(listener)

    def instrument_fault(self, name: str) -> str | None:
        return self.instrument_faults.get(name)

    def inject(self, kind: str, target: str | None = None) -> str:
        """Apply a fault now; returns a one-line description. Raises FaultError."""
        with self._lock:
            self._sync()
            text = self._apply_fault(kind, target)
        for listener in list(self._listeners):
            listener(kind, target)
        return text

    def restore(self, target: str) -> str:
        return self.inject("restore", target)

    def schedule(self, at: float, kind: str, target: str | None = None) -> None:
        """Apply a fault at world time `at` (scenario files); checked now, applied then."""
        check_fault(kind, target)
        with self._lock:
            self._seq += 1
            heapq.heappush(self._schedule, _Scheduled(at, self._seq, kind, target))

    def _apply_fault(self, kind: str, target: str | None) -> str:
        check_fault(kind, target)
        s = self.settings
        if kind == "ion_loss":
            for i in self._ion_targets(target):
                if self.present[i]:
                    self._lose(i, "lost (fault)")
            text = "ions lost"
        elif kind == "chain_melt":
            # a collision heats the crystal: hot ions leave the trap's bottom, each escaping with
            # probability 1/2 before Doppler cooling recrystallises the rest (at least one goes)
            there = [i for i in range(s.n_ions) if self.present[i]]
            gone = [i for i in there if self.rng.random() < 0.5] or there[-1:]
            for i in gone:
                self._lose(i, "lost (the chain melted)")
            text = f"the chain melted: ion(s) {gone} escaped"
        elif kind == "ion_dark":
            for i in self._ion_targets(target):
                if self.present[i]:
                    self.dark[i] = True
            self._log("ion dark (fault)")
            text = "ions shelved into a dark state"
        elif kind == "mode_hop":
            key = laser_key(target)
            sign = 1.0 if self.rng.random() < 0.5 else -1.0
            if key == "435":
                self._unlock_cavity()
            self.lasers[key].hop(sign * s.aux_lasers.mode_hop_size)
            text = f"laser {key} mode hop {sign * s.aux_lasers.mode_hop_size / 1e9:+.1f} GHz"
        elif kind == "cavity_unlock":
            self._unlock_cavity()
            text = "reference cavity unlocked"
        elif kind == "rf_trip":
            self.rf_output = False
            text = "RF drive tripped"
        elif kind == "stray_field_step":
            angle = self.rng.uniform(0, 2 * math.pi)
            size = float(target) if target else s.trap.stray_field_step
            self.stray_field[0] += size * math.cos(angle)
            self.stray_field[1] += size * math.sin(angle)
            text = f"stray field step {size:g} V/m"
        elif kind == "comb_unlock":
            self.comb_locked = False
            self.comb_unlocked_at = self.t
            self.comb_relock_at = self.t + s.comb.relock_time
            self.comb_unlocks.append((self.t, self.comb_relock_at))
            text = "comb unlocked"
        elif kind == "wavemeter_invalid":
            self.wavemeter_invalid_until = self.t + s.wavemeter.invalid_duration
            text = "wavemeter exposures invalid"
        elif kind in INSTRUMENT_FAULTS:
            assert target is not None
            self.instrument_faults[target] = INSTRUMENT_FAULTS[kind]
            text = f"{target}: {INSTRUMENT_FAULTS[kind]}"
        else:
            assert target is not None
            text = self._restore(target)
        self._log(f"fault {kind} {target or ''}: {text}".strip())
        return text

    def _ion_targets(self, target: str | None) -> list[int]:
        if target is None or target in ("all", "ion", "ions"):
            return list(range(self.settings.n_ions))
        try:
            i = int(target)
        except ValueError:
            raise FaultError(f"ion target must be an ion index, found '{target}'") from None
        if not 0 <= i < self.settings.n_ions:
            raise FaultError(f"ion index {i} outside 0..{self.settings.n_ions - 1}")
        return [i]

    def _restore(self, target: str) -> str:
        """Clear an instrument fault on `target`, and put the world part it names right."""
        done = []
        if self.instrument_faults.pop(target, None):
            done.append("instrument answers again")
        low = target.lower()
        if "comb" in low:
            if not self.comb_locked and self.comb_unlocks:
                start, _end = self.comb_unlocks[-1]
                self.comb_unlocks[-1] = (start, self.t)  # the history ends the unlock now
            self.comb_locked = True
            done.append("comb relocked")
        if "wavemeter" in low:
            self.wavemeter_invalid_until = -math.inf
            done.append("wavemeter valid")
        if "rf" in low:
            self.rf_output = True
            done.append("RF on")
        if low in ("cavity", "laser_435", "435") or "cavity" in low:
            self.cavity_state, self.free_running_hz = 2, 0.0
            done.append("cavity locked")
        for key in ("369", "935", "399", "435"):
            if key in low and self.lasers[key].hop_hz:
                self.lasers[key].return_to_mode()
                done.append(f"laser {key} back on its mode")
        if low in ("ion", "ions"):
            self.present = [True] * self.settings.n_ions
            self.lost_at = [math.inf] * self.settings.n_ions
            self.dark = [False] * self.settings.n_ions
            done.append("ions reloaded")
        if "stray" in low or "dc" in low:
            tr = self.settings.trap
            self.stray_field = [tr.stray_field_x, tr.stray_field_y]
            done.append("stray field reset")
        return "; ".join(done) or "nothing to restore"


def restores_something(target: str) -> bool:
    """Whether `World._restore` would recognise `target` as a part of the world (an instrument
    name is recognised by the lab, which knows them)."""
    low = target.lower()
    words = ("comb", "wavemeter", "rf", "cavity", "369", "935", "399", "435", "stray", "dc")
    return low in ("ion", "ions") or any(word in low for word in words)


RESTORE_PARTS = "ion, cavity, comb, wavemeter, rf, laser_369/935/399/435, stray_field"


def laser_key(target: str | None) -> str:
    """'laser_369', '369', 'cooling' ... -> the world's laser key."""
    if target is None:
        raise FaultError("mode_hop needs a laser (e.g. laser_369)")
    aliases = {"cooling": "369", "repump": "935", "photoionisation": "399", "clock": "435"}
    low = target.lower()
    if low in aliases:
        return aliases[low]
    for key in LASER_SPECS:
        if key in low:
            return key
    raise FaultError(
        f"unknown laser '{target}' (known: laser_369, laser_935, laser_399, laser_435)"
    )


def check_fault(kind: str, target: str | None) -> None:
    if kind not in FAULT_KINDS:
        raise FaultError(f"unknown fault '{kind}' (known: {', '.join(FAULT_KINDS)})")
    if (kind in INSTRUMENT_FAULTS or kind == "restore") and not target:
        raise FaultError(f"{kind} needs an instrument name")
    if kind == "mode_hop":
        laser_key(target)
    if kind == "stray_field_step" and target:
        try:
            float(target)
        except ValueError:
            raise FaultError(f"stray_field_step takes a size in V/m, found '{target}'") from None
