"""MQTT 3.1.1 client on MicroPython asyncio streams.

One connection at a time: `connect()` opens it (CONNECT with username/password, keepalive and last
will), starts a reader and a keepalive task; `publish()` with QoS 1 waits for the PUBACK and resends
with the DUP flag when none comes in time; incoming QoS 0/1 PUBLISHes go to `on_message(topic,
payload)` (called from the reader task: it must be quick and must not await) and are PUBACKed after
it returns. Any I/O error or a missing PINGRESP marks the connection lost (`self.lost` is set and
`connected` is False); reconnecting, and re-subscribing, is the caller's loop (see device.py).

The stream opener is an attribute (`open_connection`) so a test can swap the transport.
"""

import asyncio
import struct

from micropython import const

_CONNECT = const(0x10)
_CONNACK = const(0x20)
_PUBLISH = const(0x30)
_PUBACK = const(0x40)
_SUBSCRIBE = const(0x82)
_SUBACK = const(0x90)
_PINGREQ = const(0xC0)
_PINGRESP = const(0xD0)
_DISCONNECT = const(0xE0)

ACK_TIMEOUT_MS = const(5000)  # resend a QoS 1 PUBLISH with DUP after this long without PUBACK
ACK_TRIES = const(3)  # then give up on this connection: it is declared lost
MAX_PACKET = const(4096)  # larger incoming packets are a protocol error (our payloads are < 1 KB)


class MQTTError(OSError):
    pass


def _str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def _packet(kind, body):
    n = len(body)
    head = bytearray([kind])
    while True:
        byte = n & 0x7F
        n >>= 7
        head.append(byte | 0x80 if n else byte)
        if not n:
            break
    return bytes(head) + body


