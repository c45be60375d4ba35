"""A TCP relay on 127.0.0.1 that hangs up on purpose: a server dropping the connection, made to order.

TLS passes through it untouched (the client still checks the real server's certificate); the relay only
counts the bytes the server sends back and, once `limit` of them have gone to the client, closes both sides.
`limit=0` hangs up on every client before a byte, the way a server that is going down does. With `stall`, it
stops relaying at the limit but keeps the connection open: a server that stops answering.
"""

from __future__ import annotations

import contextlib
import socket
import threading

TIMEOUT = 30.0  # no relay thread outlives a test that forgot it


class CuttingProxy:
    def __init__(self, upstream_port: int, limit: int | None = None, *, stall: bool = False) -> None:
        self.upstream_port = upstream_port
        self.limit = limit
        self.stall = stall
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> CuttingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopped.set()
        self._thread.join(timeout=TIMEOUT)
        self._listener.close()
        for sock in list(self._sockets):
            _hang_up(sock)

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.limit == 0:
                _hang_up(client)
                continue
            client.settimeout(TIMEOUT)
            server = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=TIMEOUT)
            self._sockets += [client, server]
            threading.Thread(target=self._pump, args=(client, server, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, self.limit), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, limit: int | None) -> None:
        sent = 0
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if limit is not None and sent + len(data) >= limit:
                    sink.sendall(data[: limit - sent])
                    if self.stall:
                        self._stopped.wait(TIMEOUT)
                    break
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        _hang_up(source)
        _hang_up(sink)


def _hang_up(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
