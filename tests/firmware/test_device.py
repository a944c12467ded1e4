"""The real firmware under MicroPython, over a real Mosquitto, with the test playing the gateway."""

from __future__ import annotations

import json
import time

import pytest

from hcp import protocol as P
from tests.fixtures.device import device_key
from tests.fixtures.mqtt import MqttPeer

T = "hcp/v1/H1/D07/"


@pytest.fixture
def peer(broker):
    p = MqttPeer(broker.port)
    yield p
    p.close()


def _online(dev, peer):
    dev.wait_event("online")
    peer.wait("status")


def test_prompt_press_sign_ack(broker, peer, device_factory):
    dev = device_factory(broker=broker)
    _online(dev, peer)
    assert dev.state == "offline" or dev.state == "idle"
    dev.wait_state("idle")
    peer.publish(T + "prompt", P.encode_prompt_open("3f2a9c1e0b7d4a55", 60, "A023", "https://hub/r/tok"))
    dev.wait_state("prompt")
    assert dev.display["lines"] == ["请对本次服务进行评价", "票号 A023"]
    assert dev.display["qr"] == "https://hub/r/tok"
    assert all(dev.leds[f"b{i}"] for i in range(1, 6))

    dev.tap(4)
    dev.wait_state("thanks")
    assert not any(dev.leds[f"b{i}"] for i in range(1, 6))
    raw = peer.wait("rating")[0].payload
    rating = P.decode_rating(raw, "H1", "D07")
    assert (rating.n, rating.score, rating.sess, rating.boot) == (1, 4, "3f2a9c1e0b7d4a55", 1)
    assert rating.verify(device_key("D07"))

    peer.publish(T + "ack", P.encode_ack(1))
    dev.wait_event("ack", lambda d: d["n"] == 1)
    journal = (dev.flash_dir / "outbox.log").read_text().splitlines()
    assert [line.split()[0] for line in journal] == ["R", "A"]


def test_press_without_session_creates_nothing(broker, peer, device_factory):
    dev = device_factory(broker=broker)
    _online(dev, peer)
    dev.tap(5)
    dev.wait_state("nosession")
    time.sleep(0.5)
    assert peer.on("rating") == []
    assert dev.events_named("rating") == []


def test_one_rating_per_session(broker, peer, device_factory):
    dev = device_factory(broker=broker)
    _online(dev, peer)
    peer.publish(T + "prompt", P.encode_prompt_open("s1"))
    dev.wait_state("prompt")
    dev.tap(2)
    dev.wait_state("thanks")
    dev.tap(5)
    dev.wait_state("already")
    peer.publish(T + "prompt", P.encode_prompt_open("s1"))  # a repeated open of a rated session
    time.sleep(0.3)
    assert dev.state == "already"
    time.sleep(0.5)
    assert len(peer.on("rating")) == 1
    assert len(dev.events_named("rating")) == 1


def test_cancel_and_timeout_close_the_session(broker, peer, device_factory):
    dev = device_factory(broker=broker)
    _online(dev, peer)
    peer.publish(T + "prompt", P.encode_prompt_open("s1", ttl=60))
    dev.wait_state("prompt")
    peer.publish(T + "prompt", P.encode_prompt_cancel("other"))  # not this session: ignored
    time.sleep(0.3)
    assert dev.state == "prompt"
    peer.publish(T + "prompt", P.encode_prompt_cancel("s1"))
    dev.wait_event("session", lambda d: d["op"] == "cancel")
    dev.wait_state("idle")
    peer.publish(T + "prompt", P.encode_prompt_open("s2", ttl=1))
    dev.wait_state("prompt")
    dev.wait_event("session", lambda d: d["op"] == "timeout", timeout=5)
    dev.wait_state("idle")
    dev.tap(3)
    dev.wait_state("nosession")
    assert peer.on("rating") == []


