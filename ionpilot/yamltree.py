"""YAML read into a tree that remembers where every value came from (file, line, column),
with `include:` files merged underneath, so every configuration error can point at its line."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

INCLUDE_KEY = "include"


@dataclass(frozen=True)
class Mark:
    """A place in a configuration file (1-based line and column)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass
class Node:
    """A YAML value with its place. Mappings keep insertion order; keys are plain strings."""

    kind: str  # "map", "seq" or "scalar"
    mark: Mark
    tag: str = ""
    scalar: str = ""
    items: dict[str, Node] = field(default_factory=dict)
    key_marks: dict[str, Mark] = field(default_factory=dict)
    elements: list[Node] = field(default_factory=list)

    def scalar_value(self) -> Any:
        """The scalar as YAML resolves it (int, float, bool, None or str)."""
        return _resolve_scalar(self.tag, self.scalar)

    def to_data(self) -> Any:
        if self.kind == "map":
            return {k: v.to_data() for k, v in self.items.items()}
        if self.kind == "seq":
            return [e.to_data() for e in self.elements]
        return self.scalar_value()

    def walk(self, path: str = "") -> Iterator[tuple[str, Node]]:
        yield path, self
        if self.kind == "map":
            for key, child in self.items.items():
                yield from child.walk(f"{path}.{key}" if path else key)
        elif self.kind == "seq":
            for i, child in enumerate(self.elements):
                yield from child.walk(f"{path}[{i}]")


@dataclass(frozen=True)
class LoadIssue:
    """A problem found while reading files, before any schema is applied."""

    mark: Mark
    key: str
    message: str


_CONSTRUCTOR = yaml.SafeLoader(stream="")


def _resolve_scalar(tag: str, text: str) -> Any:
    node = yaml.ScalarNode(tag, text)
    return _CONSTRUCTOR.construct_object(node)


def _mark(file: str, ymark: Any) -> Mark:
    return Mark(file, int(ymark.line) + 1, int(ymark.column) + 1)


def _convert(ynode: yaml.Node, file: str, path: str, issues: list[LoadIssue]) -> Node:
    mark = _mark(file, ynode.start_mark)
    if isinstance(ynode, yaml.MappingNode):
        node = Node("map", mark, tag=ynode.tag)
        for key_node, value_node in ynode.value:
            key_mark = _mark(file, key_node.start_mark)
            if not isinstance(key_node, yaml.ScalarNode):
                issues.append(LoadIssue(key_mark, path, "a key must be a plain name"))
                continue
            key = str(key_node.value)
            dotted = f"{path}.{key}" if path else key
            if key in node.items:
                first = node.key_marks[key]
                issues.append(
                    LoadIssue(
                        key_mark,
                        dotted,
                        f"duplicate key '{key}' (first given at line {first.line})",
                    )
                )
                continue
            node.items[key] = _convert(value_node, file, dotted, issues)
            node.key_marks[key] = key_mark
        return node
    if isinstance(ynode, yaml.SequenceNode):
        return Node(
            "seq",
            mark,
            tag=ynode.tag,
            elements=[_convert(e, file, f"{path}[{i}]", issues) for i, e in enumerate(ynode.value)],
        )
    if ynode.tag.startswith("!") or ynode.tag not in _KNOWN_TAGS:
        issues.append(LoadIssue(mark, path, f"YAML tag '{ynode.tag}' is not allowed here"))
    return Node("scalar", mark, tag=ynode.tag, scalar=str(ynode.value))


_KNOWN_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
}


def _compose(path: Path, issues: list[LoadIssue]) -> Node | None:
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        issues.append(LoadIssue(Mark(file, 0, 0), "", "file not found"))
        return None
    except (OSError, UnicodeDecodeError) as exc:
        issues.append(LoadIssue(Mark(file, 0, 0), "", f"cannot read file: {exc}"))
        return None
    try:
        ynode = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        where = exc.problem_mark or exc.context_mark
        mark = _mark(file, where) if where is not None else Mark(file, 0, 0)
        problem = exc.problem or "invalid YAML"
        context = ""
        if exc.context:
            started = exc.context_mark
            at = (
                f" at line {started.line + 1}"
                if started is not None and where is not started
                else ""
            )
            context = f" ({exc.context}{' started' if at else ''}{at})"
        issues.append(LoadIssue(mark, "", f"YAML syntax error: {problem}{context}"))
        return None
    except yaml.YAMLError as exc:
        issues.append(LoadIssue(Mark(file, 0, 0), "", f"YAML error: {exc}"))
        return None
    if ynode is None:
        return Node("map", Mark(file, 1, 1))
    return _convert(ynode, file, "", issues)


def merge(base: Node, top: Node) -> Node:
    """Deep-merge: mappings merge key by key, anything else in `top` replaces `base`."""
    if base.kind != "map" or top.kind != "map":
        return top
    merged = Node("map", top.mark, tag=top.tag)
    merged.items = dict(base.items)
    merged.key_marks = dict(base.key_marks)
    for key, value in top.items.items():
        merged.items[key] = merge(base.items[key], value) if key in base.items else value
        merged.key_marks[key] = top.key_marks[key]
    return merged


def load_tree(
    path: str | Path, issues: list[LoadIssue], _stack: tuple[Path, ...] = ()
) -> Node | None:
    """Read `path` and the files it includes (relative to it), merged: includes first, then the file."""
    path = Path(path)
    resolved = path.resolve()
    root = _compose(path, issues)
    if root is None:
        return None
    if root.kind != "map":
        issues.append(
            LoadIssue(root.mark, "", "the top level of a lab file must be a mapping of sections")
        )
        return None
    include = root.items.pop(INCLUDE_KEY, None)
    root.key_marks.pop(INCLUDE_KEY, None)
    if include is None:
        return root
    entries = include.elements if include.kind == "seq" else [include]
    base: Node | None = None
    for i, entry in enumerate(entries):
        key = f"{INCLUDE_KEY}[{i}]" if include.kind == "seq" else INCLUDE_KEY
        value = entry.scalar_value() if entry.kind == "scalar" else None
        if not isinstance(value, str) or not value:
            issues.append(LoadIssue(entry.mark, key, "an include must be a file name"))
            continue
        target = (path.parent / value).resolve()
        if target in (*_stack, resolved):
            issues.append(LoadIssue(entry.mark, key, f"include cycle: '{value}' includes itself"))
            continue
        if not target.is_file():
            issues.append(LoadIssue(entry.mark, key, f"included file '{value}' does not exist"))
            continue
        included = load_tree(target, issues, (*_stack, resolved))
        if included is not None:
            base = included if base is None else merge(base, included)
    return root if base is None else merge(base, root)
