"""TOPTICA DLC pro with one laser head: the DeCoF command line (real port 1998) and the
monitoring line (real port 1999) that TOPTICA's SDK opens by default (PROTOCOLS.md §6).

The command line evaluates DeCoF expressions (decof.py) against the parameter tree below,
bound to the world's laser; the monitoring line pushes timestamped updates of subscribed
parameters. One controller per laser, as in the lab."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ..world import World
from . import decof
from .base import GARBAGE, Protocol
from .decof import DecofError, Symbol, Value

BANNER = "DeCoF Command Line"
PROMPT = "> "
FIRMWARE = "3.3.3"
CURRENT_CLIP_LIMIT_MA = 250.0
PIEZO_RANGE_V = (0.0, 140.0)
TEMPERATURE_RANGE_C = (15.0, 40.0)
NOMINAL_TEMPERATURE_C = 25.0
# User levels (DeCoP): 0 internal, 1 service, 2 maintenance, 3 normal, 4 read-only.
UL_NORMAL = 3
UL_READONLY = 4


@dataclass
class _Param:
    """One DeCoF parameter: its type, how it reads, and (if writable) how it is set."""

    kind: type
    get: Callable[[], Value]
    set: Callable[[Value], None] | None = None
    bounds: Callable[[], tuple[float, float]] | None = None


@dataclass
class Session:
    """Per-connection state: the user level and the echo switch."""

    ul: int = UL_NORMAL
    echo: bool = False


class DlcPro(Protocol):
    """One DLC pro; `laser` is the world's laser key ('369', '935', '399', '435')."""

    def __init__(self, world: World, name: str, laser: str) -> None:
        super().__init__(world, name)
        self.laser = laser
        self.current_clip_ma = CURRENT_CLIP_LIMIT_MA
        self.piezo_min_v, self.piezo_max_v = PIEZO_RANGE_V
        self.piezo_enabled = True
        self.temperature_set_c = NOMINAL_TEMPERATURE_C
        self.temperature_enabled = True
        self.system_label = f"laser {laser}"
        self.laser_label = f"{laser} nm"
        self.params = self._tree()

    # ---- the command line ----------------------------------------------------------------

    def session(self) -> Protocol:
        return CommandLine(self)

    def banner(self) -> bytes:
        return f"{BANNER}\r\n{PROMPT}".encode("ascii")

    def garbage(self) -> bytes:
        return f"{GARBAGE}\n{PROMPT}".encode("latin-1")

    def handle(self, line: str) -> bytes | None:
        return CommandLine(self).handle(line)

    # ---- parameter access (shared by both lines) -----------------------------------------

    def lookup(self, name: str) -> _Param:
        param = self.params.get(name.lower())
        if param is None:
            raise DecofError(decof.UNKNOWN_PARAMETER, f"unknown parameter '{name}'")
        return param

    def read(self, name: str) -> Value:
        return self.lookup(name).get()

    def write(self, name: str, value: Value, ul: int) -> int:
        param = self.lookup(name)
        if param.set is None:
            raise DecofError(decof.READ_ONLY, f"parameter '{name}' is read-only")
        if ul > UL_NORMAL:
            raise DecofError(decof.ACCESS_DENIED, "access denied (user level read-only)")
        checked = _coerce(param, value, name)
        if param.bounds is not None:
            low, high = param.bounds()
            assert isinstance(checked, int | float)
            if not (math.isfinite(checked) and low <= checked <= high):
                raise DecofError(
                    decof.OUT_OF_RANGE, f"value {checked:g} out of range [{low:g}, {high:g}]"
                )
        param.set(checked)
        return 0

    # ---- the tree --------------------------------------------------------------------------

    def _tree(self) -> dict[str, _Param]:
        w = self.world
        key = self.laser
        laser = w.lasers[key]

        def now_laser() -> None:
            w.ions_present()  # bring the world to now

        def current_set() -> float:
            return laser.current_a * 1e3

        def current_act() -> float:
            now_laser()
            return laser.current_a * 1e3 + w.normal() * 1e-3 if laser.enabled else 0.0

        def set_current(v: Value) -> None:
            assert isinstance(v, float)
            w.set_laser(key, current_a=v * 1e-3)

        def set_clip(v: Value) -> None:
            assert isinstance(v, float)
            self.current_clip_ma = v
            if laser.current_a * 1e3 > v:  # the clip always wins over the set point
                w.set_laser(key, current_a=v * 1e-3)

        def set_enabled(v: Value) -> None:
            w.set_laser(key, enabled=bool(v))

        def emission() -> bool:
            now_laser()
            return laser.emitting

        def set_piezo(v: Value) -> None:
            assert isinstance(v, float)
            w.set_laser(key, piezo_v=v)

        def set_piezo_min(v: Value) -> None:
            assert isinstance(v, float)
            self.piezo_min_v = v

        def set_piezo_max(v: Value) -> None:
            assert isinstance(v, float)
            self.piezo_max_v = v

        def set_piezo_enabled(v: Value) -> None:
            self.piezo_enabled = bool(v)

        def piezo_act() -> float:
            now_laser()
            return laser.piezo_v + w.normal() * 1e-3 if self.piezo_enabled else 0.0

        def set_temperature(v: Value) -> None:
            assert isinstance(v, float)
            self.temperature_set_c = v

        def set_tc_enabled(v: Value) -> None:
            self.temperature_enabled = bool(v)

        def lock_enabled() -> bool:
            now_laser()
            return w.cavity_lock_enabled if key == "435" else False

        def set_lock(v: Value) -> None:
            if key == "435":
                w.set_cavity_lock(bool(v))

        def lock_state() -> int:
            now_laser()
            return w.cavity_state if key == "435" else 0

        def set_system_label(v: Value) -> None:
            self.system_label = str(v)

        def set_laser_label(v: Value) -> None:
            self.laser_label = str(v)

        def uptime() -> int:
            return int(w.now())

        def clock_time() -> str:
            t = dt.datetime.fromtimestamp(w.unix_time(), dt.UTC)
            return t.strftime("%Y-%m-%dT%H:%M:%S")

        serial = f"DLCPRO_000{key}"
        head = "laser1:dl"
        tree: dict[str, _Param] = {
            # system
            "serial-number": _Param(str, lambda: serial),
            "system-type": _Param(str, lambda: "DLCpro"),
            "system-model": _Param(str, lambda: "DLC pro"),
            "system-label": _Param(str, lambda: self.system_label, set_system_label),
            "fw-ver": _Param(str, lambda: FIRMWARE),
            "ssw-ver": _Param(str, lambda: FIRMWARE),
            "decof-ver": _Param(str, lambda: "0.12.2"),
            "uptime": _Param(int, uptime),
            "uptime-txt": _Param(str, lambda: _uptime_text(uptime())),
            "time": _Param(str, clock_time),
            "emission": _Param(bool, emission),
            "interlock-open": _Param(bool, lambda: False),
            "frontkey-locked": _Param(bool, lambda: False),
            "system-health": _Param(int, lambda: 0),
            "system-health-txt": _Param(str, lambda: "ok"),
            # laser
            "laser1:type": _Param(str, lambda: "DL pro"),
            "laser1:product-name": _Param(str, lambda: f"DL pro {key}"),
            "laser1:label": _Param(str, lambda: self.laser_label, set_laser_label),
            "laser1:emission": _Param(bool, emission),
            "laser1:health": _Param(int, lambda: 0),
            "laser1:health-txt": _Param(str, lambda: "ok"),
            f"{head}:type": _Param(str, lambda: "DL pro"),
            f"{head}:serial-number": _Param(str, lambda: f"DLPRO_{key}"),
            # current driver
            f"{head}:cc:enabled": _Param(bool, lambda: laser.enabled, set_enabled),
            f"{head}:cc:emission": _Param(bool, emission),
            f"{head}:cc:current-set": _Param(
                float, current_set, set_current, lambda: (0.0, self.current_clip_ma)
            ),
            f"{head}:cc:current-act": _Param(float, current_act),
            f"{head}:cc:current-clip": _Param(
                float,
                lambda: self.current_clip_ma,
                set_clip,
                lambda: (0.0, CURRENT_CLIP_LIMIT_MA),
            ),
            f"{head}:cc:current-clip-limit": _Param(float, lambda: CURRENT_CLIP_LIMIT_MA),
            f"{head}:cc:current-offset": _Param(float, lambda: 0.0),
            f"{head}:cc:voltage-act": _Param(
                float, lambda: 1.8 + 1e-3 * current_set() if laser.enabled else 0.0
            ),
            f"{head}:cc:status": _Param(int, lambda: 0),
            f"{head}:cc:status-txt": _Param(str, lambda: "OK"),
            # piezo driver
            f"{head}:pc:enabled": _Param(bool, lambda: self.piezo_enabled, set_piezo_enabled),
            f"{head}:pc:voltage-set": _Param(
                float,
                lambda: laser.piezo_v,
                set_piezo,
                lambda: (self.piezo_min_v, self.piezo_max_v),
            ),
            f"{head}:pc:voltage-act": _Param(float, piezo_act),
            f"{head}:pc:voltage-min": _Param(
                float, lambda: self.piezo_min_v, set_piezo_min, lambda: (0.0, laser.piezo_v)
            ),
            f"{head}:pc:voltage-max": _Param(
                float, lambda: self.piezo_max_v, set_piezo_max, lambda: (laser.piezo_v, 140.0)
            ),
            f"{head}:pc:status": _Param(int, lambda: 0),
            f"{head}:pc:status-txt": _Param(str, lambda: "OK"),
            # temperature controller
            f"{head}:tc:enabled": _Param(bool, lambda: self.temperature_enabled, set_tc_enabled),
            f"{head}:tc:temp-set": _Param(
                float, lambda: self.temperature_set_c, set_temperature, lambda: TEMPERATURE_RANGE_C
            ),
            f"{head}:tc:temp-act": _Param(float, lambda: self.temperature_set_c),
            f"{head}:tc:ready": _Param(bool, lambda: self.temperature_enabled),
            f"{head}:tc:temp-set-min": _Param(float, lambda: TEMPERATURE_RANGE_C[0]),
            f"{head}:tc:temp-set-max": _Param(float, lambda: TEMPERATURE_RANGE_C[1]),
            # cavity lock (only laser_435 has a cavity)
            f"{head}:lock:lock-enabled": _Param(bool, lock_enabled, set_lock),
            f"{head}:lock:state": _Param(int, lock_state),
            f"{head}:lock:state-txt": _Param(
                str, lambda: ("not locked", "locking", "locked")[lock_state()]
            ),
        }
        return tree


