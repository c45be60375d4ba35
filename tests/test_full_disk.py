"""A full disk during `build`, `send --dry-run` and `inbox`: one line naming the file, no traceback, no half-written
file, no message lost."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from pathlib import Path

from newsletter.suppressions import SuppressionStore

from .small_disk import SmallDisk, cli, small_disk
from .support import SEED, run_cli, write_list

ISSUE = f"issues/{SEED}.yaml"


def the_one_error(done: subprocess.CompletedProcess[str], disk: SmallDisk, folder: str) -> str:
    """The name of the file that one error line says could not be written."""
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    found = re.fullmatch(rf"error: {re.escape(folder)}/([^/]+): cannot write: {disk.says}", lines[0])
    assert found, lines[0]
    return found[1]


def comparable(data: bytes) -> bytes:
    """A built file without what changes on every run: the Date and the MIME boundary."""
    data = re.sub(rb"(?m)^Date: .*\r\n", b"", data)
    boundary = re.search(rb'boundary="([^"]+)"', data)
    return data.replace(boundary[1], b"BOUNDARY") if boundary else data


def assert_whole_files_only(folder: Path, reference: Path, failed: str) -> list[str]:
    """No temporary file is left, the file that failed is absent, and every other file is complete."""
    left = sorted(p.name for p in folder.iterdir())
    assert not [name for name in left if name.startswith(".")], left
    assert failed not in left
    for name in left:
        assert comparable((folder / name).read_bytes()) == comparable((reference / name).read_bytes()), name
    return left


def test_build_on_a_full_disk(project, run, tmp_path):
    reference = tmp_path / "reference"
    assert run("build", ISSUE, "--out", reference).exit_code == 0
    with small_disk(tmp_path / "disk", 64 * 1024) as disk:
        (project / "outbox").symlink_to(disk.folder)
        done = cli(disk, project, "build", ISSUE)
        failed = the_one_error(done, disk, f"outbox/{SEED}")
        assert failed in {"email.html", "email.txt", "email.eml"}
        assert_whole_files_only(disk.folder / SEED, reference, failed)


def test_dry_run_on_a_full_disk(project, run, tmp_path):
    to = write_list(project, ["email,name"] + [f"reader{i}@example.com,Reader {i}" for i in range(300)])
    assert run("send", ISSUE, "--to", to, "--dry-run").exit_code == 0
    reference = tmp_path / "reference"
    shutil.move(project / "outbox" / SEED / "dry-run", reference)
    shutil.rmtree(project / "outbox")
    with small_disk(tmp_path / "disk", 1024 * 1024) as disk:
        (project / "outbox").symlink_to(disk.folder)
        done = cli(disk, project, "send", ISSUE, "--to", to, "--dry-run")
        failed = the_one_error(done, disk, f"outbox/{SEED}/dry-run")
        assert failed.endswith("@example.com.eml")
        left = assert_whole_files_only(disk.folder / SEED / "dry-run", reference, failed)
        assert len(left) < 300  # the disk did fill up


def fill(disk: SmallDisk) -> None:
    """Leave no room on `disk`; never write more than its size (the folder may be on the real disk)."""
    with contextlib.suppress(OSError), (disk.folder / "filler").open("wb") as f:
        for _ in range(disk.size // 4096 + 1):
            f.write(b"x" * 4096)
            f.flush()


def test_new_on_a_full_disk_leaves_no_empty_scaffold_behind(project, tmp_path):
    shutil.rmtree(project / "issues")
    with small_disk(tmp_path / "disk", 64 * 1024, file_limit=100) as disk:
        (project / "issues").symlink_to(disk.folder)
        fill(disk)
        done = cli(disk, project, "new", "summer")
        assert the_one_error(done, disk, "issues") == "summer.yaml"
        assert not (disk.folder / "summer.yaml").exists()  # so that `new summer` works once there is room


def test_inbox_on_a_full_disk_moves_only_what_it_recorded_and_a_rerun_carries_on(
    project, run, smtp_server, inbox, tmp_path
):
    from .bounces import bounce_for, maildir_files, maildir_with

    addresses = [f"reader{i}@example.com" for i in range(120)]
    assert run("send", ISSUE, "--to", write_list(project, ["email", *addresses]), "--yes").exit_code == 0
    # Long diagnostics: the store fills the disk partway through the Maildir.
    path = maildir_with(
        project, [bounce_for(inbox.by_recipient(a), a, "5.1.1", "User unknown " + "x" * 400) for a in addresses]
    )
    state = project / "state"
    room = sum(f.stat().st_size for f in state.iterdir()) + 1024 * 1024  # a few dozen decisions
    with small_disk(tmp_path / "disk", room) as disk:
        for file in state.iterdir():
            shutil.copy2(file, disk.folder / file.name)
        shutil.rmtree(state)
        state.symlink_to(disk.folder)
        done = cli(disk, project, "inbox", "--maildir", path)
        assert done.returncode == 1
        (line,) = done.stderr.splitlines()
        assert line.startswith("error: state/suppressions.sqlite3: cannot write the suppression store: "), line
        with SuppressionStore.open(project) as store:
            recorded = {d[1] for d in store.decisions()}
        assert 0 < len(recorded) < len(addresses)
        # What was recorded moved; the rest is where it was, unread.
        assert len(maildir_files(path / ".Processed")) == len(recorded) and len(maildir_files(path)) == len(
            addresses
        ) - len(recorded)
        if disk.file_limit is None:
            subprocess.run(["mount", "-o", "remount,size=16m", str(disk.folder)], check=True)
        again = run_cli(project, "inbox", "--maildir", path)
        assert again.returncode == 0, again.stderr
        assert f"{len(addresses) - len(recorded)} hard bounces" in again.stdout
        assert len(maildir_files(path / ".Processed")) == len(addresses) and not maildir_files(path)
