"""A local, live-reloading preview: the email at desktop and phone width, the
plain text, what an inbox shows, the size against Gmail's limit, and the
problems `check` finds.

The page is served on 127.0.0.1 by the standard library's HTTP server. A
watcher (watchfiles) rebuilds on every save of the issue, the site file or
a template, and tells open pages through Server-Sent Events; a broken edit
shows its error in the page while the server keeps running.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import threading
import time
from dataclasses import dataclass, field, replace
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from .errors import NewsletterError
from .lint import GMAIL_CLIP_BYTES
from .message import Composer
from .personalise import Recipient
from .pipeline import check
from .project import SITE_FILE, find_root, templates_for
from .subscribers import read_subscribers
from .unsubscribe import signing_key

PAGE = Path(__file__).with_name("preview.html")


@dataclass
class Snapshot:
    """What the page shows; replaced whole on every rebuild."""

    version: int = 0
    subject: str = ""
    sender: str = ""
    preheader: str = ""
    html: str | None = None
    text: str = ""
    html_bytes: int = 0
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    built_at: float = 0.0

    def as_json(self) -> dict:
        return {
            "version": self.version,
            "subject": self.subject,
            "from": self.sender,
            "preheader": self.preheader,
            "text": self.text,
            "has_email": self.html is not None,
            "html_bytes": self.html_bytes,
            "clip_bytes": GMAIL_CLIP_BYTES,
            "warnings": self.warnings,
            "errors": self.errors,
            "built_at": self.built_at,
        }


class Preview:
    """Builds the issue and keeps the latest snapshot; thread-safe."""

    def __init__(self, issue: Path, as_email: str | None = None, subscribers: Path | None = None) -> None:
        self.issue = issue
        self.as_email = as_email
        self.subscribers = subscribers
        self.snapshot = Snapshot()
        self.changed = threading.Condition()
        self.closing = False

    def rebuild(self) -> Snapshot:
        previous = self.snapshot
        try:
            checked = check(self.issue)
            recipient = self._recipient(checked.project.site.sample_recipient)
            copy = Composer.prepare(checked.rendered).personalise(recipient, signing_key())
            site = checked.project.site
            snapshot = Snapshot(
                version=previous.version + 1,
                subject=checked.issue.subject_line,
                sender=f"{site.from_.name} <{site.from_.email}>",
                preheader=checked.issue.preheader or "",
                html=copy.html,
                text=copy.text,
                html_bytes=checked.html_bytes,
                warnings=[str(p) for p in checked.warnings],
                built_at=time.time(),
            )
        except Exception as exc:  # the preview must outlive any one bad save
            problems = exc.problems if isinstance(exc, NewsletterError) else [f"unexpected error: {exc!r}"]
            # Keep the last good email on screen under the error, as editors expect.
            snapshot = replace(
                previous,
                version=previous.version + 1,
                warnings=[],
                errors=[str(p) for p in problems],
                built_at=time.time(),
            )
        with self.changed:
            self.snapshot = snapshot
            self.changed.notify_all()
        return snapshot

    def wait_for_change(self, version: int, timeout: float) -> Snapshot:
        with self.changed:
            self.changed.wait_for(lambda: self.snapshot.version != version or self.closing, timeout)
            return self.snapshot

    def close(self) -> None:
        with self.changed:
            self.closing = True
            self.changed.notify_all()

    def watched(self) -> tuple[list[Path], set[Path], Path]:
        """(folders to watch, files that matter in them, the templates folder)."""
        # Found without reading newsletter.yaml, which may be broken right now.
        root = find_root(self.issue.parent) or find_root(Path.cwd()) or self.issue.parent
        files = {self.issue.resolve(), (root / SITE_FILE).resolve()}
        if self.subscribers is not None:
            files.add(self.subscribers.resolve())
        templates = templates_for(root).resolve()
        folders = {p.parent for p in files} | {templates}
        return sorted(folders), files, templates

    def _recipient(self, sample: str) -> Recipient:
        if not self.as_email:
            return Recipient(sample)
        if self.subscribers is None:
            raise NewsletterError("--as needs --to LIST.csv, the list to find that subscriber in")
        wanted = self.as_email.lower()
        for entry in read_subscribers(self.subscribers):
            if entry.key == wanted:
                return Recipient(entry.email, entry.name, entry.fields)
        raise NewsletterError(f"{self.as_email} is not in {self.subscribers}")


def watch(preview: Preview, stop: threading.Event, ready: threading.Event) -> None:
    """Rebuild whenever a file that shapes the email is saved, until `stop` is set."""
    import watchfiles

    folders, files, templates = preview.watched()

    def matters(_: watchfiles.Change, path: str) -> bool:
        p = Path(path).resolve()
        return p in files or (p.parent == templates and p.name.endswith(".j2"))

    built = preview.snapshot.built_at
    # A short debounce: the page should follow a save within a second. The
    # empty batch each timeout tells us the watch is in place.
    for changes in watchfiles.watch(
        *folders,
        watch_filter=matters,
        debounce=150,
        step=50,
        rust_timeout=200,
        yield_on_timeout=True,
        stop_event=stop,
        recursive=False,
        raise_interrupt=False,
    ):
        if not ready.is_set():
            # A save between the first build and now would otherwise be missed.
            if any(_mtime(f) > built for f in files | set(templates.glob("*.j2"))):
                changes = {("modified", "")}
            ready.set()
        if changes:
            preview.rebuild()


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


class Server:
    """The preview's HTTP server and watcher, started and stopped together."""

    def __init__(self, preview: Preview, host: str = "127.0.0.1", port: int = 8000) -> None:
        self.preview = preview
        self.stop_event = threading.Event()
        handler = type("Handler", (_Handler,), {"preview": preview, "allowed_host": host.lower()})
        try:
            try:
                self.http = ThreadingHTTPServer((host, port), handler)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or port == 0:
                    raise
                self.http = ThreadingHTTPServer((host, 0), handler)  # taken: any free port
        except OSError as exc:  # an unknown host name, a port that needs root, ...
            raise NewsletterError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
        self.http.daemon_threads = True
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        return self.http.server_address[1]

    @property
    def url(self) -> str:
        host = self.http.server_address[0]
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        """Build, then serve and watch; returns once saves are being watched."""
        self.preview.rebuild()
        ready = threading.Event()
        for target in (self.http.serve_forever, lambda: watch(self.preview, self.stop_event, ready)):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self._threads.append(thread)
        ready.wait(timeout=10)

    def stop(self) -> None:
        self.stop_event.set()
        self.preview.close()
        self.http.shutdown()
        self.http.server_close()
        for thread in self._threads:
            thread.join(timeout=5)


