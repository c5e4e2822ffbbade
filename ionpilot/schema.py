"""Typed settings built from a YAML tree by their dataclass type hints, with every error collected.

Each subsystem owns its settings as frozen dataclasses (importing nothing of ours); this module is the
one place that knows how YAML becomes those objects. `Annotated[float, "Hz"]` is a quantity written
with its unit ("25 MHz"); `Quantity` is a quantity whose unit is checked later (it depends on which
parameter it limits).
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from ionpilot.core.units import Quantity, UnitError, parse_quantity
from ionpilot.yamltree import Mark, Node

_TAG = "tag:yaml.org,2002:"


@dataclass(frozen=True)
class SchemaIssue:
    """One configuration error: where, which dotted key, what was found, what is allowed."""

    mark: Mark
    key: str
    message: str

    def __str__(self) -> str:
        key = f" {self.key}:" if self.key else ""
        return f"{self.mark}:{key} {self.message}"


class _Invalid:
    """Marks a value that failed to build; its error is already recorded."""


INVALID: Any = _Invalid()


def _found(node: Node) -> str:
    if node.kind == "map":
        return "a mapping"
    if node.kind == "seq":
        return "a list"
    if node.tag == _TAG + "null":
        return "nothing (null)"
    return f"'{node.scalar}'"


class SettingsBuilder:
    """Builds dataclass instances from nodes; records a `SchemaIssue` per problem and a mark per key."""

    def __init__(self) -> None:
        self.issues: list[SchemaIssue] = []
        self.marks: dict[str, Mark] = {}

    def error(self, node: Node, key: str, message: str) -> Any:
        self.issues.append(SchemaIssue(node.mark, key, message))
        return INVALID

    def build(self, hint: Any, node: Node, key: str) -> Any:
        self.marks[key] = node.mark
        origin = get_origin(hint)
        if origin is typing.Annotated:
            base, *meta = get_args(hint)
            units = [m for m in meta if isinstance(m, str)]
            if base is float and units:
                return self._quantity(node, key, units[0])
            return self.build(base, node, key)
        if hint is Any:
            return node.to_data()
        if hint is Quantity:
            return self._quantity(node, key, None)
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            return self._dataclass(hint, node, key)
        if origin in (Union, types.UnionType):
            return self._union(get_args(hint), node, key)
        if origin is Literal:
            return self._literal(get_args(hint), node, key)
        if origin in (list, tuple):
            return self._sequence(hint, origin, node, key)
        if origin is dict:
            return self._mapping(get_args(hint)[1], node, key)
        if hint in (bool, int, float, str):
            return self._scalar(hint, node, key)
        raise TypeError(f"settings type {hint!r} at {key} is not supported by the config loader")

    def _quantity(self, node: Node, key: str, unit: str | None) -> Any:
        if node.kind != "scalar" or node.tag == _TAG + "null":
            return self.error(node, key, f"expected a quantity with a unit, found {_found(node)}")
        if unit == "":  # dimensionless quantity: a plain number
            return self._scalar(float, node, key)
        try:
            q = parse_quantity(node.scalar, unit)
        except UnitError as exc:
            return self.error(node, key, f"found '{node.scalar}': {exc}")
        return q if unit is None else q.value

    def _scalar(self, hint: type, node: Node, key: str) -> Any:
        name = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}[hint]
        if node.kind != "scalar":
            return self.error(node, key, f"expected {name}, found {_found(node)}")
        value = node.scalar_value()
        if hint is str:
            if node.tag != _TAG + "str":
                return self.error(node, key, f"expected text, found {_found(node)} (quote it)")
            return value
        if hint is bool:
            if not isinstance(value, bool):
                return self.error(node, key, f"expected true or false, found {_found(node)}")
            return value
        if hint is int:
            if isinstance(value, bool) or not isinstance(value, int):
                return self.error(node, key, f"expected a whole number, found {_found(node)}")
            return value
        # float: YAML 1.1 reads '1e-3' as text, so a numeric string is accepted as a number
        if isinstance(value, bool):
            return self.error(node, key, f"expected a number, found {_found(node)}")
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        hint_text = ""
        if isinstance(value, str) and any(c.isalpha() for c in value):
            hint_text = " (this key takes a plain number; its unit is in its name)"
        return self.error(node, key, f"expected a number, found {_found(node)}{hint_text}")

    def _literal(self, choices: tuple[Any, ...], node: Node, key: str) -> Any:
        value = node.scalar_value() if node.kind == "scalar" else None
        if (
            node.kind == "scalar"
            and value in choices
            and type(value) is type(choices[choices.index(value)])
        ):
            return value
        allowed = ", ".join(repr(c) if not isinstance(c, str) else c for c in choices)
        return self.error(node, key, f"found {_found(node)}; allowed: {allowed}")

    def _union(self, options: tuple[Any, ...], node: Node, key: str) -> Any:
        if type(None) in options and node.kind == "scalar" and node.tag == _TAG + "null":
            return None
        rest = [o for o in options if o is not type(None)]
        if len(rest) == 1:
            return self.build(rest[0], node, key)
        for option in rest:  # first option that builds without error wins
            trial = SettingsBuilder()
            value = trial.build(option, node, key)
            if not trial.issues:
                self.marks.update(trial.marks)
                return value
        return self.build(rest[0], node, key)

    def _sequence(self, hint: Any, origin: type, node: Node, key: str) -> Any:
        if node.kind != "seq":
            return self.error(node, key, f"expected a list, found {_found(node)}")
        args = get_args(hint)
        item = args[0]
        values = [self.build(item, e, f"{key}[{i}]") for i, e in enumerate(node.elements)]
        if any(v is INVALID for v in values):
            return INVALID
        return tuple(values) if origin is tuple else values

    def _mapping(self, value_hint: Any, node: Node, key: str) -> Any:
        if node.kind != "map":
            if node.kind == "scalar" and node.tag == _TAG + "null":
                return {}
            return self.error(node, key, f"expected a mapping, found {_found(node)}")
        result: dict[str, Any] = {}
        for name, child in node.items.items():
            self.marks[f"{key}.{name}" if key else name] = node.key_marks[name]
            result[name] = self.build(value_hint, child, f"{key}.{name}" if key else name)
        if any(v is INVALID for v in result.values()):
            return INVALID
        return result

    def _dataclass(self, cls: type, node: Node, key: str) -> Any:
        if node.kind == "scalar" and node.tag == _TAG + "null":
            node = Node("map", node.mark)
        if node.kind != "map":
            return self.error(
                node, key, f"expected a mapping of {cls.__name__} settings, found {_found(node)}"
            )
        hints = get_type_hints(cls, include_extras=True)
        fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
        kwargs: dict[str, Any] = {}
        for name, child in node.items.items():
            dotted = f"{key}.{name}" if key else name
            if name not in fields:
                close = difflib.get_close_matches(name, list(fields), n=1)
                suggestion = f" (did you mean '{close[0]}'?)" if close else ""
                self.issues.append(
                    SchemaIssue(
                        node.key_marks[name],
                        dotted,
                        f"unknown key '{name}'{suggestion}; allowed: {', '.join(fields)}",
                    )
                )
                continue
            kwargs[name] = self.build(hints[name], child, dotted)
        for name, f in fields.items():
            if name in kwargs:
                continue
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                dotted = f"{key}.{name}" if key else name
                self.issues.append(SchemaIssue(node.mark, dotted, f"missing required key '{name}'"))
                kwargs[name] = INVALID
        if any(v is INVALID for v in kwargs.values()):
            return INVALID
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:  # a settings class's own __post_init__ check
            return self.error(node, key, str(exc))
