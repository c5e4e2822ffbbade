"""The DeCoF command language of TOPTICA's controllers: a small Scheme. The command line
evaluates one expression per line (`(param-ref 'laser1:dl:cc:current-act)`, but also
quasiquoted lists of several reads and `(+ (param-set! ...) ...)`, as real clients send); this
module reads, evaluates and prints those expressions against a parameter table supplied by the
model. Only the forms a lab client uses are built in; anything else is an error, as on the
device (PROTOCOLS.md §6)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias


@dataclass(frozen=True)
class Symbol:
    name: str


#: DeCoF values: #t/#f, integers, reals, strings, symbols and lists of those
Value: TypeAlias = "bool | int | float | str | Symbol | list[Value]"


class DecofError(Exception):
    """One `Error: <code> <text>` reply line; nothing was applied."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"Error: {code} {text}")
        self.code = code
        self.text = text


# Error codes of the simulated command line (the texts are ours; clients key on `Error:`).
SYNTAX = 1
UNKNOWN_PARAMETER = 2
OUT_OF_RANGE = 3
READ_ONLY = 4
WRONG_TYPE = 5
UNKNOWN_COMMAND = 6
ACCESS_DENIED = 7


def syntax_error(detail: str) -> DecofError:
    return DecofError(SYNTAX, f"syntax error: {detail}")


_TOKEN = re.compile(
    r"""\s*(?:(?P<open>\()|(?P<close>\))|(?P<quote>')|(?P<quasi>`)|(?P<unquote>,)|"""
    r"""(?P<string>"(?:[^"\\]|\\.)*")|(?P<atom>[^\s()'`,"]+))"""
)


def read(text: str) -> Value:
    """One expression from a request line; trailing text is a syntax error."""
    tokens = _tokenize(text)
    if not tokens:
        raise syntax_error("empty expression")
    value, pos = _read_at(tokens, 0)
    if pos != len(tokens):
        raise syntax_error("text after the expression")
    return value


