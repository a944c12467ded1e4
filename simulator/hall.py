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

    def __init__(self, workdir: Path, hall: str):
        self.workdir = Path(workdir)
        self.hall = hall
        self.broker: Broker | None = None
        self.hub: HubProcess | None = None
        self.gateway: GatewayProcess | None = None
        self.seats: dict[str, Seat] = {}  # window -> seat
        self.fleet: LiteFleet | None = None

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
            seat.device = DeviceProcess(flash, key=seat.key, config=config)
        else:
            if self.fleet is None:
                self.fleet = LiteFleet()
            seat.device = LiteDevice(self.fleet, flash, config, seat.key)
        seat.device.start()
        return seat.device

    def stop_all(self) -> None:
        for seat in self.seats.values():
            if seat.device is not None:
                try:
                    seat.device.stop()
                except Exception:  # noqa: BLE001  # teardown goes on
                    pass
        if self.fleet is not None:
            self.fleet.close()
        for service in (self.gateway, self.hub):
            if service is not None:
                service.close()
        if self.broker is not None:
            self.broker.stop()

    def kill_all(self) -> None:
        """Stop at once: SIGKILL every process of the hall (a second Ctrl-C); no clean shutdown."""
        for seat in self.seats.values():
            if seat.device is not None:
                try:
                    seat.device.kill()
                except Exception:  # noqa: BLE001  # teardown goes on
                    pass
        if self.fleet is not None:
            self.fleet.close()
        for service in (self.gateway, self.hub):
            if service is not None:
                service.kill()
                service.http.close()
        if self.broker is not None:
            self.broker.kill()


# ---------------------------------------------------------------------------- the hub's view


@dataclass
class Pressed:
    """A rating a device confirmed it stored (its `rating` event): what must reach the hub."""

    device: str
    n: int
    score: int
    session: str | None

    @property
    def id(self) -> str:
        return f"{self.device}:{self.n}"


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


def reconcile(hub: HubProcess, hall: str, devices: list[str], pressed: list[Pressed],
              services_posted: int, days: tuple[str, str], run_defaults: bool = True) -> Reconciliation:
    """Compare what the devices stored and the queue system finished with what the hub holds.

    Duplicated: a rating at the hub that no device press made (a press stored twice under two
    counters), and a session answered by more than one rating."""
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
    if run_defaults:
        hub._admin("POST", "/api/v1/defaults/run")
        defaults = hub._admin("GET", "/api/v1/defaults", params={"hall": hall, "limit": 1000}).json()
        rated = {r["service"] for r in at_hub.values() if r["service"]}
        result.defaults = len(defaults)
        result.defaults_rated_late = sum(d["service"] in rated for d in defaults)
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

