"""A TCP forwarder that makes a server on this machine look far away: a set delay each way, bytes in order.

Usage: python benchmarks/latency_proxy.py PORT TARGET_PORT ONE_WAY_MS   (prints "ready" when listening)

Whatever arrives on one side goes out on the other ONE_WAY_MS later, in the order it came: each chunk read is
stamped with the time it may leave and queued, and a writer sends each at its time. The delay is not added
once per chunk in turn (that would add up), so a round trip is 2 x ONE_WAY_MS however much is in flight, as
across a network; there is no bandwidth limit. Opening a connection costs one one-way delay before the server
hears of it (a real TCP handshake costs a round trip before the client may send).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

CHUNK = 65536


async def _carry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Everything `reader` gives, to `writer`, `delay` seconds after it came; then the end of the stream."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def read() -> None:
        try:
            while data := await reader.read(CHUNK):
                queue.put_nowait((loop.time() + delay, data))
        except OSError:
            pass
        queue.put_nowait((loop.time() + delay, b""))

    async def write() -> None:
        while True:
            due, data = await queue.get()
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            if not data:
                with contextlib.suppress(OSError):
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    with contextlib.suppress(OSError):
        await asyncio.gather(read(), write())


async def _forward(
    client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter, target: int, delay: float
) -> None:
    await asyncio.sleep(delay)
    try:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(_carry(client_reader, server_writer, delay), _carry(server_reader, client_writer, delay))
    for writer in (client_writer, server_writer):
        writer.close()


async def serve(port: int, target: int, one_way_ms: float) -> None:
    delay = one_way_ms / 1000

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _forward(reader, writer, target, delay)

    server = await asyncio.start_server(forward, "127.0.0.1", port, limit=CHUNK)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
