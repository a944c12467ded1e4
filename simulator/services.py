"""The hub and a gateway as real processes (`python -m hub`, `python -m gateway`), for the demo,
the simulator and the tests: start, wait until ready, talk to their HTTP APIs, stop or kill, and
start again on the same directory, port and files.
"""

from __future__ import annotations

import abc
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from hcp.tokens import cli_safe_token
from simulator.broker import free_port
from simulator.hub_client import HTTP_TIMEOUT_S, HubClient

READY_TIMEOUT_S = 30.0  # FastAPI + uvicorn import in ~1 s; a loaded CI machine needs slack
STOP_TIMEOUT_S = 15.0  # a clean shutdown lets running work commit


class ServiceProcess(abc.ABC):
    """A Python service started with `-m module` in its own process group. It is ready when it
    prints a line containing `ready_marker` on stdout. Its stdout and stderr go to `log_path`;
    its stdout lines, of every run, are also in `output`."""

    ready_marker = ""
    env_prefix = ""  # the service's own settings variables: never inherited from this environment

    def __init__(self, workdir: Path, name: str):
        self.workdir = Path(workdir).resolve()
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
        env = {k: v for k, v in os.environ.items()
               if not (self.env_prefix and k.startswith(self.env_prefix))}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def start(self) -> "ServiceProcess":
        """Start and wait for the ready line; RuntimeError (with the log) if it does not come."""
        self._ready.clear()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.PIPE, stderr=log,
                                     env=self.env(), start_new_session=True)
        log.close()
        threading.Thread(target=self._pump, args=(self.proc,), daemon=True).start()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self._ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                code = self.proc.poll()
                self.kill()
                raise RuntimeError(f"{self.name} did not start (exit status {code}); its log:\n"
                                   f"{self.log_text()[-3000:]}")
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

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM (a clean shutdown), SIGKILL if it still runs after `timeout`. The exit status
        (negative: the signal that ended it); None if it was not started."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return -signal.SIGKILL
        code, self.proc = self.proc.returncode, None
        return code

    def kill(self) -> None:
        """kill -9 of the whole process group: no shutdown code runs (a crash, a power cut)."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def restart(self) -> "ServiceProcess":
        """A clean stop, then start again on the same files."""
        self.stop()
        return self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stdout_text(self) -> str:
        return "".join(line + "\n" for line in self.output)


class HubProcess(ServiceProcess, HubClient):
    """The hub on `workdir/hub.sqlite3` and a loopback port; its API calls are HubClient's."""

    ready_marker = "hub listening on"
    env_prefix = "HCP_HUB_"

    def __init__(self, workdir: Path, port: int | None = None, admin_token: str | None = None):
        ServiceProcess.__init__(self, workdir, "hub")
        self.port = port or free_port()
        HubClient.__init__(self, f"http://127.0.0.1:{self.port}",
                           admin_token or cli_safe_token(24))
        self.db_path = self.workdir / "hub.sqlite3"

    def command(self) -> list[str]:
        return [sys.executable, "-m", "hub", "--db", str(self.db_path), "--host", "127.0.0.1",
                "--port", str(self.port)]

    def env(self) -> dict[str, str]:
        env = super().env()
        env["HCP_HUB_ADMIN_TOKEN"] = self.admin_token
        return env

    def close(self) -> None:
        self.stop()
        HubClient.close(self)


class GatewayProcess(ServiceProcess):
    """A gateway for one hall; `settings` are GatewaySettings fields (written to a JSON file).
    Unless given: data in `workdir/data`, HTTP on a free loopback port, random queue and admin
    tokens. `HCP_GW_*` variables of this environment do not reach it."""

    ready_marker = "ready:"
    env_prefix = "HCP_GW_"

    def __init__(self, workdir: Path, settings: dict, log_level: str = "WARNING"):
        super().__init__(workdir, "gateway")
        self.settings = dict(settings)
        self.settings.setdefault("data_dir", str(self.workdir / "data"))
        self.settings.setdefault("http_host", "127.0.0.1")
        self.settings.setdefault("http_port", free_port())
        self.settings.setdefault("queue_token", cli_safe_token(16))
        self.settings.setdefault("admin_token", cli_safe_token(16))
        self.log_level = log_level
        self.config_path = self.workdir / "gateway.json"
        self.data_dir = Path(self.settings["data_dir"])
        self.db_path = self.data_dir / "gateway.sqlite3"
        self.url = f"http://127.0.0.1:{self.settings['http_port']}"
        self.http = httpx.Client(base_url=self.url, timeout=HTTP_TIMEOUT_S)

    @property
    def hall(self) -> str:
        return self.settings["hall"]

    @property
    def queue_token(self) -> str:
        return self.settings["queue_token"]

    @property
    def admin_token(self) -> str:
        return self.settings["admin_token"]

    @property
    def gateway_key(self) -> bytes:
        return bytes.fromhex(self.settings["gateway_key"])

    def command(self) -> list[str]:
        self.config_path.write_text(json.dumps(self.settings, indent=1))
        return [sys.executable, "-m", "gateway", "--config", str(self.config_path),
                "--log-level", self.log_level]

    def post(self, path: str, body: Any, token: str | None = None) -> httpx.Response:
        """POST `body` (JSON, or bytes/str as they are) with `token`; the response, whatever its status."""
        headers = {"Content-Type": "application/json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        content = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return self.http.post(path, content=content, headers=headers)

    def post_event(self, **fields: Any) -> dict:
        """A queue-system event (docs/protocol.md) -> the gateway's answer; RuntimeError unless 200."""
        response = self.post("/api/v1/queue/events", {"v": 1, **fields}, self.queue_token)
        if response.status_code != 200:
            raise RuntimeError(f"gateway refused a queue event: {response.status_code} {response.text}")
        return response.json()

    def register_device(self, device: str, window: str) -> dict:
        """Register (or move) a device -> the answer; RuntimeError unless 201."""
        response = self.post("/api/v1/devices", {"device": device, "window": window}, self.admin_token)
        if response.status_code != 201:
            raise RuntimeError(f"gateway refused a device: {response.status_code} {response.text}")
        return response.json()

    def status(self) -> dict:
        response = self.http.get("/api/v1/status")
        response.raise_for_status()
        return response.json()

    def close(self) -> None:
        self.stop()
        self.http.close()
