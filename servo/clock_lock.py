"""The clock-laser lock: steers the clock AOM so the probe light sits on the ion's line.

Step-based: each `step()` does one unit of work (a servo update of n probes per side, one
line-search point, or a hold-over steer) and returns, so a daemon can drive it from a worker
thread or an executor, and the accelerated simulation can call it in a tight loop. The lock
sees the lab only through `LabInterface` and time only through a `Clock`.

The steer is a line in time: AOM(t) = aom_ref − drift·(t − t_ref). The first integrator moves
`aom_ref` by −g·δν̂ every update; the second integrator (drift) moves the slope by g₂·δν̂/T_update,
so a linear cavity drift leaves no offset (REFERENCE.md §1).
"""

from __future__ import annotations

import math
from enum import StrEnum

from ionpilot.core.clock import Clock
from ionpilot.servo.interrogation import (
    ProbeSpec,
    acquisition_probes,
    lock_probe,
    min_interrogation_rate_hz,
    servo_time_constant_s,
    update_interval_s,
)
from ionpilot.servo.outputs import (
    ClockUpdate,
    LockStateChanged,
    NullOutputs,
    OpticalFrequency,
    Outputs,
    ServoAlarm,
)
from ionpilot.servo.persistence import (
    ClockLockSnapshot,
    StateMissing,
    StateRestoreError,
    StateStore,
)
from ionpilot.servo.seams import (
    IonNotFluorescing,
    LabError,
    LabInterface,
    beat_frequency,
    comb_offset_frequency,
    comb_repetition_rate,
    wavemeter_frequency,
)
from ionpilot.servo.settings import ClockLockSettings

LOOP = "clock"


class LockState(StrEnum):
    """acquiring: searching/centring the line; locked: servoing; holdover: steering on the drift
    estimate while interrogation is paused; unlocked: not steering on the ion."""

    ACQUIRING = "acquiring"
    LOCKED = "locked"
    HOLDOVER = "holdover"
    UNLOCKED = "unlocked"


