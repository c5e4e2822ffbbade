"""Health of every watched signal, EPICS style: LOLO/LOW/HIGH/HIHI bands with hysteresis, a rate
of change limit and a staleness bound, giving a severity `OK < MINOR < MAJOR < INVALID`.

A raw severity must persist for the rule's `debounce` before it is reported (one invalid
wavemeter exposure is not a fault). Alarms latch: the latched severity is the worst reported
since the last acknowledgement, and an acknowledgement names who sent it. Time comes from the
injectable clock only, so staleness is tested on virtual time.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

from ionpilot.core.clock import Clock
from ionpilot.servo.settings import HealthRule

WITHIN_LIMITS = "within limits"


class Severity(IntEnum):
    """EPICS alarm severities, ordered."""

    OK = 0
    MINOR = 1
    MAJOR = 2
    INVALID = 3


@dataclass(frozen=True, slots=True)
class SignalStatus:
    """What `health.<signal>` says."""

    signal: str
    severity: Severity
    reason: str
    value: float
    latched: Severity
    acknowledged_by: str | None
    since_s: float  # clock time the reported severity started
    unit: str = ""

    def fields(self) -> dict[str, object]:
        return {
            "severity": self.severity.name,
            "reason": self.reason,
            "value": self.value,
            "unit": self.unit,
            "latched": self.latched.name,
            "acknowledged_by": self.acknowledged_by or "",
        }


def _level(rule: HealthRule, name: str) -> float | None:
    q = getattr(rule, name)
    return None if q is None else float(q.value)


def rule_unit(rule: HealthRule) -> str:
    """The unit of a signal's value: the rule's own, else its limits' (dimensionless: '')."""
    if rule.unit:
        return rule.unit
    for name in ("lolo", "low", "high", "hihi", "hysteresis"):
        q = getattr(rule, name)
        if q is not None and q.unit:
            return "" if q.unit == "1" else str(q.unit)
    return ""


