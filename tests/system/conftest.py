"""What the system tests share: a cloud side as an operator runs it (the generated Mosquitto,
an ingester process, the store), started per test and stopped after it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.securecloud import SecureCloud


@pytest.fixture
def cloud(tmp_path: Path) -> Iterator[SecureCloud]:
    c = SecureCloud(tmp_path / "operator")
    c.start_broker()
    c.start_ingester()
    yield c
    c.close()
