"""Dead letters an operator can re-send, over the real gateway process and the real hub process.

The hub rejects ratings for real (a device registered at the gateway but not at the hub:
`unknown_device`); they end `dead` with that reason, visible in the admin API, `hcp gateway
dead-letters`, the status page, `/metrics` and `hcp gateway status`. Re-sent before the cause is
fixed they die again; once the device is registered at the hub, a re-send through the CLI gets
them accepted at the hub and the outbox drains. Bad requests answer 400 with a reason and are
counted. The store section (does the file take writes, its sizes) shows on the page, the metrics
and the CLI, live and from the file.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway.metrics import render_metrics
from gateway.status_views import render_html, render_text
from tests.fixtures.device import device_key
from tests.fixtures.hall_load import hub_rows

DEAD = "/api/v1/outbox/dead"
RESEND = "/api/v1/outbox/dead/resend"


def hcp(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hcp.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def dead_count(gw) -> int:
    return gw.status()["outbox"]["dead"]


@pytest.fixture
def hall(broker, hub_server, gateway_factory, device_peers):
    """D07 known to the hub and the gateway; D09 registered only at the gateway: the hub rejects
    its two ratings `unknown_device`, D07's rating is accepted."""
    hub = hub_server
    gw = gateway_factory(broker, start=False, hub_url=hub.url,
                         devices=[{"device": "D07", "window": "7"}, {"device": "D09", "window": "9"}])
    gw.settings["hub_token"] = hub.register_gateway(gw.hall, gw.gateway_key)
    hub.register_device("D07", gw.hall, "7", device_key("D07"))
    gw.start()
    d07, d09 = device_peers(broker, "D07"), device_peers(broker, "D09")
    d09.rate(1, score=2)
    d09.wait_ack(1)
    d07.rate(1, score=5)
    d07.wait_ack(1)
    d09.rate(2, score=1)
    d09.wait_ack(2)
    gw.wait_status(lambda st: st["outbox"] == {"pending": 0, "sent": 1, "dead": 2})
    return gw, hub


def admin(gw) -> dict:
    return {"Authorization": f"Bearer {gw.admin_token}"}


def test_a_rejected_rating_is_listed_fixed_resent_and_accepted_at_the_hub(hall):
    gw, hub = hall
    seqs = {r["key"]: r["seq"] for r in gw.query("SELECT seq, key FROM outbox")}
    s1, s2 = seqs["rating:D09:1"], seqs["rating:D09:2"]

    # the API: newest first, with the hub's reason, when and how often tried; paged
    page = gw.http.get(DEAD, headers=admin(gw)).json()
    assert [i["seq"] for i in page["items"]] == [s2, s1]
    assert page["by_reason"] == {"unknown_device": 2} and page["total"] == 2
    assert page["next_before"] is None
    first = page["items"][0]
    assert (first["kind"], first["key"], first["reason"], first["attempts"], first["requeues"]) == \
        ("rating", "rating:D09:2", "unknown_device", 1, 0)
    assert first["dead_at"] >= first["created_at"]
    one = gw.http.get(DEAD, params={"limit": 1}, headers=admin(gw)).json()
    assert [i["seq"] for i in one["items"]] == [s2] and one["next_before"] == s2
    rest = gw.http.get(DEAD, params={"limit": 1, "before": s2}, headers=admin(gw)).json()
    assert [i["seq"] for i in rest["items"]] == [s1] and rest["next_before"] is None
    assert gw.http.get(DEAD, params={"kind": "service"}, headers=admin(gw)).json()["items"] == []
    assert gw.http.get(DEAD, params={"reason": "conflict"}, headers=admin(gw)).json()["items"] == []

    # the CLI lists them as a table
    out = hcp("gateway", "dead-letters", "--config", str(gw.config_path))
    assert out.returncode == 0, out.stderr
    assert "dead letters: 2 (unknown_device 2)" in out.stdout
    lines = out.stdout.splitlines()
    assert lines[1].split()[:4] == ["SEQ", "KIND", "KEY", "REASON"]
    assert [ln.split()[:4] for ln in lines[2:4]] == [
        [str(s2), "rating", "rating:D09:2", "unknown_device"],
        [str(s1), "rating", "rating:D09:1", "unknown_device"]]

    # re-sent before the cause is fixed: the hub rejects them again, and they are dead again
    answer = gw.http.post(RESEND, json={"seqs": [s1, s2], "by": "tech-li"}, headers=admin(gw)).json()
    assert answer == {"v": 1, "requeued": 2, "seqs": [s1, s2], "not_dead": []}
    gw.wait_status(lambda st: st["counters"].get("forward.rejected") == 4 and st["outbox"]["dead"] == 2)
    again = gw.http.get(DEAD, headers=admin(gw)).json()["items"]
    assert [(i["attempts"], i["requeues"], i["requeued_by"]) for i in again] == [(2, 1, "tech-li")] * 2

    # the cause fixed (the device registered at the hub), re-sent through the CLI by reason
    hub.register_device("D09", gw.hall, "9", device_key("D09"))
    out = hcp("gateway", "dead-letters", "--url", gw.url, "--token", gw.admin_token,
              "--resend-all", "--reason", "unknown_device", "--by", "tech-li")
    assert out.returncode == 0, out.stderr
    assert "re-queued 2 dead letter(s)" in out.stdout
    st = gw.wait_status(lambda st: st["outbox"] == {"pending": 0, "sent": 3, "dead": 0})
    assert st["dead_letters"] == {}
    assert st["counters"]["outbox.requeued"] == 4 and st["counters"]["outbox.requeue_requests"] == 2
    for n, score in ((1, 2), (2, 1)):
        rating = hub.rating("D09", n)
        assert rating is not None and rating["score"] == score, rating
    # kept their seq: posted in seq order, so the hub took D09's ratings in counter order
    rows = hub_rows(hub, "SELECT n FROM ratings WHERE device = 'D09' ORDER BY seq")
    assert [r["n"] for r in rows] == [1, 2]
    rows = gw.query("SELECT seq, state, requeues, requeued_by FROM outbox WHERE key LIKE 'rating:D09:%' "
                    "ORDER BY seq")
    assert [tuple(r) for r in rows] == [(s1, "sent", 2, "tech-li"), (s2, "sent", 2, "tech-li")]
    assert "dead letters re-queued by tech-li" in gw.log_text()

    # nothing left: a re-send of a seq that is no dead letter says so and exits 1
    out = hcp("gateway", "dead-letters", "--config", str(gw.config_path), "--resend", str(s1))
    assert out.returncode == 1 and f"not dead letters (unknown, pending or already sent): {s1}" in out.stdout
    out = hcp("gateway", "dead-letters", "--config", str(gw.config_path), "--json")
    assert json.loads(out.stdout)["items"] == [] and out.returncode == 0


