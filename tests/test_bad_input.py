"""`newsletter check` on bad input: exit 1, no traceback, and one `FILE:LINE:COL: field: message` per problem."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import textwrap
import tracemalloc
from pathlib import Path

import pytest

from .support import MINIMAL, SEED, reply_on_the_from_domain, run_cli, write_issue

ISSUE = "issues/test.yaml"


def failing_check(run, *args: str) -> list[str]:
    """Run `newsletter check`, require a clean failure, and return its error lines."""
    result = run("check", *args)
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert lines, result.output
    return lines


def check_issue(project: Path, run, text: str) -> list[str]:
    write_issue(project, text)
    return failing_check(run, ISSUE)


def assert_error(lines: list[str], where: str, field: str | None, *fragments: str, file: str = ISSUE) -> None:
    """Exactly one error is at `where` ("LINE:COL", or "LINE" for any column) on `field`, saying `fragments`."""
    column = "" if ":" in where else r"(?::\d+)?"
    head = rf"error: {re.escape(file)}:{re.escape(where)}{column}: " + (rf"{re.escape(field)}: " if field else "")
    found = [line for line in lines if re.match(head, line)]
    assert len(found) == 1, f"expected one error at {file}:{where} {field or ''} in:\n" + "\n".join(lines)
    for fragment in fragments:
        assert fragment in found[0]


def located(lines: list[str]) -> list[tuple[int, str]]:
    """(line, field) of each error line, in the order printed."""
    out = []
    for line in lines:
        match = re.match(rf"error: {re.escape(ISSUE)}:(\d+)(?::\d+)?: (\S+): ", line)
        assert match, line
        out.append((int(match[1]), match[2]))
    return out


# 1. missing file


def test_missing_file(project, run):
    assert failing_check(run, "issues/missing.yaml") == ["error: issues/missing.yaml: no such issue file"]


# 2. not UTF-8


def test_not_utf8_names_the_line(project, run):
    text = """
        title: "A roundup"
        date: 2021-05-03
        intro: "Rendez-vous au café."
    """
    (project / ISSUE).write_bytes(textwrap.dedent(text).lstrip().encode("latin-1"))
    lines = failing_check(run, ISSUE)
    assert lines == [f"error: {ISSUE}:3:27: not valid UTF-8 (byte 0xe9); save the file as UTF-8"]


def test_not_utf8_column_counts_characters(project, run):
    # "Café " is valid UTF-8 (é is 2 bytes); the stray latin-1 é after it is character 14.
    (project / ISSUE).write_bytes(b'title: "A"\ndate: 2021-05-03\nintro: "Caf\xc3\xa9 \xe9"\n')
    assert_error(failing_check(run, ISSUE), "3:14", None, "not valid UTF-8")


# 3. invalid YAML


@pytest.mark.parametrize(
    ("text", "where"),
    [
        pytest.param(
            """
            title: A
            date: 2021-05-03
            items:
              - status: new
               title: x
            """,
            "5:4",
            id="item-key-indented-one-space-less",
        ),
        pytest.param(
            """
            title: A
            date: 2021-05-03
            items:
              - status: new
                title: x
                  body: y
            """,
            "6:11",
            id="key-indented-too-far",
        ),
    ],
)
def test_bad_indentation(project, run, text, where):
    assert_error(check_issue(project, run, text), where, None, "invalid YAML")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        pytest.param(
            """
            title: "A roundup
            date: 2021-05-03
            items:
              - status: new
                title: An action
            """,
            "1:8",
            id="unclosed-double-quote",
        ),
        pytest.param(
            """
            title: A roundup
            date: 2021-05-03
            items:
              - status: new
                title: An action
                hashtags: [one, two
                body: Text.
            """,
            "6:15",
            id="unclosed-bracket",
        ),
    ],
)
def test_unclosed_quote_or_bracket_names_where_it_opens(project, run, text, where):
    assert_error(check_issue(project, run, text), where, None, "invalid YAML")


# 4. duplicated key


@pytest.mark.parametrize(
    ("extra", "where", "field", "first"),
    [
        ('title: "Again"\n', "9:1", "title", 1),
        ('    title: "Again"\n', "9:5", "items[0].title", 5),
    ],
    ids=["top-level", "in-item"],
)
def test_duplicated_key(project, run, extra, where, field, first):
    lines = check_issue(project, run, MINIMAL + extra)
    key = field.rpartition(".")[2]
    assert_error(lines, where, field, f"duplicated key '{key}'", f"first given on line {first}")


# 5. wrong type


@pytest.mark.parametrize(
    ("old", "new", "where", "field", "message"),
    [
        ('title: "A roundup"', "title: 3", "1:8", "title", "should be text, not a number (3)"),
        (MINIMAL[MINIMAL.index("items:") :].rstrip(), 'items: "text"', "3:8", "items", "should be a list"),
    ],
    ids=["title-number", "items-text"],
)
def test_wrong_type(project, run, old, new, where, field, message):
    lines = check_issue(project, run, MINIMAL.replace(old, new))
    assert len(lines) == 1
    assert_error(lines, where, field, message)


# 6. missing required field


def test_missing_item_title(project, run):
    lines = check_issue(project, run, MINIMAL.replace('    title: "An action"\n', ""))
    assert lines == [f"error: {ISSUE}:4:5: items[0].title: 'title' is required but missing"]


def test_missing_date(project, run):
    lines = check_issue(project, run, MINIMAL.replace("date: 2021-05-03\n", ""))
    assert lines == [f"error: {ISSUE}:1:1: date: 'date' is required but missing"]


# 7. unknown key, with a guess


@pytest.mark.parametrize(
    ("old", "new", "where", "field", "guess"),
    [
        ("title: ", "titel: ", "1:1", "titel", "title"),
        ("    actions:", "    acions:", "7:5", "items[0].acions", "actions"),
    ],
)
def test_unknown_key_did_you_mean(project, run, old, new, where, field, guess):
    lines = check_issue(project, run, MINIMAL.replace(old, new, 1))
    assert_error(lines, where, field, f"unknown key '{field.rpartition('.')[2]}'", f"did you mean '{guess}'?")


# 8. empty item list


def test_empty_item_list(project, run):
    lines = check_issue(project, run, MINIMAL[: MINIMAL.index("items:")] + "items: []\n")
    assert lines == [f"error: {ISSUE}:3:8: items: needs at least 1 entry"]


# 9. image without alt


def test_image_without_alt(project, run):
    text = MINIMAL + "    image:\n      src: https://images.example/a.png\n      width: 300\n"
    assert_error(check_issue(project, run, text), "10:7", "items[0].image.alt", "'alt' is required")


# 10. link schemes


@pytest.mark.parametrize("url", ["javascript:alert(1)", "ftp://files.example/a.pdf"])
def test_bad_scheme_in_links_url(project, run, url):
    text = MINIMAL + f'    links:\n      - text: "Go"\n        url: "{url}"\n'
    scheme = url.partition(":")[0]
    lines = check_issue(project, run, text)
    assert_error(lines, "11:14", "items[0].links[0].url", f"'{scheme}:'", "only http, https and mailto")


@pytest.mark.parametrize(
    ("steps", "where", "field"),
    [
        pytest.param(
            """
            body: |
              First paragraph.

              See [this](javascript:alert(1)) now.
            """,
            "9",
            "items[0].body",
            id="body-block-own-paragraph",
        ),
        pytest.param(
            """
            body: |
              First line,
              second line,
              see [this](javascript:alert(1)) now.
            """,
            "9",
            "items[0].body",
            id="body-block-3rd-line-of-paragraph",
        ),
        pytest.param(
            """
            body: >
              First paragraph.

              See [this](javascript:alert(1)) now.
            """,
            "6",  # folding joins lines, so a > block is placed on its own first line
            "items[0].body",
            id="body-folded-block",
        ),
        pytest.param(
            """
            actions:
              - Do a thing.
              - "Then [download it](ftp://files.example/a.pdf)."
            """,
            "8:9",
            "items[0].actions[1]",
            id="action-step",
        ),
        pytest.param(
            """
            actions:
              - |
                Then download
                [this file](ftp://files.example/a.pdf).
            """,
            "9",
            "items[0].actions[0]",
            id="action-step-block-2nd-line",
        ),
    ],
)
def test_bad_scheme_in_markdown_names_the_links_line(project, run, steps, where, field):
    head = 'title: "A roundup"\ndate: 2021-05-03\nitems:\n  - status: new\n    title: "An action"\n'
    text = head + textwrap.indent(textwrap.dedent(steps).lstrip(), "    ")
    lines = check_issue(project, run, text)
    assert len(lines) == 1
    assert_error(lines, where, field, "only http, https and mailto links are allowed")


# 11. subject with a line break


def test_subject_with_line_break(project, run):
    text = MINIMAL.replace('title: "A roundup"\n', 'title: "A roundup"\nsubject: "a\\nb"\n')
    assert check_issue(project, run, text) == [
        f"error: {ISSUE}:2:10: subject: must be on one line (it contains a line break)"
    ]


# 12. every problem, in one run, in file order


def test_several_problems_all_reported_in_file_order(project, run):
    text = """
        title: 3
        date: 2021-05-03
        items:
          - status: neww
            title: "An action"
            body: "See [it](javascript:alert(1))."
            acions:
              - "Do a thing."
            image:
              src: https://images.example/a.png
    """
    lines = check_issue(project, run, text)
    assert located(lines) == [
        (1, "title"),
        (4, "items[0].status"),
        (6, "items[0].body"),
        (7, "items[0].acions"),
        (10, "items[0].image.alt"),
    ]
    assert "did you mean 'new'?" in lines[1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            """
            title: 3
            date: 2021-05-03
            items:
              - status: new
                title: "An action"
                title: "Again"
            """,
            {1, 6},
            id="duplicated-key",
        ),
        pytest.param(
            """
            title: 3
            date: 2021-13-45
            items: []
            """,
            {1, 2, 3},
            id="impossible-date",
        ),
    ],
)
def test_yaml_walk_problems_reported_with_validation_problems(project, run, text, expected):
    numbers = [number for number, _ in located(check_issue(project, run, text))]
    assert set(numbers) == expected
    assert numbers == sorted(numbers)


# 13. files that are not issues at all


@pytest.mark.parametrize("text", ["", "# nothing but a comment\n"], ids=["empty", "comment-only"])
def test_empty_file(project, run, text):
    assert check_issue(project, run, text) == [f"error: {ISSUE}:1:1: the file is empty"]


def test_top_level_list(project, run):
    lines = check_issue(project, run, "- title: A\n- date: 2021-05-03\n")
    assert lines == [f"error: {ISSUE}:1:1: the file must be a mapping of keys, not a list"]


def test_file_over_1_mb_is_refused(project, run):
    text = MINIMAL + "intro: |\n" + ("  " + "x" * 98 + "\n") * 10_001
    lines = check_issue(project, run, text)
    assert len(lines) == 1
    assert lines[0].startswith(f"error: {ISSUE}: ")
    assert "too large (the limit is 1,000,000)" in lines[0]


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI in its own process, for inputs that could hang or eat the memory of the test run."""

    def cap_memory() -> None:
        import resource

        # Reading /dev/zero whole should fail here, not slow the machine down first.
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    return run_cli(cwd, *args, preexec_fn=cap_memory)


@pytest.mark.parametrize(
    ("command", "path"),
    [("check", "/dev/zero"), ("check", "issues/zero.yaml"), ("build", "issues/zero.yaml")],
)
def test_an_endless_file_is_refused_not_read(project, command, path):
    (project / "issues" / "zero.yaml").symlink_to("/dev/zero")
    done = cli(project, command, path)
    assert (done.returncode, done.stderr) == (1, f"error: {path}: is a device, not a regular file\n")
    assert not (project / "outbox").exists()


def test_a_named_pipe_is_refused_without_waiting_for_a_writer(project):
    os.mkfifo(project / "issues" / "pipe.yaml")
    done = cli(project, "check", "issues/pipe.yaml")
    assert (done.returncode, done.stderr) == (
        1,
        "error: issues/pipe.yaml: is a named pipe (FIFO), not a regular file\n",
    )


KALLSYMS = Path("/proc/kallsyms")


@pytest.mark.skipif(
    not os.access(KALLSYMS, os.R_OK) or os.stat(KALLSYMS).st_size != 0, reason="needs Linux's /proc/kallsyms"
)
def test_a_file_that_says_it_is_empty_is_read_only_up_to_the_limit(project, run):
    # Files under /proc report size 0 whatever they hold; this one holds megabytes.
    (project / ISSUE).symlink_to(KALLSYMS)
    with KALLSYMS.open("rb") as f:
        if len(f.read(1_000_001)) <= 1_000_000:
            pytest.skip("/proc/kallsyms is smaller than the limit here")
    assert failing_check(run, ISSUE) == [f"error: {ISSUE}: is too large (the limit is 1,000,000 bytes)"]


BILLION_LAUGHS = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (BILLION_LAUGHS, rf"error: {ISSUE}:\d+:\d+: more than 200,000 values \(too many aliases\?\)"),
        (MINIMAL + "intro: &loop [*loop]\n", rf"error: {ISSUE}:9:\d+: an alias refers to itself"),
    ],
    ids=["billion-laughs", "self-reference"],
)
def test_alias_bomb_fails_fast(project, run, text, expected):
    failing_check(run, "issues/missing.yaml")  # import everything first: measure only the check

    def too_slow(signum, frame):
        raise TimeoutError("check is still expanding aliases after 30 s")

    # The alarm only keeps a regression from hanging the suite. What shows the work is bounded does not
    # depend on the machine's speed: the memory it took, and the message naming the count it stopped at.
    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(30)
    tracemalloc.start()
    try:
        lines = check_issue(project, run, text)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert peak < 100 * 1024 * 1024
    assert len(lines) == 1
    assert re.fullmatch(expected, lines[0])


