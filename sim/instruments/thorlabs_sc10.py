"""Thorlabs SC10 shutter controller: its serial command set (CR-terminated commands, each
echoed, a value line for queries, then the `> ` prompt) over a TCP socket for pyserial's
socket:// (PROTOCOLS.md §7).

Operating modes run on world time: manual (the enable key opens and closes), auto (open for
`open` ms, closed for `shut` ms, over and over), single (one open period), repeat (`rep`
periods) and external gate (follows the gate input, unconnected here, so closed). The beam in
the world follows the shutter at every exchange; in manual mode, which the lab uses, exactly."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

from ..world import World
from .base import GARBAGE, Protocol

IDN = "THORLABS SC10 VERSION 1.07"
NOT_DEFINED = "CMD_NOT_DEFINED"
ARG_INVALID = "CMD_ARG_INVALID"
MANUAL, AUTO, SINGLE, REPEAT, EXTERNAL_GATE = 1, 2, 3, 4, 5


@dataclass(frozen=True)
class Settings:
    """What `savp` stores and `resp` loads (mode, times, repeat count, triggers) plus what
    `save` stores (baud rate and trigger-out mode). Factory values."""

    mode: int = MANUAL
    rep: int = 1
    open_ms: int = 10
    shut_ms: int = 10
    trig: int = 0  # 0 internal, 1 external trigger
    xto: int = 0  # 0 trigger out follows the shutter, 1 follows the controller
    baud: int = 0  # 0: 9600, 1: 115200


# query -> attribute, setting -> (attribute, smallest, largest) (manual §"Commands")
_QUERIES = {"mode?": "mode", "rep?": "rep", "open?": "open_ms", "shut?": "shut_ms",
            "trig?": "trig", "xto?": "xto", "baud?": "baud"}  # fmt: skip
_SETTINGS = {"mode": ("mode", 1, 5), "rep": ("rep", 1, 99), "open": ("open_ms", 0, 999_999),
             "shut": ("shut_ms", 0, 999_999), "trig": ("trig", 0, 1), "xto": ("xto", 0, 1),
             "baud": ("baud", 0, 1)}  # fmt: skip
HELP = (
    "?: list commands", "id?: model and firmware", "ens: toggle enable", "ens?: enable state",
    "rep=n / rep?: repeat count 1..99", "mode=n / mode?: 1 manual, 2 auto, 3 single, "
    "4 repeat, 5 external gate", "trig=n / trig?: 0 internal, 1 external trigger",
    "xto=n / xto?: 0 trigger out follows shutter, 1 follows controller",
    "open=n / open?: open time (ms)", "shut=n / shut?: shut time (ms)",
    "closed?: 1 closed, 0 open", "interlock?: 1 tripped", "baud=n / baud?: 0 9600, 1 115200",
    "save: store baud and trigger-out mode", "savp: store settings", "resp: load settings",
)  # fmt: skip


class Sc10(Protocol):
    separator = b"\r"
    max_clients = 1  # a serial port

    def __init__(self, world: World, name: str, shutter: str) -> None:
        super().__init__(world, name)
        self.shutter = shutter
        self.settings = Settings()
        self.stored = Settings()  # the EEPROM
        self.enabled = world.shutters[shutter]  # the lab is found as it was left
        self.enabled_at = 0.0  # world time of the last enable (start of a timed sequence)

    @property
    def mode(self) -> int:
        return self.settings.mode

    def garbage(self) -> bytes:
        return f"{GARBAGE}\r> ".encode("latin-1")

    def handle(self, line: str) -> bytes | None:
        command = line.strip("\n").strip()
        if not command:
            return b"\r> "
        lines = self._evaluate(command)
        body = command + "\r" + "".join(text + "\r" for text in lines) + "> "
        return body.encode("ascii", errors="replace")

    # ---- the shutter in world time -------------------------------------------------------

    def _open_now(self) -> bool:
        """Where the shutter is now; ends a finished single/repeat sequence (enable off)."""
        s = self.settings
        if s.mode == MANUAL:
            return self.enabled
        if not self.enabled or s.mode == EXTERNAL_GATE or s.trig == 1:
            return False  # no gate and no external trigger are connected in the lab
        period = (s.open_ms + s.shut_ms) * 1e-3
        elapsed = self.world.now() - self.enabled_at
        # single: one open period; repeat: `rep` open/shut periods; then enable drops
        sequence_s = {SINGLE: s.open_ms * 1e-3, REPEAT: s.rep * period}.get(s.mode)
        if sequence_s is not None and elapsed >= sequence_s:
            self.enabled = False
            return False
        if period <= 0:
            return False
        return (elapsed % period) < s.open_ms * 1e-3

    def _sync(self) -> bool:
        """Bring controller and beam together; returns whether the shutter is open."""
        if self.settings.mode == MANUAL:
            self.enabled = self.world.shutters[self.shutter]
            return self.enabled
        is_open = self._open_now()
        if self.world.shutters[self.shutter] != is_open:
            self.world.set_shutter(self.shutter, is_open)
        return is_open

    def _set_enabled(self, on: bool) -> None:
        self.enabled = on
        self.enabled_at = self.world.now()
        if self.settings.mode == MANUAL:
            self.world.set_shutter(self.shutter, on)
        else:
            self._sync()

    # ---- commands ----------------------------------------------------------------------

    def _evaluate(self, command: str) -> list[str]:
        word = command.lower()
        is_open = self._sync()
        if word == "id?":
            return [IDN]
        if word == "?":
            return list(HELP)
        if word == "ens?":
            return ["1" if self.enabled else "0"]
        if word == "ens":
            self._set_enabled(not self.enabled)
            return []
        if word == "closed?":
            return ["0" if is_open else "1"]
        if word == "interlock?":
            return ["0"]  # the interlock loop is closed in the lab
        if word in _QUERIES:
            return [str(getattr(self.settings, _QUERIES[word]))]
        if word == "savp":
            self.stored = replace(self.settings, baud=self.stored.baud, xto=self.stored.xto)
            return []
        if word == "save":
            self.stored = replace(self.stored, baud=self.settings.baud, xto=self.settings.xto)
            return []
        if word == "resp":
            self._apply(replace(self.stored, baud=self.settings.baud))
            return []
        if word == "default":
            self._apply(replace(Settings(), baud=self.settings.baud))
            return []
        name, eq, arg = word.partition("=")
        if eq and name in _SETTINGS:
            return self._setting(name, arg)
        return [NOT_DEFINED]

    def _setting(self, name: str, arg: str) -> list[str]:
        attribute, low, high = _SETTINGS[name]
        if not arg.isdigit() or len(arg) > 6:
            return [ARG_INVALID]
        value = int(arg)
        if not low <= value <= high:
            return [ARG_INVALID]
        self._apply(Settings(**{**asdict(self.settings), attribute: value}))
        return []

    def _apply(self, settings: Settings) -> None:
        was_manual = self.settings.mode == MANUAL
        self.settings = settings
        if settings.mode == MANUAL and not was_manual:
            self.world.set_shutter(self.shutter, self.enabled)
        elif settings.mode != MANUAL and was_manual:
            self.enabled_at = self.world.now()
        self._sync()