BAD_REQUESTS = [
    ("GET", DEAD, {"params": {"kind": "ratings"}}, "bad_field:kind"),
    ("GET", DEAD, {"params": {"limit": "0"}}, "bad_field:limit"),
    ("GET", DEAD, {"params": {"limit": "1001"}}, "bad_field:limit"),
    ("GET", DEAD, {"params": {"before": "-3"}}, "bad_field:before"),
    ("GET", DEAD, {"params": {"reasons": "unknown_device"}}, "bad_field:reasons"),
    ("POST", RESEND, {"json": {}}, "missing_field:seqs"),
    ("POST", RESEND, {"json": {"seqs": []}}, "bad_field:seqs"),
    ("POST", RESEND, {"json": {"seqs": [1, "2"]}}, "bad_field:seqs"),
    ("POST", RESEND, {"json": {"seqs": [True]}}, "bad_field:seqs"),
    ("POST", RESEND, {"json": {"seqs": list(range(1, 1002))}}, "bad_field:seqs"),
    ("POST", RESEND, {"json": {"seqs": [1], "reason": "unknown_device"}}, "bad_field:seqs"),
    ("POST", RESEND, {"json": {"all": True, "kind": "rating"}}, "bad_field:all"),
    ("POST", RESEND, {"json": {"all": "yes"}}, "bad_field:all"),
    ("POST", RESEND, {"json": {"kind": "everything"}}, "bad_field:kind"),
    ("POST", RESEND, {"json": {"reason": 5}}, "bad_field:reason"),
    ("POST", RESEND, {"json": {"all": True, "by": "a\nb"}}, "bad_field:by"),
    ("POST", RESEND, {"json": [1, 2]}, "bad_field:body"),
    ("POST", RESEND, {"content": b"{not json"}, "bad_json"),
]


def test_bad_requests_answer_400_with_a_reason_are_counted_and_change_nothing(hall):
    gw, _ = hall
    expected: dict[str, int] = {}
    for method, path, kwargs, reason in BAD_REQUESTS:
        resp = gw.http.request(method, path, headers=admin(gw), **kwargs)
        assert (resp.status_code, resp.json()) == (400, {"v": 1, "error": reason}), (path, kwargs)
        expected[f"http.bad.{reason}"] = expected.get(f"http.bad.{reason}", 0) + 1
    st = gw.status()
    assert {k: v for k, v in st["counters"].items() if k.startswith("http.bad.")} == expected
    assert st["outbox"] == {"pending": 0, "sent": 1, "dead": 2}
    assert st["counters"].get("outbox.requeue_requests") is None


