"""`newsletter new`: a scaffold issue that passes `check`, to write over."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from ..console import Console, shown_path
from ..errors import NewsletterError, Problem
from ..project import find_root
from ..slug import shown, why_not_a_name

SCAFFOLD = """\
# yaml-language-server: $schema=../schema/issue.schema.json
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


def new_command(slug: str, *, console: Console) -> Path:
    """Write issues/SLUG.yaml in the project of the current folder (or in the current folder) and say so."""
    root = find_root(Path.cwd()) or Path.cwd()
    path = new_issue(slug, root / "issues")
    console.say(f"wrote {shown_path(path)}; check it with: newsletter check {shown_path(path)}")
    return path


def new_issue(slug: str, issues_dir: Path, today: dt.date | None = None) -> Path:
    """Write issues/<slug>.yaml; an existing file is never overwritten."""
    reason = why_not_a_name(slug)
    if reason:
        raise NewsletterError(f"{shown(slug)} cannot be an issue name: {reason}; use a plain name, like 2021-06-summer")
    path = issues_dir / f"{slug}.yaml"
    # A JSON string is a YAML double-quoted one: a name with '"' or ': ' still gives a scaffold that passes check.
    title = json.dumps(slug.replace("-", " ").capitalize(), ensure_ascii=False)
    text = SCAFFOLD.format(
        slug=slug, id=json.dumps(slug, ensure_ascii=False), title=title, date=(today or dt.date.today()).isoformat()
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
    return path
