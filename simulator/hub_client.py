"""An HTTP client for the hub's API (docs/protocol.md): admin registration and reads, and ingest as
a gateway sends it. `simulator.services.HubProcess` is one; the tests' in-process hub is another.
"""

from __future__ import annotations

from typing import Any

import httpx

HTTP_TIMEOUT_S = 10.0


class HubClient:
    """Calls to the hub at `url`; `.http` is an httpx.Client based there (paths are relative)."""

    def __init__(self, url: str, admin_token: str, timeout: float = HTTP_TIMEOUT_S):
        self.url = url
        self.admin_token = admin_token
        self.http = httpx.Client(base_url=url, timeout=timeout)

    @property
    def admin_headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.admin_token}"}

    def _admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, headers=self.admin_headers, **kwargs)
        response.raise_for_status()
        return response

    def register_gateway(self, hall: str, key: bytes) -> str:
        """-> the gateway's ingest token."""
        return self._admin("POST", "/api/v1/gateways", json={"hall": hall, "key": key.hex()}).json()["token"]

    def register_device(self, device: str, hall: str, window: str, key: bytes) -> str:
        """-> the key id."""
        body = {"device": device, "hall": hall, "window": window, "key": key.hex()}
        return self._admin("POST", "/api/v1/devices", json=body).json()["kid"]

    def ingest(self, token: str, hall: str, items: list, **envelope: Any) -> httpx.Response:
        """POST a batch as a gateway; the response, whatever its status."""
        body = {"v": 1, "hall": hall, "items": items, **envelope}
        return self.http.post("/api/v1/ingest", json=body, headers={"Authorization": f"Bearer {token}"})

    def ratings(self, **filters: Any) -> list[dict]:
        params = {k: v for k, v in filters.items() if v is not None}
        params.setdefault("limit", 1000)
        return self._admin("GET", "/api/v1/ratings", params=params).json()

    def phone_ratings(self, **filters: Any) -> list[dict]:
        """The phone page's ratings (GET /api/v1/phone/ratings), newest first, contacts masked."""
        params = {k: v for k, v in filters.items() if v is not None}
        params.setdefault("limit", 1000)
        return self._admin("GET", "/api/v1/phone/ratings", params=params).json()

    def rating(self, device: str, n: int) -> dict | None:
        response = self.http.get(f"/api/v1/ratings/{device}/{n}", headers=self.admin_headers)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        return response.json()

    def create_user(self, login: str, name: str, role: str, **scope: str) -> str:
        """A person's account (docs/accounts.md) with a password the hub generates -> that password."""
        body = {"login": login, "name": name, "role": role, **scope}
        return self._admin("POST", "/api/v1/users", json=body).json()["password"]

    def devices(self, **filters: Any) -> list[dict]:
        """The devices overview (GET /api/v1/devices): presence, last seen, open alerts."""
        return self._admin("GET", "/api/v1/devices",
                           params={k: v for k, v in filters.items() if v is not None}).json()

    def rejections(self, **params: Any) -> dict:
        return self._admin("GET", "/api/v1/ingest/rejections", params=params).json()

    def close(self) -> None:
        self.http.close()
