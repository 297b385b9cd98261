"""One kept-alive HTTP/1.1 connection, for the object store's per-clip requests (s3put.py).

http.client parses every response's headers through the email package: on a busy ingester
that was more CPU than the SigV4 signature and the 160 KB body together. Here a request goes
out as one head and its body parts (no join), and the response is read from one buffer: the
status line, headers split on CRLF, then a body by Content-Length or chunked, none for HEAD,
1xx, 204 and 304. No pipelining: one response per request, so anything more is an error.
Any I/O or framing error is an OSError or HttpError; the caller drops the connection.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from earmark.wire.errors import EarmarkError

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024  # an S3 error document, or a small object; never a clip's read here


class HttpError(EarmarkError, ConnectionError):
    """The server's answer is not HTTP/1.1 as this client reads it."""


@dataclass(frozen=True)
class Response:
    status: int
    reason: str
    headers: dict[str, str]  # names in lower case; a repeated header's last value
    body: bytes


class Connection:
    def __init__(self, host: str, port: int, timeout: float, tls: ssl.SSLContext | None = None) -> None:
        self.host, self.port, self.timeout, self.tls = host, port, timeout, tls
        self._sock: socket.socket | None = None
        self._buf = b""

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock, self._buf = None, b""

    def request(self, method: str, target: str, headers: dict[str, str],
                body: Sequence[bytes | bytearray] = ()) -> Response:
        """Send the request (Content-Length is the caller's header) and read its response."""
        sock = self._sock or self._open()
        head = "".join([f"{method} {target} HTTP/1.1\r\n", *(f"{k}: {v}\r\n" for k, v in headers.items()), "\r\n"])
        sock.sendall(head.encode("latin-1"))
        for part in body:
            sock.sendall(part)
        response = self._response(method)
        if response.headers.get("connection", "").lower() == "close":
            self.close()
        return response

    def _open(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        self._sock, self._buf = sock, b""
        return sock

    def _read_more(self) -> None:
        assert self._sock is not None
        chunk = self._sock.recv(65536)
        if not chunk:
            raise HttpError("the server closed the connection")
        self._buf += chunk

    def _line(self, limit: int = MAX_HEAD_BYTES) -> bytes:
        while (end := self._buf.find(b"\r\n")) < 0:
            if len(self._buf) > limit:
                raise HttpError("a line longer than the client reads")
            self._read_more()
        line, self._buf = self._buf[:end], self._buf[end + 2:]
        return line

    def _take(self, size: int) -> bytes:
        while len(self._buf) < size:
            self._read_more()
        data, self._buf = self._buf[:size], self._buf[size:]
        return data

    def _response(self, method: str) -> Response:
        while True:
            status_line = self._line().decode("latin-1")
            version, _, rest = status_line.partition(" ")
            code, _, reason = rest.partition(" ")
            if not version.startswith("HTTP/1.") or not code.isdigit() or len(code) != 3:
                raise HttpError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
            headers: dict[str, str] = {}
            while line := self._line():
                name, colon, value = line.decode("latin-1").partition(":")
                if not colon:
                    raise HttpError("a header line without a colon")
                headers[name.strip().lower()] = value.strip()
            status = int(code)
            if status >= 200:  # 1xx (100 Continue) comes before the real answer
                break
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._chunked()
        elif "content-length" in headers:
            size = int(headers["content-length"]) if headers["content-length"].isdigit() else -1
            if not 0 <= size <= MAX_BODY_BYTES:
                raise HttpError(f"a Content-Length of {headers['content-length'][:20]!r}")
            body = self._take(size)
        else:  # the body runs to the end of the connection
            body = self._to_close()
        if self._buf:
            raise HttpError("the server sent more than one response")
        return Response(status, reason, headers, body)

    def _to_close(self) -> bytes:
        assert self._sock is not None
        while chunk := self._sock.recv(65536):
            self._buf += chunk
            if len(self._buf) > MAX_BODY_BYTES:
                raise HttpError("a body larger than the client reads")
        body = self._buf
        self.close()
        return body

    def _chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise HttpError("a malformed chunk size") from None
            total += size
            if total > MAX_BODY_BYTES:
                raise HttpError("a chunked body larger than the client reads")
            if size == 0:
                while self._line():  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            parts.append(self._take(size))
            if self._take(2) != b"\r\n":
                raise HttpError("a chunk not followed by CRLF")
