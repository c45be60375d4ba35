"""Promises of the send that a hostile review broke once: who left stays left, a record
that outlives a deleted write-ahead log or a Ctrl-C at the wrong moment, no silent zeros."""

from __future__ import annotations

import os
import re
import shlex
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

from click.testing import CliRunner

from newsletter.__main__ import cli

from .smtp_server import Recorder, start
from .support import SECRET, SEED, cli_command, cli_env, run_cli, write_list

LEDGER = Path("state") / "ledger.sqlite3"
ISSUE = f"issues/{SEED}.yaml"


def _twice(inbox) -> list[str]:
    return sorted(address for address, n in inbox.recipients().items() if n > 1)


def _send_args(people: Path) -> list[str | Path]:
    return ["send", ISSUE, "--to", people, "--yes", "--connections", "1"]


def test_the_printed_resume_command_never_mails_someone_who_left(project, run, inbox, monkeypatch):
    controller = start(
        Recorder(inbox, lambda rcpt, n: "550 5.1.1 no such mailbox" if rcpt.startswith("gone") else None)
    )
    monkeypatch.setenv("NEWSLETTER_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("NEWSLETTER_SMTP_PORT", str(controller.port))
    monkeypatch.setenv("NEWSLETTER_SMTP_SECURITY", "none")
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    try:
        people = write_list(
            project, ["email", "left@example.com", *[f"gone{i:02d}@example.com" for i in range(20)], "z@example.com"]
        )
        unsubscribed = write_list(project, ["left@example.com"], "unsubscribed list.csv")
        stopped = run("send", ISSUE, "--to", people, "--suppressed", unsubscribed, "--yes", "--connections", "1")
        assert stopped.exit_code == 1 and "20 messages in a row failed" in stopped.output
        resume = re.search(r"resume with: (newsletter send .*)", stopped.output).group(1)
        assert "--suppressed" in resume
        # Exactly what the tool said to type, and "y" at its prompt.
        CliRunner().invoke(cli, shlex.split(resume)[1:], input="y\n", catch_exceptions=False)
        # And a careless resume without the list: once suppressed for an issue, always.
        CliRunner().invoke(cli, ["send", ISSUE, "--to", str(people), "--yes"], catch_exceptions=False)
    finally:
        controller.stop()
    assert "left@example.com" not in inbox.recipients()
    assert inbox.recipients()["z@example.com"] == 1


def test_a_suppression_list_linked_to_a_missing_drive_stops_the_send(project, run, smtp_server, inbox):
    (project / "suppressions.csv").symlink_to("/nonexistent-shared-drive/unsubscribed.csv")
    people = write_list(project, ["email", "stays@example.com", "left@example.com"])
    result = run("send", ISSUE, "--to", people, "--yes")
    assert result.exit_code == 1
    assert (
        "suppressions.csv: links to /nonexistent-shared-drive/unsubscribed.csv, which cannot be read" in result.output
    )
    assert inbox.recipients() == {}


def test_the_write_ahead_log_deleted_during_a_send_is_noticed_and_a_crash_loses_nothing(project, smtp_server, inbox):
    people = write_list(project, ["email"] + [f"r{i:02d}@example.com" for i in range(40)])
    sender: list[subprocess.Popen] = []

    def meddle(_: str) -> None:
        if len(inbox.messages) == 5:
            (project / "state" / "ledger.sqlite3-wal").unlink()  # a clean-up of "temporary" files
        if len(inbox.messages) == 15:
            sender[0].kill()  # should it get this far

    smtp_server.on_data = meddle
    args = _send_args(people)
    sender.append(
        subprocess.Popen(
            cli_command(*args), cwd=project, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
    )
    output = sender[0].communicate(timeout=120)[0].decode()
    smtp_server.on_data = None
    assert sender[0].returncode == 1, output
    assert "the send ledger was deleted or replaced while sending" in output
    assert 5 <= len(inbox.recipients()) < 15

    again = run_cli(project, *args, timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _twice(inbox) == [] and len(inbox.recipients()) == 40


def test_ctrl_c_while_the_last_message_is_in_flight_finishes_it(project, smtp_server, inbox):
    people = write_list(project, ["email", "a@example.com", "b@example.com", "c@example.com"])
    sender: list[subprocess.Popen] = []

    def slow(rcpt: str) -> None:
        if rcpt == "b@example.com":
            sender[0].send_signal(signal.SIGINT)  # the user presses Ctrl-C
            time.sleep(1.0)  # while the server is slow to answer the final dot

    smtp_server.on_data = slow
    sender.append(
        subprocess.Popen(
            cli_command(*_send_args(people)),
            cwd=project,
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # A shell running the suite in the background ignores SIGINT; a user's terminal does not.
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
    )
    output = sender[0].communicate(timeout=120)[0].decode()
    smtp_server.on_data = None
    assert "interrupted after the messages in flight were finished" in output, output
    with sqlite3.connect(project / LEDGER) as db:
        states = dict(db.execute("SELECT email, state FROM deliveries").fetchall())
    assert states["b@example.com"] == "sent", states


def test_status_of_a_file_that_is_not_there_is_an_error(project, run, smtp_server):
    assert run("send", ISSUE, "--to", write_list(project, ["email", "a@example.com"]), "--yes").exit_code == 0
    result = run("status", f"issues/{SEED}.yml")
    assert result.exit_code == 1 and f"issues/{SEED}.yml: no such issue file" in result.output


def test_a_fifo_as_the_list_is_refused_without_waiting(project, smtp_server):
    os.mkfifo(project / "list.csv")
    done = run_cli(project, "send", ISSUE, "--to", "list.csv", "--yes")
    assert done.returncode == 1
    assert done.stderr == "error: list.csv: is a named pipe (FIFO), not a regular file\n"
