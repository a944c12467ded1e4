"""The hub's schema as ordered migrations, one list of versions for every backend:
`MIGRATIONS[i]` takes the schema to version i+1, with its SQLite and its PostgreSQL text.

A migration, once released, is never edited: a change is a new entry at the end, in both dialects
and with the same meaning. A store applies every entry above the version recorded in
`schema_version`, each in its own transaction. Column names avoid words PostgreSQL reserves
(`window`, `key`). PostgreSQL keeps the SQLite column types where they are compared as text
(times are the ISO strings as sent; payloads are canonical JSON compared as strings, so TEXT, not
JSONB); integers are BIGINT, flags BOOLEAN, ingest order an identity column.
"""

from __future__ import annotations

from dataclasses import dataclass

_V1 = """
CREATE TABLE gateways (
    hall          TEXT PRIMARY KEY,
    token_sha256  TEXT NOT NULL UNIQUE,          -- hex SHA-256 of the ingest token; the token is never stored
    key_hex       TEXT NOT NULL,                 -- the gateway's phone-token signing key
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL                  -- last registration (token rotation)
);

CREATE TABLE devices (
    device        TEXT PRIMARY KEY,
    hall          TEXT NOT NULL,
    window_id     TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

-- Every key a device ever had: old ratings keep verifying after a key rotation.
CREATE TABLE device_keys (
    device        TEXT NOT NULL REFERENCES devices (device),
    kid           TEXT NOT NULL,
    key_hex       TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    retired_at    TEXT,                          -- set when a newer key was registered
    PRIMARY KEY (device, kid)
);

CREATE TABLE services (
    hall          TEXT NOT NULL,
    id            TEXT NOT NULL,
    ticket        TEXT NOT NULL,
    window_id     TEXT NOT NULL,
    staff_id      TEXT,
    staff_name    TEXT,
    matter_code   TEXT,
    matter_name   TEXT,
    case_no       TEXT,
    unit          TEXT,
    accepted_at   TEXT,
    finished_at   TEXT,
    outcome       TEXT NOT NULL CHECK (outcome IN ('finished', 'no_show')),
    payload       TEXT NOT NULL,                 -- canonical JSON of the item: duplicate vs conflict
    ingested_at   TEXT NOT NULL,
    PRIMARY KEY (hall, id)
);

CREATE TABLE ratings (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,   -- ingest order
    device         TEXT NOT NULL,
    n              INTEGER NOT NULL CHECK (n >= 1),
    hall           TEXT NOT NULL,
    boot           INTEGER NOT NULL,
    mono           INTEGER NOT NULL,
    session        TEXT,
    score          INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
    kid            TEXT NOT NULL,
    sig            TEXT NOT NULL,
    received_at    TEXT NOT NULL,                -- gateway wall clock, as sent
    offset_ms      INTEGER NOT NULL,
    service        TEXT,                         -- binding (NULL when unbound)
    ticket         TEXT,
    window_id      TEXT,                         -- the binding's window, else the device's window
    staff_id       TEXT,
    matter_code    TEXT,
    case_no        TEXT,
    unit           TEXT,
    unbound_reason TEXT,
    verified       INTEGER NOT NULL,
    ingested_at    TEXT NOT NULL,
    item           TEXT NOT NULL,                -- the item as posted
    UNIQUE (device, n),
    FOREIGN KEY (device, kid) REFERENCES device_keys (device, kid)
);
CREATE INDEX ratings_hall ON ratings (hall, seq);
CREATE INDEX ratings_window ON ratings (hall, window_id, seq);
CREATE INDEX ratings_ticket ON ratings (ticket, seq);

CREATE TABLE rejections (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            TEXT NOT NULL,
    hall          TEXT NOT NULL,
    item_key      TEXT,                          -- NULL when the item was too broken to name
    reason        TEXT NOT NULL,
    item          TEXT NOT NULL                  -- JSON, truncated
);
CREATE INDEX rejections_reason ON rejections (reason);

CREATE TABLE alerts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    at            TEXT NOT NULL,
    kind          TEXT NOT NULL,                 -- tampering, service_conflict
    hall          TEXT NOT NULL,
    item_key      TEXT NOT NULL,
    detail        TEXT NOT NULL                  -- JSON: what was stored, what was posted
);
CREATE INDEX alerts_kind ON alerts (kind, id);
"""

