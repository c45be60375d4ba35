"""The pace of a send: how many connections it keeps open, and how many messages a second it starts.

A relay pushed harder than it allows says so, and pushing on gets more refusals, not more mail. Amazon SES
answers `454 Throttling failure: Maximum sending rate exceeded`, Postfix `450 4.7.1 Error: too much mail from
...` or `421 4.7.0 ... Error: too many connections from ...`, Mailgun `421 Too many connections from your host`.
So the pace comes down when a reply says so, and climbs back slowly while the replies are good:

- Connections follow Postfix's destination concurrency feedback (its SCHEDULER_README): a window that loses
  1/window for each "too many connections" (a connection refused while others are open counts as one), and
  gains 1/window for each message delivered while every connection of the window is open. As in Postfix, the
  first loss after a gain comes at once (reverse hysteresis), so an overload is corrected without waiting for
  a whole cohort of refusals. Unlike Postfix's deliveries, a connection here carries many messages; so that a
  relay with a fixed connection limit is not probed with one connection too many every few messages, each probe
  the relay refuses again doubles how many messages the next one waits for (up to 64 cohorts).
- The rate is additive increase, multiplicative decrease. A "too fast" reply sets it to 85% of the rate the
  relay accepted over the last seconds, once per cohort (the replies to messages started before the cut bring
  no news). It is 85% of what was accepted, not of the rate in use: a relay that counts per second refuses
  everything until its second ends, however slowly one goes meanwhile, and cutting the rate in use at each of
  those refusals would take it far below the relay's. Each message delivered while the rate is what holds the
  send back adds 1/400 of the rate at the last cut, and at most 1/20 of it a second: back from 85% to where
  the relay said no over at least 60 messages and 3 seconds, so that a relay with a steady limit refuses a
  message or two in a hundred, and one whose limit rose is followed up.

`--connections` and `--rate` are ceilings the pace never passes. The pace reads the pool's clock, so that a
test can run it on a clock of its own.
"""

from __future__ import annotations

import math
import re
import threading
from collections import deque
from collections.abc import Callable
from enum import StrEnum

BACK_OFF = 0.85  # of the rate the relay accepted, after it said "too fast"
CLIMB = 1 / 400  # of the rate at the last cut, added per message delivered while the rate holds the send back
CLIMB_PER_SECOND = 1 / 20  # of the rate at the last cut, at most, a second
RECENT = 3.0  # seconds over which the accepted rate is measured; longer for a slow relay (`MEASURED`)
MEASURED = 20  # acceptances the measure spans at least, when there are that many
SLOWEST = 1 / 60  # messages a second: the pace never goes below one a minute
MOST_PROBE_COHORTS = 64
# A relay that has taken nothing for this long while asking to slow down will not take more now: the send stops,
# everyone left pending, to be resumed later, rather than crawl at one message a minute for hours.
STALLED_AFTER = 300.0
TEMPORARY = frozenset({421, 450, 451, 452, 454})


class Slowdown(StrEnum):
    """What a reply asks for."""

    CONNECTIONS = "fewer connections"
    RATE = "a lower rate"
    QUOTA = "no more today"  # the relay's daily quota is used up: slowing down cannot help


_QUOTA = re.compile(
    r"\b(daily|per day|24[ -]?hours?)\b.*\b(quota|limit)|\b(quota|limit)\b.*\b(daily|per day|24[ -]?hours?)\b"
    r"|\b(sending|submission|message)[ -]?quota",
    re.IGNORECASE,
)
_CONNECTIONS = re.compile(
    r"too many (\w+ ){0,2}(connections|sessions)|\bconnection (count|limit|rate)|concurren|thread limit",
    re.IGNORECASE,
)
_RATE = re.compile(
    r"throttl|\brate\b|ratelimit|rate[ -]limit|too many (messages|mails?|e-?mails|recipients)|too much mail"
    r"|too fast|slow(ly)? down|more slowly",
    re.IGNORECASE,
)
_MAILBOX_STATUS = re.compile(r"^\s*4\.2\.\d+\b")  # RFC 3463 X.2.X: about one mailbox, not about the sender


def slowdown(code: int | None, text: str) -> Slowdown | None:
    """What a refusal asks of the pace, if anything.

    Only temporary replies (and, for a used-up daily quota, permanent ones too) with wording about the sender's
    pace count. "Try again later" alone does not: it is what every temporary refusal says, a greylisted or
    full mailbox's too, and one recipient's hiccup must not slow the whole list. Nor does a reply about one
    mailbox ("4.2.1 ... receiving mail at a rate that prevents additional messages").
    """
    if code is None or _MAILBOX_STATUS.match(text):
        return None
    if (code in TEMPORARY or 500 <= code <= 599) and _QUOTA.search(text):
        return Slowdown.QUOTA
    if code not in TEMPORARY:
        return None
    if _CONNECTIONS.search(text):
        return Slowdown.CONNECTIONS
    if _RATE.search(text):
        return Slowdown.RATE
    return None


