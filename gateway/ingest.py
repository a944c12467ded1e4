"""Device messages -> SQLite, with group commit; acks only after COMMIT.

One writer task drains the inbound queue: every message waiting (up to `GROUP_MAX`) is handled in
one transaction, each inside its own SAVEPOINT so a message that trips a bug is quarantined
(`internal_error`) without spoiling its neighbours. After COMMIT the writer publishes the device
acks (`ok`, `dup`, `bad`) and then acknowledges the MQTT messages to the broker. If the commit
itself fails (disk full, I/O error), nothing is acked and the same batch is retried after a pause:
ratings wait in Mosquitto and in device flash, never in gateway memory alone.

The ack rules (docs/gateway.md, "Acks and quarantine"): a rating that cannot be decoded is
quarantined and acked `bad` when its `n` can be read; one from an unregistered device is quarantined
as `unknown_device` and NOT acked, so the device keeps it and resends after registration (one from a
retired device likewise, as `retired_device`: refused, kept on its flash); the same
`(device, n)` with another payload is quarantined as `conflict`, acked `bad`, and forwarded so the
hub (which holds the device keys) decides.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from gateway.binding import bind_rating
from gateway.models import Binding
from gateway.mqtt import Inbound
from gateway.store import Store, Tx
from hcp.protocol import (
    MAX_COUNTER,
    ProtocolError,
    Rating,
    decode_cmd_reply,
    decode_health,
    decode_rating,
    decode_status,
    encode_ack,
    parse_topic,
    topic,
)

if TYPE_CHECKING:
    from gateway.registry import Registry

log = logging.getLogger(__name__)

GROUP_MAX = 500  # messages per transaction: one fsync for a burst, bounded commit latency
COMMIT_RETRY_S = 1.0  # pause before retrying a batch whose COMMIT failed (disk full, I/O error)
UNKNOWN_DEVICE = "unknown_device"
RETIRED_DEVICE = "retired_device"
CONFLICT = "conflict"
INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True)
class Ack:
    device: str
    n: int
    status: str  # ok | dup | bad


def wall_iso(ts: float) -> str:
    """Gateway wall time as ISO 8601 with milliseconds and the local UTC offset."""
    return datetime.fromtimestamp(ts, timezone.utc).astimezone().isoformat(timespec="milliseconds")


def rating_item(raw: str, rating: Rating, received_at: float, binding: Binding) -> dict:
    """The hub ingest item for a rating: the device's payload unchanged, plus what the gateway adds."""
    return {"kind": "rating", "rating": json.loads(raw), "received_at": wall_iso(received_at),
            "offset_ms": round(received_at * 1000) - rating.mono,
            "binding": binding.ingest_binding(), "unbound_reason": binding.unbound_reason}


def _utf8(payload: bytes) -> str:
    """The payload as text; the contract says UTF-8 (json.loads alone would also take UTF-16)."""
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError("bad_json", "not UTF-8") from None


def readable_n(payload: bytes) -> int | None:
    """The counter of a rating payload that failed to decode, if it can still be read (for `bad`)."""
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return None
    n = obj.get("n") if isinstance(obj, dict) else None
    return n if type(n) is int and 1 <= n <= MAX_COUNTER else None


