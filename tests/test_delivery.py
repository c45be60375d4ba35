"""The delivery pool on its own: a real SMTP server, a real ledger, and a clock of the test's own."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.delivery import DeliveryPool, Options, Outcome
from newsletter.ledger import Ledger
from newsletter.message import Composer
from newsletter.pipeline import check
from newsletter.smtp import settings_from
from newsletter.subscribers import read_subscribers

from .support import SECRET, SEED, FakeClock, write_list


def _deliver(project: Path, people: int, options: Options, clock: FakeClock) -> Outcome:
    checked = check(project / "issues" / f"{SEED}.yaml")
    rows = ["email"] + [f"r{i:02d}@example.com" for i in range(people)]
    with Ledger(project / "ledger.sqlite3") as ledger:
        ledger.import_list(SEED, read_subscribers(write_list(project, rows), dedupe=False))
        pool = DeliveryPool(
            Composer.prepare(checked.rendered),
            settings_from(checked.project.site.smtp),
            ledger,
            SECRET,
            options,
            clock=clock,
        )
        return pool.run(ledger.pending(SEED))


def test_rate_spaces_the_messages_of_all_connections_together(project, smtp_server, inbox):
    clock = FakeClock()
    outcome = _deliver(project, 20, Options(connections=4, rate=10), clock)
    assert outcome.sent == 20 and len(inbox.recipients()) == 20
    # One message every 0.1 s: the 20th may go 1.9 s after the first, and not before.
    assert clock.time == pytest.approx(1.9)
    assert outcome.elapsed == pytest.approx(1.9)


def test_without_a_rate_the_pool_never_waits(project, smtp_server, inbox):
    clock = FakeClock()
    outcome = _deliver(project, 20, Options(connections=4), clock)
    assert outcome.sent == 20 and len(inbox.recipients()) == 20
    assert clock.waits == 0 and clock.time == 0.0


LOST = "connection lost after the message was sent (Connection unexpectedly closed)"


@pytest.mark.parametrize(
    "fault, said, recorded",
    [
        ("554 5.7.1 no", "the server refused me@example.org: 554 5.7.1 no", "554 5.7.1 no"),
        ("lost", f"sending failed: {LOST}", f"uncertain: {LOST}"),
    ],
    ids=["refused-after-the-message", "answer-lost"],
)
def test_a_test_copy_fails_in_the_words_the_list_send_records(project, run, smtp_server, fault, said, recorded):
    # The --test copy goes through the code that sends to the list: a refusal of the message
    # (not only of its recipient), or an answer lost after the final dot, reads the same in both.
    smtp_server.fault = lambda rcpt, attempt: fault if attempt > 0 else None
    issue = f"issues/{SEED}.yaml"
    test = run("send", issue, "--test", "me@example.org")
    listed = run("send", issue, "--to", write_list(project, ["email", "a@example.com"]), "--yes")
    assert test.exit_code == 1 and listed.exit_code == 1
    assert test.output.splitlines()[-1] == f"error: {said}"
    assert f"a@example.com  (list line 2, 1 attempts): {recorded}" in run("status", issue).output
