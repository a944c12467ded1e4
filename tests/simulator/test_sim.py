"""`hcp sim` end to end with the real parts: a small seeded hall (2 real firmware devices, 4
lightweight ones) through a broker restart and a hub outage reconciles, by asking the hub, to
nothing lost and nothing doubled; what the citizens did is what the seed drew."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime
from pathlib import Path

import pytest

import simulator.sim as sim_module
from hcp.protocol import make_phone_token, sign_rating
from hub.default_rules import CHINA_TZ
from simulator.broker import free_port
from simulator.hall import Hall, PhoneRated, Pressed, Seat, reconcile, report_lines
from simulator.lite_device import LiteDevice, LiteFleet
from simulator.phone import Phone, Phones
from simulator.plan import make_plan
from simulator.scenario import load, parse
from simulator.sim import Sim
from tests.fixtures.device import device_key
from tests.fixtures.hub import binding, rating_item, service_item

SMALL = Path(__file__).with_name("small.toml")
HCP = [sys.executable, "-m", "hcp.cli", "sim"]


def _figure(out: str, name: str) -> int:
    return int(re.search(rf"^  {name} +(\d+)", out, re.M).group(1))


@pytest.mark.slow
def test_small_hall_through_broker_restart_and_hub_outage_reconciles(tmp_path):
    log = tmp_path / "citizens.log"
    out = subprocess.run([*HCP, str(SMALL), "--workdir", str(tmp_path / "run"), "--log", str(log)],
                         capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "fault: broker restart: begins" in text and "fault: hub outage: ends" in text
    assert _figure(text, "lost") == 0 and _figure(text, "duplicated") == 0, text
    pressed, at_hub = _figure(text, "presses stored"), _figure(text, "ratings at the hub")
    assert pressed == at_hub > 20, text
    assert re.search(r"services finished +(\d+) \(at the hub \1\)", text), text
    assert "OK: nothing lost, nothing doubled" in text
    # what each citizen did is what the seed drew for that ticket
    plan = json.loads(subprocess.run([*HCP, str(SMALL), "--plan"], capture_output=True, text=True,
                                     timeout=60).stdout)
    drawn = {(v["window"], v["ticket"]): v for vs in plan["visits"].values() for v in vs}
    lines = log.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(drawn)
    checked = no_prompt = 0
    for line in lines:
        window, ticket, staff, action, *rest = line.split()
        v = drawn[(window, ticket)]
        assert staff == v["staff"]
        if action == "no":  # "no prompt": the device had no prompt to answer (broker restart)
            no_prompt += 1
            continue
        assert action == v["action"], line
        if action in ("press", "staff_press"):
            assert int(rest[0]) == v["score"], line
        checked += 1
    # Prompts are lost only while the broker is down (devices use clean sessions): a few of the
    # citizens at the counters then, more on a loaded machine (4 of 56 seen in CI); never most.
    assert checked + no_prompt == len(drawn) and no_prompt <= 8, (checked, no_prompt)


def test_reconciliation_asks_the_hub_and_fails_on_lost_and_doubled(hub_server):
    """A press the hub lacks is lost; a second rating answering one session is doubled; a
    rating at the hub that no press made is doubled too."""
    hub = hub_server
    key = os.urandom(32)
    token = hub.register_gateway("H1", os.urandom(32))
    hub.register_device("D1", "H1", "1", key)
    items = [service_item("s1", "A001", "1", finished_at="2026-11-21T09:30:00+08:00")]
    for n, sess in ((1, "s1"), (2, "s1"), (3, None)):
        bound = binding("s1", "A001", "1") if sess else None
        items.append(rating_item(sign_rating(key, "H1", "D1", n, 1, 1000 * n, sess, 5), bound))
    assert [r["status"] for r in hub.ingest(token, "H1", items).json()["results"]] == ["accepted"] * 4
    days = ("2026-11-20", "2026-11-22")
    presses = [Pressed("D1", 1, 5, "s1"), Pressed("D1", 3, 5, None)]
    clean = reconcile(hub, "H1", ["D1"], presses + [Pressed("D1", 2, 5, "s1")], 1, days, run_defaults=False)
    assert clean.duplicated == ["D1:2"]  # one session, two ratings: doubled whoever pressed them
    r = reconcile(hub, "H1", ["D1"], presses + [Pressed("D1", 4, 4, None)], 1, days)
    assert r.lost == ["D1:4"] and r.duplicated == ["D1:2"] and not r.ok
    assert (r.services_posted, r.services_at_hub, r.pressed, r.at_hub) == (1, 1, 3, 3)
    assert r.unbound == 1 and r.unbound_reasons == {"no_service_in_progress": 1}
    assert r.defaults == 0  # the one service is rated
    text = "\n".join(report_lines(r))
    assert "lost                   1 D1:4" in text and "duplicated             1 D1:2" in text
    services_lost = reconcile(hub, "H1", ["D1"], [Pressed("D1", 1, 5, "s1")], 2, days, run_defaults=False)
    assert services_lost.services_lost == 1 and not services_lost.ok


def test_defaults_are_counted_beyond_one_page_and_a_late_rating_is_seen(hub_server):
    """The default count comes from the hub's statistics, not from one page (1,000) of the
    defaults list; a service rated after its default counts as rated too."""
    hub = hub_server
    key = os.urandom(32)
    token = hub.register_gateway("H1", os.urandom(32))
    hub.register_device("D1", "H1", "1", key)
    hub._admin("PUT", "/api/v1/regions/jilin", json={"name": "吉林市", "preset": "jilin"})
    hub._admin("PUT", "/api/v1/halls/H1", json={"region": "jilin"})
    services = [service_item(f"s{i:04d}", f"A{i:04d}", "1", finished_at="2026-11-02T09:30:00+08:00")
                for i in range(1001)]
    for i in range(0, len(services), 500):
        assert {r["status"] for r in hub.ingest(token, "H1", services[i:i + 500]).json()["results"]} == {"accepted"}
    hub._admin("POST", "/api/v1/defaults/run")  # every one gets its default: the period is over
    late = rating_item(sign_rating(key, "H1", "D1", 1, 1, 1000, "s0000", 4), binding("s0000", "A0000", "1"))
    assert hub.ingest(token, "H1", [late]).json()["results"][0]["status"] == "accepted"
    r = reconcile(hub, "H1", ["D1"], [Pressed("D1", 1, 4, "s0000")], 1001, ("2026-11-01", "2026-11-03"))
    assert r.ok and r.defaults == 1001 and r.defaults_rated_late == 1


def test_a_phone_rating_the_hub_lacks_is_lost_and_one_with_another_score_differs(hub_server, tmp_path):
    """The simulator's phone: it reads the page's form and sends the overall rating (303, stored
    once; the page then offers the follow-up only). The reconciliation asks the hub for the phone
    ratings: one the simulator saw stored but the hub does not hold is lost."""
    hub = hub_server
    gateway_key = os.urandom(32)
    hub.register_gateway("H1", gateway_key)
    exp = int(time.time()) + 3 * 86400
    url = f"{hub.url}/r/" + make_phone_token(gateway_key, "H1", "svc-a", "3", exp)
    phone = Phone("zh-Hans")
    assert phone.rate(url, 2) == "stored"
    assert phone.rate(url, 2) == "followup"  # rated: the page has no overall rating any more
    assert phone.rate(url.replace("/r/", "/r/x"), 2) == "400"  # malformed token
    (row,) = hub._admin("GET", "/api/v1/phone/ratings", params={"hall": "H1"}).json()
    assert (row["service"], row["window"], row["kind"], row["score"], row["counted"]) == (
        "svc-a", "3", "supplementary", 2, True)
    days = ("2026-11-01", "2026-11-30")
    good = reconcile(hub, "H1", [], [], 0, days, run_defaults=False,
                     phone_rated=[PhoneRated("H1", "svc-a", "3", "A001", 2)])
    assert good.ok and (good.phone_rated, good.phone_at_hub) == (1, 1)
    assert "  rated by phone         1 (at the hub 1)" in report_lines(good)
    bad = reconcile(hub, "H1", [], [], 0, days, run_defaults=False,
                    phone_rated=[PhoneRated("H1", "svc-a", "3", "A001", 4), PhoneRated("H1", "svc-b", "3", "A002", 5)])
    assert not bad.ok and bad.lost == ["phone:H1:svc-b:supplementary"]
    assert bad.score_differs == ["phone:H1:svc-a:supplementary"]


QR_HALL = """
[scenario]
name = "QR hall"
seed = 5
date = "{today}"
speed = 60

