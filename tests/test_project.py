"""The project keeps its own promises: CI runs what the README says; the version is written once;
the cache and the process-wide changes are what the README's "Good to know" says."""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import newsletter

from .support import MINIMAL, REPO, cli_env, run_cli, write_issue


def readme_test_command() -> str:
    """The README's command that installs the test extras and runs the whole suite."""
    blocks = re.findall(r"```sh\n(.*?)\n```", (REPO / "README.md").read_text(encoding="utf-8"), re.S)
    (command,) = [b for b in blocks if "pytest" in b]
    return command


def run_ci(tmp_path: Path, failing: str = "(nothing)") -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """`.ci/run` in a copy of its folder, with apt-get and python3 replaced by tools that only write down their call.

    The call that starts with `failing` exits 5, as pytest does when no test ran.
    """
    checkout = tmp_path / "checkout"
    (checkout / ".ci").mkdir(parents=True)
    shutil.copy2(REPO / ".ci" / "run", checkout / ".ci" / "run")
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("apt-get", "python3"):
        (tools / tool).write_text(
            # An environment assignment before a command (DEBIAN_FRONTEND=...) is written down as the shell reads it.
            f'#!/bin/sh\necho "${{DEBIAN_FRONTEND:+DEBIAN_FRONTEND=$DEBIAN_FRONTEND }}{tool} $*" >> "$CALLS"\n'
            f'case "{tool} $*" in "$FAILING"*) exit 5 ;; esac\nexit 0\n'
        )
        (tools / tool).chmod(0o755)
    calls = tmp_path / "calls"
    calls.touch()
    env = {"PATH": f"{tools}:/usr/bin:/bin", "CALLS": str(calls), "FAILING": failing}
    done = subprocess.run(
        [str(checkout / ".ci" / "run")], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    return done, calls.read_text().splitlines()


def test_ci_runs_exactly_the_readme_test_command(tmp_path):
    steps = [shlex.join(shlex.split(step)) for step in readme_test_command().split(" && ")]
    done, calls = run_ci(tmp_path)
    assert done.returncode == 0, done.stderr
    assert [shlex.join(shlex.split(call)) for call in calls] == steps


def test_the_readme_test_command_checks_the_style_before_the_suite():
    steps = readme_test_command().split(" && ")
    assert steps[-3:] == ["python3 -m ruff check .", "python3 -m ruff format --check .", "python3 -m pytest"]


@pytest.mark.parametrize("failing", ["python3 -m pytest", "python3 -m ruff check", "python3 -m ruff format"])
def test_ci_fails_when_a_step_fails(tmp_path, failing):
    done, calls = run_ci(tmp_path, failing)
    assert done.returncode != 0
    assert calls[-1].startswith(failing)  # and nothing runs after it


def test_the_version_is_written_once_and_newsletter_version_prints_it(tmp_path):
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    assert "version" not in pyproject["project"] and "version" in pyproject["project"]["dynamic"]
    # Where hatchling reads it, with its own pattern: the one place the number is written.
    source = REPO / pyproject["tool"]["hatch"]["version"]["path"]
    written = re.findall(r"(?m)^__version__ *= *([\'\"])v?(.+?)\1", source.read_text(encoding="utf-8"))
    assert [version for _, version in written] == [newsletter.__version__]
    done = run_cli(tmp_path, "--version")
    assert (done.returncode, done.stdout) == (0, f"newsletter, version {newsletter.__version__}\n")
    # What pip recorded when it installed the package came from there too.
    assert importlib.metadata.version("newsletter") == newsletter.__version__


def _cached(folder: Path) -> list[Path]:
    return sorted((folder / "newsletter" / "jinja").glob("sandboxed-*.cache"))


def test_the_template_cache_is_where_the_readme_says_and_safe_to_delete(project, tmp_path):
    issue = write_issue(project, MINIMAL)
    home = tmp_path / "home"
    home.mkdir()
    without_xdg = {"XDG_CACHE_HOME": "", "HOME": str(home)}
    assert run_cli(project, "build", issue, env=without_xdg).returncode == 0
    assert _cached(home / ".cache")
    shutil.rmtree(home / ".cache")
    done = run_cli(project, "build", issue, env=without_xdg)
    assert done.returncode == 0, done.stderr
    assert _cached(home / ".cache")  # compiled again

    xdg = tmp_path / "xdg"
    assert run_cli(project, "build", issue, env={"XDG_CACHE_HOME": str(xdg)}).returncode == 0
    assert _cached(xdg)

    # A home that cannot hold a cache (here: below a file) only means no cache.
    (tmp_path / "a file").write_text("", encoding="utf-8")
    no_home = {"XDG_CACHE_HOME": "", "HOME": str(tmp_path / "a file" / "home")}
    done = run_cli(project, "build", issue, "--out", "fresh", env=no_home)
    assert done.returncode == 0, done.stderr
    assert (project / "fresh" / "email.html").exists() and "Traceback" not in done.stderr


def test_a_program_importing_requests_after_a_render_gets_the_real_module(tmp_path):
    code = (
        "import sys; from newsletter.render import inline_css\n"
        "inline_css('<!doctype html><html><head><style>p {color: red}</style></head><body><p>x</p></body></html>')\n"
        "assert 'requests' not in sys.modules, 'the stand-in was left behind'\n"
        "import requests\n"
        "print(callable(requests.get))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=cli_env(), capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stdout) == (0, "True\n"), done.stderr
