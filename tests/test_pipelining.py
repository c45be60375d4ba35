"""SMTP PIPELINING (RFC 2920): where the server offers it, a message costs one round trip, and every reply
still counts. A recipient refused inside a group is failed or tried again and never sent; a connection lost
between a message's commands and its content is tried again; a crash leaves at most one uncertain recipient
per connection. Servers: the raw one (it counts round trips), aiosmtpd told to offer PIPELINING, and Postfix."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import ssl
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

from newsletter.delivery import Options, Outcome, deliver
from newsletter.send_plan import plan_send
from newsletter.smtp import Settings

from .raw_smtp import RawSMTP, Received
from .small_disk import small_disk
from .smtp_server import Recorder, start
from .support import SECRET, SEED, cli_command, send_env, write_list
from .tcp_proxy import CuttingProxy

ISSUE = f"issues/{SEED}.yaml"
ONE = Options(connections=1, retry_delay=0.01, max_attempts=3)
# What a client may say to the raw server; anything else would be a message's content taken for commands.
COMMANDS = {b"EHLO", b"MAIL", b"RCPT", b"DATA", b"RSET", b"QUIT"}


def _deliver(
    project: Path, people: list[str], port: int, options: Options = ONE, timeout: float = 10
) -> tuple[Outcome, dict]:
    """Send the seed issue to `people`; what the run did, and each row's (state, reply, attempts)."""
    with plan_send(project / ISSUE, write_list(project, ["email", *people])) as plan:
        outcome = deliver(plan, Settings("127.0.0.1", port, "none", timeout=timeout), options, key=SECRET)
    with sqlite3.connect(project / "state" / "ledger.sqlite3") as db:
        rows = {email: (state, reply, n) for email, state, reply, n in db.execute(_ROWS)}
    db.close()
    return outcome, rows


_ROWS = "SELECT email, state, reply, attempts FROM deliveries"


def _send_command(project: Path, port: int, *options: str) -> tuple[list[str], dict[str, str]]:
    """`send` of the seed issue to list.csv as a user types it, for its own process, and its environment."""
    return cli_command("send", ISSUE, "--to", "list.csv", "--yes", *options), send_env(project, port)


def _recipients(messages: list[Received]) -> list[str]:
    return sorted(re.fullmatch(rb"TO:<([^>]+)>", m.rcpt_to[0], re.I).group(1).decode() for m in messages)


@pytest.mark.parametrize("offered", [True, False], ids=["pipelining", "without-pipelining"])
def test_a_message_costs_one_round_trip_where_pipelining_is_offered(project, offered):
    people = [f"r{i:02d}@example.com" for i in range(12)]
    with RawSMTP(pipelining=offered) as server:
        outcome, rows = _deliver(project, people, server.port)
    assert outcome.sent == 12 and _recipients(server.messages) == people
    assert {state for state, _, _ in rows.values()} == {"sent"}
    if offered:
        # EHLO, the first MAIL/RCPT/DATA, then each content with the next message's commands in one write, the
        # last content, QUIT and the hang-up: 16 turns. Four round trips a message would take 51, two 27.
        assert server.turns <= len(people) + 8, server.turns
    else:
        # One command at a time, each waiting for its answer: a server that did not offer PIPELINING gets
        # nothing else.
        assert server.turns >= 4 * len(people), server.turns
    assert set(server.commands) <= COMMANDS


