"""Every route the hub registers checks who is asking (docs/accounts.md, "Every route is checked"): the real
app of `hub.app.create_app`, its routes enumerated, not a list kept by hand.

- Statically: each route either is in PUBLIC (with the reason it needs no person: a token of its
  own, a public page, the API description) or depends on one of the access checks (the admin
  token, a gateway token, a role check for an API, a page or a form post). A route open to anyone
  signed in, whatever the role, must be in ANY_SIGNED_IN. A new route without a check fails here.
- Over HTTP, for every route that is not public: no credentials get 401 (APIs) or a redirect to
  the sign-in page (pages); a person signed in with each role the route does not allow gets 403
  (401 for the admin-token and gateway-token routes, which no session opens); each role it
  allows gets past the check.
- Scope: people of another region, or a handler of another unit, call every GET route their role
  allows, aimed at a region's records (its hall, its case), and see none of its names, while the
  region's own people do see them.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hub.accounts import deps as account_deps
from hub.accounts.model import Role
from hub.api import deps as api_deps
from tests.fixtures.accounts import PASSWORD, Browser, create_user
from tests.fixtures.dashboard import HALL_NAME, MONTH, UNIT, populate
from tests.fixtures.hub import running_app

ROLES = tuple(Role)

# (method, path) -> why it needs no signed-in person. Each of these checks something else itself.
PUBLIC: dict[tuple[str, str], str] = {
    ("GET", "/healthz"): "liveness probe: no data",
    ("GET", "/openapi.json"): "the API's description (no data)",
    ("GET", "/docs"): "the API's description (no data)",
    ("GET", "/docs/oauth2-redirect"): "the API's description (no data)",
    ("GET", "/redoc"): "the API's description (no data)",
    ("GET", "/login"): "the sign-in form",
    ("POST", "/login"): "signing in (its own double-submit CSRF token, throttled)",
    ("GET", "/results"): "the public results: counts and ratios only (hub/results.py)",
    ("GET", "/results/halls/{hall}"): "the public results of one hall",
    ("GET", "/r/{token}"): "the phone rating page: the token, signed by the hall's gateway, is the access",
    ("POST", "/r/{token}"): "a phone rating: the token and the form's nonce (docs/phone.md)",
    ("GET", "/static"): "the pages' stylesheet",
}
# Routes any signed-in person may use, whatever the role.
ANY_SIGNED_IN = {("GET", "/"), ("POST", "/logout")}

# A value for each path parameter the routes take (the records need not exist).
PATH_VALUES = {"hall": "H1", "region": "jilin", "device": "D11", "n": "1", "login": "nobody", "case_id": "1",
               "service": "svc-1", "kind": "supplementary", "token": "x"}


@dataclass(frozen=True)
class Access:
    """What a route's dependencies let in."""

    kind: str  # "admin" (admin token only), "gateway" (a gateway's token), "api" (JSON: session or
    # admin token), "page" (a session: pages and form posts), "public"
    roles: frozenset[str] | None  # the roles let in (None: any signed-in person)


def routes(app) -> Iterator[Any]:
    """Every route of `app`, routers included, with `.path` and `.methods` (FastAPI >= 0.116 keeps
    included routers as such: `iter_route_contexts` walks them; older ones list them flat)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - FastAPI before included-router contexts
        yield from app.routes
        return
    yield from iter_route_contexts(app.routes)


def endpoints(app) -> list[tuple[str, str, Any]]:
    """(method, path, route) of every route; a mount is one GET."""
    found = []
    for route in routes(app):
        methods = getattr(route, "methods", None) or {"GET"}
        for method in sorted(set(methods) - {"HEAD"}):
            found.append((method, route.path, route))
    return found


def _calls(dependant) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _closure_roles(call) -> frozenset[str] | None:
    roles = inspect.getclosurevars(call).nonlocals.get("roles")
    return frozenset(roles) if roles else None


def access_of(route) -> Access:
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return Access("public", None)
    calls = list(_calls(dependant))
    if api_deps.require_admin in calls:
        return Access("admin", frozenset())
    if api_deps.current_gateway in calls:
        return Access("gateway", frozenset())
    checks = {account_deps.require_role: "api", account_deps.require_page_role: "page",
              account_deps.form_principal: "page"}
    for call in calls:
        for maker, kind in checks.items():
            if getattr(call, "__qualname__", "") == f"{maker.__name__}.<locals>.dependency":
                roles = _closure_roles(call)
                if roles is not None:
                    return Access(kind, roles)
    if account_deps.api_principal in calls:
        return Access("api", None)
    if account_deps.page_principal in calls:
        return Access("page", None)
    return Access("public", None)


@contextmanager
def served(workdir: Path) -> Iterator[Any]:
    """The real app (`create_app`) served on a SQLite file; `.app` is the FastAPI app itself."""
    apps: list[Any] = []
    with running_app(workdir, extend=apps.append) as hub:
        hub.app = apps[0]
        yield hub


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The real app on an empty SQLite database, with one person of each role (whole hub; the
    handler for a unit)."""
    with served(tmp_path_factory.mktemp("routes") / "hub") as app:
        for role in ROLES:
            create_user(app, role, role)
        yield app


