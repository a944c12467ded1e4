"""Sign-in, sessions, CSRF and role checks over real HTTP against the hub app, on both backends."""

from __future__ import annotations

import time
from typing import Annotated

import httpx
from fastapi import APIRouter, Depends, FastAPI, Form, Request

from hub.accounts.deps import ApiPrincipal, form_principal, require_page_role
from hub.accounts.model import Principal, Role, can_see
from hub.accounts.sessions import THROTTLED, WRONG
from hub.web.templating import render
from tests.fixtures.accounts import PASSWORD, Browser, create_user, csrf_of
from tests.fixtures.hub import running_app


def test_an_operator_signs_in_sees_the_home_page_and_signs_out(hub_app):
    create_user(hub_app, "wang", "operator", name="王芳", region="jilin")
    with Browser(hub_app.url) as b:
        assert b.get("/").headers["location"] == "/login?next=/"
        answer = b.sign_in("wang", PASSWORD)
        assert answer.status_code == 303 and answer.headers["location"] == "/"
        cookie = answer.headers["set-cookie"]
        assert "hcp_session=" in cookie and "HttpOnly" in cookie and "SameSite=lax" in cookie
        assert "Secure" not in cookie  # served over http here
        home = b.get("/")
        assert home.status_code == 200 and 'lang="zh-CN"' in home.text
        assert "王芳" in home.text and "operator" in home.text and "jilin" in home.text
        assert home.headers["cache-control"] == "no-store" and "script-src 'none'" in home.headers[
            "content-security-policy"]
        out = b.post_form("/logout", {})
        assert out.status_code == 303 and out.headers["location"] == "/login?signed_out=1"
        assert b.get("/").status_code == 303  # signed out
    events = hub_app.query("SELECT event, login FROM audit_log WHERE event IN ('sign_in', 'sign_out') ORDER BY id")
    assert events == [("sign_in", "wang"), ("sign_out", "wang")]


def test_after_sign_in_the_page_asked_for_opens(hub_app):
    create_user(hub_app, "aud", "auditor")
    with Browser(hub_app.url) as b:
        assert b.get("/audit?event=sign_in").headers["location"] == "/login?next=/audit%3Fevent%3Dsign_in"
        assert b.sign_in("aud", PASSWORD, next_path="/audit?event=sign_in").headers["location"] == \
            "/audit?event=sign_in"
        for outside in ("https://evil.example/", "//evil.example/", "/\\evil.example"):
            b.http.cookies.clear()
            assert b.sign_in("aud", PASSWORD, next_path=outside).headers["location"] == "/"


def test_a_wrong_password_and_an_unknown_name_get_the_same_answer(hub_app):
    create_user(hub_app, "wang", "operator")
    answers = []
    with Browser(hub_app.url) as b:
        for login, password in (("wang", "wrong password!"), ("nobody", "wrong password!")):
            response = b.sign_in(login, password)
            assert response.status_code == 401 and "hcp_session" not in response.headers.get("set-cookie", "")
            answers.append(response.text.replace(login, "NAME"))
    assert WRONG in answers[0] and answers[0] == answers[1]
    rows = hub_app.query("SELECT login, detail FROM audit_log WHERE event = 'sign_in_failed' ORDER BY id")
    assert rows == [("wang", '{"reason": "wrong_password"}'), ("nobody", '{"reason": "unknown_login"}')]


def test_sign_ins_are_throttled_per_login_name_and_per_address(tmp_path, hub_db):
    with running_app(tmp_path / "hub", **hub_db, login_max_failures=3, login_max_failures_address=5) as hub:
        create_user(hub, "wang", "operator")
        create_user(hub, "li", "operator")
        with Browser(hub.url) as b:
            for _ in range(3):
                assert b.sign_in("wang", "wrong password!").status_code == 401
            locked = b.sign_in("wang", PASSWORD)  # the right password, but too late
            assert locked.status_code == 429 and int(locked.headers["retry-after"]) > 800
            assert THROTTLED.split("{")[0] in locked.text
            assert b.sign_in("li", PASSWORD).status_code == 303  # another name from this address: fine
            b.http.cookies.clear()
            for _ in range(2):  # 3 + 2 failures from this address
                assert b.sign_in("li", "wrong password!").status_code == 401
            assert b.sign_in("li", PASSWORD).status_code == 429  # the address is over its limit
            assert b.sign_in("ghost", "whatever password").status_code == 429  # names that do not exist too
        reasons = hub.query("SELECT detail FROM audit_log WHERE event = 'sign_in_failed' AND detail LIKE ?",
                            "%throttled%")
        assert len(reasons) == 3


class Clock:
    """Bounds of the server's clock: a request's server time lies between when it was sent and
    when its answer came. The session tests assert only what these bounds decide, so a slow,
    loaded machine makes them skip a step, never fail a correct hub."""

    def __init__(self, browser: Browser):
        self.browser = browser

    def get(self, path: str = "/") -> tuple[float, float, int]:
        sent = time.monotonic()
        status = self.browser.get(path).status_code
        return sent, time.monotonic(), status


