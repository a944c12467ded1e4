"""The hub's storage interface. Every backend passes the same suite (tests/hub/test_store.py).

All methods are coroutines; a store is used between `open()` and `close()` (or `async with`).
Ingest decisions are made by `hub.ingest.decide` inside the backend's write transaction, so the
backends differ only in how they look things up and write them.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from hcp.protocol import BAD_SCORES, LEVELS

from ..default_rules import DefaultRule
from ..defaults import DEFAULT_COLUMNS, LOOKBACK_DAYS, Candidate, DefaultRating, RunResult
from ..defaults import decide as decide_defaults
from ..ingest import ItemResult, ParsedItem, parse_item
from ..ledger import MAX_BREAKS, Entry, Head, Verification, Verifier
from ..stats import Rebuilt, StatsQuery, StatsRow
from ..workdays import WorkCalendar
from .cases_sql import CaseStore


class KeyIdCollision(Exception):
    """A device already has a different key with the same kid (4-byte prefix): use another key."""


class UnknownRegion(Exception):
    """A hall was put into a region the hub does not have: create the region first."""


@dataclass(frozen=True)
class GatewayRecord:
    hall: str
    token_sha256: str
    key: bytes  # the gateway's phone-token signing key
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class StoredRating:
    """A stored rating. `window` is the binding's window, or the device's when unbound."""

    device: str
    n: int
    hall: str
    boot: int
    mono: int
    session: str | None
    score: int
    kid: str
    sig: str
    received_at: str
    offset_ms: int
    service: str | None
    ticket: str | None
    window: str | None
    staff_id: str | None
    matter_code: str | None
    case_no: str | None
    unit: str | None
    unbound_reason: str | None
    verified: bool
    ingested_at: str

    @property
    def id(self) -> str:
        return f"{self.device}:{self.n}"

    @property
    def bound(self) -> bool:
        return self.service is not None

    @property
    def level(self) -> str:
        return LEVELS[self.score]

    @property
    def bad(self) -> bool:
        return self.score in BAD_SCORES


@dataclass(frozen=True)
class StoredHealth:
    """A device health snapshot as the gateway forwarded it; `health` is the device's payload."""

    hall: str
    device: str
    window: str | None
    boot: int
    up: int
    received_at: str
    presence: str | None
    offset_ms: int | None
    health: dict
    ingested_at: str


@dataclass(frozen=True)
class StoredDeviceAlert:
    """A gateway's device alert: `state` `raised` until its clear arrived (`cleared_at` set).

    `window` and `detail` are the newest state's. `raise_seen` is False for an alert the hub knows
    only from its clear (the raise may still be on its way, or was a dead letter)."""

    hall: str
    id: int
    device: str
    window: str | None
    alert: str
    state: str
    detail: str | None
    raised_at: str
    cleared_at: str | None
    raise_seen: bool
    ingested_at: str
    updated_at: str


@dataclass(frozen=True)
class DeviceRecord:
    """A registered device, where the hub sees it: its current kid, the newest health snapshot of
    its current hall (None before the first), and the kinds of its open alerts there (sorted).

    `region`: its hall's region (None while the hall is in none). `presence`: `retired` once it
    was retired (`retired_at`, hub time), else `offline` while the gateway's `offline` alert for it
    is open, else the newest health's presence, else `unknown`. `alerts_open_count`: its open
    alerts there (a kind may be open more than once)."""

    device: str
    hall: str
    window: str
    kid: str | None
    registered_at: str
    updated_at: str
    health: StoredHealth | None
    alerts_open: tuple[str, ...]
    region: str | None
    presence: str
    alerts_open_count: int
    retired_at: str | None = None


@dataclass(frozen=True)
class RetiredDevice:
    """A device retired (replaced): where it was, and since when (hub time, UTC ISO 8601)."""

    device: str
    hall: str
    window: str
    retired_at: str


@dataclass(frozen=True)
class RegionRecord:
    """A region: its name, its 行政区划代码 (None until set) and its default-rating rule."""

    region: str
    name: str
    area_code: str | None
    default_rule: DefaultRule
    created_at: str
    updated_at: str


@dataclass(frozen=True)
class HallRecord:
    """A hall and the region it belongs to."""

    hall: str
    region: str
    name: str | None
    updated_at: str


@dataclass(frozen=True)
class RejectionRecord:
    at: str
    hall: str
    key: str | None
    reason: str
    item: str  # JSON, truncated


