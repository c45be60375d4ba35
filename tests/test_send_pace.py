"""A send against relays that push back: too fast, too many connections, no more today.

Real SMTP servers (aiosmtpd) on 127.0.0.1. Where the relay counts messages per second, it reads the pool's
own clock (`FakeClock`): time passes only when the pool waits, so a minute of throttled sending takes a
second, and nothing depends on how busy the machine is.
"""

from __future__ import annotations

import bisect
import re
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from newsletter.delivery import DeliveryPool, Options
from newsletter.ledger import Ledger
from newsletter.message import Composer
from newsletter.pace import STALLED_AFTER, Pace
from newsletter.pipeline import check
from newsletter.smtp import Settings
from newsletter.subscribers import read_subscribers

from .postfix import running
from .smtp_server import Recorder, Sessions, start
from .support import SECRET, SEED, FakeClock, write_list

ISSUE = f"issues/{SEED}.yaml"
SES = "454 Throttling failure: Maximum sending rate exceeded"


class Throttle:
    """Amazon SES's rate limit, as a Recorder fault: more than `limit` messages in a second of `now` are refused
    with its 454. Keeps when each message came, and how each was answered."""

    def __init__(self, limit: float, now, reply: str = SES) -> None:
        self.limit = limit
        self.now = now
        self.reply = reply
        self.counted: Counter[int] = Counter()
        self.accepted: list[float] = []
        self.refused: list[float] = []
        self._lock = threading.Lock()

    def __call__(self, rcpt: str, attempt: int) -> str | None:
        if attempt < 0:  # asked at RCPT: nothing to say there
            return None
        with self._lock:
            now = self.now()
            if self.counted[int(now)] >= self.limit:
                self.refused.append(now)
                return self.reply
            self.counted[int(now)] += 1
            self.accepted.append(now)
            return None


class Slots(Pace):
    """The pace, keeping the time each message was let start."""

    def __init__(self, options: Options, clock: FakeClock) -> None:
        super().__init__(options.connections, options.rate, clock.now)
        self.given: list[float] = []

    def slot(self) -> float:
        given = super().slot()
        self.given.append(given)
        return given

    def most_in_a_second(self) -> int:
        """The most messages started in any second (any window of one second, not only whole ones)."""
        given = sorted(self.given)
        return max(bisect.bisect_right(given, t + 1 - 1e-9) - i for i, t in enumerate(given))


def _pool(
    project: Path,
    people: int,
    options: Options,
    port: int,
    clock: FakeClock | None = None,
    pace: Pace | None = None,
):
    """Deliver to `people` recipients through 127.0.0.1:`port`; (outcome, the pace as shown after each message,
    the ledger's counts, the failed rows' replies)."""
    checked = check(project / ISSUE)
    rows = ["email"] + [f"r{i:03d}@example.com" for i in range(people)]
    settings = Settings("127.0.0.1", port, "none", timeout=10)
    shown: list[tuple[str, float | None]] = []
    with Ledger(project / "ledger.sqlite3") as ledger:
        ledger.import_list(SEED, read_subscribers(write_list(project, rows), dedupe=False))
        pool = DeliveryPool(
            Composer.prepare(checked.rendered),
            settings,
            ledger,
            SECRET,
            options,
            lambda n: shown.append((pool.pace.describe(), pool.pace.rate)),
            clock=clock,
            pace=pace,
        )
        outcome = pool.run(ledger.pending(SEED))
        return outcome, shown, ledger.counts(SEED), {e: r for e, r, *_ in ledger.rows_in(SEED, "failed")}


def _served(inbox, people: int) -> None:
    """Everyone on the list got exactly one message."""
    assert inbox.recipients() == {f"r{i:03d}@example.com": 1 for i in range(people)}


