"""A full disk during `build` and `send --dry-run`: one line naming the file, no traceback, no half-written file."""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from pathlib import Path

from .small_disk import SmallDisk, cli, small_disk
from .support import SEED, write_list

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
