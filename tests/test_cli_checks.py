"""Options of `send` and `preview` that a user gets wrong, or relies on: each checked through the CLI.

Every refusal here comes before anything is asked, connected or sent: a
wrong path must not be found out after "Send now?" or half-way through a
list.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from newsletter.__main__ import cli

from .support import MINIMAL, REPO, write_issue, write_list
from .timed_lines import TimedLines

# A small issue that `check` finds nothing to warn about, so that what the CLI prints is only what is tested.
QUIET = MINIMAL.replace('title: "A roundup"', 'id: quiet\ntitle: "A roundup"\npreheader: "What to do this month"')


@pytest.fixture
def issue(project) -> Path:
    return write_issue(project, QUIET)


# -- send: files that are not there --------------------------------------------


def test_a_missing_ca_file_is_one_line_before_any_prompt_or_connection(project, run, issue, raw_server):
    people = write_list(project, ["email", "ann@example.com"])
    # Without --yes, and with "y" ready: had the prompt come first, the send would go.
    sent = answering("y\n", "send", issue, "--to", people, "--ca-file", "no-such-ca.pem")
    test = run("send", issue, "--test", "advisor@example.org", "--ca-file", "no-such-ca.pem")
    for result in (sent, test):
        assert (result.exit_code, result.output) == (1, "error: --ca-file no-such-ca.pem: no such file\n")
    assert raw_server.connections == 0 and not raw_server.messages
    assert not (project / "state" / "ledger.sqlite3").exists()  # said before the list was read or recorded


def test_a_missing_ca_file_named_in_the_environment_is_refused_the_same_way(
    project, run, issue, raw_server, monkeypatch
):
    monkeypatch.setenv("NEWSLETTER_SMTP_CA_FILE", str(project / "gone.pem"))
    result = run("send", issue, "--test", "advisor@example.org")
    assert result.exit_code == 1
    assert result.output == f"error: NEWSLETTER_SMTP_CA_FILE {project / 'gone.pem'}: no such file\n"
    assert raw_server.connections == 0


def test_a_missing_suppression_list_stops_the_send_before_anything(project, run, issue, raw_server):
    people = write_list(project, ["email", "ann@example.com", "gone@example.com"])
    result = answering("y\n", "send", issue, "--to", people, "--suppressed", "unsubscribed.csv")
    # Read as "nobody left", it would mail everyone who did.
    assert (result.exit_code, result.output) == (1, "error: unsubscribed.csv: no such suppression list\n")
    assert raw_server.connections == 0 and not raw_server.messages


def test_a_missing_suppression_list_stops_a_dry_run_too(project, run, issue):
    people = write_list(project, ["email", "ann@example.com"])
    assert run("send", issue, "--to", people, "--dry-run").exit_code == 0
    result = run("send", issue, "--to", people, "--dry-run", "--suppressed", "unsubscribed.csv")
    assert (result.exit_code, result.output) == (1, "error: unsubscribed.csv: no such suppression list\n")
    assert _eml_names(project) == ["000001-ann@example.com.eml"]  # the last dry run's files stay


def answering(text: str, *args: object) -> Result:
    """The CLI run as the `run` fixture does, with `text` typed at any prompt."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=text, catch_exceptions=False)


# -- send --dry-run --limit ------------------------------------------------------


def _eml_names(project: Path) -> list[str]:
    return sorted(p.name for p in (project / "outbox" / "test" / "dry-run").glob("*.eml"))


def test_dry_run_with_a_limit_writes_that_many_messages_in_list_order(project, run, issue):
    rows = ["email,name", "not-an-address,Bad", "a@example.com,A", "A@Example.com,Again"]
    rows += [f"{c}@example.com,{c.upper()}" for c in "bcdef"]
    people = write_list(project, rows)
    result = run("send", issue, "--to", people, "--dry-run", "--limit", "3")
    assert result.exit_code == 0, result.output
    # Rows skipped on the way (invalid, duplicate) do not count against the limit.
    assert _eml_names(project) == ["000001-a@example.com.eml", "000002-b@example.com.eml", "000003-c@example.com.eml"]
    assert result.output.splitlines() == [
        "dry run: wrote 3 messages to outbox/test/dry-run/; sent nothing",
        "  skipped 1 duplicate",
        "  skipped 1 invalid",
    ]


