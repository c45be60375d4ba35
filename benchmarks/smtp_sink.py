"""An SMTP server that accepts and discards every message, as fast as it can.

Usage: python benchmarks/smtp_sink.py PORT [--no-pipelining]   (prints "ready" when listening)

For the send benchmark the server must not be the bottleneck, or every
sender looks alike; aiosmtpd parses each line in Python and tops out near
150 messages/s for an 80 KB message. This speaks just enough SMTP (EHLO,
MAIL, RCPT, DATA, RSET, NOOP, QUIT) and finds the end of DATA with a byte
search. It offers PIPELINING (RFC 2920), as Postfix and the big relays do
(it answers commands in the order they come, however many per read);
--no-pipelining leaves it out, for a client that must then wait for each
answer.
"""

from __future__ import annotations

import asyncio
import sys

END_OF_DATA = b"\r\n.\r\n"
EHLO = b"250-sink\r\n250-8BITMIME\r\n250-PIPELINING\r\n250 SIZE 50000000\r\n"


class Sink(asyncio.Protocol):
    ehlo = EHLO

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.buffer = bytearray()
        self.in_data = False
        self.recipient = b""  # the last RCPT line
        transport.write(b"220 sink ESMTP\r\n")

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.buffer:
            if self.in_data:
                end = self.buffer.find(END_OF_DATA)
                if end < 0:
                    del self.buffer[: -len(END_OF_DATA)]  # the end may straddle two reads
                    return
                del self.buffer[: end + len(END_OF_DATA)]
                self.in_data = False
                self.transport.write(self.end_of_data())
                continue
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                return
            line = bytes(self.buffer[:line_end])
            command = line[:4].upper()
            del self.buffer[: line_end + 2]
            if command == b"EHLO":
                self.transport.write(self.ehlo)
            elif command == b"DATA":
                self.in_data = True
                self.buffer[:0] = b"\r\n"  # so that an empty message's "." line is found too
                self.transport.write(b"354 go ahead\r\n")
            elif command == b"QUIT":
                self.transport.write(b"221 bye\r\n")
                self.transport.close()
                return
            else:
                if command == b"RCPT":
                    self.recipient = line
                self.transport.write(b"250 OK\r\n")

    def end_of_data(self) -> bytes:
        """The answer to a message's final dot (benchmarks/throttling_sink.py answers otherwise)."""
        return b"250 2.0.0 OK\r\n"


class NoPipelining(Sink):
    ehlo = EHLO.replace(b"250-PIPELINING\r\n", b"")


async def serve(port: int, pipelining: bool) -> None:
    server = await asyncio.get_running_loop().create_server(Sink if pipelining else NoPipelining, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), "--no-pipelining" not in sys.argv[2:]))
