"""Hub test helpers: the store under test (every backend), keys, the vectors."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from hub.store import HubStore, SQLiteStore

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "ratings.json"
BACKENDS = ["sqlite"]  # PostgreSQL joins here, and every store test runs on it too


def device_key(device: str) -> bytes:
    """A fixed 32-byte key per device id."""
    return hashlib.sha256(b"test device key " + device.encode()).digest()


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
