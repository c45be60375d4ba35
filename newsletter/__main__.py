"""The command line. Only option parsing and printing live here; the work is
done by plain functions in `newsletter.commands` and the core modules."""

from __future__ import annotations

import time
from pathlib import Path

import click

from . import __version__
from .errors import NewsletterError, Problem

ISSUE = click.Path(path_type=Path, dir_okay=False)


@click.group()
@click.version_option(__version__, prog_name="newsletter")
def cli() -> None:
    """Write, check, preview and send the campaigns newsletter."""


def _warn(problems: list[Problem]) -> None:
    from .terminal import printable

    for problem in problems:
        click.echo(f"warning: {printable(str(problem))}", err=True)


@cli.command()
@click.argument("issue", type=ISSUE)
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
def check(issue: Path, strict: bool) -> None:
    """Validate ISSUE and report every problem; exit 1 on errors."""
    from .pipeline import check as check_issue

    checked = check_issue(issue)
    if strict and checked.warnings:
        raise NewsletterError(checked.warnings)
    _warn(checked.warnings)
    n = len(checked.warnings)
    click.echo(
        f"{issue}: valid, {len(checked.issue.items)} items, HTML {checked.html_bytes / 1024:.1f} KB"
        + (f", {n} warning{'s' if n != 1 else ''}" if n else "")
    )


@cli.command()
@click.argument("issue", type=ISSUE)
@click.option(
    "--out", type=click.Path(path_type=Path, file_okay=False), help="Folder to write to [default: outbox/<slug>]."
)
def build(issue: Path, out: Path | None) -> None:
    """Write ISSUE as email.html, email.txt and email.eml."""
    from .commands.build import build as build_issue
    from .unsubscribe import secret_warnings

    _warn(secret_warnings())
    checked, paths = build_issue(issue, out)
    if checked.warnings:
        n = len(checked.warnings)
        click.echo(f"{n} warning{'s' if n != 1 else ''}: see newsletter check {issue}", err=True)
    for path in paths:
        click.echo(f"{_shown(path)}  {path.stat().st_size / 1024:.1f} KB")


@cli.command()
@click.argument("slug")
def new(slug: str) -> None:
    """Write issues/SLUG.yaml, a scaffold to fill in."""
    from .commands.new import new_issue
    from .project import find_root

    created = new_issue(slug, find_root(Path.cwd()) or Path.cwd())
    click.echo(f"wrote {_shown(created.path)}; check it with: newsletter check {_shown(created.path)}")
    for path in created.schemas:
        click.echo(f"wrote {_shown(path)}, for editors to check the issue as you type")
    _warn(created.warnings)


@cli.command()
@click.option("--site", "kind", flag_value="site", help="The site file's schema instead of the issue's.")
@click.option("--issue", "kind", flag_value="issue", default=True, hidden=True)
@click.option("--write", is_flag=True, help="Write both into the project's schema/ folder, where editors look.")
def schema(kind: str, write: bool) -> None:
    """Print the JSON Schema of the issue file (or, with --site, of newsletter.yaml)."""
    from .commands.schema import schema as make_schema
    from .commands.schema import write_schemas
    from .project import find_root

    if not write:
        click.echo(make_schema(kind), nl=False)
        return
    if kind == "site":
        raise click.UsageError("--write writes both schemas; leave out --site")
    for path in write_schemas(find_root(Path.cwd()) or Path.cwd()):
        click.echo(f"wrote {_shown(path)}")


