"""One rating per service across every channel: what the phone page offers, and what a posted
form does. Pure functions over `PhoneState`, what the hub holds about one service; the store
calls `decide` again inside its write transaction, so two posts at once cannot both store.

The rules (docs/phone.md, "One rating per service"):
- A service's overall rating is its counter rating (the first device rating bound to it) if it has
  one, else its phone supplementary rating (补充评价), else, after the region's deadline, the
  system default (基本满意).
- The page offers the supplementary rating while the service has no overall rating and its
  deadline has not passed (then: "closed"); once it has one (from the counter or from the phone),
  ONE follow-up (追加评价: indicators, tags, text; never an overall rating); after that, "done".
- A counter rating that reaches the hub after a phone supplementary rating (the hall's gateway was
  offline, or the citizen pressed a button and also rated on the phone) wins: the counter is the
  channel the citizen used at the service, it is signed by the device, and neither record is ever
  deleted. The supplementary rating stays in the ledger as it was given, but its overall score no
  longer counts: statistics take it out, exports show it as a further evaluation of the service
  (评价次数 2, its overall rating replaced by the counter's), and it is the service's one
  follow-up: the page offers no other. Either arrival order ends in the same state: the counter's
  overall rating, one phone record that follows it, the page "done".
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .form import FOLLOWUP, SUPPLEMENTARY

# page modes
OFFER_SUPPLEMENTARY = "supplementary"
OFFER_FOLLOWUP = "followup"
DONE = "done"
CLOSED = "closed"

# outcomes of a posted form
STORE = "store"  # store it
REPEAT = "repeat"  # this form was stored already (same nonce): nothing to do, same answer
OVERALL_EXISTS = "overall_exists"  # a supplementary form, but the service has its overall rating now
ALREADY = "already"  # a second follow-up
NO_OVERALL = "no_overall"  # a follow-up form for a service with no overall rating
TOO_LATE = "too_late"  # a supplementary form after the deadline (a default was stored)


@dataclass(frozen=True)
class PhoneRecord:
    """A stored phone rating of the service, as the rules need it."""

    kind: str
    score: int | None
    nonce: str
    submitted_at: str


@dataclass(frozen=True)
class CounterRating:
    """The service's counter rating: the first device rating bound to it (ingest order)."""

    id: str  # device:n
    score: int
    received_at: str


@dataclass(frozen=True)
class ServiceInfo:
    """The service as the gateway reported it, once it has reached the hub."""

    ticket: str
    window: str
    staff_id: str | None
    staff_name: str | None
    matter_code: str | None
    matter_name: str | None
    unit: str | None
    finished_at: str | None
    outcome: str


@dataclass(frozen=True)
class PhoneState:
    """What the hub holds about one service of one hall."""

    hall: str
    service: str
    records: dict[str, PhoneRecord] = field(default_factory=dict)  # by kind
    counter: CounterRating | None = None
    defaulted: bool = False
    info: ServiceInfo | None = None

    @property
    def has_overall(self) -> bool:
        return self.counter is not None or SUPPLEMENTARY in self.records

    @property
    def followed(self) -> bool:
        """The service has its one follow-up: a phone follow-up, or a phone supplementary rating
        that a counter rating replaced."""
        return FOLLOWUP in self.records or (SUPPLEMENTARY in self.records and self.counter is not None)

    @property
    def overall_channel(self) -> str | None:
        """`counter`, `phone` or None: where the service's overall rating came from."""
        if self.counter is not None:
            return "counter"
        return "phone" if SUPPLEMENTARY in self.records else None


def page_mode(state: PhoneState, now: datetime, due: datetime | None) -> str:
    """What the page offers for the service at `now`; `due`: when its supplementary rating
    closes (None: no deadline known, e.g. a hall in no region; the token's expiry still ends it)."""
    if state.followed:
        return DONE
    if state.has_overall:
        return OFFER_FOLLOWUP
    if state.defaulted or (due is not None and now >= due):
        return CLOSED
    if state.info is not None and state.info.outcome == "no_show":
        return CLOSED  # nobody was served: there is nothing to rate
    return OFFER_SUPPLEMENTARY


def decide(state: PhoneState, kind: str, nonce: str) -> str:
    """What a posted form of `kind` with `nonce` does, given what is stored (the deadline is
    checked before, by the page; here only a stored default closes a supplementary rating)."""
    if any(r.nonce == nonce for r in state.records.values()):
        return REPEAT
    if kind == SUPPLEMENTARY:
        if state.has_overall:
            return OVERALL_EXISTS
        if state.defaulted:
            return TOO_LATE
        return STORE
    if state.followed:
        return ALREADY
    if not state.has_overall:
        return NO_OVERALL
    return STORE
