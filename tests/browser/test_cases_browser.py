"""Bad-review cases in Chromium against the real hub process (issue 7's browser tests): a unit
handler moves a case through its states to closed; a handler finds an overdue case on the home
page's to-do and appeals it, and a supervisor verifies and decides it. Screenshots of each step in test-artifacts/browser/."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime, timedelta

from playwright.sync_api import expect

from hcp.protocol import sign_rating
from tests.fixtures.accounts import PASSWORD, create_user
from tests.fixtures.device import device_key
from tests.fixtures.hub import binding, rating_item

from .test_accounts_browser import sign_in

UNIT = "市市场监督管理局"


def bad_rating(hub, n: int = 1, score: int = 2) -> None:
    """Hall H1 with device D07; one bad rating bound to a service of UNIT."""
    if n == 1:
        hub.gateway_token = hub.register_gateway("H1", bytes(range(32)))
        hub.register_device("D07", "H1", "7", device_key("D07"))
    rating = sign_rating(device_key("D07"), "H1", "D07", n, 1, 1000 + n, None, score)
    answer = hub.ingest(hub.gateway_token, "H1", [rating_item(rating, bound=binding(f"S{n}", unit=UNIT))])
    assert answer.json()["results"][0]["status"] == "accepted", answer.text


def act(page, legend: str, fields: dict[str, str] | None = None, selects: dict[str, str] | None = None) -> None:
    """Fill the action form under `legend` and submit it."""
    form = page.get_by_role("group", name=legend)
    for label, value in (fields or {}).items():
        form.get_by_label(label).fill(value)
    for label, value in (selects or {}).items():
        form.get_by_label(label).select_option(value)
    form.get_by_role("button", name=legend).click()


def test_a_handler_moves_a_case_through_its_states_to_closed(page, hub_process, shot):
    create_user(hub_process, "wang", "handler", name="王芳", unit=UNIT)
    bad_rating(hub_process)
    sign_in(page, "wang", PASSWORD)
    page.get_by_role("link", name="差评工单 Cases").first.click()
    table = page.get_by_test_id("case-table")
    expect(table.locator("tbody tr")).to_have_count(1)
    expect(table).to_contain_text(UNIT)
    shot("case-list")
    table.get_by_role("link", name="#1").click()
    expect(page.get_by_test_id("case-state")).to_have_text("待联系 new")
    shot("case-new")

    act(page, "联系评价人 contact the rater", {"记录 Notes of the call": "已电话联系评价人，了解情况"},
        {"方式 Channel": "phone", "结果 Outcome": "reached"})
    expect(page.get_by_test_id("case-state")).to_have_text("已联系 contacted")
    expect(page.get_by_test_id("done")).to_be_visible()
    act(page, "开始整改 start rectifying", {"说明 Note（必填 required）": "窗口一次性告知不清"})
    expect(page.get_by_test_id("case-state")).to_have_text("整改中 rectifying")
    shot("case-rectifying")
    act(page, "整改完成 rectified", {"说明 Note（必填 required）": "已更新一次性告知单并培训窗口人员"})
    expect(page.get_by_test_id("case-state")).to_have_text("已整改 rectified")
    act(page, "反馈评价人 feedback to the rater", {},
        {"结果 Outcome": "reached", "评价人对整改的满意度 Rater's satisfaction with the fix": "satisfied"})
    expect(page.get_by_test_id("case-state")).to_have_text("已反馈 feedback")
    shot("case-feedback")
    act(page, "办结 close")
    expect(page.get_by_test_id("case-state")).to_have_text("已办结 closed")
    expect(page.get_by_role("heading", name="办理 Actions")).to_have_count(0)  # nothing left to do
    history = page.get_by_test_id("history").locator("tbody tr")
    expect(history).to_have_count(6)  # opened, contacted, rectifying, rectified, feedback, closed
    expect(page.get_by_test_id("callbacks").locator("tbody tr")).to_have_count(2)
    for status in page.get_by_test_id("deadlines").locator("tbody tr").all():
        expect(status).to_contain_text("按时 met")
    shot("case-closed")


def test_an_appeal_is_decided_by_a_supervisor(page, hub_process, shot):
    create_user(hub_process, "wang", "handler", name="王芳", unit=UNIT)
    create_user(hub_process, "chen", "supervisor", name="陈督办")
    bad_rating(hub_process, score=1)
    past = (datetime.now(UTC) - timedelta(days=1)).isoformat(timespec="milliseconds")
    with sqlite3.connect(hub_process.db_path) as db:  # as if opened a week ago: the call is overdue
        db.execute("UPDATE cases SET contact_due = ? WHERE id = 1", (past,))
    sign_in(page, "wang", PASSWORD)
    to_do = page.get_by_test_id("to-do")  # the home page: the handler's to-do
    expect(to_do.locator("tbody tr")).to_have_count(1)
    expect(to_do.locator("tbody tr")).to_contain_text("已逾期 overdue")
    expect(to_do.locator("tbody tr")).to_contain_text("联系评价人 contact")
    shot("home-to-do-overdue")
    to_do.get_by_role("link", name="#1").click()
    expect(page).to_have_url(re.compile(r"/cases/1$"))
    act(page, "申诉 appeal", {"说明 Note（必填 required）": "评价人当场表示误按了按键"})
    expect(page.get_by_test_id("case-state")).to_have_text("申诉中 appealed")
    expect(page.get_by_role("group", name="核实 verify the appeal")).to_have_count(0)  # not for a handler
    shot("appealed-by-handler")
    page.get_by_role("button", name="退出 Sign out").click()

    sign_in(page, "chen", PASSWORD)
    page.goto("/cases?state=appealed")
    expect(page.get_by_test_id("case-table").locator("tbody tr")).to_have_count(1)
    page.goto("/")  # the supervisor's to-do: the appeal to verify
    appeal = page.get_by_test_id("to-do").locator('tr[data-kind="appeal"]')
    expect(appeal).to_have_count(1)
    expect(appeal).to_contain_text("核实 verify the appeal")
    shot("home-to-do-appeal")
    appeal.get_by_role("link", name="#1").click()
    act(page, "核实 verify the appeal", {"核实情况 Findings（必填 required）": "调阅窗口录像，评价人确系误按"},
        {"核实方式 Method": "records"})
    expect(page.get_by_test_id("case-state")).to_have_text("已核实 verified")
    shot("verified-by-supervisor")
    act(page, "裁定 decide the appeal", {"说明 Note": "经核实为误评，不予采纳"},
        {"裁定 Decision": "not_adopted", "不予采纳理由 Reason (not adopted)": "mistaken"})
    expect(page.get_by_test_id("case-state")).to_have_text("不予采纳 not adopted")
    decision = page.get_by_test_id("decision")
    expect(decision).to_contain_text("误评 mistaken")
    expect(decision).to_contain_text("wang")  # the appellant
    expect(decision).to_contain_text("chen")  # verified and decided by the supervisor
    expect(decision).to_contain_text("rating:D07:1")
    shot("decided-not-adopted")
    assert hub_process.rating("D07", 1)["score"] == 1  # the rating stays in the ledger as it was
    page.goto("/")  # a decided case is no one's to-do
    expect(page.get_by_test_id("to-do-none")).to_be_visible()
