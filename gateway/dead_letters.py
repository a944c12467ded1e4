"""Dead letters: outbox rows the hub answered `rejected`, listed and re-sent by an operator.

The hub rejects an item for a reason the gateway cannot fix by retrying (a device or key the hub
does not know yet, a conflict, a kind an older hub does not take). The row stays `dead` with the
hub's reason until an operator has fixed the cause (registered the device at the hub, say) and
re-queues it: `dead` -> `pending`, same seq, so it is posted before every newer pending row, and
the hub's answer decides again (accepted/duplicate -> sent, rejected -> dead with the new reason).

This module checks the operator's input (the admin API's query and body, in the contract's reason
vocabulary) and runs the list and the re-queue on the store; `webhook.py` serves them and
`dead_letters_cli.py` is `hcp gateway dead-letters`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.store import Store

log = logging.getLogger(__name__)

KINDS = ("service", "rating", "health", "alert")  # the outbox's kinds (schema v2)
LIST_DEFAULT = 100  # rows per page when the caller does not say
LIST_MAX = 1000  # a page of the list; `before` pages on
RESEND_SEQS_MAX = 1000  # seqs in one request, as many as one ingest batch
REQUEUE_CHUNK = 5000  # rows per transaction of a re-queue by filter: ingest waits one chunk at most
REASON_MAX = 200  # the hub's reasons are short words (`unknown_device`); longer is a mistake
BY_MAX = 64
_BY_RE = re.compile(r"^[^\x00-\x1f\x7f]{1,64}$")  # printable: it goes into a log line and the file
DEFAULT_BY = "operator"


class DeadLetterInputError(ValueError):
    """Bad operator input; `reason` in the contract's vocabulary (`bad_field:x`, `missing_field:x`)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class DeadFilter:
    """Which dead letters: one hub reason and/or one kind; None matches every one."""

    reason: str | None = None
    kind: str | None = None

    def text(self) -> str:
        parts = [f"reason={self.reason}"] * (self.reason is not None)
        parts += [f"kind={self.kind}"] * (self.kind is not None)
        return ", ".join(parts) or "every dead letter"


@dataclass(frozen=True)
class ListQuery:
    filter: DeadFilter
    limit: int = LIST_DEFAULT
    before: int | None = None


@dataclass(frozen=True)
class ResendRequest:
    """Either given `seqs`, or every dead letter matching `filter`."""

    seqs: tuple[int, ...] | None
    filter: DeadFilter | None
    by: str


