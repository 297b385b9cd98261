"""The ingest path's object writes (PUT, and HEAD where the server ignores If-None-Match)
without boto3's per-request machinery: AWS Signature Version 4, which every S3 server
checks, over one kept-alive HTTP(S) connection per thread. boto3 builds, validates, signs
and parses each request through layers of hooks: about 1.4 ms of CPU for a 160 KB PUT
(bench/ingest_throughput.py), more than everything else the ingester does for the clip.
Here it is a canonical request, one HMAC (the day's signing key is kept) and one round trip
over http1.py, which reads the answer without http.client's email parser.

Only these two requests are made here; reads, listings, deletions and copies (export,
erasure, the sweep: not per clip) stay on boto3 (s3blobs.py), which also resolves the
credentials for both (environment, shared file, profile, instance role: refreshed when due).

Over https the payload is sent as UNSIGNED-PAYLOAD (TLS protects it, as boto3 does); over
plain http its SHA-256 is signed, so nothing on the way can change it.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from earmark.cloud.store.http1 import Connection
from earmark.runtime.durable import Data, data_size, parts
from earmark.wire.errors import EarmarkError

UNSIGNED = "UNSIGNED-PAYLOAD"
TIMEOUT_S = 30.0
ATTEMPTS = 3  # a request answered with a server error (5xx), in all


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str
    token: str = ""


@dataclass(frozen=True)
class Answer:
    status: int
    code: str  # the S3 error code of a refusal ("" on success)
    message: str


class Unreachable(EarmarkError):
    """The object store did not answer (refused, reset, timed out); s3blobs.py makes it
    StoreUnavailable."""


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


class LeanS3:
    """PUT and HEAD of objects in one bucket. `credentials` is asked before each request (a
    cheap call: boto3's resolved credentials, refreshed by it when they expire)."""

    def __init__(self, endpoint_url: str, bucket: str, region: str, addressing_style: str,
                 credentials: Callable[[], Credentials], ca_bundle: str = "") -> None:
        region = region or "us-east-1"
        parts = urlsplit(endpoint_url or f"https://s3.{region}.amazonaws.com")
        self.secure = parts.scheme == "https"
        host, hostname = parts.netloc, parts.hostname or ""
        if addressing_style == "virtual":
            self.host, self.base = f"{bucket}.{host}", parts.path.rstrip("/")
            hostname = f"{bucket}.{hostname}"
        else:
            self.host, self.base = host, f"{parts.path.rstrip('/')}/{quote(bucket, safe='')}"
        self._address = (hostname, parts.port or (443 if self.secure else 80))
        self.region, self.credentials = region, credentials
        self._context = ssl.create_default_context(cafile=ca_bundle or None) if self.secure else None
        self._local = threading.local()
        self._signing_keys: dict[tuple[str, str], bytes] = {}  # (secret, day) -> that day's key

    def put(self, key: str, body: Data, if_none_match: bool) -> Answer:
        return self._request("PUT", key, body, {"if-none-match": "*"} if if_none_match else {})

    def head(self, key: str) -> Answer:
        return self._request("HEAD", key, b"", {})

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()

    # -- one request -----------------------------------------------------------------------

    def _request(self, method: str, key: str, body: Data, extra: dict[str, str]) -> Answer:
        """One request; a server error (5xx: an S3 server's InternalError, SlowDown) is tried
        again after a short pause, ATTEMPTS in all, as boto3's standard retry mode does."""
        for attempt in range(1, ATTEMPTS + 1):
            answer = self._once(method, key, body, extra)
            if answer.status < 500 or attempt == ATTEMPTS:
                return answer
            time.sleep(0.05 * 2 ** attempt)
        raise AssertionError("unreachable")

    def _once(self, method: str, key: str, body: Data, extra: dict[str, str]) -> Answer:
        path = f"{self.base}/{quote(key, safe='/~')}"
        headers = self.signed(method, path, body, extra)
        for attempt in (1, 2):  # a kept-alive connection the server closed meanwhile: once more, anew
            connection = self._connection()
            try:  # the body is sent part by part (content-length is set): never joined in memory
                response = connection.request(method, path, headers, parts(body) if method == "PUT" else ())
            except OSError as exc:
                connection.close()
                if attempt == 2:
                    raise Unreachable(f"{type(exc).__name__}: {exc}") from None
                continue
            if response.status < 300:
                return Answer(response.status, "", "")
            return Answer(response.status, _tag(response.body, "Code") or str(response.status),
                          _tag(response.body, "Message") or response.reason)
        raise AssertionError("unreachable")

    def _connection(self) -> Connection:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = Connection(*self._address, TIMEOUT_S, self._context)
        return connection

    def signed(self, method: str, path: str, body: Data, extra: dict[str, str],
               now: datetime | None = None) -> dict[str, str]:
        """The request's headers, signed (AWS Signature Version 4, service s3)."""
        creds = self.credentials()
        now = now or datetime.now(UTC)
        stamp, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        payload = UNSIGNED if self.secure else _sha256(body)
        headers = {"host": self.host, "x-amz-content-sha256": payload, "x-amz-date": stamp, **extra}
        if creds.token:
            headers["x-amz-security-token"] = creds.token
        names = sorted(headers)
        canonical = "\n".join([method, path, "", *(f"{n}:{headers[n].strip()}" for n in names), "",
                               ";".join(names), payload])
        scope = f"{day}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()])
        signing_key = self._signing_keys.get((creds.secret_key, day))
        if signing_key is None:  # a new day or new credentials: a new key (and the old ones forgotten)
            signing_key = _hmac(_hmac(_hmac(_hmac(f"AWS4{creds.secret_key}".encode(), day), self.region), "s3"),
                                "aws4_request")
            self._signing_keys = {(creds.secret_key, day): signing_key}
        signature = hmac.new(signing_key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={creds.access_key}/{scope}, "
                                    f"SignedHeaders={';'.join(names)}, Signature={signature}")
        if method == "PUT":
            headers["content-length"] = str(data_size(body))
        return headers


def _sha256(body: Data) -> str:
    digest = hashlib.sha256()
    for part in parts(body):
        digest.update(part)
    return digest.hexdigest()


def _tag(xml: bytes, name: str) -> str:
    """The text of the first <name> in an S3 error body (no XML parser for two fields)."""
    text = xml.decode("utf-8", "replace")
    start = text.find(f"<{name}>")
    end = text.find(f"</{name}>", start)
    return text[start + len(name) + 2:end].strip() if start >= 0 and end > start else ""
