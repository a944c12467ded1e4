"""The ledger's chain on its own (hub/ledger.py): any single edit, deletion or insertion is found,
at the entry where it is; store-level tests (a row edited in the real database) are in
test_ledger_store.py."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hub import ledger
from hub.ledger import GENESIS_HEAD, Entry, Head, Pending, Verifier

AT = "2026-11-21T02:00:00.000+00:00"

records = st.lists(
    st.fixed_dictionaries({"device": st.sampled_from(["D01", "D02"]), "n": st.integers(1, 10**6),
                           "score": st.integers(1, 5), "staff_id": st.none() | st.text(max_size=8),
                           "verified": st.booleans()}),
    min_size=1, max_size=30)


def build(recs: list[dict]) -> tuple[list[Entry], list[dict]]:
    pending = [Pending("rating", "H1", f"{r.get('device', 'D01')}:{r['n']}", r)
               for i, r in enumerate(recs)]
    return ledger.append(GENESIS_HEAD, pending, AT), recs


def verify(entries: list[Entry], recs: list[dict | None], expect: Head | None = None,
           unledgered: int = 0) -> ledger.Verification:
    v = Verifier(expect)
    for e, r in zip(entries, recs, strict=True):
        v.feed(e, r)
    return v.finish({"rating": (unledgered, [("H1", "D01:99")] if unledgered else [])})


@given(records)
def test_an_untouched_chain_verifies(recs: list[dict]) -> None:
    entries, _ = build(recs)
    result = verify(entries, recs, expect=Head(entries[-1].seq, entries[-1].hash))
    assert result.ok and result.entries == len(recs) and result.first_broken is None
    assert result.head == Head(len(recs), entries[-1].hash)


def test_appending_in_two_batches_is_one_chain() -> None:
    recs = [{"n": i} for i in range(6)]
    whole = ledger.append(GENESIS_HEAD, [Pending("service", "H1", str(i), r) for i, r in enumerate(recs)], AT)
    first = ledger.append(GENESIS_HEAD, [Pending("service", "H1", str(i), r) for i, r in enumerate(recs[:2])], AT)
    rest = ledger.append(Head(first[-1].seq, first[-1].hash),
                         [Pending("service", "H1", str(i + 2), r) for i, r in enumerate(recs[2:])], AT)
    assert first + rest == whole


@given(records, st.data())
def test_an_edited_record_is_found_at_its_entry(recs: list[dict], data: st.DataObject) -> None:
    entries, _ = build(recs)
    i = data.draw(st.integers(0, len(recs) - 1))
    edited = [dict(r) for r in recs]
    edited[i]["score"] = edited[i]["score"] % 5 + 1  # 1..5, never the same
    result = verify(entries, edited)
    assert not result.ok
    assert result.first_broken is not None
    assert (result.first_broken.seq, result.first_broken.problem) == (i + 1, "record_altered")
    assert result.problems == 1


@given(records, st.data())
def test_an_edited_entry_is_found_where_it_is(recs: list[dict], data: st.DataObject) -> None:
    entries, _ = build(recs)
    i = data.draw(st.integers(0, len(recs) - 1))
    what = data.draw(st.sampled_from(["ref", "hall", "digest", "hash", "at"]))
    changed = {"ref": "D99:1", "hall": "H2", "digest": "f" * 64, "hash": "e" * 64,
               "at": "2020-01-01T00:00:00.000+00:00"}[what]
    entries[i] = dataclasses.replace(entries[i], **{what: changed})
    result = verify(entries, recs)
    assert not result.ok and result.first_broken is not None
    assert result.first_broken.seq == i + 1
    kinds = {b.problem for b in result.breaks}
    assert "entry_altered" in kinds


@given(records, st.data())
def test_a_deleted_entry_or_record_is_found(recs: list[dict], data: st.DataObject) -> None:
    entries, _ = build(recs)
    i = data.draw(st.integers(0, len(recs) - 1))
    gone_record = verify(entries, [None if j == i else r for j, r in enumerate(recs)])
    assert gone_record.first_broken is not None
    assert (gone_record.first_broken.seq, gone_record.first_broken.problem) == (i + 1, "record_missing")
    if i < len(recs) - 1:  # the newest entry deleted is found by the head only (next test)
        gone_entry = verify(entries[:i] + entries[i + 1:], recs[:i] + recs[i + 1:])
        assert gone_entry.first_broken is not None
        assert (gone_entry.first_broken.seq, gone_entry.first_broken.problem) == (i + 2, "seq_gap")


def test_a_rewritten_tail_is_found_by_the_recorded_head() -> None:
    recs = [{"n": i, "score": 5} for i in range(5)]
    entries, _ = build(recs)
    anchored = Head(entries[3].seq, entries[3].hash)  # published in last month's bulletin
    # someone with database access edits record 2 and recomputes every hash after it
    forged = [dict(r) for r in recs]
    forged[1]["score"] = 1
    reforged, _ = build(forged)
    assert verify(reforged, forged).ok  # self-consistent: the chain alone cannot tell
    result = verify(reforged, forged, expect=anchored)
    assert not result.ok and result.first_broken is not None
    assert (result.first_broken.seq, result.first_broken.problem) == (4, "head_mismatch")
    # a head beyond the end of the chain (entries deleted from the end) is a mismatch too
    truncated = verify(entries[:2], recs[:2], expect=anchored)
    assert not truncated.ok and truncated.breaks[-1].problem == "head_mismatch"


def test_records_without_an_entry_fail_verification() -> None:
    entries, recs = build([{"n": 1}])
    assert verify(entries, recs).ok
    result = verify(entries, recs, unledgered=2)
    assert not result.ok and result.unledgered == {"rating": 2}
    assert result.as_dict()["unledgered"] == {"rating": 2}
    assert result.first_broken == ledger.Break(0, "rating", "H1", "D01:99", "unledgered")


def test_canonical_bytes_do_not_depend_on_key_order_and_keep_chinese() -> None:
    a = ledger.canonical({"b": 1, "a": "非常满意"})
    assert a == ledger.canonical({"a": "非常满意", "b": 1}) == '{"a":"非常满意","b":1}'.encode()


def test_an_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown ledger kind"):
        ledger.append(GENESIS_HEAD, [Pending("comment", "H1", "x", {})], AT)