class Pace:
    """Connections in use and the rate of a send; thread-safe, as every worker of the pool reports to it."""

    def __init__(self, connections: int, rate: float | None, now: Callable[[], float]) -> None:
        self.most_connections = connections
        self.most_rate = rate
        self.now = now
        self._lock = threading.Lock()
        # Connections, as Postfix's concurrency window: whole connections, with fractions of feedback pending.
        self._window = connections
        self._success = 0.0
        self._failure = 0.0
        self._probe_cohorts = 1  # cohorts of good deliveries a probe (one connection more) waits for
        self._probing = False  # the window grew: a refusal now says the probe failed
        # The rate: None is no limit at all.
        self._rate = rate
        self._step = 0.0  # added per good delivery while the rate holds the send back; set at each cut
        self._next_slot = -math.inf
        self._last_cut = -math.inf
        self._started: float | None = None
        self._accepted: deque[float] = deque()
        self._last_accepted: float | None = None
        self.cuts = 0  # times the rate was cut, for the send's summary

    @property
    def connections(self) -> int:
        """How many connections the send may have open now."""
        return self._window

    @property
    def rate(self) -> float | None:
        """Messages a second the send starts at most now; None when nothing limits it."""
        return self._rate

    def slot(self) -> float:
        """The time the next message may start, which it takes: with a rate, one a 1/rate seconds apart."""
        with self._lock:
            now = self.now()
            if self._started is None:
                self._started = now
            if self._rate is None:
                return now
            slot = max(now, self._next_slot)
            self._next_slot = slot + 1 / self._rate
            return slot

    def delivered(self, started: float, open_connections: int) -> None:
        """A message started at `started` was accepted; `open_connections` are open now."""
        with self._lock:
            now = self.now()
            self._accepted.append(now)
            self._last_accepted = now
            self._forget(now)
            self._more_connections(open_connections)
            # Only while the rate is what the send waits for: a rate nobody reaches would grow without end and,
            # at the next "too fast", take a whole climb to come down.
            if self._rate is not None and self._step and self._next_slot >= now:
                self._rate += self._step * min(1.0, CLIMB_PER_SECOND / CLIMB / self._rate)
                if self.most_rate is not None and self._rate >= self.most_rate:
                    self._rate, self._step = self.most_rate, 0.0

    def too_fast(self, started: float) -> None:
        """The relay refused a message started at `started` as one too many for its rate."""
        with self._lock:
            if started < self._last_cut:  # the same news as the last cut
                return
            now = self.now()
            accepted = self._accepted_rate(now)
            current = self._rate if self._rate is not None else math.inf
            if accepted:
                new = min(current, BACK_OFF * accepted)
            else:  # nothing accepted yet: the relay counts over longer than we measure, or takes nothing now
                elapsed = now - self._started if self._started is not None else 0.0
                new = BACK_OFF * min(current, 1 / max(1.0, elapsed))
            self._rate = max(SLOWEST, new)
            self._step = self._rate / BACK_OFF * CLIMB
            self._last_cut = now
            self._next_slot = max(self._next_slot, now + 1 / self._rate)
            self.cuts += 1

    def too_many_connections(self) -> None:
        """The relay refused a connection, or said there are too many: one fewer, as Postfix's negative feedback."""
        with self._lock:
            if self._probing:  # the connection just added was one too many: wait longer before the next try
                self._probe_cohorts = min(MOST_PROBE_COHORTS, 2 * self._probe_cohorts)
                self._probing = False
            self._failure -= 1 / self._window
            while self._failure < 0 and self._window > 1:
                self._window -= 1
                self._failure += 1
                self._success = 0.0
            self._failure = max(self._failure, 0.0)

    def stalled(self) -> bool:
        """Whether the relay, asking to slow down, has taken nothing for STALLED_AFTER seconds (since the send's
        first message or its last acceptance)."""
        with self._lock:
            since = self._last_accepted if self._last_accepted is not None else self._started
            return since is not None and self.now() - since >= STALLED_AFTER

    def describe(self) -> str:
        """The pace in use, for the progress line: "4 connections", "3 of 16 connections, 38/s"."""
        with self._lock:
            window, rate = self._window, self._rate
        shown = f"{window} connection{'s' if window != 1 else ''}"
        if window < self.most_connections:
            shown = f"{window} of {self.most_connections} connections"
        return shown if rate is None else f"{shown}, {per_second(rate)}"

    def _more_connections(self, open_connections: int) -> None:
        """Positive feedback, only while every connection of the window is open: a window the send does not fill
        says nothing about whether the relay would take more."""
        if open_connections < self._window:
            return
        if self._probing:  # the connection added last holds: probes may come sooner again
            self._probe_cohorts = max(1, self._probe_cohorts // 2)
            self._probing = False
        if self._window >= self.most_connections:
            return
        self._success += 1 / (self._window * self._probe_cohorts)
        while self._success >= 1 and self._window < self.most_connections:
            self._window += 1
            self._success -= 1
            self._failure = 0.0  # so that a refusal of the new connection takes it back at once
            self._probing = True

    def _accepted_rate(self, now: float) -> float:
        """Messages a second the relay accepted lately: over the last RECENT seconds, or over the last MEASURED
        acceptances when they span longer; over at least a second, so that a burst at the start is not taken
        for the relay's rate."""
        if not self._accepted:
            return 0.0
        since = now - RECENT
        if len(self._accepted) >= MEASURED:
            since = min(since, self._accepted[-MEASURED])
        if self._started is not None:
            since = max(since, self._started)
        count = sum(1 for t in self._accepted if t >= since)
        return count / max(1.0, now - since)

    def _forget(self, now: float) -> None:
        """Keep what `_accepted_rate` can still look at."""
        while len(self._accepted) > MEASURED and self._accepted[0] < now - RECENT:
            self._accepted.popleft()


def per_second(rate: float) -> str:
    """A rate as people read it: "38/s", "2.5/s", "30/min"."""
    if rate >= 10:
        return f"{rate:.0f}/s"
    if rate >= 1:
        return f"{rate:.1f}/s"
    return f"{rate * 60:.0f}/min"