@pytest.mark.parametrize(
    "text",
    [
        BILLION_LAUGHS,
        # Few enough copies for the composer (199 x 1,001) but too many values in all once the anchor is counted.
        "a: &a [" + ", ".join(["0"] * 1000) + "]\nb: [" + ", ".join(["*a"] * 199) + "]\n",
    ],
    ids=["billion-laughs", "counted-while-building"],
)
def test_alias_bomb_names_the_alias_where_the_count_ran_over(project, run, text):
    lines = check_issue(project, run, text)
    match = re.fullmatch(rf"error: {ISSUE}:(\d+):(\d+): more than 200,000 values \(too many aliases\?\)", lines[0])
    assert match and len(lines) == 1, lines
    line, column = int(match[1]), int(match[2])
    assert text.splitlines()[line - 1][column - 1 :].startswith("*"), (line, column)


def test_alias_expansion_under_the_limit_gives_short_messages(project, run):
    anchors = "a: &a [lol, lol, lol, lol]\n" + "".join(
        f"{b}: &{b} [*{a}, *{a}, *{a}, *{a}]\n" for a, b in zip("abcdef", "bcdefg", strict=True)
    )
    lines = check_issue(project, run, anchors + MINIMAL.replace("status: new", "status: *g"))
    status = [line for line in lines if "items[0].status: should be one of 'new'" in line]
    assert len(status) == 1
    assert max(len(line) for line in lines) < 300