@pytest.mark.parametrize("lax", [False, True], ids=["data-refused", "data-taken-anyway"])
@pytest.mark.parametrize(
    "refusal, state, attempts",
    [(b"550 5.1.1 no such user", "failed", 1), (b"451 4.3.0 try again later", "sent", 2)],
    ids=["550", "451"],
)
def test_a_recipient_refused_inside_a_pipelined_group_is_never_sent_in_that_transaction(
    project, refusal, state, attempts, lax
):
    def at_rcpt(rcpt: str, attempt: int) -> bytes | None:
        return refusal if rcpt == "refused@example.com" and attempt == 1 else None

    people = ["a@example.com", "refused@example.com", "b@example.com", "c@example.com"]
    with RawSMTP(pipelining=True, lax=lax, at_rcpt=at_rcpt) as server:
        outcome, rows = _deliver(project, people, server.port)
    delivered = sorted(p for p in people if p != "refused@example.com" or state == "sent")
    assert _recipients(server.messages) == delivered
    assert rows["refused@example.com"] == (state, "250 OK queued" if state == "sent" else refusal.decode(), attempts)
    assert all(rows[p][0] == "sent" for p in people if p != "refused@example.com")
    # The refused RCPT made DATA fail (503), no content followed it (it would have been read as commands), and
    # RSET ended the transaction, on the same connection. A server that took DATA anyway got a lone dot.
    assert set(server.commands) <= COMMANDS and server.commands.count(b"RSET") == 1
    assert server.empty_data == ([b""] if lax else [])
    assert server.connections == 1
    assert outcome.failed == (state == "failed") and outcome.uncertain == 0


@pytest.mark.parametrize("fault", ["hang up", "354 and hang up"])
def test_a_connection_lost_between_the_commands_and_the_content_is_tried_again_not_uncertain(project, fault):
    def at_data(rcpt: str, attempt: int) -> str | None:
        return fault if rcpt == "dropped@example.com" and attempt == 1 else None

    people = ["a@example.com", "dropped@example.com", "b@example.com"]
    with RawSMTP(pipelining=True, at_data=at_data) as server:
        outcome, rows = _deliver(project, people, server.port)
    # The content never went out: nobody is uncertain, and each gets it once over a new connection.
    assert _recipients(server.messages) == sorted(people)
    assert outcome.sent == 3 and outcome.uncertain == 0
    assert rows["dropped@example.com"][:2] == ("sent", "250 OK queued") and rows["dropped@example.com"][2] == 2
    assert server.connections == 2


GREETING_AND_EHLO = len(b"220 127.0.0.1 raw test server\r\n250-127.0.0.1\r\n250 PIPELINING\r\n")
GROUP_ACCEPTED = len(b"250 OK\r\n250 OK\r\n354 go on\r\n")


@pytest.mark.parametrize(
    "answered, state, reply",
    [
        (GREETING_AND_EHLO, "failed", "gave up after 2 attempts: connection lost: timed out"),
        (
            GREETING_AND_EHLO + GROUP_ACCEPTED,
            "sending",
            "uncertain: connection lost after the message was sent (timed out)",
        ),
    ],
    ids=["silent-after-the-commands", "silent-after-the-final-dot"],
)
def test_a_server_that_stops_answering_is_a_lost_connection_once_the_timeout_has_passed(
    project, answered, state, reply
):
    with RawSMTP(pipelining=True) as server, CuttingProxy(server.port, answered, stall=True) as proxy:
        options = Options(connections=1, retry_delay=0.01, max_attempts=2)
        outcome, rows = _deliver(project, ["a@example.com"], proxy.port, options, timeout=0.5)
    assert rows["a@example.com"][:2] == (state, reply)
    # Silent after the final dot: the server has the message, which is why it is uncertain and not sent again.
    assert len(server.messages) == (state == "sending")
    assert outcome.stopped is None


