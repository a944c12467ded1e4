"""The first real path, over every real part: the firmware under MicroPython, Mosquitto, the
gateway process with its SQLite outbox, and the hub process with its SQLite store.

Queue system says ticket A023 finished at window 7 -> the gateway prompts window 7's device ->
a citizen presses 4 (满意) -> the device signs and publishes -> the gateway commits, acks and
forwards -> the hub verifies and stores -> the hub's API returns the rating bound to A023,
window 7, the staff member and the matter.
"""

from __future__ import annotations

import sqlite3
import time

import pytest

from hcp import protocol as P
from hcp.qr import matrix_bits
from simulator.services import GatewayProcess, HubProcess
from tests.fixtures.device import device_key
from tests.fixtures.mqtt import MqttPeer

HALL = "H1"
GATEWAY_KEY = bytes(range(32))


@pytest.fixture
def stack(tmp_path, broker):
    hub = HubProcess(tmp_path / "hub").start()
    token = hub.register_gateway(HALL, GATEWAY_KEY)
    hub.register_device("D07", HALL, "7", device_key("D07"))
    gateway = GatewayProcess(tmp_path / "gateway", {
        "hall": HALL, "broker_port": broker.port, "hub_url": hub.url, "hub_token": token,
        "gateway_key": GATEWAY_KEY.hex(), "devices": [{"device": "D07", "window": "7"}],
    }).start()
    yield hub, gateway
    gateway.close()
    hub.close()


def test_button_to_hub(stack, broker, device_factory):
    hub, gateway = stack
    spy = MqttPeer(broker.port, client_id="spy")
    device = device_factory("D07", broker=broker)
    device.wait_event("online")
    device.wait_state("idle")

    answer = gateway.post_event(  # raises unless the gateway answers 200
        event_id="q-100234", type="finished", at="2026-11-21T09:30:00+08:00", ticket="A023",
        window="7", staff_id="S0107", staff_name="张三", matter_code="000105001000",
        matter_name="个体工商户设立登记", case_no="2026112100015", unit="市市场监督管理局")
    session = answer["session"]
    assert session

    device.wait_state("prompt")  # hop: gateway -> Mosquitto -> device
    assert device.display["lines"][-1] == "票号 A023"
    claims = P.verify_phone_token(GATEWAY_KEY, device.display["qr"].rsplit("/r/", 1)[1], time.time())
    assert (claims["hall"], claims["svc"], claims["win"]) == (HALL, session, "7")
    size, bits = matrix_bits(device.display["qr"])  # the QR code shown is that URL's, module for module
    assert (device.display["qr_size"], device.display["qr_bits"]) == (size, bits.hex())

    device.tap(4)
    device.wait_state("thanks")  # stored on flash first
    sent = P.decode_rating(spy.wait("rating")[0].payload, HALL, "D07")  # hop: device -> Mosquitto
    assert (sent.n, sent.score, sent.sess) == (1, 4, session)
    device.wait_event("ack", lambda d: d == {"n": 1, "st": "ok"})  # hop: committed at the gateway
    with sqlite3.connect(gateway.db_path) as db:
        assert db.execute("SELECT COUNT(*) FROM ratings WHERE device='D07' AND n=1").fetchone() == (1,)

    deadline = time.monotonic() + 15  # hop: gateway outbox -> hub
    ratings = []
    while not ratings and time.monotonic() < deadline:
        ratings = hub.ratings(device="D07")
        time.sleep(0.1)
    assert len(ratings) == 1, gateway.log_text()[-2000:]
    r = ratings[0]
    assert r["id"] == "D07:1" and r["score"] == 4 and r["level"] == "满意" and r["bad"] is False
    assert r["verified"] is True and r["bound"] is True and r["unbound_reason"] is None
    assert (r["ticket"], r["window"], r["staff_id"], r["matter_code"], r["case_no"], r["session"]) == (
        "A023", "7", "S0107", "000105001000", "2026112100015", session)
    assert hub.ratings(ticket="A023") == ratings
    spy.close()
