"""SMTP PIPELINING (RFC 2920): where the server offers it, a message costs one round trip, and every reply
still counts. A recipient refused inside a group is failed or tried again and never sent; a connection lost
between a message's commands and its content is tried again; a crash leaves at most one uncertain recipient
per connection. Servers: the raw one (it counts round trips), aiosmtpd told to offer PIPELINING, and Postfix."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from newsletter.delivery import Options, Outcome, deliver
from newsletter.send_plan import plan_send
from newsletter.smtp import Settings

from .raw_smtp import RawSMTP, Received
from .smtp_server import Recorder, start
from .support import SECRET, SEED, cli_command, cli_env, write_list

ISSUE = f"issues/{SEED}.yaml"
ONE = Options(connections=1, retry_delay=0.01, max_attempts=3)
# What a client may say to the raw server; anything else would be a message's content taken for commands.
COMMANDS = {b"EHLO", b"MAIL", b"RCPT", b"DATA", b"RSET", b"QUIT"}


def _deliver(project: Path, people: list[str], port: int, options: Options = ONE) -> tuple[Outcome, dict]:
    """Send the seed issue to `people`; what the run did, and each row's (state, reply, attempts)."""
    with plan_send(project / ISSUE, write_list(project, ["email", *people])) as plan:
        outcome = deliver(plan, Settings("127.0.0.1", port, "none", timeout=10), options, key=SECRET)
    with sqlite3.connect(project / "state" / "ledger.sqlite3") as db:
        rows = {email: (state, reply, n) for email, state, reply, n in db.execute(_ROWS)}
    db.close()
    return outcome, rows


_ROWS = "SELECT email, state, reply, attempts FROM deliveries"


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


@pytest.mark.parametrize(
    "refusal, state, attempts",
    [(b"550 5.1.1 no such user", "failed", 1), (b"451 4.3.0 try again later", "sent", 2)],
    ids=["550", "451"],
)
def test_a_recipient_refused_inside_a_pipelined_group_is_never_sent_in_that_transaction(
    project, refusal, state, attempts
):
    def at_rcpt(rcpt: str, attempt: int) -> bytes | None:
        return refusal if rcpt == "refused@example.com" and attempt == 1 else None

    people = ["a@example.com", "refused@example.com", "b@example.com", "c@example.com"]
    with RawSMTP(pipelining=True, at_rcpt=at_rcpt) as server:
        outcome, rows = _deliver(project, people, server.port)
    delivered = sorted(p for p in people if p != "refused@example.com" or state == "sent")
    assert _recipients(server.messages) == delivered
    assert rows["refused@example.com"] == (state, "250 OK queued" if state == "sent" else refusal.decode(), attempts)
    assert all(rows[p][0] == "sent" for p in people if p != "refused@example.com")
    # The refused RCPT made DATA fail (503), no content followed it (it would have been read as commands), and
    # RSET ended the transaction, on the same connection.
    assert set(server.commands) <= COMMANDS and server.commands.count(b"RSET") == 1
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
    assert rows["busy1@example.com"] == ("sent", "250 OK queued", 3)
    assert rows["lost5@example.com"][0] == "sending"  # stored, its answer lost: uncertain, never sent again
    assert (outcome.sent, outcome.failed, outcome.uncertain) == (9, 1, 1)


def test_killed_mid_send_leaves_at_most_one_uncertain_recipient_per_connection(project, inbox):
    handler = Recorder(inbox)
    handler.pipelining = True
    controller = start(handler)
    people = [f"r{i:02d}@example.com" for i in range(40)]
    write_list(project, ["email", *people])
    env = cli_env(
        NEWSLETTER_SMTP_HOST="127.0.0.1",
        NEWSLETTER_SMTP_PORT=str(controller.port),
        NEWSLETTER_SMTP_SECURITY="none",
        NEWSLETTER_SECRET=SECRET,
        XDG_CACHE_HOME=str(project / ".cache"),
    )
    command = cli_command("send", ISSUE, "--to", "list.csv", "--yes", "--connections", "3")
    sender: list[subprocess.Popen] = []

    def kill_at_tenth(_: str) -> None:
        if len(inbox.messages) == 10:
            os.kill(sender[0].pid, signal.SIGKILL)

    handler.on_data = kill_at_tenth
    try:
        sender.append(subprocess.Popen(command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
        sender[0].communicate(timeout=60)
        assert sender[0].returncode == -signal.SIGKILL
        handler.on_data = None
        with sqlite3.connect(project / "state" / "ledger.sqlite3") as db:
            states = dict(db.execute("SELECT email, state FROM deliveries").fetchall())
        db.close()
        in_flight = sorted(e for e, s in states.items() if s == "sending")
        assert len(in_flight) <= 3, in_flight
        # Whatever the ledger calls sent, the server has.
        assert {e for e, s in states.items() if s == "sent"} <= set(inbox.recipients())
        again = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True, timeout=60)
        assert again.returncode in (0, 1), again.stdout + again.stderr
    finally:
        controller.stop()
    received = inbox.recipients()
    assert set(received.values()) == {1}, "someone got the message twice"
    assert set(people) - set(received) <= set(in_flight)  # only an uncertain one may have been missed
    # The next run says who they are, and does not send to them again.
    said = again.stdout + again.stderr
    assert f"{len(in_flight)} uncertain" in said and all(e in said for e in in_flight)


def test_postfix_refusing_recipients_inside_pipelined_groups(project, postfix_relay):
    """Debian's Postfix offers PIPELINING; its access table refuses one recipient for good and defers another
    every time: the others arrive once each, over the one connection, and the refused never do."""
    postfix = postfix_relay
    table = "inline:{ {gone@example.com=550 5.1.1 no such user}, {later@example.com=451 4.3.0 try again later} }"
    restrictions = f"check_recipient_access {table}, permit_mynetworks, reject"
    subprocess.run(
        ["/usr/sbin/postconf", "-c", str(postfix.config), "-e", f"smtpd_recipient_restrictions={restrictions}"],
        check=True,
        timeout=30,
    )
    assert postfix.command("reload").returncode == 0
    people = [f"{name}@example.com" for name in ("ann", "gone", "bob", "later", "cy", "dee")]
    for person in people:
        postfix.mailbox(person)
    outcome, rows = _deliver(project, people, postfix.port)
    for person in ("ann", "bob", "cy", "dee"):
        assert len(postfix.wait_for(f"{person}@example.com", 1)) == 1
    postfix.wait_until_idle()
    assert postfix.delivered("gone@example.com") == [] and postfix.delivered("later@example.com") == []
    assert rows["gone@example.com"][:2] == (
        "failed",
        "550 5.1.1 <gone@example.com>: Recipient address rejected: no such user",
    )
    assert (
        rows["later@example.com"][0] == "failed"
        and "gave up after 3 attempts: 451 4.3.0" in rows["later@example.com"][1]
    )
    assert (outcome.sent, outcome.failed, outcome.uncertain) == (4, 2, 0)