[region]
id = "jilin"
name = "吉林市"
preset = "jilin"

[hall]
id = "Q1"
opening = ["09:00", "09:12"]
session_ttl = "5s"

[[staff]]
id = "S01"
name = "张伟"

[[matter]]
code = "000113001000"
name = "居民身份证换领"
unit = "市公安局"

[citizens]
no_rating = 0.1
qr_share = 0.5
press = ["2s", "10s"]

[[window]]
id = "1"
device = "real"
staff = "S01"
arrivals_per_hour = 90
service = ["20s", "50s"]

[[window]]
id = "2"
device = "lite"
staff = "S01"
arrivals_per_hour = 90
service = ["20s", "50s"]
"""


@pytest.mark.slow
def test_qr_citizens_rate_on_the_phone_page_and_the_hub_holds_each_on_its_service(tmp_path):
    """Half the citizens scan the QR code (a real firmware device and a lightweight one): each
    reads the URL off the device's display, opens the hub's page and sends the overall rating the
    seed drew, while the device's session times out. The hub holds one supplementary rating per
    QR citizen, on that citizen's service (window and ticket), and the reconciliation says so.
    Dated today (China): a past date's supplementary rating would be closed (docs/phone.md)."""
    sc = parse(QR_HALL.format(today=datetime.now(CHINA_TZ).date()), "qr.toml")
    plan = make_plan(sc)
    drawn = {(v.window, v.ticket): v for vs in plan.visits.values() for v in vs}
    qr = [v for v in drawn.values() if v.action == "qr"]
    assert len(qr) >= 8 and {v.window for v in qr} == {"1", "2"}
    assert all(v.score in (1, 2, 3, 4, 5) and 20 <= v.press_after_s <= 90 for v in qr)
    out: list[str] = []
    sim = Sim(sc, plan, tmp_path / "sim", out=out.append)
    try:
        sim.start()
        sim.run(threading.Event())
        result = sim.finish()
    finally:
        sim.hall.stop_all()
    text = "\n".join(out)
    rated = sim.tally.phone_rated
    assert sim.tally.qr == len(qr) and sim.tally.phone_refused == {}, text
    assert len(rated) == len(qr) and {p.window for p in rated} == {"1", "2"}
    for p in rated:
        assert p.score == drawn[(p.window, p.ticket)].score and drawn[(p.window, p.ticket)].action == "qr"
    assert result.ok and result.phone_rated == result.phone_at_hub == len(qr), text
    assert f"rated by phone         {len(qr)} (at the hub {len(qr)})" in text
    assert f"phone page             {len(qr)} of {len(qr)} QR citizens rated" in text
    assert "OK: nothing lost, nothing doubled" in text
    # at the hub: each phone rating on the service the citizen had (the gateway's id, its window
    # and ticket), counted as the service's overall rating; no device rating for those services
    assert sim.hall.hub is not None
    db = sqlite3.connect(f"file:{sim.hall.hub.db_path}?mode=ro", uri=True)
    try:
        services = {sid: (window, ticket) for sid, window, ticket in
                    db.execute("SELECT id, window_id, ticket FROM services WHERE hall = 'Q1'")}
        phones = {svc: (window, score) for svc, window, score in db.execute(
            "SELECT service, window_id, score FROM phone_ratings WHERE hall = 'Q1' AND kind = 'supplementary'")}
        pressed_for = {svc for (svc,) in db.execute("SELECT service FROM ratings WHERE service IS NOT NULL")}
    finally:
        db.close()
    assert phones == {p.service: (p.window, p.score) for p in rated}
    assert all(services[p.service] == (p.window, p.ticket) for p in rated)
    assert not pressed_for & set(phones)


