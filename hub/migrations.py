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


# Version 3: the ledger (hub/ledger.py) and the regions halls belong to. The same text on both
# backends: seq is assigned by the hub from ledger_head (locked in the ingest transaction), not by
# the database, so the chain has no gaps even where PostgreSQL's identity columns would.
_V3 = """
CREATE TABLE ledger (
    seq     BIGINT PRIMARY KEY CHECK (seq >= 1),
    kind    TEXT NOT NULL CHECK (kind IN ('rating', 'service', 'default')),
    hall    TEXT NOT NULL,
    ref     TEXT NOT NULL,              -- the record: device:n (rating), service id (service, default)
    digest  TEXT NOT NULL,              -- hex SHA-256 of the record's canonical bytes
    hash    TEXT NOT NULL,              -- hex SHA-256 chaining this entry to the one before
    at      TEXT NOT NULL,
    UNIQUE (kind, hall, ref)
);

CREATE TABLE ledger_head (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    seq     BIGINT NOT NULL,
    hash    TEXT NOT NULL
);
INSERT INTO ledger_head (id, seq, hash)
    VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE regions (
    region        TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    area_code     TEXT,                 -- 行政区划代码 for the platform exports
    default_rule  TEXT NOT NULL,        -- JSON: {"kind": "calendar_days"|"working_days", "days": N}
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE halls (
    hall        TEXT PRIMARY KEY,
    region      TEXT NOT NULL REFERENCES regions (region),
    name        TEXT,
    updated_at  TEXT NOT NULL
);
CREATE INDEX halls_region ON halls (region, hall);
"""


# System default ratings (hub/defaults.py), one per unrated service after its region's period;
# the indexes the job's look-up needs: ratings by the service they are bound to, services by when
# the hub stored them (the look-back window: hub time, one format, so text order is time order).
_DEFAULTS_SQL = """
CREATE TABLE default_ratings (
    hall         TEXT NOT NULL,
    service      TEXT NOT NULL,
    score        INTEGER NOT NULL CHECK (score = 3),
    region       TEXT NOT NULL,
    rule         TEXT NOT NULL,      -- the rule applied (JSON)
    finished_at  TEXT NOT NULL,      -- the service's, as stored
    due_at       TEXT NOT NULL,      -- when its period ended (+08:00)
    estimated    BOOLEAN NOT NULL,   -- a working day of the period was guessed (no holiday data)
    applied_at   TEXT NOT NULL,
    PRIMARY KEY (hall, service)
);
CREATE INDEX ratings_service ON ratings (hall, service);
CREATE INDEX services_ingested ON services (ingested_at);
"""


