"""What a send promises when the server misbehaves: no password in any output or in the ledger,
no terminal escapes from a server's reply, an exit code that says whether everyone got the
message, and no pointless retries of what cannot work."""

from __future__ import annotations

import base64
import re
import sqlite3
import ssl
from pathlib import Path

import pytest
import trustme
from click.testing import CliRunner

from newsletter.__main__ import cli
from newsletter.delivery import Options, deliver
from newsletter.send_plan import plan_send
from newsletter.smtp import Settings

from .smtp_server import PASSWORD, USER, Recorder, Scripted, echoing_authenticator, start
from .support import SECRET, SEED, write_list

ISSUE = f"issues/{SEED}.yaml"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# Every form in which the password crosses the wire, with and without base64 padding.
PLAIN_BLOB = _b64(b"\0" + USER.encode() + b"\0" + PASSWORD.encode())
PASSWORD_B64 = _b64(PASSWORD.encode())
SECRETS = [PASSWORD, PLAIN_BLOB, PLAIN_BLOB.rstrip("="), PASSWORD_B64, PASSWORD_B64.rstrip("=")]


def _ledger_bytes(project: Path) -> bytes:
    """The send ledger as it is on disk, write-ahead log included."""
    found = [path for path in sorted((project / "state").glob("ledger.sqlite3*")) if path.is_file()]
    assert found, "no send ledger in state/"
    return b"".join(path.read_bytes() for path in found)


def _serve(monkeypatch, controller) -> None:
    monkeypatch.setenv("NEWSLETTER_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("NEWSLETTER_SMTP_PORT", str(controller.port))
    monkeypatch.setenv("NEWSLETTER_SMTP_SECURITY", "none")
    monkeypatch.setenv("NEWSLETTER_SMTP_USERNAME", USER)
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)


def _assert_secret_free(text: str | bytes) -> None:
    for secret in SECRETS:
        found = secret.encode().lower() in text.lower() if isinstance(text, bytes) else secret.lower() in text.lower()
        assert not found, f"{secret!r} leaked"


# -- 8. the password in a server's reply ------------------------------------------------------


@pytest.mark.parametrize(
    "mechanism, echo",
    [
        ("PLAIN", lambda login, password: "AUTH PLAIN " + _b64(b"\0" + login + b"\0" + password) + " rejected"),
        ("PLAIN", lambda login, password: f"bad login {login.decode()} / {password.decode()}"),
        ("LOGIN", lambda login, password: f"{_b64(login)} {_b64(password)} rejected"),
        ("LOGIN", lambda login, password: f"{_b64(password).rstrip('=')} is not the password"),
        ("PLAIN", lambda login, password: f"BAD PASSWORD {password.decode().upper()}"),
    ],
    ids=["plain-blob", "clear", "login-lines", "login-password-unpadded", "clear-upper-case"],
)
def test_a_server_that_echoes_the_login_never_shows_or_stores_the_password(
    project, run, inbox, monkeypatch, mechanism, echo
):
    other = "LOGIN" if mechanism == "PLAIN" else "PLAIN"
    controller = start(Recorder(inbox), auth=True, authenticate=echoing_authenticator(echo), auth_exclude=(other,))
    _serve(monkeypatch, controller)
    try:
        rows = write_list(project, ["email", "a@example.com", "b@example.com"])
        result = run("send", ISSUE, "--to", rows, "--yes")
        test = run("send", ISSUE, "--test", "me@example.org")
    finally:
        controller.stop()
    assert result.exit_code == 1 and test.exit_code == 1
    assert "refused the login: 535 5.7.8" in result.output and "refused the login: 535 5.7.8" in test.output
    _assert_secret_free(result.output)
    _assert_secret_free(test.output)
    _assert_secret_free(_ledger_bytes(project))
    status = run("status", ISSUE).output
    assert re.search(r"pending\s+2", status)
    _assert_secret_free(status)
    assert inbox.recipients() == {}


def test_a_refused_login_leaves_each_row_as_it_was(project, run, inbox, monkeypatch):
    controller = start(Recorder(inbox), auth=True)
    _serve(monkeypatch, controller)
    try:
        path = write_list(project, ["email", "a@example.com", "b@example.com"])
        assert run("send", ISSUE, "--to", path, "--yes", "--limit", "1").exit_code == 0
        db = sqlite3.connect(project / "state" / "ledger.sqlite3")
        with db:  # as an earlier run stopped while b's server was busy would leave it
            db.execute(
                "UPDATE deliveries SET reply = '451 4.3.0 try again later', attempts = 2 WHERE email = 'b@example.com'"
            )
        monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "wrong-horse-battery")
        result = run("send", ISSUE, "--to", path, "--yes")
    finally:
        controller.stop()
    assert result.exit_code == 1 and "refused the login" in result.output
    rows = db.execute("SELECT email, state, reply, attempts FROM deliveries ORDER BY id").fetchall()
    db.close()
    assert rows[1] == ("b@example.com", "pending", "451 4.3.0 try again later", 2)
    assert rows[0][:2] == ("a@example.com", "sent")


