"""`hcp provision` end to end: pyserial on a pseudo-terminal talking to the real firmware under
MicroPython, a real Mosquitto, gateway process and hub process. The technician is played by the
test: it presses the buttons the self-test asks for through the simulated device while the tool
waits, and answers the light question."""

from __future__ import annotations

import json
import os
import time

import pytest

from hcp.cli import main
from hcp.provision import Site, provision
from hcp.registration import Service
from hcp.serial_console import Console, ConsoleError
from simulator.device_process import DeviceProcess
from tests.fixtures.device import device_key

HALL = "H1"


class Hands:
    """The technician: presses what the device asks for (or `wrong` instead), says which lights
    stayed dark."""

    def __init__(self, dev: DeviceProcess, wrong: dict[str, str] | None = None, dark: str = ""):
        self.dev, self.wrong, self.dark = dev, wrong or {}, dark
        self.said: list[str] = []
        self.pressed: list[str] = []

    def say(self, text: str) -> None:
        self.said.append(text)

    def press(self, button: str) -> None:
        b = self.wrong.get(button, button)
        self.pressed.append(b)
        self.dev.tap(b)

    def confirm(self, question: str) -> bool:
        return not self.dark

    def ask(self, question: str) -> str:
        return self.dark


@pytest.fixture
def hall(tmp_path, broker, hub_server, gateway_factory):
    token = hub_server.register_gateway(HALL, device_key("gateway:" + HALL))
    gw = gateway_factory(broker, hub_url=hub_server.url, hub_token=token)
    site = Site(HALL, Service("gateway", gw.url, gw.admin_token),
                Service("hub", hub_server.url, hub_server.admin_token),
                {"broker_host": "127.0.0.1", "broker_port": broker.port, "lang": "en",
                 "wifi_ssid": "hall-1", "wifi_pass": "wifi-secret", "invite": True})
    return site, gw, hub_server


@pytest.fixture
def blank(tmp_path):
    made: list[DeviceProcess] = []

    def make(name: str = "new") -> DeviceProcess:
        dev = DeviceProcess(tmp_path / "flash" / name, console="pty").start()
        made.append(dev)
        return dev

    yield make
    for dev in made:
        dev.kill()


def rate(dev: DeviceProcess, score: int) -> None:
    """A citizen rates after the staff's invite key (a local session)."""
    time.sleep(0.3)  # the self-test's last tap (invite, held 100 ms) may still be held down
    since = len(dev.events)
    dev.tap("invite")
    dev.wait_event("session", lambda d: d["op"] == "open", timeout=5, since=since)
    dev.tap(score)
    dev.wait_event("rating", timeout=5, since=since)