def table(app) -> dict[tuple[str, str], Access]:
    return {(method, path): access_of(route) for method, path, route in endpoints(app)}


def test_every_route_checks_access_or_is_public_for_a_reason():
    from hub.app import create_app
    from hub.config import HubSettings
    app = create_app(HubSettings(admin_token="t"))
    found = table(app)
    assert {("POST", "/api/v1/ingest"), ("GET", "/cases/{case_id}"), ("GET", "/r/{token}"),
            ("GET", "/dashboard"), ("GET", "/api/v1/audit")} <= set(found), "the routes were not enumerated"
    open_to_anyone = {key for key, access in found.items() if access.kind == "public"}
    assert open_to_anyone == set(PUBLIC), (
        f"routes with no access check that are not in PUBLIC: {sorted(open_to_anyone - set(PUBLIC))}; "
        f"in PUBLIC but checked or gone: {sorted(set(PUBLIC) - open_to_anyone)}")
    any_role = {key for key, access in found.items() if access.kind in ("api", "page") and access.roles is None}
    assert any_role == ANY_SIGNED_IN, f"routes open to every role: {sorted(any_role)}"
    assert found[("POST", "/api/v1/ingest")] == Access("gateway", frozenset())
    assert found[("GET", "/api/v1/audit")] == Access("api", frozenset({Role.AUDITOR}))
    assert found[("POST", "/cases/{case_id}/contact")] == Access("page", frozenset({Role.OPERATOR, Role.SUPERVISOR}))


def _call(client, method: str, path: str, *, csrf: str | None = None, api: bool) -> Any:
    url = path.format(**PATH_VALUES)
    if method == "GET":
        return client.request("GET", url)
    if api:
        return client.request(method, url, json={}, headers={"X-CSRF-Token": csrf} if csrf else {})
    return client.request(method, url, data={"csrf_token": csrf} if csrf else {})


def _checked(hub) -> list[tuple[str, str, Access]]:
    rows = [(m, p, a) for (m, p), a in table(hub.app).items() if a.kind != "public"]
    return sorted(rows, key=lambda r: r[:2] == ("POST", "/logout"))  # signing out last


def test_without_credentials_every_checked_route_refuses(hub):
    import httpx
    with httpx.Client(base_url=hub.url, follow_redirects=False, headers={"Accept": "text/html"}) as anonymous:
        for method, path, access in _checked(hub):
            answer = _call(anonymous, method, path, api=access.kind != "page")
            if access.kind == "page":
                assert answer.status_code == 303 and answer.headers["location"].startswith("/login"), (
                    method, path, answer.status_code)
            else:
                assert answer.status_code == 401, (method, path, answer.status_code, answer.text)


def test_each_role_gets_exactly_the_routes_it_is_allowed(hub):
    checked = _checked(hub)
    for role in ROLES:
        with Browser(hub.url) as person:
            assert person.sign_in(role, PASSWORD).status_code == 303
            person.http.headers["Accept"] = "application/json"
            for method, path, access in checked:
                answer = _call(person.http, method, path, csrf=person.csrf, api=access.kind != "page")
                where = (role, method, path, answer.status_code, answer.text[:200])
                if access.kind in ("admin", "gateway"):
                    assert answer.status_code == 401, where  # a session opens none of these
                elif access.roles is not None and role not in access.roles:
                    assert answer.status_code == 403, where
                elif path == "/logout":
                    assert answer.headers["location"] == "/login?signed_out=1", where
                else:
                    assert answer.status_code not in (401, 403), where
                    assert not answer.headers.get("location", "").startswith("/login"), where


# ---------------------------------------------------------------------------- scope

OTHERS = {  # people of another region (dehong), and a handler of dehong's unit
    "op-dh": ("operator", {"region": "dehong"}), "sup-dh": ("supervisor", {"region": "dehong"}),
    "aud-dh": ("auditor", {"region": "dehong"}), "hd-dh": ("handler", {"unit": "德宏州公安局"}),
    "op-h3": ("operator", {"hall": "H3"}),
}
WHOLE_HUB = {"aud-all": ("auditor", {})}
OWN = {"op-jl": ("operator", {"region": "jilin"}), "hd-jl": ("handler", {"unit": UNIT})}
# Names only jilin's records carry (its hall's name, its unit, its devices): never seen outside it
MARKERS = (HALL_NAME, UNIT, "D12", "D21")
QUERY = {  # query parameters a route needs to answer with figures
    "/api/v1/phone/counts": {"from": "2026-10-01", "to": "2026-10-31"},
    "/dashboard": {"month": MONTH}, "/dashboard/halls/{hall}": {"month": MONTH},
    "/dashboard/bulletin": {"month": MONTH}, "/dashboard/bulletin.csv": {"month": MONTH, "hall": "H1"},
    "/dashboard/bulletin.xlsx": {"month": MONTH, "hall": "H1"},
}


