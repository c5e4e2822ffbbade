"""OpenQASM 3 programs as the specification writes them: classical types and control flow,
subroutines, externs, mid-circuit measurement with feed-forward, timing and calibrations.

The gate machinery (definitions, modifiers, stdgates/qelib1) is `qasm._Frontend`; this walker adds
the program level. Classical values are Python numbers while they are known when compiling and
`Dyn` (a function of measurement records, `ionpilot.sequencer.classical`) once they depend on a
measurement in the same shot. A branch, loop or gate parameter on a `Dyn` becomes operations with
a `condition`; the compiler and scheduler turn those into conditional segments of the pulse
schedule. A stored value over many records goes into controller registers (derived records,
`classical.Registers`), so conditions stay small tables however long the program branches.
Loops whose condition stays a `Dyn` are unrolled up to `QasmLimits.measured_while_iterations`;
the shots still looping then are cut off (the program's `truncations` say which: every result
states the fraction), or, with `truncate_measured_loops` off, the program is refused.

Every size is checked before anything of that size is built: registers, arrays, loop ranges and
the qubit count (against the simulator's state vector, or the device's ions).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from openqasm3 import ast

from ionpilot.sequencer.calibration import CalibrationSet
from ionpilot.sequencer.circuit import Circuit, Operation
from ionpilot.sequencer.classical import (
    MAX_RECORDS_PER_VALUE,
    Dyn,
    DynTooWide,
    Registers,
    accepting,
    lift,
    renumber,
    select,
)
from ionpilot.sequencer.errors import QasmError
from ionpilot.sequencer.qasm import (
    _CONSTANTS,
    _FUNCTIONS,
    _describe,
    _error,
    _Frontend,
    _pos,
    _Scope,
)
from ionpilot.sequencer.settings import DeviceSettings
from ionpilot.sequencer.timing import Linear, TimingModel

_TIME_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}
_FRESH = 1 << 40  # provisional record ids of measurements not into a declared bit


@dataclass(frozen=True)
class QasmLimits:
    """Bounds checked before anything is built (configured per backend by the caller)."""

    max_qubits: int = 22
    qubit_limit_reason: str = "a state vector of the simulator holds at most 22 qubits"
    loop_iterations: int = 1_000_000
    while_iterations: int = 1000
    # a while loop on measurement results: iterations unrolled into the pulse schedule, after
    # which the shots still looping are cut off (stated in the result) or, without truncation,
    # the program is refused
    measured_while_iterations: int = 16
    truncate_measured_loops: bool = True
    register_bits: int = 4096
    array_elements: int = 1 << 16
    call_depth: int = 64
    records: int = 4096
    statements: int = 500_000  # executed while compiling (nested loops of classical code)


def _majority(bits: list[int]) -> int:
    return int(2 * sum(bits) > len(bits))


def _parity(bits: list[int]) -> int:
    return sum(bits) & 1


# The classical functions the device's controller offers to `extern` declarations: name ->
# (what it does, implementation over a list of bits). Anything else is refused by name.
EXTERNS: dict[str, tuple[str, Callable[[list[int]], int]]] = {
    "vote": ("majority of a bit register (1 if more than half are 1)", _majority),
    "parity": ("XOR of a bit register", _parity),
}


@dataclass
class _Var:
    kind: str  # bit, int, uint, angle, float, bool, duration, stretch, array, complex
    width: int | None
    value: Any
    const: bool = False


@dataclass
class _Sub:
    name: str
    node: ast.SubroutineDefinition


class NeedsShotByShot(QasmError):
    """The program's control flow depends on measurements in a way no pulse schedule can hold
    (a loop on measurement results, or conditions over too many of them): the simulator can
    still run it shot by shot (`ionpilot.sequencer.shots`); the trap cannot."""


class _Return(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


@dataclass
class _Env:
    """One block scope: classical variables and qubit names (aliases, subroutine arguments)."""

    parent: _Env | None = None
    boundary: bool = False  # a subroutine body: only constants are seen beyond it
    vars: dict[str, _Var] = field(default_factory=dict)
    qubits: dict[str, list[int]] = field(default_factory=dict)
    in_library: bool = False

    def find(self, name: str) -> tuple[_Var | None, bool]:
        """The variable and whether it lies beyond a subroutine boundary."""
        env: _Env | None = self
        crossed = False
        while env is not None:
            if name in env.vars:
                return env.vars[name], crossed
            crossed = crossed or env.boundary
            env = env.parent
        return None, False

    def find_qubits(self, name: str) -> list[int] | None:
        env: _Env | None = self
        while env is not None:
            if name in env.qubits:
                return env.qubits[name]
            env = env.parent
        return None


class ProgramFrontend(_Frontend):
    """The program-level walker (see the module docstring)."""

    def __init__(
        self, version2: bool, device: DeviceSettings, limits: QasmLimits, inferred: set[str]
    ) -> None:
        super().__init__(version2)
        self.device = device
        self.limits = limits
        self.inferred_consts = inferred
        self.globals = _Env()
        self.subs: dict[str, _Sub] = {}
        self.externs: dict[str, ast.ExternDeclaration] = {}
        self.condition: Any = True  # the run-time condition of the code being walked
        self.fresh = 0
        self.registers = Registers(self.new_record)
        self.truncations: list[tuple[int, int, Any]] = []  # (line, bound, still running)
        self.home_used: set[int] = set()
        self.rename: dict[int, int] = {}
        self.executed = 0
        self.flow_base: Any = True  # the condition in force where the enclosing loop/call began
        self.depth = 0
        self.timing = TimingModel(device)
        self.calibrations = CalibrationSet(device)
        self.sync_index = 0  # ops before this index are timed (stretches solved)
        self.grammar: str | None = None

    # --- program ---------------------------------------------------------------------------

    def new_record(self) -> int:
        """A provisional record id (a measurement's, or a derived record's)."""
        rec = _FRESH + self.fresh
        self.fresh += 1
        return rec

    def compact(self, value: Any) -> Any:
        """A value about to be stored, narrowed into controller registers if it is wide."""
        if isinstance(value, list):
            return [self.compact(v) for v in value]
        return self.registers.compact(value)

    def run(self, program: ast.Program) -> Circuit:
        self.check_qubit_count(program)
        for stmt in program.statements:
            self.stmt(stmt, self.globals)
        self.resolve_timing(None)
        return self.finish()

    def check_qubit_count(self, program: ast.Program) -> None:
        """Refuse a program declaring more qubits than the limit, before building anything."""
        total = 0
        consts: dict[str, float] = {}
        for stmt in program.statements:
            if isinstance(stmt, ast.ConstantDeclaration):
                try:
                    consts[stmt.identifier.name] = self.value(
                        stmt.init_expression, _Scope(values=dict(consts))
                    )
                except QasmError:
                    continue
            if isinstance(stmt, ast.QubitDeclaration) and stmt.size is not None:
                try:
                    size = self.int_value(stmt.size, _Scope(values=dict(consts)))
                except QasmError:
                    continue
                total += size
                if total > self.limits.max_qubits:
                    raise _error(
                        stmt,
                        f"the program declares {total} or more qubits (up to "
                        f"'{stmt.qubit.name}'); {self.limits.qubit_limit_reason}",
                    )

    def finish(self) -> Circuit:
        home_bits = self.num_clbits
        extra = [r for r in range(_FRESH, _FRESH + self.fresh) if r not in self.rename]
        rank = {r: home_bits + i for i, r in enumerate(extra)}
        total = home_bits + len(extra)
        if total > self.limits.records:
            raise QasmError(
                f"the program makes {total} measurement records (limit {self.limits.records})"
            )

        def mapping(r: int) -> int:
            if r in self.rename:
                return self.rename[r]
            return rank.get(r, r)

        ops = []
        for op in self.ops:
            clbits = tuple(mapping(c) if c >= 0 else c for c in op.clbits)
            cond = op.condition
            if cond is not None:
                moved = accepting(renumber(_dyn_of(cond), mapping))
                assert isinstance(moved, tuple)
                cond = moved
            ops.append(Operation(op.name, op.qubits, op.params, clbits, op.line, cond, op.payload))
        outputs: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
        regs: list[tuple[str, int]] = []
        identity = True
        offset = 0
        for name, size in self.creg_order:
            var = self.globals.vars[name]
            regs.append((name, size))
            for i, stored in enumerate(var.value):
                bit = renumber(stored, mapping)
                if isinstance(bit, Dyn):
                    outputs.append((bit.records, tuple(int(v) for v in bit.table)))
                    if bit.records != (offset + i,) or bit.table != (0, 1):
                        identity = False
                else:
                    outputs.append(((), (int(bit),)))
                    if int(bit) != 0 or (offset + i) in self.home_used:
                        identity = False
            offset += size
        for name, var in self.globals.vars.items():
            if var.kind in ("int", "uint", "angle") and var.width and isinstance(var.value, Dyn):
                identity = False
                regs.append((name, var.width))
                value = renumber(var.value, mapping)
                for i in range(var.width):
                    bit = lift(lambda v, i=i: (int(v) >> i) & 1, value)
                    if isinstance(bit, Dyn):
                        outputs.append((bit.records, tuple(int(v) for v in bit.table)))
                    else:
                        outputs.append(((), (int(bit),)))
        if extra:
            identity = False
        derived = []
        for rec, inputs, accepted in self.registers.defined:
            moved = accepting(renumber(_dyn_of((inputs, accepted)), mapping))
            assert isinstance(moved, tuple)
            derived.append((mapping(rec), moved[0], moved[1]))
        truncations = []
        for line, bound, running in self.truncations:
            flag = renumber(lift(lambda v: int(bool(v)), running), mapping)
            if isinstance(flag, Dyn):
                truncations.append((line, bound, (flag.records, tuple(flag.table))))
        return Circuit(
            num_qubits=self.num_qubits,
            num_clbits=total,
            ops=ops,
            qregs=self.qreg_order,
            cregs=regs if regs else [],
            global_phase=self.global_phase,
            outputs=None if identity else outputs,
            derived=derived,
            truncations=truncations,
        )

    # --- statements ------------------------------------------------------------------------

    def stmt(self, s: Any, env: _Env) -> None:
        self.executed += 1
        if self.executed > self.limits.statements:
            raise _error(
                s,
                f"the program executes more than {self.limits.statements} statements while "
                "compiling (QasmLimits.statements); its loops are too long",
            )
        try:
            self._stmt(s, env)
        except DynTooWide as exc:
            line, column = _pos(s)
            raise NeedsShotByShot(
                f"this depends on {exc.count} measurement results in one shot; a pulse schedule "
                f"branches on at most {MAX_RECORDS_PER_VALUE} (each condition is a table over "
                "them)",
                line,
                column,
            ) from None

    def _stmt(self, s: Any, env: _Env) -> None:
        if isinstance(s, ast.Include):
            self.include(s)
        elif isinstance(s, ast.QubitDeclaration):
            self.declare_qubit_register(s, env)
        elif isinstance(s, ast.ClassicalDeclaration):
            self.declare(s, env, const=False)
        elif isinstance(s, ast.ConstantDeclaration):
            self.declare(s, env, const=True)
        elif isinstance(s, ast.IODeclaration):
            self.declare_io(s, env)
        elif isinstance(s, ast.QuantumGateDefinition):
            self.define_gate(s)
        elif isinstance(s, ast.QuantumGate):
            self.gate_statement(s, env)
        elif isinstance(s, ast.QuantumPhase):
            expansion = self.phase_call(s, env)  # type: ignore[arg-type]
            self.emit(expansion.ops, s)
            self.global_phase += expansion.phase
        elif isinstance(s, ast.QuantumMeasurementStatement):
            value = self.measure_expr(s.measure, env, s)
            if s.target is not None:
                self.assign_value(s.target, value, env, s)
        elif isinstance(s, ast.QuantumReset):
            targets = self.qubit_operand(s.qubits, env)
            self.emit([Operation("reset", (q,), line=_pos(s)[0] or 0) for q in targets], s)
        elif isinstance(s, ast.QuantumBarrier):
            qubits: list[int] = []
            for operand in s.qubits:
                qubits.extend(self.qubit_operand(operand, env))
            if not s.qubits:
                qubits = list(range(self.num_qubits))
            self.resolve_timing(s)
            self.emit([Operation("barrier", tuple(dict.fromkeys(qubits)))], s)
        elif isinstance(s, ast.ClassicalAssignment):
            self.assignment(s, env)
        elif isinstance(s, ast.ExpressionStatement):
            self.eval(s.expression, env)
        elif isinstance(s, ast.BranchingStatement):
            self.branch(s, env)
        elif isinstance(s, ast.ForInLoop):
            self.for_in(s, env)
        elif isinstance(s, ast.WhileLoop):
            self.while_loop(s, env)
        elif isinstance(s, ast.BreakStatement):
            self.require_static_flow(s, "break")
            raise _Break()
        elif isinstance(s, ast.ContinueStatement):
            self.require_static_flow(s, "continue")
            raise _Continue()
        elif isinstance(s, ast.ReturnStatement):
            self.require_static_flow(s, "return")
            value = None if s.expression is None else self.eval(s.expression, env)
            raise _Return(value)
        elif isinstance(s, ast.SubroutineDefinition):
            self.define_sub(s, env)
        elif isinstance(s, ast.ExternDeclaration):
            self.declare_extern(s)
        elif isinstance(s, ast.AliasStatement):
            self.alias(s, env)
        elif isinstance(s, ast.SwitchStatement):
            self.switch(s, env)
        elif isinstance(s, ast.CompoundStatement):
            self.block(s.statements, _Env(parent=env))
        elif isinstance(s, ast.DelayInstruction):
            self.delay(s, env)
        elif isinstance(s, ast.Box):
            self.box(s, env)
        elif isinstance(s, ast.CalibrationGrammarDeclaration):
            if s.name != "openpulse":
                raise _error(s, f"calibration grammar '{s.name}' is not supported (only openpulse)")
            self.grammar = s.name
        elif isinstance(s, ast.CalibrationStatement | ast.CalibrationDefinition):
            if self.grammar is None:
                raise _error(s, 'calibrations need `defcalgrammar "openpulse";` first')
            self.calibrations.add(s, self)
        elif isinstance(s, ast.Pragma):
            pass
        else:
            raise _error(s, f"unsupported construct: {_describe(s)}")

    def block(self, statements: list[Any], env: _Env) -> None:
        for s in statements:
            self.stmt(s, env)

    def require_static_flow(self, node: Any, what: str) -> None:
        if self.condition is not self.flow_base:
            raise _error(
                node,
                f"unsupported construct: '{what}' inside a branch on a measurement result of the "
                "same shot (ionpilot unrolls such branches into conditional pulse segments)",
            )

    def emit(self, ops: list[Operation], node: Any) -> None:
        cond = accepting(self.condition)
        if cond is False:
            return
        if cond is True:
            self.ops.extend(ops)
        else:
            assert isinstance(cond, tuple)
            for op in ops:
                if op.name == "barrier":
                    self.ops.append(op)
                    continue
                merged = cond
                if op.condition is not None:
                    both = lift(
                        lambda a, b: a and b,
                        self.condition,
                        _dyn_of(op.condition),
                    )
                    combined = accepting(both)
                    if not isinstance(combined, tuple):
                        continue
                    merged = combined
                self.ops.append(
                    Operation(op.name, op.qubits, op.params, op.clbits, op.line, merged, op.payload)
                )
        self._check_size(node)

    # --- declarations ----------------------------------------------------------------------

    def _check_new(self, node: Any, name: str, env: _Env) -> None:
        if (
            name in env.vars
            or name in env.qubits
            or (env is self.globals and (name in self.qregs or name in self.subs))
        ):
            raise _error(node, f"'{name}' is already declared in this scope")

    def declare_qubit_register(self, s: ast.QubitDeclaration, env: _Env) -> None:
        if env is not self.globals:
            raise _error(s, "qubits can only be declared at the top level of the program")
        size = 1 if s.size is None else self.int_of(self.eval(s.size, env), s.size)
        if self.num_qubits + size > self.limits.max_qubits:
            raise _error(
                s,
                f"the program declares {self.num_qubits + size} qubits with '{s.qubit.name}'; "
                f"{self.limits.qubit_limit_reason}",
            )
        self.declare_qubits(s, _Scope(values={}))
        self.qreg_order[-1] = (s.qubit.name, size)

    def type_of(self, t: Any, env: _Env, node: Any) -> tuple[str, int | None]:
        names = {
            ast.BitType: "bit",
            ast.IntType: "int",
            ast.UintType: "uint",
            ast.AngleType: "angle",
            ast.FloatType: "float",
            ast.BoolType: "bool",
            ast.DurationType: "duration",
            ast.StretchType: "stretch",
            ast.ComplexType: "complex",
        }
        for cls, kind in names.items():
            if isinstance(t, cls):
                size = getattr(t, "size", None)
                width = None
                if size is not None and kind != "complex":
                    width = self.int_of(self.eval(size, env), size)
                    limit = self.limits.register_bits
                    if not 1 <= width <= limit:
                        raise _error(node, f"{kind}[{width}]: width must be 1..{limit}")
                    if kind == "float" and width not in (16, 32, 64, 128):
                        raise _error(node, f"float[{width}]: width must be 16, 32, 64 or 128")
                if kind == "bit" and width is None:
                    width = 0  # a single bit, not a register
                return kind, width
        if isinstance(t, ast.ArrayType):
            return "array", None
        raise _error(node, f"unsupported type: {_describe(t)}")

    def declare(self, s: Any, env: _Env, const: bool) -> None:
        name = s.identifier.name
        self._check_new(s, name, env)
        if isinstance(s.type, ast.ArrayType):
            var = self.declare_array(s, env)
            var.const = const
            env.vars[name] = var
            return
        kind, width = self.type_of(s.type, env, s)
        if name in self.inferred_consts and const:
            inferred = self.eval(s.init_expression, env)
            env.vars[name] = _Var(_kind_of_value(inferred), None, inferred, True)
            self._publish_const(name, inferred)
            return
        if kind == "bit":
            size = max(width or 0, 1)
            bits: list[Any] = [0] * size
            if env is self.globals and not const:
                self.cregs[name] = (self.num_clbits, size)
                self.creg_order.append((name, size))
                self.num_clbits += size
            var = _Var("bit", width, bits, const)
            env.vars[name] = var
            if s.init_expression is not None:
                if isinstance(s.init_expression, ast.QuantumMeasurement):
                    first = self.measure_expr(s.init_expression, env, s)
                else:
                    first = self.eval(s.init_expression, env)
                var.value = self.compact(self.coerce("bit", width, first, s))
                if env is self.globals and not const:
                    self._claim_home(name, var, list(range(size)))
            return
        if kind == "stretch":
            if s.init_expression is not None:
                raise _error(s, "a stretch is solved by the scheduler; it takes no initial value")
            env.vars[name] = _Var("stretch", None, Linear.stretch(name), const)
            return
        init = s.init_expression
        value: Any = 0
        if init is not None:
            value = (
                self.measure_expr(init, env, s)
                if isinstance(init, ast.QuantumMeasurement)
                else self.eval(init, env)
            )
        elif kind in ("duration",):
            value = Linear(0.0)
        elif kind == "float":
            value = 0.0
        elif kind == "bool":
            value = False
        env.vars[name] = _Var(kind, width, self.compact(self.coerce(kind, width, value, s)), const)
        if const:
            self._publish_const(name, env.vars[name].value)

    def _publish_const(self, name: str, value: Any) -> None:
        if isinstance(value, bool | int | float) and not isinstance(value, Dyn):
            self.constants[name] = float(value)

    def declare_io(self, s: ast.IODeclaration, env: _Env) -> None:
        if s.io_identifier.name == "input":
            raise _error(s, "unsupported construct: input parameters (bind them in the program)")
        decl = ast.ClassicalDeclaration(s.type, s.identifier, None)
        decl.span = s.span
        self.declare(decl, env, const=False)

    def declare_array(self, s: Any, env: _Env) -> _Var:
        t = s.type
        dims = [self.int_of(self.eval(d, env), d) for d in t.dimensions]
        total = 1
        for d in dims:
            if d < 1:
                raise _error(s, f"array dimension {d} must be at least 1")
            total *= d
            if total > self.limits.array_elements:
                raise _error(
                    s,
                    f"array of {total} or more elements; the limit is {self.limits.array_elements}",
                )
        base_kind, base_width = self.type_of(t.base_type, env, s)

        def build(level: int) -> Any:
            if level == len(dims):
                return self.coerce(base_kind, base_width, 0, s)
            return [build(level + 1) for _ in range(dims[level])]

        value = build(0)
        if s.init_expression is not None:
            init = self.eval(s.init_expression, env)
            value = self.fit_array(init, dims, base_kind, base_width, s)
        return _Var("array", None, {"kind": base_kind, "width": base_width, "data": value})

    def fit_array(self, init: Any, dims: list[int], kind: str, width: int | None, node: Any) -> Any:
        if not dims:
            return self.coerce(kind, width, init, node)
        if not isinstance(init, list) or len(init) != dims[0]:
            raise _error(node, f"array initialiser does not have the declared shape {dims}")
        return [self.fit_array(x, dims[1:], kind, width, node) for x in init]

    def declare_extern(self, s: ast.ExternDeclaration) -> None:
        name = s.name.name
        if name not in EXTERNS:
            offered = ", ".join(f"{k} ({v[0]})" for k, v in EXTERNS.items())
            raise _error(s, f"extern '{name}' is not offered by this device (it offers: {offered})")
        self.externs[name] = s

    def define_sub(self, s: ast.SubroutineDefinition, env: _Env) -> None:
        name = s.name.name
        if env is not self.globals:
            raise _error(s, "subroutines can only be defined at the top level")
        if name in self.subs or name in self.defs:
            raise _error(s, f"'{name}' is already defined")
        self.subs[name] = _Sub(name, s)

    def alias(self, s: ast.AliasStatement, env: _Env) -> None:
        name = s.target.name
        qubits = self.qubit_expr(s.value, env)
        env.qubits[name] = qubits

    # --- values ----------------------------------------------------------------------------

    def coerce(self, kind: str, width: int | None, value: Any, node: Any) -> Any:
        """`value` as a variable of `kind`[`width`] stores it."""
        if isinstance(value, list) and kind != "bit":
            if not _is_bits(value):
                raise _error(node, f"cannot assign an array to {kind}")
            value = _bits_value(value)
        if kind == "bit":
            size = max(width or 0, 1)
            if isinstance(value, list):
                if len(value) != size:
                    raise _error(node, f"cannot assign {len(value)} bits to bit[{size}]")
                return [lift(lambda b: int(b) & 1, b) for b in value]
            if isinstance(value, str):
                if len(value) != size:
                    raise _error(node, f"bit string of {len(value)} bits for bit[{size}]")
                return [int(ch) for ch in reversed(value)]
            if isinstance(value, Linear):
                raise _error(node, "cannot assign a duration to bits")
            return [lift(lambda v, i=i: (_as_int(v) >> i) & 1, value) for i in range(size)]
        if isinstance(value, list):
            value = _bits_value(value)
        if isinstance(value, str):
            value = int(value, 2)
        if kind in ("duration", "stretch"):
            if isinstance(value, Linear):
                return value
            if value == 0:
                return Linear(0.0)
            raise _error(node, "a duration needs a time unit (e.g. 100ns)")
        if isinstance(value, Linear):
            raise _error(node, f"cannot assign a duration to {kind}")
        if kind == "int":
            if width is None:
                return lift(_as_int, value)
            half = 1 << (width - 1)
            return lift(lambda v: ((_as_int(v) + half) % (1 << width)) - half, value)
        if kind == "uint":
            if width is None:
                return lift(lambda v: _as_int(v) % (1 << 64), value)
            return lift(lambda v: _as_int(v) % (1 << width), value)
        if kind == "angle":
            w = width or 64

            def to_angle(v: Any) -> int:
                if isinstance(v, _AngleBits):
                    return v.k % (1 << w)
                return round(float(v) / (2 * math.pi) * (1 << w)) % (1 << w)

            return lift(to_angle, value)
        if kind == "float":
            return lift(float, value)
        if kind == "bool":
            return lift(bool, value)
        if kind == "complex":
            return lift(complex, value)
        raise _error(node, f"unsupported type '{kind}'")

    def read(self, var: _Var) -> Any:
        """A variable's value as an expression operand."""
        if var.kind == "bit":
            if not var.width:
                return var.value[0]
            return list(var.value)
        if var.kind == "angle":
            w = var.width or 64
            return lift(lambda k: _AngleBits(int(k), w), var.value)
        if var.kind == "array":
            return var.value["data"]
        return var.value

    def lookup(self, node: ast.Identifier, env: _Env) -> Any:
        name = node.name
        var, crossed = env.find(name)
        if var is not None:
            if crossed and not var.const:
                raise _error(
                    node, f"'{name}' is a global variable; a subroutine sees only global constants"
                )
            return self.read(var)
        if name in _CONSTANTS:
            return _CONSTANTS[name]
        if name in self.qregs or env.find_qubits(name) is not None:
            raise _error(node, f"'{name}' is a qubit register, not a classical value")
        hint = _close_name(name, [*self._visible_names(env)])
        raise _error(node, f"undeclared identifier '{name}'{hint}")

    def _visible_names(self, env: _Env) -> Iterator[str]:
        e: _Env | None = env
        while e is not None:
            yield from e.vars
            e = e.parent

    def eval(self, node: Any, env: _Env) -> Any:
        if isinstance(node, _Const):
            return node.value
        if isinstance(node, ast.IntegerLiteral):
            return node.value
        if isinstance(node, ast.FloatLiteral):
            return node.value
        if isinstance(node, ast.BooleanLiteral):
            return node.value
        if isinstance(node, ast.BitstringLiteral):
            return [(node.value >> i) & 1 for i in range(node.width)]
        if isinstance(node, ast.ImaginaryLiteral):
            return complex(0, node.value)
        if isinstance(node, ast.DurationLiteral):
            unit = node.unit.name
            if unit == "dt":
                return Linear(node.value * self.device.time_unit)
            return Linear(node.value * _TIME_UNITS[unit])
        if isinstance(node, ast.Identifier):
            return self.lookup(node, env)
        if isinstance(node, ast.UnaryExpression):
            v = self.eval(node.expression, env)
            op = node.op.name
            if isinstance(v, Linear):
                if op == "-":
                    return v.scale(-1.0)
                raise _error(node, f"operator '{op}' does not apply to a duration")
            if isinstance(v, list):
                if op == "~":
                    return [lift(lambda b: 1 - int(b), b) for b in v]
                v = _bits_value(v)
            fns: dict[str, Callable[[Any], Any]] = {
                "-": lambda x: -_num(x),
                "!": lambda x: not x,
                "~": lambda x: ~_as_int(x) if not isinstance(x, bool) else not x,
            }
            if op not in fns:
                raise _error(node, f"unsupported operator '{op}'")
            return lift(fns[op], v)
        if isinstance(node, ast.BinaryExpression):
            return self.binary(node, env)
        if isinstance(node, ast.Cast):
            kind, width = self.type_of(node.type, env, node)
            value = self.eval(node.argument, env)
            stored = self.coerce(kind, width, value, node)
            return self.read(_Var(kind, width, stored))
        if isinstance(node, ast.IndexExpression):
            return self.index_value(self.eval(node.collection, env), node.index, env, node)
        if isinstance(node, ast.FunctionCall):
            return self.call(node, env)
        if isinstance(node, ast.QuantumMeasurement):
            return self.measure_expr(node, env, node)
        if isinstance(node, ast.ArrayLiteral):
            return [self.eval(v, env) for v in node.values]
        if isinstance(node, ast.DurationOf):
            return Linear(self.duration_of(node.target, env))
        if isinstance(node, ast.SizeOf):
            target = self.eval(node.target, env)
            dim = 0 if node.index is None else self.int_of(self.eval(node.index, env), node)
            for _ in range(dim):
                if not isinstance(target, list) or not target:
                    raise _error(node, f"sizeof: no dimension {dim}")
                target = target[0]
            if not isinstance(target, list):
                raise _error(node, "sizeof needs an array")
            return len(target)
        if isinstance(node, ast.Concatenation):
            left, right = self.eval(node.lhs, env), self.eval(node.rhs, env)
            if not isinstance(left, list) or not isinstance(right, list):
                raise _error(node, "++ joins bit registers or arrays")
            return [*right, *left] if _is_bits(left) else [*left, *right]
        raise _error(node, f"unsupported expression: {_describe(node)}")

    def binary(self, node: ast.BinaryExpression, env: _Env) -> Any:
        op = node.op.name
        a = self.eval(node.lhs, env)
        b = self.eval(node.rhs, env)
        if isinstance(a, Linear) or isinstance(b, Linear):
            return self.duration_arith(op, a, b, node)
        if op in ("==", "!=") and isinstance(a, list) and isinstance(b, list):
            eq = lift(lambda x, y: x == y, _bits_value(a), _bits_value(b))
            return eq if op == "==" else lift(lambda x: not x, eq)
        if isinstance(a, list) and op in ("&", "|", "^") and isinstance(b, list):
            fn = {"&": lambda x, y: x & y, "|": lambda x, y: x | y, "^": lambda x, y: x ^ y}[op]
            return [lift(lambda x, y: fn(int(x), int(y)), x, y) for x, y in zip(a, b, strict=True)]
        if isinstance(a, list) and op in ("<<", ">>"):
            n = self.int_of(b, node)
            size = len(a)
            value = _bits_value(a)
            shifted = lift(
                lambda v: ((_as_int(v) << n) if op == "<<" else (_as_int(v) >> n)) % (1 << size),
                value,
            )
            return [lift(lambda v, i=i: (int(v) >> i) & 1, shifted) for i in range(size)]
        if isinstance(a, list):
            a = _bits_value(a)
        if isinstance(b, list):
            b = _bits_value(b)
        found = _BINARY.get(op)
        if found is None:
            raise _error(node, f"unsupported operator '{op}'")
        fn = found
        if op in ("<<", "**") and _too_big(a, b, op, self.limits.register_bits):
            raise _error(
                node,
                f"'{op}' would make an integer wider than {self.limits.register_bits} bits "
                "(the widest register)",
            )
        if op == "^" and self.version2:
            fn = _BINARY["**"]
        try:
            return lift(fn, a, b)
        except ZeroDivisionError:
            raise _error(node, "division by zero") from None
        except (OverflowError, ValueError, TypeError) as exc:
            raise _error(node, f"cannot evaluate expression: {exc}") from None

    def duration_arith(self, op: str, a: Any, b: Any, node: Any) -> Any:
        if isinstance(a, Dyn) or isinstance(b, Dyn):
            raise _error(node, "a duration cannot depend on a measurement result of the shot")
        if op == "+" and isinstance(a, Linear) and isinstance(b, Linear):
            return a.add(b)
        if op == "-" and isinstance(a, Linear) and isinstance(b, Linear):
            return a.add(b.scale(-1.0))
        if op == "*" and isinstance(a, Linear) and not isinstance(b, Linear):
            return a.scale(float(_num(b)))
        if op == "*" and isinstance(b, Linear) and not isinstance(a, Linear):
            return b.scale(float(_num(a)))
        if op == "/" and isinstance(a, Linear) and isinstance(b, Linear):
            if a.terms or b.terms:
                raise _error(node, "a ratio of durations cannot contain a stretch")
            return a.seconds / b.seconds
        if op == "/" and isinstance(a, Linear):
            return a.scale(1.0 / float(_num(b)))
        if (
            op in ("==", "!=", "<", "<=", ">", ">=")
            and isinstance(a, Linear)
            and isinstance(b, Linear)
        ):
            if a.terms or b.terms:
                raise _error(node, "a comparison of durations cannot contain a stretch")
            return _BINARY[op](a.seconds, b.seconds)
        raise _error(node, f"operator '{op}' does not apply to these durations")

    def index_value(self, base: Any, index: Any, env: _Env, node: Any) -> Any:
        items = index if isinstance(index, list) else [index]
        value = base
        for item in items:
            if isinstance(value, _AngleBits) or (
                isinstance(value, int | Dyn) and not isinstance(value, bool)
            ):
                width = value.w if isinstance(value, _AngleBits) else 64
                k = value.k if isinstance(value, _AngleBits) else value
                i = self.int_of(self.eval(item, env), node)
                if not 0 <= i < width:
                    raise _error(node, f"bit index {i} out of range")
                value = lift(lambda v, i=i: (_as_int(v) >> i) & 1, k)
                continue
            if not isinstance(value, list):
                raise _error(node, "only registers, arrays and integers can be indexed")
            size = len(value)
            if isinstance(item, (ast.RangeDefinition, ast.DiscreteSet)):
                idx = self.index_list(item, size, env, node)
                value = [value[i] for i in idx]
                continue
            i = self.int_of(self.eval(item, env), node)
            if i < 0:
                i += size
            if not 0 <= i < size:
                raise _error(node, f"index {i} out of range for size {size}")
            value = value[i]
        return value

    def index_list(self, item: Any, size: int, env: _Env, node: Any) -> list[int]:
        if isinstance(item, ast.DiscreteSet):
            out = []
            for v in item.values:
                i = self.int_of(self.eval(v, env), node)
                out.append(i + size if i < 0 else i)
        else:
            start = 0 if item.start is None else self.int_of(self.eval(item.start, env), node)
            end = size - 1 if item.end is None else self.int_of(self.eval(item.end, env), node)
            step = 1 if item.step is None else self.int_of(self.eval(item.step, env), node)
            out = list(self.bounded_range(start, end, step, node, limit=size + 1))
            out = [i + size if i < 0 else i for i in out]
        for i in out:
            if not 0 <= i < size:
                raise _error(node, f"index {i} out of range for size {size}")
        return out

    def bounded_range(
        self, start: int, end: int, step: int, node: Any, limit: int | None = None
    ) -> range:
        """An inclusive OpenQASM range, its length checked before it is iterated."""
        if step == 0:
            raise _error(node, "range step must not be zero")
        count = max(0, (end - start) // step + 1)
        cap = self.limits.loop_iterations if limit is None else limit
        if count > cap:
            raise _error(
                node,
                f"range [{start}:{step}:{end}] has {count} elements; the limit is {cap}",
            )
        return range(start, end + (1 if step > 0 else -1), step)

    def int_of(self, value: Any, node: Any) -> int:
        if isinstance(value, Dyn):
            raise _error(node, "this needs a value known when compiling, not a measurement result")
        if isinstance(value, list):
            value = _bits_value(value)
        if isinstance(value, _AngleBits):
            return value.k
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, float):
            if not value.is_integer():
                raise _error(node, f"expected an integer, got {value}")
            return int(value)
        if isinstance(value, int):
            return value
        raise _error(node, f"expected an integer, got {_kind_of_value(value)}")

    def value(self, node: Any, scope: Any) -> float:
        """Gate parameters: from a gate body's scope, or from the program's environment."""
        if isinstance(scope, _Env):
            v = self.eval(node, scope)
            if isinstance(v, Dyn):
                raise _error(node, "a measurement result cannot be used here")
            if isinstance(v, list):
                v = _bits_value(v)
            return float(_num(v))
        return super().value(node, scope)

    # --- calls -----------------------------------------------------------------------------

    def call(self, node: ast.FunctionCall, env: _Env) -> Any:
        name = node.name.name
        if name in self.subs:
            return self.call_sub(self.subs[name], node.arguments, [], env, node)
        if name in self.externs:
            args = [self.eval(a, env) for a in node.arguments]
            fn = EXTERNS[name][1]
            if len(args) != 1 or not isinstance(args[0], list):
                raise _error(node, f"extern '{name}' takes one bit register")
            bits = args[0]
            return lift(lambda *bs: fn([int(b) for b in bs]), *bits)
        if name in _FUNCTIONS:
            if len(node.arguments) != 1:
                raise _error(node, f"{name} takes one argument")
            arg = self.eval(node.arguments[0], env)
            try:
                return lift(lambda x: _FUNCTIONS[name](float(_num(x))), arg)
            except (ValueError, OverflowError) as exc:
                raise _error(node, f"cannot evaluate {name}: {exc}") from None
        if name in ("popcount",) and len(node.arguments) == 1:
            bits = self.eval(node.arguments[0], env)
            if isinstance(bits, list):
                return lift(lambda *bs: sum(int(b) for b in bs), *bits)
        if name in ("mod",) and len(node.arguments) == 2:
            a, b = (self.eval(x, env) for x in node.arguments)
            return lift(lambda x, y: math.fmod(_num(x), _num(y)), a, b)
        raise _error(node, f"undefined function '{name}'")

    def call_sub(
        self, sub: _Sub, args: list[Any], qubit_args: list[Any], env: _Env, node: Any
    ) -> Any:
        if self.depth >= self.limits.call_depth:
            raise _error(node, f"subroutine calls nest deeper than {self.limits.call_depth}")
        params = sub.node.arguments
        given = list(args) + list(qubit_args)
        if len(given) != len(params):
            raise _error(
                node, f"subroutine '{sub.name}' takes {len(params)} argument(s), {len(given)} given"
            )
        local = _Env(parent=self.globals, boundary=True)
        for param, arg in zip(params, given, strict=True):
            pname = param.name.name
            if isinstance(param, ast.QuantumArgument):
                qubits = self.qubit_expr(arg, env)
                size = 1 if param.size is None else self.int_of(self.eval(param.size, local), param)
                if len(qubits) != size:
                    raise _error(
                        node,
                        f"argument '{pname}' of '{sub.name}' is {size} qubit(s), got {len(qubits)}",
                    )
                local.qubits[pname] = qubits
                continue
            if isinstance(param.type, ast.ArrayReferenceType):
                data = self.eval(arg, env)
                local.vars[pname] = _Var(
                    "array", None, {"kind": "ref", "width": None, "data": data}
                )
                continue
            kind, width = self.type_of(param.type, local, param)
            value = self.eval(arg, env)
            local.vars[pname] = _Var(kind, width, self.coerce(kind, width, value, node))
        self.depth += 1
        result: Any = None
        saved_base, self.flow_base = self.flow_base, self.condition
        try:
            self.block(sub.node.body, local)
        except _Return as ret:
            result = ret.value
        finally:
            self.depth -= 1
            self.flow_base = saved_base
        rt = sub.node.return_type
        if rt is not None and result is not None:
            kind, width = self.type_of(rt, local, node)
            result = self.read(_Var(kind, width, self.coerce(kind, width, result, node)))
        return result

    # --- quantum ---------------------------------------------------------------------------

    def qubit_operand(self, node: Any, env: _Env) -> list[int]:
        return self.qubit_expr(node, env)

    def qubit_expr(self, node: Any, env: _Env) -> list[int]:
        if isinstance(node, ast.Identifier):
            found = env.find_qubits(node.name)
            if found is not None:
                return list(found)
            if node.name.startswith("$"):
                return [self.physical_qubit(node, node.name)]
            if node.name not in self.qregs:
                raise _error(node, f"undeclared qubit register '{node.name}'")
            start, size = self.qregs[node.name]
            return list(range(start, start + size))
        if isinstance(node, ast.IndexedIdentifier):
            base = self.qubit_expr(node.name, env)
            for index in node.indices:
                base = self.select_qubits(base, index, env, node)
            return base
        if isinstance(node, ast.IndexExpression):
            base = self.qubit_expr(node.collection, env)
            return self.select_qubits(base, node.index, env, node)
        if isinstance(node, ast.Concatenation):
            return self.qubit_expr(node.lhs, env) + self.qubit_expr(node.rhs, env)
        raise _error(node, f"unsupported qubit operand: {_describe(node)}")

    def select_qubits(self, base: list[int], index: Any, env: _Env, node: Any) -> list[int]:
        items = index.values if isinstance(index, ast.DiscreteSet) else index
        if isinstance(index, ast.DiscreteSet):
            items = [index]
        if not isinstance(items, list):
            items = [items]
        if len(items) > 1:
            # `q[2 * i, 2 * i + 1]` (as the specification's varteleport writes it): a register is
            # one-dimensional, so the comma list is read as the set {2 * i, 2 * i + 1}
            out: list[int] = []
            for it in items:
                out.extend(self.select_qubits(base, [it], env, node))
            return out
        item = items[0]
        if isinstance(item, ast.RangeDefinition | ast.DiscreteSet):
            return [base[i] for i in self.index_list(item, len(base), env, node)]
        i = self.int_of(self.eval(item, env), node)
        if i < 0:
            i += len(base)
        if not 0 <= i < len(base):
            raise _error(node, f"qubit index {i} out of range for a register of {len(base)}")
        return [base[i]]

    def operand(self, node: Any, scope: Any) -> list[int]:
        if isinstance(scope, _Env):
            return self.qubit_expr(node, scope)
        return super().operand(node, scope)

    def gate_statement(self, s: ast.QuantumGate, env: _Env) -> None:
        name = s.name.name
        if name in self.subs:  # `bellprep bp;` calls a subroutine like a gate
            args = [self.eval(a, env) for a in s.arguments]
            lits = [_literal(a) for a in args]
            self.call_sub(self.subs[name], lits, list(s.qubits), env, s)
            return
        if s.duration is not None:
            raise _error(s, "unsupported construct: gate durations (use box[...] or delay)")
        values = [self.eval(a, env) for a in s.arguments]
        dyn = [v for v in values if isinstance(v, Dyn)]
        qubits_known = [self.qubit_expr(q, env) for q in s.qubits]
        cal = self.calibrations.lookup(name, qubits_known, values, self, s)
        if cal is not None:
            self.resolve_timing(None)
            self.emit([cal], s)
            return
        if not dyn:
            expansion = self.gate_call(s, env, 0)  # type: ignore[arg-type]
            self.emit(expansion.ops, s)
            self.global_phase += expansion.phase
            return
        combined = lift(lambda *vs: tuple(float(_num(v)) for v in vs), *values)
        assert isinstance(combined, Dyn)
        outer = self.condition
        for distinct in sorted(set(combined.table)):
            lits = [ast.FloatLiteral(v) for v in distinct]
            for lit, orig in zip(lits, s.arguments, strict=True):
                lit.span = orig.span
            call = ast.QuantumGate(s.modifiers, s.name, list(lits), s.qubits, None)
            call.span = s.span
            when = lift(lambda v, d=distinct: v == d, combined)
            self.condition = lift(lambda a, b: bool(a) and bool(b), outer, when)
            try:
                expansion = self.gate_call(call, env, 0)  # type: ignore[arg-type]
                self.emit(expansion.ops, s)
            finally:
                self.condition = outer

    def measure_expr(self, m: ast.QuantumMeasurement, env: _Env, node: Any) -> Any:
        qubits = self.qubit_expr(m.qubit, env)
        line = _pos(node)[0] or 0
        bits: list[Any] = []
        for q in qubits:
            rec = self.new_record()
            window = self.calibrations.capture_window(q)  # a `defcal measure $q` of its own
            params = () if window is None else (window,)
            self.emit([Operation("measure", (q,), params, clbits=(rec,), line=line)], node)
            bits.append(select(self.condition, Dyn.record(rec), 0))
        return bits if _is_register_operand(m.qubit, self, env) else bits[0]

    def assign_value(self, target: Any, value: Any, env: _Env, node: Any) -> None:
        """Store `value` into a variable, a bit of it or a slice, under the run-time condition."""
        if isinstance(target, ast.Identifier):
            name = target.name
            indices: list[Any] = []
        else:
            name = target.name.name
            indices = list(target.indices)
        var, crossed = env.find(name)
        if var is None:
            hint = _close_name(name, [*self._visible_names(env)])
            raise _error(target, f"undeclared identifier '{name}'{hint}")
        if var.const:
            raise _error(target, f"'{name}' is a constant")
        if crossed:
            raise _error(target, f"'{name}' is a global variable; a subroutine cannot assign it")
        if not indices:
            if var.kind == "array":
                new = self.fit_array(
                    value, _shape(var.value["data"]), var.value["kind"], var.value["width"], node
                )
                var.value["data"] = new
                return
            new = self.coerce(var.kind, var.width, value, node)
            var.value = self._under_condition(new, var.value)
            if var.kind == "bit":
                self._claim_home(name, var, list(range(len(var.value))))
            return
        if var.kind == "bit":
            pos = self.index_positions(indices, len(var.value), env, node)
            if isinstance(value, list):
                if len(value) != len(pos):
                    raise _error(node, f"assigning {len(value)} bits to {len(pos)}")
                vals = value
            else:
                vals = (
                    [value]
                    if len(pos) == 1
                    else [
                        lift(lambda v, i=i: (_as_int(v) >> i) & 1, value) for i in range(len(pos))
                    ]
                )
            for p, v in zip(pos, vals, strict=True):
                new = lift(lambda b: int(_as_int(b)) & 1, v)
                var.value[p] = self._under_condition(new, var.value[p])
            self._claim_home(name, var, pos)
            return
        if var.kind in ("int", "uint", "angle"):
            width = var.width or 64
            pos = self.index_positions(indices, width, env, node)
            current = var.value
            for i, p in enumerate(pos):
                bit = value if not isinstance(value, list) else value[i]
                current = lift(
                    lambda cur, b, p=p: (int(cur) & ~(1 << p)) | ((int(_as_int(b)) & 1) << p),
                    current,
                    bit,
                )
            var.value = self._under_condition(current, var.value)
            return
        if var.kind == "array":
            data = var.value["data"]
            *head, last = indices
            container = data
            for item in head:
                for sub in item if isinstance(item, list) else [item]:
                    container = container[self.int_of(self.eval(sub, env), node)]
            items = last if isinstance(last, list) else [last]
            if len(items) > 1:
                for sub in items[:-1]:
                    container = container[self.int_of(self.eval(sub, env), node)]
            item = items[-1]
            if isinstance(item, ast.RangeDefinition | ast.DiscreteSet):
                idx = self.index_list(item, len(container), env, node)
                if not isinstance(value, list) or len(value) != len(idx):
                    raise _error(node, "slice assignment needs an array of the same length")
                for i, v in zip(idx, value, strict=True):
                    container[i] = _deep_copy(v)
                return
            i = self.int_of(self.eval(item, env), node)
            if not 0 <= i < len(container):
                raise _error(node, f"index {i} out of range for size {len(container)}")
            old = container[i]
            if isinstance(old, list):
                container[i] = self.fit_array(
                    value, _shape(old), var.value["kind"], var.value["width"], node
                )
            else:
                container[i] = self._under_condition(
                    self.coerce(var.value["kind"], var.value["width"], value, node), old
                )
            return
        raise _error(node, f"'{name}' ({var.kind}) cannot be indexed")

    def _claim_home(self, name: str, var: _Var, positions: list[int]) -> None:
        """A fresh measurement stored into a declared bit takes that bit's own record index,
        so a static program's records are its declared bits (and its results need no map)."""
        if self.condition is not True or self.globals.vars.get(name) is not var:
            return
        start = self.cregs[name][0]
        for p in positions:
            bit = var.value[p]
            if not (isinstance(bit, Dyn) and bit.table == (0, 1) and len(bit.records) == 1):
                continue
            rec = bit.records[0]
            home = start + p
            if rec < _FRESH or rec in self.rename or home in self.home_used:
                continue
            self.rename[rec] = home
            self.home_used.add(home)

    def index_positions(self, indices: list[Any], size: int, env: _Env, node: Any) -> list[int]:
        if len(indices) != 1:
            raise _error(node, "unsupported construct: multi-dimensional bit index")
        index = indices[0]
        items = [index] if isinstance(index, ast.DiscreteSet) else index
        out: list[int] = []
        for item in items:
            if isinstance(item, ast.RangeDefinition | ast.DiscreteSet):
                out.extend(self.index_list(item, size, env, node))
            else:
                i = self.int_of(self.eval(item, env), node)
                if i < 0:
                    i += size
                if not 0 <= i < size:
                    raise _error(node, f"index {i} out of range for size {size}")
                out.append(i)
        return out

    def _under_condition(self, new: Any, old: Any) -> Any:
        if self.condition is True:
            return self.compact(new)
        if isinstance(new, list):
            return [
                self.compact(select(self.condition, n, o)) for n, o in zip(new, old, strict=True)
            ]
        return self.compact(select(self.condition, new, old))

    def assignment(self, s: ast.ClassicalAssignment, env: _Env) -> None:
        op = s.op.name
        if isinstance(s.rvalue, ast.QuantumMeasurement):
            value = self.measure_expr(s.rvalue, env, s)
        else:
            value = self.eval(s.rvalue, env)
        if op != "=":
            current = self.eval(_as_expression(s.lvalue), env)
            binop = op[:-1]
            fake = ast.BinaryExpression(
                ast.BinaryOperator[binop],
                _Const(current),
                _Const(value),
            )
            fake.span = s.span
            value = self.binary(fake, env)
        self.assign_value(s.lvalue, value, env, s)

    # --- control flow ----------------------------------------------------------------------

    def branch(self, s: ast.BranchingStatement, env: _Env) -> None:
        cond = self.eval(s.condition, env)
        if isinstance(cond, list):
            cond = _bits_value(cond)
        if not isinstance(cond, Dyn):
            self.block(s.if_block if cond else s.else_block, _Env(parent=env))
            return
        outer = self.condition
        truth = lift(bool, cond)
        try:
            self.condition = self.compact(lift(lambda a, b: bool(a) and bool(b), outer, truth))
            self.block(s.if_block, _Env(parent=env))
            if s.else_block:
                self.condition = self.compact(lift(lambda a, b: bool(a) and not b, outer, truth))
                self.block(s.else_block, _Env(parent=env))
        finally:
            self.condition = outer

    def switch(self, s: ast.SwitchStatement, env: _Env) -> None:
        target = self.eval(s.target, env)
        if isinstance(target, list):
            target = _bits_value(target)
        outer = self.condition
        matched: Any = False
        try:
            for values, body in s.cases:
                hit: Any = False
                for v in values:
                    hit = lift(lambda h, t, c: bool(h) or t == c, hit, target, self.eval(v, env))
                if hit is False:
                    continue
                self.condition = self.compact(
                    lift(lambda a, h, m: bool(a) and bool(h) and not m, outer, hit, matched)
                )
                if self.condition is not False:
                    self.block(body.statements, _Env(parent=env))
                matched = self.compact(lift(lambda m, h: bool(m) or bool(h), matched, hit))
            if s.default is not None:
                self.condition = self.compact(lift(lambda a, m: bool(a) and not m, outer, matched))
                if self.condition is not False:
                    self.block(s.default.statements, _Env(parent=env))
        finally:
            self.condition = outer

    def loop_values(self, decl: Any, scope: Any, node: Any) -> Sequence[int]:
        if isinstance(scope, _Env):
            return list(self.iter_values(decl, scope, node))
        return super().loop_values(decl, scope, node)

    def iter_values(self, decl: Any, env: _Env, node: Any) -> Any:
        if isinstance(decl, ast.RangeDefinition):
            if decl.start is None or decl.end is None:
                raise _error(node, "for-loop ranges need a start and an end")
            start = self.int_of(self.eval(decl.start, env), node)
            end = self.int_of(self.eval(decl.end, env), node)
            step = 1 if decl.step is None else self.int_of(self.eval(decl.step, env), node)
            return self.bounded_range(start, end, step, node)
        if isinstance(decl, ast.DiscreteSet):
            if len(decl.values) > self.limits.loop_iterations:
                raise _error(
                    node,
                    f"set of {len(decl.values)} values; the limit is {self.limits.loop_iterations}",
                )
            return [self.eval(v, env) for v in decl.values]
        value = self.eval(decl, env)
        if isinstance(value, list):
            return list(value)
        raise _error(node, "a for loop runs over a range, a set or an array")

    def for_in(self, s: ast.ForInLoop, env: _Env) -> None:
        var = s.identifier.name
        kind, width = ("int", None)
        if s.type is not None:
            kind, width = self.type_of(s.type, env, s)
        saved_base, self.flow_base = self.flow_base, self.condition
        try:
            for value in self.iter_values(s.set_declaration, env, s):
                inner = _Env(parent=env)
                inner.vars[var] = _Var(kind, width, self.coerce(kind, width, value, s))
                try:
                    self.block(s.block, inner)
                except _Break:
                    break
                except _Continue:
                    continue
        finally:
            self.flow_base = saved_base

    def while_loop(self, s: ast.WhileLoop, env: _Env) -> None:
        limit = self.limits.while_iterations
        measured = self.limits.measured_while_iterations
        outer = self.condition
        running: Any = outer
        saved_base = self.flow_base
        try:
            for iteration in range(limit + 1):
                self.condition = running
                cond = self.eval(s.while_condition, env)
                if isinstance(cond, list):
                    cond = _bits_value(cond)
                running = self.compact(lift(lambda a, c: bool(a) and bool(c), running, cond))
                if running is False:
                    return
                if isinstance(running, Dyn) and iteration >= measured:
                    self.cut_loop(s, running, measured)
                    return
                if iteration == limit:
                    kind = NeedsShotByShot if isinstance(running, Dyn) else QasmError
                    line, column = _pos(s)
                    raise kind(
                        f"while loop still running after {limit} iterations (the configured "
                        "limit, QasmLimits.while_iterations); its condition "
                        + (
                            "depends on measurement results"
                            if isinstance(running, Dyn)
                            else "never became false"
                        ),
                        line,
                        column,
                    )
                self.condition = running
                self.flow_base = running
                try:
                    self.block(s.block, _Env(parent=env))
                except _Break:
                    return
                except _Continue:
                    continue
        finally:
            self.condition = outer
            self.flow_base = saved_base

    def cut_loop(self, s: ast.WhileLoop, running: Dyn, bound: int) -> None:
        """A loop on measurement results that may still run after `bound` iterations: its
        shots are cut off there (the condition that says so is kept, so every result states
        what fraction it was), or the program is refused if truncation is not allowed."""
        line, column = _pos(s)
        if not self.limits.truncate_measured_loops:
            raise NeedsShotByShot(
                f"while loop on measurement results may still be running after {bound} "
                "iterations, the most a pulse schedule unrolls (QasmLimits."
                "measured_while_iterations), and truncation is off (QasmLimits."
                "truncate_measured_loops)",
                line,
                column,
            )
        self.truncations.append((line or 0, bound, running))

    # --- timing ----------------------------------------------------------------------------

    def delay(self, s: ast.DelayInstruction, env: _Env) -> None:
        length = self.eval(s.duration, env)
        if not isinstance(length, Linear):
            raise _error(s, "delay needs a duration (e.g. delay[100ns] q;)")
        qubits: list[int] = []
        for operand in s.qubits:
            qubits.extend(self.qubit_expr(operand, env))
        if not s.qubits:
            qubits = list(range(self.num_qubits))
        if not length.terms and length.seconds < 0:
            raise _error(s, f"delay of {length.seconds:g} s is negative")
        line = _pos(s)[0] or 0
        op = Operation(
            "delay",
            tuple(dict.fromkeys(qubits)),
            (length.seconds,),
            line=line,
            payload=tuple(sorted(length.terms.items())),
        )
        self.emit([op], s)

    def box(self, s: ast.Box, env: _Env) -> None:
        self.resolve_timing(s)
        start = len(self.ops)
        self.emit([Operation("barrier", ())], s)  # placeholder, filled below
        self.block(s.body, _Env(parent=env))
        qubits = sorted({q for op in self.ops[start + 1 :] for q in op.qubits})
        self.ops[start] = Operation("barrier", tuple(qubits))
        self.sync_index = start
        fixed = None
        if s.duration is not None:
            d = self.eval(s.duration, env)
            if not isinstance(d, Linear) or d.terms:
                raise _error(s, "box[...] needs a fixed duration")
            fixed = d.seconds
        self.resolve_timing(s, fixed_s=fixed, qubits=qubits)
        self.ops.append(Operation("barrier", tuple(qubits)))

    def resolve_timing(
        self, node: Any, fixed_s: float | None = None, qubits: list[int] | None = None
    ) -> None:
        """Give every stretch in the ops since the last sync point its value (see timing)."""
        section = self.ops[self.sync_index :]
        if any(op.name == "delay" and op.payload for op in section):
            try:
                solved = self.timing.solve(section, self.num_qubits, fixed_s, qubits)
            except QasmError as exc:
                raise _error(node, exc.message) if node is not None else exc from None
            self.ops[self.sync_index :] = solved
        self.sync_index = len(self.ops)

    def duration_of(self, target: Any, env: _Env) -> float:
        saved_ops, saved_sync = self.ops, self.sync_index
        self.ops, self.sync_index = [], 0
        try:
            body = target if isinstance(target, list) else [target]
            self.block(body, _Env(parent=env))
            self.resolve_timing(None)
            ops = self.ops
        finally:
            self.ops, self.sync_index = saved_ops, saved_sync
        return self.timing.duration(
            ops, max(self.num_qubits, 1 + max((q for op in ops for q in op.qubits), default=0))
        )


