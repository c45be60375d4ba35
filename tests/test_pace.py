"""The pace on its own, on a clock of the test's: which replies slow a send down, how far, and how it climbs back.

The relays here are simulated (`Relay`, `send_through`), so that a minute of sending takes milliseconds; the
pool driving the pace against real servers is tested in test_send_pace.py.
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from newsletter.pace import Pace, Slowdown, per_second, slowdown


@pytest.mark.parametrize(
    "code, text, asked",
    [
        (454, "Throttling failure: Maximum sending rate exceeded", Slowdown.RATE),  # Amazon SES
        (454, "Throttling failure: Daily message quota exceeded", Slowdown.QUOTA),  # Amazon SES
        (450, "4.7.1 Error: too much mail from 127.0.0.1", Slowdown.RATE),  # Postfix's message rate limit
        (421, "4.7.0 mx.example.org Error: too many connections from 127.0.0.1", Slowdown.CONNECTIONS),  # Postfix
        (421, "#4.4.5 Too many connections from your host.", Slowdown.CONNECTIONS),  # Mailgun
        (451, '4.7.1 Ratelimit "user" exceeded', Slowdown.RATE),  # rspamd (mailcow)
        (452, "4.3.2 Connection rate limit exceeded.", Slowdown.CONNECTIONS),
        (432, "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded", None),  # not a code we retry
        (421, "4.7.0 Try again later, closing connection. (slow down)", Slowdown.RATE),
        (550, "5.4.5 Daily user sending quota exceeded.", Slowdown.QUOTA),  # Gmail: a 5xx, but not the recipient's
        (451, "4.3.0 try again later", None),  # what every temporary refusal says: one recipient's, not the pace's
        (450, "4.2.1 The user you are trying to contact is receiving mail at a rate that prevents additional", None),
        (452, "4.2.2 Mailbox full, over quota", None),
        (552, "5.2.2 Mailbox quota exceeded", None),
        (554, "5.7.1 Message rate looks like spam", None),  # permanent and not a quota: fails that recipient
        (421, "4.3.2 Service shutting down", None),
        (None, "connection lost: [Errno 104] Connection reset by peer", None),
    ],
)
def test_which_replies_ask_the_send_to_slow_down(code, text, asked):
    assert slowdown(code, text) is asked


# -- the rate -------------------------------------------------------------------------------------------------


@dataclass
class Relay:
    """A relay that takes `limit` messages a second (each calendar second of its clock, as a counter resets)
    and refuses the rest as too fast; `limit` may change with time."""

    limit: int | Callable
    counted: Counter[int] = field(default_factory=Counter)

    def accepts(self, now: float) -> bool:
        second = int(now)
        limit = self.limit(now) if callable(self.limit) else self.limit
        if self.counted[second] >= limit:
            return False
        self.counted[second] += 1
        return True


@dataclass
class Sent:
    accepted: list[float] = field(default_factory=list)  # times of the relay's acceptances
    refused: list[float] = field(default_factory=list)
    starts: list[float] = field(default_factory=list)  # times messages started
    rates: list[float | None] = field(default_factory=list)  # the pace's rate after each reply
    delivered: Counter[int] = field(default_factory=Counter)

    def after(self, t: float) -> tuple[int, int]:
        """(accepted, refused) from time t on."""
        return sum(1 for a in self.accepted if a >= t), sum(1 for r in self.refused if r >= t)


def send_through(
    relay: Relay,
    messages: int,
    *,
    connections: int = 16,
    rate: float | None = None,
    per_message: float = 0.1,
    until: float = 3600.0,
) -> tuple[Pace, Sent]:
    """`messages` sent as the pool sends them: `connections` at once, each taking `per_message` seconds from its
    start to the relay's reply, refused ones tried again 2 s later; on a simulated clock, stopped at `until`."""
    clock = [0.0]
    pace = Pace(connections, rate, lambda: clock[0])
    sent = Sent()
    waiting = list(range(messages))
    retries: list[tuple[float, int]] = []
    replies: list[tuple[float, int, int, float]] = []  # (when, order, message, started)
    order = itertools.count()

    def start_next() -> None:
        if retries and (retries[0][0] <= clock[0] or not waiting):
            due, message = heapq.heappop(retries)
            clock_at = max(due, clock[0])
        elif waiting:
            message, clock_at = waiting.pop(), clock[0]
        else:
            return
        saved, clock[0] = clock[0], clock_at
        started = pace.slot()
        clock[0] = saved
        sent.starts.append(started)
        heapq.heappush(replies, (started + per_message, next(order), message, started))

    for _ in range(connections):
        start_next()
    while replies and clock[0] < until:
        clock[0], _, message, started = heapq.heappop(replies)
        if relay.accepts(clock[0] - per_message / 2):  # it counts a message when its end of data arrives
            sent.accepted.append(clock[0])
            sent.delivered[message] += 1
            pace.delivered(started, connections)
        else:
            sent.refused.append(clock[0])
            pace.too_fast(started)
            heapq.heappush(retries, (clock[0] + 2.0, message))
        sent.rates.append(pace.rate)
        start_next()
    return pace, sent