@dataclass(frozen=True)
class RejectionSummary:
    total: int
    by_reason: dict[str, int]
    recent: list[RejectionRecord]  # newest first


@dataclass(frozen=True)
class AlertRecord:
    at: str
    kind: str
    hall: str
    key: str
    detail: dict


@dataclass(frozen=True)
class StoredGap:
    """A gap in a device's counter (hub/gaps.py): `first..last` were missing when a rating above
    them arrived (in `hall`, at `opened_at`); `missing` of them still are, the lowest runs of them in
    `holes` (ascending (first, last), at most tables.HOLES_SHOWN; empty once closed)."""

    device: str
    first: int
    last: int
    hall: str
    missing: int
    opened_at: str
    closed_at: str | None
    holes: tuple[tuple[int, int], ...]

    @property
    def size(self) -> int:
        return self.last - self.first + 1

    @property
    def state(self) -> str:
        return "open" if self.closed_at is None else "closed"


@dataclass(frozen=True)
class DeviceGaps:
    """A device's open counter gaps: how many, the numbers missing in all of them, and when the
    oldest was opened."""

    device: str
    gaps: int
    missing: int
    since: str


class HubStore(CaseStore, ABC):
    """Storage for gateways, devices and their keys, services, ratings, the gateways' device health
    snapshots and device alerts, rejections and the hub's own alerts."""

    param: str  # the driver's placeholder in SQL text: "?" (sqlite3) or "%s" (psycopg)

    @abstractmethod
    async def _rows(self, sql: str, params: Sequence[Any] = ()) -> Sequence[Sequence[Any]]:
        """All rows of a read-only query, outside any write transaction."""

    @abstractmethod
    async def _write_statements(self, statements: Sequence[tuple[str, Sequence[Any]]]) -> list[list[Any]]:
        """Run `statements` ((sql, params), the backend's placeholders) in order in one write
        transaction; the rows each returned ([] for one that returns none). For features kept in
        their own modules on top of this interface (hub/accounts/store.py)."""

    async def __aenter__(self) -> HubStore:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abstractmethod
    async def open(self) -> None:
        """Connect and bring the schema to the newest version; safe to run on every start."""

    @abstractmethod
    async def close(self) -> None:
        """Finish pending work and disconnect. Calling it twice is harmless."""

    @abstractmethod
    async def schema_version(self) -> int:
        """The schema version the database is at."""

    @abstractmethod
    async def register_gateway(self, hall: str, token_sha256: str, key: bytes) -> None:
        """Create the hall's gateway, or replace its token hash and key (rotation)."""

    @abstractmethod
    async def gateway_by_token_hash(self, token_sha256: str) -> GatewayRecord | None:
        """The gateway whose ingest token has this SHA-256 (hex), or None."""

    @abstractmethod
    async def register_device(self, device: str, hall: str, window: str, key: bytes) -> str:
        """Create or move the device and add `key` to its keys; return the key's kid.

        A new key retires the device's other keys (they keep verifying the ratings they signed).
        The same key again is a no-op. Raises KeyIdCollision for a different key with a known kid.
        Registering a retired device brings it back into service.
        """

    @abstractmethod
    async def retire_device(self, device: str) -> RetiredDevice | None:
        """Retire a replaced device (None if it is not registered): items its gateway received
        from it after this moment are refused `retired_device`; its keys, ratings and history stay.
        Retiring it again keeps the first time."""

    async def ingest(self, hall: str, items: Sequence[object]) -> list[ItemResult]:
        """Ingest a batch posted by `hall`'s gateway: one result per item, in order.

        The whole batch is decided and written in one transaction (hub.ingest has the rules);
        every rejected item is recorded. Posting the same batch again changes nothing.
        """
        return await self._ingest_parsed(hall, [parse_item(obj, hall) for obj in items])

    @abstractmethod
    async def _ingest_parsed(self, hall: str, items: Sequence[ParsedItem]) -> list[ItemResult]:
        """Look up what `items` touch, `hub.ingest.decide`, write the plan: one transaction."""

    @abstractmethod
    async def get_rating(self, device: str, n: int) -> StoredRating | None:
        """The rating `device:n`, or None."""

    @abstractmethod
    async def list_ratings(self, *, hall: str | None = None, device: str | None = None,
                           window: str | None = None, ticket: str | None = None,
                           limit: int = 100) -> list[StoredRating]:
        """Ratings matching every given filter, newest ingested first, at most `limit`."""

    @abstractmethod
    async def list_devices(self, *, hall: str | None = None, region: str | None = None,
                           presence: str | None = None, after: tuple[str, str] | None = None,
                           limit: int | None = None) -> list[DeviceRecord]:
        """Registered devices matching every given filter (`hall`, its hall's `region`, `presence`
        as DeviceRecord judges it), by (hall, device id), each with its newest health of its
        current hall and its open alerts there; `after`: only those after this (hall, device);
        at most `limit` (None: all). One query, whatever the number of devices. An unknown hall
        or region is an empty list."""

    # ------------------------------------------------------------------------ regions and halls

    @abstractmethod
    async def put_region(self, region: str, *, name: str, area_code: str | None,
                         default_rule: DefaultRule) -> RegionRecord:
        """Create the region or replace its name, area code and rule (created_at stays)."""

    @abstractmethod
    async def get_region(self, region: str) -> RegionRecord | None:
        """The region, or None."""

    @abstractmethod
    async def list_regions(self) -> list[RegionRecord]:
        """Every region, by id."""

    @abstractmethod
    async def put_hall(self, hall: str, *, region: str, name: str | None = None) -> HallRecord:
        """Create the hall in `region` or replace its region (a move) and name. Raises
        UnknownRegion, and changes nothing, if the region does not exist."""

    @abstractmethod
    async def hall_region(self, hall: str) -> RegionRecord | None:
        """The region `hall` belongs to (its rule and area code), or None if it is in none."""

    @abstractmethod
    async def halls(self, *, region: str | None = None) -> list[HallRecord]:
        """Halls (of `region` if given), by id."""

    @abstractmethod
    async def health_history(self, *, hall: str, device: str, limit: int = 100) -> list[StoredHealth]:
        """`device`'s health snapshots ingested for `hall`, newest `received_at` first (ties: the
        later boot and `up` first), at most `limit`."""

    @abstractmethod
    async def device_alerts(self, *, hall: str, device: str | None = None, state: str | None = None,
                            limit: int = 100) -> list[StoredDeviceAlert]:
        """`hall`'s device alerts matching the filters (`state` `raised` = still open), newest
        alert id first, at most `limit`."""

    @abstractmethod
    async def rejection_summary(self, *, hall: str | None = None, limit: int = 50) -> RejectionSummary:
        """Count of rejected items (total and by reason) and the `limit` most recent ones."""

    @abstractmethod
    async def alerts(self, *, kind: str | None = None, limit: int = 100) -> list[AlertRecord]:
        """The hub's own alerts (tampering, service_conflict, health_conflict, alert_conflict),
        newest first. Not the gateways' device alerts: `device_alerts`."""

    # ------------------------------------------------------------------------ the ledger

    async def ledger_head(self) -> Head:
        """The newest ledger entry's (seq, hash); (0, GENESIS) when the ledger is empty."""
        (seq, head_hash), = await self._rows("SELECT seq, hash FROM ledger_head WHERE id = 1")
        return Head(seq, head_hash)

    async def ledger_entries(self, after: int = 0, limit: int = 1000) -> list[Entry]:
        """Ledger entries with seq > `after`, in seq order, at most `limit`."""
        p = self.param
        rows = await self._rows(f"SELECT {tables.LEDGER_COLUMNS} FROM ledger WHERE seq > {p} "
                                f"ORDER BY seq LIMIT {p}", (after, limit))
        return [tables.ledger_entry(row) for row in rows]

    @abstractmethod
    async def _ledger_records(self, entries: Sequence[Entry]) -> dict[tuple[str, str, str], dict]:
        """The records `entries` name, as stored now: (kind, hall, ref) -> the dict their digest
        covers (store/tables.py). A record that is not there is absent from the map."""

    async def _unledgered(self, sample: int) -> dict[str, tuple[int, list[tuple[str, str]]]]:
        """Per kind: how many stored records have no ledger entry, and (hall, ref) of up to
        `sample` of them."""
        found = {}
        for kind, sql in tables.UNLEDGERED_SQL.items():
            (count,), = await self._rows(sql.format(what="COUNT(*)", limit=""))
            some = await self._rows(sql.format(what=tables.UNLEDGERED_REF[kind], limit=f" LIMIT {int(sample)}")) \
                if count else []
            found[kind] = (count, [(hall, str(ref)) for hall, ref in some])
        return found

    # ------------------------------------------------------------------------ default ratings

    async def _default_candidates(self, since: str) -> list[Candidate]:
        """Finished services stored (ingested_at) since `since`, with no default and no bound
        rating, with their hall's region and rule (tables.DEFAULT_CANDIDATES_SQL)."""
        return [Candidate(*row) for row in
                await self._rows(tables.DEFAULT_CANDIDATES_SQL.format(p=self.param), (since,))]

    @abstractmethod
    async def _store_defaults(self, records: Sequence[DefaultRating],
                              alerts: Sequence[tuple[str, str | None, str, str]]) -> int:
        """In one transaction: each default whose service still has neither a default nor a bound
        rating, with its ledger entry; each alert unless one of its kind and key exists. -> how
        many defaults were stored."""

    async def list_defaults(self, *, hall: str | None = None, limit: int = 100) -> list[DefaultRating]:
        """Stored default ratings, newest applied_at first."""
        p = self.param
        where, params = (f"WHERE hall = {p} ", [hall]) if hall is not None else ("", [])
        rows = await self._rows(f"SELECT {DEFAULT_COLUMNS} FROM default_ratings {where}"
                                f"ORDER BY applied_at DESC, hall, service LIMIT {p}", [*params, limit])
        return [DefaultRating(**tables.default_record(row)) for row in rows]

    async def export_ratings(self, hall: str, *, since: str, after_seq: int = 0,
                             limit: int = 5000) -> list[tuple[int, StoredRating]]:
        """A page of `hall`'s ratings stored (ingested_at, hub UTC) since `since`, in ingest order
        after `after_seq`: (seq, rating) pairs."""
        rows = await self._rows(tables.EXPORT_RATINGS_SQL.format(p=self.param), (hall, since, after_seq, limit))
        return [(row[0], tables.stored_rating(row[1:])) for row in rows]

    async def export_defaults(self, hall: str, *, due_from: str, due_to: str) -> list[tuple]:
        """`hall`'s default ratings whose period ended in [due_from, due_to) (ISO, +08:00): rows
        (hall, service, due_at, case_no, matter_code, unit, staff_id) of it and its service."""
        return [tuple(row) for row in await self._rows(tables.EXPORT_DEFAULTS_SQL.format(p=self.param),
                                                        (hall, due_from, due_to))]

    async def run_defaults(self, calendar: WorkCalendar, now: datetime | None = None,
                           lookback_days: int = LOOKBACK_DAYS) -> RunResult:
        """The default-rating job (hub/defaults.py): idempotent, safe to run at any time and from
        several hubs at once."""
        now = now or datetime.now(UTC)
        since = (now - timedelta(days=lookback_days)).astimezone(UTC).isoformat(timespec="milliseconds")
        records, result = decide_defaults(await self._default_candidates(since), calendar, now,
                                          datetime.now(UTC).isoformat(timespec="milliseconds"))
        result.applied = await self._store_defaults(records, result.alerts)
        return result

    async def verify_ledger(self, expect: Head | None = None, chunk: int = 2000) -> Verification:
        """Recompute the whole chain against the records as stored now (hub/ledger.py): the first
        broken link and every problem found (up to ledger.MAX_BREAKS listed). `expect`: a head
        recorded outside the hub, which must be in the chain. Entries appended while it runs are
        checked if they are reached; reads only, so ingest goes on meanwhile."""
        verifier = Verifier(expect)
        after = 0
        while True:
            entries = await self.ledger_entries(after, chunk)
            if not entries:
                break
            records = await self._ledger_records(entries)
            records.update(await self._appeal_ledger_records(entries))
            for e in entries:
                verifier.feed(e, records.get((e.kind, e.hall, e.ref)))
            after = entries[-1].seq
        return verifier.finish(await self._unledgered(MAX_BREAKS))

    # ------------------------------------------------------------------------ counter gaps

    @abstractmethod
    async def list_gaps(self, *, hall: str | None = None, device: str | None = None,
                        state: str = "open", limit: int = 100) -> list[StoredGap]:
        """Counter gaps matching the filters (`hall`: where the rating that revealed the gap was
        rated; `state` `open`, `closed` or `all`), newest opened first (then device, then the
        higher numbers), at most `limit`. Kept up to date by ingest, in the batch's transaction:
        only accepted ratings open or fill a gap."""

    @abstractmethod
    async def open_gaps(self, *, hall: str | None = None,
                        device: str | None = None) -> dict[str, DeviceGaps]:
        """Per device with open gaps (of gaps opened in `hall`, if given): their count, the
        numbers missing, the oldest's opened_at. One grouped query, for the devices overview."""

    # ------------------------------------------------------------------------ statistics

    @abstractmethod
    async def stats(self, query: StatsQuery) -> list[StatsRow]:
        """The figures `query` asks for (hub/stats.py), read from the rollups: one row per period
        and group key, sorted by period, then key."""

    @abstractmethod
    async def rebuild_stats(self) -> Rebuilt:
        """Recount every rollup from the raw ratings, services and defaults, in one transaction
        (after a restore; run at start-up when a migration asks for it). Ingest of ratings and
        services waits meanwhile; reads see the old rollups until it commits."""

    # ------------------------------------------------------------------------ the phone page (docs/phone.md)

    async def _phone_ledger_records(self, entries: Sequence[Entry]) -> dict[tuple[str, str, str], dict]:
        """The phone ratings `entries` name, as stored now, as `_ledger_records` gives them."""
        wanted: dict[str, set[str]] = {}
        for e in entries:
            if e.kind == "phone" and (ref := phone_sql.parse_ledger_ref(e.ref)) is not None:
                wanted.setdefault(e.hall, set()).add(ref[0])
        found: dict[tuple[str, str, str], dict] = {}
        for hall, services in wanted.items():
            ordered = sorted(services)
            for start in range(0, len(ordered), 400):
                chunk = ordered[start:start + 400]
                marks = ", ".join([self.param] * len(chunk))
                for row in await self._rows(f"SELECT {phone_sql.PHONE_COLUMNS} FROM phone_ratings "
                                            f"WHERE hall = {self.param} AND service IN ({marks})", [hall, *chunk]):
                    record = phone_sql.record(row)
                    found[("phone", hall, phone_sql.ledger_ref(record["service"], record["kind"]))] = record
        return found

    async def gateway_key(self, hall: str) -> bytes | None:
        """The phone-token key of `hall`'s gateway, or None if no gateway is registered for it."""
        rows = await self._rows(phone_sql.GATEWAY_KEY_SQL.format(p=self.param), (hall,))
        return bytes.fromhex(rows[0][0]) if rows else None

    async def hall_name(self, hall: str) -> str | None:
        rows = await self._rows(phone_sql.HALL_NAME_SQL.format(p=self.param), (hall,))
        return rows[0][0] if rows else None

    async def phone_state(self, hall: str, service: str) -> phone_sql.PhoneState:
        """What the hub holds about one service for the phone page: its phone ratings, its
        counter rating (the first device rating bound to it), whether it was defaulted, and the
        service itself once it has arrived."""
        p, key = self.param, (hall, service)
        return phone_sql.state(hall, service,
                               await self._rows(phone_sql.STATE_RECORDS_SQL.format(p=p), key),
                               await self._rows(phone_sql.STATE_COUNTER_SQL.format(p=p), key),
                               await self._rows(phone_sql.STATE_DEFAULTED_SQL.format(p=p), key),
                               await self._rows(phone_sql.STATE_SERVICE_SQL.format(p=p), key))

    @abstractmethod
    async def phone_submit(self, submission: phone_sql.PhoneSubmission) -> phone_sql.PhoneOutcome:
        """In one write transaction: read the service's state, decide (hub/phone/rules.py), and
        if it is to be stored: the phone rating, its sealed contact, its statistics (a
        supplementary rating) and its ledger entry. On PostgreSQL it holds the writers' lock
        (the ledger head), so ingest of a counter rating and the default job see it, or it them."""

    async def phone_ratings(self, *, hall: str | None = None, service: str | None = None,
                            kind: str | None = None, halls: Sequence[str] | None = None,
                            unit: str | None = None, limit: int = 100) -> list[phone_sql.StoredPhoneRating]:
        """Phone ratings, newest submitted first, with the overall rating each follows (sealed
        contacts included: hub/phone/contacts.py masks or opens them). `halls`: only these (a
        principal's scope); `unit`: only ratings of services of this unit."""
        where, params = [], []
        for column, value in (("x.hall", hall), ("x.service", service), ("x.kind", kind),
                              ("COALESCE(x.unit, sv.unit)", unit)):
            if value is not None:
                where.append(f"{column} = {self.param}")
                params.append(value)
        if halls is not None:
            where.append(f"x.hall IN ({', '.join([self.param] * len(halls))})" if halls else "1 = 0")
            params.extend(halls)
        rows = await self._rows(phone_sql.LIST_SQL + (" WHERE " + " AND ".join(where) if where else "")
                                + f" ORDER BY x.submitted_at DESC, x.hall, x.service, x.kind LIMIT {self.param}",
                                [*params, limit])
        return [phone_sql.stored(row) for row in rows]

    async def export_phone(self, hall: str, *, since: str, until: str) -> list[phone_sql.StoredPhoneRating]:
        """`hall`'s phone ratings submitted in [since, until) (hub time, UTC ISO), oldest first."""
        p = self.param
        rows = await self._rows(phone_sql.LIST_SQL + f" WHERE x.hall = {p} AND x.submitted_at >= {p} "
                                f"AND x.submitted_at < {p} ORDER BY x.submitted_at, x.service, x.kind",
                                (hall, since, until))
        return [phone_sql.stored(row) for row in rows]

    @abstractmethod
    async def phone_count(self, day: str, hall: str, what: str) -> None:
        """Add one to the page's counter `what` of `hall` (or '') on China day `day`."""

    async def phone_counts(self, first: str, last: str) -> list[tuple[str, str, str, int]]:
        """(day, hall, what, n) for the China days first..last."""
        return [tuple(row) for row in await self._rows(phone_sql.COUNTS_SQL.format(p=self.param), (first, last))]

    @abstractmethod
    async def phone_reseal(self, reseal: Any, current: str, limit: int = 500) -> int:
        """Seal again, with key `current`, up to `limit` stored contacts sealed with another key:
        `reseal(row)` gives a contact row's new (name_sealed, phone_sealed). One transaction;
        -> how many were sealed again (0: none left)."""

    async def phone_contact_keys(self) -> dict[str, int]:
        """How many stored contacts each key id seals."""
        return {kid: count for kid, count in await self._rows(phone_sql.CONTACT_KEYS_SQL)}

    @abstractmethod
    async def counts(self) -> dict[str, int]:
        """Row counts: gateways, devices, device_keys, services, ratings, device_health,
        device_alerts, rejections, alerts, rating_gaps, rating_gap_holes."""

    # ------------------------------------------------------------------------ the dashboard

    @abstractmethod
    async def record_ledger_check(self, check: dashboard_sql.LedgerCheck) -> dashboard_sql.LedgerCheck:
        """Store a finished ledger verification the dashboard ran; -> it with its id."""

    async def last_ledger_check(self) -> dashboard_sql.LedgerCheck | None:
        """The newest stored ledger verification, or None before the first."""
        rows = await self._rows(dashboard_sql.last_ledger_check_sql())
        return dashboard_sql.ledger_check(rows[0]) if rows else None

    async def hall_alerts(self, *, halls: Sequence[str] | None, kind: str | None = None,
                          limit: int = 100) -> list[AlertRecord]:
        """The hub's own alerts (`alerts`) raised in these halls (None: every hall), of `kind` if
        given, newest first, at most `limit`."""
        params: list[Any] = [kind] if kind is not None else []
        params += list(halls) if halls is not None else []
        rows = await self._rows(dashboard_sql.hall_alerts_sql(
            self.param, None if halls is None else len(halls), kind is not None), [*params, limit])
        return [AlertRecord(at, k, hall, key, json.loads(detail)) for at, k, hall, key, detail in rows]

    async def unit_stats(self, unit: str, first: str, last: str, *,
                         halls: Sequence[str] | None = None) -> list[dashboard_sql.UnitRow]:
        """The figures of `unit` (a service's or binding's unit) on days `first`..`last` (YYYY-MM-DD,
        China), per (hall, staff member), in these halls (None: every hall), from the finest
        statistics rollup; sorted by hall, then staff (none last)."""
        params = [unit, first, last, *(halls or [])]
        rows = await self._rows(dashboard_sql.unit_rows_sql(self.param, None if halls is None else len(halls)),
                                params)
        found = [dashboard_sql.unit_row(row) for row in rows]
        return sorted(found, key=lambda r: (r.hall, r.staff_id is None, r.staff_id or ""))


# last: tables.py builds rows and records from the dataclasses above (the shared SQL lives there)
from . import dashboard_sql, phone_sql, tables  # noqa: E402
