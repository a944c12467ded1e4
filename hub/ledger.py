"""The tamper-evident ledger: every record that counts (a rating, a service, a system default
rating, a phone rating) gets one append-only ledger entry, hash-chained to the entry before it.

An entry is (seq, kind, hall, ref, digest, hash, at):
- `seq` 1, 2, 3, ... with no gaps, in the order the records were stored;
- `kind`, `hall` and `ref` name the record: `rating` (ref `device:n`), `service` (ref the service
  id), `default` (ref the service id it defaults) and `phone` (ref `{service}:{kind}`, kind
  `supplementary` or `followup`: docs/phone.md);
- `digest` = SHA-256 of the record's canonical bytes (`canonical`: the stored columns as JSON,
  keys sorted, no spaces, UTF-8), so the entry commits to every stored field;
- `hash` = SHA-256 over the previous entry's hash and this entry's fields (`link`); the first
  entry's previous hash is `GENESIS`.

`verify` walks entries in seq order with the record each one names, as it is stored now. An entry
whose fields and predecessor no longer give its hash was edited (`entry_altered`; an edited hash
also breaks the entry after it: each entry is checked against the hash stored before it, so one
edit shows where it is); a record whose digest differs
from its entry's was edited (`record_altered`); a record that is gone is `record_missing`; a seq
that skips is `seq_gap` (an entry was deleted). Records stored without an entry (inserted behind the
hub's back) are found by looking each stored record up in the ledger (`unledgered`). Whoever can rewrite the database can
also recompute every later hash: the defence against that is the head (`seq`, `hash`) recorded
outside the hub (a monthly bulletin, the provincial platform); `verify` checks it when given.
Corrections never edit a record: they are new records with their own entries.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

GENESIS = "0" * 64
KINDS = ("rating", "service", "default", "phone", "appeal")  # phone: docs/phone.md; appeal: hub/cases.py
MAX_BREAKS = 20  # a verification lists this many problems, then only counts them


# json.dumps with these arguments, without making a new encoder per call (one per stored record)
_canonical_text = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
_string = json.encoder.encode_basestring  # a str as json.dumps(ensure_ascii=False) writes it


def canonical(record: Mapping[str, Any]) -> bytes:
    """A record's bytes for its digest: JSON, keys sorted, compact, UTF-8 (not ASCII-escaped)."""
    return _canonical_text(record).encode()