def _uptime_text(seconds: int) -> str:
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


def _coerce(param: _Param, value: Value, name: str) -> Value:
    """The value as the parameter's type; integers are accepted for reals."""
    kind = param.kind
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is str and isinstance(value, str):
        return value
    raise DecofError(
        decof.WRONG_TYPE,
        f"wrong type for '{name}': expected {kind.__name__}, got {decof.show(value)}",
    )


class CommandLine(Protocol, decof.Commands):
    """One command-line connection: prompt, per-connection user level and echo."""

    def __init__(self, device: DlcPro) -> None:
        super().__init__(device.world, device.name)
        self.device = device
        self.state = Session()

    def banner(self) -> bytes:
        return self.device.banner()

    def garbage(self) -> bytes:
        return self.device.garbage()

    def handle(self, line: str) -> bytes | None:
        text = line.strip()
        if not text:
            return PROMPT.encode("ascii")
        try:
            reply = decof.show(decof.evaluate(decof.read(text), self))
        except DecofError as err:
            reply = str(err)
        echo = text + "\n" if self.state.echo else ""
        return f"{echo}{reply}\n{PROMPT}".encode("utf-8", errors="replace")

    # decof.Commands
    def param_ref(self, name: str) -> Value:
        if name.lower() == "ul":
            return self.state.ul
        if name.lower() == "echo":
            return self.state.echo
        return self.device.read(name)

    def param_gsv(self, name: str) -> Value:
        return self.param_ref(name)

    def param_set(self, name: str, value: Value) -> int:
        if name.lower() == "echo":
            if not isinstance(value, bool):
                raise DecofError(decof.WRONG_TYPE, "wrong type for 'echo': expected bool")
            self.state.echo = value
            return 0
        if name.lower() == "ul":
            raise DecofError(decof.READ_ONLY, "parameter 'ul' is set by (exec 'change-ul ...)")
        return self.device.write(name, value, self.state.ul)

    def exec(self, name: str, args: list[Value]) -> Value:
        if name.lower() == "change-ul":
            self.state.ul = change_ul(self.state.ul, args)
            return self.state.ul
        raise DecofError(decof.UNKNOWN_COMMAND, f"unknown command '{name}'")


