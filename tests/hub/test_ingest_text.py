"""Text no store can keep (U+0000: PostgreSQL text cannot hold it; a lone surrogate: not UTF-8),
anywhere in an item, is a form error naming the field, and the rejection record itself stays
storable. Pure: parse_item and stored_item_text, without a store (test_store.py posts such items)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hcp.protocol import sign_rating
from hub.ingest import BadItem, parse_item, stored_item_text
from tests.fixtures.hub import binding, rating_item, service_item

from .conftest import alert_item, device_key, health_item, health_payload

H1 = "H1"
BAD_TEXT = ["\x00", "\ud800", "\udfff", "a\x00b", "x\udc00"]


def rated_item(**binding_fields) -> dict:
    rating = sign_rating(device_key("D07"), H1, "D07", 1, 1, 10, "s1", 4)
    return rating_item(rating, binding(service="s1", **binding_fields))


@pytest.mark.parametrize("bad", BAD_TEXT, ids=repr)
@pytest.mark.parametrize("make, reason, key", [
    (lambda bad: service_item("s1", staff_name=f"张{bad}"), "bad_field:staff_name", "service:H1:s1"),
    (lambda bad: rated_item(unit=bad), "bad_field:binding.unit", "rating:D07:1"),
    (lambda bad: health_item(health=health_payload(err=bad)), "bad_field:health.err", "health:H1:D07:3:81234"),
    (lambda bad: health_item(health=health_payload(stuck=[1, bad])), "bad_field:health.stuck", "health:H1:D07:3:81234"),
    (lambda bad: alert_item(detail=bad), "bad_field:detail", "alert:H1:17:raised"),
    (lambda bad: alert_item(alert=f"door{bad}"), "bad_field:alert", "alert:H1:17:raised"),
    (lambda bad: {**service_item("s1"), "extra": {"deep": [{"er": bad}]}}, "bad_field:extra.deep", "service:H1:s1"),
    (lambda bad: {**service_item("s1"), f"k{bad}": 1}, "bad_json", "service:H1:s1"),
], ids=lambda value: value if isinstance(value, str) else None)
def test_unstorable_text_is_a_form_error_naming_its_field(make, reason, key, bad):
    item = make(bad)
    parsed = parse_item(item, H1)
    assert isinstance(parsed, BadItem)
    assert (parsed.reason, parsed.key) == (reason, key)
    stored = stored_item_text(item)
    stored.encode("utf-8")  # storable: JSON escapes U+0000, a lone surrogate became "?"
    assert "\x00" not in stored


def test_paired_surrogates_and_other_control_characters_are_kept():
    item = service_item("s1", staff_name="张三 😀", unit="line\nbreak\ttab\x01")
    assert parse_item(json.loads(json.dumps(item)), H1) == parse_item(item, H1)
    assert not isinstance(parse_item(item, H1), BadItem)


clean_text = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=8)


def json_values(text: st.SearchStrategy[str]) -> st.SearchStrategy[object]:
    return st.recursive(st.none() | st.booleans() | st.integers() | text,
                        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                        max_leaves=12)


@given(extra=st.dictionaries(clean_text, json_values(clean_text), max_size=4), bad=st.sampled_from(BAD_TEXT),
       where=st.integers(0, 2))
def test_any_item_with_unstorable_text_anywhere_is_rejected_and_its_record_is_storable(extra, bad, where):
    item = {**service_item("s1"), **{f"x_{k}": v for k, v in extra.items()}}
    if where == 0:
        item["unit"] = f"u{bad}"
    elif where == 1:
        item["x_extra"] = [{"note": bad}]
    else:
        item[f"x{bad}"] = None
    parsed = parse_item(item, H1)
    assert isinstance(parsed, BadItem) and parsed.key == "service:H1:s1"
    assert parsed.reason == ("bad_field:unit", "bad_field:x_extra", "bad_json")[where]
    stored_item_text(item).encode("utf-8")


@given(extra=st.dictionaries(clean_text, json_values(clean_text), max_size=4))
def test_items_without_such_text_are_not_refused_for_it(extra):
    item = {**service_item("s1"), **{f"x_{k}": v for k, v in extra.items()}}
    assert not isinstance(parse_item(item, H1), BadItem)


def test_text_that_only_looks_like_an_escape_is_kept():
    # the item's JSON holds `\\u0000` here: a backslash, then "u0000" (the quick check's false alarm)
    item = service_item("s1", staff_name="a\\u0000b", unit="\\\\u0000")
    parsed = parse_item(item, H1)
    assert not isinstance(parsed, BadItem) and parsed.staff_name == "a\\u0000b"


@pytest.mark.parametrize("pad, fits", [(0, True), (700, True), (900, False)])
def test_the_size_limit_is_the_device_payloads_not_the_items(pad, fits):
    rating = sign_rating(device_key("D07"), H1, "D07", 1, 1, 10, "s1", 4)
    item = rating_item(rating, binding(service="s1", unit="长" * 200))  # the item alone is over 1024 bytes
    item["rating"]["pad"] = "x" * pad
    assert len(json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode()) > 1024
    parsed = parse_item(item, H1)
    if fits:
        assert not isinstance(parsed, BadItem)
        assert parsed.raw_text == json.dumps(item, separators=(",", ":"), ensure_ascii=False)
    else:
        assert isinstance(parsed, BadItem) and parsed.reason == "too_large"
