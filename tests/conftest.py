"""Shared fixtures: every test works on a real project copied into tmp_path.

Plain helpers and constants are in support.py."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from newsletter.__main__ import cli

from .support import REPO, SECRET, SEED


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of this repository's project (site file, templates, seed issue), as the current folder."""
    shutil.copy(REPO / "newsletter.yaml", tmp_path / "newsletter.yaml")
    shutil.copytree(REPO / "templates", tmp_path / "templates")
    (tmp_path / "issues").mkdir()
    shutil.copy(REPO / "issues" / f"{SEED}.yaml", tmp_path / "issues" / f"{SEED}.yaml")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / ".cache"))
    return tmp_path


@pytest.fixture
def run():
    """Run the CLI in-process, as a user would type it."""

    def invoke(*args: str):
        return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture
def inbox():
    from .smtp_server import Inbox

    return Inbox()


@pytest.fixture
def smtp_server(inbox, project, monkeypatch):
    """A plain SMTP server on 127.0.0.1 that the project sends to."""
    from .smtp_server import Recorder, start

    handler = Recorder(inbox)
    controller = start(handler)
    _send_to(monkeypatch, controller.port)
    yield handler
    controller.stop()


@pytest.fixture
def raw_server(project, monkeypatch):
    """A bare SMTP server on 127.0.0.1 that keeps each message's DATA exactly as sent, which the project sends to."""
    from .raw_smtp import RawSMTP

    with RawSMTP() as server:
        _send_to(monkeypatch, server.port)
        yield server


@pytest.fixture
def link_server():
    """An HTTP server on 127.0.0.1 with live, dead, moved, looping, HEAD-refusing, slow and heavy addresses
    (tests/link_server.py)."""
    from .link_server import running

    with running() as server:
        yield server


@pytest.fixture
def postfix(tmp_path):
    """A real Postfix on 127.0.0.1 with a throwaway configuration (tests/postfix.py); its log ends in tmp_path."""
    from .postfix import running

    with running(keep_log=tmp_path / "postfix.log") as server:
        yield server


@pytest.fixture
def postfix_relay(postfix, project, monkeypatch):
    """`postfix`, which the project sends through."""
    _send_to(monkeypatch, postfix.port)
    return postfix


@pytest.fixture(scope="session")
def spamassassin(tmp_path_factory):
    """Debian's SpamAssassin, offline, with a throwaway configuration (tests/spamassassin.py)."""
    from .spamassassin import SpamAssassin

    return SpamAssassin(tmp_path_factory.mktemp("spamassassin"))


def _send_to(monkeypatch: pytest.MonkeyPatch, port: int) -> None:
    """The project sends in plain SMTP to 127.0.0.1:`port`, with the test key."""
    monkeypatch.setenv("NEWSLETTER_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("NEWSLETTER_SMTP_PORT", str(port))
    monkeypatch.setenv("NEWSLETTER_SMTP_SECURITY", "none")
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)


@pytest.fixture(scope="session")
def dovecot():
    """A real Dovecot (IMAPS, its CA in `ca_file`) on 127.0.0.1 for the whole session: each test takes a fresh
    account with `add_user()`, so one start serves them all."""
    from .dovecot import Dovecot

    with Dovecot.running() as server:
        yield server
