"""One rule, one answer: a rule that applies in several places says the same thing in each."""

from __future__ import annotations

import pytest

from .support import MINIMAL, write_issue


def _messages(run, path) -> dict[str, str]:
    """Each error of `newsletter check` by its field: {field: message}."""
    result = run("check", path)
    assert result.exit_code == 1, result.output
    found = {}
    for line in result.output.splitlines():
        if line.startswith("error: "):
            _, _, field, message = line.split(": ", 3)  # error: FILE:LINE:COL: field: message
            found[field] = message
    return found


@pytest.mark.parametrize(
    "href",
    ["javascript:alert(1)", "ftp://files.example/a.pdf", "www.example.org/petition", "https:/no-host", "data:,x"],
)
def test_a_bad_link_is_refused_in_the_same_words_in_a_link_field_and_in_markdown(project, run, href):
    text = MINIMAL.replace('body: "Something is happening."', f'body: "See [the page]({href})."')
    text += f'    links:\n      - text: "Go"\n        url: "{href}"\n'
    found = _messages(run, write_issue(project, text))
    assert set(found) == {"items[0].body", "items[0].links[0].url"}, found
    assert found["items[0].body"] == found["items[0].links[0].url"]
    assert href in found["items[0].body"]


# -- what is not text: one set, for names, lists, YAML values and the terminal --------------------

NOT_TEXT = {
    "\x00": "a control character (U+0000)",
    "\x1b": "a control character (U+001B)",
    "\x7f": "a control character (U+007F)",
    "\x9b": "a control character (U+009B)",  # CSI: a terminal sequence in one character
    "\ufffe": "a non-character (U+FFFE)",
    "\uffff": "a non-character (U+FFFF)",
}
LINE_BREAKS = {
    "\n": "a line break (U+000A)",
    "\x85": "a line break (U+0085)",
    "\u2028": "a line break (U+2028)",
    "\u2029": "a line break (U+2029)",
}
# Text, everywhere: letters of any script, emoji, and the joiner of emoji sequences.
TEXT = ["Été", "O\u2019Brien", "\u0645\u0631\u062d\u0628\u0627", "\U0001f469\u200d\U0001f4bb"]


def _yaml_escape(char: str) -> str:
    return f"\\u{ord(char):04x}"


@pytest.mark.parametrize("char", [*NOT_TEXT, *LINE_BREAKS])
def test_what_is_not_text_is_refused_alike_in_a_name_a_list_and_a_one_line_value(project, run, tmp_path, char):
    from newsletter.delivery_state import DeliveryState
    from newsletter.slug import why_not_a_name
    from newsletter.subscribers import read_subscribers

    said = {**NOT_TEXT, **LINE_BREAKS}[char]
    assert why_not_a_name(f"a{char}b") == f"it contains {said}"

    people = tmp_path / "people.csv"
    people.write_text(f'email,name\nann@example.com,"Ann{char}Smith"\n', encoding="utf-8", newline="")
    (ann,) = read_subscribers(people)
    assert (ann.state, ann.reason) == (DeliveryState.INVALID, f"the name contains {said}")

    text = MINIMAL.replace('title: "A roundup"', f'title: "A{_yaml_escape(char)}roundup"')
    result = run("check", write_issue(project, text))
    assert result.exit_code == 1, result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error: issues/test.yaml:1:8: title: ")]
    assert errors and (said in errors[0] or "must be on one line (it contains a line break)" in errors[0]), errors


@pytest.mark.parametrize("char", list(NOT_TEXT))
def test_multi_line_text_refuses_what_is_not_text_but_keeps_its_line_breaks(project, run, char):
    body = f'body: "First line,{_yaml_escape(char)}second line."'
    result = run("check", write_issue(project, MINIMAL.replace('body: "Something is happening."', body)))
    assert result.exit_code == 1, result.output
    assert f"items[0].body: contains {NOT_TEXT[char]}" in result.output


@pytest.mark.parametrize("char", list(LINE_BREAKS))
def test_a_line_break_in_multi_line_text_is_text(project, run, char):
    body = f'body: "First line,{_yaml_escape(char)}second line."'
    result = run("check", write_issue(project, MINIMAL.replace('body: "Something is happening."', body)))
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("text", TEXT)
def test_letters_emoji_and_joiners_are_text_everywhere(project, run, tmp_path, text):
    from newsletter.delivery_state import DeliveryState
    from newsletter.slug import why_not_a_name
    from newsletter.subscribers import read_subscribers

    assert why_not_a_name(f"{text} summer") is None
    people = tmp_path / "people.csv"
    people.write_text(f"email,name\nann@example.com,{text} Smith\n", encoding="utf-8")
    (ann,) = read_subscribers(people)
    assert (ann.state, ann.name) == (DeliveryState.PENDING, f"{text} Smith")
    issue = write_issue(project, MINIMAL.replace('title: "A roundup"', f'title: "{text} roundup"'))
    assert run("check", issue).exit_code == 0


def test_one_set_of_characters_that_are_not_text_and_the_terminal_never_gets_them_raw():
    from newsletter import text

    refused = [chr(n) for n in range(0x110000) if text.NOT_TEXT.match(chr(n))]
    assert len(refused) == 0x20 + 1 + 0x20 + 2 + 0x800 + 2  # C0, DEL, C1, LS and PS, surrogates, U+FFFE/FFFF
    in_lines = [chr(n) for n in range(0x110000) if text.NOT_TEXT_IN_LINES.match(chr(n))]
    assert set(refused) - set(in_lines) == set("\t\n\r\x85\u2028\u2029") and set(in_lines) < set(refused)
    assert all(c not in text.printable(f"a{c}b") for c in refused)