def test_a_later_reply_that_repeats_the_login_is_redacted_before_it_is_stored(project, run, inbox, monkeypatch):
    def fault(rcpt: str, attempt: int) -> str | None:
        if rcpt == "b@example.com" and attempt > 0:
            return f"550 5.7.1 {USER} (AUTH PLAIN {PLAIN_BLOB}, password {PASSWORD}) may not send to b"
        return None

    controller = start(Recorder(inbox, fault), auth=True)
    _serve(monkeypatch, controller)
    try:
        result = run("send", ISSUE, "--to", write_list(project, ["email", "a@example.com", "b@example.com"]), "--yes")
    finally:
        controller.stop()
    assert inbox.recipients() == {"a@example.com": 1}
    _assert_secret_free(result.output)
    _assert_secret_free(_ledger_bytes(project))
    status = run("status", ISSUE).output
    _assert_secret_free(status)
    assert "550 5.7.1 advisor" in status and "may not send to b" in status


@pytest.mark.parametrize("password", ["s3cret-pass", "ends-with==", ".*[a]+", "é-non-ascii", "x"])
def test_redact_hides_each_form_the_password_travels_in(password):
    from newsletter.smtp import redact

    settings = Settings("127.0.0.1", 25, "none", USER, password)
    blob = _b64(b"\0" + USER.encode() + b"\0" + password.encode())
    alone = _b64(password.encode())
    # A server may repeat the clear password in another letter case; a short one is hidden as written
    # only, so that it does not take every matching letter of every reply with it.
    clear = password.upper() if len(password) >= 8 else password
    reply = f"535 no: AUTH PLAIN {blob} / {blob.rstrip('=')} / {alone} / {alone.rstrip('=')} / {clear}"
    redacted = redact(reply, settings)
    assert redacted.startswith("535 no: AUTH PLAIN ***") and redacted.count("***") == 5
    for form in (password, blob, alone, blob.rstrip("="), alone.rstrip("="), "="):
        assert form.lower() not in redacted.lower().replace("535 no: auth plain", ""), form


# -- 10. terminal escapes in a server's reply --------------------------------------------------


@pytest.mark.parametrize(
    "text, shown",
    [
        ("550 no such user", "550 no such user"),
        ("Zoë Ñúñez 日本 🙂", "Zoë Ñúñez 日本 🙂"),
        ("\x1b[2J\x1b]0;pwned\x07", "\\x1b[2J\\x1b]0;pwned\\x07"),
        ("a\0b\x7fc\x9bd", "a\\x00b\\x7fc\\x9bd"),
        ("line\r\nnext\tcol\u2028", "line\\r\\nnext\\tcol\\u2028"),
        ("invoice\u202efdp.exe \u2066x\u2069", "invoice\\u202efdp.exe \\u2066x\\u2069"),
        ("\U000e0041 tag", "\\U000e0041 tag"),
    ],
)
def test_printable_escapes_what_a_terminal_would_obey(text, shown):
    from newsletter.text import printable

    assert printable(text) == shown
    assert printable(shown) == shown  # escaping twice changes nothing


HOSTILE = b"550 5.1.1 \x1b]0;pwned\x07\x1b[2J gone \xe2\x80\xae\xc2\x9b"  # OSC, clear screen, RLO, C1 CSI


def _no_control(text: str) -> None:
    assert not [c for c in text if not c.isprintable() and c != "\n"], repr(text)


def test_status_shows_replies_and_addresses_with_control_characters_escaped(project, run, inbox, monkeypatch):
    controller = start(Recorder(inbox, lambda rcpt, n: HOSTILE if rcpt == "b@example.com" and n > 0 else None))
    _serve(monkeypatch, controller)
    monkeypatch.delenv("NEWSLETTER_SMTP_USERNAME")
    try:
        rows = ["email", "a@example.com", "b@example.com", "\x1b[31mevil\u202e@example.com"]
        run("send", ISSUE, "--to", write_list(project, rows), "--yes")
    finally:
        controller.stop()
    status = run("status", ISSUE).output
    _no_control(status)
    assert "b@example.com  (list line 3, 1 attempts): 550 5.1.1 \\x1b]0;pwned\\x07\\x1b[2J gone \\u202e\\x9b" in status
    assert "\\x1b[31mevil\\u202e@example.com" in status


