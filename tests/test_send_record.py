"""The send ledger as the project's memory: which issue, which version, and a record
that survives renames, copies, edits, a cleaned outbox and a deleted ledger."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
from pathlib import Path

from .small_disk import cli, small_disk
from .support import MINIMAL, SEED, write_issue, write_list

LEDGER = Path("state") / "ledger.sqlite3"


def _list(project: Path, n: int) -> Path:
    return write_list(project, ["email"] + [f"r{i:02d}@example.com" for i in range(n)])


def _all_once(inbox, n: int) -> None:
    received = inbox.recipients()
    assert len(received) == n and set(received.values()) == {1}, received


def test_a_real_send_needs_an_id_and_a_moved_file_continues_with_moved(project, run, smtp_server, inbox):
    first = write_issue(project, MINIMAL, "2021-06-draft.yaml")
    people = _list(project, 10)
    refused = run("send", first, "--to", people, "--yes")
    assert refused.exit_code == 1 and "has no id: line. Add 'id: \"2021-06-draft\"'" in refused.output
    assert inbox.recipients() == {}
    # A test copy or a dry run needs none: neither is recorded.
    assert run("send", first, "--test", "advisor@example.org").exit_code == 0

    first.write_text('id: "2021-06-draft"\n' + first.read_text(encoding="utf-8"), encoding="utf-8")
    assert run("send", first, "--to", people, "--yes", "--limit", "3").exit_code == 0
    renamed = first.rename(first.with_name("2021-06-summer.yaml"))
    moved = run("send", renamed, "--to", people, "--yes")
    assert moved.exit_code == 1 and "--moved" in moved.output and "issues/2021-06-draft.yaml" in moved.output
    resumed = run("send", renamed, "--to", people, "--yes", "--moved")
    assert resumed.exit_code == 0, resumed.output
    assert "sent 7, failed 0" in resumed.output
    received = inbox.recipients()
    assert received.pop("advisor@example.org") == 1  # the test copy
    assert len(received) == 10 and set(received.values()) == {1}, received
    # From now on the new path is the issue's: no flag needed.
    again = run("send", renamed, "--to", people, "--yes")
    assert again.exit_code == 0 and "nothing to send: 10 already sent" in again.output
    status = run("status", renamed)
    assert re.search(r"sent\s+10\b", status.output), status.output


def test_an_id_changed_after_a_send_is_refused(project, run, smtp_server, inbox):
    issue = project / "issues" / f"{SEED}.yaml"
    people = _list(project, 4)
    assert run("send", issue, "--to", people, "--yes", "--limit", "2").exit_code == 0
    issue.write_text(issue.read_text(encoding="utf-8").replace(f"id: {SEED}", "id: spring"), encoding="utf-8")
    refused = run("send", issue, "--to", people, "--yes")
    assert refused.exit_code == 1
    assert f"was sent as issue '{SEED}', but is now issue 'spring'" in refused.output
    assert f"Put back 'id: {SEED}'" in refused.output
    assert len(inbox.recipients()) == 2
    status = run("status", issue).output  # the record is found by the path it was sent from
    assert f"the ledger's record of issue '{SEED}'" in status and re.search(r"sent\s+2\b", status)


def test_a_copy_with_the_same_name_elsewhere_is_refused(project, run, smtp_server, inbox):
    (project / "drafts").mkdir()
    draft = write_issue(project, "id: june\n" + MINIMAL, "june.yaml").rename(project / "drafts" / "june.yaml")
    assert run("send", draft, "--to", write_list(project, ["email", "advisor@example.com"]), "--yes").exit_code == 0

    real = write_issue(project, "id: june\n" + MINIMAL, "june.yaml")
    everyone = write_list(project, ["email", "advisor@example.com", "r1@example.com"])
    refused = run("send", real, "--to", everyone, "--yes")
    assert refused.exit_code == 1
    assert "is issue 'june', and so is drafts/june.yaml" in refused.output and "own id:" in refused.output
    # Its own id: then everyone on the list gets the real issue, the draft's reader included.
    real.write_text("id: june-real\n" + MINIMAL, encoding="utf-8")
    sent = run("send", real, "--to", everyone, "--yes")
    assert sent.exit_code == 0, sent.output
    assert inbox.recipients() == {"advisor@example.com": 2, "r1@example.com": 1}


def test_two_issues_with_one_id_are_refused(project, run, smtp_server, inbox):
    people = _list(project, 2)
    assert run("send", f"issues/{SEED}.yaml", "--to", people, "--yes").exit_code == 0
    seed = (project / "issues" / f"{SEED}.yaml").read_text(encoding="utf-8")
    copy = project / "issues" / "2021-06-next.yaml"  # started from last month's file, id and all
    copy.write_text(seed.replace("Spring Solidarity", "Summer"), encoding="utf-8")
    refused = run("send", copy, "--to", people, "--yes")
    assert refused.exit_code == 1
    assert f"is issue '{SEED}', and so is issues/{SEED}.yaml" in refused.output
    _all_once(inbox, 2)


def test_an_issue_edited_before_its_resume_needs_changed_content(project, run, smtp_server, inbox):
    issue = project / "issues" / f"{SEED}.yaml"
    people = _list(project, 10)
    assert run("send", issue, "--to", people, "--yes", "--limit", "3").exit_code == 0
    issue.write_text(issue.read_text(encoding="utf-8").replace("brutal crackdown", "harsh crackdown"), "utf-8")

    refused = run("send", issue, "--to", people, "--yes")
    assert refused.exit_code == 1
    assert "has changed since its send began: 3 recipients got the earlier version" in refused.output
    assert "--changed-content" in refused.output
    assert len(inbox.recipients()) == 3

    resumed = run("send", issue, "--to", people, "--yes", "--changed-content")
    assert resumed.exit_code == 0, resumed.output
    _all_once(inbox, 10)
    bodies = [m.get_body(("plain",)).get_content() for m in inbox.messages]
    assert sum("brutal crackdown" in b for b in bodies) == 3
    assert sum("harsh crackdown" in b for b in bodies) == 7
    status = run("status", issue).output
    versions = re.findall(r"^\s+([0-9a-f]{16})\s+(\d+) recipients, from .*?(, the current one)?$", status, re.M)
    assert [(n, bool(current)) for _, n, current in versions] == [("3", False), ("7", True)], status


def test_the_same_content_resumes_without_a_word(project, run, smtp_server, inbox):
    issue = f"issues/{SEED}.yaml"
    people = _list(project, 5)
    assert run("send", issue, "--to", people, "--yes", "--limit", "2").exit_code == 0
    resumed = run("send", issue, "--to", people, "--yes")
    assert resumed.exit_code == 0 and "warning" not in resumed.output
    _all_once(inbox, 5)
    assert "versions sent" not in run("status", issue).output


def test_a_resume_with_another_secret_warns(project, run, smtp_server, inbox, monkeypatch):
    issue = f"issues/{SEED}.yaml"
    people = _list(project, 4)
    assert run("send", issue, "--to", people, "--yes", "--limit", "2").exit_code == 0
    monkeypatch.setenv("NEWSLETTER_SECRET", os.environ["NEWSLETTER_SECRET"] + "-but-another-one")
    resumed = run("send", issue, "--to", people, "--yes")
    assert resumed.exit_code == 0
    assert "NEWSLETTER_SECRET is not the key the earlier run of this issue signed its links with" in resumed.output
    for path in (project / "state").iterdir():
        assert os.environ["NEWSLETTER_SECRET"].encode() not in path.read_bytes()


def test_the_ledger_deleted_during_a_send_is_written_back_and_nobody_is_mailed_twice(project, run, smtp_server, inbox):
    people = _list(project, 40)

    def clean_up(_: str) -> None:
        if len(inbox.messages) == 10:
            shutil.rmtree(project / "state")  # a careless clean of the project's files

    smtp_server.on_data = clean_up
    stopped = run("send", f"issues/{SEED}.yaml", "--to", people, "--yes", "--connections", "2")
    smtp_server.on_data = None
    assert stopped.exit_code == 1
    assert "the send ledger was deleted or replaced while sending" in stopped.output
    assert "written back from the open copy" in stopped.output and "Traceback" not in stopped.output
    reached = len(inbox.recipients())
    assert 10 <= reached < 40
    with sqlite3.connect(project / LEDGER) as db:
        assert db.execute("SELECT COUNT(*) FROM deliveries WHERE state = 'sent'").fetchone() == (reached,)

    resumed = run("send", f"issues/{SEED}.yaml", "--to", people, "--yes")
    assert resumed.exit_code == 0, resumed.output
    _all_once(inbox, 40)


def test_a_ledger_replaced_during_a_send_is_kept_aside_and_the_record_restored(project, run, smtp_server, inbox):
    people = _list(project, 30)
    old = project / "old-ledger.sqlite3"
    sqlite3.connect(old).close()

    def replace(_: str) -> None:
        if len(inbox.messages) == 5:
            shutil.copy(old, project / "state" / "copy")
            os.replace(project / "state" / "copy", project / LEDGER)  # an old backup put back

    smtp_server.on_data = replace
    stopped = run("send", f"issues/{SEED}.yaml", "--to", people, "--yes", "--connections", "1")
    smtp_server.on_data = None
    assert stopped.exit_code == 1 and "deleted or replaced" in stopped.output
    kept = list((project / "state").glob("ledger.sqlite3.found-*"))
    assert len(kept) == 1 and kept[0].name in stopped.output

    resumed = run("send", f"issues/{SEED}.yaml", "--to", people, "--yes")
    assert resumed.exit_code == 0, resumed.output
    _all_once(inbox, 30)


def test_a_ledger_left_in_outbox_is_moved_and_cleaning_outbox_loses_nothing(project, run, smtp_server, inbox):
    issue = f"issues/{SEED}.yaml"
    people = _list(project, 6)
    assert run("send", issue, "--to", people, "--yes", "--limit", "2").exit_code == 0
    # What an earlier version left: the ledger in outbox/, without the tables added since.
    (project / "outbox").mkdir(exist_ok=True)
    os.replace(project / LEDGER, project / "outbox" / "ledger.sqlite3")
    with sqlite3.connect(project / "outbox" / "ledger.sqlite3") as db:
        db.execute("DROP TABLE issues")
        db.execute("ALTER TABLE deliveries DROP COLUMN content")
    shutil.rmtree(project / "state")

    resumed = run("send", issue, "--to", people, "--yes", "--limit", "2")
    assert resumed.exit_code == 0, resumed.output
    assert "outbox/ledger.sqlite3: moved the send ledger to state/ledger.sqlite3" in resumed.output
    assert not (project / "outbox" / "ledger.sqlite3").exists()
    assert (project / "state" / ".gitignore").read_text(encoding="utf-8").strip().endswith("*")

    shutil.rmtree(project / "outbox")  # cleaning the build output
    last = run("send", issue, "--to", people, "--yes")
    assert last.exit_code == 0 and "sent 2, failed 0" in last.output
    _all_once(inbox, 6)


def test_a_damaged_ledger_is_a_message_not_a_traceback(project, run, smtp_server, inbox):
    issue = f"issues/{SEED}.yaml"
    people = _list(project, 300)
    assert run("send", issue, "--to", people, "--yes", "--limit", "1").exit_code == 0
    with sqlite3.connect(project / LEDGER) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        page = db.execute("PRAGMA page_size").fetchone()[0]
        assert db.execute("PRAGMA page_count").fetchone()[0] > 4
    with (project / LEDGER).open("r+b") as f:  # scribble over the tables' pages, as a bad disk would
        for n in range(1, 5):
            f.seek(n * page)
            f.write(b"\xde\xad" * (page // 2))
    for args in (("status", issue), ("send", issue, "--to", people, "--yes")):
        result = run(*args)
        assert result.exit_code == 1, result.output
        assert "state/ledger.sqlite3: the send ledger is damaged" in result.output
        assert "Restore it from a backup" in result.output and "Traceback" not in result.output
    assert len(inbox.recipients()) == 1


def test_a_full_disk_during_the_list_import_sends_nothing(project, smtp_server, inbox):
    people = write_list(project, ["email,name"] + [f"r{i:05d}@example.com,{'N' * 100}" for i in range(3000)])
    with small_disk(project / "state", 256 * 1024) as disk:
        done = cli(disk, project, "send", f"issues/{SEED}.yaml", "--to", people, "--yes")
    assert done.returncode == 1, done.stderr
    assert "state/ledger.sqlite3: cannot " in done.stderr and "Traceback" not in done.stderr
    assert "database or disk is full" in done.stderr or "disk I/O error" in done.stderr, done.stderr
    assert inbox.recipients() == {}


def test_a_send_answered_no_or_refused_leaves_the_record_as_it_was(project, run, smtp_server, inbox, monkeypatch):
    from click.testing import CliRunner

    from newsletter.__main__ import cli

    issue = project / "issues" / f"{SEED}.yaml"
    people = _list(project, 6)
    assert run("send", issue, "--to", people, "--yes", "--limit", "3").exit_code == 0
    issue.write_text(issue.read_text(encoding="utf-8").replace("brutal crackdown", "harsh crackdown"), "utf-8")
    no = CliRunner().invoke(cli, ["send", str(issue), "--to", str(people), "--changed-content"], input="n\n")
    assert no.exit_code == 1 and len(inbox.recipients()) == 3
    key = os.environ["NEWSLETTER_SECRET"]
    monkeypatch.setenv("NEWSLETTER_SECRET", "too-weak")
    assert run("send", issue, "--to", people, "--yes", "--changed-content").exit_code == 1
    monkeypatch.setenv("NEWSLETTER_SECRET", key)
    # Neither the "no" nor the refused run made the edit the accepted version, or recorded the weak key.
    again = run("send", issue, "--to", people, "--yes")
    assert again.exit_code == 1 and "has changed since its send began" in again.output
    assert "is not the key" not in again.output
    assert len(inbox.recipients()) == 3


def test_an_issue_an_earlier_version_sent_under_its_file_name_keeps_that_name(project, run, smtp_server, inbox):
    issue = project / "issues" / f"{SEED}.yaml"
    people = _list(project, 4)
    assert run("send", issue, "--to", people, "--yes", "--limit", "2").exit_code == 0
    with sqlite3.connect(project / LEDGER) as db:  # what an earlier version knew: rows under the file's name
        db.execute("DROP TABLE issues")
    issue.write_text(issue.read_text(encoding="utf-8").replace(f"id: {SEED}", "id: spring"), encoding="utf-8")
    refused = run("send", issue, "--to", people, "--yes")
    assert refused.exit_code == 1 and f"Put back 'id: {SEED}'" in refused.output
    issue.write_text(issue.read_text(encoding="utf-8").replace("id: spring", f"id: {SEED}"), encoding="utf-8")
    resumed = run("send", issue, "--to", people, "--yes")
    assert resumed.exit_code == 0 and "sent 2, failed 0" in resumed.output
    _all_once(inbox, 4)


def test_a_restore_that_died_halfway_is_not_taken_for_no_record(project, run, smtp_server, inbox):
    issue = f"issues/{SEED}.yaml"
    people = _list(project, 3)
    assert run("send", issue, "--to", people, "--yes", "--limit", "1").exit_code == 0
    # What a SIGKILL between writing the copy and putting it in place leaves.
    os.replace(project / LEDGER, project / "state" / ".ledger.sqlite3.restoring-4242")
    for args in (("send", issue, "--to", people, "--yes"), ("status", issue)):
        result = run(*args)
        assert result.exit_code == 1, result.output
        assert "state/.ledger.sqlite3.restoring-4242: a send died while writing the send ledger back" in result.output
    assert len(inbox.recipients()) == 1
