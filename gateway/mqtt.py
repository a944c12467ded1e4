"""The gateway's MQTT link: paho-mqtt 2.x with its network loop in paho's own thread.

Why a thread (`loop_start`) rather than paho's socket callbacks wired into asyncio
(examples/loop_asyncio.py): paho's thread already does connect, keepalive, reconnect with backoff
and QoS 1 retransmission, and it keeps doing them while the asyncio loop is busy in a long SQLite
commit. The asyncio wiring re-implements that scheduling by hand (add_reader/add_writer, a misc
timer, re-arming after every reconnect), which is where bugs hide. The thread only crosses into
asyncio through `loop.call_soon_threadsafe`; no callback touches gateway state directly.

Inbound QoS 1 messages are acknowledged to the broker manually (`manual_ack=True`) by the caller
after the message is committed: if the gateway dies between receipt and commit, Mosquitto still
holds the message for the persistent session `gw-{hall}` and delivers it again on return.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from hcp.protocol import DEVICE_TOPICS, TOPIC_PREFIX

log = logging.getLogger(__name__)

KEEPALIVE_S = 30  # the broker drops us after 1.5x this without traffic; devices use the same
RECONNECT_MIN_S = 1  # first retry after a lost connection; paho doubles it up to the max
RECONNECT_MAX_S = 15  # a hall broker restart should not leave ratings waiting longer than this
# Acks and prompts in flight to the broker: 0 = no limit. paho's default of 20 stalls bursts, and
# any limit makes paho scan all its outgoing messages on every PUBACK (`_update_inflight`): at 1000
# that scan was 60 % of the MQTT thread's time in bench/gateway_ingest.py.
MAX_INFLIGHT_OUT = 0
SUBSCRIBE_QOS = 1


@dataclass(frozen=True)
class Inbound:
    """A message from a device, stamped with the gateway's wall clock on receipt."""

    topic: str
    payload: bytes
    qos: int
    mid: int
    retain: bool
    received_at: float


READ_CHUNK = 65536  # bytes asked of the kernel per recv by `_BufferedSocket`


class _BufferedSocket:
    """The broker connection with reads served from one buffer.

    paho reads a packet as 1 byte (command), then the remaining length byte by byte, then the
    rest: three or four `recv` system calls per packet, two packets per rating (the rating and the
    PUBACK of its ack), about a third of paho's thread in bench/gateway_ingest.py. This wrapper
    takes up to `READ_CHUNK` bytes per `recv` and serves paho's small reads from them. `pending()`
    is what paho already asks of TLS sockets: bytes held here make its loop read again instead of
    waiting in `select` for data that has already arrived. Everything else goes to the socket.
    """

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._buf = b""
        self._pos = 0
        self.send = sock.send  # per packet written: not through __getattr__
        self.fileno = sock.fileno  # per select

    def recv(self, bufsize: int) -> bytes:
        if self._pos >= len(self._buf):
            self._buf = self._sock.recv(max(bufsize, READ_CHUNK))  # BlockingIOError: nothing yet
            self._pos = 0
            if not self._buf:
                return b""  # the broker closed the connection
        chunk = self._buf[self._pos:self._pos + bufsize]
        self._pos += len(chunk)
        return chunk

    def pending(self) -> int:
        return len(self._buf) - self._pos

    def __getattr__(self, name: str) -> object:  # send, fileno, close, setblocking, setsockopt...
        return getattr(self._sock, name)


class _Client(mqtt.Client):
    """paho's client with buffered reads on plain TCP connections (`_BufferedSocket`)."""

    def _create_socket(self):  # type: ignore[no-untyped-def]  # paho's hook, called per connect
        sock = super()._create_socket()
        if isinstance(sock, socket.socket) and sock.type == socket.SOCK_STREAM:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                # acks and prompts are small: send each one at once
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return _BufferedSocket(sock)
        return sock


