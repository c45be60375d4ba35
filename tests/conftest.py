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
    monkeypatch.setenv("NEWSLETTER_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("NEWSLETTER_SMTP_PORT", str(controller.port))
    monkeypatch.setenv("NEWSLETTER_SMTP_SECURITY", "none")
    monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
    yield handler
    controller.stop()


@pytest.fixture
def raw_server(project, monkeypatch):
    """A bare SMTP server on 127.0.0.1 that keeps each message's DATA exactly as sent, which the project sends to."""
    from .raw_smtp import RawSMTP
    from .support import SECRET

    with RawSMTP() as server:
        monkeypatch.setenv("NEWSLETTER_SMTP_HOST", "127.0.0.1")
        monkeypatch.setenv("NEWSLETTER_SMTP_PORT", str(server.port))
        monkeypatch.setenv("NEWSLETTER_SMTP_SECURITY", "none")
        monkeypatch.setenv("NEWSLETTER_SECRET", SECRET)
        yield server


@pytest.fixture(scope="session")
def dovecot():
    """A real Dovecot (IMAPS, its CA in `ca_file`) on 127.0.0.1 for the whole session: each test takes a fresh
    account with `add_user()`, so one start serves them all."""
    from .dovecot import Dovecot

    with Dovecot.running() as server:
        yield server
