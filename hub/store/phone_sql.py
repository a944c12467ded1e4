"""The phone page's tables as both backends write and read them (docs/phone.md): the columns, the
SQL with the dialect's parameter mark as `{p}`, and the rows and records. The backends' own parts
are sqlite_phone.py and postgres_phone.py.

- `phone_ratings`: one row per (hall, service, kind): the supplementary rating (补充评价, with its
  overall `score`) and the follow-up (追加评价, no score), each at most once. Every column is in
  the row's ledger entry (kind `phone`, ref `{service}:{kind}`), so nothing in it can change
  unseen. `staff_id`, `matter_code`, `unit`: the service's, if it had reached the hub when the
  rating was given (statistics file the rating under them, as a device rating under its binding).
- `phone_contacts`: the rater's name and number, sealed (hub/phone/crypto.py), beside the rating
  and outside the ledger, so a key rotation can seal them again.
- `phone_counts`: per China day, hall and event: refused tokens, pages, posts (what the page did).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .. import ledger
from ..phone.form import SUPPLEMENTARY, Submission
from ..phone.rules import CounterRating, PhoneRecord, PhoneState, ServiceInfo
from ..stats import FineKey, ServiceFacts, china_day

PHONE_COLUMNS = ("hall, service, kind, window_id, score, business_score, service_score, tags, comment, "
                 "has_contact, staff_id, matter_code, unit, lang, token_exp, nonce, submitted_at")
PHONE_NAMES = tuple(c.strip() for c in PHONE_COLUMNS.split(","))
CONTACT_COLUMNS = "hall, service, kind, name_sealed, phone_sealed, key_id, sealed_at"

STATE_RECORDS_SQL = "SELECT kind, score, nonce, submitted_at FROM phone_ratings WHERE hall = {p} AND service = {p}"
STATE_COUNTER_SQL = ("SELECT device, n, score, received_at FROM ratings WHERE hall = {p} AND service = {p} "
                     "ORDER BY seq LIMIT 1")
STATE_DEFAULTED_SQL = "SELECT 1 FROM default_ratings WHERE hall = {p} AND service = {p}"
STATE_SERVICE_SQL = ("SELECT ticket, window_id, staff_id, staff_name, matter_code, matter_name, unit, "
                     "finished_at, outcome FROM services WHERE hall = {p} AND id = {p}")
GATEWAY_KEY_SQL = "SELECT key_hex FROM gateways WHERE hall = {p}"
HALL_NAME_SQL = "SELECT name FROM halls WHERE hall = {p}"

INSERT_PHONE_SQL = f"INSERT INTO phone_ratings ({PHONE_COLUMNS}) VALUES ({', '.join(['{p}'] * len(PHONE_NAMES))})"
INSERT_CONTACT_SQL = f"INSERT INTO phone_contacts ({CONTACT_COLUMNS}) VALUES ({', '.join(['{p}'] * 7)})"
COUNT_SQL = ("INSERT INTO phone_counts (day, hall, what, n) VALUES ({p}, {p}, {p}, 1) "
             "ON CONFLICT (day, hall, what) DO UPDATE SET n = phone_counts.n + 1")
CONTACT_SQL = ("SELECT name_sealed, phone_sealed FROM phone_contacts "
               "WHERE hall = {p} AND service = {p} AND kind = {p}")
# contacts not sealed with the current key, a page at a time (the rekey)
STALE_CONTACTS_SQL = ("SELECT " + CONTACT_COLUMNS + " FROM phone_contacts WHERE key_id <> {p} "
                      "ORDER BY hall, service, kind LIMIT {p}")
RESEAL_SQL = ("UPDATE phone_contacts SET name_sealed = {p}, phone_sealed = {p}, key_id = {p}, sealed_at = {p} "
              "WHERE hall = {p} AND service = {p} AND kind = {p} AND key_id = {p}")
CONTACT_KEYS_SQL = "SELECT key_id, COUNT(*) FROM phone_contacts GROUP BY key_id ORDER BY key_id"
COUNTS_SQL = ("SELECT day, hall, what, n FROM phone_counts WHERE day >= {p} AND day <= {p} "
              "ORDER BY day, hall, what")

# The service's overall rating when it came from the counter: its first bound device rating.
_COUNTER_OF = ("(SELECT {col} FROM ratings r WHERE r.hall = x.hall AND r.service = x.service "
               "ORDER BY r.seq LIMIT 1)")
LIST_SQL = (f"SELECT {', '.join('x.' + c for c in PHONE_NAMES)}, "
            f"{_COUNTER_OF.format(col='r.device')}, {_COUNTER_OF.format(col='r.n')}, "
            f"{_COUNTER_OF.format(col='r.score')}, "
            "(SELECT s.score FROM phone_ratings s WHERE s.hall = x.hall AND s.service = x.service "
            " AND s.kind = 'supplementary'), "
            "c.name_sealed, c.phone_sealed, sv.case_no, COALESCE(x.staff_id, sv.staff_id), "
            "COALESCE(x.matter_code, sv.matter_code), COALESCE(x.unit, sv.unit) "
            "FROM phone_ratings x LEFT JOIN phone_contacts c ON c.hall = x.hall AND c.service = x.service "
            "AND c.kind = x.kind LEFT JOIN services sv ON sv.hall = x.hall AND sv.id = x.service")
LEDGER_SQL = f"SELECT {PHONE_COLUMNS} FROM phone_ratings WHERE hall = {{p}} AND service = {{p}} AND kind = {{p}}"


@dataclass(frozen=True)
class StoredPhoneRating:
    """A phone rating as stored, with what it follows: `overall` is the service's overall rating
    now (the counter's first rating if any, else the supplementary one's score), `overall_id` its
    id, `counted` whether this record's own overall score counts (a supplementary rating with no
    counter rating). `name_sealed`/`phone_sealed`: the sealed contact, if any (masked or opened by
    hub/phone/contacts.py only). `case_no`, `service_staff_id`, `service_matter_code`,
    `service_unit`: the service's (once it has arrived), for the exports. `evaluation_number`:
    评价次数, 1 for the service's overall rating, then 2, 3 for what follows it (a replaced
    supplementary rating, then the follow-up)."""

    hall: str
    service: str
    kind: str
    window: str
    score: int | None
    business_score: int | None
    service_score: int | None
    tags: tuple[str, ...]
    comment: str | None
    has_contact: bool
    staff_id: str | None
    matter_code: str | None
    unit: str | None
    lang: str
    token_exp: int
    nonce: str
    submitted_at: str
    overall: int | None
    overall_id: str | None
    counted: bool
    name_sealed: str | None
    phone_sealed: str | None
    case_no: str | None
    service_staff_id: str | None
    service_matter_code: str | None
    service_unit: str | None
    evaluation_number: int

    @property
    def id(self) -> str:
        return phone_id(self.hall, self.service, self.kind)


def phone_id(hall: str, service: str, kind: str) -> str:
    """A phone rating's id in exports and cross references: `phone:{hall}:{service}:{kind}`."""
    return f"phone:{hall}:{service}:{kind}"


