"""Classical values known only during a shot: functions of measurement records.

A mid-circuit measurement writes a *record* (one detection result). A classical value computed
from records (`int[2](syn) == 1`, `vote(c)`, an angle built from measured bits) is a `Dyn`: the
records it depends on and its value for every assignment of them. Branches on a `Dyn` become
conditional segments of the pulse schedule: "play this if records (3, 4) read one of {1, 2}".
The truth table is kept whole, so anything the language computes from bits can be a condition;
the price is 2^k entries, so a value may depend on at most `MAX_RECORDS_PER_VALUE` records and
the front end says so when a program needs more.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_RECORDS_PER_VALUE = 12


class DynTooWide(Exception):
    """A run-time value would depend on more records than the table limit allows."""

    def __init__(self, count: int) -> None:
        super().__init__(count)
        self.count = count


@dataclass(frozen=True, slots=True)
class Dyn:
    """A value that depends on measurement records: `table[i]` is its value when record
    `records[j]` reads bit j of i."""

    records: tuple[int, ...]
    table: tuple[Any, ...]

    @staticmethod
    def record(index: int) -> Dyn:
        """The bit a detection reads into record `index`."""
        return Dyn((index,), (0, 1))


def lift(fn: Callable[..., Any], *args: Any) -> Any:
    """`fn` applied to values of which any may be a `Dyn`; a constant if the result is one."""
    dyns = [a for a in args if isinstance(a, Dyn)]
    if not dyns:
        return fn(*args)
    records = tuple(sorted({r for d in dyns for r in d.records}))
    if len(records) > MAX_RECORDS_PER_VALUE:
        raise DynTooWide(len(records))
    position = {r: i for i, r in enumerate(records)}
    maps: list[list[int] | None] = []
    for a in args:
        if isinstance(a, Dyn):
            maps.append([position[r] for r in a.records])
        else:
            maps.append(None)
    table = []
    for i in range(1 << len(records)):
        values = []
        for a, m in zip(args, maps, strict=True):
            if m is None:
                values.append(a)
            else:
                sub = 0
                for j, pos in enumerate(m):
                    sub |= ((i >> pos) & 1) << j
                values.append(a.table[sub])
        table.append(fn(*values))
    first = table[0]
    if all(v == first for v in table):
        return first
    return Dyn(records, tuple(table))


def select(condition: Any, when_true: Any, when_false: Any) -> Any:
    """`when_true` where `condition` holds, else `when_false` (any of them may be a `Dyn`)."""
    return lift(lambda c, a, b: a if c else b, condition, when_true, when_false)


def accepting(condition: Any) -> tuple[tuple[int, ...], tuple[int, ...]] | bool:
    """A boolean value as (records, the record assignments for which it holds), or a constant."""
    if not isinstance(condition, Dyn):
        return bool(condition)
    return condition.records, tuple(i for i, v in enumerate(condition.table) if v)


def renumber(value: Any, mapping: Callable[[int], int]) -> Any:
    """The same value with record indices renamed (the table re-ordered to match)."""
    if not isinstance(value, Dyn):
        return value
    moved = [mapping(r) for r in value.records]
    order = sorted(range(len(moved)), key=lambda j: moved[j])
    records = tuple(moved[j] for j in order)
    if order == list(range(len(moved))):
        return Dyn(records, value.table)
    table = []
    for i in range(len(value.table)):
        old = 0
        for new_pos, j in enumerate(order):
            old |= ((i >> new_pos) & 1) << j
        table.append(value.table[old])
    return Dyn(records, tuple(table))
