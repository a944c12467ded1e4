"""The running gateway: store, MQTT link, writer, forwarder and HTTP server in one asyncio loop.

`Gateway(settings).run()` runs until cancelled (SIGTERM/SIGINT in `run_from_args`) or until one of
its parts fails, then shuts down in dependency order: HTTP first (no new events), then the writer
(an unfinished batch is rolled back and, never acked, comes back from the broker), the forwarder
(rows stay pending), the MQTT link, and last the database.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import signal
import sqlite3
import sys
import time
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import uvicorn

from gateway.config import GatewaySettings, load_settings
from gateway.forwarder import Backoff, Forwarder
from gateway.ingest import Ingest
from gateway.mqtt import MqttLink
from gateway.logs import LOG_FORMATS, setup_logging
from gateway.queue_events import QueueEvents
from gateway.registry import Registry
from gateway.retention import Retention
from gateway.status import collect
from gateway.store import Store
from gateway.webhook import AppContext, create_app

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 5.0  # time the HTTP server gets to finish requests in flight


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the gateway owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


class Gateway:
    def __init__(self, settings: GatewaySettings, clock: Callable[[], float] = time.time):
        self.settings = settings
        self.clock = clock
        self.http_url: str | None = None
        self.store: Store | None = None
        self.mqtt: MqttLink | None = None
        self.ingest: Ingest | None = None
        self.forwarder: Forwarder | None = None
        self.registry: Registry | None = None
        self.retention: Retention | None = None

    def ready_line(self) -> str:
        s = self.settings
        return (f"gateway {s.hall} ready: webhook {self.http_url}, broker {s.broker_host}:"
                f"{s.broker_port}, hub {s.hub_url}")

    async def run(self, ready: Callable[[str], None] | None = None) -> None:
        s = self.settings
        max_bytes = int(s.db_max_mb * 1024 * 1024) if s.db_max_mb else None
        store = self.store = await Store.open(s.db_path, max_bytes=max_bytes)
        tasks: list[asyncio.Task] = []
        server: _Server | None = None
        try:
            try:
                async with store.transaction() as tx:
                    for seed in s.devices:
                        await tx.register_device(seed.device, seed.window, self.clock(),
                                                 unretire=False)
            except sqlite3.OperationalError as exc:  # disk full: serve anyway, ack nothing, say so
                log.error("could not seed the device registry (%s); it is applied again at the "
                          "next start", exc)
            retention = self.retention = Retention(store, s.outbox_keep_days, s.prune_interval_s,
                                                   clock=self.clock)
            rng = random.Random(s.retry_seed)
            forwarder = self.forwarder = Forwarder(
                store, s.hall, s.hub_url, s.hub_token.get_secret_value(), s.forward_batch,
                s.forward_interval_s, Backoff(s.retry_min_s, s.retry_max_s, rng), clock=self.clock)
            mqtt = self.mqtt = MqttLink(
                s.hall, s.broker_host, s.broker_port, on_message=lambda m: ingest.submit(m),
                username=s.broker_username,
                password=s.broker_password.get_secret_value() if s.broker_password else None)
            registry = self.registry = Registry(
                store, s, publish=mqtt.publish_nowait, on_outbox=forwarder.wake,
                link=lambda: (mqtt.connected, mqtt.connects), clock=self.clock)
            ingest = self.ingest = Ingest(store, s.hall, s.local_bind_tolerance_s,
                                          publish=mqtt.publish_nowait, ack_broker=mqtt.ack,
                                          on_outbox=forwarder.wake, registry=registry)
            events = QueueEvents(store, s.hall, s.prompt_on, s.session_ttl_s, s.phone_base,
                                 s.gateway_key_bytes, publish=mqtt.publish_nowait,
                                 on_outbox=forwarder.wake, clock=self.clock)
            app = create_app(AppContext(store=store, events=events,
                                        queue_token=s.queue_token.get_secret_value(),
                                        admin_token=s.admin_token.get_secret_value(),
                                        status=self.status, clock=self.clock,
                                        clear_alert=registry.clear_alert,
                                        wake_forwarder=forwarder.wake))
            server = _Server(uvicorn.Config(app, host=s.http_host, port=s.http_port,
                                            log_level="warning", lifespan="off",
                                            log_config=None,  # uvicorn logs through ours (text/JSON)
                                            timeout_graceful_shutdown=int(SHUTDOWN_GRACE_S)))
            mqtt.start()
            tasks = [asyncio.create_task(ingest.run(), name="ingest"),
                     asyncio.create_task(forwarder.run(), name="forwarder"),
                     asyncio.create_task(server.serve(), name="http"),
                     asyncio.create_task(registry.run(), name="registry"),
                     asyncio.create_task(retention.run(), name="retention")]
            await self._wait_started(server, tasks[2])
            if ready is not None:
                ready(self.ready_line())
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:  # a part ended on its own: that is a failure of the gateway
                exc = task.exception() if not task.cancelled() else None
                raise RuntimeError(f"gateway part {task.get_name()!r} stopped") from exc
        finally:
            await self._shutdown(server, tasks)
            await store.close()

    async def _wait_started(self, server: _Server, serve_task: asyncio.Task) -> None:
        while not server.started:
            if serve_task.done():  # e.g. the port is taken: uvicorn raises SystemExit
                exc = serve_task.exception()
                raise RuntimeError(f"HTTP server on {self.settings.http_host}:"
                                   f"{self.settings.http_port} did not start") from exc
            await asyncio.sleep(0.01)
        sock = server.servers[0].sockets[0].getsockname()
        self.http_url = f"http://{sock[0]}:{sock[1]}"

    async def _shutdown(self, server: _Server | None, tasks: list[asyncio.Task]) -> None:
        if server is not None:
            server.should_exit = True
        for task in tasks:  # everything but HTTP, which finishes its requests in flight
            if task.get_name() != "http":
                task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_S + 1)
        for task in tasks:
            if not task.done():
                task.cancel()
        if self.mqtt is not None:
            await self.mqtt.stop()

    async def status(self) -> dict[str, Any]:
        """The status document of `GET /api/v1/status`."""
        assert self.store is not None and self.mqtt is not None
        assert self.ingest is not None and self.forwarder is not None
        async with self.store.read() as tx:
            doc = await collect(tx, self.clock())  # devices, alerts, outbox, quarantine, counters
        s = self.settings
        return {
            **doc, "hall": s.hall, "live": True,
            "mqtt": {"broker": f"{s.broker_host}:{s.broker_port}", "connected": self.mqtt.connected,
                     "connects": self.mqtt.connects},
            "hub": {"url": s.hub_url, **self.forwarder.link.as_dict()},
            "ingest": {"backlog": self.ingest.backlog, "batches": self.ingest.batches,
                       "commit_failures": self.ingest.commit_failures,
                       "isolated_retries": self.ingest.isolated_retries},
            # whether the file takes writes (disk full: no device is acked), its size, pruning
            "store": {**self.store.health.as_dict(),
                      "retention": self.retention.state.as_dict() if self.retention else None},
        }


# ---------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `python -m gateway` / `hcp gateway`; a flag wins over the file and HCP_GW_*."""
    parser.add_argument("--config", type=Path, help="JSON settings file (keys as in GatewaySettings)")
    parser.add_argument("--hall")
    parser.add_argument("--data-dir", type=Path)
    parser.add_argument("--broker-host")
    parser.add_argument("--broker-port", type=int)
    parser.add_argument("--hub-url")
    parser.add_argument("--http-host")
    parser.add_argument("--http-port", type=int)
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", default="text", choices=LOG_FORMATS,
                        help="stderr log lines: text for people, json (one object a line) for "
                             "log collectors")


def run_from_args(args: argparse.Namespace) -> int:
    setup_logging(args.log_level, args.log_format, sys.stderr)
    try:
        settings = load_settings(args.config, hall=args.hall, data_dir=args.data_dir,
                                 broker_host=args.broker_host, broker_port=args.broker_port,
                                 hub_url=args.hub_url, http_host=args.http_host,
                                 http_port=args.http_port)
    except (OSError, ValueError) as exc:  # pydantic's ValidationError is a ValueError
        print(f"gateway: bad settings: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_main(settings))


async def _main(settings: GatewaySettings) -> int:
    gateway = Gateway(settings)
    task = asyncio.create_task(gateway.run(ready=lambda line: print(line, flush=True)))
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        log.info("gateway %s stopped", settings.hall)
        return 0
    return 0