def ledger_ref(service: str, kind: str) -> str:
    return f"{service}:{kind}"


def parse_ledger_ref(ref: str) -> tuple[str, str] | None:
    service, _, kind = ref.rpartition(":")
    return (service, kind) if service and kind else None


def record(row: Sequence[Any]) -> dict[str, Any]:
    """A row of PHONE_COLUMNS as its ledger entry digests it (`has_contact` a bool on both)."""
    out = dict(zip(PHONE_NAMES, row, strict=True))
    out["has_contact"] = bool(out["has_contact"])
    return out


def pending(row: Sequence[Any]) -> ledger.Pending:
    rec = record(row)
    return ledger.Pending("phone", rec["hall"], ledger_ref(rec["service"], rec["kind"]), rec)


def state(hall: str, service: str, records: Sequence[Sequence[Any]], counter: Sequence[Sequence[Any]],
          defaulted: Sequence[Sequence[Any]], info: Sequence[Sequence[Any]]) -> PhoneState:
    """PhoneState from the rows of the four STATE_* queries."""
    found = {kind: PhoneRecord(kind, score, nonce, at) for kind, score, nonce, at in records}
    first = None
    if counter:
        device, n, score, received_at = counter[0]
        first = CounterRating(f"{device}:{n}", score, received_at)
    return PhoneState(hall, service, found, first, bool(defaulted), ServiceInfo(*info[0]) if info else None)