# --- helpers -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _AngleBits:
    """An angle[w] value k · 2π / 2^w, readable as a float and bit by bit."""

    k: int
    w: int

    def __float__(self) -> float:
        return self.k * 2 * math.pi / (1 << self.w)


class _Const(ast.Expression):
    """An already-evaluated operand inside a synthesised expression."""

    def __init__(self, value: Any) -> None:
        self.value = value
        self.span = None


def _literal(value: Any) -> Any:
    node = ast.FloatLiteral(float(_num(value)))
    return node


def _too_big(a: Any, b: Any, op: str, bits: int) -> bool:
    """Whether `a << b` or `a ** b` (integers, not run-time values) would exceed `bits`."""
    if isinstance(a, Dyn) or isinstance(b, Dyn) or isinstance(a, _AngleBits):
        return False
    if not isinstance(b, int) or isinstance(b, bool) or not isinstance(a, int):
        return False
    if op == "<<":
        return b > bits
    return b > 0 and abs(a) > 1 and b * max(abs(a).bit_length(), 1) > bits


def _num(x: Any) -> Any:
    if isinstance(x, _AngleBits):
        return float(x)
    if isinstance(x, list):
        return _bits_value(x)
    return x


def _as_int(x: Any) -> int:
    if isinstance(x, _AngleBits):
        return x.k
    if isinstance(x, bool):
        return int(x)
    if isinstance(x, float):
        return int(x)
    if isinstance(x, complex):
        raise TypeError("complex to integer")
    return int(x)


