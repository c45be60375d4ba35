"""The command line. Only option parsing, prompting and printing live here: each command
hands off to one function of its module in `newsletter.commands` (`build.build_command`,
...), which decides what is done and said, and says it through a `Console`, here Click's."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from . import __version__

ISSUE = click.Path(path_type=Path, dir_okay=False)


class ClickConsole:
    """The `console.Console` of the command line: Click's output, questions and progress bar."""

    def say(self, line: str, *, err: bool = False) -> None:
        click.echo(line, err=err)

    def confirm(self, question: str) -> bool:
        # A no ends the command as Click ends it: "Aborted!", exit 1.
        return click.confirm(question, abort=True)

    def ask_password(self, prompt: str) -> str | None:
        if not click.get_text_stream("stdin").isatty():
            return None
        return click.prompt(prompt, hide_input=True)

    @contextmanager
    def progress(
        self, total: int, label: str, status: Callable[[], str] | None = None
    ) -> Iterator[Callable[[int], None]]:
        done, started = 0, time.monotonic()

        def rate(_: object) -> str:
            elapsed = time.monotonic() - started
            shown = [f"{done / elapsed:.0f} msg/s"] if done and elapsed > 0 else []
            if status is not None:
                shown.append(f"pace: {status()}")
            return ", ".join(shown)

        with click.progressbar(length=total, label=label, show_pos=True, show_eta=True, item_show_func=rate) as bar:

            def advance(n: int) -> None:
                nonlocal done
                done += n
                bar.update(n)

            yield advance


@click.group()
@click.version_option(__version__, prog_name="newsletter")
def cli() -> None:
    """Write, check, preview and send the campaigns newsletter."""


@cli.command()
@click.argument("issue", type=ISSUE)
@click.option("--strict", is_flag=True, help="Treat warnings as errors.")
@click.option("--links", is_flag=True, help="Also fetch every link and image (online); a dead one is an error.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="With --links: seconds to wait for each address [default: 10].",
)
def check(issue: Path, strict: bool, links: bool, timeout: float | None) -> None:
    """Validate ISSUE and report every problem; exit 1 on errors."""
    from .commands import check

    check.check_command(issue, strict=strict, links=links, timeout=timeout, console=ClickConsole())


@cli.command()
@click.argument("issue", type=ISSUE)
@click.option(
    "--out", type=click.Path(path_type=Path, file_okay=False), help="Folder to write to [default: outbox/<slug>]."
)
def build(issue: Path, out: Path | None) -> None:
    """Write ISSUE as email.html, email.txt and email.eml."""
    from .commands import build

    build.build_command(issue, out, console=ClickConsole())


@cli.command()
@click.argument("slug")
def new(slug: str) -> None:
    """Write issues/SLUG.yaml, a scaffold to fill in."""
    from .commands import new

    new.new_command(slug, console=ClickConsole())


@cli.command()
@click.option("--site", "kind", flag_value="site", help="The site file's schema instead of the issue's.")
@click.option("--issue", "kind", flag_value="issue", default=True, hidden=True)
@click.option("--write", is_flag=True, help="Write both into the project's schema/ folder, where editors look.")
def schema(kind: str, write: bool) -> None:
    """Print the JSON Schema of the issue file (or, with --site, of newsletter.yaml)."""
    if write and kind == "site":
        raise click.UsageError("--write writes both schemas; leave out --site")
    from .commands import schema

    schema.schema_command(kind, write=write, console=ClickConsole())


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
# Not dir_okay=False: connection.check_ca_file says what is wrong with any path, as for NEWSLETTER_SMTP_CA_FILE.
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
    from .commands import send

    if test_address:
        send.test_command(issue, test_address, ca_file=ca_file, console=ClickConsole())
    elif to is None:
        raise click.UsageError("give the subscriber list with --to LIST.csv (or --test ADDRESS)")
    elif dry_run:
        send.dry_run_command(issue, to, limit=limit, suppressed=suppressed, console=ClickConsole())
    else:
        send.send_command(
            issue,
            to,
            limit=limit,
            connections=connections,
            rate=rate,
            yes=yes,
            suppressed=suppressed,
            ca_file=ca_file,
            resend_uncertain=resend_uncertain,
            retry_failed=retry_failed,
            moved=moved,
            changed_content=changed_content,
            console=ClickConsole(),
        )


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
    if as_email and to is None:
        raise click.UsageError("--as needs --to LIST.csv")
    from .commands import preview

    preview.preview_command(
        issue, port=port, host=host, open_browser=open_browser, as_email=as_email, to=to, console=ClickConsole()
    )


