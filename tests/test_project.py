"""The project keeps its own promises: CI runs what the README says; the version is written once."""

from __future__ import annotations

import importlib.metadata
import re
import shlex
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

import newsletter

from .support import REPO, run_cli


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
            f'#!/bin/sh\necho "{tool} $*" >> "$CALLS"\ncase "{tool} $*" in "$FAILING"*) exit 5 ;; esac\nexit 0\n'
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
