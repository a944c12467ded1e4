"""Outbox -> hub ingest (docs/protocol.md, "Hub ingest"): at-least-once, in `seq` order.

One task takes the oldest pending rows, posts them as one batch and applies the hub's per-item
answers: `accepted`/`duplicate` -> sent, `rejected` -> dead with the reason. A row changes state only
after the hub answered for it, so a crash or a cancelled post leaves it pending and it is posted again
(the hub answers `duplicate`). Transport errors, 5xx, 401 and unreadable answers are retried with
exponential backoff and full jitter; nothing is ever dropped for lack of a hub.

Posts are strictly one after another (the next is sent only once the hub answered the previous one,
so the hub stores each device's ratings in counter order), but the hub's answer to one batch is
written to SQLite while the hub already works on the next: during a backlog drain the gateway's
bookkeeping overlaps the hub's work instead of adding to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import sqlite3
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import httpx

from gateway.store import Store

log = logging.getLogger(__name__)

HUB_TIMEOUT_S = 30.0  # a 1000-item batch is verified and committed by the hub well within this
MAX_HUB_BATCH = 1000  # the contract's ceiling per post
INGEST_PATH = "/api/v1/ingest"


class HubAnswerError(Exception):
    """The hub answered, but not with a usable per-item result list."""

    def __init__(self, message: str, link_state: str = "down"):
        super().__init__(message)
        self.link_state = link_state


@dataclass
class LinkState:
    """What the status page shows about the hub link."""

    state: str = "unknown"  # unknown | up | down | unauthorized
    last_ok_at: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    failures: int = 0  # consecutive
    next_retry_at: float | None = None
    batch_limit: int = MAX_HUB_BATCH

    def as_dict(self) -> dict:
        return asdict(self)


class Backoff:
    """Exponential backoff with full jitter: attempt k waits uniform(0, min(max, min * 2**k)),
    never below `min_s / 2` so a dead hub is not hammered."""

    def __init__(self, min_s: float, max_s: float, rng: random.Random):
        self.min_s, self.max_s, self.rng = min_s, max_s, rng

    def delay(self, failures: int) -> float:
        cap = min(self.max_s, self.min_s * 2 ** min(failures - 1, 30))
        return max(self.min_s / 2, self.rng.uniform(0, cap))


class Forwarder:
    def __init__(self, store: Store, hall: str, hub_url: str, hub_token: str, batch: int,
                 interval_s: float, backoff: Backoff, client: httpx.AsyncClient | None = None,
                 clock: Callable[[], float] = time.time):
        self.store = store
        self.hall = hall
        self.url = hub_url.rstrip("/") + INGEST_PATH
        self.hub_token = hub_token
        self.batch = min(batch, MAX_HUB_BATCH)
        self.interval_s = interval_s
        self.backoff = backoff
        self.link = LinkState(batch_limit=self.batch)
        self._client = client
        self._clock = clock
        self._wake = asyncio.Event()
        self.apply_failures = 0  # consecutive batches the hub took that could not be marked sent

    def wake(self) -> None:
        """New outbox rows were committed."""
        self._wake.set()

    async def run(self) -> None:
        owns_client = self._client is None
        client = self._client or httpx.AsyncClient(timeout=HUB_TIMEOUT_S)
        try:
            while True:
                if not await self.forward_once(client):
                    await self._idle()
        finally:
            if owns_client:
                await client.aclose()

    async def _idle(self) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=self.interval_s)

    async def forward_once(self, client: httpx.AsyncClient) -> bool:
        """Post the pending rows batch after batch until none is left, a post fails (then sleep
        the backoff) or an answer cannot be recorded. False when there was nothing to send."""
        async with self.store.read() as tx:
            rows = await tx.outbox_pending(self.link.batch_limit)
        if not rows:
            return False
        recording: asyncio.Task[bool] | None = None  # the previous answer, being written
        try:
            while rows:
                try:
                    results = await self._post(client, [r["item"] for r in rows],
                                               [r["key"] for r in rows])
                except (httpx.HTTPError, HubAnswerError) as exc:
                    if recording is not None:
                        await recording
                    await self._failed([r["seq"] for r in rows], exc)
                    return True
                if recording is not None and not await recording:
                    return True  # the file takes no write (disk full): these go again later
                async with self.store.read() as tx:  # the next batch: after this one, which is
                    nxt = await tx.outbox_pending(self.link.batch_limit, after=rows[-1]["seq"])
                recording = asyncio.create_task(self._record(rows, results))
                rows = nxt
            if recording is not None:
                await recording
                recording = None
        finally:
            if recording is not None and not recording.done():
                recording.cancel()  # cancelled (shutdown): the rows stay pending, posted again
        return True

    async def _record(self, rows: list, results: list[dict]) -> bool:
        """Write the hub's answers. False if the file took no write (disk full): the rows stay
        pending and are posted again after a backoff pause; the hub answers `duplicate`."""
        try:
            await self._apply(rows, results)
        except sqlite3.Error as exc:
            self.apply_failures += 1
            delay = self.backoff.delay(min(self.apply_failures, 30))
            log.warning("the hub took %d items but marking them sent failed (%s); posting them "
                        "again in %.1fs", len(rows), exc, delay)
            await asyncio.sleep(delay)
            return False
        self.apply_failures = 0
        return True

    async def _post(self, client: httpx.AsyncClient, items: list[str],
                    keys: list[str]) -> list[dict]:
        """Post the items (JSON text as stored in the outbox). The envelope is assembled from the
        stored text rather than parsed and serialized again: half the forwarder's work per item."""
        body = b"".join((b'{"v":1,"hall":', json.dumps(self.hall).encode(), b',"items":[',
                         ",".join(items).encode("utf-8"), b"]}"))
        resp = await client.post(self.url, content=body,
                                 headers={"Authorization": f"Bearer {self.hub_token}",
                                          "Content-Type": "application/json"})
        if resp.status_code in (401, 403):
            raise HubAnswerError(f"hub refused the gateway token ({resp.status_code})",
                                 link_state="unauthorized")
        if resp.status_code == 413 and self.link.batch_limit > 1:
            self.link.batch_limit = max(1, self.link.batch_limit // 2)
            raise HubAnswerError(f"batch too large; now {self.link.batch_limit} items")
        if resp.status_code != 200:
            raise HubAnswerError(f"hub answered {resp.status_code}: {resp.text[:200]}")
        try:
            results = resp.json()["results"]
        except (ValueError, KeyError, TypeError):
            raise HubAnswerError("hub answer has no results list") from None
        if not isinstance(results, list) or len(results) != len(items):
            raise HubAnswerError(f"hub answered {len(results) if isinstance(results, list) else '?'}"
                                 f" results for {len(items)} items")
        # Results answer items by position. A rejected item may carry `key: null` (the hub could
        # not read a key from it); any other key that differs from ours means a confused answer.
        for key, result in zip(keys, results, strict=True):
            status = result.get("status") if isinstance(result, dict) else None
            if status not in ("accepted", "duplicate", "rejected"):
                raise HubAnswerError(f"hub result {str(result)[:100]} does not answer {key}")
            if result.get("key") != key and not (status == "rejected" and result.get("key") is None):
                raise HubAnswerError(f"hub result {str(result)[:100]} does not answer {key}")
        return results

    async def _apply(self, rows: list, results: list[dict]) -> None:
        now = self._clock()
        delivered = [r["seq"] for r, res in zip(rows, results, strict=True) if res["status"] != "rejected"]
        async with self.store.transaction() as tx:
            await tx.outbox_sent(delivered, now)
            for row, res in zip(rows, results, strict=True):
                await tx.count(f"forward.{res['status']}")
                if res["status"] == "rejected":
                    reason = str(res.get("reason") or "rejected")
                    log.warning("hub rejected %s: %s", row["key"], reason)
                    await tx.outbox_dead(row["seq"], reason, now)
        self.link.state, self.link.last_ok_at = "up", now
        self.link.failures, self.link.next_retry_at = 0, None

    async def _failed(self, seqs: list[int], exc: Exception) -> None:
        now = self._clock()
        error = f"{type(exc).__name__}: {exc}"[:300]
        try:
            async with self.store.transaction() as tx:
                await tx.outbox_failed(seqs, error)
                await tx.count("forward.errors")
        except sqlite3.Error as db_exc:  # disk full: the attempt goes unrecorded, the retry does not
            log.warning("recording a failed post failed too: %s", db_exc)
        # The link state changes after the commit, so status never runs ahead of the outbox rows.
        link = self.link
        link.failures += 1
        link.state = exc.link_state if isinstance(exc, HubAnswerError) else "down"
        link.last_error, link.last_error_at = error, now
        delay = self.backoff.delay(link.failures)
        link.next_retry_at = now + delay
        log.warning("forwarding %d items failed (%s); retry in %.1fs", len(seqs), error, delay)
        await asyncio.sleep(delay)
