"""The lightweight device against the wire contract: its payload bytes against the test vectors,
and its MQTT behaviour (acks, resends after a Wi-Fi loss and a power cut, the counter across
reboots) against the real gateway process on a private Mosquitto."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hcp.protocol import decode_rating
from simulator.lite_device import LiteDevice, LiteFleet, rating_json
from tests.fixtures.device import device_key


def test_payload_bytes_match_every_vector(rating_vectors):
    for v in rating_vectors:
        f = v["fields"]
        got = rating_json(bytes.fromhex(v["key"]), f["hall"], f["dev"], f["n"], f["boot"], f["mono"],
                          f["sess"], f["score"])
        assert got == json.dumps(v["payload"], separators=(",", ":")).encode(), v["name"]
        assert decode_rating(got, f["hall"], f["dev"]).verify(bytes.fromhex(v["key"])), v["name"]


@pytest.fixture
def fleet():
    f = LiteFleet()
    yield f
    f.close()


def _device(fleet: LiteFleet, tmp_path: Path, broker, dev: str = "L1", window: str = "1") -> LiteDevice:
    return LiteDevice(fleet, tmp_path / "flash" / dev, {"dev": dev, "hall": "H1", "window": window,
                                                         "broker_port": broker.port, "session_ttl_s": 30},
                      device_key(dev))


def _prompt_and_press(gw, dev: LiteDevice, ticket: str, score: int) -> int:
    since = len(dev.events)
    answer = gw.post_event(type="finished", ticket=ticket, window="1")
    dev.wait_event("session", lambda d: d["sess"] == answer["session"], 10, since)
    dev.tap(score)
    return dev.wait_event("rating", lambda d: True, 5, since).data["n"]


def test_prompt_press_ack_and_resend_after_wifi_loss_and_power_cut(broker, gateway_factory, fleet, tmp_path):
    gw = gateway_factory(broker)
    gw.register_device("L1", "1")
    dev = _device(fleet, tmp_path, broker).start()
    dev.wait_event("online", timeout=10)
    n1 = _prompt_and_press(gw, dev, "A001", 4)
    assert dev.wait_event("ack", lambda d: d["n"] == n1, 10).data["st"] == "ok"

    # Wi-Fi down: the press is stored and waits; it goes out when the link is back
    n2 = _prompt_and_press(gw, dev, "A002", 2)
    dev.network(False)
    since = len(dev.events)
    dev.network(True)
    dev.wait_event("online", timeout=15, since=since)
    assert dev.wait_event("ack", lambda d: d["n"] == n2, 20).data["st"] in ("ok", "dup")

    # the gateway is down: a press stays in flash through a power cut and is sent after the reboot
    since = len(dev.events)
    answer = gw.post_event(type="finished", ticket="A003", window="1")
    dev.wait_event("session", lambda d: d["sess"] == answer["session"], 10, since)
    gw.kill()
    dev.tap(5)
    n3 = dev.wait_event("rating", lambda d: True, 5, since).data["n"]
    dev.kill()
    assert json.loads((tmp_path / "flash" / "L1" / "state.json").read_text())["outbox"].keys() == {str(n3)}
    gw.start()
    dev.start()
    assert dev.wait_event("boot", timeout=5, since=since).data == {"boot": 2, "n": n3, "pending": 1,
                                                                     "kid": dev.kid}
    # "dup" when the broker had queued the first publish for the gateway's session meanwhile and
    # its ack went to the device while it was off
    assert dev.wait_event("ack", lambda d: d["n"] == n3, 20, since).data["st"] in ("ok", "dup")
    assert [n1, n2, n3] == [1, 2, 3]
    # the next press after the reboot takes the next counter, never a used one
    assert _prompt_and_press(gw, dev, "A004", 3) == 4
    rows = gw.wait_rows("SELECT n, payload FROM ratings WHERE device = 'L1' ORDER BY n", count=4)
    assert [r["n"] for r in rows] == [1, 2, 3, 4]
    boots = [json.loads(r["payload"])["boot"] for r in rows]
    assert boots == [1, 1, 1, 2]


def test_answers_the_gateways_info_command_and_keeps_presence(broker, gateway_factory, fleet, tmp_path):
    gw = gateway_factory(broker)
    gw.register_device("L1", "1")
    dev = _device(fleet, tmp_path, broker).start()
    dev.wait_event("online", timeout=10)
    status = gw.wait_status(lambda s: any(d["device"] == "L1" and d["presence"] == "online"
                                          and d.get("kid") for d in s["devices"]))
    assert status
    dev.kill()  # power cut: the broker sends the last will
    gw.wait_status(lambda s: any(d["device"] == "L1" and d["presence"] == "offline" for d in s["devices"]))
