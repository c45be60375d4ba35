"""Markdown from issue files, to the plain-text part and to HTML: the pure functions, without a build.

The plain-text part is what plain-text clients and some screen-reader users
read: it must stand on its own, with lists numbered, links written out and
lines wrapped. The HTML must show what the advisor typed, never run it.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

import lxml.html
import pytest
from markupsafe import Markup

from newsletter.markdown import links, to_html, to_text, wrap


def _words(text: str) -> list[str]:
    return text.split()


def _hrefs(html: str) -> list[str]:
    return [a.get("href") for a in lxml.html.fragment_fromstring(html, create_parent="div").iter("a")]


# -- to plain text: structure ---------------------------------------------------


def test_bullets_numbers_and_nesting():
    source = "- one\n- two\n  1. first\n  2. second\n- three"
    assert to_text(source) == "- one\n- two\n  1. first\n  2. second\n- three"


def test_a_long_list_item_wraps_under_its_own_text():
    source = "- Take or create a picture of a flower and share it widely\n  1. Write a solidarity message for them"
    assert to_text(source, width=30).splitlines() == [
        "- Take or create a picture of",
        "  a flower and share it widely",
        "  1. Write a solidarity",
        "     message for them",
    ]


@pytest.mark.parametrize(
    ("source", "text"),
    [
        ("3. third\n4. fourth", "3. third\n4. fourth"),  # a list may start anywhere
        ("1) one\n2) two", "1. one\n2. two"),
    ],
)
def test_list_markers_as_a_reader_expects_them(source, text):
    assert to_text(source) == text


def test_a_tight_list_stays_together_and_a_loose_one_gets_blank_lines():
    assert to_text("Before\n\n- a\n- b\n\nAfter") == "Before\n\n- a\n- b\n\nAfter"
    assert to_text("- a\n\n- b") == "- a\n\n- b"


def test_paragraphs_are_joined_and_separated_by_one_blank_line():
    assert to_text("one line\nsame paragraph\n\n\n\nnext") == "one line same paragraph\n\nnext"


def test_a_hard_line_break_is_kept():
    assert to_text("Ann Smith  \n312 Laurier Avenue\\\nOttawa") == "Ann Smith\n312 Laurier Avenue\nOttawa"


def test_code_is_kept_as_typed_indented_and_never_wrapped():
    long_line = "x = " + "1 + " * 40 + "1"
    text = to_text(f"Run:\n\n```\n{long_line}\n  indented\n```", width=40)
    assert text == f"Run:\n\n    {long_line}\n      indented"


def test_a_rule_headings_and_quotes_read_as_text():
    assert to_text("# Heading\n\n> quoted\n\n---\n\nend") == "Heading\n\nquoted\n\n" + "-" * 20 + "\n\nend"


# -- to plain text: links and emphasis -----------------------------------------


@pytest.mark.parametrize(
    ("source", "text"),
    [
        ("Sign [the petition](https://example.org/p) today", "Sign the petition (https://example.org/p) today"),
        ("<https://example.org/a>", "https://example.org/a"),  # the label is the address: once
        ("[https://example.org/a](https://example.org/a)", "https://example.org/a"),
        ("[hhomes@amnesty.ca](mailto:hhomes@amnesty.ca)", "hhomes@amnesty.ca"),
        ("Write [to me](mailto:hhomes@amnesty.ca)", "Write to me (hhomes@amnesty.ca)"),
        ("[**Sign** it](https://example.org/p)", "*Sign* it (https://example.org/p)"),
        ("[a](https://a.org) and [b](https://b.org)", "a (https://a.org) and b (https://b.org)"),
    ],
)
def test_links_are_written_out_never_hidden_behind_a_label(source, text):
    assert to_text(source) == text


def test_emphasis_shows_as_plain_text_marks_and_code_as_itself():
    assert to_text("**bold**, _em_, *em too* and `code`") == "*bold*, _em_, _em too_ and code"


def test_a_link_that_is_not_allowed_stays_text_in_both_parts():
    source = "[click](javascript:alert(1))"
    assert to_text(source) == source
    assert "<a" not in to_html(source)


# -- to plain text: wrapping ---------------------------------------------------


@pytest.mark.parametrize("width", [20, 40, 72])
def test_paragraphs_wrap_at_the_width_without_losing_or_moving_a_word(width):
    source = (
        "Since the widely disputed presidential election in August 2020, the regime has engaged in a brutal "
        "crackdown on all forms of dissent, real or imaginary. Last fall, a global petition saw 191,000 people "
        "from 144 countries and territories call for an end to police violence."
    )
    text = to_text(source, width=width)
    assert all(len(line) <= width for line in text.splitlines())
    assert _words(text) == _words(source)


def test_a_url_or_a_hyphenated_word_is_never_broken():
    url = "https://example.org/" + "x" * 90
    text = to_text(f"Read {url} and a well-known, state-of-the-art report", width=30)
    assert url in text.splitlines()
    assert "well-known," in _words(text) and "state-of-the-art" in _words(text)
    assert all(len(line) <= 30 for line in text.splitlines() if line != url)


def test_a_marker_starts_the_first_line_and_the_rest_hang_under_it():
    step = "Take or create a picture of a flower, then write a solidarity message to go with it."
    text = to_text(step, width=40, indent="  ", marker="12. ")
    first, *rest = text.splitlines()
    assert first.startswith("  12. Take")
    assert rest and all(line.startswith("      ") and not line[6].isspace() for line in rest)
    assert all(len(line) <= 40 for line in text.splitlines())
    assert _words(text)[1:] == _words(step)


def test_a_list_inside_an_indented_block_keeps_its_indent():
    assert to_text("1. a\n   - sub\n2. b", indent="    ") == "    1. a\n       - sub\n    2. b"


@pytest.mark.parametrize(
    "source",
    ["\U0001f600" * 200, "x" * 1200, "日本語のタイトル" * 30],
    ids=["200 emoji", "1200 characters", "CJK without spaces"],
)
def test_a_word_longer_than_a_line_is_kept_whole(source):
    assert to_text(source, width=72) == source


def test_wrap_keeps_hard_breaks_and_indents_every_line_after_the_first():
    assert wrap("one two three\nfour five six seven\n\nend", 10, "> ", "  ") == (
        "> one two\n  three\n  four\n  five six\n  seven\n\n  end"
    )
    assert wrap("", 72, "  > ", "  > ") == "  >"  # an empty sample post is a quote mark, without trailing space


# -- hostile text ----------------------------------------------------------------


HOSTILE = "{{ 7*7 }} {% if true %}x{% endif %} <script>alert(1)</script> <img src=x onerror=alert(2)> &amp;"


def test_template_syntax_and_markup_are_shown_as_typed():
    html = to_html(HOSTILE)
    assert "{{ 7*7 }}" in html and "{% if true %}x{% endif %}" in html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img" not in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert "&amp;amp;" not in html and "&amp;" in html  # an entity the advisor typed is shown once, not twice
    # The plain-text part shows the characters as typed; the entity as the character it names.
    assert to_text(HOSTILE, width=200) == HOSTILE.replace("&amp;", "&")


def test_html_in_a_link_label_or_address_is_escaped():
    html = to_html('[<b>bold</b>](https://example.org/?a=1&b="2")')
    assert "<b>" not in html and "&lt;b&gt;bold&lt;/b&gt;" in html
    assert [unquote(href) for href in _hrefs(html)] == ['https://example.org/?a=1&b="2"']


def test_the_result_is_markup_so_a_template_does_not_escape_it_again():
    html = to_html("**a** & b")
    assert isinstance(html, Markup)
    assert Markup("{}").format(html) == "<p><strong>a</strong> &amp; b</p>"


# -- to HTML -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("https://example.org/a", True),
        ("HTTPS://EXAMPLE.ORG/A", True),
        ("http://example.org", True),
        ("mailto:hhomes@amnesty.ca", True),
        ("javascript:alert(1)", False),
        ("JavaScript:alert(1)", False),
        ("data:text/html,<script>alert(1)</script>", False),
        ("ftp://example.org/file", False),
        ("/relative/path", False),
        ("http:///no-host", False),
        ("vbscript:msgbox", False),
    ],
)
def test_only_web_and_mail_addresses_become_links(url, kept):
    assert _hrefs(to_html(f"[label](<{url}>)")) == ([url] if kept else [])


def test_image_syntax_makes_no_image():
    html = to_html("![a flower](https://example.org/flower.png)")
    assert "<img" not in html


def test_lists_emphasis_and_breaks_in_html():
    html = to_html("**Act** _now_:\n\n1. one\n2. two\n\nline  \nbreak")
    assert "<strong>Act</strong> <em>now</em>:" in html
    assert re.search(r"<ol>\s*<li>one</li>\s*<li>two</li>\s*</ol>", html)
    assert "line<br />" in html


def test_inline_html_has_no_paragraph_around_it():
    assert to_html("Hello *you*", inline=True) == "Hello <em>you</em>"
    assert to_html("Hello *you*") == "<p>Hello <em>you</em></p>"


# -- links(), for the check ----------------------------------------------------------


def test_links_lists_every_link_with_its_line_bad_ones_included():
    source = "[a](https://a.org)\ntext [b](javascript:x)\n\n- [c](/relative)\n- two\n  [d](https://d.org)"
    assert links(source) == [("https://a.org", 0), ("javascript:x", 1), ("/relative", 3), ("https://d.org", 5)]


def test_links_counts_hard_breaks_and_finds_links_in_emphasis():
    assert links("one  \ntwo\\\n**[x](https://x.org)**") == [("https://x.org", 2)]
    assert links("no links at all, just https://example.org") == []
