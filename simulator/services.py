"""The hub and a gateway as real processes (`python -m hub`, `python -m gateway`), for the demo,
the simulator and the tests: start, wait until ready, talk to their HTTP APIs, stop or kill.
"""

from __future__ import annotations

import abc
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from simulator.broker import free_port

READY_TIMEOUT_S = 30.0  # FastAPI + uvicorn import in ~1 s; a loaded CI machine needs slack
HTTP_TIMEOUT_S = 10.0


class ServiceProcess(abc.ABC):
    """A Python service started with `-m module`; it prints one ready line on stdout."""

    ready_marker = ""

    def __init__(self, workdir: Path, name: str):
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.proc: subprocess.Popen | None = None
        self.log_path = self.workdir / f"{name}.log"
        self.output: list[str] = []
        self._ready = threading.Event()

    @abc.abstractmethod
    def command(self) -> list[str]:
        """The command line that starts this service."""

    def env(self) -> dict[str, str]:
        return dict(os.environ)

    def start(self) -> "ServiceProcess":
        self._ready.clear()
        self.output = []
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=log,
                                     env=self.env(), start_new_session=True)
        log.close()
        threading.Thread(target=self._pump, args=(self.proc,), daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"{self.name} did not start; its log:\n{self.log_text()[-3000:]}")
        return self

    def _pump(self, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            self.output.append(line)
            with open(self.log_path, "a") as log:
                log.write(line + "\n")
            if self.ready_marker in line:
                self._ready.set()

    def stop(self, timeout: float = 15.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None

    def kill(self) -> None:
        """kill -9: no shutdown code runs."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class HubProcess(ServiceProcess):
    ready_marker = "hub listening on"

    def __init__(self, workdir: Path, port: int | None = None, admin_token: str | None = None):
        super().__init__(workdir, "hub")
        self.port = port or free_port()
        self.admin_token = admin_token or secrets.token_urlsafe(24)
        self.db_path = self.workdir / "hub.sqlite3"
        self.url = f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "hub", "--db", str(self.db_path), "--port", str(self.port)]

    def env(self) -> dict[str, str]:
        env = super().env()
        env["HCP_HUB_ADMIN_TOKEN"] = self.admin_token
        return env

    def _admin(self, method: str, path: str, **kwargs) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        response = httpx.request(method, self.url + path, headers=headers, timeout=HTTP_TIMEOUT_S, **kwargs)
        response.raise_for_status()
        return response

    def register_gateway(self, hall: str, key: bytes) -> str:
        """-> the gateway's ingest token."""
        return self._admin("POST", "/api/v1/gateways", json={"hall": hall, "key": key.hex()}).json()["token"]

    def register_device(self, device: str, hall: str, window: str, key: bytes) -> str:
        """-> the key id."""
        body = {"device": device, "hall": hall, "window": window, "key": key.hex()}
        return self._admin("POST", "/api/v1/devices", json=body).json()["kid"]

    def ratings(self, **filters) -> list[dict]:
        params = {k: v for k, v in filters.items() if v is not None}
        params.setdefault("limit", 1000)
        return self._admin("GET", "/api/v1/ratings", params=params).json()


class GatewayProcess(ServiceProcess):
    """A gateway for one hall; `settings` are GatewaySettings fields (written to a JSON file)."""

    ready_marker = "ready:"

    def __init__(self, workdir: Path, settings: dict):
        super().__init__(workdir, "gateway")
        self.settings = dict(settings)
        self.settings.setdefault("data_dir", str(self.workdir / "data"))
        self.settings.setdefault("http_port", free_port())
        self.settings.setdefault("queue_token", secrets.token_urlsafe(16))
        self.settings.setdefault("admin_token", secrets.token_urlsafe(16))
        self.config_path = self.workdir / "gateway.json"
        self.url = f"http://127.0.0.1:{self.settings['http_port']}"
        self.db_path = Path(self.settings["data_dir"]) / "gateway.sqlite3"

    def command(self) -> list[str]:
        self.config_path.write_text(json.dumps(self.settings, indent=1))
        return [sys.executable, "-m", "gateway", "--config", str(self.config_path),
                "--log-level", "WARNING"]

    def post_event(self, **fields) -> httpx.Response:
        """A queue-system event (docs/protocol.md): returns the response, whatever its status."""
        body = {"v": 1, **fields}
        return httpx.post(self.url + "/api/v1/queue/events", json=body, timeout=HTTP_TIMEOUT_S,
                          headers={"Authorization": f"Bearer {self.settings['queue_token']}"})

    def status(self) -> dict:
        response = httpx.get(self.url + "/api/v1/status", timeout=HTTP_TIMEOUT_S,
                             headers={"Authorization": f"Bearer {self.settings['admin_token']}"})
        response.raise_for_status()
        return response.json()
