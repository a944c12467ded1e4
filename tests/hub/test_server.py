"""The real hub process (`python -m hub`): start, serve, stop cleanly, restart on the same file."""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import sys

from pathlib import Path

from hcp.protocol import sign_rating
from hub.migrations import SQLITE_MIGRATIONS
from simulator.services import HubProcess
from tests.fixtures.hub import ROOT, ADMIN_TOKEN, binding, rating_item, service_item

from .conftest import alert_item, device_key, health_item

GATEWAY_KEY = b"\x33" * 32


def test_the_hub_process_serves_ingest_and_reads(hub_server):
    assert hub_server.stdout_text() == \
        f"hub listening on {hub_server.url} (db {hub_server.db_path})\n"
    token = hub_server.register_gateway("H1", GATEWAY_KEY)
    assert hub_server.register_device("D07", "H1", "7", device_key("D07")) == \
        sign_rating(device_key("D07"), "H1", "D07", 1, 0, 0, None, 1).kid
    rating = sign_rating(device_key("D07"), "H1", "D07", 1, 2, 500, "s1", 5)
    response = hub_server.ingest(token, "H1", [service_item("s1"), rating_item(rating, binding("s1"))])
    assert response.status_code == 200
    assert [r["status"] for r in response.json()["results"]] == ["accepted", "accepted"]
    [got] = hub_server.ratings(hall="H1")
    assert (got["id"], got["level"], got["ticket"], got["staff_id"]) == ("D07:1", "非常满意", "A023", "S0107")


def test_a_restart_keeps_everything_and_a_resent_batch_is_duplicate(hub_server):
    token = hub_server.register_gateway("H1", GATEWAY_KEY)
    hub_server.register_device("D07", "H1", "7", device_key("D07"))
    batch = [rating_item(sign_rating(device_key("D07"), "H1", "D07", n, 0, n, None, 3)) for n in (1, 2)]
    assert hub_server.ingest(token, "H1", batch).status_code == 200
    assert hub_server.stop() == 0  # SIGTERM is a clean stop
    hub_server.start()
    response = hub_server.ingest(token, "H1", batch)  # the token survived the restart
    assert [r["status"] for r in response.json()["results"]] == ["duplicate", "duplicate"]
    assert [r["id"] for r in hub_server.ratings()] == ["D07:2", "D07:1"]
    with sqlite3.connect(hub_server.db_path) as db:
        assert db.execute("SELECT COUNT(*) FROM ratings").fetchone()[0] == 2


def test_the_hub_process_takes_device_reports_and_keeps_them_over_a_restart(hub_server):
    token = hub_server.register_gateway("H1", GATEWAY_KEY)
    hub_server.register_device("D07", "H1", "7", device_key("D07"))
    batch = [health_item("D07", up=60000), alert_item(4, "cleared", device="D07"), alert_item(4)]
    response = hub_server.ingest(token, "H1", batch)
    assert [(r["key"], r["status"]) for r in response.json()["results"]] == [
        ("health:H1:D07:3:60000", "accepted"), ("alert:H1:4:cleared", "accepted"),
        ("alert:H1:4:raised", "accepted")]
    assert hub_server.stop() == 0
    hub_server.start()
    assert {r["status"] for r in hub_server.ingest(token, "H1", batch).json()["results"]} == {"duplicate"}
    headers = hub_server.admin_headers
    [device] = hub_server.http.get("/api/v1/halls/H1/devices", headers=headers).json()
    assert (device["health"]["up"], device["alerts_open"]) == (60000, [])
    [alert] = hub_server.http.get("/api/v1/halls/H1/alerts", headers=headers).json()
    assert (alert["id"], alert["state"], alert["raise_seen"]) == (4, "cleared", True)


def run_hub(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hub", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=30, env=env)


def test_a_taken_port_fails_with_a_clear_message(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = run_hub("--db", str(tmp_path / "hub.sqlite3"), "--port", str(port))
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "hub listening" not in done.stdout


def test_bad_settings_exit_2(tmp_path):
    done = run_hub("--db", str(tmp_path / "hub.sqlite3"), "--port", "70000")
    assert done.returncode == 2 and "bad settings" in done.stderr and "port" in done.stderr


def test_a_database_from_a_newer_hub_is_refused(tmp_path):
    db_path = tmp_path / "hub.sqlite3"
    with sqlite3.connect(db_path) as db:
        db.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
        db.execute("INSERT INTO schema_version VALUES (?, 'future')", (len(SQLITE_MIGRATIONS) + 1,))
    done = run_hub("--db", str(db_path), "--port", "0")
    assert done.returncode == 1
    assert "newer than this hub" in done.stderr


class PostgresHubProcess(HubProcess):
    """`python -m hub --db-url URL`: the hub process on PostgreSQL."""

    def __init__(self, workdir: Path, url: str):
        super().__init__(workdir, admin_token=ADMIN_TOKEN)
        self.db_url = url

    def command(self) -> list[str]:
        return [sys.executable, "-m", "hub", "--db-url", self.db_url, "--host", "127.0.0.1",
                "--port", str(self.port)]


def test_the_hub_process_on_postgresql_keeps_everything_over_a_restart(tmp_path, pg_server):
    with pg_server.schema() as url:
        hub = PostgresHubProcess(tmp_path / "hub-pg", url).start()
        try:
            assert hub.stdout_text() == f"hub listening on {hub.url} (db {url})\n"
            token = hub.register_gateway("H1", GATEWAY_KEY)
            hub.register_device("D07", "H1", "7", device_key("D07"))
            batch = [service_item("s1"), health_item("D07"),
                     rating_item(sign_rating(device_key("D07"), "H1", "D07", 1, 0, 1, "s1", 5), binding("s1"))]
            assert [r["status"] for r in hub.ingest(token, "H1", batch).json()["results"]] == ["accepted"] * 3
            assert hub.stop() == 0
            hub.start()
            assert [r["status"] for r in hub.ingest(token, "H1", batch).json()["results"]] == ["duplicate"] * 3
            assert [(r["id"], r["ticket"]) for r in hub.ratings()] == [("D07:1", "A023")]
        finally:
            hub.close()


def test_an_unreachable_postgresql_fails_the_start_with_the_reason():
    done = run_hub("--db-url", "postgresql://postgres@127.0.0.1:1/hub", "--port", "0")
    assert done.returncode == 1
    assert "hub listening" not in done.stdout
    assert "127.0.0.1" in done.stderr and "port 1 failed" in done.stderr
