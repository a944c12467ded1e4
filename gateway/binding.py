"""Rating -> service binding (docs/protocol.md, "Session rules"; docs/gateway.md, "Binding").

The rules are pure functions over service rows, so tests (and later hypothesis state machines) can
drive them without a database; `bind_rating` does the two look-ups and applies them.
"""

from __future__ import annotations

from collections.abc import Iterable

from gateway.models import SERVICE_ENDED, Binding, ServiceRow
from gateway.store import Tx
from hcp.protocol import Rating

UNKNOWN_SESSION = "unknown_session"
SESSION_ALREADY_RATED = "session_already_rated"
NO_SERVICE_IN_PROGRESS = "no_service_in_progress"


def bind_prompted(service: ServiceRow | None, device: str) -> Binding:
    """A rating from `device` that answers session `service.id` (None: an id the gateway does not
    know). A session counts only on the device it was opened on: a device naming another device's
    session (a bug, a replayed payload, a forgery) would otherwise take that citizen's rating slot."""
    if service is None or service.session_device != device:
        return Binding(None, UNKNOWN_SESSION)
    if service.rated_by is not None:
        return Binding(None, SESSION_ALREADY_RATED)
    return Binding(service, None)


def _served_since(service: ServiceRow) -> float:
    """When the gateway learnt the service began: its latest live `started`/`accepted`, or for a
    service the queue system reported only as finished, when the gateway first heard of it."""
    return service.serving_rx if service.serving_rx is not None else service.opened_rx


def service_in_progress(candidates: Iterable[ServiceRow], at: float,
                        tolerance_s: float) -> ServiceRow | None:
    """The service being served at a window at wall time `at`: of the open services past `called`
    and the services that finished no more than `tolerance_s` before `at` (or after it: then they
    were still open at `at`), the one put in service last. So a ticket called back and started again
    wins over one started in between, and an open service whose `finished` never came loses to the
    next service served and finished at that window. A no-show was never served, and a service
    ended by a replayed event has no live end time: neither is a candidate."""
    eligible = [s for s in candidates if s.in_progress or (
        s.state == SERVICE_ENDED and s.outcome == "finished" and s.ended_rx is not None
        and s.ended_rx >= at - tolerance_s)]
    return max(eligible, key=_served_since, default=None)


def bind_local(candidates: Iterable[ServiceRow], at: float, tolerance_s: float) -> Binding:
    """A rating from a local session (`sess: null`) received at wall time `at`."""
    service = service_in_progress(candidates, at, tolerance_s)
    if service is None:
        return Binding(None, NO_SERVICE_IN_PROGRESS)
    if service.rated_by is not None:
        return Binding(None, SESSION_ALREADY_RATED)
    return Binding(service, None)


async def bind_rating(tx: Tx, rating: Rating, window: str, received_at: float,
                      tolerance_s: float) -> Binding:
    """Bind `rating` from a device serving `window`, received at gateway wall time `received_at`."""
    if rating.sess is not None:
        return bind_prompted(await tx.service(rating.sess), rating.dev)
    candidates = await tx.services_near(window, received_at - tolerance_s)
    return bind_local(candidates, received_at, tolerance_s)
