"""`newsletter send` against a real SMTP server (aiosmtpd on 127.0.0.1)."""

from __future__ import annotations

import re
import sqlite3

import lxml.html

from newsletter.unsubscribe import read_token

from .support import SECRET, SEED, write_list

ISSUE = f"issues/{SEED}.yaml"


def _send(run, *args: str):
    return run("send", ISSUE, *args)


def _unsubscribe_link(message) -> str:
    html = message.get_body(("html",)).get_content()
    links = [a.get("href") for a in lxml.html.fromstring(html).iter("a") if a.text_content().strip() == "Unsubscribe"]
    assert len(links) == 1
    return links[0]


def test_every_recipient_gets_exactly_one_personal_message(project, run, smtp_server, inbox):
    addresses = [f"reader{i}@example.com" for i in range(12)]
    rows = ["email,name,city", "ann@example.com,Ann,Ottawa", "nameless@example.com,,Toronto"]
    rows += [f"{a},Reader {i},X" for i, a in enumerate(addresses)]
    result = _send(run, "--to", write_list(project, rows), "--yes", "--connections", "3")
    assert result.exit_code == 0, result.output
    received = inbox.recipients()
    assert set(received) == {"ann@example.com", "nameless@example.com", *addresses}
    assert set(received.values()) == {1}
    assert "sent 14, failed 0" in result.output

    ann = inbox.by_recipient("ann@example.com")
    assert ann["To"] == "Ann <ann@example.com>"
    assert ann["From"] == "Amnesty Crisis and Tactical Team <roundup@example.org>"
    assert ann["Reply-To"] == "hhomes@amnesty.ca"
    assert ann["Subject"] == "Crisis and Tactical Round Up: Spring Solidarity"
    assert ann["Date"] and ann["MIME-Version"] == "1.0"
    assert ann["List-Id"].endswith("<roundup.example.org>")
    assert ann["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = re.fullmatch(r"<(https://[^>]+)>, <(mailto:[^>]+)>", ann["List-Unsubscribe"]).groups()
    # The visible link is the same signed, per-recipient URL.
    assert _unsubscribe_link(ann) == https
    token = https.split("t=", 1)[1]
    # A mailed unsubscribe carries the same token in its subject, so that it can be trusted.
    assert mailto == f"mailto:unsubscribe@example.org?subject=unsubscribe%20{token}"
    assert read_token(SECRET, "roundup.example.org", token) == "ann@example.com"
    assert read_token("another-secret", "roundup.example.org", token) is None
    assert "Hi Ann," in ann.get_body(("plain",)).get_content()
    assert "Hi Ann," in ann.get_body(("html",)).get_content()

    nameless = inbox.by_recipient("nameless@example.com")
    assert "Hi there," in nameless.get_body(("plain",)).get_content()
    assert _unsubscribe_link(nameless) != https
    assert nameless["Message-ID"] != ann["Message-ID"]


def test_non_ascii_names_are_encoded_and_line_breaks_refused(project, run, smtp_server, inbox):
    rows = ["email,name", "zoe@example.com,Zoë Ñúñez", 'eve@example.com,"Eve\r\nBcc: victim@example.com"']
    result = _send(run, "--to", write_list(project, rows), "--yes")
    assert result.exit_code == 0, result.output
    assert set(inbox.recipients()) == {"zoe@example.com"}
    message = inbox.by_recipient("zoe@example.com")
    assert message["To"] == "Zoë Ñúñez <zoe@example.com>"
    raw_to = next(v for k, v in message.raw_items() if k == "To")
    assert raw_to.isascii() and "=?utf-8?" in raw_to
    assert "Hi Zoë Ñúñez," in message.get_body(("plain",)).get_content()
    status = run("status", ISSUE).output
    assert re.search(r"invalid\s+1", status) and "the name contains a line break" in status


def test_duplicates_invalid_and_suppressed_are_skipped_and_reported(project, run, smtp_server, inbox):
    (project / "suppressions.csv").write_text("email\ngone@example.com\n", encoding="utf-8")
    rows = [
        "email,name",
        "ok@example.com,Ok",
        "OK@Example.com,Ok again",
        "not-an-address,Bad",
        ",Empty",
        "gone@example.com,Unsubscribed",
        "also@example.com,Also",
    ]
    result = _send(run, "--to", write_list(project, rows), "--yes")
    assert result.exit_code == 0, result.output
    assert inbox.recipients() == {"ok@example.com": 1, "also@example.com": 1}
    assert "skipped: 1 duplicate, 2 invalid, 1 suppressed" in result.output
    status = run("status", ISSUE).output
    for state, n in (("sent", 2), ("duplicate", 1), ("invalid", 2), ("suppressed", 1)):
        assert re.search(rf"{state}\s+{n}\b", status), status
    assert "'not-an-address' is not an email address" in status


def test_a_second_run_sends_nothing_and_limit_resumes(project, run, smtp_server, inbox):
    rows = ["email"] + [f"r{i}@example.com" for i in range(10)]
    path = write_list(project, rows)
    first = _send(run, "--to", path, "--yes", "--limit", "4")
    assert first.exit_code == 0, first.output
    assert len(inbox.recipients()) == 4
    second = _send(run, "--to", path, "--yes")
    assert "sent 6, failed 0" in second.output
    third = _send(run, "--to", path, "--yes")
    assert third.exit_code == 0 and "nothing to send: 10 already sent" in third.output
    assert len(inbox.recipients()) == 10 and set(inbox.recipients().values()) == {1}


def test_confirmation_shows_issue_count_and_server_and_no_sends_nothing(project, run, smtp_server, inbox):
    from click.testing import CliRunner

    from newsletter.__main__ import cli

    path = write_list(project, ["email", "a@example.com", "b@example.com"])
    result = CliRunner().invoke(cli, ["send", ISSUE, "--to", str(path)], input="n\n")
    assert result.exit_code == 1
    assert "Crisis and Tactical Round Up: Spring Solidarity" in result.output
    assert "2 to send now" in result.output
    assert f"127.0.0.1:{smtp_server_port()}" in result.output
    assert inbox.recipients() == {}


def smtp_server_port() -> str:
    import os

    return os.environ["NEWSLETTER_SMTP_PORT"]


def test_dry_run_writes_every_message_and_connects_to_nothing(project, run, monkeypatch):
    from .smtp_server import free_port

    monkeypatch.setenv("NEWSLETTER_SMTP_PORT", str(free_port()))  # nothing listens there
    path = write_list(project, ["email,name", "a@example.com,A", "b@example.com,B", "A@example.com,dup"])
    result = _send(run, "--to", path, "--dry-run")
    assert result.exit_code == 0, result.output
    folder = project / "outbox" / SEED / "dry-run"
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["000001-a@example.com.eml", "000002-b@example.com.eml"]
    assert "skipped 1 duplicate" in result.output
    assert not (project / "state" / "ledger.sqlite3").exists()
    # The same recipient and issue always get the same Message-ID.
    first = (folder / files[0]).read_bytes()
    _send(run, "--to", path, "--dry-run")
    again = (folder / files[0]).read_bytes()
    message_id = re.compile(rb"^Message-ID: (.+)$", re.M)
    assert message_id.search(first).group(1) == message_id.search(again).group(1)


def test_test_send_goes_to_one_address_and_is_recorded_nowhere(project, run, smtp_server, inbox):
    result = _send(run, "--test", "advisor@example.org")
    assert result.exit_code == 0, result.output
    assert inbox.recipients() == {"advisor@example.org": 1}
    assert inbox.messages[0]["Subject"] == "[TEST] Crisis and Tactical Round Up: Spring Solidarity"
    assert not (project / "state" / "ledger.sqlite3").exists()


def test_a_real_send_needs_the_signing_secret(project, run, smtp_server, inbox, monkeypatch):
    monkeypatch.delenv("NEWSLETTER_SECRET")
    result = _send(run, "--to", write_list(project, ["email", "a@example.com"]), "--yes")
    assert result.exit_code == 1
    assert "set NEWSLETTER_SECRET" in result.output
    assert inbox.recipients() == {}


def test_ledger_records_reply_attempts_and_times(project, run, smtp_server):
    _send(run, "--to", write_list(project, ["email", "a@example.com"]), "--yes")
    db = sqlite3.connect(project / "state" / "ledger.sqlite3")
    state, reply, attempts, sent_at = db.execute("SELECT state, reply, attempts, sent_at FROM deliveries").fetchone()
    assert (state, attempts) == ("sent", 1)
    assert reply.startswith("250 ") and sent_at > 0


def test_connections_are_reused_for_many_messages(project, run, smtp_server, inbox):
    rows = ["email"] + [f"r{i}@example.com" for i in range(24)]
    result = _send(run, "--to", write_list(project, rows), "--yes", "--connections", "2")
    assert result.exit_code == 0, result.output
    assert len(inbox.recipients()) == 24
    assert 1 <= smtp_server.connections <= 2


def test_every_list_column_is_there_for_the_templates(project, run, smtp_server, inbox):
    template = project / "templates" / "email.txt.j2"
    template.write_text(
        template.read_text(encoding="utf-8").replace(
            'Hi {{ subscriber.get("name", "there") }},',
            'Hi {{ subscriber.get("name", "there") }} from {{ subscriber.get("city", "everywhere") }},',
        ),
        encoding="utf-8",
    )
    rows = ["email,name,city", "a@example.com,Ann,Montréal", "b@example.com,Bo,"]
    assert _send(run, "--to", write_list(project, rows), "--yes").exit_code == 0
    assert "Hi Ann from Montréal," in inbox.by_recipient("a@example.com").get_body(("plain",)).get_content()
    assert "Hi Bo from everywhere," in inbox.by_recipient("b@example.com").get_body(("plain",)).get_content()


def test_resend_uncertain_sends_to_those_a_crash_left_behind(project, run, smtp_server, inbox):
    path = write_list(project, ["email", "a@example.com", "b@example.com"])
    assert _send(run, "--to", path, "--yes", "--limit", "1").exit_code == 0
    db = sqlite3.connect(project / "state" / "ledger.sqlite3")
    with db:  # as a crash during b's DATA would leave it
        db.execute("UPDATE deliveries SET state = 'sending' WHERE email = 'b@example.com'")
    db.close()
    held = _send(run, "--to", path, "--yes")
    assert "1 uncertain recipient(s)" in held.output and "nothing to send" in held.output
    assert inbox.recipients() == {"a@example.com": 1}
    resent = _send(run, "--to", path, "--yes", "--resend-uncertain")
    assert resent.exit_code == 0, resent.output
    assert inbox.recipients() == {"a@example.com": 1, "b@example.com": 1}


def test_suppression_column_in_any_case_and_it_wins_over_retries(project, run, inbox, monkeypatch):
    from .smtp_server import Recorder, start

    controller = start(Recorder(inbox, lambda rcpt, n: "550 5.1.1 no such user" if rcpt == "bob@example.com" else None))
    monkeypatch.setenv("NEWSLETTER_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("NEWSLETTER_SMTP_PORT", str(controller.port))
    monkeypatch.setenv("NEWSLETTER_SMTP_SECURITY", "none")
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    try:
        path = write_list(project, ["email", "ann@example.com", "bob@example.com", "cat@example.com"])
        (project / "suppressions.csv").write_text(" Email ,date\ncat@example.com,2021-05-01\n", encoding="utf-8")
        first = _send(run, "--to", path, "--yes")
        assert first.exit_code == 1 and "1 failed: see newsletter status" in first.output  # bob refused
        assert set(inbox.recipients()) == {"ann@example.com"}  # cat unsubscribed; bob refused
        # Bob unsubscribes too; retrying the failures must not reach him.
        (project / "suppressions.csv").write_text("Email\ncat@example.com\nBOB@example.com\n", encoding="utf-8")
        result = _send(run, "--to", path, "--yes", "--retry-failed")
        assert "nothing to send" in result.output
        assert set(inbox.recipients()) == {"ann@example.com"}
    finally:
        controller.stop()


def test_someone_taken_off_the_list_is_not_mailed_on_resume(project, run, smtp_server, inbox):
    path = write_list(project, ["email", "ann@example.com", "bob@example.com", "cat@example.com"])
    assert _send(run, "--to", path, "--yes", "--limit", "1").exit_code == 0
    path = write_list(project, ["email", "ann@example.com", "cat@example.com"])
    result = _send(run, "--to", path, "--yes")
    assert result.exit_code == 0, result.output
    assert inbox.recipients() == {"ann@example.com": 1, "cat@example.com": 1}


def test_answering_no_changes_nothing(project, run, smtp_server, inbox):
    from click.testing import CliRunner

    from newsletter.__main__ import cli

    path = write_list(project, ["email", "a@example.com"])
    _send(run, "--to", path, "--yes")
    db = sqlite3.connect(project / "state" / "ledger.sqlite3")
    with db:
        db.execute("UPDATE deliveries SET state = 'sending'")
    result = CliRunner().invoke(cli, ["send", ISSUE, "--to", str(path), "--resend-uncertain"], input="n\n")
    assert result.exit_code == 1
    assert db.execute("SELECT state FROM deliveries").fetchone() == ("sending",)
    db.close()


def test_a_second_send_at_the_same_time_is_refused(project, run, smtp_server):
    from newsletter.ledger import Ledger

    path = write_list(project, ["email", "a@example.com"])
    with Ledger(project / "state" / "ledger.sqlite3") as running:
        running.claim()
        result = _send(run, "--to", path, "--yes")
    assert result.exit_code == 1
    assert "another send from this project is running" in result.output


def test_test_copies_never_share_the_real_message_id(project, run, smtp_server, inbox):
    _send(run, "--test", "me@example.org")
    _send(run, "--test", "me@example.org")
    _send(run, "--to", write_list(project, ["email", "me@example.org"]), "--yes")
    ids = [m["Message-ID"] for m in inbox.messages]
    assert len(ids) == 3 and len(set(ids)) == 3