@cli.command()
@click.argument("issue", type=ISSUE)
@click.option(
    "--to", "to", type=click.Path(path_type=Path, dir_okay=False), help="Subscriber list: CSV with an email column."
)
@click.option("--dry-run", is_flag=True, help="Write every message to outbox/<slug>/dry-run/; connect to nothing.")
@click.option("--test", "test_address", metavar="ADDRESS", help="Send one [TEST] message to ADDRESS; record nothing.")
@click.option("--limit", type=click.IntRange(min=1), help="Send at most this many messages in this run.")
@click.option(
    "--connections", type=click.IntRange(1, 50), default=4, show_default=True, help="Parallel SMTP connections."
)
@click.option("--rate", type=click.FloatRange(min=0, min_open=True), help="At most this many messages per second.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--resend-uncertain", is_flag=True, help="Send again to recipients a crashed run left uncertain.")
@click.option("--retry-failed", is_flag=True, help="Try again the recipients that failed before.")
@click.option(
    "--suppressed",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Addresses never to mail [default: suppressions.csv in the project, if any].",
)
# Not dir_okay=False: smtp.check_ca_file says what is wrong with any path, the same as for NEWSLETTER_SMTP_CA_FILE.
@click.option("--ca-file", type=click.Path(path_type=Path), help="Also trust this CA's certificates (a PEM file).")
@click.option("--moved", is_flag=True, help="The issue file was renamed or moved since its send began: continue it.")
@click.option(
    "--changed-content", is_flag=True, help="The issue changed since its send began: send the rest the new version."
)
def send(
    issue: Path,
    to: Path | None,
    dry_run: bool,
    test_address: str | None,
    limit: int | None,
    connections: int,
    rate: float | None,
    yes: bool,
    resend_uncertain: bool,
    retry_failed: bool,
    suppressed: Path | None,
    ca_file: Path | None,
    moved: bool,
    changed_content: bool,
) -> None:
    """Send ISSUE to the subscribers in --to LIST.csv (or --test to yourself)."""
    from .commands import send as sending
    from .sending import Options
    from .unsubscribe import secret_warnings

    if test_address:
        settings = _smtp_settings(issue, ca_file)
        _warn(sending.send_test(issue, test_address, settings))
        click.echo(f"sent a [TEST] message to {test_address} through {settings.address}")
        return
    if to is None:
        raise click.UsageError("give the subscriber list with --to LIST.csv (or --test ADDRESS)")
    if dry_run:
        _warn(secret_warnings())
        result = sending.dry_run(issue, to, limit=limit, suppressed=suppressed)
        click.echo(f"dry run: wrote {result.written} messages to {_shown(result.folder)}/; sent nothing")
        for state, n in sorted(result.skipped.items()):
            click.echo(f"  skipped {n} {state}")
        return
    plan = sending.plan_send(
        issue,
        to,
        suppressed=suppressed,
        resend_uncertain=resend_uncertain,
        retry_failed=retry_failed,
        moved=moved,
        changed_content=changed_content,
    )
    with plan.ledger:
        _send_planned(issue, to, plan, limit, Options(connections=connections, rate=rate), yes, ca_file, suppressed)


def _send_planned(
    issue: Path, to: Path, plan, limit: int | None, options, yes: bool, ca_file: Path | None, suppressed: Path | None
) -> None:
    from .commands.send import execute, require_secret
    from .terminal import printable

    _warn(list(plan.notices))
    skipped = ", ".join(f"{n} {state}" for state, n in plan.skipped.items() if n) or "none"
    if plan.uncertain and not plan.resend_uncertain:
        click.echo(
            f"warning: {len(plan.uncertain)} uncertain recipient(s): an earlier run stopped while sending to them, "
            "so they may or may not have the message. They are not sent again unless you add --resend-uncertain: "
            + ", ".join(map(printable, plan.uncertain[:10]))
            + (" ..." if len(plan.uncertain) > 10 else ""),
            err=True,
        )
    to_send = min(plan.to_send, limit) if limit else plan.to_send
    if to_send == 0:
        click.echo(
            f"nothing to send: {plan.already_sent} already sent, {plan.failed_before} failed, skipped: {skipped}"
        )
        return
    secret = require_secret()  # before asking anything: no point confirming a send that cannot start
    settings = _smtp_settings(issue, ca_file)
    subject = plan.checked.issue.subject_line
    click.echo(f"Issue:      {subject}")
    click.echo(f"Recipients: {to_send} to send now ({plan.already_sent} already sent; skipped: {skipped})")
    click.echo(f"Server:     {settings.address}" + (f" as {settings.username}" if settings.username else ""))
    if plan.checked.warnings:
        click.echo(f"Warnings:   {len(plan.checked.warnings)} (see newsletter check {issue})")
    if not yes:
        click.confirm("Send now?", abort=True)
    done, started = 0, time.monotonic()

    def rate(_: object) -> str:
        elapsed = time.monotonic() - started
        return f"{done / elapsed:.0f} msg/s" if done and elapsed > 0 else ""

    with click.progressbar(length=to_send, label="Sending", show_pos=True, show_eta=True, item_show_func=rate) as bar:

        def progress(n: int) -> None:
            nonlocal done
            done += n
            bar.update(n)

        outcome = execute(plan, settings, options, limit=limit, secret=secret, on_progress=progress)
    counts = plan.ledger.counts(plan.identity, listed_only=True)
    click.echo(
        f"sent {outcome.sent}, failed {outcome.failed}"
        + (f", uncertain {outcome.uncertain}" if outcome.uncertain else "")
        + f" in {outcome.elapsed:.1f} s; "
        f"in all: {counts['sent']} sent, {counts['failed']} failed, {counts['pending']} still to send, "
        f"{counts['sending']} uncertain, skipped: {skipped}"
    )
    resume = _resume_command(issue, to, suppressed)
    if outcome.interrupted:
        raise NewsletterError(f"interrupted after the messages in flight were finished; resume with: {resume}")
    if outcome.stopped:
        raise NewsletterError(
            f"stopped: {printable(outcome.stopped)}. Nothing more was sent; fix the problem, then resume with: {resume}"
        )
    if outcome.failed or outcome.uncertain:  # not everyone of this run got it: say so, in the exit code too
        missed = f"{outcome.failed} failed" + (f", {outcome.uncertain} uncertain" if outcome.uncertain else "")
        raise NewsletterError(f"{missed}: see newsletter status {issue}")
    if counts["failed"]:
        click.echo(f"see the failures with: newsletter status {issue}")