class SignalHealth:
    """One signal under one rule."""

    def __init__(self, signal: str, rule: HealthRule, now: float) -> None:
        self.signal = signal
        self.rule = rule
        self._lolo = _level(rule, "lolo")
        self._low = _level(rule, "low")
        self._high = _level(rule, "high")
        self._hihi = _level(rule, "hihi")
        self._hyst = _level(rule, "hysteresis") or 0.0
        self._max_rate = _level(rule, "max_rate")
        # readings in [_ok_from, _ok_to] are within every limit (the OK band, hysteresis aside)
        lower = [x for x in (self._lolo, self._low) if x is not None]
        upper = [x for x in (self._high, self._hihi) if x is not None]
        self._ok_from = max(lower, default=-math.inf)
        self._ok_to = min(upper, default=math.inf)
        self.value = math.nan
        self.last_t: float | None = None
        self.created = now
        self._raw = Severity.OK
        self._raw_reason = "no reading yet"
        self._raw_since = now
        self._band = Severity.OK  # band severity before debounce, for hysteresis
        self._side = ""  # which limit the band is beyond: "high", "low" or ""
        self.severity = Severity.OK
        self.reason = "no reading yet"
        self.since = now
        self.latched = Severity.OK
        self.acknowledged_by: str | None = None
        self.unit = rule_unit(rule)

    # -- the rule ------------------------------------------------------------------------------

    def _classify(self, v: float) -> tuple[Severity, str]:
        """Band of a value; leaving a band needs `hysteresis` back inside its limit."""
        prev, side, h = self._band, self._side, self._hyst
        # hysteresis holds a band only on the side it was entered from, at or above its severity
        high_held = side == "high" and prev  # prev >= MINOR
        low_held = side == "low" and prev
        major_held = prev >= Severity.MAJOR
        hihi, lolo, high, low = self._hihi, self._lolo, self._high, self._low
        if hihi is not None and (v > hihi or (high_held and major_held and v > hihi - h)):
            band, self._side, reason = Severity.MAJOR, "high", f"above HIHI {hihi:g}"
        elif lolo is not None and (v < lolo or (low_held and major_held and v < lolo + h)):
            band, self._side, reason = Severity.MAJOR, "low", f"below LOLO {lolo:g}"
        elif high is not None and (v > high or (high_held and v > high - h)):
            band, self._side, reason = Severity.MINOR, "high", f"above HIGH {high:g}"
        elif low is not None and (v < low or (low_held and v < low + h)):
            band, self._side, reason = Severity.MINOR, "low", f"below LOW {low:g}"
        else:
            band, self._side, reason = Severity.OK, "", WITHIN_LIMITS
        self._band = band
        return band, reason

    def observe(self, value: float, now: float) -> None:
        """A reading at clock time `now` (NaN = invalid reading)."""
        if not math.isfinite(value):
            self.observe_invalid("invalid reading", now)
            return
        raw, reason = self._classify(value)
        if self._max_rate is not None and self.last_t is not None and now > self.last_t:
            previous = self.value
            if math.isfinite(previous):
                rate = abs(value - previous) / (now - self.last_t)
                if rate > self._max_rate and raw < Severity.MAJOR:
                    raw, reason = Severity.MAJOR, f"rate {rate:.3g}/s above {self._max_rate:g}/s"
        self.value = value
        self.last_t = now
        self._set_raw(raw, reason, now)

    def observe_series(self, values: Sequence[float], times: Sequence[float]) -> None:
        """Readings in time order, exactly as one `observe` each. A healthy signal whose every
        reading is finite and inside all its limits (no rate limit, nothing to debounce) ends
        as its last reading leaves it, so that one alone is taken: the ion watch feeds one
        reading per clock shot, a million a simulated day."""
        if (
            values
            and self._band is Severity.OK
            and self._raw is Severity.OK
            and self.severity is Severity.OK
            and self._max_rate is None
            and self.rule.stale_after >= 0
            and math.isfinite(sum(values))
            and self._ok_from <= min(values)
            and max(values) <= self._ok_to
        ):
            self.observe(values[-1], times[-1])
            return
        for value, t in zip(values, times, strict=True):
            self.observe(value, t)

    def observe_invalid(self, reason: str, now: float) -> None:
        self.value = math.nan
        self.last_t = now
        self._band, self._side = Severity.OK, ""
        self._set_raw(Severity.INVALID, reason, now)

    def _set_raw(self, raw: Severity, reason: str, now: float) -> None:
        if raw is not self._raw:
            self._raw = raw
            self._raw_since = now
        self._raw_reason = reason
        self.evaluate(now)

    def evaluate(self, now: float) -> Severity:
        """Reported severity at `now`: staleness first, then the debounced raw severity."""
        reference = self.last_t if self.last_t is not None else self.created
        if now - reference > self.rule.stale_after:
            self._report(Severity.INVALID, f"stale: no reading for {now - reference:.1f} s", now)
            return self.severity
        if self._raw is not self.severity:
            if now - self._raw_since >= self.rule.debounce:
                self._report(self._raw, self._raw_reason, now)
        elif self._raw_reason != self.reason:
            self.reason = self._raw_reason
        return self.severity

    def _report(self, severity: Severity, reason: str, now: float) -> None:
        if severity is not self.severity:
            self.since = now
        self.severity = severity
        self.reason = reason
        if severity > self.latched:
            self.latched = severity
            self.acknowledged_by = None

    def acknowledge(self, who: str) -> None:
        """The operator has seen it: the latch drops to the present severity."""
        self.latched = self.severity
        self.acknowledged_by = who

    def status(self) -> SignalStatus:
        return SignalStatus(
            self.signal,
            self.severity,
            self.reason,
            self.value,
            self.latched,
            self.acknowledged_by,
            self.since,
            self.unit,
        )


Sink = Callable[[str, dict[str, object]], None]


