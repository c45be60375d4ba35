"""Issue names (slugs): one rule for `new` and for every command that takes an issue file."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.slug import why_not_a_name

from .support import SEED, write_list


@pytest.mark.parametrize("name", ["2021-06-summer", "été 2021", "Frühling_2022", "весна", "x: {y} #z", "a.b", "a..b"])
def test_plain_names_of_any_script_are_names(name):
    assert why_not_a_name(name) is None


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("", "it is empty"),
        (".", "it starts with '.'"),
        ("..", "it starts with '.'"),
        (".hidden", "it starts with '.'"),
        ("a/b", "it contains '/'"),
        ("a\\b", "it contains '\\'"),
        ("a\x1b[31mb", "it contains a control character (U+001B)"),
        ("a\x85b", "it contains a line break (U+0085)"),
        ("a\u2028b", "it contains a line break (U+2028)"),
        ("a\udcffb", "it contains a byte that is not valid UTF-8 (0xFF)"),  # how Python reads 0xff in a file name
        ("a\ufffeb", "it contains a non-character (U+FFFE)"),
    ],
)
def test_names_that_are_not_plain(name, reason):
    assert why_not_a_name(name) == reason


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if ".cache" not in p.relative_to(folder).parts}


@pytest.mark.parametrize(
    ("file", "shown"),
    [
        ("...yaml", "'..' cannot be an issue name: it starts with '.'"),
        ("..yaml", "'.' cannot be an issue name: it starts with '.'"),
        (".yaml", "'' cannot be an issue name: it is empty"),
        ("a\tb.yaml", "'a\\tb' cannot be an issue name: it contains a control character (U+0009)"),
    ],
)
@pytest.mark.parametrize("command", [["check"], ["build"], ["send", "--dry-run"], ["status"]])
def test_an_issue_file_whose_name_is_not_plain_is_refused_and_nothing_written(project, run, file, shown, command):
    path = project / "issues" / file
    path.write_bytes((project / "issues" / f"{SEED}.yaml").read_bytes())
    to = write_list(project, ["email", "a@example.com"])
    before = _files(project)
    result = run(*command, f"issues/{file}", *(["--to", to] if command[0] == "send" else []))
    assert result.exit_code == 1, result.output
    escaped = file.replace("\t", "\\t")  # what a terminal would obey is escaped in the path too
    assert result.output.splitlines() == [f"error: issues/{escaped}: {shown}; rename the file"]
    assert _files(project) == before


@pytest.mark.parametrize("name", ["Été 2021", 'Say "hi": now #1'])
def test_new_takes_any_plain_name_and_its_scaffold_passes_check(project, run, name):
    result = run("new", name)
    assert result.exit_code == 0, result.output
    checked = run("check", project / "issues" / f"{name}.yaml")
    assert checked.exit_code == 0, checked.output


@pytest.mark.parametrize(
    ("name", "shown"),
    [
        ("..", "'..' cannot be an issue name: it starts with '.'"),
        (".summer", "'.summer' cannot be an issue name: it starts with '.'"),
        ("a\\b", "'a\\b' cannot be an issue name: it contains '\\'"),
        ("a\x1b[2Jb", "'a\\x1b[2Jb' cannot be an issue name: it contains a control character (U+001B)"),
    ],
)
def test_new_refuses_what_build_would_refuse(project, run, name, shown):
    before = _files(project)
    result = run("new", name)
    assert result.exit_code == 1
    assert result.output == f"error: {shown}; use a plain name, like 2021-06-summer\n"
    assert _files(project) == before
