"""Ion presence from the clock interrogation's own shots: every shot cools the ion first, and the
photons counted in that cooling window say whether an ion is there, whatever the clock laser did
afterwards (the detection outcomes cannot: at the half-fringe half the shots are dark by design;
REFERENCE.md §3).

Each shot's cooling counts become a rate observed on the daemon's fluorescence health signal
(`servo.ion.fluorescence`) at the shot's time, so the signal's own rule decides, suspender style:
it trips below LOLO (`fluorescence_threshold`, a few shots' worth of background-level windows for
the rule's `debounce`) and clears only above LOLO + hysteresis. A run that ends on dark shots not
yet confirmed is settled at once with short photon counts between shots instead of waiting for the
next run. A lost ion thus shows within one pulser run (`ion_check_interval`) plus the debounce, and
the interrogation that saw it is discarded (its "excited" shots were only an empty trap).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from ionpilot.core.clock import Clock
from ionpilot.servo.health import HealthMonitor, Severity
from ionpilot.servo.playbooks import FLUORESCENCE
from ionpilot.servo.seams import IonNotFluorescing
from ionpilot.servo.settings import PulseCalibration


def shots_per_run(n_probes: int, shot_s: float, interval_s: float) -> list[int]:
    """Split `n_probes` shots into pulser runs no longer than `interval_s` (at least one shot a
    run), as evenly as possible: 10 shots of 83 ms at 0.5 s → [5, 5]."""
    if n_probes <= 0:
        return []
    per_run = max(1, math.floor(interval_s / shot_s + 1e-9)) if shot_s > 0 else n_probes
    runs = math.ceil(n_probes / per_run)
    base, extra = divmod(n_probes, runs)
    return [base + (1 if i < extra else 0) for i in range(runs)]


class IonWatch:
    """Feeds each shot's cooling fluorescence into the health monitor and says when the ion is
    gone. `count_rate()` is a short photon count (1/s) taken between shots to confirm."""

    def __init__(
        self,
        health: HealthMonitor,
        clock: Clock,
        pulses: PulseCalibration,
        count_rate: Callable[[], float] | None = None,
        signal: str = FLUORESCENCE,
    ) -> None:
        self.health = health
        self.clock = clock
        self.pulses = pulses
        self.count_rate = count_rate
        self.signal = signal
        self.shots = 0  # shots watched
        self.dark_shots = 0  # shots whose cooling window was below the trip threshold
        self.confirm_counts = 0  # photon counts taken to settle a run that ended dark
        self.discarded = 0  # interrogations discarded because the ion was gone
        self._last_t = -math.inf

    @property
    def enabled(self) -> bool:
        return self.pulses.watch_cooling and self.signal in self.health.signals

    @property
    def trip_rate(self) -> float:
        """Below this (1/s) a shot counts as dark: the rule's LOLO."""
        rule = self.health.signals[self.signal].rule
        return float(rule.lolo.value) if rule.lolo is not None else -math.inf

    @property
    def resume_rate(self) -> float:
        """Above this (1/s) the ion is back: LOLO + hysteresis."""
        rule = self.health.signals[self.signal].rule
        hysteresis = float(rule.hysteresis.value) if rule.hysteresis is not None else 0.0
        return self.trip_rate + hysteresis

    def lost(self) -> bool:
        """The fluorescence signal reports the ion gone now (below LOLO, debounce passed; not
        INVALID: a signal gone stale during a long read says nothing about the ion)."""
        # debounce and staleness of this signal only, at `now` (a change is published at once);
        # the others are judged at the sensor pass that reads them, not in the middle of a step
        self.health.evaluate(only=(self.signal,))
        return self.health.severity(self.signal) is Severity.MAJOR

    def observe(self, cooling_counts: Sequence[int], shot_s: float) -> None:
        """Cooling counts of a run that just ended, one per shot (`shot_s` apart); the last
        shot's cooling window ended `shot_s − cooling_time` ago at the latest."""
        now = self.clock.now()
        window = self.pulses.cooling_time
        m = len(cooling_counts)
        threshold = self.trip_rate
        last = self._last_t
        rates: list[float] = []
        times: list[float] = []
        dark = 0
        for i, counts in enumerate(cooling_counts):
            t = now - (m - i) * shot_s + window
            last = min(now, max(t, last))  # never before what the signal already saw
            rate = counts / window
            dark += rate < threshold
            rates.append(rate)
            times.append(last)
        self.health.observe_series(self.signal, rates, times)
        self._last_t = last
        self.dark_shots += dark
        self.shots += m

    def check(self, cooling_counts: Sequence[int], shot_s: float) -> None:
        """Watch a run's shots; raise `IonNotFluorescing` if the ion is gone (the run's clock
        outcomes mean nothing then). A run that ends dark but is not yet confirmed is settled
        now with short counts, so the next run is not spent on an empty trap."""
        if cooling_counts:
            self.observe(cooling_counts, shot_s)
        self._verdict()

    def before_run(self) -> None:
        """Before an interrogation's shots: a loss already reported, or a dark reading since
        the last run (the sensor pass's count), is settled first, not after a run of shots."""
        self._verdict()

    def _verdict(self) -> None:
        if self.lost() or (self._ends_dark() and self._confirm()):
            self.discarded += 1
            status = self.health.signals[self.signal]
            raise IonNotFluorescing(
                f"no cooling fluorescence ({status.value:.0f} counts/s, {status.reason}): "
                "ion lost or dark, interrogation discarded"
            )

    def _ends_dark(self) -> bool:
        value = self.health.signals[self.signal].value
        return math.isfinite(value) and value < self.trip_rate

    def _confirm(self) -> bool:
        """Short counts until the rule's debounce has decided (bounded: one count more than the
        debounce needs); False as soon as a count shows the ion bright."""
        if self.count_rate is None:
            return False
        rule = self.health.signals[self.signal].rule
        count_s = max(self.pulses.presence_count_time, 1e-3)
        for _ in range(math.ceil(rule.debounce / count_s) + 1):
            rate = self.count_rate()
            self.confirm_counts += 1
            now = self.clock.now()
            self._last_t = max(self._last_t, now)
            self.health.observe(self.signal, rate, self._last_t)
            if self.lost():
                return True
            if rate >= self.resume_rate:
                return False
        return self.lost()
