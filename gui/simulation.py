"""Simulation: when the lab is simulated, one button per fault (and restore), sent to the
simulated lab over the bus (target `sim`, `call` name=fault kind=... target=...).

Faults that need a target offer the sensible ones (an instrument, a laser, an ion); the lab's
answer, or its refusal, is shown as it came back, and every injection is listed with its time.
"""

from __future__ import annotations

import time

from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QComboBox,
    QGridLayout,
    QGroupBox,
    QLabel,
    QListWidget,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from ionpilot.bus.codec import Reply
from ionpilot.gui.connection import describe_reply
from ionpilot.gui.context import Context
from ionpilot.gui.style import DIM_TEXT, severity_colour

LASERS = ["laser_369", "laser_935", "laser_399", "laser_435"]
# kind -> (what it does, the targets to offer; [] = no target, None in the list = "(none)")
FAULTS: dict[str, tuple[str, list[str]]] = {
    "ion_loss": (
        "the ion leaves the trap (background-gas collision)",
        ["all", "0", "1", "2", "3", "4"],
    ),
    "ion_dark": ("the ion is pumped into a dark state", ["all", "0", "1", "2", "3", "4"]),
    "mode_hop": ("a laser hops to another mode", LASERS),
    "cavity_unlock": ("the clock laser's reference cavity unlocks", []),
    "rf_trip": ("the trap RF trips off", []),
    "stray_field_step": ("a step in the stray electric field (V/m)", ["", "5", "20", "50"]),
    "comb_unlock": ("the frequency comb loses lock", []),
    "wavemeter_invalid": ("the wavemeter reads garbage for a while", []),
    "instrument_hang": ("an instrument stops answering", []),
    "instrument_disconnect": ("an instrument drops its connection", []),
    "garbage_reply": ("an instrument answers garbage", []),
}
INSTRUMENT_FAULTS = ("instrument_hang", "instrument_disconnect", "garbage_reply")
RESTORE_TARGETS = ["ion", "cavity", "rf_drive", "comb", "wavemeter", "stray", *LASERS]


class SimulationPanel(QWidget):
    """Fault buttons and the history of what was injected."""

    name = "simulation"
    title = "Simulation"

    def __init__(self, ctx: Context, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.targets: dict[str, QComboBox] = {}
        self.buttons: dict[str, QPushButton] = {}
        self.replies: list[Reply] = []

        self.banner = QLabel("")
        self.banner.setWordWrap(True)
        box = QGroupBox("Inject a fault into the simulated lab")
        grid = QGridLayout(box)
        grid.setHorizontalSpacing(16)
        grid.addWidget(QLabel("<b>Fault</b>"), 0, 0)
        grid.addWidget(QLabel("<b>Target</b>"), 0, 1)
        grid.addWidget(QLabel("<b>What happens</b>"), 0, 2)
        instruments = ctx.bus.instruments() or ["rf_drive"]
        for row, (kind, (what, targets)) in enumerate(FAULTS.items(), start=1):
            button = QPushButton(kind.replace("_", " "))
            button.setMinimumWidth(200)
            button.clicked.connect(lambda _=False, k=kind: self.inject(k))
            self.buttons[kind] = button
            combo = QComboBox()
            choices = list(ctx.facts.fault_targets.get(kind, []))
            choices = choices or (instruments if kind in INSTRUMENT_FAULTS else targets)
            if choices:
                combo.addItems(choices)
            else:
                combo.addItem("—")
                combo.setEnabled(False)
            self.targets[kind] = combo
            label = QLabel(what)
            label.setStyleSheet(f"color: {DIM_TEXT};")
            grid.addWidget(button, row, 0)
            grid.addWidget(combo, row, 1)
            grid.addWidget(label, row, 2)
        row = len(FAULTS) + 1
        restore = QPushButton("restore")
        restore.setMinimumWidth(200)
        restore.clicked.connect(lambda: self.inject("restore"))
        self.buttons["restore"] = restore
        combo = QComboBox()
        combo.addItems(list(dict.fromkeys([*RESTORE_TARGETS, *instruments])))
        self.targets["restore"] = combo
        grid.addWidget(restore, row, 0)
        grid.addWidget(combo, row, 1)
        grid.addWidget(QLabel("put the named part right again"), row, 2)
        grid.setColumnStretch(2, 1)

        self.reply_label = QLabel("")
        self.reply_label.setWordWrap(True)
        self.reply_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.history = QListWidget()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 12, 12, 12)
        layout.addWidget(self.banner)
        layout.addWidget(box)
        layout.addWidget(self.reply_label)
        layout.addWidget(QLabel("Injected from this console"))
        layout.addWidget(self.history, 1)

    def refresh(self) -> None:
        served = self.ctx.bus.serves("sim")
        alive = self.ctx.store.beat_age("sim") <= self.ctx.bus.stale_after
        if not self.ctx.facts.simulated or not served:
            text, sev = "This lab is not simulated: faults cannot be injected.", "MAJOR"
        elif alive:
            text, sev = (
                "SIMULATED LAB — faults act on the physics and the instruments at once.",
                "MINOR",
            )
        else:
            text, sev = "The simulated lab sends no heartbeat: it may not be running.", "MAJOR"
        self.banner.setText(text)
        self.banner.setStyleSheet(
            f"color: {severity_colour(sev)}; font-size: 13pt; font-weight: bold;"
        )
        for button in self.buttons.values():
            button.setEnabled(served and self.ctx.facts.simulated)

    def inject(self, kind: str) -> None:
        combo = self.targets.get(kind)
        target = combo.currentText() if combo is not None and combo.isEnabled() else ""
        args: dict[str, str] = {"name": "restore" if kind == "restore" else "fault"}
        if kind != "restore":
            args["kind"] = kind
        if target and target != "all":
            args["target"] = target
        self.reply_label.setText(f"sending {kind} {target} …")
        self.ctx.bus.request("sim", "call", dict(args), lambda r: self._on_reply(kind, target, r))

    def _on_reply(self, kind: str, target: str, reply: Reply) -> None:
        self.replies.append(reply)
        when = time.strftime("%H:%M:%S")
        if reply.ok:
            result = (
                reply.value.get("result", reply.value)
                if isinstance(reply.value, dict)
                else reply.value
            )
            text = f"{when}  {kind} {target}: {result}"
            self.reply_label.setStyleSheet(f"color: {severity_colour('OK')};")
        else:
            text = f"{when}  {kind} {target} refused — {describe_reply(reply)}"
            self.reply_label.setStyleSheet(f"color: {severity_colour('MAJOR')};")
        self.reply_label.setText(text)
        self.history.insertItem(0, text)
