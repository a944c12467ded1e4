"""A full disk under the real gateway process, and retention of what the hub took.

The disk is filled for real as SQLite sees it, without root: the gateway runs with `db_max_mb`
(`PRAGMA max_page_count` on its connection), and another process — the test, standing for whatever
else shares the disk — grows the same file with a ballast table up to that cap. From then on every
write of the gateway that needs a new page fails with SQLITE_FULL, exactly as on a full disk.
Space returns when the test drops the ballast (its pages go to the free list the gateway reuses).
"""

from __future__ import annotations

import sqlite3
import time

import pytest

CAP_MB = 1.0  # the gateway's database cap in these tests


def fill_to_cap(db_path, cap_mb: float = CAP_MB) -> int:
    """Grow the file with a ballast table until it has as many pages as the gateway may use."""
    db = sqlite3.connect(db_path, timeout=10, isolation_level=None)
    try:
        page = db.execute("PRAGMA page_size").fetchone()[0]
        cap_pages = int(cap_mb * 1024 * 1024) // page
        db.execute("CREATE TABLE ballast (b BLOB)")
        while db.execute("PRAGMA page_count").fetchone()[0] < cap_pages + 2:
            db.execute("INSERT INTO ballast VALUES (zeroblob(?))", (page * 8,))
        return cap_pages
    finally:
        db.close()


def free_space(db_path) -> None:
    db = sqlite3.connect(db_path, timeout=10, isolation_level=None)
    try:
        db.execute("DROP TABLE ballast")
    finally:
        db.close()


def rating_ns(gw) -> list[int]:
    return [r["n"] for r in gw.query("SELECT n FROM ratings WHERE device = 'D07' ORDER BY n")]


@pytest.fixture
def gw(broker, gateway_factory, mini_hub):
    return gateway_factory(broker, hub_url=mini_hub.url, hub_token=mini_hub.token,
                           devices=[{"device": "D07", "window": "7"}], db_max_mb=CAP_MB)


def test_a_full_disk_acks_nothing_uncommitted_and_ingest_resumes_intact_when_space_returns(
        gw, broker, device_peers, mini_hub):
    dev = device_peers(broker, "D07")
    dev.rate(1)
    assert dev.wait_ack(1)["st"] == "ok"
    gw.wait_status(lambda st: st["outbox"]["sent"] == 1)

    fill_to_cap(gw.db_path)
    for n in range(2, 42):  # ~40 KB of rows: more than any page has left free
        dev.rate(n)
    st = gw.wait_status(lambda st: st["store"]["state"] == "full")
    assert "SQLITE_FULL" in st["store"]["last_error"] and st["store"]["failures"] >= 1
    assert st["ingest"]["commit_failures"] >= 1
    time.sleep(2.5)  # two more commit retries, all failing
    committed, acked = set(rating_ns(gw)), {a["n"] for a in dev.acks}
    assert acked <= committed, "an ack was sent for a rating that is not in the file"
    unacked = set(range(2, 42)) - acked
    assert len(unacked) >= 30, f"the full file still took {sorted(acked)}"
    # the queue system is told to come back, and nothing of the refused event is kept (a small
    # write may still fit in a page's free space, as on a real disk: post until one is refused)
    i, answer = 0, None
    for i in range(50):
        answer = gw.post("/api/v1/queue/events", gw.event(event_id=f"q-full-{i}", ticket=f"F{i}"),
                         gw.queue_token)
        if answer.status_code != 200:
            break
    assert answer is not None
    assert answer.status_code == 503 and answer.json()["error"] == "storage_unavailable"
    assert answer.headers["Retry-After"]
    assert not gw.query("SELECT 1 FROM queue_events WHERE event_id = ?", (f"q-full-{i}",))
    assert "writes fail" in gw.log_text()

    free_space(gw.db_path)
    for n in range(2, 42):
        assert dev.wait_ack(n, timeout=15)["st"] == "ok"
    st = gw.wait_status(lambda st: st["store"]["state"] == "ok" and st["outbox"]["pending"] == 0,
                        timeout=15)
    assert st["counters"]["store.full"] == 1 and st["counters"]["store.write_failures"] >= 1
    assert st["outbox"] == {"pending": 0, "sent": 41 + i, "dead": 0}  # + the services that fitted
    assert rating_ns(gw) == list(range(1, 42))  # each once
    assert all(len(dev.acks_for(n)) == 1 for n in range(1, 42))
    assert sorted(k for k in mini_hub.items if k.startswith("rating:")) == \
        sorted(f"rating:D07:{n}" for n in range(1, 42))
    retry = gw.post_event(event_id=f"q-full-{i}", ticket=f"F{i}")  # the queue system's retry lands
    assert gw.query("SELECT service FROM queue_events WHERE event_id = ?",
                    (f"q-full-{i}",))[0]["service"] == retry["service"]
    assert gw.stop() == 0
    with sqlite3.connect(gw.db_path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]


def test_a_gateway_started_on_a_full_file_serves_its_status_and_acks_only_what_fits(
        broker, gateway_factory, device_peers):
    gw = gateway_factory(broker, devices=[{"device": "D07", "window": "7"}], db_max_mb=CAP_MB)
    assert gw.stop() == 0
    fill_to_cap(gw.db_path)
    gw.settings["devices"] = [{"device": "D07", "window": "7"}] + [
        {"device": f"N{i:03d}", "window": f"{i}"} for i in range(300)]  # ~40 KB of new rows
    gw.start()  # seeding them fails: logged, and the gateway serves anyway
    assert "could not seed the device registry" in gw.log_text()
    dev = device_peers(broker, "D07")
    for n in range(1, 31):
        dev.rate(n)
    st = gw.wait_status(lambda st: st["store"]["state"] == "full")
    assert st["store"]["db_bytes"] > 1024 * 1024 and st["store"]["disk_free_bytes"] > 0
    time.sleep(1.5)
    acked, committed = {a["n"] for a in dev.acks}, set(rating_ns(gw))
    assert acked <= committed and len(acked) < 20
    free_space(gw.db_path)
    for n in range(1, 31):
        assert dev.wait_ack(n, timeout=15)["st"] == "ok"
    assert rating_ns(gw) == list(range(1, 31))
    assert all(len(dev.acks_for(n)) == 1 for n in range(1, 31))


def test_sent_rows_are_pruned_after_the_keep_period_and_a_resend_is_still_a_dup(
        broker, gateway_factory, device_peers, mini_hub):
    gw = gateway_factory(broker, hub_url=mini_hub.url, hub_token=mini_hub.token,
                         devices=[{"device": "D07", "window": "7"}],
                         outbox_keep_days=0, prune_interval_s=0.3)
    dev = device_peers(broker, "D07")
    mini_hub.reject["rating:D07:3"] = "bad_signature"
    for n in (1, 2, 3):
        dev.rate(n)
    st = gw.wait_status(lambda st: st["counters"].get("outbox.pruned", 0) == 2)
    assert st["outbox"] == {"pending": 0, "sent": 0, "dead": 1}  # the dead letter stays
    assert st["store"]["retention"]["pruned_total"] == 2
    assert [r["key"] for r in gw.query("SELECT key FROM outbox")] == ["rating:D07:3"]
    mini_hub.down = True
    dev.rate(4)
    dev.wait_ack(4)
    time.sleep(1.0)  # several prune runs: a pending row is never pruned
    assert gw.status()["outbox"]["pending"] == 1
    dev.rate(1)  # resent after its outbox row is gone: the ratings table still knows it
    assert dev.wait_ack(1, index=1)["st"] == "dup"
    assert rating_ns(gw) == [1, 2, 3, 4]

