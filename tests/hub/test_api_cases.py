"""/api/v1/cases through the real hub app (both backends), as signed-in people (docs/accounts.md):
a bad rating posted by a gateway is a case; a handler takes it to closed; an appeal is decided by a
supervisor who is not the appellant, and the decision shows in the ledger and the statistics;
a handler of unit A sees nothing of unit B; lists, the 台账 view, rates, reminders, region limits;
the refusals (401, 403, 404, 409, 422) as documented."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import httpx

from hub.cases import CHINA_TZ
from tests.fixtures.accounts import Browser, create_user
from tests.fixtures.hub import binding, rating_item

from .conftest import H1
from .test_store import rated

A, B = "市市场监督管理局", "市税务局"
PEOPLE = {"wang": ("handler", {"unit": A}), "zhao": ("handler", {"unit": B}), "li": ("operator", {}),
          "chen": ("supervisor", {}), "sun": ("supervisor", {}), "audi": ("auditor", {}),
          "qian": ("operator", {"unit": A})}


class Person:
    """A signed-in person calling the JSON API with the session cookie (and its CSRF token)."""

    def __init__(self, browser: Browser):
        self.b = browser

    def get(self, path: str, **params) -> httpx.Response:
        return self.b.http.get(path, params=params, headers={"Accept": "application/json"})

    def send(self, method: str, path: str, body: dict, *, csrf: bool = True) -> httpx.Response:
        headers = {"Accept": "application/json", **({"X-CSRF-Token": self.b.csrf or ""} if csrf else {})}
        return self.b.http.request(method, path, json=body, headers=headers)


@contextmanager
def people(hub, *logins: str) -> Iterator[dict[str, Person]]:
    signed_in: dict[str, Person] = {}
    try:
        for login in logins:
            role, scope = PEOPLE[login]
            user = create_user(hub, login, role, **scope)
            browser = Browser(hub.url)
            assert browser.sign_in(login, user.password).status_code == 303
            signed_in[login] = Person(browser)
        yield signed_in
    finally:
        for person in signed_in.values():
            person.b.http.close()


def post_bad_ratings(hub, token) -> dict[str, dict]:
    items = [rating_item(rated("D07", 1, score=2), bound=binding("S1", unit=A)),
             rating_item(rated("D07", 2, score=1), bound=binding("S2", unit=B)),
             rating_item(rated("D08", 1, score=1)),
             rating_item(rated("D08", 2, score=5), bound=binding("S3", unit=A))]
    assert [r["status"] for r in hub.ingest(token, H1, items).json()["results"]] == ["accepted"] * 4
    listed = hub.http.get("/api/v1/cases", headers=hub.admin_headers).json()
    return {c["rating"]["ref"]: c for c in listed["cases"]}


def act(person: Person, case_id: int, action: str, **args) -> httpx.Response:
    return person.send("POST", f"/api/v1/cases/{case_id}/transitions", {"action": action, **args})


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
    with people(hub_app, "wang", "zhao", "audi") as p:
        wang = p["wang"]
        assert wang.get(f"/api/v1/cases/{cid}").json()["actions"] == ["contact", "appeal"]
        steps = [("contact", {"callback": {"at": now_text(), "channel": "phone", "outcome": "reached",
                                           "note": "已联系评价人"}}, "contacted"),
                 ("rectify", {"note": "窗口指引不清"}, "rectifying"),
                 ("rectified", {"note": "已更新一次性告知单"}, "rectified"),
                 ("feedback", {"callback": {"at": now_text(), "channel": "sms", "outcome": "reached",
                                            "satisfaction": "basically_satisfied"}}, "feedback"),
                 ("close", {}, "closed")]
        for action, args, state in steps:
            answer = act(wang, cid, action, **args)
            assert answer.status_code == 200, answer.text
            assert answer.json()["state"] == state
        detail = wang.get(f"/api/v1/cases/{cid}").json()
        assert [(e["action"], e["actor"]) for e in detail["events"]] == [
            ("open", "system"), ("contact", "wang"), ("rectify", "wang"), ("rectified", "wang"),
            ("feedback", "wang"), ("close", "wang")]
        assert [(c["purpose"], c["channel"], c["satisfaction"]) for c in detail["callbacks"]] == [
            ("contact", "phone", None), ("feedback", "sms", "basically_satisfied")]
        assert [d["status"] for d in detail["deadlines"]] == ["met", "met", "met"]
        assert detail["actions"] == [] and detail["decision"] is None
        assert detail["state_label"] == "已办结 closed"

        # a handler of unit A sees nothing of unit B's or the unrouted cases
        other = cases["D07:2"]["id"]
        listed = wang.get("/api/v1/cases").json()
        assert [c["id"] for c in listed["cases"]] == [cid] and listed["total"] == 1
        assert wang.get(f"/api/v1/cases/{other}").status_code == 404
        assert wang.get(f"/api/v1/cases/{cases['D08:1']['id']}").status_code == 404
        assert act(wang, other, "contact", callback={"at": now_text(), "channel": "phone",
                                                     "outcome": "reached"}).status_code == 404
        assert [r["unit"] for r in wang.get("/api/v1/cases/rates").json()["units"]] == [A]
        # refusals
        assert act(wang, cid, "reopen", note="x").status_code == 409
        zhao = p["zhao"]
        late = act(zhao, other, "contact", callback={"at": now_text(minutes=60), "channel": "phone",
                                                     "outcome": "reached"})
        assert late.status_code == 422 and "future" in late.json()["detail"][0]["msg"]
        assert act(zhao, other, "route", unit=A).status_code == 403
        assert zhao.send("POST", f"/api/v1/cases/{other}/transitions", {"action": "appeal", "note": "x"},
                         csrf=False).status_code == 403  # the session's CSRF token is required
        assert act(zhao, 99999, "close").status_code == 404
        audi = p["audi"]
        assert audi.get("/api/v1/cases").status_code == 403  # figures only
        assert audi.get("/api/v1/cases/rates").json()["total"]["cases"] == 3
    assert httpx.get(f"{hub_app.url}/api/v1/cases").status_code == 401


def test_an_appeal_is_decided_by_a_supervisor_who_is_not_the_appellant(hub_app, hall):
    cases = post_bad_ratings(hub_app, hall)
    cid = cases["D07:2"]["id"]
    with people(hub_app, "zhao", "chen", "sun") as p:
        zhao, chen, sun = p["zhao"], p["chen"], p["sun"]
        assert act(zhao, cid, "appeal", note="评价人误按").json()["state"] == "appealed"
        assert act(zhao, cid, "verify", method="records", note="x").status_code == 403  # not a supervisor
        assert act(chen, cid, "verify", method="records", note="调阅录像").json()["state"] == "verified"
        missing = act(sun, cid, "decide", outcome="not_adopted")
        assert missing.status_code == 422 and "reason" in missing.json()["detail"][0]["msg"]
        decided = act(sun, cid, "decide", outcome="not_adopted", reason="mistaken", note="误评")
        assert decided.status_code == 200 and decided.json()["state"] == "not_adopted"
        detail = sun.get(f"/api/v1/cases/{cid}").json()
    d = detail["decision"]
    assert (d["outcome"], d["reason"], d["appellant"], d["verified_by"], d["decided_by"], d["ref"]) == (
        "not_adopted", "mistaken", "zhao", "chen", "sun", "rating:D07:2")
    assert [dl["status"] for dl in detail["deadlines"]] == ["void", "void"]
    verify = hub_app.http.get("/api/v1/ledger/verify", headers=hub_app.admin_headers).json()
    assert verify["ok"] and verify["entries"] == 5  # four ratings and the decision
    assert hub_app.rating("D07", 2)["score"] == 1  # the rating stays as it was
    day = "2026-11-21"
    total = hub_app.http.get("/api/v1/stats", headers=hub_app.admin_headers,
                             params={"from": day, "to": day}).json()["total"]
    assert (total["ratings"], total["bad"], total["not_adopted"], total["satisfaction"]) == (4, 3, 1, 1 / 3)


def test_a_supervisor_cannot_decide_their_own_appeal(hub_app, hall):
    cases = post_bad_ratings(hub_app, hall)
    cid = cases["D07:1"]["id"]
    with people(hub_app, "chen", "sun") as p:
        chen, sun = p["chen"], p["sun"]
        assert act(chen, cid, "appeal", note="本单位申诉").status_code == 200
        assert "verify" not in chen.get(f"/api/v1/cases/{cid}").json()["actions"]
        own = act(chen, cid, "verify", method="records", note="x")
        assert own.status_code == 403 and "appellant" in own.json()["detail"]
        assert act(sun, cid, "verify", method="site_visit", note="现场核实").status_code == 200
        assert act(chen, cid, "decide", outcome="upheld").status_code == 403
        upheld = act(sun, cid, "decide", outcome="upheld")
        assert upheld.status_code == 200 and upheld.json()["state"] == "new"


def test_lists_ledger_rates_reminders_and_rules(hub_app, hall, hub_db):
    from .test_cases_store import put_region
    put_region(hub_db, "jilin", H1)
    admin = hub_app.admin_headers
    rules = hub_app.http.put("/api/v1/cases/rules/jilin", headers=admin,
                             json={"preset": "jilin", "limits": {"contact": {"kind": "working_days", "n": 5}}})
    assert rules.status_code == 200, rules.text
    assert (rules.json()["preset"], rules.json()["limits"]["contact"], rules.json()["updated_by"]) == (
        None, {"kind": "working_days", "n": 5}, "admin-token")
    bad_rules = hub_app.http.put("/api/v1/cases/rules/jilin", headers=admin,
                                 json={"limits": {"fix": {"kind": "working_days", "n": 5}}})
    assert bad_rules.status_code == 422 and "ledger" in bad_rules.json()["detail"][0]["msg"]
    assert hub_app.http.put("/api/v1/cases/rules/nowhere", headers=admin, json={"preset": "jilin"}).status_code == 404
    assert [p["key"] for p in hub_app.http.get("/api/v1/cases/presets", headers=admin).json()] == [
        "jilin", "2-5-15", "1-5-15"]

    cases = post_bad_ratings(hub_app, hall)
    assert cases["D07:1"]["rules"] == {"preset": None, "source": "region", "limits": rules.json()["limits"]}
    cid = cases["D07:1"]["id"]
    unrouted = cases["D08:1"]["id"]
    with people(hub_app, "wang", "zhao", "li", "qian") as p:
        wang, zhao, li = p["wang"], p["zhao"], p["li"]
        assert li.send("PUT", "/api/v1/cases/rules/jilin", {"preset": "jilin"}).json()["updated_by"] == "li"
        assert zhao.send("PUT", "/api/v1/cases/rules/jilin", {"preset": "jilin"}).status_code == 403
        assert act(li, unrouted, "route", unit=B).json()["unit"] == B
        act(wang, cid, "contact", callback={"at": now_text(), "channel": "visit", "outcome": "reached"})
        act(wang, cid, "rectify", note="需改造系统")
        until = (datetime.now(UTC) + timedelta(days=30)).astimezone(CHINA_TZ).date().isoformat()
        in_ledger = act(wang, cid, "ledger", until=until, note="列入台账")
        assert in_ledger.status_code == 200, in_ledger.text
        assert act(zhao, cases["D07:2"]["id"], "ledger", until=until, note="x").status_code == 409  # from new

        def get(person: Person, path: str, **params):
            answer = person.get(path, **params)
            assert answer.status_code == 200, answer.text
            return answer.json()

        ledger_view = get(li, "/api/v1/cases/ledger")
        assert [c["id"] for c in ledger_view["cases"]] == [cid] and ledger_view["cases"][0]["state"] == "ledger"
        assert get(zhao, "/api/v1/cases/ledger")["cases"] == []
        assert get(li, "/api/v1/cases", unit=B)["total"] == 2
        assert get(zhao, "/api/v1/cases")["total"] == 2
        assert get(li, "/api/v1/cases", state="new,unrouted")["total"] == 2
        assert get(li, "/api/v1/cases", unrouted="true")["total"] == 0
        page = get(li, "/api/v1/cases", limit=2)
        assert page["total"] == 3 and len(page["cases"]) == 2 and page["next_before"] == page["cases"][-1]["id"]
        assert len(get(li, "/api/v1/cases", limit=2, before=page["next_before"])["cases"]) == 1
        assert li.get("/api/v1/cases", state="lost").status_code == 422
        rates = get(li, "/api/v1/cases/rates")
        assert [(r["unit"], r["cases"]) for r in rates["units"]] == [(A, 1), (B, 2)]
        assert rates["total"]["cases"] == 3 and rates["total"]["rectification_rate"] == 0
        assert li.send("POST", "/api/v1/cases/reminders/run", {}).json() == {"written": 0}
        assert wang.send("POST", "/api/v1/cases/reminders/run", {}).status_code == 403
        scoped = p["qian"].send("POST", "/api/v1/cases/reminders/run", {})  # an operator of one unit
        assert scoped.status_code == 403 and "whole hub" in scoped.json()["detail"]
        assert get(li, "/api/v1/cases/reminders") == []
        callback = zhao.send("POST", f"/api/v1/cases/{unrouted}/callbacks",
                             {"at": now_text(), "channel": "phone", "outcome": "unreachable"})
        assert callback.status_code == 201 and callback.json()["purpose"] == "other"
        assert callback.json()["actor"] == "zhao"
