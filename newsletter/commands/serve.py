"""`newsletter serve`: the project's public side (unsubscribe, one-click, archive, export) under uvicorn."""

from __future__ import annotations

import copy

from ..console import Console
from ..project import open_project
from ..unsubscribe import require_secret


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