def test_a_throttling_relay_gets_everyone_once_and_the_pace_drops_then_climbs_back(project, inbox):
    clock = FakeClock()
    throttle = Throttle(20, clock.now)
    sessions = Sessions()
    controller = start(Recorder(inbox, throttle), sessions=sessions)
    try:
        outcome, shown, counts, _ = _pool(
            project, 200, Options(connections=4, retry_delay=0.05), controller.port, clock
        )
    finally:
        controller.stop()
    _served(inbox, 200)
    assert outcome.sent == 200 and outcome.failed == 0 and counts["pending"] == 0
    assert outcome.slowed == len(throttle.refused) > 0  # each refusal was tried again, none counted as a failure
    assert sessions.most <= 4
    rates = [rate for _, rate in shown]
    assert rates[0] is None  # no limit until the relay said "too fast"
    lowest = min(r for r in rates if r is not None)
    assert lowest <= 20
    # The progress line says so: down to the relay's rate, then climbing back while it accepts.
    assert any(re.fullmatch(r"4 connections, 1\d/s", text) for text, _ in shown)
    after_lowest = rates[rates.index(lowest) :]
    assert max(r for r in after_lowest if r is not None) > lowest
    # Settled near the relay's 20 a second: few refusals once the first seconds are past.
    late = [t for t in throttle.refused if t >= 3]
    assert len(late) < 0.05 * sum(1 for t in throttle.accepted if t >= 3)


@pytest.mark.parametrize("rate", [12, 30], ids=["below-the-relays-rate", "above-it"])
def test_rate_and_connections_given_are_ceilings_the_pace_never_passes(project, inbox, rate):
    clock = FakeClock()
    throttle = Throttle(20, clock.now)
    sessions = Sessions()
    controller = start(Recorder(inbox, throttle), sessions=sessions)
    options = Options(connections=3, rate=rate, retry_delay=0.05)
    pace = Slots(options, clock)
    try:
        outcome, shown, *_ = _pool(project, 150, options, controller.port, clock, pace)
    finally:
        controller.stop()
    _served(inbox, 150)
    assert sessions.most <= 3
    assert max(r for _, r in shown if r is not None) <= rate and pace.most_in_a_second() <= rate
    if rate < 20:  # kept to exactly, and never refused
        assert outcome.slowed == 0 and not throttle.refused
        assert {text for text, _ in shown} == {f"3 connections, {rate}/s"} and pace.most_in_a_second() == rate
    else:  # down to the relay's rate and back up, never past the ceiling
        assert outcome.slowed == len(throttle.refused) > 0


@pytest.mark.parametrize(
    "sessions, takes",
    [
        (lambda: Sessions(limit=2), 2),  # "421 4.7.0 ... too many connections" to a third as it connects (Postfix)
        (lambda: Sessions(limit=2, at_mail=True), 2),  # the same, to the third's first MAIL (Mailgun's words)
        (lambda: Sessions(listen_once=True), 1),  # every connection after the first refused (ECONNREFUSED)
    ],
    ids=["refused-at-connect", "refused-at-mail", "refused-after-the-first"],
)
def test_too_many_connections_brings_the_connections_down_to_what_the_relay_takes(project, inbox, sessions, takes):
    sessions = sessions()
    controller = start(Recorder(inbox), sessions=sessions)
    try:
        outcome, shown, *_ = _pool(project, 80, Options(connections=4, retry_delay=0.01), controller.port)
    finally:
        controller.stop()
    _served(inbox, 80)
    assert outcome.sent == 80 and outcome.failed == 0 and outcome.stopped is None
    assert f"{takes} of 4 connections" in {text for text, _ in shown}
    assert outcome.pace in (f"{takes} of 4 connections", f"{takes + 1} of 4 connections")  # one more: a probe
    assert sessions.refused < 20  # not a refused connection per message


def test_a_relay_that_never_lets_up_stops_the_send_with_everyone_pending_to_resume(project, inbox):
    clock = FakeClock()
    throttle = Throttle(0, clock.now)
    handler = Recorder(inbox, throttle)
    controller = start(handler)
    options = Options(connections=2, retry_delay=0.01, max_attempts=3, max_failures_in_a_row=2)
    try:
        outcome, _, counts, failed = _pool(project, 5, options, controller.port, clock)
    finally:
        controller.stop()
    assert inbox.recipients() == {}
    # Nobody is failed for the relay's refusals: after five minutes of nothing taken, the send stops, resumable.
    assert outcome.stopped and "taken nothing for 5 minutes" in outcome.stopped and "carry on" in outcome.stopped
    assert outcome.failed == 0 and failed == {} and counts["pending"] == 5
    assert clock.now() < 2 * STALLED_AFTER  # it stops soon after, not at one message a minute for hours


