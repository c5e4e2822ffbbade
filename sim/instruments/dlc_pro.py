"""Toptica DLC pro command line (port 1998): Scheme-like param-ref/param-set! with a `> `
prompt after every reply (PROTOCOLS.md §6). One controller per laser."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..world import World
from .base import GARBAGE, Protocol

BANNER = "DeCoF Command Line"
PROMPT = "> "
_FORM = re.compile(
    r"""^\(\s*(param-ref|param-set!)\s+(?:'([\w:\-]+)|"([\w:\-]+)")\s*(.*?)\s*\)$""", re.DOTALL
)


class DlcError(Exception):
    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"Error: {code} {text}")


@dataclass(frozen=True)
class _Param:
    kind: str  # "float", "bool", "int", "str"
    writable: bool
    minimum: float = 0.0
    maximum: float = 0.0


PARAMS: dict[str, _Param] = {
    "laser1:dl:cc:current-set": _Param("float", True, 0.0, 250.0),
    "laser1:dl:cc:current-act": _Param("float", False),
    "laser1:dl:cc:enabled": _Param("bool", True),
    "laser1:emission": _Param("bool", False),
    "laser1:dl:pc:voltage-set": _Param("float", True, 0.0, 140.0),
    "laser1:dl:pc:voltage-act": _Param("float", False),
    "laser1:dl:lock:lock-enabled": _Param("bool", True),
    "laser1:dl:lock:state": _Param("int", False),
    "serial-number": _Param("str", False),
    "system-type": _Param("str", False),
    "uptime": _Param("int", False),
}


def _format(value: object) -> str:
    if isinstance(value, bool):
        return "#t" if value else "#f"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.6f}"
    return f'"{value}"'


class DlcPro(Protocol):
    """One DLC pro; `laser` is the world's laser key ('369', '935', '399', '435')."""

    def __init__(self, world: World, name: str, laser: str) -> None:
        super().__init__(world, name)
        self.laser = laser

    def banner(self) -> bytes:
        return f"{BANNER}\n{PROMPT}".encode("ascii")

    def garbage(self) -> bytes:
        return f"{GARBAGE}\n{PROMPT}".encode("latin-1")

    def handle(self, line: str) -> bytes | None:
        line = line.strip()
        if not line:
            return PROMPT.encode("ascii")
        try:
            reply = self._evaluate(line)
        except DlcError as err:
            reply = str(err)
        return f"{reply}\n{PROMPT}".encode("ascii")

    def _evaluate(self, line: str) -> str:
        m = _FORM.match(line)
        if not m:
            raise DlcError(1, "syntax error")
        verb, quoted, string, rest = m.groups()
        name = quoted or string
        param = PARAMS.get(name)
        if param is None:
            raise DlcError(2, f"unknown parameter '{name}'")
        if verb == "param-ref":
            if rest:
                raise DlcError(1, "syntax error")
            return _format(self._get(name))
        if not param.writable:
            raise DlcError(4, "parameter is read-only")
        self._set(name, param, rest)
        return "0"

    def _get(self, name: str) -> object:
        w = self.world
        w.ions_present()  # bring the world to now
        laser = w.lasers[self.laser]
        if name == "laser1:dl:cc:current-set":
            return laser.current_a * 1e3
        if name == "laser1:dl:cc:current-act":
            return laser.current_a * 1e3 + w.normal() * 1e-3 if laser.enabled else 0.0
        if name in ("laser1:dl:cc:enabled", "laser1:emission"):
            return laser.emitting if name == "laser1:emission" else laser.enabled
        if name == "laser1:dl:pc:voltage-set":
            return laser.piezo_v
        if name == "laser1:dl:pc:voltage-act":
            return laser.piezo_v + w.normal() * 1e-3
        if name == "laser1:dl:lock:lock-enabled":
            return w.cavity_lock_enabled if self.laser == "435" else False
        if name == "laser1:dl:lock:state":
            return w.cavity_state if self.laser == "435" else 0
        if name == "serial-number":
            return f"DLCPRO_000{self.laser}"
        if name == "system-type":
            return "DLCpro"
        return int(w.now())

    def _set(self, name: str, param: _Param, text: str) -> None:
        if param.kind == "bool":
            if text not in ("#t", "#f"):
                raise DlcError(5, "wrong type")
            value = text == "#t"
            if name == "laser1:dl:cc:enabled":
                self.world.set_laser(self.laser, enabled=value)
            elif self.laser == "435":
                self.world.set_cavity_lock(value)
            return
        try:
            number = float(text)
        except ValueError:
            raise DlcError(5, "wrong type") from None
        if not param.minimum <= number <= param.maximum:
            raise DlcError(3, "value out of range")
        if name == "laser1:dl:cc:current-set":
            self.world.set_laser(self.laser, current_a=number * 1e-3)
        else:
            self.world.set_laser(self.laser, piezo_v=number)
