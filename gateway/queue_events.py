"""Queue-system events -> services and rating sessions (docs/protocol.md, "Queue-system webhook").

A service is one ticket at one window: the first event for that ticket at that window creates it,
`finished` or `no_show` ends it (and puts its ingest item in the outbox in the same transaction), a
later event for the same ticket and window starts a new one. On the configured event (`prompt_on`)
the gateway opens a session on the window's device: the prompt is published after COMMIT, so a
device is never prompted for a service the gateway could lose. An event marked `replay` (a queue
system's export replayed, gateway/queue_csv.py) is recorded the same way but opens no session and
leaves no receive times for binding: it tells what happened then, not who is at the window now.
A replayed event that repeats one already recorded (same kind, ticket and window, time within a
minute) is answered `duplicate`, whatever its id: exports overlap what the webhook delivered live.
"""

from __future__ import annotations

import json
import logging
import secrets
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from gateway.models import SERVICE_ENDED, ServiceRow
from gateway.store import Store, Tx
from hcp.protocol import QueueEvent, encode_prompt_cancel, make_phone_token, topic
from hcp.qr import prompt_payload

log = logging.getLogger(__name__)

PHONE_TOKEN_TTL_S = 3 * 24 * 3600  # a citizen may rate on the phone for three days after service
NO_DEVICE = "no_device_for_window"
ENDING = {"finished": "finished", "no_show": "no_show"}
SERVING = ("started", "accepted")  # the citizen is at the window from these on
REPLAY_MATCH_S = 60.0  # a replayed event this close in time to a recorded one like it repeats it
EVENT_TIME_FIELD = {"called": "called_at", "started": "started_at", "accepted": "accepted_at",
                    "finished": "finished_at", "no_show": "finished_at"}
WHO_FIELDS = ("staff_id", "staff_name", "matter_code", "matter_name", "case_no", "unit")


@dataclass(frozen=True)
class EventAnswer:
    status: str  # accepted | duplicate
    service: str
    session: str | None
    reason: str | None = None

    def body(self) -> dict:
        out: dict = {"v": 1, "status": self.status, "service": self.service, "session": self.session}
        if self.reason is not None:
            out["reason"] = self.reason
        return out


@dataclass(frozen=True)
class _Prompt:
    device: str
    payload: bytes


class QueueEvents:
    def __init__(self, store: Store, hall: str, prompt_on: str, session_ttl_s: int,
                 phone_base: str, gateway_key: bytes, publish: Callable[[str, bytes], object],
                 on_outbox: Callable[[], None], clock: Callable[[], float] = time.time):
        self.store = store
        self.hall = hall
        self.prompt_on = prompt_on
        self.session_ttl_s = session_ttl_s
        self.phone_base = phone_base.rstrip("/")
        self.gateway_key = gateway_key
        self._publish = publish
        self._on_outbox = on_outbox
        self._clock = clock

    async def handle(self, event: QueueEvent, body: dict) -> EventAnswer:
        now = self._clock()
        prompts: list[_Prompt] = []
        async with self.store.transaction() as tx:
            seen = await tx.queue_event(event.event_id)
            if seen is None and event.replay:
                seen = await _recorded(tx, event)
                if seen is not None:
                    await tx.count("events.replay_matched")
            if seen is not None:
                await tx.count("events.duplicate")
                return EventAnswer("duplicate", seen["service"], seen["session"], seen["reason"])
            svc = await tx.open_service(event.ticket, event.window)
            if svc is None:
                svc = ServiceRow(id=secrets.token_hex(8), ticket=event.ticket, window=event.window,
                                 opened_rx=now)
            _apply(svc, event)
            live = not event.replay  # a replayed event is a record of the past, not news of now
            if live and event.type in SERVING:
                svc.serving_rx = now
            reason = None
            if live and event.type == self.prompt_on and svc.session_opened_at is None:
                reason = await self._open_session(tx, svc, now, prompts)
            ended = event.type in ENDING
            if ended:
                svc.state, svc.outcome = SERVICE_ENDED, ENDING[event.type]
                svc.ended_rx = now if live else None
                if event.type == "no_show" and svc.session_device and svc.rated_by is None:
                    prompts.append(_Prompt(svc.session_device, encode_prompt_cancel(svc.id)))
            await tx.save_service(svc)
            if ended:
                await tx.outbox_put("service", f"service:{self.hall}:{svc.id}", svc.ingest_item(), now)
            session = svc.id if svc.session_opened_at is not None else None
            await tx.insert_queue_event(event.event_id, now, event.type, event.ticket, event.window,
                                        json.dumps(body, ensure_ascii=False, separators=(",", ":")),
                                        svc.id, session, reason)
            await tx.count(f"events.{event.type}")
            if not live:
                await tx.count("events.replayed")
        for prompt in prompts:
            self._publish(topic(self.hall, prompt.device, "prompt"), prompt.payload)
        if ended:
            self._on_outbox()
        return EventAnswer("accepted", svc.id, session, reason)

    async def _open_session(self, tx: Tx, svc: ServiceRow, now: float,
                            prompts: list[_Prompt]) -> str | None:
        """Mark the session open and queue its prompt; the reason when no device can show it."""
        device = await tx.device_at_window(svc.window)
        if device is None:
            await tx.count("sessions.no_device")
            return NO_DEVICE
        token = make_phone_token(self.gateway_key, self.hall, svc.id, svc.window,
                                 int(now) + PHONE_TOKEN_TTL_S)
        payload = prompt_payload(svc.id, self.session_ttl_s, svc.ticket, f"{self.phone_base}/r/{token}")
        svc.session_opened_at, svc.session_device = now, device
        prompts.append(_Prompt(device, payload))
        await tx.count("sessions.opened")
        return None


async def _recorded(tx: Tx, event: QueueEvent) -> sqlite3.Row | None:
    """The recorded event a replayed one repeats: same kind, ticket and window, its time within
    REPLAY_MATCH_S (the nearest; the first recorded of equals). An export's rows carry ids of their
    own (or none), so a replay overlapping what the webhook already delivered live is recognised by
    content; otherwise a `finished` delivered both ways would end a second service."""
    best, best_gap = None, REPLAY_MATCH_S
    for row in await tx.queue_events_like(event.window, event.ticket, event.type):
        try:
            at = datetime.fromisoformat(json.loads(row["body"])["at"])
        except (ValueError, KeyError, TypeError):  # a body is stored only after it decoded
            continue
        gap = abs((at - event.at).total_seconds())
        if gap <= best_gap and (best is None or gap < best_gap):
            best, best_gap = row, gap
    return best


def _apply(svc: ServiceRow, event: QueueEvent) -> None:
    """Copy the event's time and any who/what fields it carries onto the service."""
    setattr(svc, EVENT_TIME_FIELD[event.type], event.at.isoformat())
    for name in WHO_FIELDS:
        value = getattr(event, name)
        if value is not None:
            setattr(svc, name, value)
