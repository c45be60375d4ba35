"""Read a YAML file safely and remember where every value came from.

Validation errors must name FILE:LINE:COL, so instead of `yaml.safe_load` we
compose the node tree ourselves and record each node's position while we
build plain Python data from it. The same walk catches duplicated keys, which
PyYAML would silently let the last one win.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import NewsletterError, Problem
from .files import open_regular
from .text import NOT_TEXT_IN_LINES, describe

MAX_BYTES = 1_000_000
# Aliases can make a small file expand exponentially ("billion laughs").
MAX_NODES = 200_000

Loc = tuple[str | int, ...]

try:  # the C parser is ~10x faster; fall back where libyaml is missing
    _Loader: type = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Loader = yaml.SafeLoader


@dataclass
class Source:
    """Plain data read from a YAML file, with the position of each value and key."""

    path: Path
    data: Any
    text: str = ""
    values: dict[Loc, yaml.Node] = field(default_factory=dict)
    keys: dict[Loc, yaml.Node] = field(default_factory=dict)
    # Found while reading (duplicated keys, unreadable values); reported
    # together with validation's problems, not before them.
    problems: list[Problem] = field(default_factory=list)

    def problem(self, loc: Loc, message: str, *, at_key: bool = False, line_offset: int = 0) -> Problem:
        """A `Problem` placed at `loc`, or at its nearest parent that exists."""
        node = self.keys.get(loc) if at_key else None
        probe = loc
        while node is None:
            node = self.values.get(probe)
            if node is None and not probe:
                break
            probe = probe[:-1]
        line = col = None
        if node is not None:
            line, col = node.start_mark.line + 1, node.start_mark.column + 1
            if line_offset:
                line, col = line + line_offset, None
        return Problem(self.path, message, line, col, field_name(loc) or None)


def field_name(loc: Loc) -> str:
    """`("items", 2, "image")` -> `items[2].image`."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def read_text(path: Path, what: str = "file") -> str:
    """The file's text, refusing what is missing, huge, not a regular file or not UTF-8."""
    with open_regular(path, what) as f:
        found = os.fstat(f.fileno())
        if found.st_size > MAX_BYTES:
            raise NewsletterError(Problem(path, f"{found.st_size:,} bytes is too large (the limit is {MAX_BYTES:,})"))
        try:
            # The size can lie (files under /proc say 0, a file can grow): read one byte past the limit, no more.
            raw = f.read(MAX_BYTES + 1)
        except OSError as exc:
            raise NewsletterError(Problem(path, f"cannot read {what}: {exc.strerror}")) from None
    if len(raw) > MAX_BYTES:
        raise NewsletterError(Problem(path, f"is too large (the limit is {MAX_BYTES:,} bytes)"))
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        line_start = raw.rfind(b"\n", 0, exc.start) + 1
        col = len(raw[line_start : exc.start].decode("utf-8", "replace")) + 1
        raise NewsletterError(
            Problem(path, f"not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8", line, col)
        ) from None