def test_a_stop_reason_and_a_test_error_show_control_characters_escaped(project, run, inbox, monkeypatch):
    refuse = echoing_authenticator(lambda login, password: "\x1b]0;pwned\x07\x1b[2J no")
    controller = start(Recorder(inbox), auth=True, authenticate=refuse)
    _serve(monkeypatch, controller)
    try:
        result = run("send", ISSUE, "--to", write_list(project, ["email", "a@example.com"]), "--yes")
        test = run("send", ISSUE, "--test", "me@example.org")
    finally:
        controller.stop()
    for output in (result.output, test.output):
        _no_control(output)
        assert "535 5.7.8 \\x1b]0;pwned\\x07\\x1b[2J no" in output


def test_a_stop_after_failures_in_a_row_shows_the_last_reply_escaped(project, run, inbox, monkeypatch):
    controller = start(Recorder(inbox, lambda rcpt, n: HOSTILE if n > 0 else None))
    _serve(monkeypatch, controller)
    monkeypatch.delenv("NEWSLETTER_SMTP_USERNAME")
    try:
        rows = ["email"] + [f"r{i}@example.com" for i in range(25)]
        result = run("send", ISSUE, "--to", write_list(project, rows), "--yes", "--connections", "1")
    finally:
        controller.stop()
    assert result.exit_code == 1
    _no_control(result.output)
    assert "20 messages in a row failed; the last: 550 5.1.1 \\x1b]0;pwned\\x07\\x1b[2J gone" in result.output


def test_a_test_send_refused_shows_the_reply_escaped(project, run, inbox, monkeypatch):
    controller = start(Recorder(inbox, lambda rcpt, n: HOSTILE if n > 0 else None))
    _serve(monkeypatch, controller)
    monkeypatch.delenv("NEWSLETTER_SMTP_USERNAME")
    try:
        result = run("send", ISSUE, "--test", "me@example.org")
    finally:
        controller.stop()
    assert result.exit_code == 1
    _no_control(result.output)
    assert "550 5.1.1 \\x1b]0;pwned\\x07\\x1b[2J gone \\u202e\\x9b" in result.output


# -- 16. the exit code says whether everyone got it --------------------------------------------


def test_send_exits_1_when_a_recipient_of_this_run_failed_or_is_uncertain(project, run, inbox, monkeypatch):
    def fault(rcpt: str, attempt: int) -> str | None:
        return {"b@example.com": "550 5.1.1 no such user", "c@example.com": "lost"}.get(rcpt) if attempt > 0 else None

    controller = start(Recorder(inbox, fault))
    _serve(monkeypatch, controller)
    monkeypatch.delenv("NEWSLETTER_SMTP_USERNAME")
    try:
        path = write_list(project, ["email", "a@example.com", "b@example.com", "c@example.com"])
        result = run("send", ISSUE, "--to", path, "--yes")
        again = run("send", ISSUE, "--to", path, "--yes")
    finally:
        controller.stop()
    assert result.exit_code == 1, result.output
    assert "sent 1, failed 1, uncertain 1" in result.output
    assert result.output.splitlines()[-1] == f"error: 1 failed, 1 uncertain: see newsletter status {ISSUE}"
    # Nothing left to send: the failures belong to the earlier run.
    assert again.exit_code == 0 and "nothing to send" in again.output


def test_send_exits_1_when_nothing_was_delivered(project, run, inbox, monkeypatch):
    controller = start(Recorder(inbox, lambda rcpt, n: "554 5.7.1 relay access denied" if n > 0 else None))
    _serve(monkeypatch, controller)
    monkeypatch.delenv("NEWSLETTER_SMTP_USERNAME")
    try:
        result = run("send", ISSUE, "--to", write_list(project, ["email", "a@example.com", "b@example.com"]), "--yes")
    finally:
        controller.stop()
    assert result.exit_code == 1
    assert "sent 0, failed 2" in result.output
    assert result.output.splitlines()[-1] == f"error: 2 failed: see newsletter status {ISSUE}"


# -- 17. settings that cannot work, and a server that says no for good ----------------------


