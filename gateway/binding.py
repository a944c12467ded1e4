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


def bind_prompted(service: ServiceRow | None) -> Binding:
    """A rating that answers session `service.id` (or an id the gateway does not know: None)."""
    if service is None:
        return Binding(None, UNKNOWN_SESSION)
    if service.rated_by is not None:
        return Binding(None, SESSION_ALREADY_RATED)
    return Binding(service, None)


def service_in_progress(candidates: Iterable[ServiceRow], at: float,
                        tolerance_s: float) -> ServiceRow | None:
    """The service being served at a window at wall time `at`: the latest open service past
    `called`, else the service at that window that finished last, if it finished no more than
    `tolerance_s` before `at` (or after it: then it was still open at `at`). A no-show was never
    served, so it is never a candidate."""
    open_now = [s for s in candidates if s.in_progress]
    if open_now:
        return max(open_now, key=lambda s: s.opened_rx)
    finished = [s for s in candidates
                if s.state == SERVICE_ENDED and s.outcome == "finished" and s.ended_rx is not None
                and s.ended_rx >= at - tolerance_s]
    if finished:
        return max(finished, key=lambda s: s.ended_rx or 0.0)
    return None


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
        return bind_prompted(await tx.service(rating.sess))
    candidates = await tx.services_near(window, received_at - tolerance_s)
    return bind_local(candidates, received_at, tolerance_s)
