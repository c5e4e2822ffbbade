"""Health monitor on a manual clock: bands with hysteresis, rate, staleness, debounce, severity
order, aggregate, latching and acknowledgement (recorded with who sent it); the audit log."""

from ionpilot.core.clock import ManualClock
from ionpilot.core.units import Quantity
from ionpilot.servo.audit import AuditLog
from ionpilot.servo.health import HealthMonitor, Severity
from ionpilot.servo.settings import HealthRule


def q(value, unit="V"):
    return Quantity(value, unit)


def rule(**kw):
    base = {
        "lolo": q(0.0),
        "low": q(1.0),
        "high": q(9.0),
        "hihi": q(10.0),
        "hysteresis": q(0.5),
        "stale_after": 5.0,
    }
    base.update(kw)
    return HealthRule(**base)


def test_severities_are_ordered_like_epics():
    assert Severity.OK < Severity.MINOR < Severity.MAJOR < Severity.INVALID


def test_bands_with_hysteresis():
    clock = ManualClock()
    h = HealthMonitor({"x": rule()}, clock)
    seq = [
        (5.0, Severity.OK),
        (9.2, Severity.MINOR),
        (8.8, Severity.MINOR),  # inside HIGH but not by the hysteresis
        (8.4, Severity.OK),
        (10.1, Severity.MAJOR),
        (9.7, Severity.MAJOR),  # hysteresis holds MAJOR
        (9.4, Severity.MINOR),
        (-0.1, Severity.MAJOR),
        (0.3, Severity.MAJOR),
        (0.6, Severity.MINOR),
        (1.6, Severity.OK),
    ]
    for value, expected in seq:
        clock.advance(0.1)
        h.observe("x", value)
        assert h.severity("x") is expected, (value, h.signals["x"].reason)


def test_staleness_on_the_injected_clock_is_invalid():
    clock = ManualClock()
    h = HealthMonitor({"x": rule(stale_after=2.0)}, clock)
    h.observe("x", 5.0)
    clock.advance(1.9)
    assert h.evaluate() is Severity.OK
    clock.advance(0.2)
    assert h.evaluate() is Severity.INVALID
    assert "stale" in h.signals["x"].reason
    h.observe("x", 5.0)
    assert h.severity("x") is Severity.OK


def test_rate_of_change_and_invalid_readings():
    clock = ManualClock()
    h = HealthMonitor({"x": rule(max_rate=q(1.0, "V/s"))}, clock)
    h.observe("x", 5.0)
    clock.advance(1.0)
    h.observe("x", 5.5)
    assert h.severity("x") is Severity.OK
    clock.advance(1.0)
    h.observe("x", 7.0)  # 1.5 V/s
    assert h.severity("x") is Severity.MAJOR and "rate" in h.signals["x"].reason
    h.observe_invalid("x", "underexposed")
    assert h.severity("x") is Severity.INVALID


def test_debounce_ignores_a_single_bad_reading():
    clock = ManualClock()
    h = HealthMonitor({"x": rule(debounce=1.0)}, clock)
    h.observe("x", 5.0)
    clock.advance(1.0)
    h.observe_invalid("x", "one bad exposure")
    assert h.severity("x") is Severity.OK
    clock.advance(1.0)
    h.observe("x", 5.0)
    assert h.severity("x") is Severity.OK
    h.observe("x", 11.0)
    clock.advance(0.5)
    h.observe("x", 11.0)
    assert h.severity("x") is Severity.OK
    clock.advance(0.6)
    h.observe("x", 11.0)
    assert h.severity("x") is Severity.MAJOR


def latched(h: HealthMonitor, signal: str) -> Severity:
    """Read through a call: mypy must not carry an earlier assert's narrowing past a mutation."""
    return h.signals[signal].latched


