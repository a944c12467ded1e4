"""Hub test helpers: the store under test (every backend), keys (`device_key`), the vectors."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from hub.store import HubStore, SQLiteStore
from tests.fixtures.device import device_key  # noqa: F401 (the hub tests import it from here)

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "ratings.json"
BACKENDS = ["sqlite"]  # PostgreSQL joins here, and every store test runs on it too


def vectors() -> dict:
    return json.loads(VECTORS.read_text())


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=BACKENDS)
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], HubStore]:
    """Makes unopened stores of one backend, all on the same (initially empty) database."""
    if request.param == "sqlite":
        return lambda: SQLiteStore(tmp_path / "store" / "hub.sqlite3")
    raise AssertionError(f"no constructor for backend {request.param}")


@pytest.fixture
async def store(store_factory: Callable[[], HubStore]) -> AsyncIterator[HubStore]:
    """An open, empty store (once per backend)."""
    async with store_factory() as backend:
        yield backend
