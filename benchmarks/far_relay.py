"""Messages per second to a relay far away, and against a relay that throttles.

Usage: python benchmarks/far_relay.py [--quick] [--only speed|throttle] [--limit N]

Prints Markdown that can be pasted into the README. About four minutes (two with PIPELINING's speed);
--quick is about a minute, with smaller runs and rougher figures.

Speed: the sink (smtp_sink.py) behind latency_proxy.py, which delays every byte 10 and then 25 ms each way
(20 and 50 ms round trip, as to a relay in another country). At each, the baseline is plain smtplib sending
one pre-built message of the same size over 1 and 4 connections, measured in the same run; then
`newsletter send` over 1, 4 and 16 connections, its messages a second while sending (the figure of its
summary line) and for the whole command (start-up, rendering and the list's import too), and per connection
against smtplib's one connection. The time for 100,000 recipients at 50 ms over 16 connections is computed
from a 5,000 run (1,000 with --quick): its start-up, plus 100,000 at its rate while sending.

Throttle: throttling_sink.py, which accepts LIMIT messages a second (40 unless --limit) and answers the rest
"454 Throttling failure: Maximum sending rate exceeded", behind the 50 ms proxy; `newsletter send` over 16
connections, as fast as that would go without the limit. From the sink's own log: whether everyone got
exactly one message, the rate accepted after the first ten seconds against the relay's limit, and the share
of attempts throttled after those ten seconds.
"""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

from send_throughput import REPO, SEED, baseline, free_port, make_project, run_timed, sample_message

BENCHMARKS = REPO / "benchmarks"
ROUND_TRIPS_MS = (20, 50)
SETTLING = 10.0  # seconds after the first message that the throttle figures leave out


def start(script: str, *args: object) -> subprocess.Popen:
    """A helper script of benchmarks/ in a process of its own, once it says it is ready."""
    process = subprocess.Popen(
        [sys.executable, str(BENCHMARKS / script), *map(str, args)], stdout=subprocess.PIPE, text=True
    )
    if process.stdout is None or process.stdout.readline().strip() != "ready":
        process.kill()
        raise SystemExit(f"{script} did not start")
    return process


def send(project: Path, port: int, connections: int) -> tuple[float, float, str]:
    """`newsletter send` of the project's list through 127.0.0.1:`port`: (messages a second while sending, for
    the whole command, its output)."""
    env = dict(
        os.environ,
        NEWSLETTER_SMTP_HOST="127.0.0.1",
        NEWSLETTER_SMTP_PORT=str(port),
        NEWSLETTER_SMTP_SECURITY="none",
        NEWSLETTER_SECRET=secrets.token_urlsafe(32),
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),  # this checkout's code
    )
    shutil.rmtree(project / "state", ignore_errors=True)  # a first send, every time
    command = [sys.executable, "-m", "newsletter", "send", f"issues/{SEED}.yaml", "--to", "list.csv", "--yes"]
    whole, _, output = run_timed([*command, "--connections", str(connections)], project, env)
    found = re.search(r"sent (\d+), failed 0 in ([\d.]+) s", output)
    if not found:
        raise SystemExit(f"newsletter send did not send everyone:\n{output}")
    sent = int(found.group(1))
    return sent / float(found.group(2)), sent / whole, output


def sending(recipients: int, port: int, connections: int) -> tuple[float, float, str]:
    project = make_project(recipients)
    try:
        return send(project, port, connections)
    finally:
        shutil.rmtree(project)


