"""Hub test helpers: the backend under test (`hub_db`: every test that reaches a store runs once
per backend in BACKENDS), the store and the in-process app on it, keys (`device_key`), the vectors,
and builders of the gateway's device-report items (`health_item`, `alert_item`)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hub.config import HubSettings
from hub.store import HubStore, store_for
from tests.fixtures.device import device_key  # noqa: F401 (the hub tests import it from here)
from tests.fixtures.hub import HubApp, running_app

H1 = "H1"
GATEWAY_KEY = bytes(range(32))
VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "ratings.json"
BACKENDS = ["sqlite", "postgres"]  # PostgreSQL: tests/fixtures/postgres.py (HCP_PG_DSN or a throwaway cluster)


def vectors() -> dict:
    return json.loads(VECTORS.read_text())


HEALTH_AT = "2026-11-21T09:30:07.412+08:00"
RAISED_AT = "2026-11-21T09:31:00.000+08:00"
CLEARED_AT = "2026-11-21T09:45:00.000+08:00"


def health_payload(boot: int = 3, up: int = 81234, **fields: Any) -> dict:
    """A device's health message (docs/protocol.md, "health"); `fields` override."""
    return {"v": 1, "boot": boot, "up": up, "heap": 40912, "alloc_peak": 23104, "ob": 0,
            "fw": "0.1.0", "rssi": None, "clock": "mono", "stuck": [], "err": None,
            "cnt": {"press": 5, "rate": 4, "resend": 0, "reconn": 1, "err": 0, "stuck": 0,
                    "badmsg": 0, "badcon": 0}, **fields}


def health_item(device: str = "D07", boot: int = 3, up: int = 81234, window: str | None = "7",
                received_at: str = HEALTH_AT, presence: str | None = "online",
                health: dict | None = None, **fields: Any) -> dict:
    """A health item as the gateway forwards it; `fields` override or add item fields."""
    return {"kind": "health", "device": device, "window": window, "received_at": received_at,
            "presence": presence, "offset_ms": 1795239326000 - up,
            "health": health if health is not None else health_payload(boot, up), **fields}


def alert_item(alert_id: int = 17, state: str = "raised", device: str = "D07",
               alert: str = "stuck_button", window: str | None = "7",
               detail: str | None = "button(s) stuck: 3", raised_at: str = RAISED_AT,
               cleared_at: str | None = None, **fields: Any) -> dict:
    """An alert item as the gateway forwards it; a `cleared` one gets CLEARED_AT unless given."""
    if state == "cleared" and cleared_at is None:
        cleared_at = CLEARED_AT
    return {"kind": "alert", "id": alert_id, "device": device, "window": window, "alert": alert,
            "state": state, "detail": detail, "raised_at": raised_at, "cleared_at": cleared_at,
            **fields}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=BACKENDS)
def hub_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """HubSettings fields naming a new, empty database of one backend: a SQLite file, or a fresh
    schema on the test PostgreSQL server (skipped, with the reason, when there is none)."""
    if request.param == "sqlite":
        yield {"db_path": tmp_path / "store" / "hub.sqlite3", "db_url": ""}
    elif request.param == "postgres":
        with request.getfixturevalue("pg_server").schema() as url:
            yield {"db_url": url}
    else:
        raise AssertionError(f"no database for backend {request.param}")


def make_version_1_database(run_script: Callable[[str], Any], execute: Callable[[str, tuple], Any],
                            script: str, device: str, hall: str, key: bytes, items: list) -> None:
    """A database as a version-1 hub left it: its schema (`script`, the dialect's first migration),
    one registered device, and the rows it stored for `items` (made by the ingest rules; no
    ledger, no counters). `run_script(sql)` runs several statements, `execute(sql, params)` one
    (`?` placeholders)."""
    from hcp.protocol import key_id
    from hub.ingest import DeviceKeys, decide, parse_item
    from hub.migrations import SCHEMA_VERSION_TABLE
    from hub.store import tables
    at = tables.now()
    run_script(SCHEMA_VERSION_TABLE)
    run_script(script)
    execute("INSERT INTO schema_version (version, applied_at) VALUES (1, ?)", (at,))
    execute("INSERT INTO devices (device, hall, window_id, registered_at, updated_at) VALUES (?, ?, '1', ?, ?)",
            (device, hall, at, at))
    execute("INSERT INTO device_keys (device, kid, key_hex, registered_at) VALUES (?, ?, ?, ?)",
            (device, key_id(key), key.hex(), at))
    plan = decide([parse_item(item, hall) for item in items],
                  {device: DeviceKeys(hall, "1", {key_id(key): key})}, {}, {}, {}, {})
    for table, columns, rows in (("ratings", tables.RATING_INSERT_COLUMNS, tables.rating_rows(plan, at)),
                                 ("services", tables.SERVICE_COLUMNS, tables.service_rows(plan, at))):
        for row in rows:
            execute(f"INSERT INTO {table} ({columns}) VALUES ({','.join('?' * len(row))})", row)


def run_sql(hub_db: dict[str, Any], sql: str, params: tuple = ()) -> list[tuple]:
    """Run one statement straight on the test database, behind the hub's back (`?` placeholders on
    both backends), committed: how the tests play someone editing the database by hand."""
    if hub_db.get("db_url"):
        import psycopg
        with psycopg.connect(hub_db["db_url"], autocommit=True) as conn:
            cursor = conn.execute(sql.replace("?", "%s"), params)
            return cursor.fetchall() if cursor.description else []
    import sqlite3
    with sqlite3.connect(hub_db["db_path"]) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture
def store_factory(hub_db: dict[str, Any]) -> Callable[[], HubStore]:
    """Makes unopened stores of one backend, all on the same (initially empty) database."""
    settings = HubSettings(**hub_db)
    return lambda: store_for(settings)


@pytest.fixture
async def store(store_factory: Callable[[], HubStore]) -> AsyncIterator[HubStore]:
    """An open, empty store (once per backend)."""
    async with store_factory() as backend:
        yield backend


@pytest.fixture
def hub_app(tmp_path: Path, hub_db: dict[str, Any]) -> Iterator[HubApp]:
    """The hub app served in this process (tests/fixtures/hub.py) on each backend's database."""
    with running_app(tmp_path / "hub-app", **hub_db) as hub:
        yield hub


@pytest.fixture
def hall(hub_app):
    """Hall H1 with devices D07 (window 7) and D08 (window 8): -> its gateway token."""
    token = hub_app.register_gateway(H1, GATEWAY_KEY)
    hub_app.register_device("D07", H1, "7", device_key("D07"))
    hub_app.register_device("D08", H1, "8", device_key("D08"))
    return token