def test_refusals_of_a_message_s_content_are_settled_after_the_next_message_has_started(project, inbox):
    """With PIPELINING a message's final dot goes with the next message's commands: its answer is read one
    round later, and each kind of answer still does what it does without pipelining."""

    def fault(rcpt: str, attempt: int) -> str | None:
        kind = rcpt.split("@")[0].rstrip("0123456789")
        return {
            ("busy", 1): "451 4.3.0 try again later",
            ("busy", 2): "452 4.2.2 mailbox full",
            ("closing", 1): "421 4.3.2 shutting down",
            ("lost", 1): "lost",
            ("gone", -1): "drop",  # at RCPT: the connection dies before the message
        }.get((kind, attempt)) or ("550 5.7.1 content refused" if kind == "unknown" else None)

    handler = Recorder(inbox, fault)
    handler.pipelining = True
    controller = start(handler)
    kinds = ("ok", "busy", "ok", "closing", "ok", "lost", "ok", "gone", "ok", "unknown", "ok")
    people = [f"{kind}{i}@example.com" for i, kind in enumerate(kinds)]
    try:
        outcome, rows = _deliver(project, people, controller.port, Options(connections=2, retry_delay=0.01))
    finally:
        controller.stop()
    received = inbox.recipients()
    assert set(received) == {p for p in people if not p.startswith("unknown")} and set(received.values()) == {1}
    assert rows["unknown9@example.com"][:2] == ("failed", "550 5.7.1 content refused")
    # Two refusals, then sent; a connection that another's fault ends while busy1's commands are in its group can
    # cost it one more attempt, as the timing of the two connections falls.
    assert rows["busy1@example.com"][:2] == ("sent", "250 OK queued") and rows["busy1@example.com"][2] >= 3
    assert rows["lost5@example.com"][0] == "sending"  # stored, its answer lost: uncertain, never sent again
    assert (outcome.sent, outcome.failed, outcome.uncertain) == (9, 1, 1)


@pytest.mark.parametrize("reply", ["421 4.3.2 shutting down", "451 4.3.0 try again later"])
def test_a_retry_that_is_the_last_message_of_its_connection_is_sent(project, inbox, reply):
    """The last message is held for a next one that never comes: it goes on its own, and so does its retry."""
    handler = Recorder(inbox, lambda rcpt, n: reply if rcpt == "last@example.com" and n == 1 else None)
    handler.pipelining = True
    controller = start(handler)
    try:
        outcome, rows = _deliver(project, ["first@example.com", "last@example.com"], controller.port)
    finally:
        controller.stop()
    assert inbox.recipients() == {"first@example.com": 1, "last@example.com": 1}
    assert rows["last@example.com"] == ("sent", "250 OK queued", 2)
    assert outcome.sent == 2


def test_killed_mid_send_leaves_at_most_one_uncertain_recipient_per_connection(project, inbox):
    handler = Recorder(inbox)
    handler.pipelining = True
    controller = start(handler)
    people = [f"r{i:02d}@example.com" for i in range(40)]
    try:
        kill_at_the_tenth = lambda _: 0 if len(inbox.messages) == 10 else None  # noqa: E731
        states, again = _killed_and_run_again(
            project, people, handler, controller.port, "on_data", kill_at_the_tenth, "--connections", "3"
        )
    finally:
        controller.stop()
    in_flight = sorted(e for e, s in states.items() if s == "sending")
    assert len(in_flight) <= 3, in_flight
    # Whatever the ledger called sent, the server had.
    assert {e for e, s in states.items() if s == "sent"} <= set(inbox.recipients()) - set(in_flight)
    assert again.returncode in (0, 1), again.stdout + again.stderr
    received = inbox.recipients()
    assert set(received.values()) == {1}, "someone got the message twice"
    assert set(people) - set(received) <= set(in_flight)  # only an uncertain one may have been missed
    # The next run says who they are, and does not send to them again.
    said = again.stdout + again.stderr
    assert f"{len(in_flight)} uncertain" in said and all(e in said for e in in_flight)


def test_a_message_held_for_the_next_one_is_not_in_flight_until_its_content_is_written(project, inbox):
    """Between its DATA's 354 and the write that carries its content (here: while the rate is waited for),
    a message is still pending: a crash then leaves nobody uncertain, and the next run sends it."""
    handler = Recorder(inbox)
    handler.pipelining = True
    controller = start(handler)
    people = [f"r{i}@example.com" for i in range(5)]
    try:
        # One message every 0.8 s: r2's content waits that long for r3's commands, and the kill comes 0.3 s in.
        states, again = _killed_and_run_again(
            project,
            people,
            handler,
            controller.port,
            "on_rcpt",
            lambda rcpt: 0.3 if rcpt == "r2@example.com" else None,
            "--connections",
            "1",
            "--rate",
            "1.25",
        )
    finally:
        controller.stop()
    assert states == {"r0@example.com": "sent", "r1@example.com": "sent", **{p: "pending" for p in people[2:]}}
    assert again.returncode == 0, again.stdout + again.stderr
    assert "sent 3, failed 0" in again.stdout and "0 still to send, 0 uncertain" in again.stdout
    assert inbox.recipients() == dict.fromkeys(people, 1)


