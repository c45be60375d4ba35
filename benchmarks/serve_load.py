"""Load on `newsletter serve`: what link scanners do after a big send.

Usage: python benchmarks/serve_load.py [SECONDS] [CLIENTS]

Starts `newsletter serve` on a copy of this project (in a temporary folder) and drives it from
CLIENTS concurrent keep-alive connections for SECONDS each on: the unsubscribe page (GET, a
different valid token per request), the archive index and an issue's web version. Then two
rounds of one-click POSTs from 50 concurrent clients: 500 distinct addresses, each of which must be
recorded exactly once; then the same 500 again (a link scanner's harmless repeats), which must all
be answered 200 and leave the rows as they were. The baseline, measured in the same run on the same
client: a plain Starlette app under uvicorn answering a static page.

The client is raw asyncio sockets, so that it costs less than the server it measures; it shares
the machine with the server, so the figures are a floor.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from newsletter.unsubscribe import make_token  # noqa: E402

SECRET = "mer9RbeL1mTBLpg7GVsPov14aQ76aOe6WLCH4tfh91E"
LIST_ID = "roundup.example.org"
HOST = "example.org"
SEED = "2021-05-spring-solidarity"

BASELINE = """
from starlette.applications import Starlette
from starlette.responses import HTMLResponse
from starlette.routing import Route
PAGE = "<!doctype html><title>x</title>" + "<p>static</p>" * 100
async def page(request):
    return HTMLResponse(PAGE)
app = Starlette(routes=[Route("/{rest:path}", page)])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the server did not start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("the server did not start in time")


async def request(reader, writer, method: str, target: str, body: bytes = b"") -> int:
    head = f"{method} {target} HTTP/1.1\r\nHost: {HOST}\r\n"
    if body:
        head += f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n"
    writer.write(head.encode() + b"\r\n" + body)
    status_line = await reader.readline()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return int(status_line.split()[1])


async def load(port: int, targets, seconds: float, clients: int) -> tuple[int, list[float], int]:
    latencies: list[float] = []
    errors = 0
    stop = time.monotonic() + seconds

    async def client(n: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = n
        while time.monotonic() < stop:
            started = time.perf_counter()
            status = await request(reader, writer, "GET", targets(i))
            latencies.append(time.perf_counter() - started)
            errors += status != 200
            i += clients
        writer.close()

    await asyncio.gather(*(client(n) for n in range(clients)))
    return len(latencies), latencies, errors


def report(name: str, seconds: float, result: tuple[int, list[float], int]) -> None:
    count, latencies, errors = result
    p99 = statistics.quantiles(latencies, n=100)[98] * 1000
    median = statistics.median(latencies) * 1000
    print(f"{name:<28} {count / seconds:8.0f} req/s   p50 {median:6.1f} ms   p99 {p99:6.1f} ms   non-200: {errors}")


async def one_clicks(port: int, addresses: list[str], clients: int = 50) -> list[int]:
    """One one-click POST per address, from `clients` concurrent keep-alive connections."""
    queue = list(addresses)
    statuses: list[int] = []

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while queue:
            target = f"/unsubscribe?t={make_token(SECRET, LIST_ID, queue.pop())}"
            statuses.append(await request(reader, writer, "POST", target, b"List-Unsubscribe=One-Click"))
        writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return statuses


def recorded(root: Path) -> list[tuple[str, float, str]]:
    with sqlite3.connect(root / "state" / "suppressions.sqlite3") as db:
        return sorted(db.execute("SELECT email, at, why FROM suppressions"))


def one_click_round(name: str, port: int, root: Path, addresses: list[str]) -> tuple[list[int], list[tuple]]:
    started = time.perf_counter()
    statuses = asyncio.run(one_clicks(port, addresses))
    took = time.perf_counter() - started
    rows = recorded(root)
    emails = [email for email, *_ in rows]
    lost = len(set(addresses) - set(emails))
    duplicated = len(emails) - len(set(emails))
    print(
        f"{name}: {len(statuses)} POSTs from 50 clients in {took:.2f} s ({len(statuses) / took:.0f}/s), "
        f"{statuses.count(200)} answered 200; {len(rows)} rows for {len(set(addresses))} addresses: "
        f"{lost} lost, {duplicated} duplicated"
    )
    return statuses, rows


def serve(command: list[str], cwd: Path, port: int) -> subprocess.Popen:
    env = {**os.environ, "NEWSLETTER_SECRET": SECRET, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(port, process)
    return process


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5
    clients = int(sys.argv[2]) if len(sys.argv) > 2 else 50
    root = Path(tempfile.mkdtemp(prefix="newsletter-serve-"))
    shutil.copy(REPO / "newsletter.yaml", root / "newsletter.yaml")
    shutil.copytree(REPO / "templates", root / "templates")
    (root / "issues").mkdir()
    seed = (REPO / "issues" / f"{SEED}.yaml").read_text(encoding="utf-8")
    (root / "issues" / f"{SEED}.yaml").write_text(seed + "published: true\n", encoding="utf-8")  # as if sent
    (root / "baseline.py").write_text(BASELINE)
    tokens = [make_token(SECRET, LIST_ID, f"reader{i}@example.com") for i in range(10_000)]

    port = free_port()
    base = serve([sys.executable, "-m", "uvicorn", "baseline:app", "--port", str(port), "--no-access-log"], root, port)
    try:
        report("baseline: static Starlette", seconds, asyncio.run(load(port, lambda i: "/", seconds, clients)))
    finally:
        base.terminate()
        base.wait()

    port = free_port()
    server = serve([sys.executable, "-m", "newsletter", "serve", "--port", str(port)], root, port)
    try:
        page = asyncio.run(load(port, lambda i: f"/unsubscribe?t={tokens[i % len(tokens)]}", seconds, clients))
        report("unsubscribe page (GET)", seconds, page)
        report("archive index (GET)", seconds, asyncio.run(load(port, lambda i: "/roundup/", seconds, clients)))
        issue_page = asyncio.run(load(port, lambda i: f"/roundup/{SEED}/", seconds, clients))
        report("archive issue page (GET)", seconds, issue_page)
        addresses = [f"leaver{i}@example.com" for i in range(500)]
        first, rows = one_click_round("one-click, 500 distinct addresses", port, root, addresses)
        again, rows_after = one_click_round("one-click, the same 500 again", port, root, addresses)
    finally:
        server.terminate()
        server.wait()
    shutil.rmtree(root)
    every_one_once = sorted(email for email, *_ in rows) == sorted(addresses)
    answered = first.count(200) == len(first) == len(addresses) and again.count(200) == len(again)
    if not (every_one_once and answered and rows_after == rows):  # a repeat must not rewrite when or why
        raise SystemExit(1)


if __name__ == "__main__":
    main()
