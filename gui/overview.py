"""Overview: "is everything fine?" in one look, readable from across the lab.

Big tiles for the clock lock, the optical frequency, aggregate health, a running recovery and
uptime, then one tile per process heartbeat. Every tile says where its number came from and how
old it is; a tile with nothing to show is grey and says so, never shows a stale value as live.
"""

from __future__ import annotations

import math
import time
from typing import Any

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import QFrame, QGridLayout, QLabel, QSizePolicy, QVBoxLayout, QWidget

from ionpilot.bus.codec import STATUSES, Reply
from ionpilot.gui.context import Context
from ionpilot.gui.store import EventRecord, severity_rank
from ionpilot.gui.style import (
    DIM_TEXT,
    LOCK_COLOURS,
    PANEL,
    UNKNOWN_COLOUR,
    big_font,
    format_age,
    format_duration,
    format_hz_grouped,
    format_value,
    section_title,
    severity_colour,
)

RECOVERY_DONE_WORDS = ("done", "finished", "recovered", "resumed", "complete", "success", "cleared")


class Tile(QFrame):
    """A titled value with a detail line and a coloured band on its left."""

    def __init__(self, title: str, value_size: int, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("tile")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(18, 10, 14, 12)
        layout.setSpacing(2)
        self.title = QLabel(title.upper())
        self.title.setFont(big_font(max(9, value_size // 3), bold=True))
        self.title.setStyleSheet(f"color: {DIM_TEXT}; letter-spacing: 1px;")
        self.value = QLabel("—")
        self.value.setFont(big_font(value_size))
        self.value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.detail = QLabel("")
        self.detail.setFont(big_font(max(10, value_size // 3), bold=False))
        self.detail.setStyleSheet(f"color: {DIM_TEXT};")
        self.detail.setWordWrap(True)
        layout.addWidget(self.title)
        layout.addStretch(1)
        layout.addWidget(self.value)
        layout.addWidget(self.detail)
        layout.addStretch(1)
        self.set_colour(UNKNOWN_COLOUR)

    def set_colour(self, colour: str) -> None:
        self.colour = colour
        self.setStyleSheet(
            f"QFrame#tile {{ background: {PANEL}; border-left: 10px solid {colour}; }}"
        )

    def display(self, value: str, detail: str, colour: str) -> None:
        self.value.setText(value)
        self.detail.setText(detail)
        if colour != self.colour:
            self.set_colour(colour)


def health_severity(value: Any, status: str) -> str:
    """The severity a `health.*` message carries: its value if a severity name, else a map's
    `severity`, else the message status."""
    if isinstance(value, str) and value in STATUSES:
        return value
    if isinstance(value, dict):
        sev = value.get("severity")
        if isinstance(sev, str) and sev in STATUSES:
            return sev
    return status


def not_measured(value: Any) -> bool:
    """A `health.<signal>` map whose value is NaN: no reading yet (micromotion is measured every
    ten minutes), which is not the same as a reading within limits."""
    if not isinstance(value, dict):
        return False
    reading = value.get("value")
    return isinstance(reading, float) and math.isnan(reading)


def recovery_events(events: list[EventRecord]) -> list[EventRecord]:
    return [
        e for e in events if "recover" in e.kind or "recover" in e.topic or "playbook" in e.kind
    ]


class OverviewPanel(QWidget):
    """The first panel: lock, frequency, health, recovery, uptime, heartbeats."""

    name = "overview"
    title = "Overview"

    def __init__(self, ctx: Context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._opened = time.time()
        base = ctx.settings.font_size
        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 12, 16, 12)
        layout.setSpacing(10)
        grid = QGridLayout()
        grid.setSpacing(12)
        self.lock = Tile("Clock lock", base * 4)
        self.frequency = Tile("Clock output frequency (comb)", base * 3)
        self.health = Tile("Health", base * 4)
        self.recovery = Tile("Recovery", int(base * 2.5))
        self.uptime = Tile("Uptime", base * 3)
        self.servo = Tile("Last servo update", int(base * 2.5))
        grid.addWidget(self.lock, 0, 0)
        grid.addWidget(self.health, 0, 1)
        grid.addWidget(self.recovery, 0, 2)
        grid.addWidget(self.frequency, 1, 0, 1, 2)
        grid.addWidget(self.uptime, 1, 2)
        grid.addWidget(self.servo, 2, 0, 1, 3)
        for col in range(3):
            grid.setColumnStretch(col, 1)
        layout.addLayout(grid, 3)
        layout.addWidget(section_title("PROCESS HEARTBEATS"))
        self._beats_grid = QGridLayout()
        self._beats_grid.setSpacing(12)
        layout.addLayout(self._beats_grid, 1)
        self._beat_tiles: dict[str, Tile] = {}
        self.daemon_status: dict[str, Any] = {}
        self._status_asked = -1e9

    def _ask_status(self) -> None:
        """The daemon's own account (recovery running, safe state, uptime): polled, cheap."""
        now = time.monotonic()
        if now - self._status_asked < 2.0 or "daemon" not in self.ctx.bus.targets():
            return
        self._status_asked = now

        def take(reply: Reply) -> None:
            self.daemon_status = reply.value if reply.ok and isinstance(reply.value, dict) else {}

        self.ctx.bus.request("daemon", "status", {}, take, timeout=1.5)

    # ---------------------------------------------------------------------------- refresh

    def refresh(self) -> None:
        self._ask_status()
        self._refresh_lock()
        self._refresh_frequency()
        self._refresh_health()
        self._refresh_recovery()
        self._refresh_uptime()
        self._refresh_servo()
        self._refresh_beats()

    def _stale(self, topic: str, bound: float | None = None) -> bool:
        return self.ctx.store.age(topic) > (bound or self.ctx.bus.stale_after)

    def _refresh_lock(self) -> None:
        store = self.ctx.store
        state = store.value("servo.clock.state")
        if not isinstance(state, str):
            self.lock.display("no daemon", "no servo.clock.state received yet", UNKNOWN_COLOUR)
            return
        age = store.age("servo.clock.state")
        if self._stale("servo.clock.state"):
            self.lock.display(
                state.upper(), f"STALE: last heard {format_age(age)} ago", UNKNOWN_COLOUR
            )
            return
        changes = store.changes.get("servo.clock.state")
        since = ""
        if changes:
            since = f"since {time.strftime('%H:%M:%S', time.localtime(changes[-1][0]))}"
        self.lock.display(
            state.upper(),
            f"{since} · updated {format_age(age)} ago",
            LOCK_COLOURS.get(state, UNKNOWN_COLOUR),
        )

    def _refresh_frequency(self) -> None:
        store = self.ctx.store
        record = store.value("servo.clock.optical_frequency")
        nu0 = self.ctx.facts.clock_frequency_hz
        if isinstance(record, dict) and isinstance(record.get("output_frequency_hz"), float):
            nu = float(record["output_frequency_hz"])
            age = store.age("servo.clock.optical_frequency")
            offset = nu - nu0
            detail = (
                f"ν − ν₀ = {offset:+.2f} Hz  ({offset / nu0:+.2e})  ·  comb mode n = "
                f"{record.get('mode_number', '?')}  ·  measured {format_age(age)} ago"
            )
            colour = UNKNOWN_COLOUR if age > 60 else severity_colour("OK")
            self.frequency.display(format_hz_grouped(nu, 1), detail, colour)
            return
        aom = store.value("servo.clock.aom_frequency")
        if isinstance(aom, float):
            self.frequency.display(
                "no comb reading yet",
                f"clock AOM at {format_value(aom, 'Hz', 10)} (line-centre estimate)",
                UNKNOWN_COLOUR,
            )
        else:
            self.frequency.display("—", "no servo.clock.optical_frequency received", UNKNOWN_COLOUR)

    def _refresh_health(self) -> None:
        store = self.ctx.store
        signals = [t for t in store.topics("health.") if t != "health.aggregate"]
        bad: list[tuple[int, str, str]] = []
        unmeasured: list[str] = []  # OK only because nothing was read yet: not counted as OK
        for topic in signals:
            latest = store.latest[topic]
            sev = health_severity(latest.value, latest.status)
            if sev != "OK":
                bad.append((severity_rank(sev), topic.removeprefix("health."), sev))
            elif not_measured(latest.value):
                unmeasured.append(topic.removeprefix("health."))
        bad.sort(reverse=True)
        worst = ", ".join(f"{name} {sev}" for _, name, sev in bad[:3])
        agg = store.latest.get("health.aggregate")
        if agg is not None:
            sev = health_severity(agg.value, agg.status)
            if self._stale("health.aggregate", 10.0):
                self.health.display(sev, "STALE aggregate", UNKNOWN_COLOUR)
                return
            detail = f"{len(bad)} of {len(signals)} signals not OK" + (
                f": {worst}" if worst else ""
            )
            if unmeasured:
                detail += f"; not measured yet: {', '.join(sorted(unmeasured))}"
            self.health.display(sev, detail, severity_colour(sev))
            return
        if signals:
            sev = STATUSES[max((r for r, _, _ in bad), default=0)]
            self.health.display(
                sev, f"{len(bad)} of {len(signals)} signals not OK {worst}", severity_colour(sev)
            )
            return
        # no health monitor: the worst recent event says something
        recent = [e for e in list(store.events)[-200:] if time.time() - e.t_ns * 1e-9 < 300]
        sev = STATUSES[max((severity_rank(e.severity) for e in recent), default=0)]
        self.health.display(
            "no monitor",
            f"no health.* signals; worst event in the last 5 min: {sev}",
            severity_colour(sev) if recent and sev != "OK" else UNKNOWN_COLOUR,
        )

    def _refresh_recovery(self) -> None:
        store = self.ctx.store
        status = self.daemon_status
        if status.get("safe_state"):
            self.recovery.display(
                "SAFE STATE",
                "escalated: waiting for the operator (Health → leave safe state)",
                severity_colour("MAJOR"),
            )
            return
        if isinstance(status.get("recovering"), str) and status["recovering"]:
            self.recovery.display(
                status["recovering"].replace("_", " "),
                "playbook running (daemon status)",
                severity_colour("MINOR"),
            )
            return
        topics = [t for t in store.topics() if "recovery" in t]
        for topic in topics:
            value = store.value(topic)
            if isinstance(value, dict):
                text = " · ".join(f"{k} {format_value(v)}" for k, v in value.items())
                self.recovery.display(topic.split(".")[-1], text, severity_colour("MINOR"))
                return
            if isinstance(value, str) and value not in ("", "idle", "none"):
                self.recovery.display(value, topic, severity_colour("MINOR"))
                return
        events = recovery_events(list(store.events)[-500:])
        if not events:
            self.recovery.display(
                "none", "no recovery seen since the console opened", severity_colour("OK")
            )
            return
        last = events[-1]
        when = time.strftime("%H:%M:%S", time.localtime(last.t_ns * 1e-9))
        finished = any(
            w in last.kind.lower() or w in last.message.lower() for w in RECOVERY_DONE_WORDS
        )
        if finished:
            self.recovery.display(
                "none running", f"last: {when} {last.message}", severity_colour("OK")
            )
        else:
            self.recovery.display(
                last.kind.replace("_", " "), f"{when} {last.message}", severity_colour("MINOR")
            )

    def _refresh_uptime(self) -> None:
        store = self.ctx.store
        for topic in store.topics():
            value = store.value(topic)
            if "uptime" not in topic:
                continue
            record = value if isinstance(value, dict) else {"uptime": value}
            fraction = record.get("uptime")
            if isinstance(fraction, float):
                elapsed = record.get("elapsed_s")
                detail = f"locked / elapsed, from {topic}"
                if isinstance(elapsed, float):
                    detail += f" over {format_duration(elapsed)}; faults {record.get('faults', 0)}"
                colour = severity_colour("OK" if fraction >= 0.99 else "MINOR")
                self.uptime.display(f"{fraction * 100:.2f} %", detail, colour)
                return
        fraction = store.fraction_in("servo.clock.state", "locked", time.time())
        watched = time.time() - self._opened
        if fraction is None:
            self.uptime.display("—", f"console open {format_duration(watched)}", UNKNOWN_COLOUR)
            return
        colour = severity_colour("OK" if fraction > 0.9 else "MINOR")
        self.uptime.display(
            f"{fraction * 100:.1f} %",
            f"locked, while this console watched ({format_duration(watched)})",
            colour,
        )

    def _refresh_servo(self) -> None:
        store = self.ctx.store
        update = store.value("servo.clock.update")
        if not isinstance(update, dict):
            self.servo.display("—", "no servo.clock.update received", UNKNOWN_COLOUR)
            return
        age = store.age("servo.clock.update")
        err = update.get("error_hz")
        corr = update.get("correction_hz")
        drift = update.get("drift_hz_per_s")
        aom = update.get("aom_frequency_hz")
        parts = [
            f"error {err:+.3f} Hz" if isinstance(err, float) else "error —",
            f"correction {corr:+.3f} Hz" if isinstance(corr, float) else "",
            f"drift {drift * 1e3:+.2f} mHz/s" if isinstance(drift, float) else "",
        ]
        colour = UNKNOWN_COLOUR if age > 30 else severity_colour("OK")
        self.servo.display(
            "   ".join(p for p in parts if p),
            f"AOM {format_value(aom, 'Hz', 10)} · {update.get('n_probes', '?')} probes per side"
            f" · {format_age(age)} ago",
            colour,
        )

    def _refresh_beats(self) -> None:
        store = self.ctx.store
        names = list(dict.fromkeys([*self.ctx.facts.processes, *sorted(store.beats)]))
        stale_after = self.ctx.bus.stale_after
        for i, name in enumerate(names):
            tile = self._beat_tiles.get(name)
            if tile is None:
                tile = self._beat_tiles[name] = Tile(name, self.ctx.settings.font_size * 2)
                self._beats_grid.addWidget(tile, i // 5, i % 5)
            age = store.beat_age(name)
            beat = store.beats.get(name)
            if beat is None:
                tile.display("not seen", "no heartbeat since the console opened", UNKNOWN_COLOUR)
            elif age > stale_after:
                tile.display("SILENT", f"last beat {format_age(age)} ago", severity_colour("MAJOR"))
            else:
                tile.display(
                    "alive" if beat.status == "OK" else beat.status,
                    f"beat {format_age(age)} ago · every {beat.period:g} s",
                    severity_colour(beat.status),
                )
