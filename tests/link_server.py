"""A real HTTP server on 127.0.0.1 with the kinds of links an issue meets: live, dead, moved, looping, refusing
HEAD, dropping the connection, slow, heavy, or redirecting anywhere (`/to?URL`). It records every request it is sent."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

HOLD = 0.2  # seconds a /hold/ request stays in flight, so that requests sent together overlap
HEAVY = 300 * 1024


@dataclass
class Seen:
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (method, path, User-Agent)
    in_flight: int = 0
    most_in_flight: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def paths(self, method: str | None = None) -> list[str]:
        with self.lock:
            return [path for m, path, _ in self.requests if method in (None, m)]


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_HEAD(self) -> None:
        self._answer(head=True)

    def do_GET(self) -> None:
        self._answer(head=False)

    def log_message(self, format: str, *args: object) -> None:  # quiet in the test output
        pass

    def _answer(self, *, head: bool) -> None:
        seen = self.server.seen
        with seen.lock:
            seen.requests.append((self.command, self.path, self.headers.get("User-Agent", "")))
        path = self.path
        if path.startswith("/hold/"):
            with seen.lock:
                seen.in_flight += 1
                seen.most_in_flight = max(seen.most_in_flight, seen.in_flight)
            self.server.stopping.wait(HOLD)
            with seen.lock:
                seen.in_flight -= 1
            return self._send(200, b"held")
        if path == "/slow":
            self.server.stopping.wait(30)  # far beyond any test's timeout; ends when the server stops
            return self._send(200, b"late")
        redirects = {"/moved": "/moved-again", "/moved-again": "/live", "/loop-a": "/loop-b", "/loop-b": "/loop-a"}
        if path in redirects:
            self.send_response(301)
            self.send_header("Location", redirects[path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if path.startswith("/to?"):  # a redirect to wherever the query says, as a hostile page may send one
            self.send_response(302)
            self.send_header("Location", unquote(path.removeprefix("/to?")))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if path == "/moved-to-gone":
            self.send_response(302)
            self.send_header("Location", "/gone")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None
        if head and path == "/no-head":
            return self._send(405, b"")
        if head and path == "/drops-head":
            self.close_connection = True  # no answer at all: the connection just ends
            return None
        if path == "/gone":
            return self._send(404, b"not here")
        if path == "/broken":
            return self._send(500, b"oops")
        if path == "/heavy.png":
            return self._send(200, b"\x89PNG" + b"\0" * (HEAVY - 4), "image/png", head=head)
        if path == "/heavy-unsized.png":
            return self._send(200, b"\x89PNG" + b"\0" * (HEAVY - 4), "image/png", head=head, sized=False)
        return self._send(200, b"<!doctype html><title>ok</title>", "text/html", head=head)

    def _send(self, code: int, body: bytes, kind: str = "text/plain", *, head: bool = False, sized: bool = True):
        self.send_response(code)
        self.send_header("Content-Type", kind)
        if sized:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.close_connection = True  # the body ends when the connection does
        self.end_headers()
        if not head:
            with contextlib.suppress(OSError):  # the checker may stop reading once it knows enough
                self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen = Seen()
        self.stopping = threading.Event()


@dataclass(frozen=True)
class LinkServer:
    url: str  # http://127.0.0.1:PORT, without a final slash
    seen: Seen


@contextmanager
def running() -> Iterator[LinkServer]:
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LinkServer(f"http://127.0.0.1:{server.server_address[1]}", server.seen)
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
