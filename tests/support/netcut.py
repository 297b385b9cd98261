"""A loopback TCP proxy that can cut its clients off the network and let them back."""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.support.broker import free_port


class NetCut:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self._cut = threading.Event()
        self._stop = threading.Event()
        self._links: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._server.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                inbound, _ = self._server.accept()
            except OSError:
                continue
            if self._cut.is_set():
                inbound.close()  # no route: the device sees its connection fail
                continue
            try:
                outbound = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
            except OSError:
                inbound.close()
                continue
            with self._lock:
                self._links += [inbound, outbound]
            for a, b in ((inbound, outbound), (outbound, inbound)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                _close(s)

    def cut(self) -> None:
        self._cut.set()
        with self._lock:
            links, self._links = self._links, []
        for s in links:
            _close(s)

    def restore(self) -> None:
        self._cut.clear()

    def close(self) -> None:
        self._stop.set()
        self.cut()
        self._server.close()


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    s.close()