def test_problem_through_alias_names_the_alias_line(project, run):
    text = """
        title: "A roundup"
        date: 2021-05-03
        items:
          - status: new
            title: "One"
            hashtags: &tags [Ok, "#Bad"]
          - status: new
            title: "Two"
            hashtags: *tags
    """
    lines = check_issue(project, run, text)
    assert_error(lines, "6:26", "items[0].hashtags[1]", "without '#'")
    assert_error(lines, "9:15", "items[1].hashtags[1]", "without '#'")


def test_broken_site_file_reported_with_the_issues_errors(project, run):
    site = project / "newsletter.yaml"
    text = site.read_text(encoding="utf-8")
    line = text.splitlines().index("  host: localhost") + 1
    site.write_text(text.replace("  host: localhost\n", "  host: localhost: 25\n"), encoding="utf-8")
    lines = check_issue(project, run, MINIMAL.replace('title: "A roundup"', "title: 3"))
    assert len(lines) == 2
    assert_error(lines, f"{line}:18", None, "invalid YAML", file="newsletter.yaml")
    assert_error(lines, "1:8", "title", "should be text")


# 14. warnings, and --strict


# Placeholder links (RFC 2606's example domains) in every place a link can be, and one real link.
PLACEHOLDERS = """
id: placeholders
title: "Placeholders"
date: 2021-05-03
preheader: "Links still to fill in"
items:
  - status: new
    title: "One"
    body: "See [this](https://example.org/a) and [that](https://example.com/b)."
    actions:
      - "Sign [here](https://www.example.net/c)."
    links:
      - {text: "Real", url: "https://www.amnesty.ca/"}
      - {text: "Fake", url: "https://example.org/d"}
  - status: ongoing
    title: "Two"
    image: {src: "https://example.org/e.png", alt: "A flower"}
    body: "Write to [us](mailto:team@example.com) or [them](mailto:hhomes@amnesty.ca)."
"""
FOUND = [
    "8:11: items[0].body: placeholder link https://example.org/a",
    "8:11: items[0].body: placeholder link https://example.com/b",
    "10:9: items[0].actions[0]: placeholder link https://www.example.net/c",
    "13:29: items[0].links[1].url: placeholder link https://example.org/d",
    "16:18: items[1].image.src: placeholder image https://example.org/e.png",
    "17:11: items[1].body: placeholder link mailto:team@example.com",
]


