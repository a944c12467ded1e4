"""Signing in and out in Chromium against the real hub process; a wrong password; a form post
without the CSRF token. Screenshots in test-artifacts/browser/."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.fixtures.accounts import PASSWORD, create_user


def sign_in(page, login: str, password: str) -> None:
    page.goto("/login")
    page.get_by_label("登录名 Login name").fill(login)
    page.get_by_label("密码 Password").fill(password)
    page.get_by_role("button", name="登录 Sign in").click()


def test_an_operator_signs_in_sees_the_home_page_and_signs_out(page, hub_process, shot):
    create_user(hub_process, "wang", "operator", name="王芳", region="jilin")
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))  # not signed in: the form
    shot("login-form")
    sign_in(page, "wang", PASSWORD)
    expect(page).to_have_url(hub_process.url + "/")
    expect(page.get_by_test_id("person")).to_have_text("王芳")
    expect(page.get_by_test_id("role")).to_contain_text("operator")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    shot("home")
    cookie = next(c for c in page.context.cookies() if c["name"] == "hcp_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
    page.get_by_role("button", name="退出 Sign out").click()
    expect(page).to_have_url(re.compile(r"/login\?signed_out=1$"))
    expect(page.get_by_role("status")).to_contain_text("You have signed out")
    shot("signed-out")
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login\?next=/$"))  # the session is gone


def test_a_wrong_password_is_refused_with_a_clear_message(page, hub_process, shot):
    create_user(hub_process, "wang", "operator")
    sign_in(page, "wang", "not the password")
    expect(page.get_by_test_id("login-error")).to_contain_text("Wrong login name or password")
    expect(page.get_by_label("登录名 Login name")).to_have_value("wang")
    shot("wrong-password")
    assert not [c for c in page.context.cookies() if c["name"] == "hcp_session"]


def test_a_form_post_without_the_csrf_token_is_refused(page, hub_process, shot):
    create_user(hub_process, "wang", "operator")
    sign_in(page, "wang", PASSWORD)
    expect(page.get_by_test_id("person")).to_be_visible()
    # the sign-out form as a forged page would send it: the token field emptied
    page.locator("form[action='/logout'] input[name=csrf_token]").evaluate("e => e.value = ''")
    page.get_by_role("button", name="退出 Sign out").click()
    expect(page.get_by_test_id("error-detail")).to_contain_text("CSRF token missing or wrong")
    shot("csrf-refused")
    page.goto("/")
    expect(page.get_by_test_id("person")).to_be_visible()  # still signed in: nothing happened


def test_an_auditor_reads_the_audit_log_and_a_handler_is_refused_it(page, hub_process, shot):
    create_user(hub_process, "aud", "auditor", name="审计员甲")
    create_user(hub_process, "ha", "handler", unit="市税务局")
    sign_in(page, "ha", "not the password")
    sign_in(page, "ha", PASSWORD)
    page.goto("/audit")
    expect(page.get_by_test_id("error-detail")).to_contain_text("auditor")
    shot("handler-refused")
    page.get_by_role("button", name="退出 Sign out").click()
    sign_in(page, "aud", PASSWORD)
    page.get_by_role("link", name="审计日志 Audit log").first.click()  # from the navigation
    page.get_by_label("事件 Event").select_option("sign_in_failed")
    page.get_by_role("button", name="筛选 Filter").click()
    rows = page.get_by_test_id("audit-table").locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("wrong_password")
    expect(rows.first).to_contain_text("ha")
    shot("audit-log")
