"""`newsletter serve`: the project's public side (unsubscribe, one-click, archive, export) under uvicorn."""

from __future__ import annotations

import copy

from ..console import Console
from ..model import is_loopback
from ..project import open_project
from ..unsubscribe import require_secret

LIMIT_CONCURRENCY = 1000  # connections and tasks at once
KEEP_ALIVE = 5  # seconds


def serve_command(*, host: str, port: int, console: Console) -> None:
    """Serve the project of the current folder until stopped (Ctrl-C or SIGTERM); NewsletterError before it starts
    when the project or NEWSLETTER_SECRET is not fit: without the key no token can be checked."""
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG

    from ..public import ACCESS_LOG, make_app

    project = open_project()
    secret = require_secret()
    app = make_app(project, secret)
    site = project.site
    console.say(f"Serving {site.unsubscribe_url}" + (f" and {site.archive_url}" if site.archive_url else ""))
    console.say(f"on http://{host}:{port}; put the organisation's TLS proxy in front, passing the public Host")
    if not is_loopback(host):
        console.say(
            f"warning: serving on {host}: unsubscribe links, the addresses in them and the export key cross the "
            "network in plain HTTP unless only the TLS proxy on this machine can reach it (use 127.0.0.1)",
            err=True,
        )
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_config=_logging(ACCESS_LOG, LOGGING_CONFIG),
        # uvicorn's own access log writes the query string, where the token is: the app logs its own line.
        access_log=False,
        server_header=False,
        # The proxy on this machine says who the client is; nobody else may.
        forwarded_allow_ips="127.0.0.1",
        # Enough for a burst of one-clicks after a send; past it a 503 at once, not a server out of memory or files.
        limit_concurrency=LIMIT_CONCURRENCY,
        # An idle kept-alive connection is closed after this; uvicorn has no limit for reading a request's head,
        # which is the proxy's job (README, "Running the public side").
        timeout_keep_alive=KEEP_ALIVE,
    )


def _logging(access: str, base: dict) -> dict:
    config = copy.deepcopy(base)
    config["formatters"]["newsletter"] = {"format": "%(asctime)s %(message)s"}
    config["handlers"]["newsletter"] = {
        "formatter": "newsletter",
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stdout",
    }
    config["loggers"][access] = {"handlers": ["newsletter"], "level": "INFO", "propagate": False}
    return config