def test_a_session_ends_when_idle(tmp_path, hub_db):
    idle = 3.0
    with running_app(tmp_path / "hub", **hub_db, session_idle_s=idle) as hub:
        create_user(hub, "wang", "operator")
        with Browser(hub.url) as b:
            clock = Clock(b)
            last_sent = time.monotonic()  # the session's first use is later than this
            b.sign_in("wang", PASSWORD)
            decided = 0
            for step in range(5):  # used every 0.8 s: the session stays
                if step:
                    time.sleep(0.8)
                sent, answered, status = clock.get()
                # the stored last use is at most idle/10 older than the previous request
                if answered - last_sent < idle * 0.9:
                    assert status == 200, f"ended after {answered - last_sent:.2f} s at most"
                    decided += 1
                last_sent, last_answer = sent, answered
            assert decided >= 2, "the machine is too slow to decide anything"
            time.sleep(idle + 0.2)
            sent, _, status = clock.get()
            assert sent - last_answer > idle and status == 303
        assert hub.query("SELECT COUNT(*) FROM sessions") == [(0,)]  # the ended one is gone


def test_a_session_ends_at_its_absolute_limit_however_used(tmp_path, hub_db):
    limit = 3.0
    with running_app(tmp_path / "hub", **hub_db, session_max_s=limit) as hub:
        create_user(hub, "wang", "operator")
        with Browser(hub.url) as b:
            clock = Clock(b)
            before_sign_in = time.monotonic()
            b.sign_in("wang", PASSWORD)
            signed_in = time.monotonic()
            alive = ended = 0
            while time.monotonic() - signed_in < limit + 1:
                sent, answered, status = clock.get()
                if answered - before_sign_in < limit:
                    assert status == 200
                    alive += 1
                elif sent - signed_in >= limit:
                    assert status == 303
                    ended += 1
                    break
                time.sleep(0.3)
            else:
                sent, _, status = clock.get()
                assert sent - signed_in >= limit and status == 303
                ended += 1
            assert alive >= 1 and ended == 1


def test_a_sign_in_always_makes_a_new_session_token(hub_app):
    create_user(hub_app, "wang", "operator")
    with Browser(hub_app.url) as first:
        first.sign_in("wang", PASSWORD)
        old = first.session_cookie
        assert first.get("/login").status_code == 303  # signed in: the form sends you home
    with Browser(hub_app.url) as b:
        form = b.get("/login")
        for planted in ("planted-token", old):  # fixed by an attacker, or left from before
            b.http.cookies.set("hcp_session", planted)
            answer = b.http.post("/login", data={"login": "wang", "password": PASSWORD, "csrf_token": csrf_of(form.text)})
            assert answer.status_code == 303
            new = answer.cookies.get("hcp_session")
            assert new and new not in ("planted-token", old)
            b.http.cookies.clear()
            form = b.get("/login")
    with Browser(hub_app.url) as stale:  # the session the second sign-in replaced is gone
        stale.http.cookies.set("hcp_session", old)
        assert stale.get("/").status_code == 303


def test_a_form_post_without_the_csrf_token_is_refused(hub_app):
    create_user(hub_app, "wang", "operator")
    with Browser(hub_app.url) as b:
        b.sign_in("wang", PASSWORD)
        for data in ({}, {"csrf_token": "guessed"}, {"csrf_token": ""}):
            refused = b.post_form("/logout", data, csrf=False)
            assert refused.status_code == 403 and "CSRF" in refused.text
            assert "text/html" in refused.headers["content-type"]
        assert b.get("/").status_code == 200  # still signed in
        assert b.post_form("/logout", {}).status_code == 303


def test_the_sign_in_form_needs_its_own_csrf_token(hub_app):
    create_user(hub_app, "wang", "operator")
    with httpx.Client(base_url=hub_app.url) as client:  # a post from elsewhere: no form cookie
        refused = client.post("/login", data={"login": "wang", "password": PASSWORD, "csrf_token": "x"})
        assert refused.status_code == 403 and "hcp_session" not in refused.headers.get("set-cookie", "")


def _role_pages(app: FastAPI) -> None:
    """A page only operators may open, and a form only supervisors may post, as other modules
    would write them; and an API that lists what the caller's scope lets them see."""
    router = APIRouter()

    @router.get("/ops-only")
    async def ops_page(request: Request,
                       principal: Annotated[Principal, Depends(require_page_role(Role.OPERATOR))]):
        return render(request, "home.html")

    @router.post("/decide")
    async def decide(principal: Annotated[Principal, Depends(form_principal(Role.SUPERVISOR))],
                     choice: Annotated[str, Form()] = "none"):
        return {"decided_by": principal.login, "choice": choice}

    @router.get("/api/v1/test-scoped")
    async def scoped(principal: ApiPrincipal):
        records = [("jilin", "H1", "A"), ("jilin", "H1", "B"), ("jilin", "H2", "A"), ("xpcc", "H9", "A")]
        return [r for r in records if can_see(principal, region=r[0], hall=r[1], unit=r[2])]

    app.include_router(router)


