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
