"""`newsletter status`: what the send ledger says of an issue."""

from __future__ import annotations

from pathlib import Path

from ..console import Console, warn
from ..report import LedgerReport, ledger_report


def status_command(issue: Path, *, console: Console) -> LedgerReport:
    """Show the counts per state, the versions sent, and who failed, is uncertain or invalid."""
    report = ledger_report(issue)
    warn(console, report.notices)
    for line in report.lines():
        console.say(line)
    return report
