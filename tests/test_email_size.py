"""The seed issue's email stays small, and its Outlook-only markup stays whole while it shrinks."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import lxml.html
import pytest

from newsletter import outlook
from newsletter.outlook import merge_conditionals
from newsletter.pipeline import check

from .support import SEED, write_issue

# Gmail clips at 102 KB; the seed, share links and all, stays well under (KB as `build` prints it).
SEED_LIMIT = 60 * 1024

OPENER = re.compile(r"<!--\[if ([^\]]+)\]>(<!-->)?")
MARK = re.compile(r"<!--\[if [^\]]+\]>(?:<!-->)?|(?:<!--)?<!\[endif\]-->")
SEAM = re.compile(r"<!\[endif\]-->\s*<!--\[if mso \| IE\]>")


def _conditional_problems(html: str) -> list[str]:
    """What is wrong with the conditional comments: each opened once, closed once, in order, as it was opened."""
    problems, open_one = [], None
    for mark in MARK.finditer(html):
        text, at = mark.group(0), mark.start()
        if text.startswith("<!--[if"):
            if open_one is not None:
                problems.append(f"{text} at {at} opens inside {open_one}")
            open_one = text
        elif open_one is None:
            problems.append(f"{text} at {at} closes nothing")
        elif open_one.endswith("<!-->") != text.startswith("<!--<!["):
            problems.append(f"{text} at {at} does not close {open_one}")
            open_one = None
        else:
            open_one = None
    if open_one is not None:
        problems.append(f"{open_one} is never closed")
    return problems


def _as_seen_by(html: str, client: set[str]) -> str:
    """The markup a client renders: a conditional's content where its condition names the client, else nothing.

    `client` holds the conditions that are true for it, e.g. {"mso", "mso | IE"} for Outlook 2016.
    """

    def reveal(match: re.Match[str]) -> str:
        condition, content = match.group(1), match.group(3)
        shown = condition.removeprefix("!") in client
        return content if shown != condition.startswith("!") else ""

    views = re.sub(r"<!--\[if ([^\]]+)\]>(<!-->)?(.*?)(?:<!--)?<!\[endif\]-->", reveal, html, flags=re.S)
    return re.sub(r">\s+<", "><", views)  # white space between tags: the views compare whatever the layout


BROWSER: set[str] = set()
OUTLOOK = {"mso", "mso | IE"}
OLD_IE = {"mso | IE", "IE"}


class _Tables(HTMLParser):
    """Open table, tr and td tags still waiting for their end tags; ends the wrong way round are recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.wrong: list[str] = []

    def handle_starttag(self, tag: str, attrs: object) -> None:
        if tag in ("table", "tr", "td", "div"):
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("table", "tr", "td", "div"):
            if self.stack and self.stack[-1] == tag:
                self.stack.pop()
            else:
                self.wrong.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'} at {self.getpos()}")


def _unbalanced(html: str) -> list[str]:
    tables = _Tables()
    tables.feed(html)
    tables.close()
    return tables.wrong + [f"<{tag}> never closed" for tag in tables.stack]


@pytest.fixture
def seed_html(project, run) -> str:
    result = run("build", f"issues/{SEED}.yaml")
    assert result.exit_code == 0, result.output
    return (project / "outbox" / SEED / "email.html").read_text(encoding="utf-8")


def test_the_seed_issues_email_is_small_enough_for_every_inbox(seed_html):
    size = len(seed_html.encode("utf-8"))
    assert size <= SEED_LIMIT, f"the seed's email.html is {size / 1024:.1f} KB, over {SEED_LIMIT // 1024} KB"


def test_outlook_only_markup_is_balanced_and_merged_into_as_few_comments_as_mjml_makes(seed_html):
    assert _conditional_problems(seed_html) == []
    seams = [m.start() for m in SEAM.finditer(seed_html)]
    assert seams == [], f"{len(seams)} Outlook comments end only to start again, first at {seams[:1]}"
    assert seed_html.count("<!--[if mso | IE]>") < 60  # 196 before they were merged, 36 after
    for client in (BROWSER, OUTLOOK, OLD_IE):
        assert _unbalanced(_as_seen_by(seed_html, client)) == [], sorted(client)
    assert "Sample phrases" in lxml.html.fromstring(seed_html).body.text_content()  # and it still parses


def test_merging_changes_nothing_any_client_sees(project, monkeypatch):
    merged = _seed_html_part(project)
    monkeypatch.setattr(outlook, "merge_conditionals", lambda html: html)
    separate = _seed_html_part(project)
    assert merged.count("<!--[if") < separate.count("<!--[if")
    for client in (BROWSER, OUTLOOK, OLD_IE):
        assert _as_seen_by(merged, client) == _as_seen_by(separate, client), sorted(client)