class Ingest:
    """The writer: `submit()` from the MQTT link, `run()` as a task."""

    def __init__(self, store: Store, hall: str, tolerance_s: float,
                 publish: Callable[[str, bytes], object], ack_broker: Callable[[Inbound], None],
                 on_outbox: Callable[[], None], registry: Registry | None = None):
        self.store = store
        self.registry = registry  # told of every status, health, reply and new rating, in the same transaction
        self.hall = hall
        self.tolerance_s = tolerance_s
        self._publish = publish
        self._ack_broker = ack_broker
        self._on_outbox = on_outbox
        self._queue: asyncio.Queue[Inbound] = asyncio.Queue()
        self.batches = 0
        self.commit_failures = 0
        self.isolated_retries = 0  # groups run again message by message after a bug (`commit`)

    def submit(self, message: Inbound) -> None:
        self._queue.put_nowait(message)

    @property
    def backlog(self) -> int:
        return self._queue.qsize()

    async def run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < GROUP_MAX and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            await self._commit_until_done(batch)

    async def _commit_until_done(self, batch: list[Inbound]) -> None:
        tries = 0
        while True:
            try:
                acks, new_outbox = await self.commit(batch)
                break
            except sqlite3.Error as exc:
                self.commit_failures += 1
                # once per batch: the store's health logs a storage episode (disk full) and reminds
                log.log(logging.WARNING if tries == 0 else logging.DEBUG,
                        "commit of %d messages failed (%s): nothing acked; retrying every %.1fs",
                        len(batch), exc, COMMIT_RETRY_S)
                tries += 1
                await asyncio.sleep(COMMIT_RETRY_S)
        self.batches += 1
        for ack in acks:
            self._publish(topic(self.hall, ack.device, "ack"), encode_ack(ack.n, ack.status))
        for message in batch:
            self._ack_broker(message)
        if new_outbox:
            self._on_outbox()

    async def commit(self, batch: list[Inbound]) -> tuple[list[Ack], bool]:
        """Handle `batch` in one transaction; the device acks to send after it committed.

        Fast path first: the whole group without savepoints (4 statements fewer per rating: the
        message's and the registry hook's SAVEPOINT and RELEASE). Bad input never raises here (it
        is quarantined in `_handle`), so only a bug does: then that transaction is rolled back and
        the group runs again with a savepoint per message, which quarantines the culprit alone.
        """
        try:
            return await self._commit(batch, isolate=False)
        except sqlite3.OperationalError:
            raise  # the database itself failed: the whole batch is retried
        except Exception as exc:
            self.isolated_retries += 1
            log.warning("a group of %d messages failed (%r): handling each in its own savepoint",
                        len(batch), exc)
        return await self._commit(batch, isolate=True)

    async def _commit(self, batch: list[Inbound], isolate: bool) -> tuple[list[Ack], bool]:
        acks: list[Ack] = []
        new_outbox = False
        async with self.store.transaction() as tx:
            tx.isolate = isolate
            if not isolate:
                for message in batch:
                    ack, outboxed = await self._handle(tx, message)
                    if ack is not None:
                        acks.append(ack)
                    new_outbox = new_outbox or outboxed
                return acks, new_outbox
            for i, message in enumerate(batch):
                await tx.savepoint(f"m{i}")
                try:
                    ack, outboxed = await self._handle(tx, message)
                except sqlite3.OperationalError:
                    raise  # the database itself failed: the whole batch is retried
                except Exception as exc:
                    log.exception("handling %s failed", message.topic)
                    await tx.rollback_to(f"m{i}")
                    await tx.quarantine(message.topic, INTERNAL_ERROR, message.payload,
                                        message.received_at, detail=repr(exc))
                    ack, outboxed = None, False
                await tx.release(f"m{i}")
                if ack is not None:
                    acks.append(ack)
                new_outbox = new_outbox or outboxed
        return acks, new_outbox

    async def _handle(self, tx: Tx, m: Inbound) -> tuple[Ack | None, bool]:
        try:
            _hall, device, suffix = parse_topic(m.topic)
        except ProtocolError as err:
            await tx.quarantine(m.topic, err.reason, m.payload, m.received_at, detail=str(err))
            return None, False
        if suffix == "rating":
            return await self._rating(tx, m, device)
        if await tx.device_retired(device):  # replaced: what it still says is not the hall's
            await tx.quarantine(m.topic, RETIRED_DEVICE, m.payload, m.received_at, device=device,
                                detail="device retired (replaced)")
            return None, False
        try:
            if suffix == "status":
                status = decode_status(m.payload)
                outcome = await tx.apply_presence(device, status, m.received_at)
                await tx.count(f"status.{status.state}" if outcome == "applied" else f"status.{outcome}")
                if self.registry is not None:
                    await self.registry.on_status(tx, device, status, outcome, m.received_at)
            elif suffix == "health":
                health = decode_health(m.payload)
                await tx.store_health(device, health, m.received_at)
                await tx.count("health")
                if self.registry is not None:
                    await self.registry.on_health(tx, device, health, m.received_at)
            elif suffix == "cmd/reply":
                reply = decode_cmd_reply(m.payload)
                await tx.store_cmd_reply(device, reply, m.received_at)
                await tx.count("cmd_reply")
                if self.registry is not None:
                    await self.registry.on_cmd_reply(tx, device, reply, m.received_at)
        except ProtocolError as err:
            await tx.quarantine(m.topic, err.reason, m.payload, m.received_at, device=device,
                                detail=str(err))
        return None, False

    async def _rating(self, tx: Tx, m: Inbound, device: str) -> tuple[Ack | None, bool]:
        try:
            raw = _utf8(m.payload)
            rating = decode_rating(m.payload, hall=self.hall, device=device)
        except ProtocolError as err:
            n = readable_n(m.payload)
            await tx.quarantine(m.topic, err.reason, m.payload, m.received_at, device=device, n=n,
                                detail=str(err))
            return (Ack(device, n, "bad") if n is not None else None), False
        window = await tx.device_window(device)
        if window is None:
            if await tx.device_retired(device):
                await tx.quarantine(m.topic, RETIRED_DEVICE, m.payload, m.received_at,
                                    device=device, n=rating.n, detail="device retired (replaced)")
                return None, False
            await tx.seen(device, m.received_at)
            await tx.quarantine(m.topic, UNKNOWN_DEVICE, m.payload, m.received_at, device=device,
                                n=rating.n, detail="device not registered at this gateway")
            return None, False
        existing = await tx.rating_payload(device, rating.n)
        if existing is not None:
            if decode_rating(existing) == rating:
                await tx.count("ratings.dup")
                return Ack(device, rating.n, "dup"), False
            return await self._conflict(tx, m, rating, raw, window)
        binding = await bind_rating(tx, rating, window, m.received_at, self.tolerance_s)
        item = rating_item(raw, rating, m.received_at, binding)
        await tx.insert_rating(device, rating.n, raw, rating.sess, rating.score, m.received_at,
                               item["offset_ms"], item["binding"], binding.unbound_reason)
        if binding.service is not None:
            await tx.mark_rated(binding.service.id, rating.rating_id)
        await tx.outbox_put("rating", f"rating:{device}:{rating.n}", item, m.received_at)
        await tx.count("ratings.ok")
        await tx.count("ratings.bound" if binding.service else f"ratings.unbound.{binding.unbound_reason}")
        await tx.seen(device, m.received_at)
        if self.registry is not None:
            await self.registry.on_rating(tx, rating, m.received_at)
        return Ack(device, rating.n, "ok"), True

    async def _conflict(self, tx: Tx, m: Inbound, rating: Rating, raw: str,
                        window: str) -> tuple[Ack, bool]:
        """Same (device, n), different payload: keep it, tell the device `bad`, let the hub judge.

        The first payload stays the gateway's rating. The second goes to quarantine and, once per
        distinct payload, to the hub as a rating item: the hub verifies signatures, so if the first
        was a forgery (rejected there) the genuine one is accepted; otherwise the hub answers
        `rejected: conflict` and the item stays here as a dead letter.
        """
        new = await tx.quarantine(m.topic, CONFLICT, m.payload, m.received_at, device=rating.dev,
                                  n=rating.n, detail="same (device, n), different payload")
        if new:
            binding = await bind_rating(tx, rating, window, m.received_at, self.tolerance_s)
            item = rating_item(raw, rating, m.received_at, binding)
            await tx.outbox_put("rating", f"rating:{rating.dev}:{rating.n}", item, m.received_at)
        return Ack(rating.dev, rating.n, "bad"), new
