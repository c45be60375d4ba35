"""Messages per second of `newsletter send`, beside a raw smtplib baseline; peak memory.

Usage: python benchmarks/send_throughput.py [RECIPIENTS] [CONNECTIONS] [--memory BIG] [--no-pipelining]

A local sink server (benchmarks/smtp_sink.py, a separate process) accepts and
discards everything; it offers PIPELINING, as relays do, unless
--no-pipelining (then `newsletter send` waits for each answer, as smtplib
always does). The baseline is plain smtplib sending one pre-built
message of the same size, over the same number of connections, to the same
sink: the most a sender could do. `newsletter send` does the real work on
top: a personal message per recipient (name, signed unsubscribe link,
Message-ID) and two ledger commits per message.

With --memory BIG it also runs `newsletter send` to BIG recipients and
compares its peak RSS with the run above (the issue asks for at most 1.2x
from 10,000 to 100,000).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEED = "2021-05-spring-solidarity"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sink(*options: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    sink = subprocess.Popen(
        [sys.executable, str(REPO / "benchmarks" / "smtp_sink.py"), str(port), *options],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sink.stdout is not None and sink.stdout.readline().strip() == "ready"
    return sink, port


def make_project(recipients: int) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="newsletter-send-bench-"))
    shutil.copy(REPO / "newsletter.yaml", folder)
    shutil.copytree(REPO / "templates", folder / "templates")
    shutil.copytree(REPO / "issues", folder / "issues")
    with (folder / "list.csv").open("w") as f:
        f.write("email,name\n")
        for i in range(recipients):
            f.write(f"subscriber{i:07d}@example.com,Subscriber {i}\n")
    return folder


def sample_message(project: Path) -> bytes:
    command = [sys.executable, "-m", "newsletter", "build", f"issues/{SEED}.yaml"]
    subprocess.run(command, cwd=project, check=True, capture_output=True)
    return (project / "outbox" / SEED / "email.eml").read_bytes()


def baseline(port: int, message: bytes, recipients: int, connections: int) -> float:
    """Messages per second of bare smtplib, one pre-built message, `connections` threads."""
    share = [recipients // connections + (1 if i < recipients % connections else 0) for i in range(connections)]

    def work(n: int, offset: int) -> None:
        with smtplib.SMTP("127.0.0.1", port) as smtp:
            for i in range(n):
                smtp.sendmail("roundup@example.org", [f"subscriber{offset + i:07d}@example.com"], message)

    threads = [threading.Thread(target=work, args=(n, sum(share[:i]))) for i, n in enumerate(share)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return recipients / (time.perf_counter() - start)


def newsletter_send(project: Path, port: int, connections: int) -> tuple[float, float, int]:
    """(messages/s while sending, messages/s for the whole command, peak RSS in KB)."""
    env = dict(
        os.environ,
        NEWSLETTER_SMTP_HOST="127.0.0.1",
        NEWSLETTER_SMTP_PORT=str(port),
        NEWSLETTER_SMTP_SECURITY="none",
        NEWSLETTER_SECRET=secrets.token_urlsafe(32),  # a weak key is refused
    )
    shutil.rmtree(project / "state", ignore_errors=True)  # a first send, every time
    command = [
        sys.executable,
        "-m",
        "newsletter",
        "send",
        f"issues/{SEED}.yaml",
        "--to",
        "list.csv",
        "--yes",
        "--connections",
        str(connections),
    ]
    whole, peak, output = run_timed(command, project, env)
    found = re.search(r"sent (\d+), failed (\d+) in ([\d.]+) s", output)
    assert found, output
    sent, seconds = int(found.group(1)), float(found.group(3))
    return sent / seconds, sent / whole, peak


def run_timed(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int, str]:
    """(seconds, peak RSS in KB, output) of `command` as a whole process; SystemExit if it fails."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    # Read the output to its end before waiting: a child that fills the pipe would otherwise never end.
    output = process.stdout.read().decode() if process.stdout else ""
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{' '.join(command[2:4])} failed:\n{output}")
    return seconds, usage.ru_maxrss, output


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    recipients = int(args[0]) if args else 10_000
    connections = int(args[1]) if len(args) > 1 else 4
    big = int(sys.argv[sys.argv.index("--memory") + 1]) if "--memory" in sys.argv else None
    sink, port = start_sink(*(["--no-pipelining"] if "--no-pipelining" in sys.argv else []))
    try:
        project = make_project(recipients)
        message = sample_message(project)
        raw = baseline(port, message, recipients, connections)
        sending, whole, rss = newsletter_send(project, port, connections)
        offered = "without" if "--no-pipelining" in sys.argv else "with"
        print(
            f"{recipients:,} recipients, {connections} connections, message {len(message) / 1024:.0f} KB, "
            f"{os.cpu_count()} CPUs, sink {offered} PIPELINING"
        )
        print(f"  baseline smtplib, one pre-built message: {raw:8.0f} msg/s")
        print(f"  newsletter send, while sending:          {sending:8.0f} msg/s  ({sending / raw:.2f} of baseline)")
        print(f"  newsletter send, whole command:          {whole:8.0f} msg/s  ({whole / raw:.2f} of baseline)")
        print(f"  newsletter send, peak RSS:               {rss / 1024:8.1f} MB")
        shutil.rmtree(project)
        if big:
            project = make_project(big)
            _, _, big_rss = newsletter_send(project, port, connections)
            print(f"  newsletter send to {big:,}, peak RSS:    {big_rss / 1024:8.1f} MB  ({big_rss / rss:.2f}x)")
            shutil.rmtree(project)
    finally:
        sink.terminate()


if __name__ == "__main__":
    main()
