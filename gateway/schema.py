"""The gateway's SQLite schema, versioned with `PRAGMA user_version`.

`MIGRATIONS[i]` takes a database from version i to i+1; a new version appends a step and never
edits an old one, so every gateway file in the field can be brought forward.
"""

from __future__ import annotations

_V1 = """
CREATE TABLE devices (
    device        TEXT PRIMARY KEY,
    window        TEXT,            -- NULL: seen on MQTT, never registered
    registered_at REAL,
    presence      TEXT CHECK (presence IN ('online', 'offline')),
    presence_boot INTEGER,
    presence_conn INTEGER,
    presence_at   REAL,
    last_seen     REAL,
    fw            TEXT,
    health        TEXT,            -- the last health payload, JSON as received
    health_at     REAL,
    last_rating_n  INTEGER,
    last_rating_at REAL,
    cmd_reply     TEXT,
    cmd_reply_at  REAL
);
CREATE INDEX devices_window ON devices (window, registered_at);

CREATE TABLE queue_events (
    event_id    TEXT PRIMARY KEY,
    received_at REAL NOT NULL,
    type        TEXT NOT NULL,
    ticket      TEXT NOT NULL,
    window      TEXT NOT NULL,
    body        TEXT NOT NULL,     -- the request as received
    service     TEXT NOT NULL,     -- the answer given, repeated for a duplicate
    session     TEXT,
    reason      TEXT
);

CREATE TABLE services (
    id           TEXT PRIMARY KEY,
    ticket       TEXT NOT NULL,
    window       TEXT NOT NULL,
    opened_rx    REAL NOT NULL,    -- gateway wall clock
    state        TEXT NOT NULL CHECK (state IN ('open', 'ended')),
    staff_id     TEXT,
    staff_name   TEXT,
    matter_code  TEXT,
    matter_name  TEXT,
    case_no      TEXT,
    unit         TEXT,
    called_at    TEXT,             -- queue-system times, ISO 8601 as sent
    started_at   TEXT,
    accepted_at  TEXT,
    finished_at  TEXT,
    outcome      TEXT CHECK (outcome IN ('finished', 'no_show')),
    ended_rx     REAL,
    session_opened_at REAL,
    session_device    TEXT,
    rated_by     TEXT              -- rating id bound to this service's session
);
CREATE INDEX services_open ON services (window, ticket) WHERE state = 'open';
CREATE INDEX services_ended ON services (window, ended_rx) WHERE state = 'ended';

CREATE TABLE ratings (
    device      TEXT NOT NULL,
    n           INTEGER NOT NULL,
    payload     TEXT NOT NULL,     -- the device's JSON exactly as received
    sess        TEXT,
    score       INTEGER NOT NULL,
    received_at REAL NOT NULL,     -- gateway wall clock
    offset_ms   INTEGER NOT NULL,  -- wall ms - device mono
    service     TEXT,
    ticket      TEXT,
    window      TEXT,
    staff_id    TEXT,
    matter_code TEXT,
    case_no     TEXT,
    unit        TEXT,
    unbound_reason TEXT,
    PRIMARY KEY (device, n)
) WITHOUT ROWID;

CREATE TABLE outbox (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL CHECK (kind IN ('service', 'rating')),
    key        TEXT NOT NULL,      -- the hub's idempotency key
    item       TEXT NOT NULL,      -- the ingest item, JSON
    state      TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'dead')),
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at REAL NOT NULL,
    sent_at    REAL
);
CREATE INDEX outbox_pending ON outbox (seq) WHERE state = 'pending';
CREATE INDEX outbox_state ON outbox (state);

CREATE TABLE quarantine (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    at       REAL NOT NULL,
    last_at  REAL NOT NULL,
    repeats  INTEGER NOT NULL DEFAULT 0,  -- the same bytes again on the same topic
    topic    TEXT NOT NULL,
    device   TEXT,
    n        INTEGER,
    reason   TEXT NOT NULL,
    detail   TEXT,
    size     INTEGER NOT NULL,   -- original payload length
    digest   TEXT NOT NULL,      -- SHA-256 of the whole payload
    payload  BLOB NOT NULL       -- truncated to QUARANTINE_MAX_BYTES
);
CREATE UNIQUE INDEX quarantine_same ON quarantine (topic, reason, digest);

CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
"""

MIGRATIONS: list[str] = [_V1]
SCHEMA_VERSION = len(MIGRATIONS)