# Counter gaps (hub/gaps.py; docs/hub.md, "Counter gaps"): each device's highest accepted n, the gaps
# as they were opened (extent fixed, `missing` counting down), and the holes still missing in them.
# Ranges only, never a row per number. Filled from the ratings already stored: one gap per run of
# missing numbers, dated by the earliest-ingested rating above it, in the hall of the one just above.
_GAPS = """
CREATE TABLE rating_counters (
    device      TEXT PRIMARY KEY REFERENCES devices (device),
    high        {int} NOT NULL CHECK (high >= 1),     -- the highest n accepted
    updated_at  TEXT NOT NULL
);

CREATE TABLE rating_gaps (
    device      TEXT NOT NULL,
    first_n     {int} NOT NULL CHECK (first_n >= 1),  -- the numbers missing when it was opened:
    last_n      {int} NOT NULL,                       -- never changed afterwards
    hall        TEXT NOT NULL,                        -- of the rating that revealed it
    missing     {int} NOT NULL,                       -- numbers of it not received yet
    opened_at   TEXT NOT NULL,
    closed_at   TEXT,                                 -- when its last missing number arrived
    PRIMARY KEY (device, first_n),
    CHECK (last_n >= first_n),
    CHECK (missing BETWEEN 0 AND last_n - first_n + 1),
    CHECK ((missing = 0) = (closed_at IS NOT NULL))
);
CREATE INDEX rating_gaps_hall ON rating_gaps (hall, opened_at);
CREATE INDEX rating_gaps_opened ON rating_gaps (opened_at);
CREATE INDEX rating_gaps_open ON rating_gaps (hall, device) WHERE closed_at IS NULL;

-- The runs of numbers still missing, each inside one gap; together, every n <= high not stored.
CREATE TABLE rating_gap_holes (
    device      TEXT NOT NULL,
    first_n     {int} NOT NULL,
    last_n      {int} NOT NULL,
    gap_first   {int} NOT NULL,
    PRIMARY KEY (device, first_n),
    FOREIGN KEY (device, gap_first) REFERENCES rating_gaps (device, first_n),
    CHECK (gap_first <= first_n AND first_n <= last_n)
);
CREATE INDEX rating_gap_holes_gap ON rating_gap_holes (device, gap_first, first_n);

INSERT INTO rating_counters (device, high, updated_at)
    SELECT device, MAX(n), {now} FROM ratings GROUP BY device;
INSERT INTO rating_gaps (device, first_n, last_n, hall, missing, opened_at, closed_at)
    SELECT device, below + 1, n - 1, hall, n - below - 1, seen, NULL FROM (
        SELECT device, n, hall,
               COALESCE(LAG(n) OVER (PARTITION BY device ORDER BY n), 0) AS below,
               MIN(ingested_at) OVER (PARTITION BY device ORDER BY n DESC) AS seen
        FROM ratings) AS r
    WHERE n > below + 1;
INSERT INTO rating_gap_holes (device, first_n, last_n, gap_first)
    SELECT device, first_n, last_n, first_n FROM rating_gaps;
"""
_SQLITE_GAPS = _GAPS.format(int="INTEGER", now="strftime('%Y-%m-%dT%H:%M:%f', 'now') || '+00:00'")
_PG_GAPS = _GAPS.format(
    int="BIGINT", now="""to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"+00:00"')""")


