"""OpenQASM 3 and 2 to the circuit IR.

`openqasm3.parse` gives a syntax tree (it also reads OpenQASM 2 syntax: `qreg`, `creg`,
`measure q -> c`); this module walks it: registers, the builtins `U` and `gphase` (and `CX` in
OpenQASM 2), the gates of stdgates.inc as library gates, the original qelib1.inc as gate
definitions over `U` and `CX` (exactly as the file), user gate definitions with parameters,
`inv @`, `pow(k) @` and `ctrl @` where the controlled gate is expressible, `measure`, `reset`,
`barrier`, constants and `for` loops over constant ranges. Anything else is a `QasmError` with the
line and column of the construct, raised before anything runs.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import openqasm3
from openqasm3 import ast

from ionpilot.sequencer.circuit import Circuit, Operation
from ionpilot.sequencer.errors import QasmError
from ionpilot.sequencer.gates import (
    IR_GATES,
    STD_GATES,
    Mat2,
    dagger,
    is_single,
    mul,
    scale,
    single_matrix,
    u_params,
)
from ionpilot.sequencer.settings import DeviceSettings

MAX_OPERATIONS = 2_000_000
MAX_GATE_DEPTH = 64

# The original OpenQASM 2 header (Cross et al. 2017, openqasm/openqasm examples), verbatim in
# content. Gates after the marker are the extensions later qelib1.inc files added (as in Qiskit's);
# a user definition of one of those names replaces it.
QELIB1_INC = """
gate u3(theta,phi,lambda) q { U(theta,phi,lambda) q; }
gate u2(phi,lambda) q { U(pi/2,phi,lambda) q; }
gate u1(lambda) q { U(0,0,lambda) q; }
gate cx c,t { CX c,t; }
gate id a { U(0,0,0) a; }
gate x a { u3(pi,0,pi) a; }
gate y a { u3(pi,pi/2,pi/2) a; }
gate z a { u1(pi) a; }
gate h a { u2(0,pi) a; }
gate s a { u1(pi/2) a; }
gate sdg a { u1(-pi/2) a; }
gate t a { u1(pi/4) a; }
gate tdg a { u1(-pi/4) a; }
gate rx(theta) a { u3(theta,-pi/2,pi/2) a; }
gate ry(theta) a { u3(theta,0,0) a; }
gate rz(phi) a { u1(phi) a; }
gate cz a,b { h b; cx a,b; h b; }
gate cy a,b { sdg b; cx a,b; s b; }
gate ch a,b { h b; sdg b; cx a,b; h b; t b; cx a,b; t b; h b; s b; x b; s a; }
gate ccx a,b,c
{
  h c; cx b,c; tdg c; cx a,c; t c; cx b,c; tdg c; cx a,c; t b; t c; h c;
  cx a,b; t a; tdg b; cx a,b;
}
gate crz(lambda) a,b { u1(lambda/2) b; cx a,b; u1(-lambda/2) b; cx a,b; }
gate cu1(lambda) a,b { u1(lambda/2) a; cx a,b; u1(-lambda/2) b; cx a,b; u1(lambda/2) b; }
gate cu3(theta,phi,lambda) c, t
{
  u1((lambda-phi)/2) t; cx c,t; u3(-theta/2,0,-(phi+lambda)/2) t; cx c,t; u3(theta/2,phi,0) t;
}
// --- extensions ---
gate u0(gamma) q { U(0,0,0) q; }
gate u(theta,phi,lambda) q { U(theta,phi,lambda) q; }
gate p(lambda) q { U(0,0,lambda) q; }
gate sx a { sdg a; h a; sdg a; }
gate sxdg a { s a; h a; s a; }
gate swap a,b { cx a,b; cx b,a; cx a,b; }
gate cswap a,b,c { cx c,b; ccx a,b,c; cx c,b; }
gate crx(lambda) a,b { u1(pi/2) b; cx a,b; u3(-lambda/2,0,0) b; cx a,b; u3(lambda/2,-pi/2,0) b; }
gate cry(lambda) a,b { ry(lambda/2) b; cx a,b; ry(-lambda/2) b; cx a,b; }
gate cp(lambda) a,b { p(lambda/2) a; cx a,b; p(-lambda/2) b; cx a,b; p(lambda/2) b; }
gate csx a,b { h b; cu1(pi/2) a,b; h b; }
gate cu(theta,phi,lambda,gamma) c,t
{
  p(gamma) c; p((lambda+phi)/2) c; p((lambda-phi)/2) t; cx c,t;
  u(-theta/2,0,-(phi+lambda)/2) t; cx c,t; u(theta/2,phi,0) t;
}
gate rzz(theta) a,b { cx a,b; u1(theta) b; cx a,b; }
gate rxx(theta) a,b { h a; h b; cx a,b; u1(theta) b; cx a,b; h a; h b; }
"""
_QELIB1_EXTENSIONS = QELIB1_INC.split("// --- extensions ---")[1]

_CONSTANTS = {
    "pi": math.pi,
    "π": math.pi,
    "tau": 2 * math.pi,
    "τ": 2 * math.pi,
    "euler": math.e,
    "ℇ": math.e,
}
_FUNCTIONS: dict[str, Callable[[float], float]] = {
    "sin": math.sin,
    "cos": math.cos,
    "tan": math.tan,
    "arcsin": math.asin,
    "arccos": math.acos,
    "arctan": math.atan,
    "exp": math.exp,
    "ln": math.log,
    "sqrt": math.sqrt,
    "asin": math.asin,
    "acos": math.acos,
    "atan": math.atan,
}
# ctrl @ <single-qubit library gate> written as the library's own controlled gate.
_CONTROLLED_NAME = {
    "x": "cx",
    "y": "cy",
    "z": "cz",
    "h": "ch",
    "p": "cp",
    "phase": "cphase",
    "rx": "crx",
    "ry": "cry",
    "rz": "crz",
}
_SELF_INVERSE = {"x", "y", "z", "h", "id", "cx", "CX", "cy", "cz", "ch", "swap", "ccx", "cswap"}
_NEGATE = {"rx", "ry", "rz", "p", "phase", "u1", "cp", "cphase", "crx", "cry", "crz"}
_PAIRS = {"s": "sdg", "sdg": "s", "t": "tdg", "tdg": "t"}


@dataclass
class _GateDef:
    name: str
    params: list[str]
    qubits: list[str]
    body: list[ast.Statement]
    library: str | None = None
    replaceable: bool = False


@dataclass
class _Scope:
    values: dict[str, float] = field(default_factory=dict)
    qubits: dict[str, int] | None = None
    in_library: bool = False


@dataclass
class _Expansion:
    ops: list[Operation]
    phase: float = 0.0


def _pos(node: Any) -> tuple[int | None, int | None]:
    span = getattr(node, "span", None)
    if span is None:
        return None, None
    return span.start_line, span.start_column + 1


def _error(node: Any, message: str) -> QasmError:
    line, column = _pos(node)
    return QasmError(message, line, column)


def _syntax_error(text: str) -> QasmError:
    """Re-parse with a collecting listener to report the first syntax error with its position."""
    from antlr4 import CommonTokenStream, InputStream  # type: ignore[import-untyped]
    from antlr4.error.ErrorListener import ErrorListener  # type: ignore[import-untyped]
    from openqasm3._antlr.qasm3Lexer import qasm3Lexer
    from openqasm3._antlr.qasm3Parser import qasm3Parser

    class _Collect(ErrorListener):
        def __init__(self) -> None:
            self.first: tuple[int, int, str] | None = None

        def syntaxError(  # noqa: N802, PLR0917 - ANTLR's name and signature
            self, recognizer: Any, symbol: Any, line: int, column: int, msg: str, e: Any
        ) -> None:
            if self.first is None:
                self.first = (line, column, msg)

    listener = _Collect()
    lexer = qasm3Lexer(InputStream(text))
    lexer.removeErrorListeners()
    lexer.addErrorListener(listener)
    parser = qasm3Parser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(listener)
    try:
        parser.program()
    except Exception:  # the listener has what we need
        pass
    if listener.first is None:
        return QasmError("syntax error")
    line, column, msg = listener.first
    source_line = text.splitlines()[line - 1] if 0 < line <= len(text.splitlines()) else ""
    if source_line.lstrip().startswith("opaque"):
        indent = len(source_line) - len(source_line.lstrip())
        return QasmError("unsupported construct: opaque gate declaration", line, indent + 1)
    return QasmError(f"syntax error: {msg}", line, column + 1)


_UNTYPED_CONST = re.compile(r"^(\s*)const\s+([A-Za-z_][A-Za-z_0-9]*)\s*=", re.MULTILINE)
_UNTYPED_FOR = re.compile(r"\bfor\s+([A-Za-z_][A-Za-z_0-9]*)\s+in\b")
_TYPED_GATE_PARAM = re.compile(r"\b(angle|float|int|uint)(\[[^\]]*\])?\s*:\s*")


def _infer_untyped_consts(text: str) -> tuple[str, set[str]]:
    """`const n = 3;` (the specification's examples write constants so) read as a constant whose
    type is that of its value: the text gets a placeholder type, the name is remembered."""
    names: set[str] = set()

    def fix(m: re.Match[str]) -> str:
        names.add(m.group(2))
        return f"{m.group(1)}const int {m.group(2)} ="

    text = _UNTYPED_CONST.sub(fix, text)
    # `for i in [0:3]` likewise: the loop variable of an untyped for loop is an int
    text = _UNTYPED_FOR.sub(lambda m: f"for int {m.group(1)} in", text)
    return text, names


def parse_qasm(
    text: str,
    name: str = "program",
    *,
    device: DeviceSettings | None = None,
    limits: Any = None,
) -> Circuit:
    """Parse OpenQASM 3 or 2 text into a `Circuit`; raises `QasmError` with line and column.

    `device` gives gate durations (durationof, stretches), ports and frames (calibrations);
    `limits` (a `QasmLimits`) bounds qubits, loops and sizes before anything is built."""
    from ionpilot.sequencer.qasm_program import ProgramFrontend, QasmLimits

    program, inferred = read_program(text)
    version = (program.version or "3").strip()
    frontend = ProgramFrontend(
        version2=version.startswith("2"),
        device=device or DeviceSettings(),
        limits=limits or QasmLimits(),
        inferred=inferred,
    )
    circuit = frontend.run(program)
    circuit.name = name
    return circuit


def read_program(text: str) -> tuple[ast.Program, set[str]]:
    """The syntax tree of `text` and the names of its untyped constants; `QasmError` with line
    and column (and what else is wrong, where it can tell) on a syntax error."""
    source, inferred = _infer_untyped_consts(text)
    source = _generic_defcal_qubits(source)
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # ANTLR's lexer prints; we report
            program = openqasm3.parse(source)
    except openqasm3.parser.QASM3ParsingError as exc:
        error = _parse_failure(exc, source)
        hint = _line_hint(text, error.line) or _diagnose(text)
        raise QasmError(error.message + hint, error.line, error.column) from None
    return program, inferred


def _parse_failure(exc: Exception, text: str) -> QasmError:
    message = str(exc)
    if message.startswith("L") and ":C" in message:
        head, _, rest = message.partition(": ")
        line_text, _, col_text = head[1:].partition(":C")
        if line_text.isdigit() and col_text.isdigit():
            return QasmError(rest, int(line_text), int(col_text) + 1)
    return _syntax_error(text)


_OLD_REGISTER = re.compile(r"^\s*(qubit|bit)\s+[A-Za-z_]\w*\s*\[", re.MULTILINE)
_DOLLAR_NAME = re.compile(r"\$[A-Za-z_]\w*")
_DEFCAL_HEAD = re.compile(r"^[ \t]*defcal\b[^{\n]*", re.MULTILINE)


def _generic_defcal_qubits(text: str) -> str:
    """`defcal rz(angle[20] theta) $q { ... }`: the specification's pulse section calls a
    calibration on any physical qubit by a `$` name, which the reference grammar's lexer (`$`
    and digits) cannot read; in a defcal's head `$q` is read as the argument `q` (same line and
    column), and the calibration set says what the device does with it."""
    return _DEFCAL_HEAD.sub(
        lambda m: _DOLLAR_NAME.sub(lambda d: " " + d.group()[1:], m.group()), text
    )


_COLON_PARAM = re.compile(r"\b(angle|float|int|uint|duration)(\[[^\]]*\])?\s*:\s*[A-Za-z_]")
_FIXED_TYPE = re.compile(r"\bfixed\s*\[")


def _line_hint(text: str, line: int | None) -> str:
    """What is allowed, where the failing line shows an old or unknown form the parser only
    reports as a stray token (`$q`, `angle[20]:theta`, `fixed[...]`)."""
    lines = text.splitlines()
    if line is None or not 1 <= line <= len(lines):
        return ""
    source = lines[line - 1]
    notes = []
    if source.lstrip().startswith("defcal") and (m := _COLON_PARAM.search(source)):
        notes.append(
            f"found '{m.group()[:-1].rstrip()}': calibration parameters are written "
            "`angle[20] theta` (type, space, name; the `type:name` form is old)"
        )
    if not source.lstrip().startswith("defcal") and (m := _DOLLAR_NAME.search(source)):
        notes.append(
            f"'{m.group()}': a `$` name stands for any physical qubit only in a defcal's head; "
            "elsewhere a physical qubit is `$` and a number (`$0`)"
        )
    if _FIXED_TYPE.search(source):
        notes.append(
            "`fixed[...]` is no OpenQASM 3 type (allowed: bit, bool, int, uint, float, angle, "
            "complex, duration, stretch)"
        )
    return "".join(f"; {note}" for note in notes)


def _diagnose(text: str) -> str:
    """After a syntax error: what else is wrong, found by reading a repaired copy (typed gate
    parameters, an old OpenQASM habit, are the usual cause)."""
    if _OLD_REGISTER.search(text):
        return (
            "; registers are declared as `qubit[4] a;` in OpenQASM 3 (`qubit a[4]` is the old form)"
        )
    repaired, count = _TYPED_GATE_PARAM.subn("", text)
    if not count:
        return ""
    repaired, _ = _infer_untyped_consts(repaired)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            program = openqasm3.parse(repaired)
    except Exception:
        return ""
    notes = ["gate parameters carry no type in OpenQASM 3 (found e.g. 'angle[32]: θ')"]
    declared = {s.qubit.name for s in program.statements if isinstance(s, ast.QubitDeclaration)}
    v3 = not (program.version or "3").startswith("2")
    for node in _walk(program):
        if isinstance(node, ast.QuantumGate) and node.name.name == "CX" and v3:
            line = node.span.start_line if node.span else "?"
            notes.append(f"line {line}: 'CX' is not defined in OpenQASM 3 (cx from stdgates.inc)")
        if isinstance(node, ast.IndexedIdentifier) and node.name.name not in declared:
            line = node.span.start_line if node.span else "?"
            notes.append(f"line {line}: qubit register '{node.name.name}' is never declared")
    return "; and, reading past it: " + "; ".join(dict.fromkeys(notes))


def _walk(node: Any) -> Any:
    stack = [node]
    while stack:
        n = stack.pop()
        yield n
        for value in getattr(n, "__dict__", {}).values():
            if isinstance(value, list):
                stack.extend(v for v in value if isinstance(v, ast.QASMNode))
            elif isinstance(value, ast.QASMNode):
                stack.append(value)


def _library_defs(text: str, library: str, replaceable_names: set[str]) -> list[_GateDef]:
    program = openqasm3.parse("OPENQASM 2.0;\n" + text)
    out = []
    for stmt in program.statements:
        assert isinstance(stmt, ast.QuantumGateDefinition)
        out.append(
            _GateDef(
                stmt.name.name,
                [a.name for a in stmt.arguments],
                [q.name for q in stmt.qubits],
                list(stmt.body),
                library=library,
                replaceable=stmt.name.name in replaceable_names,
            )
        )
    return out


_QELIB1_CACHE: list[_GateDef] = []


def _qelib1() -> list[_GateDef]:
    if not _QELIB1_CACHE:
        extension_names = {
            line.split()[1].split("(")[0]
            for line in _QELIB1_EXTENSIONS.splitlines()
            if line.startswith("gate ")
        }
        _QELIB1_CACHE.extend(_library_defs(QELIB1_INC, "qelib1.inc", extension_names))
    return _QELIB1_CACHE


class _Frontend:
    """Walks one program's syntax tree, building the operation list."""

    def __init__(self, version2: bool) -> None:
        self.version2 = version2
        self.defs: dict[str, _GateDef] = {}
        self.std: set[str] = set()
        self.qregs: dict[str, tuple[int, int]] = {}
        self.qreg_order: list[tuple[str, int]] = []
        self.cregs: dict[str, tuple[int, int]] = {}
        self.creg_order: list[tuple[str, int]] = []
        self.num_qubits = 0
        self.num_clbits = 0
        self.physical = False
        self.constants: dict[str, float] = {}
        self.ops: list[Operation] = []
        self.global_phase = 0.0

    # --- program ---------------------------------------------------------------------------

    def run(self, program: ast.Program) -> Circuit:
        for stmt in program.statements:
            self.statement(stmt, _Scope(values=dict(self.constants)))
        circuit = Circuit(
            num_qubits=self.num_qubits,
            num_clbits=self.num_clbits,
            ops=self.ops,
            qregs=self.qreg_order,
            cregs=self.creg_order,
            global_phase=self.global_phase,
        )
        return circuit

    def statement(self, stmt: ast.Statement | ast.Pragma, scope: _Scope) -> None:
        if isinstance(stmt, ast.Include):
            self.include(stmt)
        elif isinstance(stmt, ast.QubitDeclaration):
            self.declare_qubits(stmt, scope)
        elif isinstance(stmt, ast.ClassicalDeclaration):
            self.declare_bits(stmt, scope)
        elif isinstance(stmt, ast.ConstantDeclaration):
            self.declare_constant(stmt, scope)
        elif isinstance(stmt, ast.QuantumGateDefinition):
            self.define_gate(stmt)
        elif isinstance(stmt, ast.QuantumGate):
            self.ops.extend(self.gate_call(stmt, scope, 0).ops)
            self._check_size(stmt)
        elif isinstance(stmt, ast.QuantumPhase):
            expansion = self.phase_call(stmt, scope)
            self.ops.extend(expansion.ops)
            self.global_phase += expansion.phase
        elif isinstance(stmt, ast.QuantumMeasurementStatement):
            self.measure(stmt.measure, stmt.target, stmt, scope)
        elif isinstance(stmt, ast.QuantumReset):
            for q in self.operand(stmt.qubits, scope):
                self.ops.append(Operation("reset", (q,), line=_pos(stmt)[0] or 0))
        elif isinstance(stmt, ast.QuantumBarrier):
            qubits: list[int] = []
            for operand in stmt.qubits:
                qubits.extend(self.operand(operand, scope))
            if not stmt.qubits:
                qubits = list(range(self.num_qubits))
            self.ops.append(Operation("barrier", tuple(dict.fromkeys(qubits))))
        elif isinstance(stmt, ast.ForInLoop):
            self.for_loop(stmt, scope)
        elif isinstance(stmt, ast.CalibrationGrammarDeclaration):
            pass  # calibrations are the device's business; ignoring the grammar name is safe
        else:
            raise _error(stmt, f"unsupported construct: {_describe(stmt)}")

    def _check_size(self, node: Any) -> None:
        if len(self.ops) > MAX_OPERATIONS:
            raise _error(node, f"program expands to more than {MAX_OPERATIONS} operations")

    def include(self, stmt: ast.Include) -> None:
        if stmt.filename == "stdgates.inc" and not self.version2:
            self.std.update(STD_GATES)
        elif stmt.filename == "qelib1.inc":
            for gate in _qelib1():
                self.defs[gate.name] = gate
        else:
            raise _error(stmt, f"cannot include '{stmt.filename}' (only stdgates.inc, qelib1.inc)")

    def _check_new_name(self, node: Any, name: str) -> None:
        if name in self.qregs or name in self.cregs or name in self.constants:
            raise _error(node, f"'{name}' is already declared")

    def declare_qubits(self, stmt: ast.QubitDeclaration, scope: _Scope) -> None:
        name = stmt.qubit.name
        self._check_new_name(stmt, name)
        size = 1 if stmt.size is None else self.int_value(stmt.size, scope)
        if size < 1:
            raise _error(stmt, f"register '{name}' must have at least one qubit")
        self.qregs[name] = (self.num_qubits, size)
        self.qreg_order.append((name, size))
        self.num_qubits += size

    def declare_bits(self, stmt: ast.ClassicalDeclaration, scope: _Scope) -> None:
        if not isinstance(stmt.type, ast.BitType):
            raise _error(
                stmt, "unsupported construct: classical variables other than bit registers"
            )
        name = stmt.identifier.name
        self._check_new_name(stmt, name)
        size = 1 if stmt.type.size is None else self.int_value(stmt.type.size, scope)
        if size < 1:
            raise _error(stmt, f"register '{name}' must have at least one bit")
        self.cregs[name] = (self.num_clbits, size)
        self.creg_order.append((name, size))
        self.num_clbits += size
        if stmt.init_expression is not None:
            if not isinstance(stmt.init_expression, ast.QuantumMeasurement):
                raise _error(stmt, "unsupported construct: bit initialised by an expression")
            self.measure(stmt.init_expression, stmt.identifier, stmt, scope)

    def declare_constant(self, stmt: ast.ConstantDeclaration, scope: _Scope) -> None:
        name = stmt.identifier.name
        self._check_new_name(stmt, name)
        value = self.value(stmt.init_expression, scope)
        self.constants[name] = value
        scope.values[name] = value

    def define_gate(self, stmt: ast.QuantumGateDefinition) -> None:
        name = stmt.name.name
        existing = self.defs.get(name)
        if (
            (existing is not None and not existing.replaceable)
            or name in self.std
            or name
            in (
                "U",
                "gphase",
            )
        ):
            where = existing.library if existing is not None and existing.library else None
            origin = where or ("stdgates.inc" if name in self.std else "this program")
            raise _error(stmt, f"gate '{name}' is already defined (in {origin})")
        for inner in stmt.body:
            if not isinstance(
                inner, ast.QuantumGate | ast.QuantumPhase | ast.QuantumBarrier | ast.ForInLoop
            ):
                raise _error(inner, f"unsupported construct in gate body: {_describe(inner)}")
        self.defs[name] = _GateDef(
            name, [a.name for a in stmt.arguments], [q.name for q in stmt.qubits], list(stmt.body)
        )

    def for_loop(self, stmt: ast.ForInLoop, scope: _Scope) -> None:
        values = self.loop_values(stmt.set_declaration, scope, stmt)
        if not stmt.block:  # an empty body does nothing however often it runs
            return
        var = stmt.identifier.name
        for value in values:
            inner = _Scope(values={**scope.values, var: float(value)}, qubits=scope.qubits)
            for body_stmt in stmt.block:
                self.statement(body_stmt, inner)

    def loop_values(self, decl: Any, scope: _Scope, node: Any) -> Sequence[int]:
        if isinstance(decl, ast.RangeDefinition):
            if decl.start is None or decl.end is None:
                raise _error(node, "for-loop ranges need a start and an end")
            start = self.int_value(decl.start, scope)
            end = self.int_value(decl.end, scope)
            step = 1 if decl.step is None else self.int_value(decl.step, scope)
            if step == 0:
                raise _error(node, "for-loop range step must not be zero")
            # A range object, its length checked before anything is built (56 bytes of source
            # must not allocate a list of 20 million ints).
            values: Sequence[int] = range(start, end + (1 if step > 0 else -1), step)
        elif isinstance(decl, ast.DiscreteSet):
            values = [self.int_value(v, scope) for v in decl.values]
        else:
            raise _error(node, "unsupported construct: for-loop over a non-constant set")
        if len(values) > MAX_OPERATIONS:
            raise _error(node, "for loop too long")
        return values

    # --- gates -----------------------------------------------------------------------------

    def resolve_gate(self, name: str, scope: _Scope, node: Any) -> tuple[str, int, int]:
        """(kind, n_params, n_qubits) with kind 'def' or 'ir'."""
        gate = self.defs.get(name)
        if gate is not None:
            return "def", len(gate.params), len(gate.qubits)
        if name == "U":
            return "ir", 3, 1
        if name == "CX" and (self.version2 or scope.in_library):
            return "ir", 0, 2
        if name in self.std:
            spec = STD_GATES[name]
            return "ir", spec.num_params, spec.num_qubits
        raise _error(node, f"undefined gate '{name}'")

    def gate_call(self, stmt: ast.QuantumGate, scope: _Scope, depth: int) -> _Expansion:
        if depth > MAX_GATE_DEPTH:
            raise _error(stmt, "gate definitions nest too deeply (recursive definition?)")
        if stmt.duration is not None:
            raise _error(stmt, "unsupported construct: gate durations")
        name = stmt.name.name
        kind, n_params, n_qubits = self.resolve_gate(name, scope, stmt)
        params = [self.value(arg, scope) for arg in stmt.arguments]
        if len(params) != n_params:
            raise _error(stmt, f"gate '{name}' takes {n_params} parameter(s), {len(params)} given")
        n_ctrl = 0
        for modifier in stmt.modifiers:
            mod = modifier.modifier.name
            if mod == "negctrl":
                raise _error(modifier, "unsupported construct: negctrl @ modifier")
            if mod == "ctrl":
                count = 1 if modifier.argument is None else self.int_value(modifier.argument, scope)
                if count < 1:
                    raise _error(modifier, "ctrl @ needs at least one control")
                n_ctrl += count
        operands = [self.operand(q, scope) for q in stmt.qubits]
        if len(operands) != n_qubits + n_ctrl:
            raise _error(
                stmt,
                f"gate '{name}' acts on {n_qubits + n_ctrl} qubit(s), {len(operands)} given",
            )
        result = _Expansion([])
        for qubits in self.broadcast(operands, stmt):
            if len(set(qubits)) != len(qubits):
                raise _error(stmt, f"gate '{name}' applied to the same qubit twice")
            targets = qubits[n_ctrl:]
            expansion = self.expand(
                name, kind, tuple(params), targets, scope=scope, node=stmt, depth=depth
            )
            expansion = self.apply_modifiers(stmt, expansion, qubits[:n_ctrl], scope)
            result.ops.extend(expansion.ops)
            result.phase += expansion.phase
            if len(result.ops) > MAX_OPERATIONS:
                raise _error(stmt, f"program expands to more than {MAX_OPERATIONS} operations")
        return result

    def expand(
        self,
        name: str,
        kind: str,
        params: tuple[float, ...],
        qubits: tuple[int, ...],
        *,
        scope: _Scope,
        node: Any,
        depth: int,
    ) -> _Expansion:
        line = _pos(node)[0] or 0
        if kind == "ir":
            ir_name = "cx" if name == "CX" else name
            return _Expansion([Operation(ir_name, qubits, params, line=line)])
        gate = self.defs[name]
        inner = _Scope(
            values={**self.constants, **dict(zip(gate.params, params, strict=True))},
            qubits=dict(zip(gate.qubits, qubits, strict=True)),
            in_library=gate.library is not None,
        )
        out = _Expansion([])
        for body_stmt in gate.body:
            self.body_statement(body_stmt, inner, out, depth)
        return out

    def body_statement(self, stmt: Any, scope: _Scope, out: _Expansion, depth: int) -> None:
        if isinstance(stmt, ast.QuantumGate):
            expansion = self.gate_call(stmt, scope, depth + 1)
            out.ops.extend(expansion.ops)
            out.phase += expansion.phase
        elif isinstance(stmt, ast.QuantumPhase):
            expansion = self.phase_call(stmt, scope)
            out.ops.extend(expansion.ops)
            out.phase += expansion.phase
        elif isinstance(stmt, ast.QuantumBarrier):
            pass  # a barrier inside a gate body has no effect on its unitary
        elif isinstance(stmt, ast.ForInLoop):
            for value in self.loop_values(stmt.set_declaration, scope, stmt):
                inner = _Scope(
                    values={**scope.values, stmt.identifier.name: float(value)},
                    qubits=scope.qubits,
                    in_library=scope.in_library,
                )
                for body_stmt in stmt.block:
                    self.body_statement(body_stmt, inner, out, depth)
        else:
            raise _error(stmt, f"unsupported construct in gate body: {_describe(stmt)}")

    def phase_call(self, stmt: ast.QuantumPhase, scope: _Scope) -> _Expansion:
        angle = self.value(stmt.argument, scope)
        controls: list[int] = []
        for operand in stmt.qubits:
            controls.extend(self.operand(operand, scope))
        expansion = _Expansion([], angle)
        n_ctrl = 0
        for modifier in stmt.modifiers:
            if modifier.modifier.name == "ctrl":
                n_ctrl += (
                    1 if modifier.argument is None else self.int_value(modifier.argument, scope)
                )
        if n_ctrl != len(controls):
            raise _error(stmt, f"gphase with {n_ctrl} control(s) given {len(controls)} qubit(s)")
        return self.apply_modifiers(stmt, expansion, tuple(controls), scope)

    def apply_modifiers(
        self, stmt: Any, expansion: _Expansion, controls: tuple[int, ...], scope: _Scope
    ) -> _Expansion:
        end = len(controls)
        for modifier in reversed(stmt.modifiers):
            mod = modifier.modifier.name
            if mod == "inv":
                expansion = _Expansion(
                    [_inverse(op) for op in reversed(expansion.ops)], -expansion.phase
                )
                expansion = _fold_phases(expansion)
            elif mod == "pow":
                if modifier.argument is None:
                    raise _error(modifier, "pow @ needs an exponent")
                expansion = self.power(modifier, expansion, self.value(modifier.argument, scope))
            elif mod == "ctrl":
                count = 1 if modifier.argument is None else self.int_value(modifier.argument, scope)
                expansion = self.control(modifier, expansion, controls[end - count : end])
                end -= count
        return expansion

    def power(self, node: Any, expansion: _Expansion, exponent: float) -> _Expansion:
        if float(exponent).is_integer():
            k = int(exponent)
            base = expansion
            if k < 0:
                base = _Expansion(
                    [_inverse(op) for op in reversed(expansion.ops)], -expansion.phase
                )
                base = _fold_phases(base)
            return _Expansion(base.ops * abs(k), base.phase * abs(k))
        single = _single_qubit_matrix(expansion)
        if single is None:
            raise _error(node, "unsupported construct: non-integer pow @ on a multi-qubit gate")
        qubit, matrix = single
        values, vectors = np.linalg.eig(np.array([[matrix[0], matrix[1]], [matrix[2], matrix[3]]]))
        powered = (
            vectors @ np.diag(values.astype(np.complex128) ** exponent) @ np.linalg.inv(vectors)
        )
        m: Mat2 = (
            complex(powered[0, 0]),
            complex(powered[0, 1]),
            complex(powered[1, 0]),
            complex(powered[1, 1]),
        )
        theta, phi, lam, gamma = u_params(m)
        return _Expansion([Operation("U", (qubit,), (theta, phi, lam))], gamma)

    def control(self, node: Any, expansion: _Expansion, controls: tuple[int, ...]) -> _Expansion:
        ops = expansion.ops
        if not ops:  # a controlled global phase is a phase gate on the control(s)
            if len(controls) == 1:
                return _Expansion([Operation("p", controls, (expansion.phase,))])
            raise _error(node, "unsupported construct: multi-controlled gphase")
        if len(controls) == 1:
            c = controls[0]
            if len(ops) == 1 and abs(expansion.phase) < 1e-15:
                op = ops[0]
                if op.name in _CONTROLLED_NAME:
                    return _Expansion(
                        [Operation(_CONTROLLED_NAME[op.name], (c, *op.qubits), op.params)]
                    )
                if op.name in ("cx", "CX"):
                    return _Expansion([Operation("ccx", (c, *op.qubits))])
                if op.name == "swap":
                    return _Expansion([Operation("cswap", (c, *op.qubits))])
            single = _single_qubit_matrix(expansion)
            if single is not None:
                qubit, matrix = single
                theta, phi, lam, gamma = u_params(matrix)
                return _Expansion([Operation("cu", (c, qubit), (theta, phi, lam, gamma))])
        if len(controls) == 2 and abs(expansion.phase) < 1e-15:
            single = _single_qubit_matrix(expansion)
            if single is not None and _is_x(single[1]):
                return _Expansion([Operation("ccx", (*controls, single[0]))])
        raise _error(
            node,
            f"unsupported construct: ctrl @ with {len(controls)} control(s) on this gate",
        )

    # --- operands ---------------------------------------------------------------------------

    def operand(self, node: Any, scope: _Scope) -> list[int]:
        if isinstance(node, ast.Identifier):
            name = node.name
            if scope.qubits is not None:
                if name in scope.qubits:
                    return [scope.qubits[name]]
                raise _error(node, f"'{name}' is not a qubit argument of this gate")
            if name.startswith("$"):
                return [self.physical_qubit(node, name)]
            if name not in self.qregs:
                raise _error(node, f"undeclared qubit register '{name}'")
            start, size = self.qregs[name]
            return list(range(start, start + size))
        if isinstance(node, ast.IndexedIdentifier):
            if scope.qubits is not None:
                raise _error(node, "gate arguments cannot be indexed")
            name = node.name.name
            if name not in self.qregs:
                raise _error(node, f"undeclared qubit register '{name}'")
            start, size = self.qregs[name]
            if len(node.indices) != 1:
                raise _error(node, "unsupported construct: multi-dimensional qubit index")
            return [start + i for i in self.indices(node.indices[0], size, name, scope, node)]
        raise _error(node, f"unsupported qubit operand: {_describe(node)}")

    def physical_qubit(self, node: Any, name: str) -> int:
        if self.qregs and not self.physical:
            raise _error(node, "physical qubits cannot be mixed with declared registers")
        index = int(name[1:])
        self.physical = True
        if index >= self.num_qubits:
            self.num_qubits = index + 1
            self.qreg_order = [("q", self.num_qubits)]
        return index

    def indices(self, index: Any, size: int, name: str, scope: _Scope, node: Any) -> list[int]:
        items = index.values if isinstance(index, ast.DiscreteSet) else index
        out: list[int] = []
        for item in items:
            if isinstance(item, ast.RangeDefinition):
                start = 0 if item.start is None else self.int_value(item.start, scope)
                end = size - 1 if item.end is None else self.int_value(item.end, scope)
                step = 1 if item.step is None else self.int_value(item.step, scope)
                if step == 0:
                    raise _error(node, "range step must not be zero")
                values: Sequence[int] = range(start, end + (1 if step > 0 else -1), step)
                if len(values) > size:  # checked before anything is built
                    raise _error(
                        node, f"range of {len(values)} indices exceeds '{name}' of size {size}"
                    )
            else:
                values = [self.int_value(item, scope)]
            for value in values:
                resolved = value + size if value < 0 else value
                if not 0 <= resolved < size:
                    raise _error(node, f"index {value} out of range for '{name}' of size {size}")
                out.append(resolved)
        return out

    def bits(self, node: Any, scope: _Scope) -> list[int]:
        if isinstance(node, ast.Identifier):
            if node.name not in self.cregs:
                raise _error(node, f"undeclared bit register '{node.name}'")
            start, size = self.cregs[node.name]
            return list(range(start, start + size))
        if isinstance(node, ast.IndexedIdentifier):
            name = node.name.name
            if name not in self.cregs:
                raise _error(node, f"undeclared bit register '{name}'")
            start, size = self.cregs[name]
            return [start + i for i in self.indices(node.indices[0], size, name, scope, node)]
        raise _error(node, f"unsupported measurement target: {_describe(node)}")

    def measure(self, measurement: Any, target: Any, stmt: Any, scope: _Scope) -> None:
        qubits = self.operand(measurement.qubit, scope)
        line = _pos(stmt)[0] or 0
        if target is None:
            for q in qubits:
                self.ops.append(Operation("measure", (q,), line=line))
            return
        bits = self.bits(target, scope)
        if len(bits) != len(qubits):
            raise _error(stmt, f"measuring {len(qubits)} qubit(s) into {len(bits)} bit(s)")
        for q, c in zip(qubits, bits, strict=True):
            self.ops.append(Operation("measure", (q,), clbits=(c,), line=line))

    def broadcast(self, operands: list[list[int]], node: Any) -> list[tuple[int, ...]]:
        sizes = {len(o) for o in operands if len(o) != 1}
        if len(sizes) > 1:
            raise _error(node, "registers of different sizes in one gate call")
        count = sizes.pop() if sizes else 1
        return [tuple(o[i] if len(o) > 1 else o[0] for o in operands) for i in range(count)]

    # --- expressions -------------------------------------------------------------------------

    def int_value(self, node: Any, scope: _Scope) -> int:
        value = self.value(node, scope)
        if not float(value).is_integer():
            raise _error(node, f"expected an integer, got {value}")
        return int(value)

    def value(self, node: Any, scope: _Scope) -> float:
        if isinstance(node, ast.IntegerLiteral | ast.FloatLiteral):
            return float(node.value)
        if isinstance(node, ast.Identifier):
            if node.name in scope.values:
                return scope.values[node.name]
            if node.name in self.constants:
                return self.constants[node.name]
            if node.name in _CONSTANTS:
                return _CONSTANTS[node.name]
            raise _error(node, f"undefined identifier '{node.name}'")
        if isinstance(node, ast.UnaryExpression):
            if node.op.name == "-":
                return -self.value(node.expression, scope)
            raise _error(node, f"unsupported operator '{node.op.name}'")
        if isinstance(node, ast.BinaryExpression):
            a = self.value(node.lhs, scope)
            b = self.value(node.rhs, scope)
            op = node.op.name
            try:
                if op == "+":
                    return a + b
                if op == "-":
                    return a - b
                if op == "*":
                    return a * b
                if op == "/":
                    return a / b
                if op == "**" or (op == "^" and self.version2):
                    return float(a**b)
                if op == "%":
                    return math.fmod(a, b)
            except (ZeroDivisionError, OverflowError, ValueError) as exc:
                raise _error(node, f"cannot evaluate expression: {exc}") from None
            raise _error(node, f"unsupported operator '{op}'")
        if isinstance(node, ast.FunctionCall):
            fn = _FUNCTIONS.get(node.name.name)
            if fn is None or len(node.arguments) != 1:
                raise _error(node, f"unsupported function '{node.name.name}'")
            try:
                return fn(self.value(node.arguments[0], scope))
            except (ValueError, OverflowError) as exc:
                raise _error(node, f"cannot evaluate {node.name.name}: {exc}") from None
        raise _error(node, f"unsupported expression: {_describe(node)}")


