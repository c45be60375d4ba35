"""Temporary and permanent refusals, dropped connections, crashes and Ctrl-C:
every deliverable recipient ends up with exactly one message."""

from __future__ import annotations

import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from newsletter.delivery import Options, deliver
from newsletter.send_plan import plan_send
from newsletter.smtp import Settings

from .smtp_server import Recorder, free_port, start
from .support import SECRET, SEED, cli_command, send_env, write_list

ISSUE = f"issues/{SEED}.yaml"
FAST = Options(connections=3, retry_delay=0.01, max_attempts=4)


def _settings(port: int) -> Settings:
    return Settings("127.0.0.1", port, "none", timeout=5)


def _send(project: Path, rows: list[str], port: int, options: Options = FAST):
    with plan_send(project / ISSUE, write_list(project, rows)) as plan:
        outcome = deliver(plan, _settings(port), options, key=SECRET)
        return outcome, plan.ledger.counts(SEED), {e: r for e, r, *_ in plan.ledger.rows_in(SEED, "failed")}


def test_temporary_permanent_and_dropped_connections(project, inbox):
    def fault(rcpt: str, attempt: int) -> str | None:
        if rcpt.startswith("busy") and attempt <= 2:
            return "451 4.3.0 try again later"
        if rcpt.startswith("full") and attempt == 1:
            return "452 4.2.2 mailbox full"
        if rcpt.startswith("drop") and attempt == -1:
            return "drop"
        if rcpt.startswith("lost") and attempt == 1:
            return "lost"
        if rcpt.startswith("closing") and attempt == 1:
            return "421 4.3.2 shutting down"
        if rcpt.startswith("unknown"):
            return "550 5.1.1 no such user"
        if rcpt.startswith("never"):
            return "451 4.3.0 still busy"
        return None

    controller = start(Recorder(inbox, fault))
    try:
        good = [f"{kind}{i}@example.com" for kind in ("ok", "busy", "full", "drop", "closing") for i in range(3)]
        bad = ["unknown1@example.com", "never1@example.com"]
        lost = ["lost1@example.com"]
        outcome, counts, failed = _send(project, ["email", *good, *bad, *lost], controller.port)
    finally:
        controller.stop()
    received = inbox.recipients()
    assert set(received) == {*good, *lost}
    assert set(received.values()) == {1}, received
    assert counts["sent"] == len(good) and counts["failed"] == 2 and counts["pending"] == 0
    # The server stored it but its answer was lost: uncertain, and never sent twice.
    assert counts["sending"] == 1 and outcome.uncertain == 1
    assert failed["unknown1@example.com"] == "550 5.1.1 no such user"
    assert failed["never1@example.com"] == "gave up after 4 attempts: 451 4.3.0 still busy"
    assert outcome.stopped is None


def test_many_failures_in_a_row_stop_the_send_and_it_resumes(project, inbox):
    down = {"on": True}
    controller = start(Recorder(inbox, lambda rcpt, n: "554 5.7.1 relay access denied" if down["on"] else None))
    try:
        rows = ["email"] + [f"r{i}@example.com" for i in range(30)]
        options = Options(connections=1, retry_delay=0.01, max_failures_in_a_row=5)
        outcome, counts, _ = _send(project, rows, controller.port, options)
        assert outcome.stopped and "5 messages in a row failed" in outcome.stopped
        assert "554 5.7.1 relay access denied" in outcome.stopped
        assert counts["failed"] == 5 and counts["pending"] == 25
        down["on"] = False
        with plan_send(project / ISSUE, project / "list.csv", retry_failed=True) as plan:
            deliver(plan, _settings(controller.port), options, key=SECRET)
            assert plan.ledger.counts(SEED)["sent"] == 30
    finally:
        controller.stop()
    assert len(inbox.recipients()) == 30 and set(inbox.recipients().values()) == {1}


def test_an_unreachable_server_stops_with_a_clear_message(project, run, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("NEWSLETTER_SMTP_PORT", str(free_port()))
    outcome, counts, _ = _send(project, ["email", "a@example.com"], free_port(), Options(retry_delay=0.01))
    assert outcome.stopped.startswith("cannot reach 127.0.0.1:")
    assert counts["pending"] == 1 and counts["failed"] == 0


# -- a real process, killed ---------------------------------------------------


def _start_send(project: Path, port: int, *extra: str) -> subprocess.Popen:
    command = cli_command("send", ISSUE, "--to", "list.csv", "--yes", *extra)
    return subprocess.Popen(
        command, cwd=project, env=send_env(project, port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


@pytest.mark.parametrize("when", ["between messages", "before the 250 reached the sender"])
def test_killed_with_sigkill_and_run_again_each_recipient_gets_one(project, inbox, when):
    rows = ["email"] + [f"r{i:02d}@example.com" for i in range(40)]
    write_list(project, rows)
    handler = Recorder(inbox)
    controller = start(handler)
    process: subprocess.Popen | None = None

    def kill_at_tenth(_: str) -> None:
        if len(inbox.messages) == 10 and process is not None:
            os.kill(process.pid, signal.SIGKILL)

    if when == "between messages":
        handler.on_rcpt = kill_at_tenth  # as the 11th message begins
    else:
        handler.on_data = kill_at_tenth  # the 10th is stored, its sender dies before reading the 250
    try:
        process = _start_send(project, controller.port, "--connections", "1")
        process.wait(timeout=60)
        assert process.returncode == -signal.SIGKILL
        handler.on_rcpt = handler.on_data = None
        assert len(inbox.recipients()) == 10

        again = _start_send(project, controller.port, "--connections", "1")
        output, _ = again.communicate(timeout=60)
        assert again.returncode == 0, output
    finally:
        controller.stop()
    received = inbox.recipients()
    assert set(received.values()) == {1}, "someone got the message twice"
    if when == "between messages":
        assert len(received) == 40
        assert "uncertain" not in output.split("sent ")[0]
    else:
        # The 10th was accepted but never confirmed: reported, and not sent again.
        assert len(received) == 40
        assert "1 uncertain recipient(s)" in output and "r09@example.com" in output
        assert re.search(r"sent 30, failed 0", output)


def test_ctrl_c_finishes_the_message_in_flight_then_resumes(project, inbox):
    rows = ["email"] + [f"r{i:02d}@example.com" for i in range(30)]
    write_list(project, rows)
    handler = Recorder(inbox)
    controller = start(handler)
    process: subprocess.Popen | None = None

    def interrupt(_: str) -> None:
        if len(inbox.messages) == 5 and process is not None:
            os.kill(process.pid, signal.SIGINT)

    handler.on_data = interrupt
    try:
        process = _start_send(project, controller.port, "--connections", "2")
        output, _ = process.communicate(timeout=60)
        assert process.returncode == 1, output
        assert "interrupted after the messages in flight were finished" in output
        assert "resume with: newsletter send" in output
        assert "Traceback" not in output
        handler.on_data = None
        first = len(inbox.recipients())
        assert 5 <= first < 30

        again = _start_send(project, controller.port)
        output, _ = again.communicate(timeout=60)
        assert again.returncode == 0, output
        assert "uncertain" not in output.split("sent ")[0]
    finally:
        controller.stop()
    assert len(inbox.recipients()) == 30 and set(inbox.recipients().values()) == {1}
