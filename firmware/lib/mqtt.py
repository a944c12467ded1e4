"""MQTT 3.1.1 client on MicroPython asyncio and a non-blocking socket (aio.py).

One connection at a time: `connect()` opens it (CONNECT with username/password, keepalive and last
will) and starts a reader task, which takes every packet the broker sends, and a keepalive task;
`publish()` with QoS 1 waits for the PUBACK and resends with the DUP flag when none comes in time;
incoming QoS 0/1 PUBLISHes go to `on_message(topic, payload)` (called from the reader task: it must
be quick and must not await) and are PUBACKed after it returns. Any I/O error or a missing PINGRESP
marks the connection lost (`self.lost` is set and `connected` is False); reconnecting, and
re-subscribing, is the caller's loop (see device.py).
"""

import asyncio
import struct

import aio

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

_ACK_TIMEOUT_MS = const(5000)  # resend a QoS 1 PUBLISH with DUP after this long without PUBACK
_ACK_TRIES = const(3)  # then give up on this connection: it is declared lost
_MAX_PACKET = const(4096)  # larger incoming packets are a protocol error (our payloads are < 1 KB)
_CONNACK_ID = const(0)  # where the CONNACK waiter is kept in _acks (packet ids start at 1)


class MQTTError(OSError):
    pass


def _str(s):
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def _header(kind, n):
    """A packet's fixed header: its type and flags, and `n`, the length of the rest."""
    head = bytearray([kind])
    while True:
        byte = n & 0x7F
        n >>= 7
        head.append(byte | 0x80 if n else byte)
        if not n:
            return head


