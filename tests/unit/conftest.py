"""The unit tier: no service (PostgreSQL, Mosquitto, RabbitMQ), no model file, no espeak-ng and
no sox. SQLite in tmp_path is allowed (it is a library, not a service). A unit test that asks
for a fixture needing more fails at once, so the tier stays runnable anywhere in seconds."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

NEEDS_MORE = {"speech": "espeak-ng", "shared_models": "the model files", "wheel": "the model wheel",
              "data_dir": "the model files"}


@pytest.fixture(autouse=True)
def _unit_tier_needs_nothing_outside(request: pytest.FixtureRequest) -> None:
    wanted = [f"{name} ({NEEDS_MORE[name]})" for name in request.fixturenames if name in NEEDS_MORE]
    if wanted:
        pytest.fail(f"a unit test may not use {', '.join(wanted)}: move it to tests/integration")


@pytest.fixture
def database_url() -> Iterator[str]:
    """The unit tier's store is SQLite only; tests/integration runs the store on both backends."""
    yield ""
