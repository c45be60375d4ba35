"""The command line. Only option parsing and printing live here; the work is
done by plain functions in `newsletter.commands` and the core modules."""

from __future__ import annotations

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
    for problem in problems:
        click.echo(f"warning: {problem}", err=True)


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

    root = find_root(Path.cwd()) or Path.cwd()
    path = new_issue(slug, root / "issues")
    click.echo(f"wrote {_shown(path)}; check it with: newsletter check {_shown(path)}")


@cli.command()
@click.option("--site", "kind", flag_value="site", help="The site file's schema instead of the issue's.")
@click.option("--issue", "kind", flag_value="issue", default=True, hidden=True)
def schema(kind: str) -> None:
    """Print the JSON Schema of the issue file (or, with --site, of newsletter.yaml)."""
    from .commands.schema import schema as make_schema

    click.echo(make_schema(kind), nl=False)


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def main() -> None:
    cli(prog_name="newsletter")


if __name__ == "__main__":
    main()