@pytest.mark.parametrize("limit", [1, 14, 50, 100])
def test_the_rate_settles_near_a_relay_that_counts_per_second(limit):
    # Sixteen connections could send 160 messages a second; the relay takes `limit`.
    pace, sent = send_through(Relay(limit), max(300, 40 * limit))
    assert set(sent.delivered.values()) == {1} and len(sent.delivered) == max(300, 40 * limit)
    end = sent.accepted[-1]
    accepted, refused = sent.after(10.0)
    # After the first ten seconds: near the relay's rate (a fixed low cap is not adaptation), few refusals.
    assert accepted / (end - 10.0) >= 0.85 * limit
    assert refused < 0.05 * (accepted + refused)
    assert pace.rate is not None and pace.rate <= 1.1 * limit


def test_the_rate_follows_a_relay_whose_limit_falls_and_climbs_back_when_it_rises():
    relay = Relay(lambda t: 20 if 20 <= t < 40 else 50)
    _, sent = send_through(relay, 4000)

    def accepted_between(a: float, b: float) -> float:
        return sum(1 for t in sent.accepted if a <= t < b) / (b - a)

    assert accepted_between(10, 20) >= 0.85 * 50
    assert accepted_between(25, 40) >= 0.85 * 20  # down within a few seconds of the relay's change
    refused_later = sum(1 for t in sent.refused if t >= 25)
    assert refused_later < 0.05 * sum(1 for t in sent.accepted if t >= 25)
    # Up again once the relay takes more: additively, some 1/20 of the last cut's rate a second.
    assert accepted_between(40, 50) < accepted_between(50, 60) < accepted_between(60, 70)
    assert accepted_between(70, 80) >= 0.85 * 50


def test_a_rate_given_is_a_ceiling_the_pace_never_passes():
    # Below the relay's limit: never refused, one message every 1/10 s and never sooner.
    _, sent = send_through(Relay(50), 200, rate=10)
    assert not sent.refused
    starts = sorted(sent.starts)
    assert min(b - a for a, b in itertools.pairwise(starts)) == pytest.approx(0.1)
    # Above it: the pace comes down to the relay and climbs back, and once the relay takes more, up to the
    # ceiling and never past it.
    _, sent = send_through(Relay(lambda t: 20 if t < 5 else 100), 1500, rate=30)
    assert sent.refused and max(r for r in sent.rates if r is not None) == 30
    starts = sorted(sent.starts)
    assert min(b - a for a, b in itertools.pairwise(starts)) >= 1 / 30 - 1e-9


def test_a_relay_refusing_from_the_first_message_brings_the_pace_down_to_its_floor_not_to_zero():
    pace, sent = send_through(Relay(0), 5, until=600)
    assert pace.rate is not None and pace.rate == pytest.approx(1 / 60)
    # Slots end up 60 s apart: the pool waits, it does not spin.
    assert len(sent.starts) < 40 and not sent.accepted


# -- connections ----------------------------------------------------------------------------------------------


def test_one_connection_too_many_is_given_back_at_once_and_regained_a_cohort_later():
    pace = Pace(4, None, lambda: 0.0)
    pace.too_many_connections()
    assert pace.connections == 3  # at once: reverse hysteresis
    pace.too_many_connections()
    assert pace.connections == 3  # the same overload, reported by another connection
    for _ in range(10):
        pace.delivered(0.0, 2)  # the window is not full: good replies say nothing about one more
    assert pace.connections == 3
    for _ in range(3):
        pace.delivered(0.0, 3)  # +1/3 each, with every connection of the window open
    assert pace.connections == 4
    for _ in range(100):
        pace.delivered(0.0, 4)
    assert pace.connections == 4  # --connections is a ceiling


def test_a_relay_with_a_fixed_connection_limit_is_probed_less_and_less_often():
    pace = Pace(8, None, lambda: 0.0)
    refused, probes = 0, []
    for delivery in range(2000):
        if pace.connections > 2:  # the relay takes two; one more is refused as soon as it is tried
            refused += 1
            pace.too_many_connections()
            if pace.connections == 2:
                probes.append(delivery)
        pace.delivered(0.0, min(2, pace.connections))
    assert pace.connections == 2
    # Down from 8 a cohort of refusals at a time (the first at once); then each probe of a third connection
    # that is refused again doubles the wait before the next, up to 64 cohorts of two.
    gaps = [b - a for a, b in itertools.pairwise(probes)]
    assert gaps[:7] == [2, 4, 8, 16, 32, 64, 128] and set(gaps[7:]) == {128}
    assert refused < 0.025 * 2000  # refused connection attempts, against messages delivered


def test_the_pace_reads_as_the_progress_line_shows_it():
    clock = [0.0]
    pace = Pace(16, None, lambda: clock[0])
    assert pace.describe() == "16 connections"
    pace.too_many_connections()
    assert pace.describe() == "15 of 16 connections"
    for accepted in range(40):
        clock[0] = accepted / 40
        pace.delivered(pace.slot(), 14)
    clock[0] = 1.0
    pace.too_fast(1.0)
    assert pace.describe() == "15 of 16 connections, 34/s"  # 85% of the 40 a second accepted
    assert Pace(1, 0.5, lambda: 0.0).describe() == "1 connection, 30/min"
    assert [per_second(r) for r in (38.4, 2.5, 1 / 60)] == ["38/s", "2.5/s", "1/min"]
