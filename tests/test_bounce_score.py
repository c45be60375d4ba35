"""The bounce score as GNU Mailman keeps it: once a day, the day's worst, starting again after a quiet week; and a
mailbox that goes away while `inbox` reads it."""

from __future__ import annotations

import datetime as dt
import email.utils
import mailbox
import shutil

import pytest

from newsletter.errors import NewsletterError
from newsletter.inbox import open_maildir, read_mailbox
from newsletter.project import open_project
from newsletter.suppressions import SuppressionStore

from .bounces import bounce_for, maildir_files, maildir_with, send_seed

ANN = "ann@example.org"


def _soft_on(sent, day: str, n: int, status: str = "4.2.2") -> bytes:
    data = bounce_for(sent, ANN, status, "Mailbox full").decode()
    return data.replace("Mon, 10 May 2021", day).replace("Message-Id: <", f"Message-Id: <{n}.").encode()


def test_soft_bounces_a_quiet_week_apart_start_the_score_again_in_any_order(project, run, smtp_server, inbox):
    send_seed(project, run, inbox)
    sent = inbox.by_recipient(ANN)
    # Four days of a full mailbox in May, then the score would be 2.0; a month later two more days.
    days = ["3 May 2021", "4 May 2021", "5 May 2021", "6 May 2021", "20 Jun 2021", "21 Jun 2021"]
    messages = [_soft_on(sent, day, n) for n, day in enumerate(days)]
    (project / "newsletter.yaml").write_text(
        (project / "newsletter.yaml").read_text(encoding="utf-8") + "inbox:\n  soft_bounce_threshold: 2.5\n",
        encoding="utf-8",
    )
    run("inbox", "--maildir", maildir_with(project, list(reversed(messages))))
    with SuppressionStore.open(project) as store:
        assert store.score(ANN) == 1.0  # June's two days: May's four are more than a week before them
        assert store.get(ANN) is None  # 3.0 over both months would have passed 2.5


def test_a_hard_and_a_soft_bounce_on_one_day_count_as_the_day_s_worst(project, run, smtp_server, inbox):
    send_seed(project, run, inbox)
    sent = inbox.by_recipient(ANN)
    soft = _soft_on(sent, "10 May 2021", 1)
    hard = _soft_on(sent, "10 May 2021", 2, status="5.1.1")
    result = run("inbox", "--maildir", maildir_with(project, [soft, hard]))
    assert result.exit_code == 0, result.output
    with SuppressionStore.open(project) as store:
        assert store.score(ANN) == 1.0
        assert store.get(ANN) is not None and str(store.get(ANN).why) == "bounce"


def test_a_wrong_call_undone_starts_the_score_from_nothing(project, run, smtp_server, inbox):
    send_seed(project, run, inbox)
    sent = inbox.by_recipient(ANN)
    path = maildir_with(project, [_soft_on(sent, f"{d} May 2021", d) for d in range(10, 16)])
    run("inbox", "--maildir", path)
    with SuppressionStore.open(project) as store:
        assert store.get(ANN) is not None  # six days: 3.0
    assert run("suppressions", "remove", ANN).exit_code == 0
    mailbox.Maildir(path).add(_soft_on(sent, "16 May 2021", 16))
    run("inbox", "--maildir", path)
    with SuppressionStore.open(project) as store:
        assert store.score(ANN) == 0.5
        assert store.get(ANN) is None


def test_a_bounce_dated_in_the_future_counts_today_and_hides_no_real_one(project, run, smtp_server, inbox):
    send_seed(project, run, inbox)
    sent = inbox.by_recipient(ANN)
    future = _soft_on(sent, "1 Jan 2999", 1)
    undated = _soft_on(sent, "", 2)  # a Date that does not parse: today
    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    real = _soft_on(sent, email.utils.format_datetime(yesterday).rsplit(" ", 2)[0], 3)
    run("inbox", "--maildir", maildir_with(project, [future, undated, real]))
    with SuppressionStore.open(project) as store:
        assert store.score(ANN) == 1.0  # today once (the future one among them), and yesterday


def test_a_maildir_that_goes_away_mid_run_keeps_what_was_recorded_and_a_rerun_carries_on(
    project, run, smtp_server, inbox
):
    send_seed(project, run, inbox)
    bounces = [
        bounce_for(inbox.by_recipient(who), who, "5.1.1", "No such user")
        for who in ("ann@example.org", "bob@example.org")
    ]
    path = maildir_with(project, bounces)
    keep = project / "kept"
    shutil.copytree(path, keep)
    site = open_project().site
    source = open_maildir(path, site.inbox.processed_folder)

    def vanish(decision) -> None:
        shutil.rmtree(path)  # after the first decision is recorded: the mailbox is gone for the second

    with pytest.raises(NewsletterError) as caught:
        read_mailbox(source, project, site, on_decision=vanish)
    assert "went away" in str(caught.value) and "Maildir" in str(caught.value)
    with SuppressionStore.open(project) as store:
        assert len(store.decisions()) == 1
    # The mailbox comes back (a restore): the rerun records the other one, and nothing twice.
    shutil.copytree(keep, path)
    result = run("inbox", "--maildir", path)
    assert result.exit_code == 0, result.output
    assert "1 hard bounce" in result.output and "1 recorded before" in result.output
    with SuppressionStore.open(project) as store:
        assert {e for _, e, *_ in store.decisions()} == {"ann@example.org", "bob@example.org"}
        assert len(store.decisions()) == 2
    assert maildir_files(path) == set()


def test_a_bounce_naming_two_addresses_is_recorded_whole_or_not_at_all(project, run, smtp_server, inbox):
    send_seed(project, run, inbox)
    dsn = bounce_for(inbox.by_recipient(ANN), ANN, "5.1.1", "No such user").replace(
        b"Diagnostic-Code: smtp; 550 5.1.1 No such user\n\n",
        b"Diagnostic-Code: smtp; 550 5.1.1 No such user\n\n"
        b"Final-Recipient: rfc822; bob@example.org\nAction: failed\nStatus: 5.1.1\n"
        b"Diagnostic-Code: smtp; 550 5.1.1 No such user\n\n",
    )
    path = maildir_with(project, [dsn])
    # The store refuses bob's row, as a full disk or a kill between the two would leave it.
    with SuppressionStore.open(project) as store:
        store._db.execute(
            "CREATE TRIGGER no_bob BEFORE INSERT ON inbox_decisions WHEN NEW.address LIKE 'bob@%' "
            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )
    failed = run("inbox", "--maildir", path)
    assert failed.exit_code == 1 and "disk full" in failed.output
    with SuppressionStore.open(project) as store:
        assert store.decisions() == [] and store.get(ANN) is None  # not ann without bob
        store._db.execute("DROP TRIGGER no_bob")
    result = run("inbox", "--maildir", path)
    assert result.exit_code == 0 and "2 hard bounces" in result.output, result.output
    with SuppressionStore.open(project) as store:
        assert store.get(ANN) is not None and store.get("bob@example.org") is not None


def test_a_full_mailbox_is_soft_even_when_the_server_calls_it_permanent(project, run, smtp_server, inbox):
    send_seed(project, run, inbox)
    full = _soft_on(inbox.by_recipient(ANN), "10 May 2021", 1, status="5.2.2")
    result = run("inbox", "--maildir", maildir_with(project, [full]))
    assert "0 hard bounces, 1 soft" in result.output, result.output
    with SuppressionStore.open(project) as store:
        assert store.get(ANN) is None and store.score(ANN) == 0.5