def test_power_cut_after_thank_you_resends_the_same_rating(broker, peer, device_factory):
    dev = device_factory(broker=broker)
    _online(dev, peer)
    peer.publish(T + "prompt", P.encode_prompt_open("s1"))
    dev.wait_state("prompt")
    dev.tap(1)
    dev.wait_state("thanks")
    first = peer.wait("rating")[0].payload
    dev.kill()  # no ack ever came
    dev.start()
    boot = dev.wait_event("boot").data
    assert boot == {"boot": 2, "n": 1, "pending": 1, "kid": P.key_id(device_key("D07"))}
    again = peer.wait("rating", 2)[1].payload
    assert again == first  # same number, same signature: the gateway can deduplicate
    peer.publish(T + "ack", P.encode_ack(1))
    dev.wait_event("ack")
    peer.publish(T + "prompt", P.encode_prompt_open("s2"))
    dev.wait_state("prompt")
    dev.tap(5)
    third = P.decode_rating(peer.wait("rating", 3)[2].payload)
    assert (third.n, third.boot, third.score) == (2, 2, 5)


def test_birth_and_last_will_are_ordered_by_boot_and_connection(broker, peer, device_factory):
    dev = device_factory(broker=broker)
    _online(dev, peer)
    birth = P.decode_status(peer.on("status")[0].payload)
    assert (birth.state, birth.order, birth.fw) == ("online", (1, 1), "0.1.0")
    dev.kill()
    will = P.decode_status(peer.wait("status", 2, timeout=90)[1].payload)
    assert (will.state, will.order) == ("offline", (1, 1))


def test_bad_gateway_messages_are_counted_not_fatal(broker, peer, device_factory):
    dev = device_factory(broker=broker)
    _online(dev, peer)
    for raw in (b"garbage", b'{"v":1,"op":"open"}', b'{"v":9}', b"[]"):
        peer.publish(T + "prompt", raw)
    peer.publish(T + "ack", b'{"v":1,"n":"x"}')
    peer.publish(T + "cmd", b'{"v":1,"id":"c1","op":"selfdestruct"}')
    reply = json.loads(peer.wait("cmd/reply")[0].payload)
    assert reply == {"v": 1, "id": "c1", "ok": False, "err": "unknown op selfdestruct"}
    dev.wait_for(lambda: len(dev.events_named("badmsg")) == 5)
    assert {e.data["reason"] for e in dev.events_named("badmsg")} == {
        "bad_json", "missing_field:sess", "bad_version", "bad_field:n"}
    peer.publish(T + "prompt", P.encode_prompt_open("s1"))  # still works
    dev.wait_state("prompt")
    health = json.loads(peer.wait("health", timeout=15)[0].payload)
    assert health["cnt"]["badmsg"] == 6
    assert dev.running


def test_corrupt_config_boots_safely_and_says_why(broker, tmp_path, device_factory):
    dev = device_factory(broker=broker, start=False)
    (dev.flash_dir / "config.json").write_text('{"dev": "D07", "hall": ')
    dev.start()
    dev.wait_event("error", lambda d: "config corrupt" in d["text"])
    dev.wait_state("error")
    assert dev.display["lines"][-1] == "not provisioned"
    time.sleep(1)
    assert dev.running


def test_display_language_is_configurable(broker, peer, device_factory):
    dev = device_factory(broker=broker, lang="ug")
    _online(dev, peer)
    peer.publish(T + "prompt", P.encode_prompt_open("s1", ticket="B007"))
    dev.wait_state("prompt")
    assert dev.display["lines"] == ["مۇلازىمىتىمىزگە باھا بېرىڭ", "نومۇر B007"]


def test_info_command_never_reveals_the_key(broker, peer, device_factory):
    dev = device_factory(broker=broker, mqtt_pass="secret-pass")
    _online(dev, peer)
    peer.publish(T + "cmd", P.encode_cmd("c9", "info"))
    reply = json.loads(peer.wait("cmd/reply")[0].payload)
    assert reply["ok"] and reply["res"]["kid"] == P.key_id(device_key("D07"))
    text = json.dumps(reply)
    assert device_key("D07").hex() not in text and "secret-pass" not in text


def test_a_hung_main_loop_is_reset_by_the_watchdog(broker, peer, device_factory):
    dev = device_factory(broker=broker)
    _online(dev, peer)
    dev.hang(2000)  # shorter than the watchdog's 8 s: the device carries on
    time.sleep(2.5)
    assert dev.running
    started = time.monotonic()
    dev.hang(60_000)
    dev.proc.wait(timeout=20)
    assert dev.proc.returncode == -9  # killed, as a hardware watchdog resets the chip
    assert 7 <= time.monotonic() - started <= 15
    assert "watchdog: main loop hung" in dev.console_text()
    dev.start()  # power comes back: a new boot
    assert dev.wait_event("boot").data["boot"] == 2
