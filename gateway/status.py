"""The hall status document: one dict that `GET /api/v1/status`, the status page (`status_page.py`),
`/metrics` (`metrics.py`) and `hcp gateway status` all show, so the four never disagree.

`collect(tx)` reads everything that lives in the SQLite file; the running gateway adds what only it
knows (MQTT link, hub link, writer backlog). `read_file(path)` builds the same document from the file
alone, read-only, for when the gateway is not running (`"live": false`, link states unknown).
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import aiosqlite

from gateway.alerts import open_alerts, recent_cleared
from gateway.presence import effective
from gateway.schema import SCHEMA_VERSION
from gateway.storage import StorageHealth
from gateway.store import Tx

GAPS_SHOWN = 5  # missing-counter ranges listed per device
REGISTRY_SCHEMA = 2  # the schema version that brought device_watch, device_keys, alerts


async def collect(tx: Tx, now: float) -> dict[str, Any]:
    """The file's part of the status document (see docs/gateway.md, "Status")."""
    rows = await tx.all(
        "SELECT d.*, w.timed_out_at, w.health_period_s, w.offset_ms, w.offset_at, w.clock_boot, "
        "w.boot_max FROM devices d LEFT JOIN device_watch w ON w.device = d.device "
        "ORDER BY d.device")  # the views sort by window for people
    keys: dict[str, list[dict]] = {}
    for k in await tx.all("SELECT device, kid, source, first_seen, last_seen FROM device_keys "
                          "ORDER BY device, last_seen DESC"):
        keys.setdefault(k["device"], []).append(
            {"kid": k["kid"], "source": k["source"], "first_seen": k["first_seen"],
             "last_seen": k["last_seen"]})
    gaps: dict[str, list[list[int]]] = {}
    for g in await tx.all("SELECT device, n_from, n_to FROM rating_gaps ORDER BY device, n_from"):
        gaps.setdefault(g["device"], []).append([g["n_from"], g["n_to"]])
    alerts = await open_alerts(tx)
    by_device: dict[str, list[str]] = {}
    for a in alerts:
        by_device.setdefault(a.device, []).append(a.kind)
    devices = [_device(r, keys.get(r["device"], []), gaps.get(r["device"], []),
                       by_device.get(r["device"], [])) for r in rows]
    oldest = await tx.one("SELECT created_at FROM outbox WHERE state = 'pending' ORDER BY seq LIMIT 1")
    registered = [d for d in devices if d["registered"]]
    return {
        "v": 1, "time": now,
        "summary": {
            "devices": len(registered),
            "online": sum(d["presence"] == "online" for d in registered),
            "offline": sum(d["presence"] == "offline" for d in registered),
            "never_seen": sum(d["presence"] is None for d in registered),
            "unregistered": sum(not d["registered"] and not d["retired_at"] for d in devices),
            "retired": sum(bool(d["retired_at"]) for d in devices),
            "alerts_open": len(alerts),
        },
        "outbox": await tx.outbox_depth(),
        "dead_letters": await tx.outbox_dead_by_reason(),  # rows the hub rejected, by its reason
        "outbox_oldest_pending_s": (max(0.0, now - oldest["created_at"]) if oldest else None),
        "devices": devices,
        "alerts": {"open": [a.as_dict() for a in alerts],
                   "recent": [a.as_dict() for a in await recent_cleared(tx)]},
        "quarantine": await tx.quarantine_by_reason(),
        "counters": await tx.counters(),
    }


def _device(r: sqlite3.Row, keys: list[dict], gaps: list[list[int]], alerts: list[str]) -> dict:
    p = effective(r["presence"], r["presence_at"], r["timed_out_at"], r["registered_at"])
    missing = sum(b - a + 1 for a, b in gaps)
    return {
        "device": r["device"], "window": r["window"], "registered": r["window"] is not None,
        "retired_at": r["retired_at"] if "retired_at" in r.keys() else None,
        "presence": p.state, "offline_reason": p.reason if p.state != "online" else None,
        "presence_since": p.since,
        "boot": r["presence_boot"], "conn": r["presence_conn"], "presence_at": r["presence_at"],
        "timed_out_at": r["timed_out_at"], "last_seen": r["last_seen"], "fw": r["fw"],
        "kid": keys[0]["kid"] if keys else None, "keys": keys,
        "last_rating": ({"n": r["last_rating_n"], "at": r["last_rating_at"]}
                        if r["last_rating_n"] is not None else None),
        "health": json.loads(r["health"]) if r["health"] else None, "health_at": r["health_at"],
        "health_period_s": r["health_period_s"],
        "clock": ({"offset_ms": r["offset_ms"], "boot": r["clock_boot"], "at": r["offset_at"]}
                  if r["offset_ms"] is not None else None),
        "gaps": {"missing": missing, "ranges": gaps[:GAPS_SHOWN]} if gaps else None,
        "alerts": alerts,
    }


async def read_file(path: Path, now: float) -> dict[str, Any]:
    """The status document from a gateway's SQLite file, read-only (the gateway may be stopped).

    Raises FileNotFoundError when there is no file, RuntimeError when its schema predates the
    registry (start the gateway once to migrate it) or is newer than this gateway's."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no gateway database at {path}")
    # check_same_thread=False as in Store.open: Tx runs its statements on the loop's thread
    db = await aiosqlite.connect(f"file:{Path(path).resolve()}?mode=ro", uri=True,
                                 isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    try:
        async with db.execute("PRAGMA user_version") as cur:
            version = (await cur.fetchone())[0]
        if version < REGISTRY_SCHEMA:
            raise RuntimeError(f"{path} has schema version {version}, older than the registry "
                               f"({REGISTRY_SCHEMA}): start the gateway once to migrate it")
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{path} has schema version {version}, newer than this gateway "
                               f"({SCHEMA_VERSION}): upgrade it")
        await db.execute("BEGIN")
        doc = await collect(Tx(db), now)
        await db.execute("ROLLBACK")
    finally:
        await db.close()
    # whether the file takes writes is known only to the running gateway; its sizes are not
    store = {"state": "unknown", **StorageHealth(Path(path)).usage(), "retention": None}
    return {**doc, "live": False, "db": str(path),
            "mqtt": {"broker": None, "connected": None, "connects": None},
            "hub": {"state": "unknown"}, "store": store}