def test_strict_fails_on_placeholder_links(project, run):
    reply_on_the_from_domain(project)
    write_issue(project, PLACEHOLDERS)
    lines = failing_check(run, "--strict", ISSUE)
    assert lines == [f"error: {ISSUE}:{found}: put the real address" for found in FOUND]


def test_plain_check_passes_and_prints_placeholder_warnings(project, run):
    reply_on_the_from_domain(project)
    write_issue(project, PLACEHOLDERS)
    result = run("check", ISSUE)
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.output.splitlines() if line.startswith("warning: ")]
    assert warnings == [f"warning: {ISSUE}:{found}: put the real address" for found in FOUND]
    assert re.search(rf"^{re.escape(ISSUE)}: valid, 2 items, HTML \d+\.\d KB, 6 warnings$", result.output, re.M)


@pytest.mark.parametrize(
    ("line", "where", "says"),
    [
        ("2021-13-45: x", "4:1", "cannot read this key"),
        ("!foo extra: x", "4:1", "cannot read this key"),
        ("<<: {title: x}", "4:1", "merge keys (<<) are not supported"),
        ('extra: "A\\0B"', "4:8", "contains a control character"),
    ],
)
def test_unreadable_keys_and_control_characters(project, run, line, where, says):
    text = (
        'title: "A roundup"\ndate: 2021-05-03\nlang: en\n'
        + line
        + "\n"
        + MINIMAL.split("items:", 1)[1].join(["items:", ""])
    )
    write_issue(project, text)
    lines = failing_check(run, ISSUE)
    assert any(e.startswith(f"error: {ISSUE}:{where}: ") and says in e for e in lines), lines


def test_a_non_ascii_unsubscribe_address_is_refused(project, run):
    site = project / "newsletter.yaml"
    site.write_text(
        site.read_text(encoding="utf-8").replace("https://example.org/unsubscribe", "https://exämple.org/unsubscribe"),
        encoding="utf-8",
    )
    lines = failing_check(run, f"issues/{SEED}.yaml")
    assert any("newsletter.yaml:" in e and "unsubscribe_url" in e and "ASCII" in e for e in lines), lines
