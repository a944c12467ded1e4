"""The MQTT link in-process against a real Mosquitto: awaitable PUBACKs, and the manual broker ack
that makes a message the gateway received but never committed come back after a restart."""

from __future__ import annotations

import asyncio

from gateway.mqtt import Inbound, MqttLink
from tests.fixtures.mqtt import MqttPeer

RATING_TOPIC = "hcp/v1/H1/D07/rating"


async def _receive(broker, ack: bool, want: int = 1, timeout: float = 10.0) -> list[Inbound]:
    got: list[Inbound] = []
    arrived = asyncio.Event()

    def on_message(m: Inbound) -> None:
        got.append(m)
        if ack:
            link.ack(m)
        if len(got) >= want:
            arrived.set()

    link = MqttLink("H1", broker.host, broker.port, on_message)
    link.start()
    try:
        await asyncio.wait_for(link.connected_event.wait(), timeout)
        await asyncio.wait_for(arrived.wait(), timeout)
        await asyncio.sleep(0.2)  # let the PUBACKs (if any) reach the broker
    finally:
        await link.stop()
    return got


def test_publish_completes_on_the_brokers_puback(broker):
    peer = MqttPeer(broker.port, subscribe="hcp/v1/H1/+/ack", client_id="peer")

    async def go() -> None:
        link = MqttLink("H1", broker.host, broker.port, lambda m: None)
        link.start()
        try:
            await asyncio.wait_for(link.connected_event.wait(), 10)
            await asyncio.wait_for(link.publish("hcp/v1/H1/D07/ack", b'{"v":1,"n":1,"st":"ok"}'), 10)
        finally:
            await link.stop()

    asyncio.run(go())
    assert peer.wait("ack")[0].payload == b'{"v":1,"n":1,"st":"ok"}'
    peer.close()


def test_a_message_not_acked_to_the_broker_is_delivered_again_after_reconnect(broker):
    async def first_session() -> None:
        # subscribe once so the persistent session exists, then go away
        link = MqttLink("H1", broker.host, broker.port, lambda m: None)
        link.start()
        await asyncio.wait_for(link.connected_event.wait(), 10)
        await asyncio.sleep(0.2)  # SUBACK
        await link.stop()

    asyncio.run(first_session())
    peer = MqttPeer(broker.port, subscribe="nothing/here", client_id="dev-D07")
    peer.publish(RATING_TOPIC, b"r1")  # queued by Mosquitto for gw-H1

    unacked = asyncio.run(_receive(broker, ack=False))
    assert [m.payload for m in unacked] == [b"r1"] and unacked[0].received_at > 0
    again = asyncio.run(_receive(broker, ack=True))  # the broker still holds it: delivered again
    assert [m.payload for m in again] == [b"r1"]
    peer.publish(RATING_TOPIC, b"r2")
    after_ack = asyncio.run(_receive(broker, ack=True))  # acked ones are gone
    assert [m.payload for m in after_ack] == [b"r2"]
    peer.close()


def test_awaited_publishes_complete_among_fire_and_forget_ones(broker):
    """Device acks go out by `publish_nowait` (no future; their PUBACKs are dropped in paho's
    thread while no future waits); a `publish()` made in the middle of a burst of them still
    completes on its own PUBACK, and every message arrives."""
    peer = MqttPeer(broker.port, subscribe="hcp/v1/H1/+/ack", client_id="peer")

    async def go() -> tuple[int, int]:
        link = MqttLink("H1", broker.host, broker.port, lambda m: None)
        link.start()
        try:
            await asyncio.wait_for(link.connected_event.wait(), 10)
            for n in range(1, 201):
                link.publish_nowait("hcp/v1/H1/D07/ack", b'{"v":1,"n":%d,"st":"ok"}' % n)
            awaited = [link.publish("hcp/v1/H1/D08/ack", b'{"v":1,"n":%d,"st":"ok"}' % n)
                       for n in (1, 2)]
            for n in range(201, 401):
                link.publish_nowait("hcp/v1/H1/D07/ack", b'{"v":1,"n":%d,"st":"ok"}' % n)
            await asyncio.wait_for(asyncio.gather(*awaited), 10)
            during = link._awaited
            await asyncio.sleep(0.3)  # the nowait PUBACKs still coming leave nothing behind
            return during, len(link._pending) + link._awaited
        finally:
            await link.stop()

    during, left = asyncio.run(go())
    assert during == 0 and left == 0
    got = peer.wait("ack", count=402)
    assert len(got) == 402
    peer.close()