def test_alarms_latch_until_acknowledged_and_the_ack_names_the_sender(tmp_path):
    clock = ManualClock()
    audit = AuditLog(clock, tmp_path / "audit.sqlite")
    published = []

    def record_ack(signal: str, who: str, severity: Severity) -> None:
        audit.record(
            "ack", signal, f"acknowledged by {who}", source="operator", severity=severity.name
        )

    h = HealthMonitor(
        {"x": rule(), "y": rule()},
        clock,
        sink=lambda topic, payload: published.append((topic, payload)),
        on_acknowledge=record_ack,
    )
    h.observe("x", 5.0)
    h.observe("y", 5.0)
    h.observe("x", 11.0)
    h.observe("x", 5.0)
    h.evaluate()
    assert h.severity("x") is Severity.OK
    assert h.signals["x"].latched is Severity.MAJOR
    assert h.unacknowledged() == ["x"]
    assert h.aggregate is Severity.OK
    assert h.acknowledge(None, "alice@console") == ["x"]
    assert latched(h, "x") is Severity.OK
    assert h.signals["x"].acknowledged_by == "alice@console"
    assert h.unacknowledged() == []
    rows = audit.rows("ack")
    assert rows[0][3] == "x" and "alice@console" in str(rows[0][4])
    topics = [t for t, _ in published]
    assert "health.x" in topics and "health.aggregate" in topics
    aggregate = [p for t, p in published if t == "health.aggregate"][-1]
    assert aggregate["severity"] == "OK" and aggregate["unacknowledged"] == ""
    audit.close()


def test_aggregate_is_the_worst_signal():
    clock = ManualClock()
    h = HealthMonitor({"x": rule(), "y": rule()}, clock)
    h.observe("x", 9.5)
    h.observe("y", 5.0)
    assert h.evaluate() is Severity.MINOR
    clock.advance(6.0)
    h.observe("x", 5.0)
    assert h.evaluate() is Severity.INVALID  # y went stale


class _AnsweringLab:
    """A lab whose every read answers (the driver host is up)."""

    def read(self, signal: str) -> float:
        return 1.0


def _heartbeat_after_a_long_step(*, fed: bool, only_the_watched: bool) -> tuple[Severity, str]:
    """The live daemon's timing: a sensor pass at 0 s hears the driver host; the lock thread
    comes back at 0.99 s (pass not due), runs a 1.2 s clock step, and the ion watch evaluates
    health at the end of the step's pulser run. The host beats every 1.00 s all along."""
    from ionpilot.servo.playbooks import FLUORESCENCE, HEARTBEAT
    from ionpilot.servo.sensors import LabSensors
    from ionpilot.servo.settings import RecoverySettings

    clock = ManualClock()
    rules = {HEARTBEAT: HealthRule(stale_after=2.0), FLUORESCENCE: HealthRule(stale_after=5.0)}
    health = HealthMonitor(rules, clock)
    beats = [0.0, 1.0, 2.0, 3.0]
    if fed:
        health.feed(HEARTBEAT, lambda: max((b for b in beats if b <= clock.now()), default=None))
    sensors = LabSensors(
        _AnsweringLab(),  # type: ignore[arg-type]
        health,
        RecoverySettings(health_period=1.0),
        {},
        cavity_laser="clock_laser",
    )
    sensors(clock.now())
    health.evaluate()
    clock.advance(0.99)
    sensors(clock.now())  # not due yet: nothing read
    clock.advance(1.2)  # one clock step (its shots) later
    health.observe(FLUORESCENCE, 40 / 0.003)  # the step's shots
    health.evaluate(only=(FLUORESCENCE,) if only_the_watched else None)
    return health.severity(HEARTBEAT), health.signals[HEARTBEAT].reason


def test_judging_every_signal_mid_step_cried_wolf_on_the_heartbeat():
    """The false alarm of issue 20: the host beats every 1.00 s, yet the heartbeat looked
    2.2 s stale, because the ion watch judged every signal between two sensor passes."""
    severity, reason = _heartbeat_after_a_long_step(fed=False, only_the_watched=False)
    assert severity is Severity.INVALID and reason == "stale: no reading for 2.2 s"
    # the fix, twice over: the ion watch judges only its own signal; the heartbeat is fed by
    # the beats arriving on the bus, whoever evaluates
    for fed, only in ((False, True), (True, False), (True, True)):
        severity, reason = _heartbeat_after_a_long_step(fed=fed, only_the_watched=only)
        assert severity is Severity.OK, (fed, only, reason)