@pytest.mark.parametrize("port", ["99999", "65536", "0", "-25"])
def test_a_port_out_of_range_is_refused_naming_the_variable(project, run, monkeypatch, port):
    monkeypatch.setenv("NEWSLETTER_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("NEWSLETTER_SMTP_SECURITY", "none")
    monkeypatch.setenv("NEWSLETTER_SMTP_PORT", port)
    result = run("send", ISSUE, "--test", "me@example.org")
    assert result.exit_code == 1
    assert result.output == f"error: NEWSLETTER_SMTP_PORT must be a port number from 1 to 65535, not {port!r}\n"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def _not_pem(kind: str, folder: Path, ca: trustme.CA) -> Path:
    path = folder / f"ca-{kind}.pem"
    if kind == "folder":
        path.mkdir()
    elif kind == "der":
        path.write_bytes(ssl.PEM_cert_to_DER_cert(ca.cert_pem.bytes().decode()))
    elif kind == "key":  # PEM, but a private key, not a certificate
        path.write_bytes(ca.private_key_pem.bytes())
    else:
        path.write_bytes({"empty": b"", "garbage": b"\x00\xffnot a certificate\n" * 10}[kind])
    return path


@pytest.mark.parametrize("kind", ["garbage", "empty", "folder", "der", "key"])
def test_a_ca_file_that_is_not_a_pem_certificate_is_refused_before_anything_else(
    project, tmp_path, monkeypatch, ca, kind
):
    listener = Scripted(b"220 ready\r\n", {b"EHLO": b"250-localhost\r\n250 STARTTLS\r\n", b"STARTTLS": b"220 go\r\n"})
    monkeypatch.setenv("NEWSLETTER_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("NEWSLETTER_SMTP_PORT", str(listener.port))
    monkeypatch.setenv("NEWSLETTER_SMTP_SECURITY", "starttls")
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    bad = _not_pem(kind, tmp_path, ca)
    rows = write_list(project, ["email", "a@example.com"])
    try:
        # Without --yes: the answer "y" would start the send if the prompt came first.
        sent = CliRunner().invoke(cli, ["send", ISSUE, "--to", str(rows), "--ca-file", str(bad)], input="y\n")
        test = CliRunner().invoke(cli, ["send", ISSUE, "--test", "me@example.org", "--ca-file", str(bad)])
    finally:
        listener.stop()
    for result in (sent, test):
        assert result.exit_code == 1
        assert f"error: --ca-file {bad}: not a PEM certificate (" in result.output
        assert ("it looks like DER" in result.output) == (kind == "der")
        assert "Send now?" not in result.output and "cannot reach" not in result.output
    assert listener.connections == 0


def test_a_ca_file_from_the_environment_is_checked_too(project, run, tmp_path, monkeypatch, ca):
    monkeypatch.setenv("NEWSLETTER_SMTP_CA_FILE", str(_not_pem("garbage", tmp_path, ca)))
    monkeypatch.setenv("NEWSLETTER_SMTP_HOST", "127.0.0.1")
    result = run("send", ISSUE, "--test", "me@example.org")
    assert result.exit_code == 1
    assert "error: NEWSLETTER_SMTP_CA_FILE " in result.output and "not a PEM certificate" in result.output


GREETING_554 = {"greeting": b"554 5.7.1 go away\r\n"}
EHLO_554 = {
    "greeting": b"220 ready\r\n",
    "answers": {b"EHLO": b"554 5.7.1 not you\r\n", b"HELO": b"554 5.7.1 not you\r\n", b"MAIL": b"503 hello first\r\n"},
}
BUSY_421 = {"greeting": b"421 4.3.2 too busy, try later\r\n"}


@pytest.mark.parametrize(
    "script, connections, said",
    [(GREETING_554, 1, "554 5.7.1 go away"), (EHLO_554, 1, "554 5.7.1 not you"), (BUSY_421, 4, "421 4.3.2 too busy")],
    ids=["554-greeting", "554-ehlo-and-helo", "421-greeting-is-retried"],
)
def test_a_permanent_refusal_to_connect_stops_at_once(project, script, connections, said):
    server = Scripted(script["greeting"], script.get("answers"))
    options = Options(connections=1, retry_delay=0.01, max_attempts=4)
    people = write_list(project, ["email", "a@example.com", "b@example.com"])
    try:
        with plan_send(project / ISSUE, people) as plan:
            outcome = deliver(plan, Settings("127.0.0.1", server.port, "none", timeout=5), options, key="s")
            counts = plan.ledger.counts(SEED)
    finally:
        server.stop()
    assert server.connections == connections
    assert outcome.stopped and said in outcome.stopped
    assert counts["pending"] == 2 and counts["failed"] == 0


def test_a_554_greeting_stops_the_command_line_send_at_once(project, run, monkeypatch):
    server = Scripted(b"554 5.7.1 go away\r\n")
    monkeypatch.setenv("NEWSLETTER_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("NEWSLETTER_SMTP_PORT", str(server.port))
    monkeypatch.setenv("NEWSLETTER_SMTP_SECURITY", "none")
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    try:
        result = run("send", ISSUE, "--to", write_list(project, ["email", "a@example.com"]), "--yes")
    finally:
        server.stop()
    assert server.connections == 1
    assert result.exit_code == 1
    assert "554 5.7.1 go away" in result.output and "resume with: newsletter send" in result.output


def test_redact_leaves_the_rest_of_a_reply_readable():
    from newsletter.smtp import redact

    settings = Settings("127.0.0.1", 25, "none", USER, "Mail2024")
    # base64 is case-sensitive: only the exact form is the password's.
    assert (
        redact("550 5.1.1 TWFpbDIwMjQ= twfpbdiwmjq= Mail2024 mail2024", settings)
        == "550 5.1.1 *** twfpbdiwmjq= *** ***"
    )
