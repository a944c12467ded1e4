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

# Registry, health and alerts (gateway/registry.py, gateway/alerts.py). The outbox is rebuilt only
# to widen its `kind` check to the `health` and `alert` items (SQLite cannot alter a CHECK); rows,
# their seq and the AUTOINCREMENT high-water mark are kept.
_V2 = """
CREATE TABLE device_keys (
    device     TEXT NOT NULL,
    kid        TEXT NOT NULL,
    source     TEXT NOT NULL,      -- what showed it last: 'rating' or 'info' (cmd reply)
    first_seen REAL NOT NULL,
    last_seen  REAL NOT NULL,      -- when it last became the device's current key
    PRIMARY KEY (device, kid)
) WITHOUT ROWID;

CREATE TABLE device_watch (        -- per-device bookkeeping of the registry's checks
    device          TEXT PRIMARY KEY,
    health_period_s REAL,          -- seen between the last two healths of one boot
    timed_out_at    REAL,          -- heartbeat timeout: offline without a last will
    clock_boot      INTEGER,       -- boot and `up` of the last health: the clock reference
    clock_up        INTEGER,
    offset_ms       INTEGER,       -- gateway wall ms at receipt - device `up`
    offset_at       REAL,
    clock_steady    INTEGER NOT NULL DEFAULT 0,  -- healths in a row without a jump
    ob_last         INTEGER,
    ob_rising       INTEGER NOT NULL DEFAULT 0,  -- healths in a row with a larger `ob`
    boot_max        INTEGER,
    kid             TEXT,          -- key id of the device's latest rating or info reply
    info_asked      TEXT,          -- "boot:conn" of the connection asked for `info`
    health_fwd_at   REAL,          -- last health snapshot put in the outbox
    created_at      REAL NOT NULL
) WITHOUT ROWID;

CREATE TABLE device_boots (
    device  TEXT NOT NULL,
    boot    INTEGER NOT NULL,
    seen_at REAL NOT NULL,
    rise    INTEGER NOT NULL,      -- boot - the highest boot seen before (0 for the first)
    PRIMARY KEY (device, boot)
) WITHOUT ROWID;

CREATE TABLE rating_gaps (         -- counters skipped by a device, until the missing ratings arrive
    device     TEXT NOT NULL,
    n_from     INTEGER NOT NULL,
    n_to       INTEGER NOT NULL,
    noticed_at REAL NOT NULL,
    PRIMARY KEY (device, n_from)
) WITHOUT ROWID;

CREATE TABLE alerts (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    device     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    detail     TEXT NOT NULL,
    raised_at  REAL NOT NULL,
    updated_at REAL NOT NULL,      -- the detail last changed
    cleared_at REAL,
    cleared_by TEXT                -- what cleared it: the condition ended, or an operator
);
CREATE UNIQUE INDEX alerts_open ON alerts (device, kind) WHERE cleared_at IS NULL;
CREATE INDEX alerts_cleared ON alerts (cleared_at) WHERE cleared_at IS NOT NULL;

CREATE TABLE outbox_v2 (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL CHECK (kind IN ('service', 'rating', 'health', 'alert')),
    key        TEXT NOT NULL,
    item       TEXT NOT NULL,
    state      TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'dead')),
    attempts   INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at REAL NOT NULL,
    sent_at    REAL
);
INSERT INTO outbox_v2 (seq, kind, key, item, state, attempts, last_error, created_at, sent_at)
    SELECT seq, kind, key, item, state, attempts, last_error, created_at, sent_at FROM outbox;
UPDATE sqlite_sequence SET seq = (SELECT seq FROM sqlite_sequence WHERE name = 'outbox')
    WHERE name = 'outbox_v2' AND EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'outbox');
DROP TABLE outbox;
ALTER TABLE outbox_v2 RENAME TO outbox;
CREATE INDEX outbox_pending ON outbox (seq) WHERE state = 'pending';
CREATE INDEX outbox_state ON outbox (state);
"""

