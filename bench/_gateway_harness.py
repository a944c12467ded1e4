"""Shared pieces of the gateway benchmarks: a hall on this machine (private Mosquitto, the real
gateway process, optionally the real hub process), simulated devices that publish pre-signed
ratings from worker processes, a backlog written straight into the gateway's SQLite outbox, and
resident-memory readings from /proc.

The gateway and hub are `simulator.services.GatewayProcess` / `HubProcess`: the same
`python -m gateway` / `python -m hub` the demo and the tests run. Device keys, the gateway key and
the ratings are derived from fixed seeds, so two runs post the same bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import multiprocessing as mp
import os
import shutil
import signal
import sqlite3
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _harness import ROOT, emit, log  # noqa: F401  (re-exported for the gateway benches)

import paho.mqtt.client as mqtt  # noqa: E402

from hcp.protocol import topic  # noqa: E402
from simulator.broker import Broker, free_port  # noqa: E402
from simulator.lite_device import rating_json  # noqa: E402  (the lightweight device's bytes)
from simulator.services import GatewayProcess, HubProcess  # noqa: E402

HALL = "H1"
BARE_HALL = "B1"  # the bare subscriber's rounds publish here: the gateway's session never queues them
GATEWAY_KEY = hashlib.sha256(b"bench-gateway-key").digest()
UNREACHABLE_HUB = "http://127.0.0.1:9"  # discard port: connection refused at once
# Mosquitto sends a client at most `max_inflight_messages` QoS 1 messages it has not PUBACKed.
# The gateway PUBACKs only after COMMIT, so that limit is its largest possible commit group: the
# default 20 caps group commit at 20 messages. The hall's production config must raise it too.
BROKER_INFLIGHT = 1000
BROKER_CONFIG = f"max_inflight_messages {BROKER_INFLIGHT}"
RSS_FIELDS = ("VmRSS", "VmHWM", "RssAnon", "RssFile")


def device_ids(count: int) -> list[str]:
    return [f"D{i:03d}" for i in range(1, count + 1)]


def device_key(dev: str) -> bytes:
    return hashlib.sha256(b"bench-key:" + dev.encode()).digest()


def window_of(dev: str) -> str:
    return str(int(dev[1:]))


def rss_kb(pid: int) -> dict[str, int]:
    """VmRSS (resident now), VmHWM (peak resident), RssAnon, RssFile of a process, in kB."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in RSS_FIELDS:
            out[name] = int(value.split()[0])
    return out


