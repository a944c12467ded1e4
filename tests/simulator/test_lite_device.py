"""The lightweight device against the wire contract: its payload bytes against the test vectors,
and its MQTT behaviour (acks, resends after a Wi-Fi loss and a power cut, the counter across
reboots) against the real gateway process on a private Mosquitto."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from hcp.protocol import decode_rating
from simulator.broker import free_port
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
    gw = gateway_factory(broker, registry_sweep_s=0.5)  # the info command goes out on a sweep
    gw.register_device("L1", "1")
    dev = _device(fleet, tmp_path, broker).start()
    dev.wait_event("online", timeout=10)
    status = gw.wait_status(lambda s: any(d["device"] == "L1" and d["presence"] == "online"
                                          and d.get("kid") for d in s["devices"]))
    assert status
    dev.kill()  # power cut: the broker sends the last will
    gw.wait_status(lambda s: any(d["device"] == "L1" and d["presence"] == "offline" for d in s["devices"]))


def test_a_session_times_out_after_its_ttl_and_a_press_ends_it(fleet, tmp_path):
    """The session timeout is a timer of its own (no polling): an invite session with no press
    closes after `session_ttl_s`, a press then finds none; a pressed session never times out."""
    config = {"dev": "L1", "hall": "H1", "window": "1", "broker_port": free_port(), "invite": True,
              "session_ttl_s": 1}
    dev = LiteDevice(fleet, tmp_path / "flash" / "L1", config, device_key("L1")).start()
    t = time.monotonic()
    dev.tap("invite")
    dev.wait_event("session", lambda d: d["op"] == "open", 2)
    closed = dev.wait_event("session", lambda d: d["op"] == "timeout", 3)
    assert 0.9 <= closed.at - t <= 2.5
    dev.tap(3)
    dev.wait_event("nosession", lambda d: d["score"] == 3, 2)
    since = len(dev.events)
    dev.tap("invite")
    dev.tap(5)
    assert dev.wait_event("rating", timeout=2, since=since).data["n"] == 1
    time.sleep(1.5)
    assert not [e for e in dev.events[since:] if e.name == "session" and e.data["op"] == "timeout"]
    dev.stop()


@pytest.mark.parametrize("kind", ["real", "lite"])
def test_the_display_shows_the_prompts_qr_code_while_its_session_is_open(kind, broker, device_factory, fleet,
                                                                         tmp_path):
    """Both devices, driven alike by a peer playing the gateway: `display["qr"]` is the prompt's
    phone page URL while the session is open, and None once it ends by a press, a timeout or a
    cancel, for a prompt without one, and after a power cut (the simulator's QR citizens read it)."""
    from hcp import protocol as P
    from tests.fixtures.mqtt import MqttPeer

    peer = MqttPeer(broker.port)
    try:
        if kind == "real":
            dev = device_factory("L1", hall="H1", window="1", broker=broker)
        else:
            dev = _device(fleet, tmp_path, broker).start()
        dev.wait_event("online", timeout=15)
        topic = "hcp/v1/H1/L1/prompt"

        def shows(qr: str | None, what: str) -> None:
            dev.wait_for(lambda: dev.display["qr"] == qr, 5, f"display qr {qr} ({what})")

        def prompt(sess: str, ttl: int, qr: str | None) -> None:
            since = len(dev.events)
            peer.publish(topic, P.encode_prompt_open(sess, ttl, "A001", qr))
            dev.wait_event("session", lambda d: d["op"] == "open" and d["sess"] == sess, 10, since)

        url = "http://127.0.0.1:9/r/tok-{}"
        prompt("1a2b3c4d5e6f7a8b", 30, url.format(1))
        shows(url.format(1), "prompt")
        dev.tap(4)
        dev.wait_event("rating", timeout=5)
        shows(None, "pressed")
        prompt("2a2b3c4d5e6f7a8b", 1, url.format(2))
        shows(url.format(2), "second prompt")
        dev.wait_event("session", lambda d: d["op"] == "timeout", 5)
        shows(None, "timed out")
        prompt("3a2b3c4d5e6f7a8b", 30, url.format(3))
        shows(url.format(3), "third prompt")
        peer.publish(topic, P.encode_prompt_cancel("3a2b3c4d5e6f7a8b"))
        dev.wait_event("session", lambda d: d["op"] == "cancel", 5)
        shows(None, "cancelled")
        prompt("4a2b3c4d5e6f7a8b", 30, None)
        time.sleep(0.3)
        assert dev.display["qr"] is None  # a prompt without a QR code shows none
        prompt("5a2b3c4d5e6f7a8b", 30, url.format(5))
        shows(url.format(5), "fifth prompt")
        dev.kill()  # a power cut: the restarted device has no session and shows no QR code
        t = time.monotonic()
        dev.start()
        dev.wait_event("online", timeout=15, after=t)
        assert dev.display["qr"] is None
    finally:
        peer.close()
        if kind == "lite":
            dev.stop()
