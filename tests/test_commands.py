"""The commands as another program calls them: plain functions, a console of its own, nothing left held."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from newsletter.commands import send, status
from newsletter.errors import NewsletterError

from .smtp_server import PASSWORD, USER, Recorder, start
from .support import SEED, write_list

ISSUE = f"issues/{SEED}.yaml"


class Answers:
    """A console that records what it is told and answers as it was set up to."""

    def __init__(self, *, yes: bool = True, password: str | None = None) -> None:
        self.yes = yes
        self.password = password
        self.out: list[str] = []
        self.err: list[str] = []
        self.asked: list[str] = []
        self.progressed: list[tuple[str, int, int]] = []  # (label, total, done)

    def say(self, line: str, *, err: bool = False) -> None:
        (self.err if err else self.out).append(line)

    def confirm(self, question: str) -> bool:
        self.asked.append(question)
        return self.yes

    def ask_password(self, prompt: str) -> str | None:
        self.asked.append(prompt)
        return self.password

    @contextmanager
    def progress(
        self, total: int, label: str, status: Callable[[], str] | None = None
    ) -> Iterator[Callable[[int], None]]:
        done = []
        yield done.append
        self.progressed.append((label, total, sum(done)))


def test_a_send_answered_no_sends_nothing_and_leaves_the_ledger_free(project, smtp_server, inbox):
    people = write_list(project, ["email", "a@example.com", "b@example.com"])
    declined = Answers(yes=False)
    assert send.send_command(project / ISSUE, people, console=declined) is None
    assert (
        declined.asked == ["Send now?"] and "Recipients: 2 to send now (0 already sent; skipped: none)" in declined.out
    )
    assert inbox.recipients() == {}
    # The command released the ledger it claimed: the next send runs, and finds nobody sent yet.
    agreed = Answers()
    outcome = send.send_command(project / ISSUE, people, console=agreed)
    assert outcome is not None and outcome.sent == 2
    assert set(inbox.recipients()) == {"a@example.com", "b@example.com"}
    assert agreed.progressed == [("Sending", 2, 2)]
    assert agreed.out[-1].startswith("sent 2, failed 0 in ")


def test_a_failed_send_says_its_summary_then_raises_and_leaves_the_ledger_free(project, smtp_server, inbox):
    smtp_server.fault = lambda rcpt, attempt: "550 5.1.1 no such user" if rcpt.startswith("b") and attempt > 0 else None
    people = write_list(project, ["email", "a@example.com", "b@example.com"])
    console = Answers()
    with pytest.raises(NewsletterError) as failed:
        send.send_command(project / ISSUE, people, yes=True, console=console)
    assert str(failed.value) == f"1 failed: see newsletter status {project / ISSUE}"
    assert console.asked == [] and console.out[-1].startswith("sent 1, failed 1 in ")
    again = Answers()
    assert send.send_command(project / ISSUE, people, yes=True, console=again) is None
    assert again.out == ["nothing to send: 1 already sent, 1 failed, skipped: none"]
    report = status.status_command(project / ISSUE, console=Answers())
    assert report.failures == [("b@example.com", "550 5.1.1 no such user", 1, 3)]


def test_the_password_is_asked_of_the_console_and_none_means_no_one_to_ask(project, inbox, monkeypatch):
    controller = start(Recorder(inbox), auth=True)
    for name, value in (("HOST", "127.0.0.1"), ("PORT", str(controller.port)), ("SECURITY", "none")):
        monkeypatch.setenv(f"NEWSLETTER_SMTP_{name}", value)
    monkeypatch.setenv("NEWSLETTER_SMTP_USERNAME", USER)
    monkeypatch.delenv("NEWSLETTER_SMTP_PASSWORD", raising=False)
    try:
        with pytest.raises(NewsletterError, match="set NEWSLETTER_SMTP_PASSWORD"):
            send.test_command(project / ISSUE, "me@example.org", console=Answers())
        console = Answers(password=PASSWORD)
        send.test_command(project / ISSUE, "me@example.org", console=console)
    finally:
        controller.stop()
    assert console.asked == [f"SMTP password for {USER}"]
    assert console.out == [f"sent a [TEST] message to me@example.org through 127.0.0.1:{controller.port} (none)"]
    assert inbox.recipients() == {"me@example.org": 1}
