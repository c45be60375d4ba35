"""Relays that break the rules of SMTP: whatever they answer, nobody gets a second copy, nothing hangs, and what
went wrong reads as one line."""

from __future__ import annotations

import pytest

from newsletter.delivery import Options

from .hostile_smtp import Conversation, HostileSMTP, usual
from .test_pipelining import _deliver

PEOPLE = ["a@example.com", "b@example.com", "c@example.com"]
ONE = Options(connections=1, retry_delay=0.01, max_attempts=3)


def _offering(pipelining: bool, answer):
    def offered(verb: bytes, talk: Conversation) -> bytes | None:
        if verb == b"EHLO":
            return usual(verb, talk, pipelining=pipelining)
        return answer(verb, talk)

    return offered


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "without-pipelining"])
@pytest.mark.parametrize("odd", [b"251 2.0.0 ok", b"200 ok", b"354 what now"])
def test_a_final_dot_answered_with_anything_but_a_refusal_is_never_sent_again(project, pipelining, odd):
    def answer(verb: bytes, talk: Conversation) -> bytes | None:
        if verb == b"END" and b"a@" in talk.rcpt:
            return odd + b"\r\n"
        return usual(verb, talk)

    with HostileSMTP(_offering(pipelining, answer)) as server:
        _, rows = _deliver(project, PEOPLE, server.port, ONE, timeout=2)
    # The server has the message: a reply that is neither 4xx nor 5xx is no refusal, so it is not sent again.
    assert server.delivered.count(b"<a@example.com>") == 1
    assert sorted(server.delivered) == [b"<a@example.com>", b"<b@example.com>", b"<c@example.com>"]
    assert rows["b@example.com"][0] == rows["c@example.com"][0] == "sent"
    state, reply, attempts = rows["a@example.com"]
    assert attempts == 1 and odd.decode() in reply
    assert state == ("sent" if odd.startswith(b"2") else "sending")


def _extra_250_before_mail(verb: bytes, talk: Conversation) -> bytes | None:
    if verb == b"MAIL" and talk.number == 1 and not talk.data:
        talk.data.append(b"once")
        return b"250 unsolicited\r\n250 OK\r\n"
    return usual(verb, talk)


def _250_to_data(verb: bytes, talk: Conversation) -> bytes | None:
    return b"250 fine\r\n" if verb == b"DATA" and talk.number == 1 else usual(verb, talk)


def _end_before_content(verb: bytes, talk: Conversation) -> bytes | None:
    if verb == b"DATA" and talk.number == 1:
        return b"354 go on\r\n250 queued before the content came\r\n"
    if verb == b"END" and talk.number == 1:
        return b""
    return usual(verb, talk)


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "without-pipelining"])
@pytest.mark.parametrize(
    "answer, says",
    [
        (_extra_250_before_mail, "out of step"),
        (_250_to_data, "the server answered DATA with 250 fine, out of step"),
        (_end_before_content, "before the message was sent"),
    ],
    ids=["a-250-too-many", "250-to-DATA", "250-before-the-content"],
)
def test_replies_out_of_step_with_the_commands_lose_the_connection_and_everyone_gets_one_copy(
    project, pipelining, answer, says
):
    once = Options(connections=1, retry_delay=0.01, max_attempts=1)
    with HostileSMTP(_offering(pipelining, answer)) as server:
        outcome, rows = _deliver(project, PEOPLE, server.port, once, timeout=2)
    # The first message's replies no longer say which command they answer: none counts as a yes, nothing is reset
    # with an RSET the server could take for content, and the others go on a new connection, once each.
    # (Pipelined, b's commands were in the write the lost connection refused: it may have failed with it.)
    assert b"<a@example.com>" not in server.delivered and b"<c@example.com>" in server.delivered
    assert len(set(server.delivered)) == len(server.delivered) == outcome.sent
    assert rows["a@example.com"][0] == "failed" and says in rows["a@example.com"][1]
    assert "\n" not in rows["a@example.com"][1] and outcome.uncertain == 0
    assert server.connections == 2
