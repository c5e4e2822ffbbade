"""Classical values known only during a shot: functions of measurement records.

A mid-circuit measurement writes a *record* (one detection result). A classical value computed
from records (`int[2](syn) == 1`, `vote(c)`, an angle built from measured bits) is a `Dyn`: the
records it depends on and its value for every assignment of them. Branches on a `Dyn` become
conditional segments of the pulse schedule: "play this if records (3, 4) read one of {1, 2}".
The truth table is kept whole, so anything the language computes from bits can be a condition;
the price is 2^k entries, so a value may depend on at most `MAX_RECORDS_PER_VALUE` records and
the front end says so when a program needs more.

A value is kept narrow the way a real controller keeps it (ARTIQ kernels, QubiC, Quantinuum's
feed-forward): in registers. When a stored value depends on more than `REGISTER_ABOVE` records
but takes few distinct values (a loop's "still running", a flag updated by every detection),
`Registers.compact` has the controller compute it into *derived records* (one per bit of the
value's index among its distinct values) as soon as its inputs are known; the value is then a
small table over those. A repeat-until-success loop unrolled k times costs O(k) registers and
tables of at most 2^(REGISTER_ABOVE + 1) entries, not one table of 2^k.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

MAX_RECORDS_PER_VALUE = 12
REGISTER_ABOVE = 6  # a stored value over more records than this goes into controller registers


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


# (record, input records, accepted assignments): the controller sets `record` to 1 when the
# inputs read one of the accepted assignments (bit j of an assignment is input j), else to 0
Derived = tuple[int, tuple[int, ...], tuple[int, ...]]


class Registers:
    """The derived records a program asks the controller to compute, in the order they are
    defined (each reads only records measured or derived before it)."""

    def __init__(self, new_record: Callable[[], int]) -> None:
        self.new_record = new_record
        self.defined: list[Derived] = []

    def compact(self, value: Any, above: int = REGISTER_ABOVE) -> Any:
        """`value` itself, or (if it depends on more than `above` records and fewer derived
        records can hold it) the same value as a table over new derived records."""
        if not isinstance(value, Dyn) or len(value.records) <= above:
            return value
        distinct: list[Any] = []
        index: list[int] = []
        for v in value.table:
            for i, d in enumerate(distinct):
                if d == v and type(d) is type(v):
                    index.append(i)
                    break
            else:
                index.append(len(distinct))
                distinct.append(v)
        width = max(1, (len(distinct) - 1).bit_length())
        if width >= len(value.records):
            return value
        made = []
        for j in range(width):
            record = self.new_record()
            accepted = tuple(a for a, i in enumerate(index) if (i >> j) & 1)
            self.defined.append((record, value.records, accepted))
            made.append(record)
        table = tuple(distinct[i] if i < len(distinct) else distinct[0] for i in range(1 << width))
        return Dyn(tuple(made), table)


def derived_values(bits: int, derived: list[Derived]) -> int:
    """`bits` (records by index) with every derived record computed, in definition order."""
    for record, inputs, accepted in derived:
        assignment = 0
        for j, r in enumerate(inputs):
            assignment |= ((bits >> r) & 1) << j
        if assignment in accepted:
            bits |= 1 << record
        else:
            bits &= ~(1 << record)
    return bits