@cli.command()
@click.argument("issue", type=ISSUE)
def status(issue: Path) -> None:
    """What the send ledger says of ISSUE: counts per state, failures, uncertain recipients."""
    from .commands import status

    status.status_command(issue, console=ClickConsole())


@cli.group()
def suppressions() -> None:
    """Who is never mailed: the project's suppression store, in state/."""


@suppressions.command("list")
def suppressions_list() -> None:
    """Show each suppressed address with when, why and which issue's link."""
    from .commands import suppressions

    suppressions.list_command(console=ClickConsole())


@suppressions.command("show")
@click.argument("addresses", metavar="ADDRESS...", nargs=-1, required=True)
def suppressions_show(addresses: tuple[str, ...]) -> None:
    """Why these addresses are suppressed, or not: what inbox recorded of them, with its evidence."""
    from .commands import suppressions

    suppressions.show_command(list(addresses), console=ClickConsole())


@suppressions.command("add")
@click.argument("addresses", metavar="ADDRESS...", nargs=-1, required=True)
def suppressions_add(addresses: tuple[str, ...]) -> None:
    """Never mail these addresses again (recorded as manual)."""
    from .commands import suppressions

    suppressions.add_command(list(addresses), console=ClickConsole())


@suppressions.command("remove")
@click.argument("addresses", metavar="ADDRESS...", nargs=-1, required=True)
def suppressions_remove(addresses: tuple[str, ...]) -> None:
    """Take these addresses off the store (they may be mailed again)."""
    from .commands import suppressions

    suppressions.remove_command(list(addresses), console=ClickConsole())


@suppressions.command("import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
def suppressions_import(file: Path) -> None:
    """Add every address of FILE (CSV with an email column, or one address a line)."""
    from .commands import suppressions

    suppressions.import_command(file, console=ClickConsole())


@suppressions.command("export")
@click.option("--since", metavar="DATE", help="Only those recorded since DATE (2026-01-01, or an ISO date-time).")
def suppressions_export(since: str | None) -> None:
    """Write the store as CSV (email,when,why,issue) to standard output, for the CRM."""
    from .commands import suppressions

    suppressions.export_command(click.get_text_stream("stdout"), since=since, console=ClickConsole())


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on (the TLS proxy's side).")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="Port to listen on.")
def serve(host: str, port: int) -> None:
    """Serve the public side: unsubscribe page, one-click unsubscribe, web archive, suppression export."""
    from .commands import serve

    serve.serve_command(host=host, port=port, console=ClickConsole())


@cli.command()
@click.option(
    "--out", required=True, type=click.Path(path_type=Path, file_okay=False), help="Folder to write the archive to."
)
def archive(out: Path) -> None:
    """Write the web archive (index, each published issue, Atom feed) as static files."""
    from .commands import archive

    archive.archive_command(out, console=ClickConsole())


@cli.command()
@click.option("--maildir", type=click.Path(path_type=Path), help="A Maildir to read (where a local Postfix delivers).")
@click.option("--mbox", type=click.Path(path_type=Path), help="An mbox file to read; it is never changed.")
@click.option(
    "--ca-file",
    type=click.Path(path_type=Path),
    help="Also trust this CA's certificates (a PEM file) for the IMAP server of newsletter.yaml's inbox: section.",
)
@click.option("--watch", is_flag=True, help="Keep reading, a line per decision, until Ctrl-C.")
@click.option(
    "--every",
    type=click.FloatRange(min=0, min_open=True, max=86400),
    default=60.0,
    show_default=True,
    help="Seconds between reads with --watch.",
)
def inbox(maildir: Path | None, mbox: Path | None, ca_file: Path | None, watch: bool, every: float) -> None:
    """Read bounces, auto-replies and mailed unsubscribes; suppress who must not be mailed again.

    Without --maildir or --mbox, reads the IMAP mailbox of newsletter.yaml's inbox: section (IMAPS), the password
    from NEWSLETTER_IMAP_PASSWORD."""
    from .commands import inbox

    inbox.inbox_command(maildir=maildir, mbox=mbox, console=ClickConsole(), watch=watch, every=every, ca_file=ca_file)


def main() -> None:
    cli(prog_name="newsletter")


if __name__ == "__main__":
    main()
