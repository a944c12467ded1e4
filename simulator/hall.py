"""One hall on this machine, for `hcp demo` and `hcp sim`: a private Mosquitto, the hub, the hall's
gateway (all real processes), its devices (real firmware under MicroPython, or lightweight CPython
ones), and the reconciliation made by asking the hub, never the simulator's own counters.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from simulator.broker import Broker
from simulator.device_process import DeviceProcess, Event
from simulator.lite_device import LiteDevice, LiteFleet
from simulator.services import GatewayProcess, HubProcess

HUB_PAGE = 1000  # GET /api/v1/ratings returns at most this many


class Device(Protocol):
    """What DeviceProcess and LiteDevice both offer the simulator."""

    events: list[Event]
    display: dict  # "qr": the phone page URL the prompt shows, None without an open session

    def start(self) -> Any: ...
    def stop(self) -> None: ...
    def kill(self) -> None: ...
    def tap(self, button: str | int, hold_ms: int = 100) -> None: ...
    def network(self, up: bool) -> None: ...
    def wait_for(self, predicate: Any, timeout: float = 10.0, what: str = "") -> None: ...


@dataclass
class Seat:
    """A window's device and what the hall knows about it."""

    device_id: str
    window: str
    key: bytes
    kind: str  # "real" or "lite"
    device: Any = None


class Hall:
    """Start with `start(...)`, add devices with `add_device`, stop everything with `stop_all`."""

    def __init__(self, workdir: Path, hall: str, device_nice: int = 0):
        """`device_nice`: the real firmware processes' niceness (DeviceProcess `nice`)."""
        self.workdir = Path(workdir)
        self.hall = hall
        self.device_nice = device_nice
        self.broker: Broker | None = None
        self.hub: HubProcess | None = None
        self.gateway: GatewayProcess | None = None
        self.seats: dict[str, Seat] = {}  # window -> seat
        self.fleet: LiteFleet | None = None
        self.stopped = False

    def start(self, seats: list[Seat], gateway_settings: dict | None = None,
              region: dict | None = None, hall_name: str | None = None) -> None:
        """Broker, hub (with the gateway, the devices and, when given, the region and the hall
        registered), gateway. `region`: the body of PUT /api/v1/regions/{id} plus its "id"."""
        self.broker = Broker(self.workdir / "mosquitto",
                             extra_config="max_inflight_messages 1000").start()
        hub = self.hub = HubProcess(self.workdir / "hub")
        hub.start()
        if region is not None:
            body = {k: v for k, v in region.items() if k != "id" and v is not None}
            hub._admin("PUT", f"/api/v1/regions/{region['id']}", json=body)
            hall_body = {"region": region["id"], **({"name": hall_name} if hall_name else {})}
            hub._admin("PUT", f"/api/v1/halls/{self.hall}", json=hall_body)
        gateway_key = secrets.token_bytes(32)
        token = hub.register_gateway(self.hall, gateway_key)
        for seat in seats:
            hub.register_device(seat.device_id, self.hall, seat.window, seat.key)
            self.seats[seat.window] = seat
        settings = {"hall": self.hall, "broker_port": self.broker.port, "hub_url": hub.url,
                    "hub_token": token, "gateway_key": gateway_key.hex(),
                    "devices": [{"device": s.device_id, "window": s.window} for s in seats],
                    **(gateway_settings or {})}
        self.gateway = GatewayProcess(self.workdir / "gateway", settings)
        self.gateway.start()

    def add_device(self, seat: Seat, config: dict) -> Any:
        """Make and start the seat's device; `config` as the firmware's (dev, hall, window and
        broker are filled in)."""
        assert self.broker is not None
        config = {"dev": seat.device_id, "hall": self.hall, "window": seat.window,
                  "broker_port": self.broker.port, **config}
        flash = self.workdir / "flash" / seat.device_id
        if seat.kind == "real":
            seat.device = DeviceProcess(flash, key=seat.key, config=config, nice=self.device_nice)
        else:
            if self.fleet is None:
                self.fleet = LiteFleet()
            seat.device = LiteDevice(self.fleet, flash, config, seat.key)
        seat.device.start()
        return seat.device

    def stop_all(self) -> None:
        """Stop every part; a second call does nothing."""
        if self.stopped:
            return
        self.stopped = True
        self._end_all(at_once=False)

    def kill_all(self) -> None:
        """Stop at once: SIGKILL every process of the hall (a second Ctrl-C); no clean shutdown.
        Works during a `stop_all` too."""
        self._end_all(at_once=True)

    def _end_all(self, at_once: bool) -> None:
        """The devices, then the gateway and the hub, then the broker: stopped cleanly, or
        (`at_once`) SIGKILLed."""
        for seat in self.seats.values():
            if seat.device is not None:
                try:
                    seat.device.kill() if at_once else seat.device.stop()
                except Exception:  # noqa: BLE001  # teardown goes on
                    pass
        if self.fleet is not None:
            self.fleet.close()
        for service in (self.gateway, self.hub):
            if service is not None:
                if at_once:
                    service.kill()
                    service.http.close()
                else:
                    service.close()
        if self.broker is not None:
            self.broker.kill() if at_once else self.broker.stop()


