"""`newsletter preview`: serve the live preview until Ctrl-C."""

from __future__ import annotations

import time
import webbrowser
from pathlib import Path

from ..console import Console, warn
from ..preview import Preview, Server
from ..smtp import is_loopback
from ..unsubscribe import secret_warnings


def preview_command(
    issue: Path,
    *,
    console: Console,
    port: int = 8000,
    host: str = "127.0.0.1",
    open_browser: bool = True,
    as_email: str | None = None,
    to: Path | None = None,
) -> None:
    """Serve the preview of ISSUE (as `as_email` on the list `to` gets it, if given) until Ctrl-C."""
    server = Server(Preview(issue, as_email, to), host, port)
    server.start()
    # Ctrl-C may come at any moment once the server runs, even before the
    # first line is printed: it always stops the server and exits cleanly.
    try:
        if port and server.port != port:
            console.say(f"port {port} is in use; using {server.port} instead")
        if not is_loopback(host):
            console.say(f"warning: serving on {host}: anyone who can reach this machine can read the preview", err=True)
        warn(console, secret_warnings())
        console.say(f"Previewing {issue} at {server.url}  (Ctrl-C to stop)")
        for problem in server.preview.snapshot.errors:
            console.say(f"error: {problem}", err=True)
        if open_browser:
            webbrowser.open(server.url)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.say("stopping")
    finally:
        server.stop()