class _Handler(BaseHTTPRequestHandler):
    preview: Preview
    allowed_host: str  # the name given with --host, which may be a name
    server_version = "newsletter-preview"

    def do_GET(self) -> None:
        if not self._host_allowed():
            # A web page elsewhere could point its own name at 127.0.0.1 (DNS
            # rebinding) and read an unpublished issue; answer only to an address.
            self.send_error(HTTPStatus.MISDIRECTED_REQUEST)
            return
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send(PAGE.read_bytes(), "text/html; charset=utf-8")
        elif path == "/email.html":
            html = self.preview.snapshot.html
            if html is None:
                html = "<!doctype html><p>The issue has errors; fix them to see the email.</p>"
            self._send(html.encode("utf-8"), "text/html; charset=utf-8")
        elif path == "/state.json":
            self._send(json.dumps(self.preview.snapshot.as_json()).encode(), "application/json")
        elif path == "/events":
            self._events()
        else:
            self.send_error(HTTPStatus.NOT_FOUND)

    def _host_allowed(self) -> bool:
        host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]").lower()
        if host in ("localhost", self.allowed_host):
            return True
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
        return True

    def _send(self, body: bytes, kind: str) -> None:
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        # Nothing may come from another site but the email's own images.
        self.send_header(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' http: https: data:; style-src 'self' 'unsafe-inline'; "
            "script-src 'self' 'unsafe-inline'; frame-src 'self'",
        )
        self.end_headers()
        self.wfile.write(body)

    def _events(self) -> None:
        """Server-Sent Events: one `data: VERSION` line per rebuild, until the client goes."""
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        version = -1
        try:
            while not self.preview.closing:
                snapshot = self.preview.wait_for_change(version, timeout=15)
                if snapshot.version != version:
                    version = snapshot.version
                    self.wfile.write(f"data: {version}\n\n".encode())
                else:
                    self.wfile.write(b": still here\n\n")  # lets a closed tab end this thread
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return

    def log_message(self, format: str, *args: object) -> None:
        return  # the terminal shows the address and the problems, not every request
