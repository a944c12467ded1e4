"""A small MQTT 3.1.1 client on asyncio, for the lightweight devices: thousands of them share one
event loop in one thread, where a paho client each would cost a thread each.

It does what the firmware's client (firmware/lib/mqtt.py) does and nothing more: CONNECT with a
last will and clean session, SUBSCRIBE, PUBLISH at QoS 0/1 (no waiting for the broker's PUBACK:
the device's own resend rule covers loss), PUBACK of what it receives, PINGREQ at keepalive.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Callable


class MQTTError(OSError):
    """The broker refused or the connection broke."""


def _str(text: str | bytes) -> bytes:
    data = text.encode() if isinstance(text, str) else text
    return struct.pack("!H", len(data)) + data


def _packet(first: int, body: bytes) -> bytes:
    n = len(body)
    length = bytearray()
    while True:
        byte, n = n % 128, n // 128
        length.append(byte | (0x80 if n else 0))
        if not n:
            break
    return bytes([first]) + bytes(length) + body


class LiteMQTT:
    """One connection. `on_message(topic, payload)` runs in the event loop for each PUBLISH;
    `lost` is set when the connection ends, for whatever reason."""

    def __init__(self, client_id: str, host: str, port: int, username: str | None, keepalive: int,
                 on_message: Callable[[str, bytes], None]):
        self.client_id = client_id
        self.host = host
        self.port = port
        self.username = username
        self.keepalive = keepalive
        self.on_message = on_message
        self.will: tuple[str, bytes, int, bool] | None = None
        self.lost = asyncio.Event()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pid = 0
        self._subacks: dict[int, asyncio.Future] = {}
        self._tasks: list[asyncio.Task] = []

    @property
    def connected(self) -> bool:
        return self._writer is not None and not self.lost.is_set()

    def _next_pid(self) -> int:
        self._pid = self._pid % 65535 + 1
        return self._pid

    async def connect(self, timeout: float = 10.0) -> None:
        self.lost.clear()
        self._reader, self._writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port), timeout)
        flags = 0x02  # clean session
        payload = _str(self.client_id)
        if self.will is not None:
            topic, message, qos, retain = self.will
            flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
            payload += _str(topic) + _str(message)
        if self.username:
            flags |= 0x80
            payload += _str(self.username)
        body = _str("MQTT") + bytes([4, flags]) + struct.pack("!H", self.keepalive) + payload
        self._writer.write(_packet(0x10, body))
        await self._writer.drain()
        first, data = await asyncio.wait_for(self._read_packet(), timeout)
        if first >> 4 != 2 or len(data) != 2 or data[1] != 0:
            await self.close()
            raise MQTTError(f"CONNACK refused: {data.hex()}")
        self._tasks = [asyncio.ensure_future(self._read_loop()), asyncio.ensure_future(self._ping_loop())]

    async def _read_packet(self) -> tuple[int, bytes]:
        assert self._reader is not None
        head = await self._reader.readexactly(1)
        length, shift = 0, 0
        while True:
            b = (await self._reader.readexactly(1))[0]
            length |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        return head[0], await self._reader.readexactly(length) if length else b""

    async def _read_loop(self) -> None:
        try:
            while True:
                first, data = await self._read_packet()
                kind = first >> 4
                if kind == 3:  # PUBLISH
                    qos = (first >> 1) & 3
                    tlen = struct.unpack("!H", data[:2])[0]
                    topic = data[2:2 + tlen].decode()
                    pos = 2 + tlen
                    if qos:
                        pid = data[pos:pos + 2]
                        pos += 2
                        self._write(_packet(0x40, pid))
                    self.on_message(topic, data[pos:])
                elif kind == 9:  # SUBACK
                    fut = self._subacks.pop(struct.unpack("!H", data[:2])[0], None)
                    if fut is not None and not fut.done():
                        fut.set_result(data[2:])
        except (OSError, asyncio.IncompleteReadError, ValueError):
            pass
        finally:
            self._drop()

    async def _ping_loop(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.keepalive / 2)
                self._write(b"\xc0\x00")
        except OSError:
            self._drop()

    def _write(self, data: bytes) -> None:
        if self._writer is None or self.lost.is_set():
            raise MQTTError("not connected")
        self._writer.write(data)

    async def subscribe(self, topic: str, qos: int = 1, timeout: float = 10.0) -> None:
        pid = self._next_pid()
        fut = asyncio.get_running_loop().create_future()
        self._subacks[pid] = fut
        self._write(_packet(0x82, struct.pack("!H", pid) + _str(topic) + bytes([qos])))
        granted = await asyncio.wait_for(fut, timeout)
        if granted[:1] == b"\x80":
            raise MQTTError(f"subscription to {topic} refused")

    async def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        body = _str(topic)
        if qos:
            body += struct.pack("!H", self._next_pid())
        self._write(_packet(0x30 | (qos << 1) | (1 if retain else 0), body + payload))
        assert self._writer is not None
        await self._writer.drain()

    def _drop(self) -> None:
        """The connection is gone (or cut on purpose): no DISCONNECT, so the broker sends the will."""
        self.lost.set()
        for t in self._tasks:
            if t is not asyncio.current_task():
                t.cancel()
        if self._writer is not None:
            self._writer.transport.abort()
            self._writer = None
        for fut in self._subacks.values():
            if not fut.done():
                fut.set_exception(MQTTError("connection lost"))
        self._subacks.clear()

    def abort(self) -> None:
        self._drop()

    async def close(self) -> None:
        """Clean end: DISCONNECT (the broker discards the will)."""
        if self.connected:
            try:
                self._write(b"\xe0\x00")
                assert self._writer is not None
                await self._writer.drain()
            except OSError:
                pass
        self._drop()