# ---------------------------------------------------------------------------- the hub's view


@dataclass
class Pressed:
    """A rating a device confirmed it stored (its `rating` event): what must reach the hub."""

    device: str
    n: int
    score: int
    session: str | None
    at: float | None = None  # wall time (time.time()) just before the tap: when the citizen pressed
    stored_s: float | None = None  # tap -> the device's `rating` event reached the simulator
    late: bool = False  # the device confirmed it only after the simulator had stopped waiting

    @property
    def id(self) -> str:
        return f"{self.device}:{self.n}"


@dataclass
class PhoneRated:
    """A supplementary rating the hub's phone page stored (it answered 303): what the hub must hold."""

    hall: str
    service: str  # the token's service (the gateway's id, the session the device prompted)
    window: str
    ticket: str
    score: int
    at: float | None = None  # wall time (time.time()) the form was sent

    @property
    def id(self) -> str:
        return f"phone:{self.hall}:{self.service}:supplementary"  # the hub's id (docs/phone.md)


@dataclass
class Reconciliation:
    services_posted: int
    services_at_hub: int
    pressed: int
    at_hub: int
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    score_differs: list[str] = field(default_factory=list)
    unbound: int = 0
    unbound_reasons: dict[str, int] = field(default_factory=dict)
    defaults: int | None = None
    defaults_rated_late: int = 0  # defaults of services whose rating reached the hub after the job ran
    rated_services: int | None = None
    phone_rated: int | None = None  # supplementary ratings the page stored for the simulator (None: not asked)
    phone_at_hub: int | None = None  # supplementary phone ratings the hub holds for the hall

    @property
    def services_lost(self) -> int:
        return max(0, self.services_posted - self.services_at_hub)

    @property
    def ok(self) -> bool:
        return not self.lost and not self.duplicated and not self.score_differs and not self.services_lost


def hub_ratings(hub: HubProcess, devices: list[str]) -> dict[str, dict]:
    """Every rating the hub holds from these devices, by id."""
    out: dict[str, dict] = {}
    for dev in devices:
        page = hub.ratings(device=dev, limit=HUB_PAGE)
        out.update((r["id"], r) for r in page)
        if len(page) == HUB_PAGE:  # more than a page: ask for the rest one by one
            n = min(r["n"] for r in page) - 1
            while n >= 1:
                r = hub.rating(dev, n)
                if r is not None:
                    out[r["id"]] = r
                n -= 1
    return out


def hub_phone_ratings(hub: HubProcess, hall: str, services: list[str]) -> dict[str, dict]:
    """The supplementary phone ratings the hub holds for `hall`, by id (GET /api/v1/phone/ratings,
    newest first, one page); beyond a page, each of `services` not on it is asked for by itself."""
    def supplementary(rows: list[dict]) -> dict[str, dict]:
        return {r["id"]: r for r in rows if r["kind"] == "supplementary"}

    page = hub.phone_ratings(hall=hall, limit=HUB_PAGE)
    out = supplementary(page)
    if len(page) == HUB_PAGE:
        for svc in services:
            if f"phone:{hall}:{svc}:supplementary" not in out:
                out.update(supplementary(hub.phone_ratings(hall=hall, service=svc)))
    return out