def test_a_used_up_daily_quota_stops_the_send_to_resume_later(project, run, inbox, monkeypatch):
    today = {"left": 3}

    def quota(rcpt: str, attempt: int) -> str | None:
        if attempt < 0:
            return None
        if today["left"] == 0:
            return "454 Throttling failure: Daily message quota exceeded."
        today["left"] -= 1
        return None

    controller = start(Recorder(inbox, quota))
    _send_to(monkeypatch, controller.port)
    people = write_list(project, ["email"] + [f"r{i:03d}@example.com" for i in range(10)])
    try:
        stopped = run("send", ISSUE, "--to", people, "--yes", "--connections", "1")
        sent_before = len(inbox.recipients())
        today["left"] = 100  # a new day: the quota is renewed
        resumed = run("send", ISSUE, "--to", people, "--yes")
    finally:
        controller.stop()
    assert stopped.exit_code == 1 and sent_before == 3
    said = "stopped: the relay's sending quota is used up (454 Throttling failure: Daily message quota exceeded.)"
    assert said in stopped.output and "resume with: newsletter send" in stopped.output
    assert resumed.exit_code == 0, resumed.output
    _served(inbox, 10)


def test_the_send_says_when_the_relay_asked_it_to_slow_down(project, run, inbox, monkeypatch):
    throttle = Throttle(15, time.monotonic)  # a real send, on the real clock
    controller = start(Recorder(inbox, throttle))
    _send_to(monkeypatch, controller.port)
    people = write_list(project, ["email"] + [f"r{i:03d}@example.com" for i in range(30)])
    try:
        result = run("send", ISSUE, "--to", people, "--yes")
    finally:
        controller.stop()
    assert result.exit_code == 0, result.output
    _served(inbox, 30)
    said = re.search(
        r"the relay asked (\d+) times? to slow down; the pace at the end: 4 connections, \d+/s", result.output
    )
    assert said and int(said.group(1)) == len(throttle.refused), result.output
    assert result.output.splitlines()[-1].startswith("sent 30, failed 0 in ")


def _send_to(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    monkeypatch.setenv("NEWSLETTER_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("NEWSLETTER_SMTP_PORT", str(port))
    monkeypatch.setenv("NEWSLETTER_SMTP_SECURITY", "none")
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)


def test_a_postfix_that_takes_two_connections_from_this_machine(project, run, tmp_path, monkeypatch):
    # Debian's Postfix with its per-client connection limit at 2, this machine not spared (by default
    # $mynetworks is): a third connection is answered "421 4.7.0 ... Error: too many connections from ...".
    limited = "smtpd_client_connection_count_limit = 2\nsmtpd_client_event_limit_exceptions =\n"
    people = [f"r{i:03d}@example.com" for i in range(40)]
    with running(keep_log=tmp_path / "postfix.log", settings=limited) as postfix:
        for address in people:
            postfix.mailbox(address)
        _send_to(monkeypatch, postfix.port)
        result = run("send", ISSUE, "--to", write_list(project, ["email", *people]), "--yes")
        for address in people:
            postfix.wait_for(address, 1)
        postfix.wait_until_idle()
        delivered = {address: len(postfix.delivered(address)) for address in people}
    assert result.exit_code == 0, result.output
    assert set(delivered.values()) == {1}
    said = r"the relay asked \d+ times to slow down; the pace at the end: [23] of 4 connections"
    assert re.search(said, result.output), result.output
    log = (tmp_path / "postfix.log").read_text(encoding="utf-8", errors="replace")
    assert "warning: Connection concurrency limit exceeded: 3 from unknown[127.0.0.1]" in log  # it did say no
