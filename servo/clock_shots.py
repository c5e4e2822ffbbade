"""The clock interrogation's shots, whoever plays them: the program comes from the sequencer
(`ionpilot.sequencer.clock.clock_program`, validated once per probe shape), the shots run in
pulser runs of at most `ion_check_interval`, each run's cooling windows feed the ion watch, and
the detection windows say how many shots found the ion excited (dark).

`run(shots, pulses, timeout_s)` is the pulse controller's `run` reply (`windows`, `counts`): the
simulated pulser's own execution in process on virtual time (ionpilot.harness). Live, every run is
a clock job in the sequencer service's queue instead (`servo/clock_jobs.py QueuedClockShots`, which
overrides `play`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ionpilot.sequencer.clock import ClockProgram, clock_device, clock_program
from ionpilot.sequencer.errors import SequencerError
from ionpilot.sequencer.settings import DeviceSettings
from ionpilot.servo.interrogation import ProbeSpec
from ionpilot.servo.ion_watch import IonWatch, shots_per_run
from ionpilot.servo.seams import LabError
from ionpilot.servo.settings import PulseCalibration

PulserRun = Callable[[int, list[dict[str, Any]], float], Any]


class ClockShots:
    """Clock interrogations as sequencer programs on a pulse controller reached by `run`."""

    def __init__(
        self,
        run: PulserRun,
        pulses: PulseCalibration,
        device: DeviceSettings | None = None,
        pulser: str = "pulser",
    ) -> None:
        self._run = run
        self.pulses = pulses
        self.pulser = pulser
        self.device = clock_device(
            device or DeviceSettings(),
            cooling_s=pulses.cooling_time,
            detection_s=pulses.detection_time,
            clock_rabi_hz=pulses.clock_rabi_frequency,
        )
        self.ion_watch: IonWatch | None = None  # the health's eye on the shots
        self._programs: dict[tuple[str, float, float, bool], ClockProgram] = {}

    def program(self, probe: ProbeSpec, count_cooling: bool) -> ClockProgram:
        """The sequencer's program for this probe shape (built and validated once)."""
        key = (probe.kind, probe.pulse_time_s, probe.dark_time_s, count_cooling)
        found = self._programs.get(key)
        if found is None:
            rabi = probe.kind == "rabi"
            try:
                found = clock_program(
                    self.device,
                    probe.kind,
                    probe.pulse_time_s if rabi else probe.dark_time_s,
                    ramsey_pulse_s=probe.pulse_time_s,
                    count_cooling=count_cooling,
                    shot_s=probe.cycle_time_s,  # the cycle the servo's model assumes
                )
            except SequencerError as exc:
                raise LabError(f"the sequencer refuses the clock interrogation: {exc}") from exc
            self._programs[key] = found
        return found

    def interrogate(self, probe: ProbeSpec, aom_frequency_hz: float, n_probes: int) -> int:
        """The shots in pulser runs of at most `ion_check_interval`, each run's cooling
        windows watched for the ion (`IonNotFluorescing` discards the interrogation)."""
        watch = self.ion_watch if self.ion_watch is not None and self.ion_watch.enabled else None
        program = self.program(probe, watch is not None)
        try:
            pulses = program.pulses_at(aom_frequency_hz)
        except SequencerError as exc:
            raise LabError(str(exc)) from exc
        shot_s = program.shot_s
        runs = (
            shots_per_run(n_probes, shot_s, self.pulses.ion_check_interval)
            if watch is not None
            else [n_probes]
        )
        dark = 0
        threshold = self.pulses.dark_threshold
        if watch is not None:
            watch.before_run()
        for shots in runs:
            budget = 5.0 + 3.0 * shots * shot_s
            result = self.play(program, aom_frequency_hz, pulses, shots, budget)
            cooling, detection = self.shot_counts(program, result, shots)
            if watch is not None and cooling is not None:
                watch.check(cooling, shot_s)
            for c in detection:
                if c <= threshold:
                    dark += 1
        return dark

    def play(
        self,
        program: ClockProgram,
        aom_frequency_hz: float,
        pulses: list[dict[str, Any]],
        shots: int,
        timeout_s: float,
    ) -> Any:
        """One run of `shots` shots of `program` with the clock beam at `aom_frequency_hz`
        (`pulses`, already re-tuned): the controller's reply (`windows`, per-shot `counts`)."""
        return self._run(shots, pulses, timeout_s)

    def shot_counts(
        self, program: ClockProgram, result: object, shots: int
    ) -> tuple[list[int] | None, list[int]]:
        """(cooling counts or None, detection counts) per shot of a run's reply."""
        counts = result.get("counts") if isinstance(result, dict) else None
        if not isinstance(counts, list) or len(counts) != shots:
            raise LabError(f"{self.pulser} returned no counts for {shots} shots")
        windows = result.get("windows") if isinstance(result, dict) else None
        names = list(windows) if isinstance(windows, list) else []
        cool_name = program.cooling_window
        cool_at = names.index(cool_name) if cool_name and cool_name in names else None
        detect_at = names.index(program.detect_window) if program.detect_window in names else -1
        cooling: list[int] | None = [] if cool_at is not None else None
        detection: list[int] = []
        for shot in counts:
            if type(shot) is not list or not -len(shot) <= detect_at < len(shot):
                raise LabError(f"{self.pulser} returned a shot without a detection count")
            found = _count(shot[detect_at], chain=_clock_ion)
            if found is None:
                raise LabError(f"{self.pulser} returned a shot without a detection count")
            detection.append(found)
            if cooling is not None and cool_at is not None:
                value = _count(shot[cool_at], chain=min) if len(shot) > cool_at else None
                if value is None:
                    raise LabError(f"{self.pulser} returned a shot without cooling counts")
                cooling.append(value)
        return cooling, detection


def _clock_ion(per_ion: list[int]) -> int:
    """The chain's clock ion: the centre one (ion 0 of a single ion)."""
    return per_ion[len(per_ion) // 2]


def _count(value: object, chain: Callable[[list[int]], int]) -> int | None:
    """A window's photon count: an integer, or per-ion integers judged by `chain` (detection:
    the clock ion's count; cooling: the dimmest ion's, so one ion missing from a chain reads as
    a lost ion); None if neither."""
    kind = type(value)
    if kind is int:
        return value  # type: ignore[return-value]  # exactly int (not bool)
    if kind is list and value:
        for v in value:  # type: ignore[attr-defined]
            if type(v) is not int:
                return None
        return chain(value)  # type: ignore[arg-type]
    return None
