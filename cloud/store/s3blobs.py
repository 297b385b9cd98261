"""Blobs in an S3-compatible object store (blob_store = "s3"): AWS S3, Cloudflare R2, Ceph's
RADOS Gateway, MinIO, Garage, SeaweedFS, rclone's `serve s3`. One bucket, made beforehand;
each object's key is the blob's path under an optional prefix, so it holds its owner's id as
a path segment (`<prefix>blobs/<owner id>/<clip id>.bin`) and a bucket policy or lifecycle
rule can act per owner.

An object PUT is whole or absent, and S3 reads what it acknowledged, so a blob is durable
once its PUT returns; a batch's PUTs go concurrently, before the rows that point at them are
committed (store/clips.py): one PUT per clip, made by s3put.py (SigV4 over kept-alive
connections) rather than boto3, whose request machinery cost more CPU than the rest of the
clip's ingest. `keep_existing` asks the server not to replace an object that is there
(If-None-Match: *, which AWS, R2, MinIO and Ceph honour); for a server that ignores the
condition (`conditional_writes = false`) it looks first, one HEAD more.
Credentials come the way every S3 tool takes them
(AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, the shared credentials file, a profile or an
instance role), never from cloud.toml, and are never logged. A server that cannot be reached,
or refuses, is StoreUnavailable: nothing is acked, and the message comes again.

Erasure deletes every object under the owner's prefix and, where the bucket keeps versions,
every version of each (deploy/SCALING.md says what to set so that deleted means deleted).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from earmark.cloud.store.database import StoreError, StoreUnavailable
from earmark.cloud.store.s3put import Answer, Credentials, LeanS3, Unreachable
from earmark.runtime.durable import Data
from earmark.wire.errors import EarmarkError

if TYPE_CHECKING:
    from earmark.cloud.settings import S3Settings

CLIPS, SET_ASIDE = "blobs", "set-aside"
logging.getLogger("botocore").setLevel(logging.WARNING)  # not "found credentials in …" on every start
# A whole batch's PUTs in flight at once (an ingester's batch is at most 64 clips): a PUT to
# a remote object store takes tens of milliseconds, and 8 at a time held an ingester to about
# 8 / 30 ms ≈ 270 clips/s whatever its CPU. On loopback 64 cost the same CPU per clip as 8.
PUT_THREADS = 64
NO_CREDENTIALS = ("no credentials for the object store: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or a profile, "
                  "or the shared credentials file) for the ingester")


class S3Blobs:
    def __init__(self, settings: S3Settings) -> None:
        import boto3
        from botocore.config import Config

        self.settings = settings
        self.bucket, self.prefix = settings.bucket, settings.prefix
        session = boto3.session.Session(profile_name=settings.profile or None)
        self.client: Any = session.client(
            "s3", endpoint_url=settings.endpoint_url or None, region_name=settings.region or None,
            verify=settings.ca_bundle or None,
            config=Config(s3={"addressing_style": settings.addressing_style}, retries={"max_attempts": 3,
                          "mode": "standard"}, connect_timeout=5, read_timeout=30,
                          max_pool_connections=16))
        self._session = session
        self.lean = LeanS3(settings.endpoint_url, settings.bucket, self.client.meta.region_name or "",
                           settings.addressing_style, self._credentials, settings.ca_bundle)
        self._pool = ThreadPoolExecutor(max_workers=PUT_THREADS, thread_name_prefix="s3-put")
        self._versioned: bool | None = None
        self._lock = threading.Lock()
        self.requests: dict[str, int] = {}  # by kind (PUT, GET, …): what bench/ingest_throughput.py counts

    # -- the BlobStore interface -----------------------------------------------------------

    def write(self, relative: str, data: Data) -> None:
        self.write_many([(relative, data)])

    def write_many(self, blobs: list[tuple[str, Data]], keep_existing: bool = False) -> set[str]:
        """Every blob PUT, concurrently; returns those kept as they were (`keep_existing`)."""
        def put(item: tuple[str, Data]) -> str | None:
            relative, data = item
            if keep_existing and not self.settings.conditional_writes and self.exists(relative):
                return relative  # a server that ignores If-None-Match: looked for first
            answer = self._lean_call("PUT", lambda: self.lean.put(self._key(relative), data, keep_existing))
            if answer.status == 412 or answer.code == "PreconditionFailed":  # another writer's object got there first
                return relative
            if answer.code:
                raise StoreUnavailable(f"could not write a blob to s3://{self.bucket}: {answer.code}: "
                                       f"{answer.message}")
            return None

        return {r for r in self._pool.map(put, blobs) if r is not None}

    def read(self, relative: str) -> bytes:
        try:
            answer = self._call("GET", self.client.get_object, Bucket=self.bucket, Key=self._key(relative))
        except _Refused as exc:
            if exc.code in ("NoSuchKey", "404"):
                raise FileNotFoundError(relative) from None
            raise StoreUnavailable(f"could not read a blob from s3://{self.bucket}: {exc}") from None
        return bytes(answer["Body"].read())

    def exists(self, relative: str) -> bool:
        answer = self._lean_call("HEAD", lambda: self.lean.head(self._key(relative)))
        if answer.status == 404:
            return False
        if answer.code:
            raise StoreUnavailable(f"could not look for a blob in s3://{self.bucket}: HTTP {answer.status}")
        return True

    def remove(self, relative: str) -> None:
        self.remove_many([relative])

    def remove_many(self, relatives: list[str]) -> None:
        self._delete([self._key(r) for r in relatives])

    def set_aside(self, relative: str) -> str:
        target = f"{SET_ASIDE}/{relative}"
        self._call("COPY", self.client.copy_object, Bucket=self.bucket, Key=self._key(target),
                   CopySource={"Bucket": self.bucket, "Key": self._key(relative)})
        self.remove(relative)
        return target

    def remove_owner(self, owner_id: str) -> None:
        """Every object under the owner's prefixes (and every version of each, if the bucket
        keeps them): erasure."""
        for folder in (f"{CLIPS}/{owner_id}/", f"{SET_ASIDE}/{CLIPS}/{owner_id}/"):
            self._delete([key for key, _ in self._list(self._key(folder))])

    def owner_folders(self) -> list[str]:
        found: list[str] = []
        for page in self._pages(Prefix=self._key(f"{CLIPS}/"), Delimiter="/"):
            found += [p["Prefix"][len(self._key(f"{CLIPS}/")):].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return found

    def loose_files(self) -> list[str]:
        return []  # no temp objects: a PUT is whole or absent

    @staticmethod
    def is_temp(relative: str) -> bool:
        return False

    def files_under(self, folder: str) -> Iterator[tuple[str, float]]:
        for key, modified in self._list(self._key(folder.rstrip("/") + "/")):
            yield key[len(self.prefix):], modified

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self.lean.close()

    # -- checks and helpers ----------------------------------------------------------------

    def check(self) -> None:
        """Write, read and delete a probe object: StoreError naming what the object store
        refused (no such bucket, no rights, wrong credentials: a set-up to fix), or
        StoreUnavailable if it does not answer (worth waiting for)."""
        probe = self._key(f"earmark-probe/{os.getpid()}-{os.urandom(4).hex()}")
        for what, kind, method, extra in (("write", "PUT", self.client.put_object, {"Body": b"probe"}),
                                          ("read", "GET", self.client.get_object, {}),
                                          ("delete", "DELETE", self.client.delete_object, {})):
            try:
                self._call(kind, method, Bucket=self.bucket, Key=probe, **extra)
            except _Refused as exc:
                raise StoreError(f"the object store cannot {what} in s3://{self.bucket}/{self.prefix}: {exc}") from None

    def _key(self, relative: str) -> str:
        return self.prefix + relative

    def _credentials(self) -> Credentials:
        """boto3's resolved credentials (it refreshes an instance role's when due)."""
        found = self._session.get_credentials()
        if found is None:
            raise StoreError(NO_CREDENTIALS)
        frozen = found.get_frozen_credentials()
        return Credentials(frozen.access_key, frozen.secret_key, frozen.token or "")

    def _lean_call(self, kind: str, request: Callable[[], Answer]) -> Answer:
        """One request of the ingest path (s3put.py), counted; unreachable is StoreUnavailable."""
        with self._lock:
            self.requests[kind] = self.requests.get(kind, 0) + 1
        try:
            return request()
        except Unreachable as exc:
            raise StoreUnavailable(f"the object store at {self.settings.endpoint_url or 'AWS S3'} does not answer "
                                   f"({exc})") from None

    def _call(self, kind: str, method: Any, **params: Any) -> Any:
        """One request, counted; botocore's errors as _Refused (with the S3 error code) or
        StoreUnavailable (the server unreachable), in one line."""
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

        with self._lock:
            self.requests[kind] = self.requests.get(kind, 0) + 1
        try:
            return method(**params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise _Refused(str(error.get("Code", "")), str(error.get("Message", "")) or str(exc)) from None
        except NoCredentialsError:
            raise StoreError(NO_CREDENTIALS) from None
        except BotoCoreError as exc:  # unreachable, timed out: say which, never the secret
            raise StoreUnavailable(f"the object store at {self.settings.endpoint_url or 'AWS S3'} does not answer "
                                   f"({type(exc).__name__}: {exc})") from None

    def _pages(self, **params: Any) -> Iterator[dict[str, Any]]:
        token: str | None = None
        while True:
            extra = {"ContinuationToken": token} if token else {}
            try:
                page = self._call("LIST", self.client.list_objects_v2, Bucket=self.bucket, **params, **extra)
            except _Refused as exc:
                raise StoreUnavailable(f"could not list s3://{self.bucket}: {exc}") from None
            yield page
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")

    def _list(self, prefix: str) -> Iterator[tuple[str, float]]:
        for page in self._pages(Prefix=prefix):
            for item in page.get("Contents", []):
                yield item["Key"], item["LastModified"].timestamp()

    def _delete(self, keys: list[str]) -> None:
        """The objects, and every version of each where the bucket keeps versions."""
        for start in range(0, len(keys), 1000):
            chunk = keys[start:start + 1000]
            objects = [{"Key": k} for k in chunk] + self._versions(chunk)
            for at in range(0, len(objects), 1000):
                try:
                    self._call("DELETE", self.client.delete_objects, Bucket=self.bucket,
                               Delete={"Objects": objects[at:at + 1000], "Quiet": True})
                except _Refused as exc:
                    raise StoreUnavailable(f"could not delete blobs in s3://{self.bucket}: {exc}") from None

    def _versions(self, keys: list[str]) -> list[dict[str, str]]:
        """Every stored version of these keys (and delete marker), if the bucket is versioned."""
        if self._versioned is False or not keys:
            return []
        try:
            status = self._call("VERSIONING", self.client.get_bucket_versioning, Bucket=self.bucket).get("Status")
        except _Refused:
            status = None  # a server without versioning (rclone's serve s3)
        self._versioned = status in ("Enabled", "Suspended")
        if not self._versioned:
            return []
        wanted, found = set(keys), []
        prefix = os.path.commonprefix(keys)  # noqa: RUF071 (a key prefix, not a path)
        marker: dict[str, str] = {}
        while True:
            page = self._call("LIST", self.client.list_object_versions, Bucket=self.bucket, Prefix=prefix, **marker)
            for item in page.get("Versions", []) + page.get("DeleteMarkers", []):
                if item["Key"] in wanted:
                    found.append({"Key": item["Key"], "VersionId": item["VersionId"]})
            if not page.get("IsTruncated"):
                return found
            marker = {"KeyMarker": page["NextKeyMarker"], "VersionIdMarker": page["NextVersionIdMarker"]}


class _Refused(EarmarkError):
    """The object store's answer to a request it refused (internal: mapped at each call site)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
