"""An SMTP server that accepts and discards every message (for the send benchmark).

Usage: python benchmarks/smtp_sink.py PORT   (prints "ready" when listening)
"""

from __future__ import annotations

import sys
import time

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self) -> None:
        self.count = 0

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001, ANN201 - aiosmtpd's hook
        self.count += 1
        return "250 OK"


def main() -> None:
    controller = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[1]), data_size_limit=0)
    controller.start()
    print("ready", flush=True)
    try:
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
