"""Colours, fonts and number formatting shared by every panel.

A dark theme (laser labs are dim) with EPICS severity colours: OK green, MINOR amber, MAJOR red,
INVALID magenta; grey for "nothing known". Numbers keep their SI unit and an engineering prefix.
"""

from __future__ import annotations

import math
from typing import Any

from PyQt6.QtGui import QColor, QFont, QPalette
from PyQt6.QtWidgets import QApplication, QLabel, QWidget

SEVERITY_COLOURS = {
    "OK": "#2e9d4a",
    "MINOR": "#e0a800",
    "MAJOR": "#d63a3a",
    "INVALID": "#b03ac8",
}
UNKNOWN_COLOUR = "#5b6270"
LOCK_COLOURS = {
    "locked": SEVERITY_COLOURS["OK"],
    "acquiring": SEVERITY_COLOURS["MINOR"],
    "holdover": SEVERITY_COLOURS["MINOR"],
    "unlocked": SEVERITY_COLOURS["MAJOR"],
}
BACKGROUND = "#1c1f26"
PANEL = "#252a33"
TEXT = "#e8eaf0"
DIM_TEXT = "#a7adba"
DARK_TEXT = "#111318"  # on light fills (amber, grey)
TRACE_COLOURS = [
    "#4fc3f7",
    "#ffb74d",
    "#81c784",
    "#f06292",
    "#ba68c8",
    "#fff176",
    "#4db6ac",
    "#ff8a65",
    "#90a4ae",
    "#aed581",
]
MONO = "DejaVu Sans Mono"

_PREFIXES = [(1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k"), (1.0, ""), (1e-3, "m"), (1e-6, "µ")]
_PREFIXABLE = {"Hz", "V", "A", "W", "s", "Hz/s", "V/s", "m", "Ohm", "F"}


def severity_colour(severity: str) -> str:
    return SEVERITY_COLOURS.get(severity, UNKNOWN_COLOUR)


def apply_theme(app: QApplication, point_size: int = 11) -> None:
    """Fusion style, dark palette, a legible base font."""
    app.setStyle("Fusion")
    pal = QPalette()
    roles = {
        QPalette.ColorRole.Window: BACKGROUND,
        QPalette.ColorRole.WindowText: TEXT,
        QPalette.ColorRole.Base: "#161920",
        QPalette.ColorRole.AlternateBase: PANEL,
        QPalette.ColorRole.ToolTipBase: PANEL,
        QPalette.ColorRole.ToolTipText: TEXT,
        QPalette.ColorRole.Text: TEXT,
        QPalette.ColorRole.Button: PANEL,
        QPalette.ColorRole.ButtonText: TEXT,
        QPalette.ColorRole.Highlight: "#2f6db5",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.PlaceholderText: DIM_TEXT,
    }
    for role, colour in roles.items():
        pal.setColor(role, QColor(colour))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor(DIM_TEXT))
    pal.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor(DIM_TEXT))
    app.setPalette(pal)
    font = QFont("DejaVu Sans", point_size)
    app.setFont(font)
    app.setStyleSheet(
        "QCheckBox::indicator, QListView::indicator, QTreeView::indicator {"
        f" width: 14px; height: 14px; border: 1px solid {DIM_TEXT}; background: #161920; }}"
        "QCheckBox::indicator:checked, QListView::indicator:checked {"
        " background: #2f6db5; image: none; }"
        f"QTabBar::tab {{ padding: 6px 14px; }} QTabBar::tab:selected {{ background: {PANEL};"
        " font-weight: bold; border-bottom: 3px solid #2f6db5; }"
    )


def big_font(point_size: int, bold: bool = True) -> QFont:
    font = QFont("DejaVu Sans", point_size)
    font.setBold(bold)
    return font


def relative_luminance(colour: str) -> float:
    """WCAG relative luminance of `#rrggbb`."""
    c = QColor(colour)

    def linear(v: int) -> float:
        x = v / 255
        return x / 12.92 if x <= 0.04045 else ((x + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(c.red()) + 0.7152 * linear(c.green()) + 0.0722 * linear(c.blue())


def text_on(background: str) -> str:
    """White or near-black text, whichever contrasts more with `background` (white on amber or
    on light grey is hard to read from across the lab)."""
    lum = relative_luminance(background)
    on_white = 1.05 / (lum + 0.05)
    on_dark = (lum + 0.05) / (relative_luminance(DARK_TEXT) + 0.05)
    return "#ffffff" if on_white >= on_dark else DARK_TEXT


def badge(label: QLabel, text: str, colour: str, *, fg: str | None = None) -> None:
    """A label drawn as a coloured pill (status, severity); restyled only when it changes (a
    style sheet re-polishes the widget, and the strip refreshes several times a second)."""
    if label.text() != text:
        label.setText(text)
    style = (
        f"QLabel {{ background: {colour}; color: {fg or text_on(colour)}; border-radius: 6px;"
        " padding: 4px 10px; font-weight: bold; }"
    )
    if label.styleSheet() != style:
        label.setStyleSheet(style)


def section_title(text: str) -> QLabel:
    label = QLabel(text)
    label.setStyleSheet(f"QLabel {{ color: {DIM_TEXT}; font-weight: bold; }}")
    return label


def set_background(widget: QWidget, colour: str) -> None:
    widget.setAutoFillBackground(True)
    pal = widget.palette()
    pal.setColor(QPalette.ColorRole.Window, QColor(colour))
    widget.setPalette(pal)


# ------------------------------------------------------------------------------ formatting


def format_number(value: float, digits: int = 6) -> str:
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}"


def format_value(value: Any, unit: str = "", digits: int = 6) -> str:
    """`25.0000 MHz`, `-3.2 dBm`, `True`, `—` for nothing; maps and lists in short."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int | float):
        v = float(value)
        if unit in _PREFIXABLE and math.isfinite(v) and v != 0:
            for scale, prefix in _PREFIXES:
                if abs(v) >= scale * 0.999_999_5:
                    return f"{format_number(v / scale, digits)} {prefix}{unit}"
            return f"{v:.{digits}g} {unit}"
        text = format_number(v, digits) if isinstance(value, float) else str(value)
        return f"{text} {unit}".strip()
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {format_value(v, digits=4)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v, digits=4) for v in value[:8]) + "]"
    return str(value)


def format_age(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "never"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def format_duration(seconds: float) -> str:
    """`2 d 03:04:05` style."""
    if not math.isfinite(seconds) or seconds < 0:
        return "—"
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    core = f"{hours:02d}:{minutes:02d}:{s:02d}"
    return f"{days} d {core}" if days else core


def format_hz_grouped(value: float, decimals: int = 1) -> str:
    """An optical frequency with thin-space digit groups: `688 358 979 309 308.3 Hz`."""
    whole = f"{value:,.{decimals}f}".replace(",", "\u2009")
    return f"{whole} Hz"