def test_a_smaller_limit_leaves_only_this_runs_messages(project, run, issue):
    people = write_list(project, ["email"] + [f"r{i}@example.com" for i in range(6)])
    assert run("send", issue, "--to", people, "--dry-run").output.startswith("dry run: wrote 6 messages")
    assert len(_eml_names(project)) == 6
    result = run("send", issue, "--to", people, "--dry-run", "--limit", "1")
    assert result.output.startswith("dry run: wrote 1 message to")
    assert _eml_names(project) == ["000001-r0@example.com.eml"]
    assert run("send", issue, "--to", people, "--dry-run", "--limit", "100").output.startswith("dry run: wrote 6 ")


def test_a_limit_below_one_is_a_usage_error(project, run, issue):
    people = write_list(project, ["email", "a@example.com"])
    result = run("send", issue, "--to", people, "--dry-run", "--limit", "0")
    assert result.exit_code == 2 and "--limit" in result.output
    assert not (project / "outbox").exists()


# -- preview, as a user starts it ------------------------------------------------


@contextlib.contextmanager
def preview(project: Path, *args: str) -> Iterator[tuple[subprocess.Popen, TimedLines]]:
    """`newsletter preview ... --no-open --port 0` in its own process, stopped with Ctrl-C (SIGINT) afterwards.

    After the block the process has exited, and `lines.seen` holds all it printed (stdout and stderr, in order).
    """
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "newsletter", "preview", *args, "--no-open", "--port", "0"]
    process = subprocess.Popen(
        command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = TimedLines(process.stdout)
    try:
        yield process, lines
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        lines.rest()
        process.stdout.close()


def _address(lines: TimedLines) -> str:
    """The page's address, from the line saying where the preview is served."""
    return lines.until(r"^Previewing \S+ at (http://\S+/)  \(Ctrl-C to stop\)$").group(1)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode("utf-8")


def _state(url: str) -> dict:
    return json.loads(_get(url + "state.json"))


def test_serving_beyond_this_machine_is_warned_about(project, issue):
    with preview(project, str(issue), "--host", "0.0.0.0") as (process, lines):
        url = _address(lines)
    assert url.startswith("http://0.0.0.0:")
    assert "warning: serving on 0.0.0.0: anyone who can reach this machine can read the preview\n" in lines.seen
    assert process.returncode == 0 and "Traceback" not in "".join(lines.seen)


def test_preview_as_a_subscriber_shows_their_message(project, issue):
    write_list(project, ["email,name,city", "ann@example.com,Ann Example,Ottawa", "bob@example.com,Bob,Toronto"])
    with preview(project, str(issue), "--as", "ANN@example.com", "--to", "list.csv") as (process, lines):
        url = _address(lines)
        page = _get(url + "email.html")
        text = _state(url)["text"]
    assert "Hi Ann Example," in page and "Hi Ann Example," in text
    assert "Hi there," not in page and "Bob" not in page
    assert "unsubscribe?t=YW5uQGV4YW1wbGUuY29t" in page  # her own link (the token starts with her address)
    output = "".join(lines.seen)
    assert "warning: serving on" not in output  # 127.0.0.1, the default, is this machine only
    assert process.returncode == 0 and "Traceback" not in output


def test_preview_as_someone_not_on_the_list_says_so_and_follows_the_list(project, issue):
    people = write_list(project, ["email,name", "ann@example.com,Ann"])
    with preview(project, str(issue), "--as", "zoe@example.com", "--to", "list.csv") as (process, lines):
        url = _address(lines)
        lines.until(r"^error: ")
        assert lines.seen[-1] == "error: zoe@example.com is not in list.csv\n"
        assert _state(url)["errors"] == ["zoe@example.com is not in list.csv"]  # in the page too
        # The server keeps running and watches the list: once she is on it, her message shows.
        people.write_text("email,name\nann@example.com,Ann\nzoe@example.com,Zoë\n", encoding="utf-8")
        deadline = time.monotonic() + 10
        while _state(url)["errors"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _state(url)["errors"]
        assert "Hi Zoë," in _get(url + "email.html")
    assert process.returncode == 0 and "Traceback" not in "".join(lines.seen)


def test_preview_as_without_a_list_is_a_usage_error(project, issue):
    # In a process of its own: were the check gone, the preview would start and serve until stopped.
    with preview(project, str(issue), "--as", "ann@example.com") as (process, lines):
        process.wait(timeout=30)
    assert process.returncode == 2
    assert "Error: --as needs --to LIST.csv\n" in lines.seen
    assert not any(line.startswith("Previewing") for line in lines.seen)


def test_a_usage_error_names_the_option_that_is_missing(project, run, issue):
    result = run("send", issue)
    assert result.exit_code == 2
    assert re.search(r"give the subscriber list with --to LIST\.csv \(or --test ADDRESS\)", result.output)