def test_a_handler_cannot_open_an_operator_page_and_sees_only_its_unit(tmp_path, hub_db):
    with running_app(tmp_path / "hub", **hub_db, extend=_role_pages) as hub:
        create_user(hub, "op", "operator", region="jilin")
        create_user(hub, "ha", "handler", unit="A", hall="H1")
        create_user(hub, "sup", "supervisor")
        with Browser(hub.url) as b:
            b.sign_in("ha", PASSWORD)
            refused = b.get("/ops-only")
            assert refused.status_code == 403 and "operator" in refused.text and "text/html" in \
                refused.headers["content-type"]
            assert b.get("/audit").status_code == 403
            assert b.post_form("/decide", {}).status_code == 403
            assert b.http.get("/api/v1/test-scoped").json() == [["jilin", "H1", "A"]]
        with Browser(hub.url) as b:
            b.sign_in("op", PASSWORD)
            assert b.get("/ops-only").status_code == 200
            assert b.http.get("/api/v1/test-scoped").json() == [["jilin", "H1", "A"], ["jilin", "H1", "B"],
                                                                ["jilin", "H2", "A"]]
        with Browser(hub.url) as b:
            b.sign_in("sup", PASSWORD)
            assert b.post_form("/decide", {}, csrf=False).status_code == 403
            assert b.post_form("/decide", {"choice": "upheld"}).json() == {"decided_by": "sup", "choice": "upheld"}
        assert len(httpx.get(f"{hub.url}/api/v1/test-scoped", headers=hub.admin_headers).json()) == 4


def test_apis_answer_json_401_and_403(hub_app):
    create_user(hub_app, "op", "operator")
    create_user(hub_app, "aud", "auditor")
    anonymous = httpx.get(f"{hub_app.url}/api/v1/audit", headers={"Accept": "text/html"})
    assert anonymous.status_code == 401 and anonymous.json()["detail"]
    wrong = httpx.get(f"{hub_app.url}/api/v1/audit", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    with Browser(hub_app.url) as b:
        b.sign_in("op", PASSWORD)
        forbidden = b.http.get("/api/v1/audit")
        assert forbidden.status_code == 403 and "auditor" in forbidden.json()["detail"]
    with Browser(hub_app.url) as b:
        b.sign_in("aud", PASSWORD)
        assert b.http.get("/api/v1/audit").status_code == 200
    assert httpx.get(f"{hub_app.url}/api/v1/audit", headers=hub_app.admin_headers).status_code == 200


def test_unknown_pages_are_404_pages_and_unknown_apis_json(hub_app):
    create_user(hub_app, "op", "operator", name="王芳")
    with Browser(hub_app.url) as b:
        b.sign_in("op", PASSWORD)
        page = b.get("/no-such-page")
        assert page.status_code == 404 and "text/html" in page.headers["content-type"] and "王芳" in page.text
    api = httpx.get(f"{hub_app.url}/api/v1/no-such", headers={"Accept": "text/html"})
    assert api.status_code == 404 and api.json() == {"detail": "Not Found"}
    assert httpx.get(f"{hub_app.url}/static/hub.css").status_code == 200


def test_a_cookie_api_post_needs_the_csrf_header(hub_app):
    """A JSON API reached with the session cookie is a browser's: unsafe methods need the
    session's CSRF token in X-CSRF-Token (the admin token needs none)."""
    create_user(hub_app, "aud", "auditor")
    with Browser(hub_app.url) as b:
        b.sign_in("aud", PASSWORD)
        refused = b.http.post("/api/v1/users", json={})
        assert refused.status_code == 401  # the users API takes only the admin token
    # the dependency itself: a POST through ApiPrincipal
    def extend(app: FastAPI) -> None:
        router = APIRouter()

        @router.post("/api/v1/test-post")
        async def post(principal: ApiPrincipal):
            return {"by": principal.login}
        app.include_router(router)
    with running_app(hub_app.db_path.parent / "second", extend=extend) as hub:
        create_user(hub, "aud", "auditor")
        with Browser(hub.url) as b:
            b.sign_in("aud", PASSWORD)
            assert b.http.post("/api/v1/test-post").status_code == 403
            assert b.http.post("/api/v1/test-post", headers={"X-CSRF-Token": b.csrf}).json() == {"by": "aud"}
        assert httpx.post(f"{hub.url}/api/v1/test-post", headers=hub.admin_headers).json() == {"by": "admin-token"}
