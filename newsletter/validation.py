"""Turn YAML files into validated models, reporting every problem at once."""

from __future__ import annotations

import datetime as dt
import difflib
import re
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from . import markdown
from .errors import NewsletterError, Problem
from .model import Issue, Site
from .yamlsource import Loc, Source, load

M = TypeVar("M", bound=BaseModel)


def load_issue(path: Path) -> tuple[Issue, Source]:
    source = load(path, "issue file")
    issue = validate(source, Issue, [*source.problems, *markdown.issue_link_problems(source)])
    return issue, source


def load_site(path: Path) -> Site:
    return read_site(path)[0]


def read_site(path: Path) -> tuple[Site, Source]:
    """The site file as a model, with where each of its values was written (for warnings that name a line)."""
    source = load(path, "site file")
    return validate(source, Site, list(source.problems)), source


def validate(source: Source, model: type[M], problems: list[Problem]) -> M:
    """`source.data` as a `model`, or NewsletterError listing every problem."""
    if not isinstance(source.data, dict):
        problems.insert(0, source.problem((), f"the file must be a mapping of keys, not {_kind(source.data)}"))
        raise NewsletterError(problems)
    try:
        result = model.model_validate(source.data)
    except ValidationError as exc:
        problems.extend(_problem(source, model, error) for error in exc.errors())
    if problems:
        problems.sort(key=lambda p: (p.line or 0, p.column or 0))
        raise NewsletterError(problems)
    return result


def _problem(source: Source, model: type[BaseModel], error: Any) -> Problem:
    loc: Loc = tuple(error["loc"])
    kind = error["type"]
    value = error.get("input")
    name = loc[-1] if loc else ""
    if kind == "extra_forbidden":
        known = _known_keys(model, loc[:-1])
        guess = difflib.get_close_matches(str(name), known, n=1, cutoff=0.6)
        hint = f"; did you mean '{guess[0]}'?" if guess else f"; known keys: {', '.join(known)}"
        return source.problem(loc, f"unknown key '{name}'{hint}", at_key=True)
    if kind == "missing":
        return source.problem(loc, f"'{name}' is required but missing")
    message = _MESSAGES.get(kind)
    if message is None:
        message = str(error["msg"]).removeprefix("Value error, ")
    elif "{" in message:
        shown = value if isinstance(value, str) and len(value) <= 60 else _kind(value)
        message = message.format(kind=_kind(value), value=shown, **error.get("ctx", {}))
    if kind == "literal_error":
        choices = re.findall(r"'([^']*)'", str(error["ctx"]["expected"]))
        guess = difflib.get_close_matches(str(value), choices, n=1)
        if guess:
            message += f"; did you mean '{guess[0]}'?"
    if kind == "string_pattern_mismatch" and len(loc) > 1 and loc[-2] == "hashtags":
        message = "a hashtag is one word, written without '#'"
    return source.problem(loc, message)


_MESSAGES = {
    "string_type": "should be text, not {kind}",
    "int_type": "should be a whole number, not {kind}",
    "bool_type": "should be true or false, not {kind}",
    "list_type": "should be a list (lines starting with '- '), not {kind}",
    "model_type": "should be a mapping of keys, not {kind}",
    "dict_type": "should be a mapping of keys, not {kind}",
    "date_type": "should be a date like 2021-05-03, not {kind}",
    "date_from_datetime_parsing": "should be a date like 2021-05-03",
    "date_parsing": "should be a date like 2021-05-03",
    "literal_error": "should be one of {expected}, not '{value}'",
    "string_too_short": "must not be empty",
    "too_short": "needs at least {min_length} entry",
    "string_pattern_mismatch": "'{value}' does not match the expected form ({pattern})",
    "greater_than_equal": "must be at least {ge}",
    "less_than_equal": "must be at most {le}",
}


def _kind(value: Any) -> str:
    if value is None:
        return "nothing (the value is empty)"
    if isinstance(value, bool):
        return f"true/false ({str(value).lower()})"
    if isinstance(value, (int, float)):
        return f"a number ({value})"
    if isinstance(value, dt.date):
        return f"a date ({value})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    text = str(value)
    return f"'{text}'" if len(text) <= 60 else f"'{text[:57]}...'"


def _known_keys(model: type[BaseModel], loc: Loc) -> list[str]:
    """The keys allowed at `loc` inside `model`, following nested models."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) or next(
            (f for f in current.model_fields.values() if f.alias == part), None
        )
        if field is None:
            return []
        current = _inner_model(field.annotation)
        if current is None:
            return []
    return [f.alias or name for name, f in current.model_fields.items()]


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None
