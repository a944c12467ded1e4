"""The SQLite schema as ordered migrations: `SQLITE_MIGRATIONS[i]` takes the schema to version i+1.

A migration, once released, is never edited: a change is a new entry at the end. The store applies
every entry above the version recorded in `schema_version`, each in its own transaction.
Column names avoid words PostgreSQL reserves (`window`, `key`), so a PostgreSQL schema can keep them.
"""

from __future__ import annotations

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

SQLITE_MIGRATIONS: tuple[str, ...] = (_V1,)

SCHEMA_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY,
    applied_at TEXT NOT NULL
)
"""