def speed(message: bytes, seconds: float, big: int) -> None:
    print(
        "| round trip | sender | connections | messages | msg/s while sending | whole command | "
        "per connection, against smtplib's one |"
    )
    print("|---|---|---|---|---|---|---|")
    sink = start("smtp_sink.py", sink_port := free_port())
    try:
        for rtt in ROUND_TRIPS_MS:
            proxy = start("latency_proxy.py", port := free_port(), sink_port, rtt / 2)
            try:
                # What one smtplib connection does in `seconds`, at four round trips a message.
                per_connection = max(10, round(seconds / (4 * rtt / 1000)))
                one = baseline(port, message, per_connection, 1)
                row(rtt, "smtplib, one pre-built message", 1, per_connection, one, None, one)
                four = baseline(port, message, 4 * per_connection, 4)
                row(rtt, "smtplib, one pre-built message", 4, 4 * per_connection, four, None, one)
                for connections in (1, 4, 16):
                    recipients = big if (rtt, connections) == (50, 16) else round(2.5 * per_connection * connections)
                    rate, whole, _ = sending(recipients, port, connections)
                    row(rtt, "`newsletter send`", connections, recipients, rate, whole, one)
                    if recipients == big:
                        startup = recipients / whole - recipients / rate
                        at_big = (rtt, connections, recipients, rate, startup)
            finally:
                proxy.terminate()
    finally:
        sink.terminate()
    rtt, connections, recipients, rate, startup = at_big
    minutes = (startup + 100_000 / rate) / 60
    print(
        f"\n100,000 recipients at {rtt} ms round trip over {connections} connections: {minutes:.1f} minutes "
        f"(from a {recipients:,} run: {rate:.0f} msg/s while sending, {startup:.1f} s of start-up)"
    )


def row(rtt: int, sender: str, connections: int, messages: int, rate: float, whole: float | None, one: float) -> None:
    shown_whole = f"{whole:.1f}" if whole is not None else ""
    ratio = rate / connections / one
    print(f"| {rtt} ms | {sender} | {connections} | {messages:,} | {rate:.1f} | {shown_whole} | {ratio:.2f} |")


def throttle(limit: int, seconds: float) -> None:
    recipients = round(limit * seconds)
    stats = Path(tempfile.mkdtemp(prefix="newsletter-throttle-")) / "sink.json"
    sink = start("throttling_sink.py", sink_port := free_port(), limit, stats)
    proxy = start("latency_proxy.py", port := free_port(), sink_port, 25)
    try:
        _, _, output = sending(recipients, port, 16)
    finally:
        proxy.terminate()
        sink.terminate()
        sink.wait(timeout=30)
    log = json.loads(stats.read_text())
    shutil.rmtree(stats.parent)
    delivered = Counter(recipient for _, accepted, recipient in log if accepted)
    once = len(delivered) == recipients and set(delivered.values()) == {1}
    first, last = log[0][0], max(t for t, accepted, _ in log if accepted)
    late = [accepted for t, accepted, _ in log if t >= first + SETTLING]
    late_accepted, late_refused = sum(late), len(late) - sum(late)
    early_accepted = sum(1 for t, accepted, _ in log if accepted and t < first + SETTLING)
    settled = late_accepted / (last - first - SETTLING)
    said = re.search(r"the relay asked .*", output)
    print(
        f"\nA relay that takes {limit} messages a second (454 to the rest, each second counted afresh), 50 ms away; "
        f"`newsletter send --connections 16` to {recipients:,} recipients:\n"
        f"\n| what | figure |\n|---|---|\n"
        f"| everyone got exactly one message | {'yes' if once else 'NO'} ({len(delivered):,} of {recipients:,}) |\n"
        f"| accepted after the first {SETTLING:.0f} s | {settled:.1f} msg/s ({settled / limit:.2f} of the relay's "
        f"{limit}) |\n"
        f"| throttled attempts after the first {SETTLING:.0f} s | {late_refused / max(1, len(late)):.1%} "
        f"({late_refused} of {len(late):,}) |\n"
        f"| in the first {SETTLING:.0f} s | {early_accepted} accepted, "
        f"{sum(1 for t, a, _ in log if not a and t < first + SETTLING)} throttled |\n"
        f"| the send's last words on it | {said.group(0) if said else '(none)'} |"
    )


def main() -> None:
    quick = "--quick" in sys.argv
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None
    limit = int(sys.argv[sys.argv.index("--limit") + 1]) if "--limit" in sys.argv else 40
    project = make_project(1)
    message = sample_message(project)
    shutil.rmtree(project)
    print(
        f"far_relay.py{' --quick' if quick else ''}: message {len(message) / 1024:.0f} KB, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}\n"
    )
    if only in (None, "speed"):
        speed(message, seconds=3 if quick else 8, big=1_000 if quick else 5_000)
    if only in (None, "throttle"):
        throttle(limit, seconds=15 if quick else 35)


if __name__ == "__main__":
    main()