# Statistics (hub/stats.py; docs/hub.md, "Statistics"): additive counters per day in China, kept in
# the transaction that stores what they count. stats_fine per (hall, day, window, staff, matter,
# unit); the others sum it for one group each, so a month of a region reads a few thousand rows.
# A missing staff, matter or unit is '' (a key column cannot be NULL; ingest never stores '').
# The row in stats_rebuild asks the hub to fill them from the raw records when it next starts.
_STATS = """
CREATE TABLE stats_fine (
    hall              TEXT NOT NULL,
    day               TEXT NOT NULL,   -- YYYY-MM-DD in China (UTC+8)
    window_id         TEXT NOT NULL,
    staff_id          TEXT NOT NULL,
    matter_code       TEXT NOT NULL,
    unit              TEXT NOT NULL,
    services          {int} NOT NULL,  -- finished services, by finished_at day
    no_shows          {int} NOT NULL,
    rated             {int} NOT NULL,  -- finished services with a bound rating
    rated_or_default  {int} NOT NULL,  -- ... or with a system default
    defaulted         {int} NOT NULL,  -- finished services with a system default
    score1            {int} NOT NULL,  -- ratings by score, by received_at day
    score2            {int} NOT NULL,
    score3            {int} NOT NULL,
    score4            {int} NOT NULL,
    score5            {int} NOT NULL,
    unbound           {int} NOT NULL,  -- ratings without a binding
    PRIMARY KEY (hall, day, window_id, staff_id, matter_code, unit)
){rowid};
CREATE TABLE stats_hall (
    hall TEXT NOT NULL,
    day TEXT NOT NULL,
    services {int} NOT NULL, no_shows {int} NOT NULL, rated {int} NOT NULL,
    rated_or_default {int} NOT NULL, defaulted {int} NOT NULL, score1 {int} NOT NULL,
    score2 {int} NOT NULL, score3 {int} NOT NULL, score4 {int} NOT NULL, score5 {int} NOT NULL,
    unbound {int} NOT NULL,
    PRIMARY KEY (hall, day)
){rowid};
CREATE TABLE stats_window (
    hall TEXT NOT NULL,
    day TEXT NOT NULL,
    window_id TEXT NOT NULL,
    services {int} NOT NULL, no_shows {int} NOT NULL, rated {int} NOT NULL,
    rated_or_default {int} NOT NULL, defaulted {int} NOT NULL, score1 {int} NOT NULL,
    score2 {int} NOT NULL, score3 {int} NOT NULL, score4 {int} NOT NULL, score5 {int} NOT NULL,
    unbound {int} NOT NULL,
    PRIMARY KEY (hall, day, window_id)
){rowid};
CREATE TABLE stats_staff (
    hall TEXT NOT NULL,
    day TEXT NOT NULL,
    staff_id TEXT NOT NULL,
    services {int} NOT NULL, no_shows {int} NOT NULL, rated {int} NOT NULL,
    rated_or_default {int} NOT NULL, defaulted {int} NOT NULL, score1 {int} NOT NULL,
    score2 {int} NOT NULL, score3 {int} NOT NULL, score4 {int} NOT NULL, score5 {int} NOT NULL,
    unbound {int} NOT NULL,
    PRIMARY KEY (hall, day, staff_id)
){rowid};
CREATE TABLE stats_matter (
    hall TEXT NOT NULL,
    day TEXT NOT NULL,
    matter_code TEXT NOT NULL,
    services {int} NOT NULL, no_shows {int} NOT NULL, rated {int} NOT NULL,
    rated_or_default {int} NOT NULL, defaulted {int} NOT NULL, score1 {int} NOT NULL,
    score2 {int} NOT NULL, score3 {int} NOT NULL, score4 {int} NOT NULL, score5 {int} NOT NULL,
    unbound {int} NOT NULL,
    PRIMARY KEY (hall, day, matter_code)
){rowid};
CREATE TABLE stats_unit (
    hall TEXT NOT NULL,
    day TEXT NOT NULL,
    unit TEXT NOT NULL,
    services {int} NOT NULL, no_shows {int} NOT NULL, rated {int} NOT NULL,
    rated_or_default {int} NOT NULL, defaulted {int} NOT NULL, score1 {int} NOT NULL,
    score2 {int} NOT NULL, score3 {int} NOT NULL, score4 {int} NOT NULL, score5 {int} NOT NULL,
    unbound {int} NOT NULL,
    PRIMARY KEY (hall, day, unit)
){rowid};

CREATE TABLE stats_rebuild (
    id  INTEGER PRIMARY KEY CHECK (id = 1)
);
INSERT INTO stats_rebuild (id) VALUES (1);
"""
_SQLITE_STATS = _STATS.format(int="INTEGER", rowid=" WITHOUT ROWID")
_PG_STATS = _STATS.format(int="BIGINT", rowid="")


# The devices overview (GET /api/v1/devices): a device's open alerts by kind, so its kinds come in
# order and "is an offline alert open" is one seek; on PostgreSQL the devices in byte order (the
# order SQLite gives and the overview pages by), so a page is an ordered index walk that stops at
# the limit instead of a sort of every device. devices_hall stays for `hall = ?`.
_SQLITE_OVERVIEW = """
CREATE INDEX device_alerts_open_kinds ON device_alerts (hall, device, alert) WHERE cleared_at IS NULL;
"""
_PG_OVERVIEW = """
CREATE INDEX device_alerts_open_kinds ON device_alerts (hall, device, alert COLLATE "C") WHERE cleared_at IS NULL;
CREATE INDEX devices_bytes ON devices (hall COLLATE "C", device COLLATE "C");
"""


