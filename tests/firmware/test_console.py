"""The serial provisioning console of the real firmware, over a pseudo-terminal opened with
pyserial exactly as a technician's laptop opens the device's USB serial port."""

from __future__ import annotations

import json
import time

import pytest
import serial

from simulator.device_process import DeviceProcess
from tests.fixtures.mqtt import MqttPeer

KEY = bytes(range(100, 132))


class Port:
    """A pyserial line client for the console protocol (docs/serial-console.md)."""

    def __init__(self, path: str):
        self.ser = serial.Serial(path, 115200, timeout=0.2)
        self.events: list[dict] = []

    def send(self, line: bytes | str) -> None:
        self.ser.write(line if isinstance(line, bytes) else (line + "\n").encode())

    def answer(self, timeout: float = 10.0) -> tuple[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.ser.readline().decode("utf-8", "replace").strip()
            if line.startswith("ev "):
                self.events.append(json.loads(line[3:]))
            elif line.startswith("ok "):
                return "ok", json.loads(line[3:])
            elif line.startswith("err "):
                return "err", line[4:]
        raise TimeoutError("no console answer")

    def ask(self, line: str, timeout: float = 10.0) -> tuple[str, object]:
        self.send(line)
        return self.answer(timeout)

    def wait_event(self, pred, timeout: float = 10.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for e in self.events:
                if pred(e):
                    self.events.remove(e)
                    return e
            line = self.ser.readline().decode("utf-8", "replace").strip()
            if line.startswith("ev "):
                self.events.append(json.loads(line[3:]))
        raise TimeoutError(f"no console event; have {self.events}")


@pytest.fixture
def blank(tmp_path):
    """A device fresh from the factory: empty flash, console on a pty."""
    dev = DeviceProcess(tmp_path / "flash" / "new", console="pty").start()
    port = Port(dev.console_path)
    yield dev, port
    port.ser.close()
    dev.kill()


def test_provisioning_a_blank_device_over_serial(blank, broker):
    dev, port = blank
    kind, info = port.ask("info")
    assert kind == "ok" and info["provisioned"] is False and info["kid"] is None
    dev.wait_state("error")  # a blank device says it is not provisioned
    kind, res = port.ask(json.dumps({"dev": "D21", "hall": "H1", "window": "21",
                                     "broker_port": broker.port, "mqtt_pass": "pw-secret"}).join(["config ", ""]))
    assert kind == "ok" and sorted(res["changed"]) == ["broker_port", "dev", "hall", "mqtt_pass", "window"]
    peer = MqttPeer(broker.port)
    kind, res = port.ask("key " + KEY.hex())
    assert (kind, res) == ("ok", {"kid": __import__("hcp.protocol", fromlist=["key_id"]).key_id(KEY)})
    dev.wait_event("online", timeout=15)  # provisioned: it connects by itself
    dev.wait_state("idle")
    assert json.loads(peer.wait("status")[0].payload)["state"] == "online"
    kind, info = port.ask("info")
    text = json.dumps(info)
    assert info["provisioned"] is True and info["dev"] == "D21" and info["window"] == "21"
    assert KEY.hex() not in text and "pw-secret" not in text and "mqtt_pass" not in info["config"]
    assert (dev.flash_dir / "key.bin").read_bytes() == KEY
    # it survives a power cut: config and key were written to flash
    port.ser.close()
    dev.kill()
    dev.start()
    port2 = Port(dev.console_path)
    kind, info = port2.ask("info")
    assert info["provisioned"] is True and info["boot"] == 2 and info["config"]["broker_port"] == broker.port
    port2.ser.close()
    peer.close()


def test_bad_console_input_is_refused_counted_and_harmless(blank):
    dev, port = blank
    assert port.ask("set lang \"tlh\"") == ("err", "lang: not one of zh-Hans,zh-Hant,en,ug")
    assert port.ask("set outbox_max 0")[0] == "err"
    assert port.ask("set nosuchkey 1") == ("err", "nosuchkey: unknown key")
    assert port.ask("config [1,2]") == ("err", "config takes a JSON object")
    assert port.ask("config {\"lang\": \"en\", \"window\": \"bad window!\"}")[0] == "err"
    assert port.ask("key 1234")[0] == "err"
    assert port.ask("key " + "zz" * 32)[0] == "err"
    assert port.ask("format c:") == ("err", "unknown command format")
    port.send(b"\xff\xfe\x80\n")
    assert port.answer() == ("err", "not UTF-8")
    port.send(b"x" * 700 + b"\n")
    assert port.answer() == ("err", "line too long")
    kind, info = port.ask("info")  # nothing above changed anything
    assert kind == "ok" and info["config"]["lang"] == "zh-Hans" and info["config"]["window"] == ""
    assert dev.running


def test_console_input_without_a_newline_stalls_nothing(blank):
    """A terminal that sends only CR, or a tool's control bytes, must not block the device's loops
    (the watchdog would reset it): the buttons and the LEDs go on, and the line ends when LF comes."""
    dev, port = blank
    port.send(b"info\r")  # no LF
    since = len(dev.events)
    dev.tap("3")  # the button loop still runs: the press shows (not provisioned: the error state)
    dev.wait_for(lambda: any(e.name == "state" for e in dev.events[since:]), timeout=5,
                 what="the screen the press shows")
    time.sleep(9)  # past the 8 s watchdog: still alive
    assert dev.running
    port.send(b"\n")
    assert port.answer()[0] == "ok"  # the line ended at its LF, and the console answers it


def test_bad_console_lines_show_in_health(broker, tmp_path):
    dev = DeviceProcess(tmp_path / "d", console="pipe", key=KEY, config={
        "dev": "D22", "hall": "H1", "window": "2", "broker_port": broker.port, "health_s": 5}).start()
    try:
        peer = MqttPeer(broker.port)
        dev.wait_event("online")
        for _ in range(3):
            assert dev.console("launch")[0] == "err"
        health = json.loads(peer.wait("health", timeout=15)[0].payload)
        assert health["cnt"]["badcon"] == 3
        assert health["alloc_peak"] > 0
        peer.close()
    finally:
        dev.kill()


def test_self_test_walks_every_led_and_button(blank):
    dev, port = blank
    port.send("selftest 3")
    leds = [port.wait_event(lambda e: e["step"] == "led")["led"] for _ in range(7)]
    assert leds == ["b1", "b2", "b3", "b4", "b5", "ok", "err"]
    for name in ("5", "4", "3", "2", "1", "invite"):
        assert port.wait_event(lambda e: e["step"] == "press")["button"] == name
        dev.tap("2" if name == "1" else name)  # the technician presses the wrong one for "1"
        got = port.wait_event(lambda e: e["step"] == "pressed")
        assert got["button"] == name and got["ok"] is (name != "1")
    kind, res = port.answer()
    assert kind == "ok" and res["passed"] is False
    assert res["buttons"] == {"5": True, "4": True, "3": True, "2": True, "1": False, "invite": True}
    assert dev.events_named("rating") == []  # presses during a self-test never rate


def test_identify_and_reboot(blank):
    dev, port = blank
    assert port.ask("identify 1") == ("ok", {})
    dev.wait_for(lambda: dev.leds.get("err") is True and dev.leds.get("b3") is True, 3, "blinking")
    assert port.ask("reboot") == ("ok", {})
    assert dev.proc.wait(timeout=10) == 75  # the host board's reboot: the runner powers it up again