def _packet(kind, body):
    return _header(kind, len(body)) + body


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
        self.connected = False
        self.lost = aio.Signal()
        self.resends = 0  # QoS 1 PUBLISHes sent again with DUP
        self._sock = None
        self._out = b""  # bytes the socket has not taken yet
        self._writer = None  # the task in _send waiting for the socket to take _out
        self._pid = 0
        self._acks = {}  # packet id -> aio.Signal, for PUBACK and SUBACK (and CONNACK)
        self._connack = None
        self._tasks = []
        self._pong = True

    # -- connection
    async def connect(self, timeout_ms=10000):
        await self.close()
        self.lost.flag = False  # a new connection: not lost (yet)
        self._sock = await aio.connect(self.host, self.port)
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
        self._connack = None
        got = self._acks[_CONNACK_ID] = aio.Signal()
        self._tasks = [asyncio.create_task(self._read_loop())]
        await self._send(_packet(_CONNECT, body))
        await got.wait_ms(timeout_ms)
        self._acks.pop(_CONNACK_ID, None)
        data = self._connack
        if data is None:
            raise MQTTError("no CONNACK")
        if len(data) != 2:
            raise MQTTError("bad CONNACK")
        if data[1] != 0:
            raise MQTTError("connection refused, code %d" % data[1])
        self.connected = True
        self._pong = True
        self._tasks.append(asyncio.create_task(self._ping_loop()))
        return bool(data[0] & 1)  # session present

    async def close(self):
        """Drop the connection without DISCONNECT (the broker then publishes the will)."""
        self.connected = False
        for t in self._tasks:
            if t is not asyncio.current_task():
                t.cancel()
        self._tasks = []
        for sig in self._acks.values():
            sig.set()  # the waiters see `connected` False
        self._acks = {}
        s, w = self._sock, self._writer
        self._sock = self._writer = None
        self._out = b""
        if w is not None:
            aio.wake(w)  # it finds the socket gone: MQTTError
        if s is not None:
            s.close()

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
        for sig in self._acks.values():
            sig.set()  # the waiters see `connected` False (or no CONNACK)

    # -- I/O
    async def _send(self, *parts):
        """Write one packet given in parts (bytes, bytearray or memoryview), straight from them:
        a rating is not copied into a packet. What the socket does not take is queued and
        written once it can take more; a packet sent while another waits is queued behind it and
        this call returns at once: packets never interleave."""
        s = self._sock
        if s is None:
            raise MQTTError("not connected")
        for part in parts:
            if not self._out:  # nothing queued before it: write it now
                n = s.write(part) or 0
                if n == len(part):
                    continue
                part = part[n:]
            self._out += bytes(part)
        if self._writer is not None or not self._out:
            return
        self._writer = asyncio.current_task()
        try:
            while self._out:
                await aio.writable(s)  # pyright: ignore[reportGeneralTypeIssues]  # see aio.py
                if self._sock is not s:
                    raise MQTTError("connection closed")
                n = s.write(self._out)
                if n:
                    self._out = self._out[n:]
        finally:
            self._writer = None

    async def _read(self, n):
        """Exactly `n` bytes from the socket. Reads no more than it needs: a read allocates the
        size it asks for, and small allocations find room in a fragmented heap."""
        s = self._sock
        if s is None:
            raise MQTTError("not connected")
        data = b""
        while len(data) < n:
            await aio.readable(s)  # pyright: ignore[reportGeneralTypeIssues]  # see aio.py
            chunk = s.read(n - len(data))
            if chunk is None:
                continue  # nothing after all
            if not chunk:
                raise MQTTError("connection closed by the broker")
            data = data + chunk if data else chunk
        return data

    async def _read_packet(self):
        head = (await self._read(1))[0]
        n = 0
        shift = 0
        while True:
            b = (await self._read(1))[0]
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MQTTError("bad remaining length")
        if n > _MAX_PACKET:
            raise MQTTError("packet too large")
        data = await self._read(n) if n else b""
        return head, data

    async def _read_loop(self):
        try:
            while True:
                kind, data = await self._read_packet()
                t = kind & 0xF0
                if t == _PUBLISH:
                    await self._on_publish(kind, data)
                elif t == _PUBACK or t == _SUBACK:
                    self._acked(struct.unpack("!H", data[:2])[0])
                elif t == _PINGRESP:
                    self._pong = True
                elif t == _CONNACK and self._connack is None:
                    self._connack = data
                    self._acked(_CONNACK_ID)
        except asyncio.CancelledError:
            raise
        except Exception:  # EOF, reset, malformed packet: this connection is over
            self._mark_lost()

    def _acked(self, pid):
        sig = self._acks.pop(pid, None)
        if sig is not None:
            sig.set()

    async def _on_publish(self, kind, data):
        qos = (kind >> 1) & 3
        tlen = struct.unpack("!H", data[:2])[0]
        topic = data[2:2 + tlen].decode()
        pos = 2 + tlen
        pid = None
        if qos:
            pid = struct.unpack("!H", data[pos:pos + 2])[0]
            pos += 2
        if self.on_message is not None:
            self.on_message(topic, data[pos:])
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

    async def _acked_within(self, pid, *packet):
        """Send `packet` (its parts) and wait up to _ACK_TIMEOUT_MS for its PUBACK/SUBACK.
        -> acked? MQTTError if the connection is lost meanwhile."""
        sig = self._acks[pid] = aio.Signal()
        await self._send(*packet)
        await sig.wait_ms(_ACK_TIMEOUT_MS)
        if not self.connected:
            raise MQTTError("connection lost")
        if self._acks.get(pid) is sig:
            del self._acks[pid]
            return False
        return True

    # -- operations
    async def publish(self, topic, payload, qos=0, retain=False):
        """QoS 0: returns once written. QoS 1: returns once PUBACKed; raises MQTTError if the
        connection is lost first or no PUBACK comes after _ACK_TRIES sends. `payload`: bytes,
        memoryview or str."""
        if not self.connected:
            raise MQTTError("not connected")
        if isinstance(payload, str):
            payload = payload.encode()
        kind = _PUBLISH | (qos << 1) | (1 if retain else 0)
        topic = _str(topic)
        if qos == 0:
            await self._send(_header(kind, len(topic) + len(payload)), topic, payload)
            return
        pid = self._pid = self._pid % 65535 + 1
        size = len(topic) + 2 + len(payload)
        for attempt in range(_ACK_TRIES):
            if attempt:
                self.resends += 1
            flags = kind | (0x08 if attempt else 0)
            if await self._acked_within(pid, _header(flags, size), topic, struct.pack("!H", pid), payload):
                return
        self._mark_lost()
        raise MQTTError("no PUBACK")

    async def subscribe(self, topic, qos=1):
        if not self.connected:
            raise MQTTError("not connected")
        pid = self._pid = self._pid % 65535 + 1
        if not await self._acked_within(pid, _packet(_SUBSCRIBE, struct.pack("!H", pid) + _str(topic) + bytes([qos]))):
            self._mark_lost()
            raise MQTTError("no SUBACK")