EVERY_KIND = """
id: every-kind
title: "Every kind of item"
date: 2021-06-11
preheader: "All of them"
intro: |
  An **intro** with [a link](https://example.org/x) and a list:

  - one
  - two
items:
  - status: new
    title: "New, with everything"
    hashtags: [One, Two]
    image: {src: "https://example.org/i.png", alt: "An image", width: 300}
    body: "Body with *emphasis*.\\n\\n1. first\\n2. second"
    actions: ["Do [this](https://example.org/a)", "Then that"]
    sample_posts: ["Post one #One", "Post two\\nwith a line break", "مرحبا بالعالم"]
    notes: "Some notes"
    links_title: "Read more"
    links:
      - {text: "The main thing", url: "https://example.org/p", primary: true}
      - {text: "Another", url: "https://example.org/o"}
  - {status: ongoing, title: "Ongoing, a body", body: "Just a body"}
  - {status: update, title: "Update, actions only", actions: ["Only actions"]}
  - {status: closed, title: "Closed, one post", sample_posts: ["Only a post"], share: [x]}
contact: {name: "A Person", role: "Role", email: "a@example.org"}
"""


def test_in_chromium_an_issue_with_every_kind_of_item_looks_the_same_merged_or_not(project, monkeypatch):
    from playwright.sync_api import sync_playwright

    from .test_preview import launch_chromium

    path = write_issue(project, EVERY_KIND, "every-kind.yaml")
    merged = check(path).rendered.html.fill({})
    monkeypatch.setattr(outlook, "merge_conditionals", lambda html: html)
    separate = check(path).rendered.html.fill({})
    assert merged.count("<!--[if") < separate.count("<!--[if")
    with sync_playwright() as playwright:
        # Every name unresolved: the images fail alike in both, and nothing reaches the internet.
        browser = launch_chromium(playwright, extra_args=["--host-resolver-rules=MAP * ~NOTFOUND"])
        try:
            for width in (600, 375):  # a desktop client's width, and a phone's, where MJML's columns stack
                page = browser.new_page(viewport={"width": width, "height": 800})
                shots = []
                for html in (merged, separate):
                    page.set_content(html)
                    shots.append(page.screenshot(full_page=True))
                page.close()
                assert shots[0] == shots[1], f"at {width} px"
        finally:
            browser.close()


@pytest.mark.parametrize(
    "before",
    [
        # Another kind of conditional next to an Outlook-only one: MJML's own rule would join them, so that
        # old IE lost the second one's content (the first's condition, mso, is false there).
        "<!--[if mso]><b>1</b><![endif]--><!--[if mso | IE]><i>2</i><![endif]-->",
        # What every client but Outlook shows, then what only Outlook shows: joined, Outlook would show both.
        "<!--[if !mso]><!--><b>1</b><!--<![endif]--><!--[if mso | IE]><i>2</i><![endif]-->",
    ],
)
def test_only_outlook_only_comments_are_joined(before):
    after = merge_conditionals(before)
    assert after == before
    assert _conditional_problems(after) == []


def test_a_run_of_outlook_only_comments_becomes_one_and_what_is_between_runs_stays():
    between = "<p>all</p><!--[if mso | IE]></td><![endif]-->"
    html = "<!--[if mso | IE]><table><tr><![endif]--><!--[if mso | IE]><td><![endif]-->" + between
    assert merge_conditionals(html) == "<!--[if mso | IE]><table><tr><td><![endif]-->" + between
    # White space between two is what every other client shows (a space between words): they stay apart.
    spaced = "<p>Read<!--[if mso | IE]><b><![endif]--> <!--[if mso | IE]></b><![endif]-->online</p>"
    assert merge_conditionals(spaced) == spaced


def test_a_projects_template_with_outlook_comments_between_words_still_reads_the_same(project, run):
    template = project / "templates" / "email.mjml.j2"
    footer = "<p><strong>{{ site.organisation }}</strong>"
    odd = "<p>Read<!--[if mso | IE]><span>&#8203;</span><![endif]--> <!--[if mso | IE]><i></i><![endif]-->online</p>"
    template.write_text(template.read_text(encoding="utf-8").replace(footer, odd + footer, 1), encoding="utf-8")
    assert run("build", f"issues/{SEED}.yaml").exit_code == 0
    html = (project / "outbox" / SEED / "email.html").read_text(encoding="utf-8")
    assert "Read online" in lxml.html.fromstring(html).body.text_content()


def _seed_html_part(project) -> str:
    return check(project / "issues" / f"{SEED}.yaml").rendered.html.fill({})