# Statistics, second form: the coarse rollups (all but stats_fine) also hold a row per month, the
# sum of its days, so a month of a region grouped by staff reads 4,000 rows instead of 124,000.
# Their key column holds a day (YYYY-MM-DD) or a month (YYYY-MM): `period` (stats_fine's too, for
# one name). The rollups are rebuilt from the raw records at the next start (no month rows yet).
_STATS_MONTHS = """
ALTER TABLE stats_fine RENAME COLUMN day TO period;
ALTER TABLE stats_hall RENAME COLUMN day TO period;
ALTER TABLE stats_window RENAME COLUMN day TO period;
ALTER TABLE stats_staff RENAME COLUMN day TO period;
ALTER TABLE stats_matter RENAME COLUMN day TO period;
ALTER TABLE stats_unit RENAME COLUMN day TO period;
INSERT INTO stats_rebuild (id) SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM stats_rebuild);
"""


# Retired devices (docs/hub.md, "Replacing a device"): a device a replacement took the window of
# keeps its row, keys and history; items the gateway received from it after `retired_at` are refused
# (`retired_device`) until it is registered again.
_RETIRED = """
ALTER TABLE devices ADD COLUMN retired_at TEXT;
"""


# Accounts (docs/accounts.md): the people who sign in, their server-side sessions (only the SHA-256 of
# a session's cookie token is stored), failed sign-ins counted per login name and per client address
# (the throttle), and the audit log, append-only: triggers refuse every UPDATE and DELETE of it.
# Times the code compares (sessions, throttle) are Unix milliseconds; the rest ISO text as elsewhere.
_ACCOUNTS = """
CREATE TABLE users (
    id            {id},
    login         TEXT NOT NULL UNIQUE,              -- NFKC, case-folded (hub/accounts/model.py)
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('operator', 'handler', 'supervisor', 'auditor')),
    region        TEXT,                              -- scope: NULL is every region / hall / unit
    hall          TEXT,
    unit          TEXT,
    password_hash TEXT NOT NULL,                     -- argon2id, PHC string; never the password
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    password_changed_at TEXT NOT NULL,
    disabled_at   TEXT,
    last_login_at TEXT
);

CREATE TABLE sessions (
    token_sha256  TEXT PRIMARY KEY,                  -- hex SHA-256 of the cookie's token
    user_id       {int} NOT NULL REFERENCES users (id),
    csrf_token    TEXT NOT NULL,
    created_ms    {int} NOT NULL,
    seen_ms       {int} NOT NULL,
    client        TEXT
);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE login_failures (
    subject       TEXT PRIMARY KEY,                  -- 'login:NAME' or 'addr:ADDRESS'
    failures      {int} NOT NULL,
    first_ms      {int} NOT NULL,                    -- the window's first failure
    last_ms       {int} NOT NULL
);

CREATE TABLE audit_log (
    id            {audit_id},
    at            TEXT NOT NULL,
    event         TEXT NOT NULL,
    user_id       {int},
    login         TEXT,
    role          TEXT,
    client        TEXT,
    what          TEXT,
    record        TEXT,
    detail        TEXT                               -- JSON object
);
CREATE INDEX audit_log_event ON audit_log (event, id);
CREATE INDEX audit_log_login ON audit_log (login, id);
{guard}"""
_SQLITE_ACCOUNTS = _ACCOUNTS.format(
    id="INTEGER PRIMARY KEY", int="INTEGER", audit_id="INTEGER PRIMARY KEY AUTOINCREMENT", guard="""
CREATE TRIGGER audit_log_no_update BEFORE UPDATE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
CREATE TRIGGER audit_log_no_delete BEFORE DELETE ON audit_log
BEGIN SELECT RAISE(ABORT, 'audit_log is append-only'); END;
""")
_PG_ACCOUNTS = _ACCOUNTS.format(
    id="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", int="BIGINT",
    audit_id="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", guard="""
CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$;
CREATE TRIGGER audit_log_no_change BEFORE UPDATE OR DELETE OR TRUNCATE ON audit_log
FOR EACH STATEMENT EXECUTE FUNCTION audit_log_append_only();
""")
# The dashboard's ledger verifications (docs/dashboard.md, "Ledger"): a full verify reads every
# entry and record (minutes on years of data), so the dashboard shows the last one's result and
# when it ran instead of verifying per page view. One row per finished run, newest by id.
_LEDGER_CHECKS = """
CREATE TABLE ledger_checks (
    id           {id},
    started_at   TEXT NOT NULL,     -- hub time, UTC ISO 8601
    finished_at  TEXT NOT NULL,
    requested_by TEXT NOT NULL,     -- who asked (user id, or 'admin-token')
    ok           {bool} NOT NULL,
    entries      {int} NOT NULL,
    head_seq     {int} NOT NULL,
    head_hash    TEXT NOT NULL,
    problems     {int} NOT NULL,
    result       TEXT NOT NULL,     -- the verification's JSON (GET /api/v1/ledger/verify's shape)
    error        TEXT               -- the verification itself failed (database error): why
);
"""


