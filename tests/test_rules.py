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