def _small_sim(tmp_path, extra: str = "") -> Sim:
    sc = parse(SMALL.read_text(encoding="utf-8") + extra, "small.toml")
    return Sim(sc, make_plan(sc), tmp_path / "sim", out=lambda text: None)


def test_a_fault_with_no_duration_begins_then_ends_and_a_fault_ending_goes_before_one_beginning(tmp_path):
    sim = _small_sim(tmp_path, """
[[fault]]
kind = "device_power_cut"
window = "1"
at = "09:04"

[[fault]]
kind = "wifi_flap"
window = "2"
at = "09:03:20"
for = "10s"
""")
    order = [(f.kind, phase) for _, phase, f in sim._fault_actions()]
    # a power cut "for 0" is a reboot: the device goes down, then up (not up, then down for good)
    assert order.index(("device_power_cut", "begin")) < order.index(("device_power_cut", "end"))
    # the broker comes back (09:03 + 20 s) before the Wi-Fi flap that begins at that moment
    assert order.index(("broker_restart", "end")) < order.index(("wifi_flap", "begin"))


def test_a_press_the_device_confirms_late_is_a_stored_press(tmp_path, monkeypatch):
    """A starved device confirms a press after the simulator stopped waiting: it is stored on the
    device and will reach the hub, so it counts as a press (else the hub's copy would look doubled);
    a press the device never took stays unconfirmed. Presses carry the time they were made."""
    monkeypatch.setattr(sim_module, "RATING_WAIT_S", 0.5)
    sim = _small_sim(tmp_path)
    fleet = LiteFleet()
    try:
        config = {"dev": "D1", "hall": "T1", "window": "1", "broker_port": free_port(), "invite": True}
        seat = Seat("D1", "1", device_key("D1"), "lite", LiteDevice(fleet, tmp_path / "flash", config,
                                                                    device_key("D1")))
        sim.hall.seats = {"1": seat}
        seat.device.start()  # no broker: ratings are stored and wait, as with the Wi-Fi down
        seat.device.tap("invite")
        before = time.time()
        on_time = sim._press(seat, 4, None)
        assert on_time is not None and not on_time.late and before <= on_time.at <= time.time()
        assert on_time.stored_s is not None and on_time.stored_s < 0.5

        seat.device.tap("invite")
        fleet.call(time.sleep, 1.0)  # the device's loop is busy: the press waits behind it
        assert sim._press(seat, 2, None) is None
        assert len(sim.tally.unconfirmed) == 1 and sim.tally.not_taken == 1
        seat.device.wait_event("rating", lambda d: d["n"] == 2, timeout=5)
        sim._late_presses()
        late = sim.tally.pressed[-1]
        assert (late.id, late.score, late.late) == ("D1:2", 2, True) and late.stored_s >= 0.5
        assert sim.tally.confirmed_late == 1 and sim.tally.unconfirmed == []

        seat.device.kill()  # no power: the press is never stored
        assert sim._press(seat, 5, None) is None
        sim._late_presses()
        assert len(sim.tally.unconfirmed) == 1 and [p.id for p in sim.tally.pressed] == ["D1:1", "D1:2"]
    finally:
        fleet.close()