@pytest.fixture(scope="module")
def region_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, int]]:
    """The dashboard tests' month (tests/fixtures/dashboard.py: jilin's H1 and H2, dehong's H3),
    its two bad ratings in H1 cases of UNIT; the people above. -> (hub, one of H1's case ids)."""
    with served(tmp_path_factory.mktemp("scope") / "hub") as app:
        populate(app)
        for login, (role, scope) in {**OTHERS, **OWN, **WHOLE_HUB}.items():
            create_user(app, login, role, **scope)
        cases = app.http.get("/api/v1/cases", headers=app.admin_headers).json()["cases"]
        assert {c["unit"] for c in cases} == {UNIT} and {c["hall"] for c in cases} == {"H1"}
        yield app, cases[0]["id"]


def _reads(hub, login: str, case_id: int) -> dict[str, str]:
    """What `login` gets from every GET route its role may use: path -> body (a 2xx or 4xx body)."""
    role = {**OTHERS, **OWN}[login][0]
    values = {**PATH_VALUES, "case_id": str(case_id)}
    found = {}
    with Browser(hub.url) as person:
        assert person.sign_in(login, PASSWORD).status_code == 303
        for method, path, access in _checked(hub):
            if method != "GET" or access.kind in ("admin", "gateway") or (
                    access.roles is not None and role not in access.roles):
                continue
            answer = person.http.get(path.format(**values), params=QUERY.get(path, {}))
            assert answer.status_code < 500, (login, path, answer.text)
            found[path] = answer.text
    return found


@pytest.mark.parametrize("login", sorted(OTHERS))
def test_people_of_another_scope_see_nothing_of_a_region(region_hub, login):
    hub, case_id = region_hub
    for path, body in _reads(hub, login, case_id).items():
        leaked = [m for m in MARKERS if m in body]
        assert not leaked, (login, path, leaked)


def test_the_regions_own_people_do_see_its_records(region_hub):
    """The counterpart of the test above, so that it can fail: the same routes show jilin's
    names to jilin's operator and UNIT's handler."""
    hub, case_id = region_hub
    seen = {login: {p for p, body in _reads(hub, login, case_id).items() if any(m in body for m in MARKERS)}
            for login in OWN}
    assert {"/dashboard", "/dashboard/halls/{hall}", "/api/v1/cases", "/cases", "/cases/{case_id}",
            "/api/v1/cases/{case_id}", "/cases/rates", "/dashboard/bulletin",
            "/dashboard/bulletin.csv"} <= seen["op-jl"]
    assert {"/api/v1/cases", "/cases", "/cases/{case_id}", "/api/v1/cases/{case_id}",
            "/cases/rates"} <= seen["hd-jl"]


def test_the_audit_log_is_for_auditors_of_the_whole_hub(region_hub):
    hub, _ = region_hub
    with Browser(hub.url) as person:
        assert person.sign_in("aud-dh", PASSWORD).status_code == 303
        api = person.http.get("/api/v1/audit", headers={"Accept": "application/json"})
        assert api.status_code == 403 and "whole hub" in api.json()["detail"]
        assert person.get("/audit").status_code == 403
        assert 'href="/audit"' not in person.get("/").text  # not offered either
    with Browser(hub.url) as person:
        assert person.sign_in("aud-all", PASSWORD).status_code == 303
        assert person.http.get("/api/v1/audit").status_code == 200 and 'href="/audit"' in person.get("/").text


def test_region_limits_are_read_and_set_within_the_scope(region_hub):
    hub, _ = region_hub
    admin = hub.admin_headers
    for region in ("jilin", "dehong"):
        put = hub.http.put(f"/api/v1/cases/rules/{region}", headers=admin, json={"preset": "2-5-15"})
        assert put.status_code == 200, put.text
    for login, seen in (("op-dh", ["dehong"]), ("op-h3", ["dehong"]), ("aud-all", ["dehong", "jilin"])):
        with Browser(hub.url) as person:
            assert person.sign_in(login, PASSWORD).status_code == 303
            rules = person.http.get("/api/v1/cases/rules").json()
            assert sorted(r["region"] for r in rules) == seen, login
            if login == "op-h3":  # a hall's operator does not set its region's limits
                refused = person.http.put("/api/v1/cases/rules/dehong", json={"preset": "jilin"},
                                          headers={"X-CSRF-Token": person.csrf or ""})
                assert refused.status_code == 403, refused.text