def test_dead_letters_need_the_admin_token(hall):
    gw, _ = hall
    assert gw.http.get(DEAD).status_code == 401
    resp = gw.http.post(RESEND, json={"all": True}, headers={"Authorization": "Bearer wrong"})
    assert resp.status_code == 401
    st = gw.status()
    assert st["counters"]["admin.unauthorized"] == 2 and st["outbox"]["dead"] == 2
    out = hcp("gateway", "dead-letters", "--url", gw.url, "--token", "wrong", "--resend-all")
    assert out.returncode == 1 and "refused the admin token" in out.stderr
    out = hcp("gateway", "dead-letters", "--url", gw.url, "--kind", "rating", "--resend", "1",
              "--token", gw.admin_token)
    assert out.returncode == 2 and "--resend-all" in out.stderr
    assert gw.status()["outbox"]["dead"] == 2  # neither touched anything


def test_resend_by_kind_and_all_only_moves_dead_rows(hall):
    gw, hub = hall
    zero = gw.http.post(RESEND, json={"kind": "service"}, headers=admin(gw)).json()
    assert zero == {"v": 1, "requeued": 0}
    hub.register_device("D09", gw.hall, "9", device_key("D09"))
    assert gw.http.post(RESEND, json={"all": True}, headers=admin(gw)).json() == {"v": 1, "requeued": 2}
    gw.wait_status(lambda st: st["outbox"] == {"pending": 0, "sent": 3, "dead": 0})
    assert gw.http.post(RESEND, json={"all": True}, headers=admin(gw)).json()["requeued"] == 0


# ---------------------------------------------------------------------------- on every status view


def test_the_store_and_the_dead_letters_show_on_the_page_metrics_and_cli(hall):
    gw, _ = hall
    page = " ".join(gw.http.get("/status").text.split())
    assert "Store 存储" in page and "ok; db " in page and "disk free" in page
    assert "Dead letters 死信 (2)" in page and "<td>unknown_device</td><td>2</td>" in page

    samples = {}
    for family in text_string_to_metric_families(gw.http.get("/metrics").text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert samples[("hcp_gateway_outbox_dead_letters", (("reason", "unknown_device"),))] == 2
    assert samples[("hcp_gateway_store_writable", ())] == 1
    assert samples[("hcp_gateway_store_state", (("state", "ok"),))] == 1
    assert samples[("hcp_gateway_store_state", (("state", "full"),))] == 0
    assert samples[("hcp_gateway_store_db_bytes", ())] > 0
    assert samples[("hcp_gateway_store_disk_free_bytes", ())] > 0

    out = hcp("gateway", "status", "--url", gw.url)
    assert out.returncode == 0, out.stderr
    assert "  store    ok; db " in out.stdout
    assert "DEAD LETTERS: 2 (unknown_device 2); hcp gateway dead-letters" in out.stdout

    gw.stop()  # from the file: sizes known, the write state not
    out = hcp("gateway", "status", "--db", str(gw.data_dir))
    assert out.returncode == 0, out.stderr
    assert "  store    unknown (gateway not running); db " in out.stdout
    assert "DEAD LETTERS: 2 (unknown_device 2)" in out.stdout


def test_a_full_store_is_shown_as_such_on_the_page_metrics_and_cli():
    """The views of a document whose store takes no writes (the disk-full test makes it for real)."""
    doc = {"v": 1, "hall": "H1", "time": 1_800_000_000.0, "live": True,
           "summary": {"devices": 0, "online": 0, "offline": 0, "never_seen": 0, "unregistered": 0,
                       "alerts_open": 0},
           "outbox": {"pending": 5, "sent": 0, "dead": 1}, "outbox_oldest_pending_s": 3.0,
           "dead_letters": {"conflict": 1}, "devices": [], "alerts": {"open": [], "recent": []},
           "quarantine": {}, "counters": {}, "mqtt": {"connected": True, "broker": "b", "connects": 1},
           "hub": {"state": "up"},
           "store": {"state": "full", "since": 1_800_000_000.0 - 60, "failures": 7,
                     "total_failures": 9, "last_error": "SQLITE_FULL: database or disk is full",
                     "last_error_at": 1_800_000_000.0 - 1, "db_bytes": 5 << 20, "wal_bytes": 0,
                     "disk_free_bytes": 0, "retention": None}}
    text = render_text(doc, "test")
    assert "store    FULL since " in text and "7 failed writes (SQLITE_FULL: database or disk is full)" in text
    assert "db 5.0 MiB, WAL 0 B, disk free 0 B" in text and "DEAD LETTERS: 1 (conflict 1)" in text
    page = render_html(doc)
    assert '<dd class="bad">FULL since' in page
    metrics = render_metrics(doc)
    assert 'hcp_gateway_store_state{state="full"} 1' in metrics
    assert "hcp_gateway_store_writable 0" in metrics
    assert "hcp_gateway_store_episode_write_failures 7" in metrics