def _resume_command(issue: Path, to: Path, suppressed: Path | None) -> str:
    """The command that continues this send, quoted for a shell, with the list of who left."""
    import shlex

    words = ["newsletter", "send", str(issue), "--to", str(to)]
    if suppressed is not None:
        words += ["--suppressed", str(suppressed)]
    return shlex.join(words)


def _smtp_settings(issue: Path, ca_file: Path | None):
    from .project import open_project
    from .smtp import settings_from, with_password

    settings = settings_from(open_project(issue).site.smtp, ca_file)
    if settings.username and not settings.password:
        if not click.get_text_stream("stdin").isatty():
            raise NewsletterError(
                f"set NEWSLETTER_SMTP_PASSWORD: the password for {settings.username} on {settings.host}"
            )
        settings = with_password(settings, click.prompt(f"SMTP password for {settings.username}", hide_input=True))
    return settings


@cli.command()
@click.argument("issue", type=ISSUE)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port; a free one if taken."
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to serve on.")
@click.option("--open/--no-open", "open_browser", default=True, help="Open the page in a browser.")
@click.option("--as", "as_email", metavar="EMAIL", help="Show the message as this subscriber gets it (needs --to).")
@click.option("--to", "to", type=click.Path(path_type=Path, dir_okay=False), help="The list to find --as in.")
def preview(issue: Path, port: int, host: str, open_browser: bool, as_email: str | None, to: Path | None) -> None:
    """Serve a live-reloading preview of ISSUE on this machine."""
    import webbrowser

    from .preview import Preview, Server
    from .smtp import is_loopback
    from .unsubscribe import secret_warnings

    if as_email and to is None:
        raise click.UsageError("--as needs --to LIST.csv")
    server = Server(Preview(issue, as_email, to), host, port)
    server.start()
    # Ctrl-C may come at any moment once the server runs, even before the
    # first line is printed: it always stops the server and exits cleanly.
    try:
        if port and server.port != port:
            click.echo(f"port {port} is in use; using {server.port} instead")
        if not is_loopback(host):
            click.echo(f"warning: serving on {host}: anyone who can reach this machine can read the preview", err=True)
        _warn(secret_warnings())
        click.echo(f"Previewing {issue} at {server.url}  (Ctrl-C to stop)")
        for problem in server.preview.snapshot.errors:
            click.echo(f"error: {problem}", err=True)
        if open_browser:
            webbrowser.open(server.url)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        click.echo("stopping")
    finally:
        server.stop()


@cli.command()
@click.argument("issue", type=ISSUE)
def status(issue: Path) -> None:
    """What the send ledger says of ISSUE: counts per state, failures, uncertain recipients."""
    from .commands.send import status as ledger_status
    from .terminal import printable

    found = ledger_status(issue)
    _warn(found.notices)
    if found.recorded_as:
        click.echo(f"(the ledger's record of issue '{found.recorded_as.issue}', sent from {found.recorded_as.path})")
    for state, n in found.counts.items():
        click.echo(f"{state:>10}  {n}")
    if len(found.versions) > 1 or (found.versions and found.versions[0][0] != found.current):
        click.echo("\nversions sent (the issue changed during its send):")
        for content, n, first in found.versions:
            when = time.strftime("%Y-%m-%d %H:%M", time.localtime(first))
            current = ", the current one" if content == found.current else ""
            click.echo(f"  {content}  {n} recipients, from {when}{current}")
    for title, rows in (
        ("failed", found.failures),
        ("uncertain (may or may not have it)", found.uncertain),
        ("invalid", found.invalid),
    ):
        if rows:
            click.echo(f"\n{title}:")
            for email, reply, attempts, line in rows:
                shown = printable(email) if email else "(empty)"
                click.echo(f"  {shown}  (list line {line}, {attempts} attempts): {printable(reply)}")


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def main() -> None:
    cli(prog_name="newsletter")


if __name__ == "__main__":
    main()