class ClockLock:
    """The clock-laser lock (REFERENCE.md §1), against the clock and lab seams."""

    def __init__(
        self,
        settings: ClockLockSettings,
        lab: LabInterface,
        clock: Clock,
        outputs: Outputs | None = None,
        store: StateStore | None = None,
    ) -> None:
        self.settings = settings
        self.lab = lab
        self.clock = clock
        self.outputs: Outputs = outputs if outputs is not None else NullOutputs()
        self.store = store
        self.probe: ProbeSpec = lock_probe(settings)
        self.update_interval_s = update_interval_s(settings)
        self.time_constant_s = servo_time_constant_s(settings)
        self._stages = acquisition_probes(settings)
        self._state = LockState.UNLOCKED
        self._second_order = settings.servo_order == "second"
        self._aom_ref_hz = settings.aom_center
        self._t_ref = clock.now()
        self._drift_hz_per_s = settings.initial_drift
        self._low_first = True
        self._lost_count = 0
        self._holdover_since = 0.0
        self._corrected_at = -math.inf  # clock time of the last correction (or of locking)
        self._last_persist = -math.inf
        self._next_comb_t = -math.inf
        self._mode_number: int | None = None
        # line search
        self._phase = "scan"
        self._scan_index = 0
        self._scan_attempts = 0
        self._scan_centre_offset_hz = 0.0
        self._confirming = False
        self._stage = 0
        self._stage_updates = 0
        self._stage_excitation = 0.0
        # counters for tests and health
        self.updates = 0
        self.acquisition_steps = 0
        self.restore_error: str | None = None
        self.last_update: ClockUpdate | None = None
        self.last_optical: OpticalFrequency | None = None

    # ------------------------------------------------------------------ state and steering

    @property
    def state(self) -> LockState:
        return self._state

    @property
    def correction_deadline_s(self) -> float:
        """How long `locked` may go without a correction before it is hold-over in fact: two
        servo periods at the slowest pace the sequencer's queue may give the lock while user jobs
        share the controller (an update is two interrogations at its minimum interrogation
        rate), and at least one period of its own and a second (bus round trips)."""
        shared_period_s = 2 / min_interrogation_rate_hz(self.settings)
        return max(2 * shared_period_s, 2 * self.update_interval_s, self.update_interval_s + 1.0)

    def reported_state(self) -> LockState:
        """The state as it may be told to anyone (any thread): `locked` only while corrections
        keep coming; a lock whose last correction is older than `correction_deadline_s` (its
        interrogation stuck in a dead driver host, say) is steering on the drift estimate
        alone, which is hold-over, whatever the servo thread has not yet noticed."""
        state = self._state
        if (
            state is LockState.LOCKED
            and self.clock.now() - self._corrected_at > self.correction_deadline_s
        ):
            return LockState.HOLDOVER
        return state

    @property
    def drift_hz_per_s(self) -> float:
        """Estimated clock-laser drift; the AOM ramps at minus this."""
        return self._drift_hz_per_s

    def steer_hz(self, t: float) -> float:
        """The AOM frequency that puts the light on the line at clock time t (best estimate)."""
        return self._aom_ref_hz - self._drift_hz_per_s * (t - self._t_ref)

    @property
    def aom_frequency_hz(self) -> float:
        return self.steer_hz(self.clock.now())

    def _set_state(self, state: LockState, reason: str) -> None:
        if state is self._state:
            return
        previous = self._state
        if state is LockState.LOCKED:
            self._corrected_at = self.clock.now()
        self._state = state
        self.outputs.publish(
            LockStateChanged(
                self.clock.now(), self.clock.wall_ns(), previous.value, state.value, reason
            )
        )

    def _alarm(self, kind: str, severity: str, message: str) -> None:
        self.outputs.publish(
            ServoAlarm(
                self.clock.now(),
                self.clock.wall_ns(),
                LOOP,
                kind,
                "MAJOR" if severity == "MAJOR" else "OK" if severity == "OK" else "MINOR",
                message,
            )
        )

    # ------------------------------------------------------------------ life cycle

    def start(self) -> LockState:
        """Resume from the persisted state if it is fresh, else search for the line."""
        if self.store is not None:
            try:
                snapshot = self.store.load(self.clock.wall_ns(), self.settings.max_state_age)
            except StateMissing as exc:  # a fresh start is normal: information, no alarm
                self.restore_error = str(exc)
                self._alarm("state_fresh", "OK", f"{exc}: acquiring the line")
            except StateRestoreError as exc:  # a file that exists but cannot be trusted
                self.restore_error = str(exc)
                self._alarm("state_rejected", "MINOR", f"not resuming: {exc}")
            else:
                self.restore(snapshot)
                return self._state
        self.reacquire("start")
        return self._state

    def restore(self, snapshot: ClockLockSnapshot) -> None:
        """Continue from a snapshot: same steer line, same drift estimate, locked."""
        now = self.clock.now()
        age_s = (self.clock.wall_ns() - snapshot.reference_wall_ns) / 1e9
        self._aom_ref_hz = snapshot.aom_frequency_hz
        self._t_ref = now - age_s
        self._drift_hz_per_s = snapshot.drift_hz_per_s
        self.updates = snapshot.updates
        self._lost_count = 0
        self._set_state(LockState.LOCKED, f"restored state saved {age_s:.1f} s ago")

    def snapshot(self) -> ClockLockSnapshot:
        now = self.clock.now()
        wall = self.clock.wall_ns()
        return ClockLockSnapshot(
            saved_wall_ns=wall,
            reference_wall_ns=wall,
            aom_frequency_hz=self.steer_hz(now),
            drift_hz_per_s=self._drift_hz_per_s,
            state=self._state.value,
            interrogation=self.settings.interrogation,
            updates=self.updates,
        )

    def persist(self) -> None:
        """Write the state now (also done every `persist_period` while locked)."""
        if self.store is not None:
            self.store.save(self.snapshot())
            self._last_persist = self.clock.now()

    def pause(self, reason: str = "interrogation paused") -> None:
        """Stop interrogating and steer on the drift estimate (hold-over)."""
        if self._state is LockState.LOCKED:
            self._holdover_since = self.clock.now()
            self._set_state(LockState.HOLDOVER, reason)
            self.persist()

    @property
    def holdover_since_s(self) -> float:
        """Clock time the present hold-over began (meaningful in HOLDOVER only)."""
        return self._holdover_since

    def resume(self, max_holdover_s: float | None = None) -> None:
        """Back to the lock after a pause; a pause longer than `max_holdover_s` (default the
        configured `holdover_limit`) re-verifies the line first. The recovery layer passes its
        own bound from the predicted hold-over error."""
        if self._state is not LockState.HOLDOVER:
            return
        paused_s = self.clock.now() - self._holdover_since
        limit = self.settings.holdover_limit if max_holdover_s is None else max_holdover_s
        if paused_s > limit:
            self.reacquire(f"hold-over of {paused_s:.0f} s exceeds the limit")
        else:
            self._lost_count = 0
            self._set_state(LockState.LOCKED, f"resumed after {paused_s:.1f} s of hold-over")

    def reacquire(self, reason: str) -> None:
        """Search for the line around the present steer (the drift prediction)."""
        self._phase = "scan"
        self._scan_index = 0
        self._scan_attempts = 0
        self._scan_centre_offset_hz = 0.0
        self._confirming = False
        self._set_state(LockState.ACQUIRING, reason)

    def stop(self, reason: str = "stopped") -> None:
        self._set_state(LockState.UNLOCKED, reason)

    # ------------------------------------------------------------------ the work

    def step(self) -> ClockUpdate | None:
        """One unit of work for the present state; returns the servo update if there was one."""
        try:
            if self._state is LockState.LOCKED:
                update = self._locked_update()
                if self._state is LockState.LOCKED:
                    # park the light on the line between probes: on an optical qubit the gate
                    # beams are this light, so user jobs run on the servo's line estimate
                    self.lab.set_clock_aom_frequency(self.steer_hz(self.clock.now()))
                return update
            if self._state is LockState.ACQUIRING:
                self._acquisition_step()
                return None
            if self._state is LockState.HOLDOVER:
                self.lab.set_clock_aom_frequency(self.steer_hz(self.clock.now()))
                return None
        except IonNotFluorescing as exc:  # no clock data without an ion: hold over, no update
            self._alarm("no_fluorescence", "MAJOR", str(exc))
            if self._state is LockState.LOCKED:
                self.pause(f"no fluorescence: {exc}")
            return None
        except LabError as exc:
            self._alarm("lab_error", "MAJOR", str(exc))
            if self._state is LockState.LOCKED:
                self.pause(f"lab error: {exc}")
            return None
        return None

    def _two_sided(self, probe: ProbeSpec) -> tuple[int, int, float, float]:
        """n probes at each half-width point (order alternates); returns (excited below,
        excited above, start time, end time)."""
        n = self.settings.probes_per_side
        half = probe.half_width_hz
        side_s = n * probe.cycle_time_s
        lab = self.lab
        t0 = self.clock.now()
        if self._low_first:
            low = lab.interrogate(probe, self.steer_hz(t0 + 0.5 * side_s) - half, n)
            t_mid = self.clock.now()
            high = lab.interrogate(probe, self.steer_hz(t_mid + 0.5 * side_s) + half, n)
        else:
            high = lab.interrogate(probe, self.steer_hz(t0 + 0.5 * side_s) + half, n)
            t_mid = self.clock.now()
            low = lab.interrogate(probe, self.steer_hz(t_mid + 0.5 * side_s) - half, n)
        self._low_first = not self._low_first
        return low, high, t0, self.clock.now()

    def _locked_update(self) -> ClockUpdate:
        settings = self.settings
        n = settings.probes_per_side
        probe = self.probe
        low, high, t0, t1 = self._two_sided(probe)
        error_hz = (low - high) / (n * 2 * probe.slope_per_hz)
        correction_hz = -settings.gain * error_hz
        self._aom_ref_hz = self.steer_hz(t1) + correction_hz
        self._t_ref = t1
        self._corrected_at = t1
        if self._second_order:
            elapsed = t1 - t0
            interval = elapsed if elapsed > 0 else self.update_interval_s
            self._drift_hz_per_s += settings.drift_gain * error_hz / interval
        self.updates += 1
        wall = self.clock.wall_ns()
        update = ClockUpdate(
            t1,
            wall,
            low / n,
            high / n,
            error_hz,
            correction_hz,
            self._aom_ref_hz,
            self._drift_hz_per_s,
            n,
        )
        self.last_update = update
        self.outputs.publish(update)
        # on the line the half-width points read about half excited; below the threshold the
        # line has gone, above its mirror every shot is dark: an empty trap (or a dark ion) reads
        # "excited" whatever the frequency, and without the cooling-window watch this is the
        # only sign of it
        detect = settings.lock_detect_excitation
        if not 2 * n * detect <= low + high <= 2 * n * (1 - detect):
            self._lost_count += 1
            if self._lost_count >= settings.lock_lost_updates:
                low_side = (low + high) < 2 * n * detect
                self._alarm(
                    "line_lost",
                    "MAJOR",
                    "excitation stayed below the lock threshold"
                    if low_side
                    else "both sides dark in nearly every shot: no fluorescing ion",
                )
                self.reacquire("line lost")
                return update
        else:
            self._lost_count = 0
        if t1 >= self._next_comb_t:
            self._next_comb_t = t1 + settings.comb_period
            self.measure_optical_frequency()
        if self.store is not None and t1 - self._last_persist >= settings.persist_period:
            self.persist()
        return update

    # ------------------------------------------------------------------ line search

    def _acquisition_step(self) -> None:
        self.acquisition_steps += 1
        if self._phase == "scan":
            self._scan_step()
        else:
            self._centring_step()

    def _scan_step(self) -> None:
        settings = self.settings
        probe = self._stages[0]
        step_hz = probe.fwhm_hz / 2
        k = self._scan_index
        offset = ((k + 1) // 2) * step_hz * (1 if k % 2 else -1)
        if abs(offset) > settings.line_search_span / 2:
            self._scan_attempts += 1
            if self._scan_attempts >= 2:
                self._alarm(
                    "line_not_found",
                    "MAJOR",
                    f"no line within ±{settings.line_search_span / 2:.0f} Hz of "
                    f"{self.steer_hz(self.clock.now()):.1f} Hz (twice)",
                )
                self._set_state(LockState.UNLOCKED, "line not found")
                return
            self._scan_index = 0
            return
        n = settings.probes_per_side
        t = self.clock.now() + 0.5 * n * probe.cycle_time_s
        excited = self.lab.interrogate(probe, self.steer_hz(t) + offset, n)
        if excited >= settings.acquisition_threshold * n:
            if self._confirming:
                now = self.clock.now()
                self._aom_ref_hz = self.steer_hz(now) + offset
                self._t_ref = now
                self._phase = "centre"
                self._stage = 0
                self._stage_updates = 0
                self._stage_excitation = 0.0
                self._confirming = False
                return
            self._confirming = True
            return
        self._confirming = False
        self._scan_index += 1

    def _centring_step(self) -> None:
        settings = self.settings
        n = settings.probes_per_side
        probe = self._stages[self._stage]
        low, high, t0, t1 = self._two_sided(probe)
        error_hz = (low - high) / (n * 2 * probe.slope_per_hz)
        self._stage_updates += 1
        self._stage_excitation += (low + high) / (2 * n)
        if self._stage == 0:
            # gain 1/k: the steer becomes the running mean of the measured line centres
            self._aom_ref_hz = self.steer_hz(t1) - error_hz / self._stage_updates
            needed = settings.centring_updates
        else:
            # hand-over to a Ramsey lock: servo on the narrow Rabi line with both integrators,
            # so the drift is known before the fringe (capture ±1/(4·T_eff)) takes over
            self._aom_ref_hz = self.steer_hz(t1) - settings.gain * error_hz
            if self._second_order and t1 > t0:
                self._drift_hz_per_s += settings.drift_gain * error_hz / (t1 - t0)
            needed = settings.handover_updates
        self._t_ref = t1
        if self._stage_updates < needed:
            return
        mean_excitation = self._stage_excitation / self._stage_updates
        if mean_excitation > 1 - settings.lock_detect_excitation:
            # dark at both half-width points, update after update: not a line, no ion
            self._alarm(
                "line_not_found",
                "MAJOR",
                f"every shot dark around {self.steer_hz(t1):.1f} Hz (mean excitation "
                f"{mean_excitation:.2f}): no fluorescing ion",
            )
            self._set_state(LockState.UNLOCKED, "no fluorescence")
            return
        if mean_excitation < settings.lock_detect_excitation:
            self._phase = "scan"
            self._scan_index = 0
            return
        self._stage += 1
        self._stage_updates = 0
        self._stage_excitation = 0.0
        if self._stage >= len(self._stages):
            self._lost_count = 0
            self._phase = "scan"
            self._set_state(LockState.LOCKED, "line found and centred")
            self.persist()

    # ------------------------------------------------------------------ the comb

    def measure_optical_frequency(self) -> OpticalFrequency | None:
        """ν = n·f_rep + s₁·f_ceo + s₂·f_beat; n from the wavemeter (needs < f_rep/4 error),
        kept from the last good reading while the wavemeter is invalid."""
        settings = self.settings
        lab = self.lab
        try:
            f_rep = lab.read(comb_repetition_rate(settings.comb))
            f_ceo = lab.read(comb_offset_frequency(settings.comb))
            f_beat = lab.read(beat_frequency(settings.beat_counter))
        except LabError:
            return None
        known = settings.ceo_sign * f_ceo + settings.beat_sign * f_beat
        try:
            nu_wm = lab.read(wavemeter_frequency(settings.wavemeter, settings.wavemeter_channel))
            if nu_wm > 0:
                self._mode_number = round((nu_wm - known) / f_rep)
        except LabError:
            pass
        if self._mode_number is None:
            return None
        now = self.clock.now()
        laser = self._mode_number * f_rep + known
        record = OpticalFrequency(
            now,
            self.clock.wall_ns(),
            self._mode_number,
            f_rep,
            f_ceo,
            f_beat,
            laser,
            laser + self.steer_hz(now),
        )
        self.last_optical = record
        self.outputs.publish(record)
        return record