def change_ul(current: int, args: list[Value]) -> int:
    """`change-ul <level> "<password>"`: normal and read-only need no password; the others
    keep the present level (the sim knows no passwords), as a wrong password does."""
    if not args or isinstance(args[0], bool) or not isinstance(args[0], int):
        raise DecofError(decof.WRONG_TYPE, "change-ul takes a user level 0..4")
    level = args[0]
    if not 0 <= level <= UL_READONLY:
        raise DecofError(decof.OUT_OF_RANGE, f"user level {level} out of range [0, 4]")
    return level if level >= UL_NORMAL else current


# ---- the monitoring line -------------------------------------------------------------------

DEFAULT_INTERVAL_MS = 100


@dataclass
class _Subscription:
    interval_s: float
    threshold: float | None
    last: Value | None = None
    sent_at: float = -math.inf


@dataclass
class Monitor:
    """One monitoring-line connection: `(add 'name [interval-ms [threshold]])`,
    `(remove 'name)`, `(change-ul level "password")`; updates go out as
    `(<UTC time> 'name value)` lines, errors as `(Error: <code> (<time> 'name) <text>)`."""

    device: DlcPro
    subscriptions: dict[str, _Subscription] = field(default_factory=dict)
    ul: int = UL_NORMAL

    def stamp(self) -> str:
        t = dt.datetime.fromtimestamp(self.device.world.unix_time(), dt.UTC)
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"

    def handle(self, line: str) -> list[str]:
        """One request line -> the lines to send at once."""
        text = line.strip()
        if not text:
            return []
        name = "COMMAND_ERROR"
        try:
            expr = decof.read(text)
            if not isinstance(expr, list) or not expr or not isinstance(expr[0], Symbol):
                raise decof.syntax_error("expected (add 'name ...) or (remove 'name)")
            op = expr[0].name.lower()
            args = [decof.evaluate(a, decof.Commands()) for a in expr[1:]]
            if op == "change-ul":
                self.ul = change_ul(self.ul, args)
                return [f"({self.stamp()} 'ul {self.ul})"]
            name = _symbol_name(args[0] if args else None)
            if op in ("add", "subscribe"):
                return self._add(name, args[1:])
            if op in ("remove", "unsubscribe"):
                self.device.lookup(name)
                self.subscriptions.pop(name.lower(), None)
                return []
            raise DecofError(decof.UNKNOWN_COMMAND, f"unknown command {op}")
        except DecofError as err:
            return [f"(Error: {err.code} ({self.stamp()} '{name}) {err.text})"]

    def _add(self, name: str, args: list[Value]) -> list[str]:
        self.device.lookup(name)
        interval_ms: Value = args[0] if args else DEFAULT_INTERVAL_MS
        if isinstance(interval_ms, bool) or not isinstance(interval_ms, int | float):
            raise DecofError(decof.WRONG_TYPE, "interval must be a number of milliseconds")
        threshold = args[1] if len(args) > 1 else None
        if threshold is not None and (
            isinstance(threshold, bool) or not isinstance(threshold, int | float)
        ):
            raise DecofError(decof.WRONG_TYPE, "threshold must be a number")
        sub = _Subscription(max(float(interval_ms), 1.0) * 1e-3, threshold)
        self.subscriptions[name.lower()] = sub
        return self._emit(name.lower(), sub, force=True)

    def updates(self, now_s: float) -> list[str]:
        """Lines for every subscription whose value changed (beyond its threshold) and whose
        interval has passed since its last update; `now_s` is wall time."""
        out: list[str] = []
        for name, sub in list(self.subscriptions.items()):
            if now_s - sub.sent_at < sub.interval_s:
                continue
            out += self._emit(name, sub, now_s=now_s)
        return out

    def _emit(
        self, name: str, sub: _Subscription, force: bool = False, now_s: float | None = None
    ) -> list[str]:
        value = self.device.read(name)
        if not force and not _changed(sub.last, value, sub.threshold):
            return []
        sub.last = value
        if now_s is not None:
            sub.sent_at = now_s
        return [f"({self.stamp()} '{name} {decof.show(value)})"]


def _symbol_name(value: Value | None) -> str:
    if isinstance(value, Symbol):
        return value.name
    if isinstance(value, str):
        return value
    raise decof.syntax_error("expected a quoted parameter name")


def _changed(last: Value | None, value: Value, threshold: float | None) -> bool:
    if last is None:
        return True
    if (
        threshold is not None
        and isinstance(value, int | float)
        and isinstance(last, int | float)
        and not isinstance(value, bool)
    ):
        return abs(value - last) >= threshold
    return value != last