class MQTTClient:
    def __init__(self, client_id, host, port=1883, user=None, password=None, keepalive=30,
                 will=None, clean=True, on_message=None):
        """`will` is (topic, payload, qos, retain) or None."""
        self.client_id = client_id
        self.host = host
        self.port = port
        self.user = user
        self.password = password
        self.keepalive = keepalive
        self.will = will
        self.clean = clean
        self.on_message = on_message
        self.open_connection = asyncio.open_connection
        self.connected = False
        self.lost = asyncio.Event()
        self.resends = 0  # QoS 1 PUBLISHes sent again with DUP
        self._reader = None
        self._writer = None
        self._wlock = asyncio.Lock()
        self._pid = 0
        self._acks = {}  # packet id -> asyncio.Event, for PUBACK and SUBACK
        self._tasks = []
        self._pong = True

    # -- connection
    async def connect(self, timeout_ms=10000):
        await self.close()
        self.lost = asyncio.Event()
        self._reader, self._writer = await self.open_connection(self.host, self.port)
        flags = 0x02 if self.clean else 0
        payload = _str(self.client_id)
        if self.will:
            topic, msg, qos, retain = self.will
            flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
            payload += _str(topic) + _str(msg)
        if self.user is not None:
            flags |= 0x80
            payload += _str(self.user)
            if self.password is not None:
                flags |= 0x40
                payload += _str(self.password)
        body = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", self.keepalive) + payload
        await self._send(_packet(_CONNECT, body))
        kind, data = await asyncio.wait_for_ms(self._read_packet(), timeout_ms)
        if kind != _CONNACK or len(data) != 2:
            raise MQTTError("expected CONNACK")
        if data[1] != 0:
            raise MQTTError("connection refused, code %d" % data[1])
        self.connected = True
        self._pong = True
        self._tasks = [asyncio.create_task(self._read_loop()),
                       asyncio.create_task(self._ping_loop())]
        return bool(data[0] & 1)  # session present

    async def close(self):
        """Drop the connection without DISCONNECT (the broker then publishes the will)."""
        self.connected = False
        for t in self._tasks:
            if t is not asyncio.current_task():
                t.cancel()
        self._tasks = []
        for ev in self._acks.values():
            ev.set()  # wake waiters: they see connected False
        self._acks = {}
        if self._writer is not None:
            try:
                self._writer.close()
                await self._writer.wait_closed()
            except OSError:
                pass  # the socket is already broken; it is being discarded either way
        self._reader = self._writer = None

    async def disconnect(self):
        """Clean DISCONNECT: the broker discards the will."""
        if self.connected:
            try:
                await self._send(_packet(_DISCONNECT, b""))
            except OSError:
                pass  # closing anyway
        await self.close()

    def _mark_lost(self):
        if self.connected:
            self.connected = False
            self.lost.set()
            for ev in self._acks.values():
                ev.set()

    # -- I/O
    async def _send(self, data):
        w = self._writer
        if w is None:
            raise MQTTError("not connected")
        async with self._wlock:
            w.write(data)
            await w.drain()

    async def _read_packet(self):
        r = self._reader
        if r is None:
            raise MQTTError("not connected")
        head = await r.readexactly(1)
        n = 0
        shift = 0
        while True:
            b = (await r.readexactly(1))[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MQTTError("bad remaining length")
        if n > MAX_PACKET:
            raise MQTTError("packet too large")
        data = await r.readexactly(n) if n else b""
        return head[0], data

    async def _read_loop(self):
        try:
            while True:
                kind, data = await self._read_packet()
                t = kind & 0xF0
                if t == _PUBLISH:
                    await self._on_publish(kind, data)
                elif t == _PUBACK or t == _SUBACK:
                    pid = struct.unpack("!H", data[:2])[0]
                    ev = self._acks.pop(pid, None)
                    if ev is not None:
                        ev.set()
                elif t == _PINGRESP:
                    self._pong = True
        except asyncio.CancelledError:
            raise
        except Exception:  # EOF, reset, malformed packet: this connection is over
            self._mark_lost()

    async def _on_publish(self, kind, data):
        qos = (kind >> 1) & 3
        tlen = struct.unpack("!H", data[:2])[0]
        topic = bytes(data[2:2 + tlen]).decode()
        pos = 2 + tlen
        pid = None
        if qos:
            pid = struct.unpack("!H", data[pos:pos + 2])[0]
            pos += 2
        if self.on_message is not None:
            self.on_message(topic, bytes(data[pos:]))
        if qos == 1:
            await self._send(_packet(_PUBACK, struct.pack("!H", pid)))

    async def _ping_loop(self):
        try:
            while self.connected:
                await asyncio.sleep(max(1, self.keepalive // 2))
                if not self._pong:
                    self._mark_lost()  # no PINGRESP within half a keepalive
                    return
                self._pong = False
                await self._send(_packet(_PINGREQ, b""))
        except asyncio.CancelledError:
            raise
        except OSError:
            self._mark_lost()

    # -- operations
    async def publish(self, topic, payload, qos=0, retain=False):
        """QoS 0: returns once written. QoS 1: returns once PUBACKed; raises MQTTError if the
        connection is lost first or no PUBACK comes after ACK_TRIES sends."""
        if not self.connected:
            raise MQTTError("not connected")
        kind = _PUBLISH | (qos << 1) | (1 if retain else 0)
        if qos == 0:
            await self._send(_packet(kind, _str(topic) + payload))
            return
        pid = self._pid = self._pid % 65535 + 1
        for attempt in range(ACK_TRIES):
            ev = asyncio.Event()
            self._acks[pid] = ev
            flags = kind | (0x08 if attempt else 0)
            if attempt:
                self.resends += 1
            await self._send(_packet(flags, _str(topic) + struct.pack("!H", pid) + payload))
            try:
                await asyncio.wait_for_ms(ev.wait(), ACK_TIMEOUT_MS)
            except asyncio.TimeoutError:
                continue
            if not self.connected:
                raise MQTTError("connection lost")
            return
        self._acks.pop(pid, None)
        self._mark_lost()
        raise MQTTError("no PUBACK")

    async def subscribe(self, topic, qos=1):
        if not self.connected:
            raise MQTTError("not connected")
        pid = self._pid = self._pid % 65535 + 1
        ev = asyncio.Event()
        self._acks[pid] = ev
        await self._send(_packet(_SUBSCRIBE, struct.pack("!H", pid) + _str(topic) + bytes([qos])))
        try:
            await asyncio.wait_for_ms(ev.wait(), ACK_TIMEOUT_MS)
        except asyncio.TimeoutError:
            self._mark_lost()
            raise MQTTError("no SUBACK")
        if not self.connected:
            raise MQTTError("connection lost")
