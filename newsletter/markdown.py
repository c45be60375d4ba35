"""Markdown from issue files: which fields hold it, the links in them, and its HTML and plain text.

Raw HTML in Markdown is off: what an advisor types is shown, never run. Links
follow the one rule of `model.link_problem`, in Markdown as in link fields.
"""

from __future__ import annotations

import textwrap
from functools import lru_cache
from typing import Any

from markdown_it import MarkdownIt
from markdown_it.token import Token
from markupsafe import Markup

from .errors import Problem
from .model import link_problem
from .yamlsource import Loc, Source


@lru_cache(maxsize=2)
def _parser(permissive: bool = False) -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    # Images need alt text and a size to behave in mail clients: they go in `image:`.
    md.disable("image")
    if permissive:
        # The check must see every link to report the bad ones by line.
        md.validateLink = lambda url: True
    else:
        # Rendering never emits a bad link, even if called without a check.
        md.validateLink = lambda url: link_problem(url) is None
    return md


def links(source: str) -> list[tuple[str, int]]:
    """Every link in `source`, with the 0-based line it is on."""
    found = []
    for token in _parser(permissive=True).parse(source):
        if token.type != "inline" or not token.children:
            continue
        line = token.map[0] if token.map else 0
        for child in token.children:
            if child.type in ("softbreak", "hardbreak"):
                line += 1
            elif child.type == "link_open":
                found.append((str(child.attrs.get("href", "")), line))
    return found


def issue_fields(source: Source) -> list[tuple[Loc, str]]:
    """Every Markdown field of an issue file's data (those typed `Markdown` in model.py), with where it is.

    It reads the data as loaded, before validation, so that links are checked in an issue with other problems too.
    """
    data = source.data if isinstance(source.data, dict) else {}
    fields: list[tuple[Loc, Any]] = [(("intro",), data.get("intro"))]
    items = data.get("items")
    for i, item in enumerate(items if isinstance(items, list) else []):
        if not isinstance(item, dict):
            continue
        fields += [(("items", i, "body"), item.get("body")), (("items", i, "notes"), item.get("notes"))]
        actions = item.get("actions")
        for j, action in enumerate(actions if isinstance(actions, list) else []):
            fields.append((("items", i, "actions", j), action))
    return [(loc, value) for loc, value in fields if isinstance(value, str)]


def issue_links(source: Source) -> list[tuple[str, Loc, int]]:
    """Every link in an issue file's Markdown fields: (href, field, line offset from the field's start)."""
    found = []
    for loc, value in issue_fields(source):
        node = source.values.get(loc)
        # In a literal block (|) the text starts on the line after the key and
        # keeps its lines; a folded one (>) does not, so it gets the key's line.
        block = node is not None and getattr(node, "style", None) == "|"
        for href, line in links(value):
            found.append((href, loc, line + 1 if block else 0))
    return found


def issue_link_problems(source: Source) -> list[Problem]:
    """The bad links in an issue file's Markdown fields, each placed on its own line."""
    problems = []
    for href, loc, offset in issue_links(source):
        why = link_problem(href)
        if why:
            problems.append(source.problem(loc, why, line_offset=offset))
    return problems


def to_html(source: str, *, inline: bool = False) -> Markup:
    """HTML for `source`; `inline` drops the paragraph around a one-line text."""
    if inline:
        return Markup(_parser().renderInline(source).strip())
    return Markup(_parser().render(source).strip())


def to_text(source: str, width: int = 72, indent: str = "", marker: str = "") -> str:
    """Plain text for `source`: paragraphs wrapped, links written out as URLs.

    `marker` (such as "3. ") starts the first line; the rest hang under it.
    """
    if marker:
        hung = to_text(source, width, indent + " " * len(marker))
        return indent + marker + hung[len(indent) + len(marker) :]
    blocks: list[tuple[str, bool]] = []  # (text, is an item of a tight list)
    list_stack: list[list[int | None]] = []  # [next number or None for bullets]
    prefix_stack: list[str] = []
    pending_marker = ""
    tight = False
    for token in _parser().parse(source):
        if token.type in ("bullet_list_open", "ordered_list_open"):
            start = token.attrs.get("start", 1) if token.type == "ordered_list_open" else None
            list_stack.append([int(start) if start is not None else None])
        elif token.type in ("bullet_list_close", "ordered_list_close"):
            list_stack.pop()
        elif token.type == "list_item_open":
            state = list_stack[-1]
            if state[0] is None:
                pending_marker = "- "
            else:
                pending_marker = f"{state[0]}. "
                state[0] += 1
            prefix_stack.append(" " * len(pending_marker))
        elif token.type == "list_item_close":
            prefix_stack.pop()
        elif token.type == "paragraph_open":
            tight = token.hidden
        elif token.type == "inline":
            text = inline_text(token.children or [])
            nesting = "".join(prefix_stack[:-1]) if prefix_stack else ""
            first = indent + nesting + (pending_marker or "")
            rest = indent + "".join(prefix_stack)
            blocks.append((wrap(text, width, first, rest), tight))
            pending_marker = ""
        elif token.type in ("fence", "code_block"):
            blocks.append((textwrap.indent(token.content.rstrip("\n"), indent + "    "), False))
        elif token.type == "hr":
            blocks.append((indent + "-" * 20, False))
    # Items of a tight list stay together; other blocks get a blank line.
    out = ""
    for i, (text, in_tight_list) in enumerate(blocks):
        if i:
            out += "\n" if in_tight_list and blocks[i - 1][1] else "\n\n"
        out += text
    return out


def wrap(text: str, width: int, first: str = "", rest: str = "") -> str:
    """Wrap at `width` without breaking a word or URL, keeping hard line breaks."""
    lines = []
    for i, part in enumerate(text.split("\n")):
        lines.append(
            textwrap.fill(
                part,
                width=width,
                initial_indent=first if i == 0 else rest,
                subsequent_indent=rest,
                break_long_words=False,
                break_on_hyphens=False,
            )
            or (first if i == 0 else rest).rstrip()
        )
    return "\n".join(lines)


def inline_text(children: list[Token]) -> str:
    out: list[str] = []
    hrefs: list[tuple[str, int]] = []
    for child in children:
        kind = child.type
        if kind == "text" or kind == "code_inline":
            out.append(child.content)
        elif kind == "softbreak":
            out.append(" ")
        elif kind == "hardbreak":
            out.append("\n")
        elif kind == "link_open":
            hrefs.append((str(child.attrs.get("href", "")), len(out)))
        elif kind == "link_close" and hrefs:
            href, start = hrefs.pop()
            label = "".join(out[start:])
            shown = href.removeprefix("mailto:")
            if label.strip() != shown:
                out.append(f" ({shown})")
        elif kind in ("strong_open", "strong_close"):
            out.append("*")
        elif kind in ("em_open", "em_close"):
            out.append("_")
    return "".join(out).strip()