class HealthMonitor:
    """All watched signals; `evaluate()` refreshes staleness, `aggregate` is the worst."""

    def __init__(
        self,
        rules: dict[str, HealthRule],
        clock: Clock,
        sink: Sink | None = None,
        on_acknowledge: Callable[[str, str, Severity], None] | None = None,
    ) -> None:
        self.clock = clock
        now = clock.now()
        self.signals = {name: SignalHealth(name, rule, now) for name, rule in rules.items()}
        self._sink = sink
        self._on_ack = on_acknowledge
        self._published: dict[str, tuple[Severity, Severity, str | None]] = {}
        self._feeds: dict[str, Callable[[], float | None]] = {}

    def feed(self, signal: str, last_reading_at: Callable[[], float | None]) -> None:
        """A signal read by someone else between our passes (a process's heartbeats arriving
        on the bus): its last reading's clock time is pulled at every evaluation. Sampling it
        once per sensor pass instead made a healthy 1 s heartbeat look 2.1 s stale whenever a
        pass fell just after a long clock step."""
        self._feeds[signal] = last_reading_at

    def _pull_feeds(self) -> None:
        for name, last_reading_at in self._feeds.items():
            s = self.signals.get(name)
            at = last_reading_at()
            if s is not None and at is not None and (s.last_t is None or at > s.last_t):
                s.observe(1.0, at)

    def observe(self, signal: str, value: float, t: float | None = None) -> None:
        s = self.signals.get(signal)
        if s is not None:
            s.observe(value, self.clock.now() if t is None else t)

    def observe_series(self, signal: str, values: Sequence[float], times: Sequence[float]) -> None:
        """Readings of one signal at clock times `times` (in order), as one `observe` each."""
        s = self.signals.get(signal)
        if s is not None:
            s.observe_series(values, times)

    def observe_invalid(self, signal: str, reason: str, t: float | None = None) -> None:
        s = self.signals.get(signal)
        if s is not None:
            s.observe_invalid(reason, self.clock.now() if t is None else t)

    def severity(self, signal: str) -> Severity:
        s = self.signals.get(signal)
        return Severity.OK if s is None else s.severity

    def since(self, signal: str) -> float:
        s = self.signals.get(signal)
        return -math.inf if s is None else s.since

    def evaluate(self, only: Iterable[str] | None = None) -> Severity:
        """Refresh the signals (staleness, debounce) and publish the changes; returns the worst.
        `only`: just these signals, for a reader that fed them between sensor passes (the ion
        watch's shots): judging the others then would call a signal stale because the daemon
        was busy in a clock step instead of reading it, not because it had no reading."""
        self._pull_feeds()
        now = self.clock.now()
        worst = Severity.OK
        chosen = self.signals.values() if only is None else self._chosen(only)
        for s in chosen:
            worst = max(worst, s.evaluate(now))
        if self._sink is not None:
            self.publish(only_changes=True)
        return worst

    def _chosen(self, names: Iterable[str]) -> list[SignalHealth]:
        return [s for name in names if (s := self.signals.get(name)) is not None]

    @property
    def aggregate(self) -> Severity:
        return max((s.severity for s in self.signals.values()), default=Severity.OK)

    def statuses(self) -> dict[str, SignalStatus]:
        return {name: s.status() for name, s in self.signals.items()}

    def unacknowledged(self) -> list[str]:
        """Signals whose latched alarm nobody has acknowledged."""
        return [
            n for n, s in self.signals.items() if s.latched > Severity.OK and not s.acknowledged_by
        ]

    def acknowledge(self, signals: Iterable[str] | None, who: str) -> list[str]:
        """Acknowledge the named signals (all latched ones if None); returns those acknowledged.
        `who` is recorded (the bus command's sender)."""
        names = list(self.signals) if signals is None else list(signals)
        done = []
        for name in names:
            s = self.signals.get(name)
            if s is None or s.latched is Severity.OK:
                continue
            latched = s.latched
            s.acknowledge(who)
            done.append(name)
            if self._on_ack is not None:
                self._on_ack(name, who, latched)
        if self._sink is not None:
            self.publish(only_changes=True)
        return done

    def publish(self, only_changes: bool = False) -> None:
        """`health.<signal>` per signal and `health.aggregate`."""
        if self._sink is None:
            return
        changed = False
        for name, s in self.signals.items():
            key = (s.severity, s.latched, s.acknowledged_by)
            if only_changes and self._published.get(name) == key:
                continue
            self._published[name] = key
            changed = True
            self._sink(f"health.{name}", s.status().fields())
        if changed or not only_changes:
            worst = self.aggregate
            latched = max((s.latched for s in self.signals.values()), default=Severity.OK)
            self._sink(
                "health.aggregate",
                {
                    "severity": worst.name,
                    "latched": latched.name,
                    "unacknowledged": ",".join(self.unacknowledged()),
                },
            )
