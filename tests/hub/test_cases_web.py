"""The case pages over HTTP (both backends), as a browser without JavaScript uses them: lists in
scope with overdue cases marked, the detail page's forms (CSRF required), a refusal shown on the
page, the 台账 and rates pages, the navigation per role."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from hub.cases import CHINA_TZ
from tests.fixtures.accounts import Browser, create_user

from .conftest import H1
from .test_api_cases import A, B, post_bad_ratings


def signed_in(hub, login: str, role: str, **scope) -> Browser:
    user = create_user(hub, login, role, **scope)
    browser = Browser(hub.url)
    assert browser.sign_in(login, user.password).status_code == 303
    return browser


def local_now() -> str:
    return datetime.now(UTC).astimezone(CHINA_TZ).strftime("%Y-%m-%dT%H:%M")


def rows_of(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'data-case="(\d+)"', html)]


def test_a_handler_works_a_case_through_the_pages(hub_app, hall):
    cases = post_bad_ratings(hub_app, hall)
    mine, theirs = cases["D07:1"]["id"], cases["D07:2"]["id"]
    with signed_in(hub_app, "wang", "handler", unit=A) as b:
        home = b.get("/")
        assert 'href="/cases"' in home.text and 'href="/cases/ledger"' in home.text
        listed = b.get("/cases")
        assert listed.status_code == 200 and rows_of(listed.text) == [mine]
        assert b.get(f"/cases/{theirs}").status_code == 404  # unit B's: as if there were none
        page = b.get(f"/cases/{mine}")
        assert page.status_code == 200 and "待联系 new" in page.text
        assert 'value="contact"' in page.text and 'value="route"' not in page.text  # no routing for a handler
        no_token = b.post_form(f"/cases/{mine}/act", {"action": "contact", "callback_at": local_now(),
                                                      "channel": "phone", "outcome": "reached"}, csrf=False)
        assert no_token.status_code == 403 and "CSRF" in no_token.text
        done = b.post_form(f"/cases/{mine}/act", {"action": "contact", "callback_at": local_now(),
                                                  "channel": "phone", "outcome": "reached",
                                                  "callback_note": "已电话联系"})
        assert done.status_code == 303 and done.headers["location"] == f"/cases/{mine}?done=contact"
        page = b.get(done.headers["location"])
        assert "已联系 contacted" in page.text and "已电话联系" in page.text
        refused = b.post_form(f"/cases/{mine}/act", {"action": "rectify", "note": ""})
        assert refused.status_code == 422 and 'data-testid="case-error"' in refused.text
        assert b.post_form(f"/cases/{theirs}/act", {"action": "rectify", "note": "x"}).status_code == 404
        call = b.post_form(f"/cases/{mine}/callback", {"callback_at": local_now(), "channel": "sms",
                                                       "outcome": "unreachable"})
        assert call.status_code == 303
        for action, extra in (("rectify", {"note": "指引不清"}), ("rectified", {"note": "已改"}),
                              ("feedback", {"callback_at": local_now(), "channel": "phone", "outcome": "reached",
                                            "satisfaction": "satisfied"}), ("close", {})):
            assert b.post_form(f"/cases/{mine}/act", {"action": action, **extra}).status_code == 303, action
        assert "已办结 closed" in b.get(f"/cases/{mine}").text
        assert rows_of(b.get("/cases").text) == []  # open cases only, by default
        assert rows_of(b.get("/cases", params={"show": "all"}).text) == [mine]


def to_do_rows(html: str) -> list[tuple[int, str]]:
    return [(int(n), kind) for n, kind in re.findall(r'data-case="(\d+)" data-kind="(\w+)"', html)]


def test_the_home_page_shows_each_person_the_cases_overdue_and_due_soon_in_their_scope(hub_app, hall, hub_db):
    """The to-do on the home page: what the reminder job would remind of now, in the person's scope
    (a handler: their unit), overdue first; nothing for a role that handles no cases."""
    from .conftest import run_sql
    cases = post_bad_ratings(hub_app, hall)
    soon, late = cases["D07:1"]["id"], cases["D07:2"]["id"]  # unit A's, unit B's
    with signed_in(hub_app, "wang", "handler", unit=A) as wang:
        home = wang.get("/").text
        assert 'data-testid="to-do-none"' in home and to_do_rows(home) == []  # just opened: days to go
        now = datetime.now(UTC)
        run_sql(hub_db, "UPDATE cases SET contact_due = ? WHERE id = ?",
                ((now + timedelta(hours=3)).isoformat(timespec="milliseconds"), soon))  # its last day began
        run_sql(hub_db, "UPDATE cases SET contact_due = ? WHERE id = ?",
                ((now - timedelta(days=1)).isoformat(timespec="milliseconds"), late))
        home = wang.get("/").text
        assert to_do_rows(home) == [(soon, "due_soon")]  # unit B's overdue case is not wang's
        counts = re.search(r'data-testid="to-do-counts">(.*?)</p>', home, re.S).group(1)
        assert "已逾期 0 overdue" in counts and "即将到期 1 due soon" in counts
        assert "联系评价人 contact" in home
    with signed_in(hub_app, "zhao", "handler", unit=B) as zhao:
        home = zhao.get("/").text
        assert to_do_rows(home) == [(late, "overdue")]
        assert "已逾期 1 overdue" in home and "即将到期 0 due soon" in home
        assert rows_of(zhao.get("/cases", params={"overdue": "1"}).text) == [late]  # where the count links
    with signed_in(hub_app, "chen", "supervisor") as chen:
        rows = to_do_rows(chen.get("/").text)
        assert (late, "overdue") in rows and (soon, "due_soon") in rows
        assert rows.index((late, "overdue")) < rows.index((soon, "due_soon"))
        assert [kind for _, kind in rows] == sorted((kind for _, kind in rows), key=lambda k: k != "overdue")
    with signed_in(hub_app, "zhao2", "handler", unit=B) as zhao:  # unit B appeals its overdue case
        assert zhao.post_form(f"/cases/{late}/act", {"action": "appeal", "note": "误按"}).status_code == 303
    with signed_in(hub_app, "chen2", "supervisor") as chen:  # an appeal waits for a supervisor
        rows = to_do_rows(chen.get("/").text)
        assert (late, "appeal") in rows and rows[-1] == (late, "appeal")
        assert chen.post_form(f"/cases/{late}/act", {"action": "verify", "method": "records",
                                                    "note": "调阅录像"}).status_code == 303
        rows = to_do_rows(chen.get("/").text)
        assert (late, "appeal") in rows  # verified: now to decide
        assert "裁定 decide the appeal" in chen.get("/").text
    with signed_in(hub_app, "zhao3", "handler", unit=B) as zhao:  # a handler decides no appeal
        assert (late, "appeal") not in to_do_rows(zhao.get("/").text)
    with signed_in(hub_app, "audi", "auditor") as audi:
        assert 'data-testid="to-do"' not in audi.get("/").text
    run_sql(hub_db, "UPDATE cases SET contact_due = ? WHERE id = ?",  # still days to go: not on the list
            ((datetime.now(UTC) + timedelta(days=3)).isoformat(timespec="milliseconds"), soon))
    with signed_in(hub_app, "wang2", "handler", unit=A) as wang:
        assert to_do_rows(wang.get("/").text) == []


def test_overdue_cases_are_marked_and_appeals_decided_on_the_page(hub_app, hall, hub_db):
    from .conftest import run_sql
    cases = post_bad_ratings(hub_app, hall)
    late = cases["D07:2"]["id"]
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat(timespec="milliseconds")
    run_sql(hub_db, "UPDATE cases SET contact_due = ? WHERE id = ?", (past, late))  # as if opened weeks ago
    with signed_in(hub_app, "zhao", "handler", unit=B) as zhao:
        listed = zhao.get("/cases").text
        assert re.search(rf'<tr class="overdue" data-case="{late}"', listed) and "逾期 overdue" in listed
        overdue_only = zhao.get("/cases", params={"overdue": "1"}).text
        assert rows_of(overdue_only) == [late]
        assert zhao.post_form(f"/cases/{late}/act", {"action": "appeal", "note": "误按"}).status_code == 303
    with signed_in(hub_app, "chen", "supervisor") as chen:
        assert chen.post_form(f"/cases/{late}/act", {"action": "verify", "method": "records",
                                                     "note": "调阅录像"}).status_code == 303
        decided = chen.post_form(f"/cases/{late}/act", {"action": "decide", "outcome": "not_adopted",
                                                        "reason": "mistaken", "note": "误评"})
        assert decided.status_code == 303
        page = chen.get(f"/cases/{late}").text
        assert "不予采纳 not adopted" in page and 'data-testid="decision"' in page and "rating:D07:2" in page
        assert "整改台账" in chen.get("/cases/ledger").text
        rates = chen.get("/cases/rates").text
        assert A in rates and B in rates
    with signed_in(hub_app, "audi", "auditor") as audi:
        assert audi.get("/cases").status_code == 403
        assert audi.get("/cases/rates").status_code == 200
        assert 'href="/cases"' not in audi.get("/").text
