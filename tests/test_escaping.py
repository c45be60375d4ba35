"""Text from YAML is data: never template, never markup, never a script link."""

from __future__ import annotations

import email
import email.policy

import lxml.html

from .support import write_issue

HOSTILE = """
title: "Title {{ 7*7 }} <b>bold?</b>"
date: 2021-05-03
items:
  - status: new
    title: "<script>alert('t')</script>"
    body: |
      Body {{ 7*7 }} and {% if true %}tag{% endif %} and <script>alert(1)</script>.

      <img src=x onerror=alert(2)> [ok](https://example.org/ok)
    actions:
      - "Step {{ 7*7 }} <i>x</i>"
    sample_posts:
      - "Post </p><mj-text>{{ 7*7 }}"
    links:
      - {text: "<b>link</b>", url: "https://example.org/?a=1&b=\\"2\\""}
contact: {name: "A & B <c>", email: a@example.org}
"""


def _build(project, run):
    path = write_issue(project, HOSTILE)
    result = run("build", path)
    assert result.exit_code == 0, result.output
    eml = (project / "outbox" / "test" / "email.eml").read_bytes()
    message = email.message_from_bytes(eml, policy=email.policy.default)
    return message, message.get_body(("html",)).get_content(), message.get_body(("plain",)).get_content()


def test_jinja_syntax_in_issue_text_prints_literally(project, run):
    message, html, text = _build(project, run)
    assert "{{ 7*7 }}" in html and "{{ 7*7 }}" in text
    assert "{% if true %}tag{% endif %}" in html
    assert "49" not in html and "49" not in text
    assert message["Subject"] == "Title {{ 7*7 }} <b>bold?</b>"


def test_markup_in_issue_text_is_escaped(project, run):
    _, html, text = _build(project, run)
    assert "<script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert('t')&lt;/script&gt;" in html or "&lt;script&gt;alert(&#39;t&#39;)" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "<b>link</b>" not in html and "&lt;b&gt;link&lt;/b&gt;" in html
    assert "<mj-text>" not in html
    assert "A &amp; B &lt;c&gt;" in html
    hrefs = [a.get("href") for a in lxml.html.fromstring(html).iter("a")]
    assert 'https://example.org/?a=1&b="2"' in hrefs
    # The plain-text part shows the text as typed.
    assert "<script>alert(1)</script>" in text
    assert 'https://example.org/?a=1&b="2"' in text


def test_javascript_links_are_errors_not_output(project, run):
    path = write_issue(
        project,
        """
        title: T
        date: 2021-05-03
        items:
          - status: new
            title: X
            actions:
              - "[click](javascript:alert(1))"
            links:
              - {text: y, url: "JavaScript:alert(2)"}
        """,
    )
    result = run("build", path)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert result.output.count("only http, https and mailto links are allowed") == 2
    assert not (project / "outbox" / "test").exists()
