"""Registering a device with its hall's gateway and the regional hub, and retiring a replaced one:
the admin calls `hcp provision` makes (docs/gateway.md, docs/hub.md). Every call is idempotent, so
a provisioning run that stopped half-way can simply be run again."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

TIMEOUT_S = 10.0


class RegistrationError(Exception):
    """What went wrong, in words for the technician."""


@dataclass(frozen=True)
class Service:
    name: str  # "gateway" or "hub", for messages
    url: str
    admin_token: str

    def call(self, method: str, path: str, body: dict | None = None,
             ok: tuple[int, ...] = (200, 201)) -> tuple[int, Any]:
        try:
            resp = httpx.request(method, self.url.rstrip("/") + path, json=body, timeout=TIMEOUT_S,
                                 headers={"Authorization": f"Bearer {self.admin_token}"})
        except httpx.HTTPError as exc:
            raise RegistrationError(f"cannot reach the {self.name} at {self.url} ({exc}): is it "
                                    f"running, and is this laptop on the hall's network?") from None
        if resp.status_code == 401:
            raise RegistrationError(f"the {self.name} refused the admin token: check "
                                    f"`{self.name}_admin_token` in the site file")
        try:
            data = resp.json()
        except ValueError:
            data = resp.text
        if resp.status_code not in ok:
            raise RegistrationError(f"the {self.name} answered {resp.status_code} to {method} "
                                    f"{path}: {data}")
        return resp.status_code, data


def register_at_hub(hub: Service, device: str, hall: str, window: str, key: bytes) -> str:
    """The device's key and place at the hub -> the key id the hub computed."""
    _, data = hub.call("POST", "/api/v1/devices",
                       {"device": device, "hall": hall, "window": window, "key": key.hex()})
    return data["kid"]


def register_at_gateway(gateway: Service, device: str, window: str) -> None:
    gateway.call("POST", "/api/v1/devices", {"device": device, "window": window})


def gateway_device(gateway: Service, device: str) -> dict | None:
    """The device's row of the gateway's status document (presence, window, kid), or None."""
    _, doc = gateway.call("GET", "/api/v1/status")
    return next((d for d in doc["devices"] if d["device"] == device), None)


def retire_at_gateway(gateway: Service, device: str) -> str | None:
    """Retire a replaced device -> the window it served; None if it was not registered there."""
    status, data = gateway.call("POST", f"/api/v1/devices/{device}/retire", {}, ok=(200, 404))
    return data["window"] if status == 200 else None


def retire_at_hub(hub: Service, device: str) -> str | None:
    """Retire a replaced device at the hub too (after the gateway, so every item the gateway took
    from it before was received before this) -> the hub's retirement time; None if it was not
    registered there. Items its gateway received from it after that are refused by the hub."""
    status, data = hub.call("POST", f"/api/v1/devices/{device}/retire", None, ok=(200, 404))
    return data["retired_at"] if status == 200 else None