def cpu_s(pid: int) -> float:
    """user + system CPU seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rating_payload(hall: str, dev: str, n: int) -> bytes:
    """The JSON a device publishes: a local-session rating (`sess` null), scores 1..5 in turn."""
    return rating_json(device_key(dev), hall, dev, n, 1, 1000 * n, None, 1 + n % 5)


class Hall:
    """Temp dir with a private Mosquitto and (on demand) the real hub and the real gateway, all
    stopped and removed on exit (`keep=True` keeps the directory)."""

    def __init__(self, name: str, devices: int, keep: bool = False, broker_config: str = BROKER_CONFIG,
                 **gateway_settings: Any):
        self.tmp = Path(tempfile.mkdtemp(prefix=f"hcp-bench-{name}-"))
        self.keep = keep
        self.devices = device_ids(devices)
        self.broker_config = broker_config
        self.gateway_settings = gateway_settings
        self.broker: Broker | None = None
        self.hub: HubProcess | None = None
        self.gateway: GatewayProcess | None = None  # the last one made
        self._gateways: list[GatewayProcess] = []
        self.hub_port = free_port()
        self.hub_token: str | None = None

    def __enter__(self) -> "Hall":
        # SIGTERM (timeout, a stopped CI job) unwinds like Ctrl-C, so the processes started in
        # their own sessions (broker, hub, gateway) are stopped and the directory removed
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
        try:
            self.broker = Broker(self.tmp / "mosquitto", extra_config=self.broker_config).start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def hub_url(self) -> str:
        return f"http://127.0.0.1:{self.hub_port}"

    def make_gateway(self, hub_url: str | None = None, hub_token: str = "bench-no-hub",
                     name: str = "gateway", **settings: Any) -> GatewayProcess:
        """The gateway process (not started) in `tmp/name`, every device registered at its window."""
        assert self.broker is not None
        config = {"hall": HALL, "broker_host": self.broker.host, "broker_port": self.broker.port,
                  "hub_url": hub_url or UNREACHABLE_HUB, "hub_token": hub_token,
                  "gateway_key": GATEWAY_KEY.hex(), "retry_min_s": 0.2, "retry_max_s": 1.0,
                  "devices": [{"device": d, "window": window_of(d)} for d in self.devices],
                  **self.gateway_settings, **settings}
        self.gateway = GatewayProcess(self.tmp / name, config, log_level="WARNING")
        self._gateways.append(self.gateway)
        return self.gateway

    def start_hub(self) -> HubProcess:
        """The real hub on its own SQLite file, with this hall's gateway and devices registered
        (the first start only)."""
        if self.hub is None:
            self.hub = HubProcess(self.tmp / "hub", port=self.hub_port)
        self.hub.start()
        if self.hub_token is None:
            self.hub_token = self.hub.register_gateway(HALL, GATEWAY_KEY)
            for dev in self.devices:
                self.hub.register_device(dev, HALL, window_of(dev), device_key(dev))
        return self.hub

    def hub_ratings(self) -> int:
        """Ratings stored at the hub, read from its SQLite file as another process would."""
        assert self.hub is not None
        con = sqlite3.connect(f"file:{self.hub.db_path}?mode=ro", uri=True, timeout=30)
        try:
            return con.execute("SELECT COUNT(*) FROM ratings").fetchone()[0]
        finally:
            con.close()

    def close(self) -> None:
        for part in (*self._gateways, self.hub):
            if part is not None:
                try:
                    part.close()  # type: ignore[attr-defined]
                except Exception as exc:  # noqa: BLE001  # teardown goes on
                    log(f"closing {part.name}: {exc}")
        if self.broker is not None:
            self.broker.stop()
        if self.keep:
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


# ---------------------------------------------------------------------------- backlog


def fill_outbox(db_path: Path, devices: list[str], per_device: int, chunk: int = 5000) -> float:
    """Write `len(devices) * per_device` rating items, as the gateway makes them, into the outbox of
    the gateway's file through its own Store (the gateway must not be running). Ratings are
    interleaved across devices, in counter order per device. -> seconds taken."""
    from gateway.ingest import rating_item
    from gateway.models import Binding
    from gateway.store import Store
    from hcp.protocol import decode_rating

    async def fill() -> None:
        store = await Store.open(db_path)
        try:
            t = time.time()
            rows: list[tuple[str, str, dict, float]] = []
            for n in range(1, per_device + 1):
                for dev in devices:
                    raw = rating_payload(HALL, dev, n).decode()
                    rating = decode_rating(raw)
                    item = rating_item(raw, rating, t, Binding(None, "no_service_in_progress"))
                    rows.append(("rating", f"rating:{dev}:{n}", item, t))
                    if len(rows) >= chunk:
                        async with store.transaction() as tx:
                            await tx.outbox_put_many(rows)
                        rows = []
            if rows:
                async with store.transaction() as tx:
                    await tx.outbox_put_many(rows)
        finally:
            await store.close()

    t0 = time.monotonic()
    asyncio.run(fill())
    return time.monotonic() - t0


def wait_outbox(gateway: GatewayProcess, done: Any, timeout: float, every: float = 0.5,
                progress_s: float = 10.0) -> tuple[dict, list[tuple[float, dict]]]:
    """Poll the status page until `done(outbox)`; -> (last outbox, [(monotonic, outbox), ...])."""
    samples: list[tuple[float, dict]] = []
    deadline = time.monotonic() + timeout
    last_log = time.monotonic()
    while True:
        outbox = gateway.status()["outbox"]
        now = time.monotonic()
        samples.append((now, outbox))
        if done(outbox):
            return outbox, samples
        if now > deadline:
            raise TimeoutError(f"outbox never done: {outbox}")
        if now - last_log > progress_s:
            log(f"  outbox {outbox}")
            last_log = now
        time.sleep(every)


# ---------------------------------------------------------------------------- device workers


def _worker(conn: Any, port: int, devices: list[str]) -> None:
    """A process that plays `devices`: one paho client each (clean session, as the firmware).
    Commands on `conn`: ("round", hall, first_n, per_device) -> result dict; ("stop",)."""
    cond = threading.Condition()
    clients: dict[str, mqtt.Client] = {}
    state = {"pubacks": 0}

    def on_publish(*args: Any) -> None:
        with cond:
            state["pubacks"] += 1
            cond.notify_all()

    for dev in devices:
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{dev}", clean_session=True)
        c.on_publish = on_publish
        c.max_queued_messages_set(0)
        c.connect("127.0.0.1", port, keepalive=60)
        c.loop_start()
        clients[dev] = c
    conn.send(("ready", len(devices)))
    while True:
        cmd = conn.recv()
        if cmd[0] == "stop":
            break
        _, hall, first, per_device = cmd
        payloads = [(dev, topic(hall, dev, "rating"), rating_payload(hall, dev, n))
                    for n in range(first, first + per_device) for dev in devices]
        with cond:
            state["pubacks"] = 0
        total = len(payloads)
        conn.send(("armed", total))
        conn.recv()  # go
        t0 = time.monotonic()
        for dev, tp, payload in payloads:
            clients[dev].publish(tp, payload, qos=1)
        t_sent = time.monotonic()
        with cond:
            cond.wait_for(lambda: state["pubacks"] >= total, timeout=600)
            result = {"t0": t0, "t_sent": t_sent, "t_puback": time.monotonic(),
                      "published": total, "pubacks": state["pubacks"]}
        conn.send(("done", result))
    for c in clients.values():
        c.disconnect()
        c.loop_stop()
    conn.close()


class Devices:
    """`devices` spread over `procs` worker processes (so the publishing side does not share one
    GIL). `round(hall, first_n, per_device)` publishes every device's ratings
    first_n..first_n+per_device-1 at once, QoS 1, interleaved across devices; -> the merged result
    (`t0` first publish, `t_puback` last PUBACK from the broker, monotonic)."""

    def __init__(self, port: int, devices: list[str], procs: int = 2):
        ctx = mp.get_context("spawn")
        self.conns = []
        self.procs = []
        for i in range(procs):
            parent, child = ctx.Pipe()
            p = ctx.Process(target=_worker, args=(child, port, devices[i::procs]), daemon=True)
            p.start()
            self.conns.append(parent)
            self.procs.append(p)
        for c in self.conns:
            if not c.poll(60):
                raise TimeoutError("a device worker did not connect")
            c.recv()

    def round(self, hall: str, first: int, per_device: int) -> dict:
        for c in self.conns:
            c.send(("round", hall, first, per_device))
        total = sum(c.recv()[1] for c in self.conns)
        for c in self.conns:
            c.send(("go",))
        results = [c.recv()[1] for c in self.conns]
        return {"published": total, "t0": min(r["t0"] for r in results),
                "t_sent": max(r["t_sent"] for r in results),
                "t_puback": max(r["t_puback"] for r in results),
                "pubacks": sum(r["pubacks"] for r in results)}

    def close(self) -> None:
        for c in self.conns:
            try:
                c.send(("stop",))
            except OSError:
                pass
        for p in self.procs:
            p.join(10)
            if p.is_alive():
                p.kill()


class Subscriber:
    """A plain paho subscriber (auto PUBACK on receipt, nothing else) counting what arrives on
    `pattern`, by the `st` field for acks. The bare subscriber of the ingest baseline is one; so is
    the collector of the gateway's acks (one client for all devices' ack topics: the gateway's work
    per ack is the same, and 100 subscribing device threads would only load the machine)."""

    def __init__(self, port: int, pattern: str, name: str):
        self.cond = threading.Condition()
        self.count = 0
        self.last = 0.0
        self.by_status: dict[str, int] = {}
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name,
                                  clean_session=True)
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *a: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port, keepalive=60)
        self.client.loop_start()
        self.client.subscribe(pattern, qos=1)
        if not subscribed.wait(30):
            raise TimeoutError("no SUBACK")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        st = json.loads(msg.payload).get("st") if msg.topic.endswith("/ack") else None
        with self.cond:
            self.count += 1
            self.last = time.monotonic()
            if st is not None:
                self.by_status[st] = self.by_status.get(st, 0) + 1
            self.cond.notify_all()

    def reset(self) -> None:
        with self.cond:
            self.count, self.last, self.by_status = 0, 0.0, {}

    def wait(self, total: int, timeout: float = 600) -> float:
        """Until `total` messages arrived since `reset()`; -> monotonic time of the last one."""
        with self.cond:
            if not self.cond.wait_for(lambda: self.count >= total, timeout):
                raise TimeoutError(f"{self.client._client_id!r} got {self.count} of {total}")
            return self.last

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