def _describe(node: Any) -> str:
    name = type(node).__name__
    words = []
    for i, ch in enumerate(name):
        if ch.isupper() and i:
            words.append(" ")
        words.append(ch.lower())
    return "".join(words)


def _single_qubit_matrix(expansion: _Expansion) -> tuple[int, Mat2] | None:
    """If every op acts on the same qubit with a 1-qubit gate: (qubit, product incl. phase)."""
    if not expansion.ops:
        return None
    qubit = expansion.ops[0].qubits[0]
    total: Mat2 = (1, 0, 0, 1)
    for op in expansion.ops:
        if len(op.qubits) != 1 or op.qubits[0] != qubit or not is_single(op.name):
            return None
        total = mul(single_matrix(op.name, op.params), total)
    phase = complex(math.cos(expansion.phase), math.sin(expansion.phase))
    return qubit, scale(total, phase)


def _is_x(m: Mat2) -> bool:
    return (
        abs(m[0]) < 1e-12 and abs(m[3]) < 1e-12 and abs(m[1] - 1) < 1e-12 and abs(m[2] - 1) < 1e-12
    )


def _inverse(op: Operation) -> Operation:
    name = op.name
    if name in _SELF_INVERSE:
        return op
    if name in _PAIRS:
        return Operation(_PAIRS[name], op.qubits, line=op.line)
    if name in _NEGATE:
        return Operation(name, op.qubits, tuple(-p for p in op.params), line=op.line)
    if name == "cu":
        theta, phi, lam, gamma = op.params
        return Operation("cu", op.qubits, (-theta, -lam, -phi, -gamma), line=op.line)
    if is_single(name):
        theta, phi, lam, gamma = u_params(dagger(single_matrix(name, op.params)))
        # the phase γ is carried as a 'gphase' marker and folded into the expansion's phase
        return Operation("U", op.qubits, (theta, phi, lam, gamma), line=op.line)
    raise QasmError(f"cannot invert '{name}'")


def _fold_phases(expansion: _Expansion) -> _Expansion:
    """Move the γ carried by inverted single-qubit gates (4-parameter U) into the phase."""
    phase = expansion.phase
    ops = []
    for op in expansion.ops:
        if op.name == "U" and len(op.params) == 4:
            phase += op.params[3]
            ops.append(Operation("U", op.qubits, op.params[:3], line=op.line))
        else:
            ops.append(op)
    return _Expansion(ops, phase)


assert set(IR_GATES) >= set(STD_GATES)