class MqttLink:
    """Connects as `gw-{hall}` (clean session off), subscribes in `on_connect` on every connect,
    hands messages to `on_message` on the asyncio loop, and publishes with an awaitable PUBACK."""

    def __init__(self, hall: str, host: str, port: int, on_message: Callable[[Inbound], None],
                 username: str | None = None, password: str | None = None):
        self.hall = hall
        self.host = host
        self.port = port
        self._on_message = on_message
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[int, asyncio.Future[None]] = {}
        # futures of `publish()` not yet settled; while 0 (device acks go out by `publish_nowait`)
        # paho's thread drops PUBACKs instead of handing each one to the loop. Written only on
        # the loop, read by paho's thread: counted up before the publish, so no PUBACK it awaits
        # can be dropped.
        self._awaited = 0
        self._calls: collections.deque[tuple[Callable, tuple]] = collections.deque()
        self._calls_lock = threading.Lock()
        self._drain_scheduled = False
        self.connected = False
        self.connects = 0
        self.connected_event = asyncio.Event()
        client = _Client(CallbackAPIVersion.VERSION2, client_id=f"gw-{hall}",
                             clean_session=False, protocol=mqtt.MQTTv311, manual_ack=True)
        if username is not None:
            client.username_pw_set(username, password)
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.max_inflight_messages_set(MAX_INFLIGHT_OUT)
        client.max_queued_messages_set(0)  # unlimited: an ack must not be dropped by the client
        client.on_connect = self._cb_connect
        client.on_disconnect = self._cb_disconnect
        client.on_message = self._cb_message
        client.on_publish = self._cb_publish
        self.client = client

    @property
    def subscriptions(self) -> list[str]:
        return [f"{TOPIC_PREFIX}/{self.hall}/+/{suffix}" for suffix in DEVICE_TOPICS]

    def start(self) -> None:
        """Start connecting in paho's thread; retries until the broker answers."""
        self._loop = asyncio.get_running_loop()
        self.client.connect_async(self.host, self.port, keepalive=KEEPALIVE_S)
        self.client.loop_start()

    async def stop(self) -> None:
        """Disconnect cleanly (the broker keeps our session and queues for us) and join the thread."""
        self.client.disconnect()
        await asyncio.to_thread(self.client.loop_stop)
        for fut in self._pending.values():
            fut.cancel()
        self._pending.clear()
        self._awaited = 0

    # ------------------------------------------------------------------ from asyncio

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> asyncio.Future[None]:
        """Publish; the future completes on the broker's PUBACK (QoS 1) or when written (QoS 0).

        While disconnected, paho queues QoS 1 messages and sends them after reconnecting, so the
        future may stay pending until then; callers that must not wait simply don't await it.
        """
        assert self._loop is not None, "start() first"
        fut: asyncio.Future[None] = self._loop.create_future()
        self._awaited += 1
        info = self.client.publish(topic, payload, qos=qos)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self._awaited -= 1
            fut.set_exception(ConnectionError(f"publish to {topic}: {mqtt.error_string(info.rc)}"))
            return fut
        # PUBACK callbacks reach this loop through call_soon_threadsafe, so they run after this
        # synchronous block: registering the mid here cannot miss an early PUBACK.
        self._pending[info.mid] = fut
        return fut

    def publish_nowait(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Publish without waiting for the PUBACK; a refused publish is logged, not raised.
        No future: one device ack per rating, and nothing waits for its PUBACK."""
        info = self.client.publish(topic, payload, qos=qos)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.error("publish to %s: %s", topic, mqtt.error_string(info.rc))

    def ack(self, message: Inbound) -> None:
        """Acknowledge an inbound QoS 1 message to the broker (after it is committed)."""
        if message.qos > 0:
            self.client.ack(message.mid, message.qos)

    # ------------------------------------------------------------------ paho's thread

    def _cb_connect(self, client: mqtt.Client, userdata: object, flags: mqtt.ConnectFlags,
                    reason: mqtt.ReasonCode, properties: object) -> None:
        if reason.is_failure:
            log.warning("broker %s:%d refused the connection: %s", self.host, self.port, reason)
            return
        client.subscribe([(t, SUBSCRIBE_QOS) for t in self.subscriptions])
        log.info("connected to %s:%d (session present: %s)", self.host, self.port,
                 flags.session_present)
        self._call(self._set_connected, True)

    def _cb_disconnect(self, client: mqtt.Client, userdata: object, flags: object,
                       reason: mqtt.ReasonCode, properties: object) -> None:
        log.warning("disconnected from %s:%d: %s", self.host, self.port, reason)
        self._call(self._set_connected, False)

    def _cb_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        inbound = Inbound(topic=msg.topic, payload=bytes(msg.payload), qos=msg.qos, mid=msg.mid,
                          retain=bool(msg.retain), received_at=time.time())
        self._call(self._on_message, inbound)

    def _cb_publish(self, client: mqtt.Client, userdata: object, mid: int,
                    reason: mqtt.ReasonCode, properties: object) -> None:
        if self._awaited:  # else no future waits for any PUBACK (see `_awaited`)
            self._call(self._published, mid)

    def _call(self, fn: Callable, *args: object) -> None:
        """Run `fn(*args)` on the asyncio loop, in call order. A call made while a drain is already
        scheduled rides on it: one wake-up of the loop per burst of messages, not one per message
        and per PUBACK (each `call_soon_threadsafe` writes to the loop's self-pipe)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        self._calls.append((fn, args))
        with self._calls_lock:
            if self._drain_scheduled:
                return
            self._drain_scheduled = True
        with contextlib.suppress(RuntimeError):  # the loop closed between check and call
            loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        with self._calls_lock:
            self._drain_scheduled = False  # calls appended from now on schedule another drain
        while self._calls:
            fn, args = self._calls.popleft()
            try:
                fn(*args)
            except Exception:  # as call_soon would: log it, and the next call still runs
                log.exception("MQTT callback %r failed", fn)

    # ------------------------------------------------------------------ back on asyncio

    def _set_connected(self, up: bool) -> None:
        self.connected = up
        if up:
            self.connects += 1
            self.connected_event.set()
        else:
            self.connected_event.clear()

    def _published(self, mid: int) -> None:
        fut = self._pending.pop(mid, None)
        if fut is None:
            return  # a `publish_nowait`
        self._awaited -= 1
        if not fut.done():
            fut.set_result(None)