# Version 2: the gateway's device reports (item kinds `health` and `alert`).
_V2 = """
-- Every health snapshot a gateway forwarded, by its key (hall, device, boot, up).
CREATE TABLE device_health (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,   -- ingest order
    hall          TEXT NOT NULL,
    device        TEXT NOT NULL,
    boot          INTEGER NOT NULL,
    up            INTEGER NOT NULL,                    -- device ms since boot
    window_id     TEXT,                                -- as the gateway sent it
    received_at   TEXT NOT NULL,                       -- gateway wall clock, as sent
    received_ms   INTEGER NOT NULL,                    -- the same as Unix ms: orders across offsets
    presence      TEXT CHECK (presence IN ('online', 'offline')),
    offset_ms     INTEGER,
    payload       TEXT NOT NULL,                       -- canonical JSON of the item, the device's payload whole
    ingested_at   TEXT NOT NULL,
    UNIQUE (hall, device, boot, up)
);
CREATE INDEX device_health_received ON device_health (hall, device, received_ms);

-- The newest snapshot (by received_ms, then boot and up) of each device in each hall.
CREATE TABLE device_health_latest (
    hall          TEXT NOT NULL,
    device        TEXT NOT NULL,
    boot          INTEGER NOT NULL,
    up            INTEGER NOT NULL,
    received_ms   INTEGER NOT NULL,
    PRIMARY KEY (hall, device),
    FOREIGN KEY (hall, device, boot, up) REFERENCES device_health (hall, device, boot, up)
);

-- One row per gateway alert: raised, then updated by its clear (or made by a clear that came first).
CREATE TABLE device_alerts (
    hall          TEXT NOT NULL,
    alert_id      INTEGER NOT NULL CHECK (alert_id >= 1),  -- the gateway's alert number
    device        TEXT NOT NULL,
    window_id     TEXT,                                -- NULL: not registered at the gateway
    alert         TEXT NOT NULL,                       -- offline, stuck_button, …; unknown kinds as sent
    state         TEXT NOT NULL CHECK (state IN ('raised', 'cleared')),
    detail        TEXT,                                -- the newest state's
    raised_at     TEXT NOT NULL,
    cleared_at    TEXT,
    raised_item   TEXT,                                -- canonical JSON of each state's item:
    cleared_item  TEXT,                                -- duplicate vs conflict; NULL until it arrives
    ingested_at   TEXT NOT NULL,                       -- first state stored
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (hall, alert_id),
    CHECK ((state = 'cleared') = (cleared_at IS NOT NULL AND cleared_item IS NOT NULL)),
    CHECK (raised_item IS NOT NULL OR cleared_item IS NOT NULL)
);
CREATE INDEX device_alerts_device ON device_alerts (hall, device, alert_id);
CREATE INDEX device_alerts_open ON device_alerts (hall, device) WHERE cleared_at IS NULL;

CREATE INDEX devices_hall ON devices (hall, device);               -- a hall's devices, in order
"""

# ---------------------------------------------------------------------------- PostgreSQL

