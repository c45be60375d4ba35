"""STARTTLS, implicit TLS and AUTH against real servers with a test certificate authority."""

from __future__ import annotations

import ssl

import pytest
import trustme

from .smtp_server import PASSWORD, USER, Recorder, start
from .support import SECRET, SEED, write_list

ISSUE = f"issues/{SEED}.yaml"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_tls(ca) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    return context


@pytest.fixture
def ca_file(ca, tmp_path):
    path = tmp_path / "test-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


def _serve(monkeypatch, inbox, security: str, **kwargs):
    controller = start(Recorder(inbox), auth=True, **kwargs)
    monkeypatch.setenv("NEWSLETTER_SMTP_HOST", "localhost")
    monkeypatch.setenv("NEWSLETTER_SMTP_PORT", str(controller.port))
    monkeypatch.setenv("NEWSLETTER_SMTP_SECURITY", security)
    monkeypatch.setenv("NEWSLETTER_SMTP_USERNAME", USER)
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    return controller


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_tls_with_auth_delivers_when_the_ca_is_trusted(project, run, inbox, monkeypatch, server_tls, ca_file, security):
    tls = {"starttls": server_tls} if security == "starttls" else {"implicit_tls": server_tls}
    controller = _serve(monkeypatch, inbox, security, **tls)
    try:
        rows = write_list(project, ["email", "a@example.com", "b@example.com"])
        result = run("send", ISSUE, "--to", rows, "--yes", "--ca-file", ca_file)
        assert result.exit_code == 0, result.output
        assert inbox.recipients() == {"a@example.com": 1, "b@example.com": 1}
        assert PASSWORD not in result.output
    finally:
        controller.stop()


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_an_untrusted_certificate_is_refused(project, run, inbox, monkeypatch, server_tls, security):
    tls = {"starttls": server_tls} if security == "starttls" else {"implicit_tls": server_tls}
    controller = _serve(monkeypatch, inbox, security, **tls)
    try:
        rows = write_list(project, ["email", "a@example.com"])
        result = run("send", ISSUE, "--to", rows, "--yes")  # no --ca-file: the test CA is not trusted
        assert result.exit_code == 1
        assert "certificate is not trusted" in result.output
        assert "Traceback" not in result.output
        assert inbox.recipients() == {}
        status = run("status", ISSUE).output
        assert "pending     1" in status or "pending  1" in status.replace("   ", " ")
    finally:
        controller.stop()


def test_a_wrong_password_stops_the_send_without_showing_it(project, run, inbox, monkeypatch, server_tls, ca_file):
    controller = _serve(monkeypatch, inbox, "starttls", starttls=server_tls)
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "wrong-horse-battery")
    try:
        rows = write_list(project, ["email", "a@example.com", "b@example.com"])
        result = run("send", ISSUE, "--to", rows, "--yes", "--ca-file", ca_file)
        assert result.exit_code == 1
        assert "refused the login: 535" in result.output
        assert "resume with: newsletter send" in result.output
        assert "wrong-horse-battery" not in result.output
        assert inbox.recipients() == {}
    finally:
        controller.stop()


def test_test_send_over_starttls(project, run, inbox, monkeypatch, server_tls, ca_file):
    controller = _serve(monkeypatch, inbox, "starttls", starttls=server_tls)
    try:
        result = run("send", ISSUE, "--test", "me@example.org", "--ca-file", ca_file)
        assert result.exit_code == 0, result.output
        assert inbox.recipients() == {"me@example.org": 1}
    finally:
        controller.stop()


def test_auth_without_tls_is_allowed_to_this_machine(project, run, inbox, monkeypatch):
    controller = _serve(monkeypatch, inbox, "none")
    monkeypatch.setenv("NEWSLETTER_SMTP_HOST", "127.0.0.1")
    try:
        result = run("send", ISSUE, "--to", write_list(project, ["email", "a@example.com"]), "--yes")
        assert result.exit_code == 0, result.output
        assert inbox.recipients() == {"a@example.com": 1}
    finally:
        controller.stop()


def test_plain_smtp_is_refused_to_another_machine(project, run, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_SMTP_HOST", "smtp.example.org")
    monkeypatch.setenv("NEWSLETTER_SMTP_SECURITY", "none")
    result = run("send", ISSUE, "--test", "me@example.org")
    assert result.exit_code == 1
    assert "security: none" in result.output and "only to this machine" in result.output


def test_settings_never_show_the_password():
    from newsletter.smtp import Settings

    settings = Settings("localhost", 25, "none", "user", "hunter2")
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings)


def test_a_non_ascii_password_is_a_message_not_a_hang(project, run, inbox, monkeypatch):
    controller = _serve(monkeypatch, inbox, "none")
    monkeypatch.setenv("NEWSLETTER_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "pässword")
    try:
        result = run("send", ISSUE, "--to", write_list(project, ["email", "a@example.com"]), "--yes")
        assert result.exit_code == 1
        assert "must be ASCII" in result.output and "pässword" not in result.output
        assert inbox.recipients() == {}
    finally:
        controller.stop()