def _reason(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > REASON_MAX or not value.isprintable():
        raise DeadLetterInputError("bad_field:reason")
    return value


def _kind(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if value not in KINDS:
        raise DeadLetterInputError("bad_field:kind")
    return value


def _int(value: str, name: str, low: int, high: int) -> int:
    if not re.fullmatch(r"[0-9]{1,12}", value) or not low <= int(value) <= high:
        raise DeadLetterInputError(f"bad_field:{name}")
    return int(value)


def parse_list_query(params: Mapping[str, str]) -> ListQuery:
    """`GET /api/v1/outbox/dead?reason=&kind=&limit=&before=`; an unknown parameter is refused
    (a typo such as `reasons=` would otherwise list everything)."""
    for name in params:
        if name not in ("reason", "kind", "limit", "before"):
            raise DeadLetterInputError(f"bad_field:{name[:40]}")
    limit = params.get("limit")
    before = params.get("before")
    return ListQuery(DeadFilter(_reason(params.get("reason")), _kind(params.get("kind"))),
                     LIST_DEFAULT if limit in (None, "") else _int(limit, "limit", 1, LIST_MAX),
                     None if before in (None, "") else _int(before, "before", 1, 2 ** 62))


def parse_resend(body: Any) -> ResendRequest:
    """`POST /api/v1/outbox/dead/resend`: `{"seqs": [...]}`, or `{"reason": R, "kind": K}` (either
    or both), or `{"all": true}` for every dead letter; `by` names the operator (optional).
    An empty filter is refused: re-sending everything must be asked for by name."""
    if not isinstance(body, dict):
        raise DeadLetterInputError("bad_field:body")
    for name in body:
        if name not in ("seqs", "reason", "kind", "all", "by"):
            raise DeadLetterInputError(f"bad_field:{str(name)[:40]}")
    by = body.get("by", DEFAULT_BY)
    if not isinstance(by, str) or not _BY_RE.match(by):
        raise DeadLetterInputError("bad_field:by")
    everything = body.get("all", False)
    if not isinstance(everything, bool):
        raise DeadLetterInputError("bad_field:all")
    filt = DeadFilter(_reason(body.get("reason")), _kind(body.get("kind")))
    if "seqs" in body:
        seqs = body["seqs"]
        if everything or filt != DeadFilter():  # one way of choosing at a time
            raise DeadLetterInputError("bad_field:seqs")
        if (not isinstance(seqs, list) or not 1 <= len(seqs) <= RESEND_SEQS_MAX
                or any(type(s) is not int or not 1 <= s < 2 ** 62 for s in seqs)):
            raise DeadLetterInputError("bad_field:seqs")
        return ResendRequest(tuple(sorted(set(seqs))), None, by)
    if filt == DeadFilter() and not everything:
        raise DeadLetterInputError("missing_field:seqs")
    if everything and filt != DeadFilter():
        raise DeadLetterInputError("bad_field:all")
    return ResendRequest(None, filt, by)


def row_dict(r: Any) -> dict[str, Any]:
    return {k: r[k] for k in ("seq", "kind", "key", "reason", "dead_at", "created_at", "attempts",
                              "requeues", "requeued_at", "requeued_by")}


async def list_dead(store: Store, q: ListQuery) -> dict[str, Any]:
    """One page of dead letters, newest first, with the counts per reason; `next_before` pages on
    (None: this was the last page)."""
    async with store.read() as tx:  # one row more than asked: is there another page?
        rows = await tx.outbox_dead_list(q.limit + 1, q.before, q.filter.reason, q.filter.kind)
        by_reason = await tx.outbox_dead_by_reason()
    items = [row_dict(r) for r in rows[:q.limit]]
    return {"v": 1, "items": items, "by_reason": by_reason, "total": sum(by_reason.values()),
            "next_before": items[-1]["seq"] if len(rows) > q.limit else None}


async def resend(store: Store, req: ResendRequest, now: float, client: str = "",
                 wake: Callable[[], None] | None = None) -> dict[str, Any]:
    """Re-queue dead letters (`dead` -> `pending`, seq kept); counted (`outbox.requeued`,
    `outbox.requeue_requests`), logged with who asked, and the forwarder woken."""
    who = f"{req.by} ({client})" if client else req.by
    if req.seqs is not None:
        async with store.transaction() as tx:
            done = await tx.outbox_requeue(list(req.seqs), now, req.by)
            await tx.count("outbox.requeue_requests")
            await tx.count("outbox.requeued", len(done))
        answer: dict[str, Any] = {"v": 1, "requeued": len(done), "seqs": done,
                                  "not_dead": sorted(set(req.seqs) - set(done))}
        what = f"seqs {_ranges(done)}" if done else "nothing"
    else:
        assert req.filter is not None
        total, chunks = 0, 0
        try:
            while True:
                async with store.transaction() as tx:
                    n = await tx.outbox_requeue_matching(req.filter.reason, req.filter.kind, now,
                                                         req.by, REQUEUE_CHUNK)
                    if chunks == 0:
                        await tx.count("outbox.requeue_requests")
                    await tx.count("outbox.requeued", n)
                total, chunks = total + n, chunks + 1
                if n and wake is not None:
                    wake()  # the forwarder may post the first chunk while the next is re-queued
                if n < REQUEUE_CHUNK:
                    break
        except BaseException:
            if total:
                log.warning("re-queue of %s by %s stopped after %d dead letters",
                            req.filter.text(), who, total)
            raise
        answer = {"v": 1, "requeued": total}
        what = f"{total} ({req.filter.text()})"
    log.info("dead letters re-queued by %s: %s", who, what,
                extra={"requeued": answer["requeued"], "by": req.by})
    if answer["requeued"] and wake is not None:
        wake()
    return answer


def _ranges(seqs: list[int]) -> str:
    """`3-5, 9`: the seqs re-queued, short enough for a log line."""
    out: list[str] = []
    for s in seqs:
        if out and s == int(out[-1].rsplit("-", 1)[-1]) + 1:
            out[-1] = f"{out[-1].split('-')[0]}-{s}"
        else:
            out.append(str(s))
    text = ", ".join(out)
    return text if len(text) <= 300 else text[:299] + "…"
