"""The object store's HTTP/1.1 connection (cloud/store/http1.py) reads what S3 servers answer:
bodies by length, chunked and to the close, none for HEAD and 204, a 100 Continue before the
answer, the connection kept or closed as the server says; and refuses what is not HTTP."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from earmark.cloud.store.http1 import Connection, HttpError


class CannedServer:
    """Answers each request on a connection with the next canned answer, as raw bytes."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers
        self.requests: list[bytes] = []
        self.connections = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.answers:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                while self.answers:
                    request = b""
                    while b"\r\n\r\n" not in request:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        request += chunk
                    if not request:
                        break
                    head, _, rest = request.partition(b"\r\n\r\n")
                    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length")), 0)
                    while len(rest) < length:
                        rest += conn.recv(65536)
                    self.requests.append(head + b"\r\n\r\n" + rest)
                    answer = self.answers.pop(0)
                    conn.sendall(answer)
                    if b"connection: close" in answer.lower():
                        break


@pytest.fixture
def serve() -> Iterator[type[CannedServer]]:
    yield CannedServer


def test_bodies_by_length_chunked_and_none_on_one_kept_connection(serve: type[CannedServer]) -> None:
    server = serve([b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: \"x\"\r\n\r\nhello",
                    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"4;ext=1\r\n<Err\r\n3\r\nor>\r\n0\r\nX-Trailer: t\r\n\r\n",
                    b"HTTP/1.1 200 OK\r\nContent-Length: 123\r\n\r\n",  # a HEAD: the length is the object's
                    b"HTTP/1.1 204 No Content\r\n\r\n"])
    connection = Connection("127.0.0.1", server.port, 5)
    first = connection.request("PUT", "/b/k", {"content-length": "9"}, [b"head\n", b"body"])
    assert (first.status, first.headers["etag"], first.body) == (200, '"x"', b"hello")
    put = server.requests[0]
    assert put.startswith(b"PUT /b/k HTTP/1.1\r\n") and put.endswith(b"\r\n\r\nhead\nbody")
    missing = connection.request("GET", "/b/k", {})
    assert (missing.status, missing.reason, missing.body) == (404, "Not Found", b"<Error>")
    assert connection.request("HEAD", "/b/k", {}).body == b""
    assert connection.request("DELETE", "/b/k", {}).status == 204
    assert server.connections == 1
    connection.close()


def test_a_connection_the_server_closes_is_made_anew(serve: type[CannedServer]) -> None:
    server = serve([b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                    b"HTTP/1.0 200 OK\r\n\r\nto the end"])  # no length: the body runs to the close
    connection = Connection("127.0.0.1", server.port, 5)
    assert connection.request("PUT", "/k", {"content-length": "0"}).status == 200
    assert connection.request("GET", "/k", {}).body == b"to the end"
    assert server.connections == 2


@pytest.mark.parametrize("answer", [
    b"SSH-2.0-OpenSSH_9.2\r\n\r\n",
    b"HTTP/1.1 2OO OK\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",  # a second, unasked answer
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nConnection: close\r\n\r\nshort",  # and gone
], ids=["not-http", "bad-status", "bad-header", "bad-length", "bad-chunk", "two-answers", "cut-short"])
def test_what_is_not_an_http_answer_is_an_error(serve: type[CannedServer], answer: bytes) -> None:
    server = serve([answer, b""])
    connection = Connection("127.0.0.1", server.port, 5)
    with pytest.raises(HttpError):
        connection.request("GET", "/k", {})
    connection.close()