# The phone rating page (docs/phone.md): its ratings (a ledger kind of their own, `phone`), the
# raters' sealed contact details beside them (outside the ledger: a key rotation seals them
# again), and the page's daily counters (every unmasked read goes to audit_log, "accounts"). The ledger's CHECK on
# `kind` must admit `phone`: PostgreSQL replaces the constraint; SQLite cannot alter a CHECK, and
# copying the ledger into a new table took 166 s per million entries here, so its step is the
# Python backfill "ledger_kinds" (store `_widen_ledger_kinds`): the CHECK in the table's stored
# definition is rewritten in place, as SQLite documents for dropping or loosening a constraint
# (lang_altertable.html, section 7; every stored row meets the wider one).
_PHONE = """
CREATE TABLE phone_ratings (
    hall            TEXT NOT NULL,
    service         TEXT NOT NULL,        -- the token's svc: the gateway's service id
    kind            TEXT NOT NULL CHECK (kind IN ('supplementary', 'followup')),
    window_id       TEXT NOT NULL,        -- the service's window (the token's until the service came)
    score           {int} CHECK (score BETWEEN 1 AND 5),           -- overall: supplementary only
    business_score  {int} CHECK (business_score BETWEEN 1 AND 5),  -- 业务评价
    service_score   {int} CHECK (service_score BETWEEN 1 AND 5),   -- 服务评价
    tags            TEXT NOT NULL,        -- JSON array of tag codes (hub/phone/form.py)
    comment         TEXT,
    has_contact     BOOLEAN NOT NULL,     -- a sealed name or number is in phone_contacts
    staff_id        TEXT,                 -- the service's, if it was at the hub when rated
    matter_code     TEXT,
    unit            TEXT,
    lang            TEXT NOT NULL,        -- the page's language
    token_exp       {int} NOT NULL,
    nonce           TEXT NOT NULL,        -- the form's: a repeat of the same form is this row
    submitted_at    TEXT NOT NULL,        -- hub time, UTC
    PRIMARY KEY (hall, service, kind),
    CHECK ((kind = 'supplementary') = (score IS NOT NULL))
);
CREATE INDEX phone_ratings_submitted ON phone_ratings (hall, submitted_at);

CREATE TABLE phone_contacts (
    hall          TEXT NOT NULL,
    service       TEXT NOT NULL,
    kind          TEXT NOT NULL,
    name_sealed   TEXT,                   -- AES-256-GCM, `kid:base64` (hub/phone/crypto.py)
    phone_sealed  TEXT,
    key_id        TEXT NOT NULL,          -- the key both are sealed with
    sealed_at     TEXT NOT NULL,
    PRIMARY KEY (hall, service, kind),
    FOREIGN KEY (hall, service, kind) REFERENCES phone_ratings (hall, service, kind),
    CHECK (name_sealed IS NOT NULL OR phone_sealed IS NOT NULL)
);
CREATE INDEX phone_contacts_key ON phone_contacts (key_id);

CREATE TABLE phone_counts (
    day   TEXT NOT NULL,                  -- YYYY-MM-DD in China
    hall  TEXT NOT NULL,                  -- '' when the token named none that could be read
    what  TEXT NOT NULL,
    n     {int} NOT NULL,
    PRIMARY KEY (day, hall, what)
);
{ledger}"""
_SQLITE_PHONE = _PHONE.format(int="INTEGER", ledger="")
_PG_PHONE = _PHONE.format(int="BIGINT", ledger="""
ALTER TABLE ledger DROP CONSTRAINT ledger_kind_check;
ALTER TABLE ledger ADD CONSTRAINT ledger_kind_check CHECK (kind IN ('rating', 'service', 'default', 'phone'));
""")


