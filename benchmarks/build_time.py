"""Time `newsletter build` of the seed issue as a whole process.

Usage: python benchmarks/build_time.py [RUNS]

Each run is a fresh interpreter, as when an advisor types the command, so
the figure includes start-up and imports. The first run warms the disk
cache and Jinja's bytecode cache and is not counted.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ISSUE = REPO / "issues" / "2021-05-spring-solidarity.yaml"


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    out = Path(tempfile.mkdtemp(prefix="newsletter-bench-"))
    command = [sys.executable, "-m", "newsletter", "build", str(ISSUE), "--out", str(out)]
    env = dict(os.environ)
    times, cpu = [], []
    for i in range(runs + 1):
        start = time.perf_counter()
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        if status != 0:
            raise SystemExit(f"newsletter build failed (status {status})")
        if i:
            times.append(time.perf_counter() - start)
            cpu.append(usage.ru_utime + usage.ru_stime)
    # The same machine can be twice as fast on a quiet day: time importing the
    # libraries alone, which this project cannot make faster, as a yardstick.
    imports = [sys.executable, "-c", "import click, jinja2, markdown_it, mjml, premailer, pydantic, yaml"]
    reference = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(imports, check=True)
        reference.append(time.perf_counter() - start)
    print(f"newsletter build {ISSUE.name}: {runs} runs, {os.cpu_count()} CPUs")
    print(f"  wall: median {statistics.median(times):.3f} s   min {min(times):.3f} s   max {max(times):.3f} s")
    # CPU time moves less than wall time when the shared machine is busy.
    print(f"  CPU:  median {statistics.median(cpu):.3f} s   min {min(cpu):.3f} s")
    print(f"  yardstick, importing the libraries alone: median {statistics.median(reference):.3f} s")
    html = (out / "email.html").stat().st_size
    print(f"  email.html {html / 1024:.1f} KB (Gmail clips above 102 KB)")


if __name__ == "__main__":
    main()