def reconcile(hub: HubProcess, hall: str, devices: list[str], pressed: list[Pressed],
              services_posted: int, days: tuple[str, str], run_defaults: bool = True,
              phone_rated: list[PhoneRated] | None = None) -> Reconciliation:
    """Compare what the devices stored and the queue system finished with what the hub holds.

    Duplicated: a rating at the hub that no device press made (a press stored twice under two
    counters), and a session answered by more than one rating. `phone_rated`: the supplementary
    ratings the phone page stored; one the hub does not hold is lost, one with another score
    differs (by their hub ids, `phone:{hall}:{service}:supplementary`)."""
    at_hub = hub_ratings(hub, devices)
    by_id = {p.id: p for p in pressed}
    lost = sorted(i for i in by_id if i not in at_hub)
    extra = sorted(i for i in at_hub if i not in by_id)
    sessions: dict[str, list[str]] = {}
    for r in at_hub.values():
        if r["session"]:
            sessions.setdefault(r["session"], []).append(r["id"])
    twice = sorted(i for ids in sessions.values() if len(ids) > 1 for i in sorted(ids)[1:])
    differs = sorted(i for i, p in by_id.items() if i in at_hub and at_hub[i]["score"] != p.score)
    reasons: dict[str, int] = {}
    for r in at_hub.values():
        if not r["bound"]:
            reasons[r["unbound_reason"] or "?"] = reasons.get(r["unbound_reason"] or "?", 0) + 1
    stats = hub._admin("GET", "/api/v1/stats", params={"from": days[0], "to": days[1], "hall": hall}).json()
    result = Reconciliation(
        services_posted=services_posted, services_at_hub=stats["total"]["services"],
        pressed=len(by_id), at_hub=len(at_hub), lost=lost, duplicated=sorted(set(extra) | set(twice)),
        score_differs=differs, unbound=sum(reasons.values()), unbound_reasons=reasons,
        rated_services=stats["total"]["rated_services"])
    if phone_rated is not None:
        by_phone = {p.id: p for p in phone_rated}
        phones = hub_phone_ratings(hub, hall, [p.service for p in phone_rated])
        result.phone_rated, result.phone_at_hub = len(by_phone), len(phones)
        result.lost = sorted(result.lost + [i for i in by_phone if i not in phones])
        result.score_differs = sorted(result.score_differs + [
            i for i, p in by_phone.items() if i in phones and phones[i]["score"] != p.score])
    if run_defaults:
        hub._admin("POST", "/api/v1/defaults/run")
        # From the statistics, not GET /api/v1/defaults (one page of 1,000: a large hall has more).
        # A service both rated and defaulted is counted once in rated_services_with_defaults.
        total = hub._admin("GET", "/api/v1/stats", params={"from": days[0], "to": days[1],
                                                            "hall": hall}).json()["total"]
        result.defaults = total["defaulted"]
        result.defaults_rated_late = (total["rated_services"] + total["defaulted"]
                                      - total["rated_services_with_defaults"])
    return result


def report_lines(r: Reconciliation) -> list[str]:
    def ids(items: list[str]) -> str:
        return (" " + ", ".join(items[:10]) + (" ..." if len(items) > 10 else "")) if items else ""
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(r.unbound_reasons.items()))
    lines = [
        f"  services finished      {r.services_posted} (at the hub {r.services_at_hub}"
        f"{', LOST ' + str(r.services_lost) if r.services_lost else ''})",
        f"  presses stored         {r.pressed}",
        f"  ratings at the hub     {r.at_hub}",
        *([f"  rated by phone         {r.phone_rated} (at the hub {r.phone_at_hub})"]
          if r.phone_rated is not None else []),
        f"  lost                   {len(r.lost)}{ids(r.lost)}",
        f"  duplicated             {len(r.duplicated)}{ids(r.duplicated)}",
        f"  score differs          {len(r.score_differs)}{ids(r.score_differs)}",
        f"  unbound                {r.unbound}{' (' + reasons + ')' if reasons else ''}",
    ]
    if r.defaults is not None:
        late = (f"; {r.defaults_rated_late} of them rated too, the rating arriving after the hub's job "
                "had applied the default" if r.defaults_rated_late else "")
        lines.append(f"  defaults (基本满意)     {r.defaults} (services rated at the hub: {r.rated_services}{late})")
    return lines

