"""OpenPulse calibrations (`defcalgrammar "openpulse"`) on the device's own ports and frames.

The bodies of `cal { }` and `defcal` are parsed by the reference OpenPulse parser (`openpulse`).
Ports are the device's channels (`port raman_addr_0;`); the device predefines one frame per ion,
`q<i>` on its addressed beam at the AOM centre frequency, and `newframe(port, frequency, phase)`
makes more. A `defcal` on physical qubits replaces the native pulses of that gate on those ions:
`play(frame, constant(duration, amplitude))`, `shift_phase(frame, angle)`, `set_phase`,
`set_frequency(frame, hz)`, `shift_frequency` and `delay[duration] frame;` become pulse-schedule
events (the scheduler times them, the validator checks them like any other pulse). A
`defcal measure $i -> bit { return capture(frame, duration); }` with a frame on the detection
port sets the length of that ion's detection window. A port, frame or waveform the device does
not have is refused by name with what it does have.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from openqasm3 import ast

from ionpilot.sequencer.circuit import Operation
from ionpilot.sequencer.errors import QasmError
from ionpilot.sequencer.settings import DeviceSettings

if TYPE_CHECKING:
    from ionpilot.sequencer.qasm_program import ProgramFrontend

WAVEFORMS = ("constant",)


@dataclass
class Frame:
    """A frame: the port (channel) it drives, its frequency and accumulated phase."""

    port: str
    frequency_hz: float
    phase_rad: float
    ion: int | None


@dataclass
class _Defcal:
    name: str
    params: list[str]
    qubits: tuple[int, ...]
    body: list[Any]
    line: int
    window: float | None = None


class CalibrationSet:
    """Ports, frames and gate calibrations declared by one program."""

    def __init__(self, device: DeviceSettings) -> None:
        self.device = device
        self.ports: set[str] = set()
        self.frames: dict[str, Frame] = {}
        for name, ch in device.channels.items():
            if ch.kind == "beam_addressed" and ch.ion is not None:
                self.frames[f"q{ch.ion}"] = Frame(name, ch.aom_center_frequency, 0.0, ch.ion)
            if ch.kind == "detection":
                self.frames["detect"] = Frame(name, 0.0, 0.0, None)
        self.defcals: dict[tuple[str, tuple[int, ...]], _Defcal] = {}

    def _parse(self, stmt: Any) -> list[Any]:
        from openpulse.parser import OpenPulseParsingError, parse_openpulse

        line0 = stmt.span.start_line if stmt.span else 0
        try:
            block = parse_openpulse(
                stmt.body, in_defcal=isinstance(stmt, ast.CalibrationDefinition), permissive=False
            )
        except OpenPulseParsingError as exc:
            raise QasmError(f"calibration: {exc}", line0, 1) from None
        for s in block.body:
            _shift(s, line0 - 1)
        return list(block.body)

    def add(self, stmt: Any, fe: ProgramFrontend) -> None:
        """Take in a `cal` block or a `defcal`."""
        if isinstance(stmt, ast.CalibrationStatement):
            for s in self._parse(stmt):
                self.declaration(s, fe)
            return
        qubits = []
        for q in stmt.qubits:
            name = q.name
            if not (name.startswith("$") and name[1:].isdigit()):
                ions = self.device.ions
                raise _err(
                    q,
                    f"defcal {stmt.name.name} ${name}: a calibration for any physical qubit is "
                    "not offered by this device (its frames belong to one ion each); write "
                    f"one defcal per ion, $0 to ${ions - 1}",
                )
            qubits.append(int(name[1:]))
        body = self._parse(stmt)
        params = []
        for a in stmt.arguments:
            params.append(a.name.name if isinstance(a, ast.ClassicalArgument) else "")
        key = (stmt.name.name, tuple(qubits))
        cal = _Defcal(stmt.name.name, params, tuple(qubits), body, stmt.span.start_line)
        if cal.name == "measure":
            cal.window = self.measure_window(cal, fe)
        self.defcals[key] = cal

    def measure_window(self, cal: _Defcal, fe: ProgramFrontend) -> float:
        """`defcal measure $i -> bit { return capture(frame, duration); }`: the window length."""
        body = cal.body
        stmt = body[-1] if body else None
        call = getattr(stmt, "expression", None)
        if (
            len(body) != 1
            or not isinstance(stmt, ast.ReturnStatement)
            or not isinstance(call, ast.FunctionCall)
            or call.name.name != "capture"
        ):
            raise QasmError(
                "defcal measure: the device measures with one detection window, written "
                "`return capture(frame, duration);` on a frame of its detection port",
                cal.line,
                1,
            )
        frame = self.frame(call.arguments[0])
        if frame.port != self.device.detection_channel:
            raise _err(
                call,
                f"capture on a frame of port '{frame.port}': the device captures on its "
                f"detection port '{self.device.detection_channel}' (frame 'detect', or one made "
                "there with newframe)",
            )
        if len(call.arguments) != 2:
            raise _err(call, "capture(frame, duration) takes a frame and a duration")
        return self.number(call.arguments[1], fe, {})

    def declaration(self, s: Any, fe: ProgramFrontend) -> None:
        from openpulse import ast as pulse_ast

        if isinstance(s, ast.ClassicalDeclaration) and isinstance(s.type, pulse_ast.PortType):
            self.check_port(s.identifier.name, s)
            self.ports.add(s.identifier.name)
            return
        if isinstance(s, ast.ClassicalDeclaration) and isinstance(s.type, pulse_ast.FrameType):
            init = s.init_expression
            if not isinstance(init, ast.FunctionCall) or init.name.name != "newframe":
                raise _err(s, "a frame is made with newframe(port, frequency, phase)")
            port = init.arguments[0]
            if not isinstance(port, ast.Identifier):
                raise _err(s, "newframe needs a port name")
            self.check_port(port.name, port)
            freq = self.number(init.arguments[1], fe, {})
            phase = self.number(init.arguments[2], fe, {}) if len(init.arguments) > 2 else 0.0
            ch = self.device.channels[port.name]
            self.frames[s.identifier.name] = Frame(port.name, freq, phase, ch.ion)
            return
        raise _err(s, "a cal block here may declare ports and frames only")

    def check_port(self, name: str, node: Any) -> None:
        if name not in self.device.channels:
            raise _err(
                node,
                f"port '{name}' is not one of the device's ports "
                f"({', '.join(self.device.channels)})",
            )

    def number(self, node: Any, fe: ProgramFrontend, args: dict[str, float]) -> float:
        from ionpilot.sequencer.qasm_program import _Env, _Var
        from ionpilot.sequencer.timing import Linear

        env = _Env(parent=fe.globals)
        for k, v in args.items():
            env.vars[k] = _Var("float", None, v, True)
        value = fe.eval(node, env)
        if isinstance(value, Linear):
            return value.seconds
        return float(value)

    def lookup(
        self,
        name: str,
        operands: list[list[int]],
        values: list[Any],
        fe: ProgramFrontend,
        node: Any,
    ) -> Operation | None:
        """The calibrated pulses of gate `name` on these qubits, if a defcal covers them."""
        if not self.defcals or any(len(o) != 1 for o in operands):
            return None
        key = (name, tuple(o[0] for o in operands))
        cal = self.defcals.get(key)
        if cal is None:
            return None
        if fe.condition is not True:
            raise _err(node, "a calibrated gate cannot run inside a branch on a measurement result")
        args = {p: float(v) for p, v in zip(cal.params, values, strict=False) if p}
        payload: list[tuple[Any, ...]] = []
        for s in cal.body:
            payload.append(self.instruction(s, fe, args))
        return Operation("cal", cal.qubits, line=cal.line, payload=tuple(payload))

    def capture_window(self, qubit: int) -> float | None:
        """The detection window a `defcal measure $qubit` sets, if the program has one."""
        cal = self.defcals.get(("measure", (qubit,)))
        return None if cal is None else cal.window

    def frame(self, node: Any) -> Frame:
        if not isinstance(node, ast.Identifier) or node.name not in self.frames:
            got = getattr(node, "name", type(node).__name__)
            raise _err(
                node,
                f"frame '{got}' is not defined; the device's frames are "
                f"{', '.join(sorted(self.frames))} (or make one with newframe on a device port)",
            )
        return self.frames[node.name]

    def instruction(self, s: Any, fe: ProgramFrontend, args: dict[str, float]) -> tuple[Any, ...]:
        if isinstance(s, ast.DelayInstruction):
            if len(s.qubits) != 1:
                raise _err(s, "delay in a calibration takes one frame")
            frame = self.frame(s.qubits[0])
            return ("delay", frame.port, self.number(s.duration, fe, args), frame.ion)
        if not isinstance(s, ast.ExpressionStatement) or not isinstance(
            s.expression, ast.FunctionCall
        ):
            raise _err(
                s,
                "a calibration body may play, shift_phase, set_phase, set_frequency, "
                "shift_frequency and delay",
            )
        call = s.expression
        fn = call.name.name
        if fn == "play":
            frame = self.frame(call.arguments[0])
            wave = call.arguments[1]
            if not isinstance(wave, ast.FunctionCall) or wave.name.name not in WAVEFORMS:
                got = wave.name.name if isinstance(wave, ast.FunctionCall) else _describe(wave)
                raise _err(
                    wave,
                    f"waveform '{got}' is not offered by the device (it plays: "
                    "constant(duration, amplitude))",
                )
            duration = self.number(wave.arguments[0], fe, args)
            amplitude = self.number(wave.arguments[1], fe, args)
            return (
                "play",
                frame.port,
                frame.frequency_hz,
                frame.phase_rad,
                duration,
                amplitude,
                frame.ion,
            )
        if fn in ("shift_phase", "set_phase", "set_frequency", "shift_frequency"):
            frame = self.frame(call.arguments[0])
            value = self.number(call.arguments[1], fe, args)
            if fn == "shift_phase":
                frame.phase_rad = math.remainder(frame.phase_rad + value, 2 * math.pi)
            elif fn == "set_phase":
                frame.phase_rad = value
            elif fn == "set_frequency":
                frame.frequency_hz = value
            else:
                frame.frequency_hz += value
            return ("frame", frame.port)
        if fn == "capture":
            raise _err(
                call,
                "capture is offered only as the body of `defcal measure $i -> bit { return "
                "capture(frame, duration); }` (the device's detection window)",
            )
        raise _err(
            call,
            f"'{fn}' is not an OpenPulse instruction the device offers (play, "
            "shift_phase, set_phase, set_frequency, shift_frequency, delay)",
        )


def _describe(node: Any) -> str:
    return type(node).__name__


def _err(node: Any, message: str) -> QasmError:
    span = getattr(node, "span", None)
    if span is None:
        return QasmError(message)
    return QasmError(message, span.start_line, span.start_column + 1)


def _shift(node: Any, lines: int) -> None:
    """Move the spans of a calibration body (parsed on its own) to the program's lines."""
    seen: set[int] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        span = getattr(n, "span", None)
        if span is not None:
            span.start_line += lines
            span.end_line += lines
        for value in getattr(n, "__dict__", {}).values():
            if isinstance(value, list):
                stack.extend(v for v in value if hasattr(v, "__dict__"))
            elif hasattr(value, "__dict__") and not isinstance(value, type):
                stack.append(value)