# Bad-review cases (hub/cases.py; docs/cases.md): one per bad rating, opened in the transaction that
# stores it; its history (case_events), the calls to the rater (case_callbacks), the reminders the
# periodic job wrote (case_reminders, one per case, step, kind and deadline), each region's limits
# (case_rules), and appeal decisions, each a record of its own in the ledger that points at the
# rating (kind `appeal`). The ledger's CHECK on `kind` goes: each new kind of record would otherwise
# rebuild the ledger table on SQLite (which cannot alter a CHECK); hub/ledger.py's KINDS is the check,
# and verification reports an entry of a kind nobody stores as `record_missing`. Times are UTC ISO
# text in one format (hub.cases.iso), so text order is time order in SQL.
_CASES = """
CREATE TABLE case_rules (
    region        TEXT PRIMARY KEY REFERENCES regions (region),
    rules         TEXT NOT NULL,                 -- JSON: hub.cases.CaseRules
    updated_at    TEXT NOT NULL,
    updated_by    TEXT NOT NULL
);

CREATE TABLE cases (
    id            {id},
    hall          TEXT NOT NULL,
    region        TEXT,                          -- the hall's region when opened (scope)
    unit          TEXT,                          -- routed to (NULL: unrouted, with the hall's operators)
    source_unit   TEXT,                          -- the binding's unit, as rated (never changes)
    window_id     TEXT,
    staff_id      TEXT,
    matter_code   TEXT,
    service       TEXT,
    case_no       TEXT,
    rating_kind   TEXT NOT NULL,                 -- the rating as the ledger names it: kind and ref
    rating_ref    TEXT NOT NULL,
    score         {int} NOT NULL CHECK (score IN (1, 2)),
    rated_at      TEXT NOT NULL,                 -- as the rating carries it (with its offset)
    real_name     BOOLEAN NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('unrouted', 'new', 'contacted', 'rectifying', 'ledger',
                      'rectified', 'explained', 'feedback', 'closed', 'appealed', 'verified', 'not_adopted')),
    appeal_from   TEXT,
    appellant     TEXT,
    rules         TEXT NOT NULL,                 -- the rules applied (JSON)
    rules_source  TEXT NOT NULL CHECK (rules_source IN ('region', 'default')),
    opened_at     TEXT NOT NULL,
    route_due     TEXT,
    contact_due   TEXT,
    fix_due       TEXT,
    ledger_due    TEXT,                          -- the latest a ledger date may be
    ledger_until  TEXT,                          -- the ledger date set (the fix deadline from then on)
    feedback_due  TEXT,
    estimated     BOOLEAN NOT NULL,              -- a working day was guessed (no holiday data)
    routed_at     TEXT,
    contacted_at  TEXT,
    fixed_at      TEXT,
    fix_kind      TEXT CHECK (fix_kind IN ('rectified', 'explained')),
    feedback_at   TEXT,
    closed_at     TEXT,
    decided_at    TEXT,
    last_satisfaction TEXT,
    updated_at    TEXT NOT NULL,
    UNIQUE (rating_kind, rating_ref)
);
CREATE INDEX cases_unit ON cases (unit, id);
CREATE INDEX cases_hall ON cases (hall, id);
CREATE INDEX cases_opened ON cases (opened_at);
CREATE INDEX cases_open ON cases (state, id) WHERE state NOT IN ('closed', 'not_adopted');

CREATE TABLE case_events (
    id            {id},
    case_id       {int} NOT NULL REFERENCES cases (id),
    at            TEXT NOT NULL,
    actor         TEXT NOT NULL,
    role          TEXT NOT NULL,
    action        TEXT NOT NULL,
    from_state    TEXT,
    to_state      TEXT NOT NULL,
    detail        TEXT NOT NULL                  -- JSON object
);
CREATE INDEX case_events_case ON case_events (case_id, id);

CREATE TABLE case_callbacks (
    id            {id},
    case_id       {int} NOT NULL REFERENCES cases (id),
    at            TEXT NOT NULL,                 -- when the call was made, as given
    recorded_at   TEXT NOT NULL,
    actor         TEXT NOT NULL,
    purpose       TEXT NOT NULL,
    channel       TEXT NOT NULL,
    outcome       TEXT NOT NULL,
    satisfaction  TEXT,
    note          TEXT
);
CREATE INDEX case_callbacks_case ON case_callbacks (case_id, id);

CREATE TABLE case_reminders (
    case_id       {int} NOT NULL REFERENCES cases (id),
    deadline      TEXT NOT NULL,                 -- route | contact | fix | feedback
    kind          TEXT NOT NULL CHECK (kind IN ('due_soon', 'overdue')),
    due_at        TEXT NOT NULL,
    hall          TEXT NOT NULL,
    unit          TEXT,
    at            TEXT NOT NULL,
    PRIMARY KEY (case_id, deadline, kind, due_at)
);
CREATE INDEX case_reminders_at ON case_reminders (at);

CREATE TABLE appeal_decisions (
    hall          TEXT NOT NULL,
    ref           TEXT NOT NULL,                 -- rating_kind:rating_ref (the ledger entry's ref)
    case_id       {int} NOT NULL REFERENCES cases (id),
    rating_kind   TEXT NOT NULL,
    rating_ref    TEXT NOT NULL,
    rating_seq    {int},                         -- the rating's ledger entry
    outcome       TEXT NOT NULL CHECK (outcome IN ('upheld', 'not_adopted')),
    reason        TEXT,
    appellant     TEXT NOT NULL,
    appeal_note   TEXT,
    verified_by   TEXT NOT NULL,
    method        TEXT NOT NULL,
    verify_note   TEXT,
    decided_by    TEXT NOT NULL,
    decided_at    TEXT NOT NULL,
    note          TEXT,
    stats_day     TEXT NOT NULL,                 -- the statistics key the rating is counted under
    stats_window  TEXT NOT NULL,
    stats_staff   TEXT NOT NULL,
    stats_matter  TEXT NOT NULL,
    stats_unit    TEXT NOT NULL,
    PRIMARY KEY (hall, ref)
);
{ledger}"""
_SQLITE_CASES = _CASES.format(id="INTEGER PRIMARY KEY AUTOINCREMENT", int="INTEGER", ledger="""
CREATE TABLE ledger_any_kind (
    seq     BIGINT PRIMARY KEY CHECK (seq >= 1),
    kind    TEXT NOT NULL,
    hall    TEXT NOT NULL,
    ref     TEXT NOT NULL,
    digest  TEXT NOT NULL,
    hash    TEXT NOT NULL,
    at      TEXT NOT NULL,
    UNIQUE (kind, hall, ref)
);
INSERT INTO ledger_any_kind (seq, kind, hall, ref, digest, hash, at)
    SELECT seq, kind, hall, ref, digest, hash, at FROM ledger ORDER BY seq;
DROP TABLE ledger;
ALTER TABLE ledger_any_kind RENAME TO ledger;
""")
_PG_CASES = _CASES.format(id="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", int="BIGINT", ledger="""
ALTER TABLE ledger DROP CONSTRAINT ledger_kind_check;
""")


