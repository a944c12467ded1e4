"""Fixtures over the real parts: a private Mosquitto, the MicroPython interpreter running the real
firmware, a hub on a temporary SQLite file, a gateway on a temporary directory.

See tests/README.md for what each fixture gives a test.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest

from simulator.broker import Broker
from tests.fixtures import ports

pytest_plugins = [p for p in ("tests.fixtures.device", "tests.fixtures.hub", "tests.fixtures.gateway",
                                "tests.fixtures.postgres")
                  if importlib.util.find_spec(p) is not None]

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "tests" / "vectors"


WORKERS_ENV = "HCP_TEST_WORKERS"  # how many test processes `-n auto` starts (tests/README.md)


def pytest_configure(config: pytest.Config) -> None:
    ports.install()  # servers' ports from this process's own block (tests/fixtures/ports.py)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """`-n auto` (in pyproject's addopts): HCP_TEST_WORKERS if set, else one per core, at least 2.
    Most tests wait on other processes (Mosquitto, MicroPython, the hub, a gateway), but the stress
    tests (kill -9, broker restarts, power cuts) need their processes to keep pace: with four
    workers on two cores and other load they missed their deadlines, so one per core until the
    worker count is measured on a quiet machine (HCP_TEST_WORKERS=4 to try more)."""
    if os.environ.get(WORKERS_ENV):
        return int(os.environ[WORKERS_ENV])
    return max(2, os.cpu_count() or 1)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In parallel runs, the tests marked `slow` first: started early, the longest ones run beside
    the many short ones instead of after them (with `--maxschedchunk 1` in addopts, each worker takes
    the next test when it is free). Otherwise the order stays as collected."""
    if os.environ.get("PYTEST_XDIST_WORKER"):
        items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable


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
