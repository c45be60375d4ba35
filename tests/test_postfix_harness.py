"""The Postfix that tests start (tests/postfix.py) is their own: two at once, each stopped, the system's untouched."""

from __future__ import annotations

import smtplib
from pathlib import Path

from .postfix import exited, running

SYSTEM = Path("/etc/postfix")


def _system_config() -> dict[str, tuple[bytes, int]]:
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in SYSTEM.glob("*.cf")}


def test_two_run_side_by_side_and_each_stops_without_a_trace(postfix):
    before = _system_config()
    with running() as second:
        assert second.port != postfix.port and second.root != postfix.root
        for n, server in enumerate((postfix, second)):
            server.mailbox("ann@example.com")
            with smtplib.SMTP(server.host, server.port, timeout=10) as smtp:
                smtp.sendmail("sender@example.org", ["ann@example.com"], f"Subject: to number {n}\r\n\r\nHello.\r\n")
        assert [b"Subject: to number 0" in m for m in postfix.wait_for("ann@example.com", 1)] == [True]
        assert [b"Subject: to number 1" in m for m in second.wait_for("ann@example.com", 1)] == [True]
        root, pid = second.root, second.master_pid
        assert pid is not None and not exited(pid)
    assert not root.exists()
    assert exited(pid)
    assert postfix.command("status").returncode == 0  # the first one runs on
    assert _system_config() == before