def wait_rating(hub, device: str, n: int, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [r for r in hub.ratings(device=device) if r["id"] == f"{device}:{n}"]
        if found:
            return found[0]
        time.sleep(0.2)
    raise TimeoutError(f"rating {device}:{n} never reached the hub")


def test_a_blank_device_is_provisioned_comes_online_and_its_rating_reaches_the_hub(hall, blank):
    site, gw, hub = hall
    dev = blank()
    hands = Hands(dev)
    with Console(dev.console_path) as con:
        check = provision(con, site, "D07", "7", hands, selftest_s=5)
    assert check.passed, check.text()
    names = [s.name for s in check.steps]
    assert names[:6] == ["device answers", "config written", "key registered at the hub",
                         "registered at the gateway", "key written to the device", "online at the gateway"]
    assert [n for n in names if n.startswith("light ")] == [f"light {x}" for x in
                                                          ("b1", "b2", "b3", "b4", "b5", "ok", "err")]
    assert [n for n in names if n.startswith("button ")] == [
        "button 5 非常满意", "button 4 满意", "button 3 基本满意", "button 2 不满意", "button 1 非常不满意",
        "button invite (staff)"]
    assert hands.pressed == ["5", "4", "3", "2", "1", "invite"]
    assert check.seconds < 120  # a whole device in under two minutes (the presses here are instant)
    key = (dev.flash_dir / "key.bin").read_bytes()
    assert len(key) == 32 and key.hex() not in check.text() + " ".join(hands.said)  # never shown
    cfg = json.loads((dev.flash_dir / "config.json").read_text())
    assert (cfg["dev"], cfg["hall"], cfg["window"], cfg["lang"], cfg["wifi_ssid"], cfg["wifi_pass"]) == (
        "D07", HALL, "7", "en", "hall-1", "wifi-secret")
    assert dev.events_named("rating") == []  # self-test presses never rate
    # it works: a citizen rates, the rating is verified at the hub under the key the tool made
    dev.wait_state("idle")
    rate(dev, 5)
    dev.wait_event("ack", lambda d: d == {"n": 1, "st": "ok"}, timeout=15)
    r = wait_rating(hub, "D07", 1)
    assert r["verified"] is True and r["score"] == 5 and r["window"] == "7"
    print(f"provisioning took {check.seconds:.1f} s")


def test_a_failed_self_test_is_on_the_checklist(hall, blank):
    site, gw, hub = hall
    dev = blank()
    hands = Hands(dev, wrong={"5": "1"}, dark="b4")  # 1 for 5; b4 dark
    with Console(dev.console_path) as con:
        check = provision(con, site, "D08", "8", hands, selftest_s=3)
    failed = {s.name: s.detail for s in check.steps if not s.ok}
    assert failed == {"light b4": "stayed dark", "button 5 非常满意": "not pressed, or another"}
    assert not check.passed and check.stopped is None
    assert "[FAIL] light b4" in check.text() and "[PASS] light b5" in check.text()
    assert check.text().rstrip().split("\n")[-1].startswith("FAILED")


def test_a_wrong_port_and_a_device_that_does_not_answer_are_clear(tmp_path, capsys):
    with pytest.raises(ConsoleError, match="no serial port /dev/ttyNOSUCH7: is the device plugged in"):
        Console("/dev/ttyNOSUCH7")
    master, slave = os.openpty()  # a serial port with nothing behind it that speaks the console
    try:
        path = os.ttyname(slave)
        with Console(path) as con, pytest.raises(ConsoleError, match="nothing on .* answers the "
                                                 "counter device's console within 1 s"):
            con.probe(timeout=1)
        site = tmp_path / "site.json"
        site.write_text(json.dumps({"hall": HALL, "gateway_url": "http://127.0.0.1:9",
                                    "gateway_admin_token": "t", "hub_url": "http://127.0.0.1:9",
                                    "hub_admin_token": "t"}))
        assert main(["provision", "--port", "/dev/ttyNOSUCH7", "--dev", "D07", "--window", "7",
                     "--site", str(site)]) == 1
        assert "no serial port /dev/ttyNOSUCH7" in capsys.readouterr().err
        assert main(["provision", "--port", path, "--dev", "D07", "--site", str(site)]) == 1
        out = capsys.readouterr().out
        assert "[FAIL] device answers" in out and "answers the counter device's console" in out
        assert "run the same command again" in out
    finally:
        os.close(master)
        os.close(slave)


def test_a_run_stopped_half_way_is_finished_by_running_it_again(hall, blank, tmp_path):
    site, gw, hub = hall
    dev = blank()
    down = Site(site.hall, site.gateway, Service("hub", "http://127.0.0.1:9", "x"), site.device_config)
    with Console(dev.console_path) as con:
        check = provision(con, down, "D09", "9", Hands(dev), selftest_s=3)
        assert not check.passed and check.stopped is not None
        assert [(s.name, s.ok) for s in check.steps] == [
            ("device answers", True), ("config written", True), ("key registered at the hub", False)]
        assert "cannot reach the hub at http://127.0.0.1:9" in check.stopped
        info = con.ask("info")
        assert info["dev"] == "D09" and info["provisioned"] is False and info["kid"] is None
        hands = Hands(dev)
        check = provision(con, site, "D09", "9", hands, selftest_s=3)
    assert check.passed, check.text()
    assert "D09 was set up part-way before: finishing it" in hands.said
    dev.wait_state("idle")
    rate(dev, 4)
    assert wait_rating(hub, "D09", 1)["verified"] is True


def test_a_device_provisioned_as_another_is_refused_without_force(hall, blank):
    site, gw, hub = hall
    dev = blank()
    with Console(dev.console_path) as con:
        assert provision(con, site, "D10", "10", Hands(dev), selftest_s=3).passed
        check = provision(con, site, "D11", "11", Hands(dev), selftest_s=3)
        assert check.stopped.startswith("this device is already provisioned as D10 (hall H1, window 10)")
        assert con.ask("info")["dev"] == "D10"  # untouched
        assert provision(con, site, "D11", "11", Hands(dev), selftest_s=3, force=True).passed
        assert con.ask("info")["dev"] == "D11"


@pytest.mark.slow
def test_replacing_a_broken_device_moves_its_window_and_refuses_the_old_one(hall, blank):
    site, gw, hub = hall
    old = blank("old")
    with Console(old.console_path) as con:
        assert provision(con, site, "D12", "12", Hands(old), selftest_s=3).passed
    old.wait_state("idle")
    rate(old, 3)
    assert wait_rating(hub, "D12", 1)["verified"] is True
    new = blank("new")
    with Console(new.console_path) as con:
        check = provision(con, site, "D13", None, Hands(new), replace="D12", selftest_s=3)
    assert check.passed, check.text()
    assert check.steps[-2].name == "D12 retired" and "was at window 12" in check.steps[-2].detail
    assert check.steps[-1].name == "D12 retired at the hub" and check.steps[-1].ok
    assert json.loads((new.flash_dir / "config.json").read_text())["window"] == "12"
    # the window's prompts go to the new device
    session = gw.post_event(window="12")["session"]
    new.wait_state("prompt", timeout=10)
    assert gw.query("SELECT session_device FROM services WHERE id = ?", (session,))[0][0] == "D13"
    new.tap(5)
    r = wait_rating(hub, "D13", 1)
    assert r["verified"] is True and r["window"] == "12" and r["session"] == session
    # the old one, still powered, is refused: quarantined, not acked, never at the hub
    rate(old, 1)
    gw.wait_status(lambda st: st["quarantine"].get("retired_device", 0) >= 1, timeout=15)
    time.sleep(1)
    assert [e.data for e in old.events_named("ack") if e.data["n"] == 2] == []
    assert [r["id"] for r in hub.ratings(device="D12")] == ["D12:1"]
    [d12] = hub.devices(presence="retired")
    assert d12["device"] == "D12" and d12["retired_at"]
