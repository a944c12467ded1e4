"""The accounts API (admin token), the audit API and page, and `hcp hub users` on both backends."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

from hcp.cli import main as hcp
from tests.fixtures.accounts import PASSWORD, Browser, create_user
from tests.fixtures.hub import ROOT
from tests.hub.conftest import run_sql


def admin(hub, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, f"{hub.url}{path}", headers=hub.admin_headers, timeout=30, **kwargs)


def test_users_are_created_listed_disabled_and_reset_with_the_admin_token(hub_app):
    made = admin(hub_app, "POST", "/api/v1/users", json={"login": "Zhang", "name": "张伟", "role": "handler",
                                                          "unit": "市税务局", "hall": "H1"})
    assert made.status_code == 201
    body = made.json()
    generated = body.pop("password")
    assert len(generated) >= 20
    assert body["login"] == "zhang" and body["role"] == "handler" and body["unit"] == "市税务局"
    assert "password_hash" not in body
    with Browser(hub_app.url) as b:
        assert b.sign_in("zhang", generated).status_code == 303
        listed = admin(hub_app, "GET", "/api/v1/users").json()
        assert [u["login"] for u in listed] == ["zhang"] and listed[0]["last_login_at"]
        assert admin(hub_app, "POST", "/api/v1/users/zhang/disable").json()["disabled"] is True
        assert b.get("/").status_code == 303  # the session ended
        assert b.sign_in("zhang", generated).status_code == 401
        assert admin(hub_app, "GET", "/api/v1/users?state=active").json() == []
        assert admin(hub_app, "POST", "/api/v1/users/zhang/enable").json()["disabled"] is False
        reset = admin(hub_app, "POST", "/api/v1/users/zhang/password", json={"password": "a brand new one"})
        assert reset.status_code == 200 and reset.json()["password"] is None
        assert b.sign_in("zhang", generated).status_code == 401
        assert b.sign_in("zhang", "a brand new one").status_code == 303
    events = [e["event"] for e in admin(hub_app, "GET", "/api/v1/audit?login=admin-token").json()["entries"]]
    assert events == ["password_reset", "user_enabled", "user_disabled", "user_created"]


@pytest.mark.parametrize("body, field", [
    ({"login": "a b", "name": "X", "role": "operator"}, "login"),
    ({"login": "h", "name": "X", "role": "handler"}, "unit"),  # the schema says it; the route checks it
    ({"login": "h", "name": "X", "role": "handler", "unit": "  "}, "unit"),
    ({"login": "x", "name": "X", "role": "operator", "password": "short"}, "password"),
    ({"login": "x", "name": " X", "role": "operator"}, "name"),
    ({"login": "x", "name": "X", "role": "operator", "hall": "大厅"}, "hall"),
    ({"login": "x", "name": "X", "role": "root"}, "role"),
    ({"login": "x", "name": "X", "role": "operator", "admin": True}, "admin"),
])
def test_bad_accounts_are_refused_with_the_field_and_reason(hub_app, body, field):
    answer = admin(hub_app, "POST", "/api/v1/users", json=body)
    assert answer.status_code == 422
    assert [error["loc"] for error in answer.json()["detail"]] == [["body", field]], answer.text
    assert admin(hub_app, "GET", "/api/v1/users").json() == []


def test_the_users_api_takes_only_the_admin_token(hub_app):
    create_user(hub_app, "op", "operator")
    assert admin(hub_app, "POST", "/api/v1/users", json={"login": "op", "name": "again",
                                                          "role": "auditor"}).status_code == 409
    assert httpx.get(f"{hub_app.url}/api/v1/users").status_code == 401
    with Browser(hub_app.url) as b:
        b.sign_in("op", PASSWORD)
        assert b.http.get("/api/v1/users").status_code == 401
    assert admin(hub_app, "POST", "/api/v1/users/nobody/disable").status_code == 404
    assert admin(hub_app, "POST", "/api/v1/users/nobody/password").status_code == 404


def test_the_audit_api_filters_and_pages(hub_app):
    create_user(hub_app, "aud", "auditor")
    with Browser(hub_app.url) as b:
        for _ in range(3):
            b.sign_in("aud", "wrong password!")
        b.sign_in("aud", PASSWORD)
        first = b.http.get("/api/v1/audit", params={"event": "sign_in_failed", "limit": 2}).json()
        assert [e["event"] for e in first["entries"]] == ["sign_in_failed"] * 2 and first["next_before"]
        rest = b.http.get("/api/v1/audit", params={"event": "sign_in_failed", "limit": 2,
                                                   "before": first["next_before"]}).json()
        assert len(rest["entries"]) == 1 and rest["next_before"] is None
        ids = [e["id"] for e in first["entries"] + rest["entries"]]
        assert ids == sorted(ids, reverse=True)
        assert rest["entries"][0]["client"] == "127.0.0.1"
        assert b.http.get("/api/v1/audit", params={"since": "2999-01-01"}).json()["entries"] == []
        assert b.http.get("/api/v1/audit", params={"since": "yesterday"}).status_code == 422
        assert b.http.get("/api/v1/audit", params={"evnt": "x"}).status_code == 422  # misspelt filter
        page = b.get("/audit?event=sign_in_failed")
        assert page.status_code == 200 and page.text.count("<td>sign_in_failed</td>") == 3
        assert "wrong_password" in page.text


def test_the_audit_page_pages(hub_app, hub_db):
    create_user(hub_app, "aud", "auditor")
    for i in range(51):  # more than one page (50)
        run_sql(hub_db, "INSERT INTO audit_log (at, event, login, what, record, detail) "
                        "VALUES ('2026-11-21T00:00:00.000+00:00', 'personal_data_read', 'sup', 'rater_phone', ?, '{}')",
                (f"case:{i}",))
    with Browser(hub_app.url) as b:
        b.sign_in("aud", PASSWORD)
        page = b.get("/audit?event=personal_data_read")
        assert page.text.count("<td>rater_phone</td>") == 50 and "<td>case:50</td>" in page.text
        link = page.text.split('class="pager"><a href="')[1].split('"')[0].replace("&amp;", "&")
        older = b.get(link)
        assert older.text.count("<td>rater_phone</td>") == 1 and "<td>case:0</td>" in older.text
        assert 'class="pager"' not in older.text
        assert b.get("/audit?since=yesterday").status_code == 422


def test_cli_bootstraps_the_first_account(hub_db, tmp_path, capsys):
    db = ["--db-url", hub_db["db_url"]] if hub_db.get("db_url") else ["--db", str(hub_db["db_path"])]
    assert hcp(["hub", "users", *db, "add", "--login", "first", "--name", "首位运维", "--role", "operator",
                "--generate"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("first\toperator\t首位运维\twhole hub\tactive")
    password = out.split("password: ")[1].split()[0]
    assert hcp(["hub", "users", *db, "add", "--login", "first", "--name", "x", "--role", "auditor",
                "--generate"]) == 1
    assert "exists already" in capsys.readouterr().err
    assert hcp(["hub", "users", *db, "add", "--login", "h", "--name", "x", "--role", "handler", "--generate"]) == 1
    assert "unit" in capsys.readouterr().err
    assert hcp(["hub", "users", "disable", *db, "first"]) == 0  # the database after the action, as docs write it
    assert hcp(["hub", "users", *db, "list"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("disabled")
    with pytest.raises(SystemExit):  # one database, not two
        hcp(["hub", "users", "list", "--db", "a.sqlite3", "--db-url", "postgresql://h/d"])
    assert hcp(["hub", "users", "--db", "a.sqlite3", "list", "--db-url", "postgresql://h/d"]) == 2
    assert "give the database once" in capsys.readouterr().err
    assert hcp(["hub", "users", *db, "enable", "nobody"]) == 1
    assert hcp(["hub", "users", *db, "enable", "first"]) == 0
    from tests.fixtures.hub import running_app
    with running_app(tmp_path / "hub", **hub_db) as hub:
        with Browser(hub.url) as b:
            assert b.sign_in("first", password).status_code == 303
            assert "首位运维" in b.get("/").text
        rows = hub.query("SELECT event, login FROM audit_log WHERE login = 'cli' ORDER BY id")
        assert rows == [("user_created", "cli"), ("user_disabled", "cli"), ("user_enabled", "cli")]


def test_cli_reads_a_password_from_stdin(tmp_path):
    db = tmp_path / "hub.sqlite3"
    done = subprocess.run([sys.executable, "-m", "hcp.cli", "hub", "users", "--db", str(db), "add", "--login",
                           "wang", "--name", "王芳", "--role", "supervisor", "--region", "jilin",
                           "--password-stdin"], input="a typed secret phrase\n", capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "password:" not in done.stdout and "region=jilin" in done.stdout
    short = subprocess.run([sys.executable, "-m", "hcp.cli", "hub", "users", "--db", str(db), "reset-password",
                            "wang", "--password-stdin"], input="short\n", capture_output=True, text=True,
                           cwd=ROOT, timeout=60)
    assert short.returncode == 1 and "10 characters" in short.stderr