# Statistics: the ratings an appeal decided not to adopt (hub/stats.py `not_adopted`), a counter in
# every rollup. None exists before the cases migration, so 0 is exact and nothing is rebuilt.
_NOT_ADOPTED = "".join(f"ALTER TABLE {table} ADD COLUMN not_adopted {{int}} NOT NULL DEFAULT 0;\n"
                       for table in ("stats_fine", "stats_hall", "stats_window", "stats_staff",
                                     "stats_matter", "stats_unit"))

# ---------------------------------------------------------------------------- the list


@dataclass(frozen=True)
class Migration:
    """One schema version: what it adds, and its text for each backend."""

    summary: str
    sqlite: str
    postgres: str
    # a step in Python after the SQL, in the same transaction, for what SQL cannot compute:
    # "ledger" chains every record stored before the ledger existed (store `_backfill_ledger`);
    # "ledger_kinds" (SQLite only) lets the ledger's CHECK admit every kind of hub.ledger.KINDS
    backfill: str | None = None


MIGRATIONS: tuple[Migration, ...] = (
    Migration("gateways, devices and keys, services, ratings, rejections, alerts", _V1, _PG_V1),
    Migration("the gateways' device reports: device_health(_latest), device_alerts", _V2, _PG_V2),
    Migration("the ledger and its head; regions and the halls in them", _V3, _V3, backfill="ledger"),
    Migration("system default ratings; ratings by service, services by ingest time", _DEFAULTS_SQL, _DEFAULTS_SQL),
    Migration("counter gaps: rating_counters, rating_gaps, rating_gap_holes", _SQLITE_GAPS, _PG_GAPS),
    Migration("statistics rollups (stats_*), filled from the raw records at the next start",
              _SQLITE_STATS, _PG_STATS),
    Migration("the devices overview: open alerts by kind; devices in byte order (PostgreSQL)",
              _SQLITE_OVERVIEW, _PG_OVERVIEW),
    Migration("statistics: month rows in the coarse rollups, key column `period`; rebuilt at the "
              "next start", _STATS_MONTHS, _STATS_MONTHS),
    Migration("retired devices: devices.retired_at", _RETIRED, _RETIRED),
    Migration("accounts: users, sessions, login_failures, audit_log (append-only)",
              _SQLITE_ACCOUNTS, _PG_ACCOUNTS),
    Migration("the dashboard's ledger verifications: ledger_checks",
              _LEDGER_CHECKS.format(id="INTEGER PRIMARY KEY", bool="INTEGER", int="INTEGER"),
              _LEDGER_CHECKS.format(id="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", bool="BOOLEAN",
                                    int="BIGINT")),
    Migration("the phone rating page: phone_ratings, phone_contacts (sealed), phone_counts; "
              "ledger kind 'phone'", _SQLITE_PHONE, _PG_PHONE, backfill="ledger_kinds"),
    Migration("bad-review cases: cases, case_events, case_callbacks, case_reminders, case_rules, "
              "appeal_decisions; the ledger takes any kind", _SQLITE_CASES, _PG_CASES),
    Migration("statistics: not_adopted (ratings an appeal did not adopt) in every rollup",
              _NOT_ADOPTED.format(int="INTEGER"), _NOT_ADOPTED.format(int="BIGINT")),
)
SCHEMA_VERSION = len(MIGRATIONS)  # the newest version this code knows

SQLITE_MIGRATIONS: tuple[str, ...] = tuple(m.sqlite for m in MIGRATIONS)
BACKFILLS: dict[int, str] = {version: m.backfill for version, m in enumerate(MIGRATIONS, start=1) if m.backfill}
POSTGRES_MIGRATIONS: tuple[str, ...] = tuple(m.postgres for m in MIGRATIONS)

# The same text on both backends.
SCHEMA_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version    INTEGER PRIMARY KEY,
    applied_at TEXT NOT NULL
)
"""
