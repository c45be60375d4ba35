"""The sink (smtp_sink.py) as a relay with a rate limit: at most LIMIT messages a second, the rest refused.

Usage: python benchmarks/throttling_sink.py PORT LIMIT STATS   (prints "ready" when listening)

Each second of its clock it accepts the first LIMIT messages and answers the others' final dot with Amazon
SES's "454 Throttling failure: Maximum sending rate exceeded" (SES answers after the DATA command: the whole
message has gone for nothing). A counter per second that starts again at each second is the harshest kind
of limit for a sender: once it is full, everything is refused until the second ends, however slowly one goes.
On SIGTERM it writes STATS, a JSON list of [seconds since it started, accepted?, recipient] for every message.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import ClassVar

from smtp_sink import Sink

REFUSAL = b"454 Throttling failure: Maximum sending rate exceeded\r\n"
STARTED = time.monotonic()


class ThrottlingSink(Sink):
    # The relay's, not a connection's: one count for all of them.
    limit: ClassVar[int] = 0
    counted: ClassVar[Counter[int]] = Counter()
    log: ClassVar[list[tuple[float, bool, str]]] = []

    def end_of_data(self) -> bytes:
        now = time.monotonic() - STARTED
        recipient = self.recipient.partition(b"<")[2].partition(b">")[0].decode("ascii", "replace")
        accepted = self.counted[int(now)] < self.limit
        self.log.append((round(now, 4), accepted, recipient))
        if not accepted:
            return REFUSAL
        self.counted[int(now)] += 1
        return super().end_of_data()


async def serve(port: int, limit: int, stats: Path) -> None:
    ThrottlingSink.limit = limit
    loop = asyncio.get_running_loop()
    stopped = loop.create_future()
    loop.add_signal_handler(signal.SIGTERM, stopped.set_result, None)
    server = await loop.create_server(ThrottlingSink, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await stopped
    stats.write_text(json.dumps(ThrottlingSink.log))


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])))