def row(hall: str, service: str, window: str, token_exp: int, sub: Submission, lang: str, nonce: str,
        info: ServiceInfo | None, now: str) -> tuple:
    """The phone_ratings row of a submission, in PHONE_COLUMNS order."""
    staff, matter, unit = (info.staff_id, info.matter_code, info.unit) if info is not None else (None, None, None)
    return (hall, service, sub.kind, info.window if info is not None else window, sub.score, sub.business,
            sub.service, json.dumps(list(sub.tags), separators=(",", ":")), sub.comment, sub.has_contact,
            staff, matter, unit, lang, token_exp, nonce, now)


def fine_key(phone_row: Sequence[Any]) -> FineKey:
    """Where statistics file a supplementary rating: its day, window and the service's staff,
    matter and unit (stats.py: '' for none)."""
    rec = dict(zip(PHONE_NAMES, phone_row, strict=True))
    return (rec["hall"], china_day(rec["submitted_at"]), rec["window_id"], rec["staff_id"] or "",
            rec["matter_code"] or "", rec["unit"] or "")


def service_facts(service: str, info: ServiceInfo | None) -> ServiceFacts | None:
    if info is None:
        return None
    return ServiceFacts(service, info.window, info.staff_id, info.matter_code, info.unit,
                        info.finished_at, info.outcome)


def stored(row: Sequence[Any]) -> StoredPhoneRating:
    """A row of LIST_SQL."""
    rec = dict(zip(PHONE_NAMES, row[:len(PHONE_NAMES)], strict=True))
    (device, n, counter_score, supplementary_score, name_sealed, phone_sealed, case_no, staff, matter,
     unit) = row[len(PHONE_NAMES):]
    if device is not None:
        overall, overall_id = counter_score, f"{device}:{n}"
    elif supplementary_score is not None:
        overall, overall_id = supplementary_score, phone_id(rec["hall"], rec["service"], SUPPLEMENTARY)
    else:
        overall, overall_id = None, None
    counted = rec["kind"] == SUPPLEMENTARY and device is None
    replaced = device is not None and supplementary_score is not None  # a supplementary rating a counter one replaced
    number = 1 if counted else 2 if rec["kind"] == SUPPLEMENTARY or not replaced else 3
    return StoredPhoneRating(rec["hall"], rec["service"], rec["kind"], rec["window_id"], rec["score"],
                             rec["business_score"], rec["service_score"], tuple(json.loads(rec["tags"])),
                             rec["comment"], bool(rec["has_contact"]), rec["staff_id"], rec["matter_code"],
                             rec["unit"], rec["lang"], rec["token_exp"], rec["nonce"], rec["submitted_at"],
                             overall, overall_id, counted, name_sealed, phone_sealed, case_no, staff, matter,
                             unit, number)


# ---------------------------------------------------------------------------- a submission


@dataclass(frozen=True)
class PhoneSubmission:
    """A checked form for the store: the token's service, the form, and the sealed contact
    (name_sealed, phone_sealed, key id) if the rater gave one."""

    hall: str
    service: str
    window: str
    token_exp: int
    form: Submission
    lang: str
    nonce: str
    contact: tuple[str | None, str | None, str] | None = None


@dataclass(frozen=True)
class PhoneOutcome:
    """What a submission did (hub/phone/rules.py: STORE, REPEAT, OVERALL_EXISTS, …) and the
    service's state after it."""

    outcome: str
    state: PhoneState


@dataclass(frozen=True)
class PhoneWrite:
    """The rows a stored submission writes: its phone_ratings row, its phone_contacts row (or
    None), and the statistics it adds (None for a follow-up)."""

    row: tuple
    contact: tuple | None
    deltas: Any


def plan(sub: PhoneSubmission, now_state: PhoneState, now: str) -> tuple[str, PhoneWrite | None]:
    """Decide a submission against the state read in its write transaction (rules.decide)."""
    from ..phone.rules import STORE, decide
    from ..stats import phone_deltas
    outcome = decide(now_state, sub.form.kind, sub.nonce)
    if outcome != STORE:
        return outcome, None
    info = now_state.info
    phone_row = row(sub.hall, sub.service, sub.window, sub.token_exp, sub.form, sub.lang, sub.nonce, info, now)
    contact = None
    if sub.contact is not None:
        name_sealed, phone_sealed, key_id = sub.contact
        contact = (sub.hall, sub.service, sub.form.kind, name_sealed, phone_sealed, key_id, now)
    deltas = None
    if sub.form.kind == SUPPLEMENTARY:
        deltas = phone_deltas(fine_key(phone_row), sub.form.score, sub.hall, service_facts(sub.service, info))
    return outcome, PhoneWrite(phone_row, contact, deltas)
