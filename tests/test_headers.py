"""Header lines that every server accepts and every reader decodes to exactly what was written."""

from __future__ import annotations

import json

import pytest

from .conftest import MINIMAL, write_issue


def edit_site(project, old: str, new: str) -> None:
    site = project / "newsletter.yaml"
    text = site.read_text(encoding="utf-8")
    assert old in text
    site.write_text(text.replace(old, new), encoding="utf-8")


def issue_with_subject(project, subject: str):
    # A JSON string is a YAML double-quoted scalar.
    return write_issue(project, f"subject: {json.dumps(subject, ensure_ascii=False)}\n" + MINIMAL.lstrip())


# `check` refuses what no header could carry.


def failing_check(run, issue) -> list[str]:
    result = run("check", issue)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    return [line for line in result.output.splitlines() if line.startswith("error: ")]


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://example.org/unsubscribe?t={token} now", "a space"),
        ("https://example.org/unsubscribe?t={token}>, <https://evil.example/", "'>'"),
        ("https://example.org/u<x>?t={token}", "'<'"),
        ("https://example.org/unsubscribe?list=a,b&t={token}", "','"),
        ('https://example.org/unsubscribe?t={token}"', "'\"'"),
        ("https://example.org/" + "u" * 700 + "?t={token}", "too long"),
    ],
    ids=["space", "angle brackets and comma", "less-than", "comma", "double quote", "too long"],
)
def test_check_refuses_an_unsubscribe_address_that_would_break_list_unsubscribe(project, run, url, says):
    edit_site(project, '"https://example.org/unsubscribe?t={token}"', json.dumps(url))
    lines = failing_check(run, issue_with_subject(project, "A roundup"))
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: newsletter.yaml:15:18: unsubscribe_url: "), lines
    assert says in lines[0]


def test_check_refuses_a_list_id_longer_than_rfc_2919_allows(project, run):
    edit_site(project, "list_id: roundup.example.org", "list_id: " + "a" * 300 + ".example.org")
    lines = failing_check(run, issue_with_subject(project, "A roundup"))
    assert len(lines) == 1 and lines[0].startswith("error: newsletter.yaml:13:10: list_id: "), lines
    assert "255" in lines[0]