def load(path: Path, what: str = "file") -> Source:
    """Parse `path` into a `Source`.

    Raises NewsletterError when the file cannot be read as YAML at all; lesser
    problems are left in `Source.problems`.
    """
    text = read_text(path, what)
    try:
        node = yaml.compose(text, Loader=_AliasPlacingLoader if _has_aliases(text) else _Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = exc.problem or exc.context or "invalid YAML"
        if exc.context and exc.problem:
            message = f"{exc.problem} ({exc.context})"
        if exc.context_mark and exc.context and ("quoted scalar" in exc.context or "flow" in exc.context):
            # The parser notices an unclosed quote or bracket only where the
            # file ends; the place to fix is where it was opened.
            mark = exc.context_mark
            message = f"this {'quote' if 'quoted' in exc.context else 'bracket'} is never closed ({exc.problem})"
        line = mark.line + 1 if mark else None
        col = mark.column + 1 if mark else None
        raise NewsletterError(Problem(path, f"invalid YAML: {message}", line, col)) from None
    except _TooManyValues as exc:
        raise NewsletterError(Problem(path, TOO_MANY, exc.mark.line + 1, exc.mark.column + 1)) from None
    except yaml.YAMLError as exc:
        raise NewsletterError(Problem(path, f"invalid YAML: {exc}")) from None
    source = Source(path, None, text)
    if node is None:
        raise NewsletterError(Problem(path, "the file is empty", 1, 1))
    source.data = _Builder(source, source.problems).build(node, ())
    return source


def _has_aliases(text: str) -> bool:
    """Whether the file uses *aliases (a quick scan with the C parser)."""
    if "*" not in text:
        return False
    try:
        return any(isinstance(event, yaml.AliasEvent) for event in yaml.parse(text, Loader=_Loader))
    except yaml.YAMLError:
        return False  # compose reports it


TOO_MANY = f"more than {MAX_NODES:,} values (too many aliases?)"


class _TooManyValues(Exception):
    """Aliases expanded past MAX_NODES while composing; `mark` is the alias where they did."""

    def __init__(self, mark: yaml.Mark) -> None:
        super().__init__(mark)
        self.mark = mark


class _AliasPlacingLoader(yaml.SafeLoader):
    """A composer that places each use of an alias at the alias, not at its anchor.

    PyYAML hands back the anchored node itself, so a problem in a value reached
    through `*tags` would point at `&tags`. This loader is pure Python and about
    twenty times slower than the C one, so it is used only for files with aliases.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._open: set[str] = set()  # anchors whose collection is being composed
        self._copies = 0  # bounded like the builder's values: aliases can expand exponentially

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = super().compose_node(parent, index)
            # An alias inside its own anchor is a cycle: leave it for the builder to report.
            return node if event.anchor in self._open else self._relocated(node, event.start_mark, {})
        anchor = getattr(event, "anchor", None)
        if anchor is None or isinstance(event, yaml.ScalarEvent):
            return super().compose_node(parent, index)
        self._open.add(anchor)
        try:
            return super().compose_node(parent, index)
        finally:
            self._open.discard(anchor)

    def _relocated(self, node: yaml.Node, mark: yaml.Mark, done: dict[int, yaml.Node]) -> yaml.Node:
        """A copy of `node` and everything in it, all placed at `mark`."""
        if id(node) in done:
            return done[id(node)]
        self._copies += 1
        if self._copies > MAX_NODES:
            raise _TooManyValues(mark)
        copy = type(node).__new__(type(node))
        copy.__dict__.update(node.__dict__)
        copy.start_mark = copy.end_mark = mark
        done[id(node)] = copy
        if isinstance(node, yaml.SequenceNode):
            copy.value = [self._relocated(child, mark, done) for child in node.value]
        elif isinstance(node, yaml.MappingNode):
            copy.value = [(self._relocated(k, mark, done), self._relocated(v, mark, done)) for k, v in node.value]
        return copy


class _Builder:
    def __init__(self, source: Source, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        self.constructor = yaml.SafeLoader("")  # used only to turn scalars into values
        self.count = 0
        self.active: set[int] = set()

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            # A value reached through an alias is placed at the alias (see _AliasPlacingLoader).
            mark = node.start_mark
            raise NewsletterError(Problem(self.source.path, TOO_MANY, mark.line + 1, mark.column + 1))
        if id(node) in self.active:
            mark = node.start_mark
            raise NewsletterError(
                Problem(self.source.path, "an alias refers to itself", mark.line + 1, mark.column + 1)
            )
        self.source.values.setdefault(loc, node)
        if isinstance(node, yaml.ScalarNode):
            # Any value may be multi-line text. PyYAML refuses such characters written as they are,
            # so these come from escapes in double quotes.
            found = NOT_TEXT_IN_LINES.search(node.value)
            if found:
                mark = node.start_mark
                self.problems.append(
                    Problem(
                        self.source.path,
                        f"contains {describe(found[0])}, written as an escape like \\x1b; remove it",
                        mark.line + 1,
                        mark.column + 1,
                        field_name(loc) or None,
                    )
                )
                return None
            try:
                return self.constructor.construct_object(node)
            except (yaml.YAMLError, ValueError) as exc:  # e.g. a date like 2021-13-45
                self.problems.append(self.source.problem(loc, f"cannot read value: {exc}"))
                return None
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                return [self.build(child, (*loc, i)) for i, child in enumerate(node.value)]
            return self._mapping(node, loc)
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[Any, Any]:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                mark = key_node.start_mark
                self.problems.append(
                    Problem(self.source.path, "a key must be a plain name", mark.line + 1, mark.column + 1)
                )
                continue
            mark = key_node.start_mark
            if key_node.tag == "tag:yaml.org,2002:merge":
                self.problems.append(
                    Problem(
                        self.source.path,
                        "merge keys (<<) are not supported; write the keys out",
                        mark.line + 1,
                        mark.column + 1,
                    )
                )
                continue
            try:
                key = self.constructor.construct_object(key_node)
            except (yaml.YAMLError, ValueError) as exc:  # e.g. 2021-13-45 or an unknown !tag
                self.problems.append(
                    Problem(self.source.path, f"cannot read this key: {exc}", mark.line + 1, mark.column + 1)
                )
                continue
            key = key if isinstance(key, str) else str(key)
            child = (*loc, key)
            if key in out:
                first = self.source.keys[child].start_mark
                mark = key_node.start_mark
                self.problems.append(
                    Problem(
                        self.source.path,
                        f"duplicated key '{key}' (first given on line {first.line + 1})",
                        mark.line + 1,
                        mark.column + 1,
                        field_name(child),
                    )
                )
                continue
            self.source.keys[child] = key_node
            out[key] = self.build(value_node, child)
        return out
