"""`newsletter new`: a scaffold issue that passes `check`, to write over."""

from __future__ import annotations

import datetime as dt
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..console import Console, shown_path, warn
from ..errors import NewsletterError, Problem
from ..project import find_root
from ..slug import shown, why_not_a_name
from .schema import schema_path, write_schemas

SCAFFOLD = """\
# yaml-language-server: $schema={schema}
# A newsletter issue. `newsletter check issues/{slug}.yaml` says what is wrong;
# `newsletter preview issues/{slug}.yaml` shows it as subscribers will see it.
id: {id}                # what the send ledger knows this issue by: keep it if you rename the file
title: {title}
date: {date}
lang: en
# subject: "..."          # the inbox subject; defaults to the title
preheader: "One sentence that inboxes show next to the subject."
intro: |
  A short welcome. Markdown works: **bold**, _emphasis_, [links](https://example.org/).

items:
  - status: new           # new | ongoing | update | closed
    title: "Name of the campaign action"
    hashtags: [ExampleHashtag]
    # image: {{src: "https://...", alt: "What the image shows"}}
    body: |
      What is happening and why it matters. One paragraph per block;
      leave a blank line between paragraphs.
    actions:
      - Sign and share the [online petition](https://example.org/petition).
      - Post on social media with the hashtag #ExampleHashtag.
    sample_posts:
      - "A ready-to-post message with #ExampleHashtag"
    links:
      - {{text: "Sign the petition", url: "https://example.org/petition", primary: true}}
      - {{text: "Read more about the case", url: "https://example.org/read-more"}}

contact:
  name: Your Name
  role: Your role
  email: you@example.org
"""


@dataclass(frozen=True)
class NewIssue:
    path: Path  # the scaffold
    schemas: list[Path]  # the schema files written with it, because the project had none
    warnings: list[Problem]  # why they could not be written: the scaffold is there all the same


def new_command(slug: str, *, console: Console) -> NewIssue:
    """Write issues/SLUG.yaml in the project of the current folder (or in the current folder), and its
    schema files if it has none, and say so."""
    created = new_issue(slug, find_root(Path.cwd()) or Path.cwd())
    console.say(f"wrote {shown_path(created.path)}; check it with: newsletter check {shown_path(created.path)}")
    for path in created.schemas:
        console.say(f"wrote {shown_path(path)}, for editors to check the issue as you type")
    warn(console, created.warnings)
    return created


def new_issue(slug: str, root: Path, today: dt.date | None = None) -> NewIssue:
    """Write issues/<slug>.yaml in the project at `root`; an existing file is never overwritten.

    The scaffold's first line points editors to schema/issue.schema.json; the project's schema files
    are written too when missing, so that the line resolves in any project.
    """
    reason = why_not_a_name(slug)
    if reason:
        raise NewsletterError(f"{shown(slug)} cannot be an issue name: {reason}; use a plain name, like 2021-06-summer")
    issues_dir = root / "issues"
    path = issues_dir / f"{slug}.yaml"
    # A JSON string is a YAML double-quoted one: a name with '"' or ': ' still gives a scaffold that passes check.
    title = json.dumps(slug.replace("-", " ").capitalize(), ensure_ascii=False)
    text = SCAFFOLD.format(
        schema=Path(os.path.relpath(schema_path(root, "issue"), issues_dir)).as_posix(),
        slug=slug,
        id=json.dumps(slug, ensure_ascii=False),
        title=title,
        date=(today or dt.date.today()).isoformat(),
    )
    try:
        issues_dir.mkdir(parents=True, exist_ok=True)
        f = path.open("x", encoding="utf-8")
    except FileExistsError:
        raise NewsletterError(Problem(path, "already exists; choose another name or edit it")) from None
    except OSError as exc:
        raise NewsletterError(Problem(path, f"cannot write: {exc.strerror}")) from None
    try:
        with f:
            f.write(text)
    except OSError as exc:
        # The file is ours, and half a scaffold would only make the next `new` say "already exists".
        path.unlink(missing_ok=True)
        raise NewsletterError(Problem(path, f"cannot write: {exc.strerror}")) from None
    try:
        schemas = write_schemas(root, missing_only=True)
    except NewsletterError as exc:
        why = "editors read it to check the issue as you type: fix that, then run newsletter schema --write"
        return NewIssue(path, [], [Problem(p.file, f"{p.message}; {why}") for p in exc.problems])
    return NewIssue(path, schemas, [])
