"""Cases from the phone rating page (both backends): a bad 补充评价 opens its own case in the
transaction that stores it, real-name when the rater left a name or number; a 追加评价 with them
makes the counter rating's case real-name; the case shows the rater masked, and unmasked only to
an operator or supervisor who gives a reason, each read in the audit log; a phone case appealed
and not adopted leaves satisfaction."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.accounts import Browser, create_user
from tests.fixtures.hub import running_app
from tests.fixtures.phone import H1, PhoneHub, write_key_file

UNIT = "市市场监督管理局"  # the unit of tests.fixtures.hub's services and bindings


@pytest.fixture
def phone(tmp_path: Path, hub_db: dict[str, Any]) -> Iterator[PhoneHub]:
    keys = write_key_file(tmp_path / "phone-keys")
    with running_app(tmp_path / "hub-app", phone_key_file=keys, **hub_db) as hub:
        p = PhoneHub(hub).setup()
        try:
            yield p
        finally:
            p.close()


def cases_of(phone: PhoneHub) -> dict[str, dict]:
    listed = phone.admin("GET", "/api/v1/cases").json()
    return {c["rating"]["ref"]: c for c in listed["cases"]}


def signed_in(hub, login: str, role: str, **scope) -> Browser:
    user = create_user(hub, login, role, **scope)
    b = Browser(hub.url)
    assert b.sign_in(login, user.password).status_code == 303
    return b


def test_a_bad_supplementary_rating_opens_a_real_name_case_shown_masked(phone):
    phone.service("svc-p1")
    token = phone.token("svc-p1")
    assert phone.rate(token, score="1", name="张三丰", phone="139 1234 5678", comment="等了两小时").status_code == 303
    assert phone.rate(token, score="1", name="张三丰", phone="139 1234 5678").status_code != 500  # a repeat
    found = cases_of(phone)
    assert list(found) == ["svc-p1:supplementary"]
    case = found["svc-p1:supplementary"]
    assert (case["rating"]["kind"], case["rating"]["score"], case["unit"], case["real_name"], case["state"]) == (
        "phone", 1, UNIT, True, "new")
    detail = phone.admin("GET", f"/api/v1/cases/{case['id']}").json()
    assert detail["contacts"] == [{"kind": "supplementary", "name": "张**", "phone": "139****5678"}]
    assert phone.verify_ledger()["ok"]
    assert phone.rate(phone.token("svc-p2"), score="4").status_code == 303  # a good one opens nothing
    assert list(cases_of(phone)) == ["svc-p1:supplementary"]

    with signed_in(phone.hub, "hd1", "handler", unit=UNIT) as handler:
        page = handler.get(f"/cases/{case['id']}").text
        assert "139****5678" in page and "13912345678" not in page
        assert 'action="/cases/%d/contact"' % case["id"] not in page  # no unmasking for a handler
        refused = handler.post_form(f"/cases/{case['id']}/contact", {"reason": "回访"})
        assert refused.status_code == 403
    with signed_in(phone.hub, "op1", "operator", region="jilin") as op:
        page = op.get(f"/cases/{case['id']}").text
        assert 'action="/cases/%d/contact"' % case["id"] in page and "13912345678" not in page
        no_reason = op.post_form(f"/cases/{case['id']}/contact", {"reason": " "})
        assert no_reason.status_code == 422 and "13912345678" not in no_reason.text
        shown = op.post_form(f"/cases/{case['id']}/contact", {"reason": "差评回访"})
        assert shown.status_code == 200 and "13912345678" in shown.text and "张三丰" in shown.text
        assert "13912345678" not in op.get(f"/cases/{case['id']}").text  # shown once, not kept
    log = phone.admin("GET", "/api/v1/audit", params={"event": "personal_data_read"}).json()["entries"]
    assert [(e["login"], e["record"], e["detail"]) for e in log] == [
        ("op1", "phone_rating:H1/svc-p1/supplementary", {"reason": f"case {case['id']}: 差评回访"})]


def test_a_followup_with_a_name_makes_the_counter_ratings_case_real_name(phone):
    phone.service("svc-c1")
    bad = phone.counter("svc-c1", 2)
    case = cases_of(phone)[bad]
    assert not case["real_name"] and case["rating"]["kind"] == "rating"
    sent = phone.rate(phone.token("svc-c1"), business="1", comment="还是没解决", name="李四", phone="13900001111")
    assert sent.status_code == 303, sent.text
    after = cases_of(phone)
    assert list(after) == [bad] and after[bad]["real_name"]
    events = phone.admin("GET", f"/api/v1/cases/{case['id']}").json()["events"]
    assert [e["action"] for e in events] == ["open", "real_name"]
    assert phone.admin("GET", f"/api/v1/cases/{case['id']}").json()["contacts"][0]["kind"] == "followup"

    phone.service("svc-c2")
    phone.counter("svc-c2", 5)
    assert phone.rate(phone.token("svc-c2"), business="1", name="王五", phone="13900002222").status_code == 303
    assert list(cases_of(phone)) == [bad]  # a follow-up of a good rating opens nothing


def test_a_phone_case_not_adopted_leaves_satisfaction(phone):
    phone.service("svc-a1")
    assert phone.rate(phone.token("svc-a1"), score="2").status_code == 303
    phone.service("svc-a2")
    phone.counter("svc-a2", 5)
    before = phone.today_stats()
    assert (before["ratings"], before["bad"], before["satisfaction"]) == (2, 1, 0.5)
    case = cases_of(phone)["svc-a1:supplementary"]
    with signed_in(phone.hub, "hd", "handler", unit=UNIT) as hd, signed_in(phone.hub, "sv", "supervisor") as sv:
        for who, action, fields in ((hd, "appeal", {"note": "误点"}),
                                    (sv, "verify", {"method": "phone_callback", "note": "电话核实"}),
                                    (sv, "decide", {"outcome": "not_adopted", "reason": "mistaken"})):
            who.get(f"/cases/{case['id']}")
            assert who.post_form(f"/cases/{case['id']}/act", {"action": action, **fields}).status_code == 303
    after = phone.today_stats()
    assert (after["ratings"], after["bad"], after["not_adopted"], after["satisfaction"]) == (2, 1, 1, 1.0)
    verified = phone.verify_ledger()
    assert verified["ok"]
    (entry,) = [row for row in phone.hub.query("SELECT kind, ref FROM ledger") if row[0] == "appeal"]
    assert entry == ("appeal", "phone:svc-a1:supplementary")
    assert re.fullmatch(r"\d+", str(phone.hub.query("SELECT rating_seq FROM appeal_decisions")[0][0]))