# Capacity (docs/gateway.md, "Capacity and retention"): the outbox depth per state is kept by
# triggers, so the status page reads three rows instead of counting a backlog of a million (~60 ms,
# under the store lock, on every status call); `outbox_state`, whose only use was that count, goes;
# partial indexes find sent rows by age (pruning) and the dead letters.
_V3 = """
CREATE TABLE outbox_depth (
    state TEXT PRIMARY KEY,
    n     INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO outbox_depth (state, n)
    SELECT s.state, (SELECT COUNT(*) FROM outbox o WHERE o.state = s.state)
    FROM (SELECT 'pending' AS state UNION ALL SELECT 'sent' UNION ALL SELECT 'dead') s;
CREATE TRIGGER outbox_depth_insert AFTER INSERT ON outbox BEGIN
    UPDATE outbox_depth SET n = n + 1 WHERE state = NEW.state;
END;
CREATE TRIGGER outbox_depth_update AFTER UPDATE OF state ON outbox
    WHEN OLD.state IS NOT NEW.state BEGIN
    UPDATE outbox_depth SET n = n - 1 WHERE state = OLD.state;
    UPDATE outbox_depth SET n = n + 1 WHERE state = NEW.state;
END;
CREATE TRIGGER outbox_depth_delete AFTER DELETE ON outbox BEGIN
    UPDATE outbox_depth SET n = n - 1 WHERE state = OLD.state;
END;
DROP INDEX outbox_state;
CREATE INDEX outbox_sent_at ON outbox (sent_at) WHERE state = 'sent';
CREATE INDEX outbox_dead ON outbox (seq) WHERE state = 'dead';
"""

# Binding and replays (docs/gateway.md, "Binding", "CSV replay"): `serving_rx`, the gateway's
# receive time of the latest live `started`/`accepted` of a service, so a local-session rating binds
# to the ticket put in service last at its window (not the one whose ticket was called first);
# existing rows past `called` take their opening time. The index finds the recorded events of a
# ticket at a window, which a replayed event is matched against.
_V4 = """
ALTER TABLE services ADD COLUMN serving_rx REAL;
UPDATE services SET serving_rx = opened_rx
    WHERE started_at IS NOT NULL OR accepted_at IS NOT NULL;
CREATE INDEX queue_events_ticket ON queue_events (window, ticket, type);
"""

# Dead letters an operator can re-send (docs/gateway.md, "Dead letters"): when a row went dead, how
# often and when and by whom it was re-queued; the dead letters per reason kept by triggers like
# `outbox_depth` (the status page shows them, and a hub answering `rejected` for a whole kind can
# leave a great many); an index for listing one reason newest first. Rows already dead keep
# `dead_at` NULL: when they died was not recorded.
_V5 = """
ALTER TABLE outbox ADD COLUMN dead_at REAL;
ALTER TABLE outbox ADD COLUMN requeues INTEGER NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN requeued_at REAL;
ALTER TABLE outbox ADD COLUMN requeued_by TEXT;
CREATE TABLE outbox_dead_reasons (
    reason TEXT PRIMARY KEY,
    n      INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO outbox_dead_reasons (reason, n)
    SELECT COALESCE(last_error, ''), COUNT(*) FROM outbox WHERE state = 'dead'
    GROUP BY COALESCE(last_error, '');
CREATE TRIGGER outbox_dead_reasons_insert AFTER INSERT ON outbox WHEN NEW.state = 'dead' BEGIN
    INSERT INTO outbox_dead_reasons (reason, n) VALUES (COALESCE(NEW.last_error, ''), 1)
        ON CONFLICT (reason) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER outbox_dead_reasons_update AFTER UPDATE OF state, last_error ON outbox
    WHEN OLD.state = 'dead' OR NEW.state = 'dead' BEGIN
    UPDATE outbox_dead_reasons SET n = n - 1
        WHERE OLD.state = 'dead' AND reason = COALESCE(OLD.last_error, '');
    INSERT INTO outbox_dead_reasons (reason, n)
        SELECT COALESCE(NEW.last_error, ''), 1 WHERE NEW.state = 'dead'
        ON CONFLICT (reason) DO UPDATE SET n = n + 1;
    DELETE FROM outbox_dead_reasons WHERE n <= 0;
END;
CREATE TRIGGER outbox_dead_reasons_delete AFTER DELETE ON outbox WHEN OLD.state = 'dead' BEGIN
    UPDATE outbox_dead_reasons SET n = n - 1 WHERE reason = COALESCE(OLD.last_error, '');
    DELETE FROM outbox_dead_reasons WHERE n <= 0;
END;
CREATE INDEX outbox_dead_reason ON outbox (last_error, seq) WHERE state = 'dead';
"""

# Retired devices (docs/gateway.md, "Replacing a device"): a device moved off its window for good
# (its replacement took it) keeps its row and history; `window` is NULL and its later messages are
# refused (`retired_device`) until it is registered again.
_V6 = """
ALTER TABLE devices ADD COLUMN retired_at REAL;
"""

MIGRATIONS: list[str] = [_V1, _V2, _V3, _V4, _V5, _V6]
SCHEMA_VERSION = len(MIGRATIONS)