def _niceness(pid: int) -> tuple[int, str | None]:
    """A process's niceness and its autogroup, where the kernel tells it: in some containers
    /proc/<pid>/autogroup exists but reads empty, and then the session id says the same."""
    nice = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])
    group = Path(f"/proc/{pid}/autogroup")
    words = group.read_text().split() if group.exists() else []
    return nice, words[0] if words else None


def test_real_devices_of_a_hall_run_at_its_device_niceness_across_a_power_cut(broker, tmp_path):
    """Niced firmware processes stay in the simulator's session (a process group each, for the
    power cut): with autogroup scheduling, a session of their own would weigh as much as the
    simulator's whatever their niceness. Unniced ones keep a session of their own."""
    hall = Hall(tmp_path, "H1", device_nice=7)
    hall.broker = broker
    dev = hall.add_device(Seat("D1", "1", device_key("D1"), "real"), {})
    try:
        mine = _niceness(os.getpid())
        nice, group = _niceness(dev.proc.pid)
        assert nice == 7 and group == mine[1]
        assert os.getsid(dev.proc.pid) == os.getsid(0)  # what the autogroup follows
        assert os.getpgid(dev.proc.pid) == dev.proc.pid != os.getpgid(0)
        dev.kill()  # a power cut (the whole process group), started again as the simulator does
        dev.start()
        assert _niceness(dev.proc.pid) == (7, mine[1])
        assert os.getsid(dev.proc.pid) == os.getsid(0)
    finally:
        dev.kill()
    plain = Hall(tmp_path / "plain", "H1")
    plain.broker = broker
    other = plain.add_device(Seat("D2", "2", device_key("D2"), "real"), {})
    try:
        assert _niceness(other.proc.pid)[0] == mine[0]
        assert os.getsid(other.proc.pid) == other.proc.pid != os.getsid(0)
    finally:
        other.kill()


def test_phones_run_each_job_at_its_time_without_holding_up_who_added_it_and_finish_sends_the_rest():
    phones = Phones(2)
    ran: list[tuple[str, float]] = []
    t0 = time.monotonic()
    for name, due in (("late", 0.6), ("soon", 0.2), ("never due", 3600.0)):
        phones.add(t0 + due, lambda name=name: ran.append((name, time.monotonic() - t0)))
    assert time.monotonic() - t0 < 0.1 and ran == []  # adding waits for nothing
    while len(ran) < 2 and time.monotonic() - t0 < 10:
        time.sleep(0.05)
    assert [n for n, _ in ran] == ["soon", "late"]  # in the order they fall due, not as added
    assert ran[0][1] >= 0.2 and ran[1][1] >= 0.6  # not before their time
    assert phones.finish(5)  # the end of the day: what is still due runs now
    assert [n for n, _ in ran] == ["soon", "late", "never due"] and ran[2][1] < 2


def test_queue_system_connections_make_windows_wait_their_turn_and_let_go_at_the_stop():
    """Two connections, four windows: two post, two wait (without polling) until one is given
    back; when the run stops, whoever still waits gives up."""
    from simulator.sim import Connections
    conns = Connections(2)
    assert conns.take() and conns.take()
    got: list[bool] = []
    waiters = [threading.Thread(target=lambda: got.append(conns.take())) for _ in range(2)]
    for w in waiters:
        w.start()
    time.sleep(0.2)
    assert got == []  # both wait: no connection is free
    conns.give_back()
    deadline = time.monotonic() + 2
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    assert got == [True]  # one of them, once
    conns.close()
    for w in waiters:
        w.join(2)
    assert got == [True, False] and not any(w.is_alive() for w in waiters)
    assert not conns.take()