def digest(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(_canonical_text(record).encode()).hexdigest()


def link(prev: str, seq: int, kind: str, hall: str, ref: str, digest_hex: str, at: str) -> str:
    """An entry's hash: SHA-256 of the JSON array [prev, seq, kind, hall, ref, digest, at]
    (compact, not ASCII-escaped, UTF-8)."""
    try:
        if type(seq) is not int:
            raise TypeError
        fields = (f"[{_string(prev)},{seq},{_string(kind)},{_string(hall)},{_string(ref)},"
                  f"{_string(digest_hex)},{_string(at)}]")  # the same bytes as json.dumps, faster
    except TypeError:  # not the types an entry has: json.dumps says what they are
        fields = json.dumps([prev, seq, kind, hall, ref, digest_hex, at], separators=(",", ":"),
                            ensure_ascii=False)
    return hashlib.sha256(fields.encode()).hexdigest()


@dataclass(frozen=True)
class Entry:
    seq: int
    kind: str
    hall: str
    ref: str
    digest: str
    hash: str
    at: str


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str


GENESIS_HEAD = Head(0, GENESIS)


@dataclass(frozen=True)
class Pending:
    """A record about to be stored, for `append`."""

    kind: str
    hall: str
    ref: str
    record: Mapping[str, Any]


def append(head: Head, records: Iterable[Pending], at: str) -> list[Entry]:
    """The entries for `records`, chained after `head` (the newest stored entry, or GENESIS_HEAD).
    The new head is the last entry's (seq, hash)."""
    entries = []
    seq, prev = head.seq, head.hash
    for p in records:
        if p.kind not in KINDS:
            raise ValueError(f"unknown ledger kind {p.kind!r}")
        seq += 1
        d = digest(p.record)
        prev = link(prev, seq, p.kind, p.hall, p.ref, d, at)
        entries.append(Entry(seq, p.kind, p.hall, p.ref, d, prev, at))
    return entries


@dataclass(frozen=True)
class Break:
    seq: int
    kind: str
    hall: str
    ref: str
    problem: str  # entry_altered | record_altered | record_missing | seq_gap | head_mismatch | unledgered (seq 0)


@dataclass
class Verification:
    """What `Verifier` found. `ok` means: every entry links, every record matches its entry, no
    record lacks one, and the expected head (if given) is in the chain."""

    entries: int = 0
    head: Head = GENESIS_HEAD
    breaks: list[Break] = field(default_factory=list)
    problems: int = 0
    unledgered: dict[str, int] = field(default_factory=dict)  # kind -> records without an entry
    # (some of them are listed in `breaks` as problem `unledgered`, seq 0)

    @property
    def ok(self) -> bool:
        return self.problems == 0 and not any(self.unledgered.values())

    @property
    def first_broken(self) -> Break | None:
        return self.breaks[0] if self.breaks else None

    def as_dict(self) -> dict:
        def brk(b: Break) -> dict:
            return {"seq": b.seq, "kind": b.kind, "hall": b.hall, "ref": b.ref, "problem": b.problem}
        return {"ok": self.ok, "entries": self.entries,
                "head": {"seq": self.head.seq, "hash": self.head.hash},
                "first_broken": brk(self.breaks[0]) if self.breaks else None,
                "problems": self.problems, "breaks": [brk(b) for b in self.breaks],
                "unledgered": dict(self.unledgered)}


class Verifier:
    """Feed entries in seq order, each with its record as stored now (None: not found); then
    `finish`. Constant memory: a store streams its ledger through this."""

    def __init__(self, expect: Head | None = None):
        self.result = Verification()
        self._prev = GENESIS
        self._seq = 0
        self._expect = expect
        self._expect_seen = expect is None or expect.seq == 0

    def _break(self, e: Entry, problem: str) -> None:
        self.result.problems += 1
        if len(self.result.breaks) < MAX_BREAKS:
            self.result.breaks.append(Break(e.seq, e.kind, e.hall, e.ref, problem))

    def feed(self, e: Entry, record: Mapping[str, Any] | None) -> None:
        if e.seq != self._seq + 1:
            self._break(e, "seq_gap")
        elif link(self._prev, e.seq, e.kind, e.hall, e.ref, e.digest, e.at) != e.hash:
            self._break(e, "entry_altered")  # its fields, or its hash (then the next one breaks too)
        if record is None:
            self._break(e, "record_missing")
        elif digest(record) != e.digest:
            self._break(e, "record_altered")
        if self._expect is not None and e.seq == self._expect.seq:
            self._expect_seen = e.hash == self._expect.hash
            if not self._expect_seen:
                self._break(e, "head_mismatch")
        self._prev, self._seq = e.hash, e.seq
        self.result.entries += 1
        self.result.head = Head(e.seq, e.hash)

    def finish(self, unledgered: Mapping[str, tuple[int, list[tuple[str, str]]]]) -> Verification:
        """`unledgered`: per kind, how many stored records have no entry and (hall, ref) of some."""
        self.result.unledgered = {kind: count for kind, (count, _) in unledgered.items() if count}
        for kind, (_count, some) in unledgered.items():
            for hall, ref in some:
                if len(self.result.breaks) < MAX_BREAKS:
                    self.result.breaks.append(Break(0, kind, hall, ref, "unledgered"))
        if not self._expect_seen and self._expect is not None:
            self.result.problems += 1
            if len(self.result.breaks) < MAX_BREAKS:
                self.result.breaks.append(Break(self._expect.seq, "", "", "", "head_mismatch"))
        return self.result