def _tokenize(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise syntax_error(f"cannot read {text[pos : pos + 20]!r}")
        kind = m.lastgroup or ""
        out.append((kind, m.group(kind)))
        pos = m.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


_PREFIX = {"quote": "quote", "quasi": "quasiquote", "unquote": "unquote"}


MAX_DEPTH = 32  # deeper nesting is refused (no lab expression comes close)


def _read_at(tokens: list[tuple[str, str]], pos: int, depth: int = 0) -> tuple[Value, int]:
    if pos >= len(tokens):
        raise syntax_error("unbalanced parentheses")
    if depth > MAX_DEPTH:
        raise syntax_error(f"nested deeper than {MAX_DEPTH}")
    kind, text = tokens[pos]
    if kind == "open":
        items: list[Value] = []
        pos += 1
        while True:
            if pos >= len(tokens):
                raise syntax_error("unbalanced parentheses")
            if tokens[pos][0] == "close":
                return items, pos + 1
            item, pos = _read_at(tokens, pos, depth + 1)
            items.append(item)
    if kind == "close":
        raise syntax_error("unbalanced parentheses")
    if kind in _PREFIX:
        inner, pos = _read_at(tokens, pos + 1, depth + 1)
        return [Symbol(_PREFIX[kind]), inner], pos
    if kind == "string":
        return _unescape(text[1:-1]), pos + 1
    return _atom(text), pos + 1


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", r"\1", body)


def _atom(text: str) -> Value:
    low = text.lower()
    if low == "#t":
        return True
    if low == "#f":
        return False
    if re.fullmatch(r"[-+]?\d{1,18}", text):
        return int(text)
    if re.fullmatch(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?", text):
        return float(text)
    return Symbol(text)


def show(value: Value) -> str:
    """A value as the command line prints it."""
    if isinstance(value, bool):
        return "#t" if value else "#f"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.6f}"
    if isinstance(value, Symbol):
        return value.name
    if isinstance(value, list):
        return "(" + " ".join(show(v) for v in value) + ")"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Commands:
    """What an evaluator needs from the model: parameter access and `exec` commands. This
    base offers none of them (the monitoring line evaluates only literals)."""

    def param_ref(self, name: str) -> Value:
        raise DecofError(UNKNOWN_COMMAND, "param-ref is not available here")

    def param_set(self, name: str, value: Value) -> int:
        raise DecofError(UNKNOWN_COMMAND, "param-set! is not available here")

    def param_gsv(self, name: str) -> Value:
        raise DecofError(UNKNOWN_COMMAND, "param-gsv is not available here")

    def exec(self, name: str, args: list[Value]) -> Value:
        raise DecofError(UNKNOWN_COMMAND, "exec is not available here")


def evaluate(expr: Value, commands: Commands) -> Value:
    """Evaluate one expression: literals stand for themselves, lists are calls."""
    if isinstance(expr, Symbol):
        raise DecofError(UNKNOWN_COMMAND, f"unbound variable {expr.name}")
    if not isinstance(expr, list):
        return expr
    if not expr:
        raise syntax_error("empty call ()")
    head, *args = expr
    if not isinstance(head, Symbol):
        raise syntax_error("call of a non-procedure")
    op = head.name.lower()
    if op == "quote":
        _arity(op, args, 1)
        return args[0]
    if op == "quasiquote":
        _arity(op, args, 1)
        return _quasi(args[0], commands)
    if op == "unquote":
        raise syntax_error("unquote outside quasiquote")
    special = _SPECIAL.get(op)
    if special is not None:
        return special(args, commands)
    values = [evaluate(a, commands) for a in args]
    builtin = _BUILTINS.get(op)
    if builtin is None:
        raise DecofError(UNKNOWN_COMMAND, f"unknown command {head.name}")
    return builtin(values)


def _quasi(template: Value, commands: Commands) -> Value:
    if isinstance(template, list):
        if len(template) == 2 and template[0] == Symbol("unquote"):
            return evaluate(template[1], commands)
        return [_quasi(item, commands) for item in template]
    return template


def _arity(op: str, args: list[Value], n: int) -> None:
    if len(args) != n:
        raise syntax_error(f"{op} takes {n} argument{'s' if n != 1 else ''}")


def _name(op: str, arg: Value, commands: Commands) -> str:
    value = evaluate(arg, commands)
    if isinstance(value, Symbol):
        return value.name
    if isinstance(value, str):
        return value
    raise DecofError(WRONG_TYPE, f"{op}: parameter name must be a symbol or string")


def _param_ref(args: list[Value], c: Commands) -> Value:
    _arity("param-ref", args, 1)
    return c.param_ref(_name("param-ref", args[0], c))


def _param_gsv(args: list[Value], c: Commands) -> Value:
    _arity("param-gsv", args, 1)
    return c.param_gsv(_name("param-gsv", args[0], c))


def _param_set(args: list[Value], c: Commands) -> Value:
    _arity("param-set!", args, 2)
    name = _name("param-set!", args[0], c)
    return c.param_set(name, evaluate(args[1], c))


def _exec(args: list[Value], c: Commands) -> Value:
    if not args:
        raise syntax_error("exec takes a command name")
    name = _name("exec", args[0], c)
    return c.exec(name, [evaluate(a, c) for a in args[1:]])


_SPECIAL: dict[str, Callable[[list[Value], Commands], Value]] = {
    "param-ref": _param_ref,
    "param-gsv": _param_gsv,
    "param-set!": _param_set,
    "exec": _exec,
}


def _numbers(op: str, values: list[Value]) -> list[int | float]:
    out: list[int | float] = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise DecofError(WRONG_TYPE, f"{op}: not a number: {show(v)}")
        out.append(v)
    return out


def _bounded(value: int | float) -> int | float:
    """Results stay within the device's 64-bit integers and doubles."""
    if abs(value) > 2**63 - 1 and (isinstance(value, int) or not math.isfinite(value)):
        raise DecofError(OUT_OF_RANGE, "arithmetic overflow")
    return value


def _plus(values: list[Value]) -> Value:
    return _bounded(sum(_numbers("+", values), 0))


def _minus(values: list[Value]) -> Value:
    nums = _numbers("-", values)
    if not nums:
        raise syntax_error("- takes at least one argument")
    return _bounded(-nums[0] if len(nums) == 1 else nums[0] - sum(nums[1:]))


def _times(values: list[Value]) -> Value:
    out: int | float = 1
    for n in _numbers("*", values):
        out = _bounded(out * n)
    return out


_BUILTINS: dict[str, Callable[[list[Value]], Value]] = {
    "+": _plus,
    "-": _minus,
    "*": _times,
    "list": list,
}