def _bits_value(bits: list[Any]) -> Any:
    if not bits:
        return 0
    return lift(lambda *bs: sum(int(b) << i for i, b in enumerate(bs)), *bits)


def _is_bits(value: list[Any]) -> bool:
    return all(isinstance(v, int | Dyn) for v in value)


def _kind_of_value(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float"
    if isinstance(v, Linear):
        return "duration"
    if isinstance(v, list):
        return "bit"
    return type(v).__name__


def _shape(data: Any) -> list[int]:
    dims = []
    while isinstance(data, list):
        dims.append(len(data))
        data = data[0] if data else None
    return dims


def _deep_copy(v: Any) -> Any:
    return [_deep_copy(x) for x in v] if isinstance(v, list) else v


def _dyn_of(cond: tuple[tuple[int, ...], tuple[int, ...]]) -> Dyn:
    records, accepted = cond
    table = [False] * (1 << len(records))
    for i in accepted:
        table[i] = True
    return Dyn(records, tuple(table))


def _as_expression(lvalue: Any) -> Any:
    if isinstance(lvalue, ast.Identifier):
        return lvalue
    expr: Any = lvalue.name
    for index in lvalue.indices:
        node = ast.IndexExpression(expr, index)
        node.span = lvalue.span
        expr = node
    return expr


def _is_register_operand(node: Any, fe: ProgramFrontend, env: _Env) -> bool:
    if isinstance(node, ast.Identifier):
        reg = fe.qregs.get(node.name)
        found = env.find_qubits(node.name)
        return (reg is not None and reg[1] > 1) or (found is not None and len(found) > 1)
    if isinstance(node, ast.IndexedIdentifier):
        return any(
            isinstance(i, ast.RangeDefinition)
            for idx in node.indices
            for i in (idx if isinstance(idx, list) else [idx])
        ) or any(isinstance(idx, ast.DiscreteSet) for idx in node.indices)
    return False


def _close_name(name: str, names: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, names, n=1, cutoff=0.7)
    return f" (did you mean '{close[0]}'?)" if close else ""


_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: _num(a) + _num(b),
    "-": lambda a, b: _num(a) - _num(b),
    "*": lambda a, b: _num(a) * _num(b),
    "/": lambda a, b: (
        _as_int(a) // _as_int(b)
        if isinstance(_num(a), int) and isinstance(_num(b), int) and not isinstance(a, bool)
        else _num(a) / _num(b)
    ),
    "%": lambda a, b: _as_int(a) % _as_int(b),
    "**": lambda a, b: _num(a) ** _num(b),
    "==": lambda a, b: _num(a) == _num(b),
    "!=": lambda a, b: _num(a) != _num(b),
    "<": lambda a, b: _num(a) < _num(b),
    "<=": lambda a, b: _num(a) <= _num(b),
    ">": lambda a, b: _num(a) > _num(b),
    ">=": lambda a, b: _num(a) >= _num(b),
    "&&": lambda a, b: bool(a) and bool(b),
    "||": lambda a, b: bool(a) or bool(b),
    "&": lambda a, b: _as_int(a) & _as_int(b),
    "|": lambda a, b: _as_int(a) | _as_int(b),
    "^": lambda a, b: _as_int(a) ^ _as_int(b),
    "<<": lambda a, b: (
        _AngleBits((a.k << _as_int(b)) % (1 << a.w), a.w)
        if isinstance(a, _AngleBits)
        else _as_int(a) << _as_int(b)
    ),
    ">>": lambda a, b: (
        _AngleBits(a.k >> _as_int(b), a.w)
        if isinstance(a, _AngleBits)
        else _as_int(a) >> _as_int(b)
    ),
}
