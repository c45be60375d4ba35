"""The send ledger's state changes, on a real SQLite file, without a server.

The ledger is the only memory of who was mailed. Its promises, each tested
here as the send uses it (a list read from a CSV file, imported, then rows
marked one by one): a recipient sent is never pending again; once
suppressed for an issue, always; only the addresses of the list given now
are sent to; duplicates and invalid rows are a record of the latest list,
not a pile; an uncertain or failed recipient is sent again only when asked.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pytest

from newsletter.errors import NewsletterError
from newsletter.ledger import IssueRecord, Ledger
from newsletter.subscribers import read_subscribers

ISSUE = "2021-05-spring"
PEOPLE = ["ann@example.com", "bob@example.com", "cy@example.com", "dee@example.com"]


@pytest.fixture
def ledger(tmp_path: Path):
    with Ledger(tmp_path / "state" / "ledger.sqlite3") as ledger:
        yield ledger


def write(tmp_path: Path, *rows: str, name: str = "list.csv") -> Path:
    path = tmp_path / name
    path.write_text("email,name,city\n" + "".join(row + "\n" for row in rows), encoding="utf-8")
    return path


def import_list(ledger: Ledger, path: Path, suppressed: Iterable[str] = (), issue: str = ISSUE) -> None:
    # As a send reads it: duplicates are found by the ledger, across the whole list.
    ledger.import_list(issue, read_subscribers(path, set(suppressed), dedupe=False))


def pending(ledger: Ledger, issue: str = ISSUE) -> list[str]:
    return [row.email for row in ledger.pending(issue)]


def ids(ledger: Ledger, issue: str = ISSUE) -> dict[str, int]:
    return {row.email: row.id for row in ledger.pending(issue)}


def counts(ledger: Ledger, **kwargs) -> dict[str, int]:
    """The states that are not zero."""
    return {state: n for state, n in ledger.counts(ISSUE, **kwargs).items() if n}


def listed(tmp_path: Path, addresses=PEOPLE) -> Path:
    return write(tmp_path, *(f"{a},{a.split('@')[0].title()},Ottawa" for a in addresses))


# -- importing a list ---------------------------------------------------------------


def test_a_list_becomes_one_row_per_subscriber_pending_in_list_order(ledger, tmp_path):
    path = write(
        tmp_path,
        "dee@example.com,Dee,Ottawa",
        "ann@example.com,Ann,Toronto",
        "ANN@Example.com,Ann again,Toronto",
        "not-an-address,Bad,X",
        "gone@example.com,Gone,X",
        "bob@example.com,Bob,Halifax",
    )
    import_list(ledger, path, {"gone@example.com"})
    assert counts(ledger) == {"pending": 3, "duplicate": 1, "invalid": 1, "suppressed": 1}
    rows = list(ledger.pending(ISSUE))
    assert [r.email for r in rows] == ["dee@example.com", "ann@example.com", "bob@example.com"]
    assert (rows[1].name, rows[1].fields["city"], rows[1].attempts) == ("Ann", "Toronto", 0)
    assert ledger.rows_in(ISSUE, "invalid") == [("not-an-address", "'not-an-address' is not an email address", 0, 5)]
    assert ledger.rows_in(ISSUE, "duplicate")[0][:2] == ("ANN@Example.com", "listed before")
    assert ledger.rows_in(ISSUE, "suppressed")[0][:2] == ("gone@example.com", "on the suppression list")


def test_importing_the_same_list_again_changes_nothing(ledger, tmp_path):
    path = write(tmp_path, "ann@example.com,Ann,X", "ann@example.com,Twice,X", "bad,Bad,X", "bob@example.com,Bob,X")
    import_list(ledger, path)
    before = counts(ledger)
    for _ in range(3):
        import_list(ledger, path)
    # Duplicate and invalid rows are a record of the latest list: replaced, never piled up.
    assert counts(ledger) == before == {"pending": 2, "duplicate": 1, "invalid": 1}
    assert pending(ledger) == ["ann@example.com", "bob@example.com"]


def test_a_corrected_list_clears_its_old_duplicates_and_invalid_rows(ledger, tmp_path):
    import_list(ledger, write(tmp_path, "ann@example.com,Ann,X", "Ann@example.com,Ann,X", "bad,Bad,X"))
    import_list(ledger, write(tmp_path, "ann@example.com,Ann,X", "bob@example.com,Bob,X"))
    assert counts(ledger) == {"pending": 2}


def test_a_new_import_updates_a_pending_subscribers_name_and_fields(ledger, tmp_path):
    import_list(ledger, write(tmp_path, "ann@example.com,Ann,Ottawa"))
    import_list(ledger, write(tmp_path, "Ann@Example.com,Ann Smith,Toronto"))
    [row] = ledger.pending(ISSUE)
    assert (row.email, row.name, row.fields["city"]) == ("Ann@Example.com", "Ann Smith", "Toronto")


def test_pending_reads_in_batches_without_skipping_or_repeating_anyone(ledger, tmp_path):
    addresses = [f"r{i:02}@example.com" for i in range(11)]
    import_list(ledger, listed(tmp_path, addresses))
    seen = []
    for row in ledger.pending(ISSUE, batch=3):
        seen.append(row.email)
        ledger.mark(row.id, "sent", "250 OK", attempt=True)  # as the send does, while reading
    assert seen == addresses
    assert pending(ledger) == []


# -- sent --------------------------------------------------------------------------


def test_someone_sent_is_never_pending_again(ledger, tmp_path):
    path = listed(tmp_path)
    import_list(ledger, path)
    ledger.mark(ids(ledger)["bob@example.com"], "sent", "250 OK queued", attempt=True)
    for _ in range(2):
        import_list(ledger, path)
        assert "bob@example.com" not in pending(ledger)
    assert ledger.reset(ISSUE, "failed") == 0 and ledger.reset(ISSUE, "sending") == 0
    assert "bob@example.com" not in pending(ledger)
    assert counts(ledger) == {"pending": 3, "sent": 1}
    assert ledger.rows_in(ISSUE, "sent") == [("bob@example.com", "250 OK queued", 1, 3)]


def test_someone_sent_who_unsubscribes_later_stays_recorded_as_sent(ledger, tmp_path):
    path = listed(tmp_path)
    import_list(ledger, path)
    ledger.mark(ids(ledger)["ann@example.com"], "sent", "250 OK", attempt=True)
    import_list(ledger, path, {"ann@example.com"})
    # What happened stays true: she got this issue. The next issue skips her.
    assert ledger.rows_in(ISSUE, "sent") == [("ann@example.com", "250 OK", 1, 2)]
    assert counts(ledger) == {"pending": 3, "sent": 1}


# -- suppressed ------------------------------------------------------------------


def test_once_suppressed_for_an_issue_always(ledger, tmp_path):
    path = listed(tmp_path)
    import_list(ledger, path, {"cy@example.com"})
    # A resume without the suppression list must not mail who left.
    import_list(ledger, path)
    assert "cy@example.com" not in pending(ledger)
    assert ledger.rows_in(ISSUE, "suppressed")[0][:2] == ("cy@example.com", "on the suppression list")
    assert ledger.reset(ISSUE, "failed") == 0
    assert "cy@example.com" not in pending(ledger)


@pytest.mark.parametrize("earlier", ["failed", "sending", "pending"])
def test_unsubscribing_wins_over_an_earlier_attempt(ledger, tmp_path, earlier):
    path = listed(tmp_path)
    import_list(ledger, path)
    ledger.mark(ids(ledger)["dee@example.com"], earlier, "451 try later", attempt=True)
    import_list(ledger, path, {"dee@example.com"})
    assert ledger.rows_in(ISSUE, "suppressed")[0][:2] == ("dee@example.com", "on the suppression list")
    ledger.reset(ISSUE, "failed")
    ledger.reset(ISSUE, "sending")
    assert "dee@example.com" not in pending(ledger)


def test_a_duplicate_of_a_suppressed_address_is_not_sent_either(ledger, tmp_path):
    path = write(tmp_path, "gone@example.com,Gone,X", "GONE@example.com,Gone,X", "ann@example.com,Ann,X")
    import_list(ledger, path, {"gone@example.com"})
    assert pending(ledger) == ["ann@example.com"]
    assert counts(ledger) == {"pending": 1, "duplicate": 1, "suppressed": 1}


# -- the list given now ------------------------------------------------------------


def test_only_the_list_given_now_is_sent_to(ledger, tmp_path):
    import_list(ledger, listed(tmp_path))
    ledger.mark(ids(ledger)["ann@example.com"], "failed", "550 no such user", attempt=True)
    import_list(ledger, listed(tmp_path, ["ann@example.com", "cy@example.com"]))
    # bob and dee were taken off the list: not mailed on a resume, not counted for this run.
    assert pending(ledger) == ["cy@example.com"]
    assert counts(ledger, listed_only=True) == {"pending": 1, "failed": 1}
    assert counts(ledger) == {"pending": 3, "failed": 1}  # the record still has them
    assert ledger.reset(ISSUE, "failed") == 1
    assert pending(ledger) == ["ann@example.com", "cy@example.com"]
    # Put back on the list, they are to be sent again, in their place.
    import_list(ledger, listed(tmp_path))
    assert pending(ledger) == PEOPLE


def test_failed_recipients_taken_off_the_list_are_not_retried(ledger, tmp_path):
    import_list(ledger, listed(tmp_path))
    for address in ("ann@example.com", "bob@example.com"):
        ledger.mark(ids(ledger)[address], "failed", "550 no", attempt=True)
    import_list(ledger, listed(tmp_path, ["ann@example.com"]))
    assert ledger.reset(ISSUE, "failed") == 1
    assert pending(ledger) == ["ann@example.com"]
    assert ledger.rows_in(ISSUE, "failed", listed_only=False)[0][0] == "bob@example.com"
    assert ledger.rows_in(ISSUE, "failed", listed_only=True) == []


# -- uncertain and failed ------------------------------------------------------------


def test_an_uncertain_recipient_is_sent_again_only_when_reset(ledger, tmp_path):
    path = listed(tmp_path)
    import_list(ledger, path)
    row = ids(ledger)["bob@example.com"]
    ledger.mark(row, "sending")  # just before the final dot
    ledger.mark(row, "sending", "uncertain: connection lost after the message was sent", attempt=True)
    import_list(ledger, path)
    assert "bob@example.com" not in pending(ledger)
    assert ledger.rows_in(ISSUE, "sending") == [
        ("bob@example.com", "uncertain: connection lost after the message was sent", 1, 3)
    ]
    assert ledger.reset(ISSUE, "sending") == 1
    assert pending(ledger) == PEOPLE
    assert next(r for r in ledger.pending(ISSUE) if r.email == "bob@example.com").attempts == 1


def test_attempts_add_up_and_the_last_reply_is_kept(ledger, tmp_path):
    import_list(ledger, listed(tmp_path))
    row = ids(ledger)["cy@example.com"]
    for reply in ("451 try later", "421 closing", "452 full"):
        ledger.mark(row, "pending", reply, attempt=True)
    ledger.mark(row, "failed", "gave up after 4 attempts: 452 full", attempt=True)
    assert ledger.rows_in(ISSUE, "failed") == [("cy@example.com", "gave up after 4 attempts: 452 full", 4, 4)]
    assert ledger.reset(ISSUE, "failed") == 1
    assert "cy@example.com" in pending(ledger)


# -- issues, versions, the file ----------------------------------------------------------


def test_two_issues_share_a_ledger_without_sharing_rows(ledger, tmp_path):
    path = listed(tmp_path)
    import_list(ledger, path)
    import_list(ledger, path, issue="2021-06-summer")
    ledger.mark(ids(ledger)["ann@example.com"], "sent", "250 OK", attempt=True)
    import_list(ledger, path, {"bob@example.com"}, issue="2021-06-summer")
    assert pending(ledger) == ["bob@example.com", "cy@example.com", "dee@example.com"]
    assert pending(ledger, "2021-06-summer") == ["ann@example.com", "cy@example.com", "dee@example.com"]


def test_versions_count_who_got_which_content(ledger, tmp_path):
    import_list(ledger, listed(tmp_path))
    rows = ids(ledger)
    ledger.mark(rows["ann@example.com"], "sent", "250", attempt=True, content="first")
    ledger.mark(rows["bob@example.com"], "sent", "250", attempt=True, content="first")
    ledger.mark(rows["cy@example.com"], "sending", content="second")
    ledger.mark(rows["dee@example.com"], "failed", "550", attempt=True)
    assert [(content, n) for content, n, _ in ledger.versions(ISSUE)] == [("first", 2), ("second", 1)]
    # A later mark without content keeps the version the recipient was sent.
    ledger.mark(rows["cy@example.com"], "sent", "250 OK")
    assert [(content, n) for content, n, _ in ledger.versions(ISSUE)] == [("first", 2), ("second", 1)]


def test_the_issue_record_keeps_its_key_fingerprint_until_another_is_given(ledger):
    record = IssueRecord(ISSUE, "issues/spring.yaml", "Spring", "2021-05-03", "c1", "fingerprint-1")
    ledger.record_issue(record)
    ledger.record_issue(IssueRecord(ISSUE, "issues/renamed.yaml", "Spring", "2021-05-03", "c2", None))
    assert ledger.issue_record(ISSUE) == IssueRecord(
        ISSUE, "issues/renamed.yaml", "Spring", "2021-05-03", "c2", "fingerprint-1"
    )
    assert ledger.issue_sent_from("issues/renamed.yaml").issue == ISSUE
    assert ledger.issue_sent_from("issues/spring.yaml") is None
    assert ledger.issue_record("another") is None


def test_the_record_outlives_the_process_that_wrote_it(tmp_path):
    path = tmp_path / "state" / "ledger.sqlite3"
    with Ledger(path) as first:
        import_list(first, listed(tmp_path))
        first.mark(ids(first)["ann@example.com"], "sent", "250 OK", attempt=True)
    with Ledger(path) as again:
        assert pending(again) == PEOPLE[1:]
        assert again.counts(ISSUE)["sent"] == 1


def test_a_second_send_from_the_same_project_is_refused_until_the_first_ends(tmp_path):
    path = tmp_path / "state" / "ledger.sqlite3"
    with Ledger(path) as first, Ledger(path) as second:
        first.claim()
        with pytest.raises(NewsletterError, match="another send from this project is running"):
            second.claim()
        first.close()
        second.claim()  # released with the first


def test_a_file_that_is_not_a_ledger_is_a_message(tmp_path):
    path = tmp_path / "ledger.sqlite3"
    path.write_bytes(b"not a database " * 100)
    with pytest.raises(NewsletterError) as raised:
        Ledger(path).counts(ISSUE)
    assert "the send ledger is damaged" in str(raised.value) and str(path) in str(raised.value)