def test_a_fed_signal_still_goes_stale_when_the_beats_stop():
    clock = ManualClock()
    health = HealthMonitor({"hb": HealthRule(stale_after=2.0)}, clock)
    health.feed("hb", lambda: 0.0)  # one beat at 0 s, then silence
    health.evaluate()
    assert health.severity("hb") is Severity.OK
    clock.advance(2.5)
    health.evaluate(only=("other",))  # judging another signal leaves it alone
    assert health.severity("hb") is Severity.OK
    health.evaluate()
    assert health.severity("hb") is Severity.INVALID
    assert health.signals["hb"].reason == "stale: no reading for 2.5 s"


def test_the_audit_log_hands_out_its_newest_entries_oldest_first(tmp_path):
    clock = ManualClock()
    log = AuditLog(clock, tmp_path / "audit.sqlite")
    for i in range(5):
        clock.advance(1.0)
        log.record("step", f"ion_loss.step{i}", f"reason {i}", severity="ALERT" if i == 4 else "OK")
    latest = log.latest(3)
    assert [e["action"] for e in latest] == ["ion_loss.step2", "ion_loss.step3", "ion_loss.step4"]
    assert latest[-1] == {
        "wall_ns": latest[-1]["wall_ns"],
        "source": "recovery",
        "kind": "step",
        "action": "ion_loss.step4",
        "reason": "reason 4",
        "severity": "ALERT",
    }
    assert log.latest(0) == [] and len(log.latest(100)) == 5
    log.close()


def _state(h, name="x"):
    s = h.signals[name]
    return (s.severity, s.reason, s.since, s.latched, s.value, s.last_t, s._raw, s._raw_since)


def test_a_series_of_readings_ends_as_one_observe_each():
    """The ion watch hands a run's readings over as one series: healthy or not, debounced or
    not, the signal ends exactly as after one `observe` per reading."""
    series = [
        [5.0, 5.5, 4.0, 8.9],  # healthy throughout: only the last one is taken
        [5.0, 9.2, 8.8, 5.0],  # into MINOR and back, through the hysteresis
        [5.0, -0.1, 0.3, 0.6],  # MAJOR, held by the hysteresis, then MINOR
        [5.0, float("nan"), 5.0],  # an invalid reading in between
        [5.0, 11.0, 11.0, 11.0, 5.0],  # MAJOR debounced: reported at the third reading
    ]
    for values in series:
        for debounce in (0.0, 0.25):
            clock_a, clock_b = ManualClock(), ManualClock()
            one = HealthMonitor({"x": rule(debounce=debounce)}, clock_a)
            many = HealthMonitor({"x": rule(debounce=debounce)}, clock_b)
            for start in (0.0, 10.0):  # from a fresh signal, then from where the first left it
                times = [start + 0.1 * (i + 1) for i in range(len(values))]
                for value, t in zip(values, times, strict=True):
                    one.observe("x", value, t)
                many.observe_series("x", values, times)
                a, b = _state(one), _state(many)
                assert a[:4] == b[:4] and a[6:] == b[6:], (values, debounce, a, b)
                assert a[4] == b[4] or (a[4] != a[4] and b[4] != b[4])  # NaN equals NaN here
                assert a[5] == b[5]


def test_a_healthy_series_is_one_reading_for_the_rate_limit_too():
    """With a rate limit every step is judged: a jump inside the limits still trips."""
    clock = ManualClock()
    h = HealthMonitor({"x": rule(max_rate=q(10.0, "V/s"))}, clock)
    h.observe_series("x", [5.0, 5.1, 8.0], [0.1, 0.2, 0.3])
    assert h.severity("x") is Severity.MAJOR and "rate" in h.signals["x"].reason


def test_a_healthy_series_after_an_undebounced_invalid_reading():
    """An invalid reading not yet reported (debounce): the healthy series that follows starts
    the OK raw severity at its first reading, not its last."""
    ends = []
    for as_series in (False, True):
        clock = ManualClock()
        h = HealthMonitor({"x": rule(debounce=0.25)}, clock)
        h.observe("x", 5.0, 0.0)
        h.observe("x", float("nan"), 0.1)
        values, times = [5.0, 5.0, 5.0], [0.2, 0.3, 0.4]
        if as_series:
            h.observe_series("x", values, times)
        else:
            for value, t in zip(values, times, strict=True):
                h.observe("x", value, t)
        ends.append(_state(h))
    assert ends[0] == ends[1]
