"""/api/v1/cases through the real hub app (both backends): a bad rating posted by a gateway is a
case; a handler takes it to closed; an appeal is decided by a supervisor who is not the appellant,
and the decision shows in the ledger and the statistics; lists, the 台账 view, rates, reminders,
region limits; the refusals (401, 403, 404, 409, 422) as documented."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hub.cases import CHINA_TZ
from tests.fixtures.hub import binding, rating_item

from .conftest import H1
from .test_store import rated

A, B = "市市场监督管理局", "市税务局"
HANDLER_A = {"id": "wang", "role": "handler", "unit": A}
HANDLER_B = {"id": "zhao", "role": "handler", "unit": B}
OPERATOR = {"id": "li", "role": "operator"}
SUP1, SUP2 = {"id": "chen", "role": "supervisor"}, {"id": "sun", "role": "supervisor"}


def post_bad_ratings(hub, token) -> dict[str, dict]:
    items = [rating_item(rated("D07", 1, score=2), bound=binding("S1", unit=A)),
             rating_item(rated("D07", 2, score=1), bound=binding("S2", unit=B)),
             rating_item(rated("D08", 1, score=1)),
             rating_item(rated("D08", 2, score=5), bound=binding("S3", unit=A))]
    assert [r["status"] for r in hub.ingest(token, H1, items).json()["results"]] == ["accepted"] * 4
    listed = hub.http.get("/api/v1/cases", headers=hub.admin_headers).json()
    return {c["rating"]["ref"]: c for c in listed["cases"]}


def act(hub, case_id: int, action: str, by: dict, **args):
    return hub.http.post(f"/api/v1/cases/{case_id}/transitions", headers=hub.admin_headers,
                         json={"action": action, "by": by, **args})


def now_text(minutes: int = 0) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).astimezone(CHINA_TZ).isoformat()


def test_a_handler_moves_a_case_to_closed(hub_app, hall):
    cases = post_bad_ratings(hub_app, hall)
    assert sorted(cases) == ["D07:1", "D07:2", "D08:1"]
    case = cases["D07:1"]
    assert (case["unit"], case["state"], case["routed"], case["rating"]["score"], case["rating"]["level"]) == (
        A, "new", True, 2, "不满意")
    assert cases["D08:1"]["state"] == "unrouted" and cases["D08:1"]["unit"] is None
    assert [d["name"] for d in case["deadlines"]] == ["contact", "fix"]  # 2-5-15 (H1 has no region)
    cid = case["id"]
    steps = [("contact", {"callback": {"at": now_text(), "channel": "phone", "outcome": "reached",
                                       "note": "已联系评价人"}}, "contacted"),
             ("rectify", {"note": "窗口指引不清"}, "rectifying"),
             ("rectified", {"note": "已更新一次性告知单"}, "rectified"),
             ("feedback", {"callback": {"at": now_text(), "channel": "sms", "outcome": "reached",
                                        "satisfaction": "basically_satisfied"}}, "feedback"),
             ("close", {}, "closed")]
    for action, args, state in steps:
        answer = act(hub_app, cid, action, HANDLER_A, **args)
        assert answer.status_code == 200, answer.text
        assert answer.json()["state"] == state
    detail = hub_app.http.get(f"/api/v1/cases/{cid}", headers=hub_app.admin_headers).json()
    assert [e["action"] for e in detail["events"]] == ["open", "contact", "rectify", "rectified", "feedback", "close"]
    assert [(c["purpose"], c["channel"], c["satisfaction"]) for c in detail["callbacks"]] == [
        ("contact", "phone", None), ("feedback", "sms", "basically_satisfied")]
    assert [d["status"] for d in detail["deadlines"]] == ["met", "met", "met"]
    assert detail["actions"] == [] and detail["decision"] is None
    assert detail["state_label"] == "已办结 closed"

    # refusals
    assert act(hub_app, cid, "reopen", HANDLER_A, note="x").status_code == 409
    other = cases["D07:2"]["id"]
    assert act(hub_app, other, "contact", HANDLER_A, callback={"at": now_text(), "channel": "phone",
                                                              "outcome": "reached"}).status_code == 404
    assert act(hub_app, other, "rectify", {"id": "x", "role": "auditor"}, note="n").status_code == 403
    late = act(hub_app, other, "contact", HANDLER_B,
               callback={"at": now_text(minutes=60), "channel": "phone", "outcome": "reached"})
    assert late.status_code == 422 and "future" in late.json()["detail"][0]["msg"]
    assert act(hub_app, other, "contact", {"id": "x", "role": "handler"}, callback={}).status_code == 422
    assert act(hub_app, 99999, "close", OPERATOR).status_code == 404
    assert hub_app.http.get("/api/v1/cases").status_code == 401
    assert hub_app.http.post(f"/api/v1/cases/{other}/transitions",
                             json={"action": "close", "by": OPERATOR}).status_code == 401


def test_an_appeal_is_decided_by_a_supervisor_who_is_not_the_appellant(hub_app, hall):
    cases = post_bad_ratings(hub_app, hall)
    cid = cases["D07:2"]["id"]
    assert act(hub_app, cid, "appeal", SUP1, note="评价人误按").json()["state"] == "appealed"
    assert act(hub_app, cid, "verify", SUP1, method="records", note="x").status_code == 403
    assert act(hub_app, cid, "verify", SUP2, method="records", note="调阅录像").json()["state"] == "verified"
    assert act(hub_app, cid, "decide", SUP1, outcome="not_adopted", reason="mistaken").status_code == 403
    missing = act(hub_app, cid, "decide", SUP2, outcome="not_adopted")
    assert missing.status_code == 422 and "reason" in missing.json()["detail"][0]["msg"]
    decided = act(hub_app, cid, "decide", SUP2, outcome="not_adopted", reason="mistaken", note="误评")
    assert decided.status_code == 200 and decided.json()["state"] == "not_adopted"
    detail = hub_app.http.get(f"/api/v1/cases/{cid}", headers=hub_app.admin_headers).json()
    d = detail["decision"]
    assert (d["outcome"], d["reason"], d["appellant"], d["verified_by"], d["decided_by"], d["ref"]) == (
        "not_adopted", "mistaken", "chen", "sun", "sun", "rating:D07:2")
    assert [dl["status"] for dl in detail["deadlines"]] == ["void", "void"]
    verify = hub_app.http.get("/api/v1/ledger/verify", headers=hub_app.admin_headers).json()
    assert verify["ok"] and verify["entries"] == 5  # four ratings and the decision
    assert hub_app.rating("D07", 2)["score"] == 1  # the rating stays as it was
    day = "2026-11-21"
    total = hub_app.http.get("/api/v1/stats", headers=hub_app.admin_headers,
                             params={"from": day, "to": day}).json()["total"]
    assert (total["ratings"], total["bad"], total["not_adopted"], total["satisfaction"]) == (4, 3, 1, 1 / 3)


def test_lists_ledger_rates_reminders_and_rules(hub_app, hall, hub_db):
    from .test_cases_store import put_region
    put_region(hub_db, "jilin", H1)
    rules = hub_app.http.put("/api/v1/cases/rules/jilin", headers=hub_app.admin_headers,
                             json={"by": OPERATOR, "preset": "jilin",
                                   "limits": {"contact": {"kind": "working_days", "n": 5}}})
    assert rules.status_code == 200, rules.text
    assert (rules.json()["preset"], rules.json()["limits"]["contact"], rules.json()["updated_by"]) == (
        None, {"kind": "working_days", "n": 5}, "li")
    bad_rules = hub_app.http.put("/api/v1/cases/rules/jilin", headers=hub_app.admin_headers,
                                 json={"by": OPERATOR, "limits": {"fix": {"kind": "working_days", "n": 5}}})
    assert bad_rules.status_code == 422 and "ledger" in bad_rules.json()["detail"][0]["msg"]
    assert hub_app.http.put("/api/v1/cases/rules/nowhere", headers=hub_app.admin_headers,
                            json={"by": OPERATOR, "preset": "jilin"}).status_code == 404
    assert [p["key"] for p in hub_app.http.get("/api/v1/cases/presets", headers=hub_app.admin_headers).json()] == [
        "jilin", "2-5-15", "1-5-15"]

    cases = post_bad_ratings(hub_app, hall)
    assert cases["D07:1"]["rules"] == {"preset": None, "source": "region", "limits": rules.json()["limits"]}
    cid = cases["D07:1"]["id"]
    unrouted = cases["D08:1"]["id"]
    assert act(hub_app, unrouted, "route", OPERATOR, unit=B).json()["unit"] == B
    act(hub_app, cid, "contact", HANDLER_A, callback={"at": now_text(), "channel": "visit", "outcome": "reached"})
    act(hub_app, cid, "rectify", HANDLER_A, note="需改造系统")
    until = (datetime.now(UTC) + timedelta(days=30)).astimezone(CHINA_TZ).date().isoformat()
    in_ledger = act(hub_app, cid, "ledger", HANDLER_A, until=until, note="列入台账")
    assert in_ledger.status_code == 200, in_ledger.text
    too_late = act(hub_app, cases["D07:2"]["id"], "ledger", HANDLER_B, until="2030-01-01", note="x")
    assert too_late.status_code == 409  # not from state new

    def get(path: str, **params):
        answer = hub_app.http.get(path, headers=hub_app.admin_headers, params=params)
        assert answer.status_code == 200, answer.text
        return answer.json()

    ledger_view = get("/api/v1/cases/ledger")
    assert [c["id"] for c in ledger_view["cases"]] == [cid] and ledger_view["cases"][0]["state"] == "ledger"
    assert get("/api/v1/cases", unit=B)["total"] == 2
    assert get("/api/v1/cases", state="new,unrouted")["total"] == 2
    assert get("/api/v1/cases", unrouted="true")["total"] == 0
    page = get("/api/v1/cases", limit=2)
    assert page["total"] == 3 and len(page["cases"]) == 2 and page["next_before"] == page["cases"][-1]["id"]
    assert len(get("/api/v1/cases", limit=2, before=page["next_before"])["cases"]) == 1
    bad_state = hub_app.http.get("/api/v1/cases", params={"state": "lost"}, headers=hub_app.admin_headers)
    assert bad_state.status_code == 422
    rates = get("/api/v1/cases/rates")
    assert [(r["unit"], r["cases"]) for r in rates["units"]] == [(A, 1), (B, 2)]
    assert rates["total"]["cases"] == 3 and rates["total"]["rectification_rate"] == 0
    assert hub_app.http.post("/api/v1/cases/reminders/run", headers=hub_app.admin_headers).json() == {"written": 0}
    assert get("/api/v1/cases/reminders") == []
    callback = hub_app.http.post(f"/api/v1/cases/{unrouted}/callbacks", headers=hub_app.admin_headers,
                                 json={"by": HANDLER_B, "at": now_text(), "channel": "phone",
                                       "outcome": "unreachable"})
    assert callback.status_code == 201 and callback.json()["purpose"] == "other"