def _killed_and_run_again(
    project: Path,
    people: list[str],
    handler: Recorder,
    port: int,
    hook: str,
    kill_after: Callable[[str], float | None],
    *options: str,
) -> tuple[dict[str, str], subprocess.CompletedProcess[str]]:
    """`send` to `people` in its own process, SIGKILLed `kill_after(recipient)` seconds after the server's `hook`
    (on_rcpt, on_data) saw that recipient; the ledger's states as it left them, and the same command run again."""
    write_list(project, ["email", *people])
    command, env = _send_command(project, port, *options)
    sender: list[subprocess.Popen] = []

    def kill(rcpt: str) -> None:
        delay = kill_after(rcpt)
        if delay is not None:
            threading.Timer(delay, os.kill, (sender[0].pid, signal.SIGKILL)).start()

    setattr(handler, hook, kill)
    sender.append(subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    assert sender[0].wait(timeout=60) == -signal.SIGKILL
    setattr(handler, hook, None)
    with sqlite3.connect(project / "state" / "ledger.sqlite3") as db:
        states = dict(db.execute("SELECT email, state FROM deliveries").fetchall())
    db.close()
    return states, subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_pipelining_over_tls(project, run, inbox, monkeypatch, tmp_path, security):
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(context)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    handler = Recorder(
        inbox, lambda rcpt, n: "550 5.7.1 content refused" if rcpt == "c@example.com" and n > 0 else None
    )
    handler.pipelining = True
    controller = start(handler, **{"starttls" if security == "starttls" else "implicit_tls": context})
    monkeypatch.setenv("NEWSLETTER_SMTP_HOST", "localhost")
    monkeypatch.setenv("NEWSLETTER_SMTP_PORT", str(controller.port))
    monkeypatch.setenv("NEWSLETTER_SMTP_SECURITY", security)
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    people = [f"{name}@example.com" for name in "abcdef"]
    try:
        result = run(
            "send", ISSUE, "--to", write_list(project, ["email", *people]), "--ca-file", tmp_path / "ca.pem", "--yes"
        )
    finally:
        controller.stop()
    assert "sent 5, failed 1" in result.output
    assert inbox.recipients() == {p: 1 for p in people if p != "c@example.com"}


def test_a_disk_that_fills_while_a_message_is_held_stops_the_send_at_once(project, inbox, tmp_path):
    """The ledger cannot record the held message as in flight: its content never goes, the connection is hung up
    in the middle of its DATA (a QUIT there would be read as content, and answered by nobody), and a rerun on a
    freed disk sends everyone once."""
    handler = Recorder(inbox)
    handler.pipelining = True
    controller = start(handler)
    people = [f"r{i:02d}@example.com" for i in range(12)]
    write_list(project, ["email", *people])
    command, env = _send_command(project, controller.port, "--connections", "1")
    try:
        with small_disk(project / "state", 4 * 1024 * 1024) as disk:
            filler = disk.folder / "filler"

            def fill_the_disk(rcpt: str) -> None:
                if rcpt == "r05@example.com":
                    with contextlib.suppress(OSError), filler.open("wb") as file:
                        while True:
                            file.write(b"\0" * 65536)

            handler.on_rcpt = fill_the_disk
            # Far less than the 60 s a QUIT sent into the DATA would wait for its answer.
            stopped = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=30)
            handler.on_rcpt = None
            assert stopped.returncode == 1, stopped.stdout + stopped.stderr
            assert "cannot write the send ledger" in stopped.stdout + stopped.stderr
            filler.unlink()
            again = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=60)
    finally:
        controller.stop()
    assert again.returncode == 0, again.stdout + again.stderr
    assert inbox.recipients() == dict.fromkeys(people, 1)