_PG_V1 = """
CREATE TABLE gateways (
    hall          TEXT PRIMARY KEY,
    token_sha256  TEXT NOT NULL UNIQUE,
    key_hex       TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE devices (
    device        TEXT PRIMARY KEY,
    hall          TEXT NOT NULL,
    window_id     TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE device_keys (
    device        TEXT NOT NULL REFERENCES devices (device),
    kid           TEXT NOT NULL,
    key_hex       TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    retired_at    TEXT,
    PRIMARY KEY (device, kid)
);

CREATE TABLE services (
    hall          TEXT NOT NULL,
    id            TEXT NOT NULL,
    ticket        TEXT NOT NULL,
    window_id     TEXT NOT NULL,
    staff_id      TEXT,
    staff_name    TEXT,
    matter_code   TEXT,
    matter_name   TEXT,
    case_no       TEXT,
    unit          TEXT,
    accepted_at   TEXT,
    finished_at   TEXT,
    outcome       TEXT NOT NULL CHECK (outcome IN ('finished', 'no_show')),
    payload       TEXT NOT NULL,
    ingested_at   TEXT NOT NULL,
    PRIMARY KEY (hall, id)
);

CREATE TABLE ratings (
    seq            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device         TEXT NOT NULL,
    n              BIGINT NOT NULL CHECK (n >= 1),
    hall           TEXT NOT NULL,
    boot           BIGINT NOT NULL,
    mono           BIGINT NOT NULL,
    session        TEXT,
    score          INTEGER NOT NULL CHECK (score BETWEEN 1 AND 5),
    kid            TEXT NOT NULL,
    sig            TEXT NOT NULL,
    received_at    TEXT NOT NULL,
    offset_ms      BIGINT NOT NULL,
    service        TEXT,
    ticket         TEXT,
    window_id      TEXT,
    staff_id       TEXT,
    matter_code    TEXT,
    case_no        TEXT,
    unit           TEXT,
    unbound_reason TEXT,
    verified       BOOLEAN NOT NULL,
    ingested_at    TEXT NOT NULL,
    item           TEXT NOT NULL,
    UNIQUE (device, n),
    FOREIGN KEY (device, kid) REFERENCES device_keys (device, kid)
);
CREATE INDEX ratings_hall ON ratings (hall, seq);
CREATE INDEX ratings_window ON ratings (hall, window_id, seq);
CREATE INDEX ratings_ticket ON ratings (ticket, seq);

CREATE TABLE rejections (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            TEXT NOT NULL,
    hall          TEXT NOT NULL,
    item_key      TEXT,
    reason        TEXT NOT NULL,
    item          TEXT NOT NULL
);
CREATE INDEX rejections_reason ON rejections (reason);

CREATE TABLE alerts (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at            TEXT NOT NULL,
    kind          TEXT NOT NULL,
    hall          TEXT NOT NULL,
    item_key      TEXT NOT NULL,
    detail        TEXT NOT NULL
);
CREATE INDEX alerts_kind ON alerts (kind, id);
"""

_PG_V2 = """
CREATE TABLE device_health (
    seq           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    hall          TEXT NOT NULL,
    device        TEXT NOT NULL,
    boot          BIGINT NOT NULL,
    up            BIGINT NOT NULL,
    window_id     TEXT,
    received_at   TEXT NOT NULL,
    received_ms   BIGINT NOT NULL,
    presence      TEXT CHECK (presence IN ('online', 'offline')),
    offset_ms     BIGINT,
    payload       TEXT NOT NULL,
    ingested_at   TEXT NOT NULL,
    UNIQUE (hall, device, boot, up)
);
CREATE INDEX device_health_received ON device_health (hall, device, received_ms);

CREATE TABLE device_health_latest (
    hall          TEXT NOT NULL,
    device        TEXT NOT NULL,
    boot          BIGINT NOT NULL,
    up            BIGINT NOT NULL,
    received_ms   BIGINT NOT NULL,
    PRIMARY KEY (hall, device),
    FOREIGN KEY (hall, device, boot, up) REFERENCES device_health (hall, device, boot, up)
);

CREATE TABLE device_alerts (
    hall          TEXT NOT NULL,
    alert_id      BIGINT NOT NULL CHECK (alert_id >= 1),
    device        TEXT NOT NULL,
    window_id     TEXT,
    alert         TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('raised', 'cleared')),
    detail        TEXT,
    raised_at     TEXT NOT NULL,
    cleared_at    TEXT,
    raised_item   TEXT,
    cleared_item  TEXT,
    ingested_at   TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    PRIMARY KEY (hall, alert_id),
    CHECK ((state = 'cleared') = (cleared_at IS NOT NULL AND cleared_item IS NOT NULL)),
    CHECK (raised_item IS NOT NULL OR cleared_item IS NOT NULL)
);
CREATE INDEX device_alerts_device ON device_alerts (hall, device, alert_id);
CREATE INDEX device_alerts_open ON device_alerts (hall, device) WHERE cleared_at IS NULL;

CREATE INDEX devices_hall ON devices (hall, device);
"""


# ---------------------------------------------------------------------------- the list


@dataclass(frozen=True)
class Migration:
    """One schema version: what it adds, and its text for each backend."""

    summary: str
    sqlite: str
    postgres: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration("gateways, devices and keys, services, ratings, rejections, alerts", _V1, _PG_V1),
    Migration("the gateways' device reports: device_health(_latest), device_alerts", _V2, _PG_V2),
)
SCHEMA_VERSION = len(MIGRATIONS)  # the newest version this code knows

SQLITE_MIGRATIONS: tuple[str, ...] = tuple(m.sqlite for m in MIGRATIONS)
POSTGRES_MIGRATIONS: tuple[str, ...] = tuple(m.postgres for m in MIGRATIONS)

# The same text on both backends.
SCHEMA_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY,
    applied_at TEXT NOT NULL
)
"""
