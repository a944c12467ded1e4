"""Fixtures over the real parts: a private Mosquitto, the MicroPython interpreter running the real
firmware, a hub on a temporary SQLite file, a gateway on a temporary directory.

See tests/README.md for what each fixture gives a test.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from simulator.broker import Broker

pytest_plugins = [p for p in ("tests.fixtures.device", "tests.fixtures.hub", "tests.fixtures.gateway",
                                "tests.fixtures.postgres")
                  if importlib.util.find_spec(p) is not None]

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors"


@pytest.fixture
def broker(tmp_path: Path):
    """A private Mosquitto on a free loopback port (anonymous access, persistence on)."""
    b = Broker(tmp_path / "mosquitto").start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture(scope="session")
def rating_vectors() -> list[dict]:
    return json.loads((VECTORS / "ratings.json").read_text())["valid"]


@pytest.fixture(scope="session")
def invalid_rating_vectors() -> list[dict]:
    return json.loads((VECTORS / "ratings.json").read_text())["invalid"]
