"""`GET /metrics`: the status document in the Prometheus text exposition format (version 0.0.4).

Written by hand rather than with prometheus_client: the gateway keeps its figures in SQLite and in
the status document already, so a scrape is a rendering of that document, not a second registry of
in-process metrics that a restart would zero. Names start with `hcp_gateway_`; counters end in
`_total` and never go down while the SQLite file lives.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from gateway.alerts import KINDS

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
HUB_STATES = ("unknown", "up", "down", "unauthorized")
PRESENCES = ("online", "offline", "never_seen")
STORE_STATES = ("ok", "full", "busy", "error")  # gateway/storage.py; "unknown" from a file read

Sample = tuple[dict[str, str], float | int | bool | None]


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float | int | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> None:
        """One metric family; samples whose value is None are left out (unknown, not zero)."""
        self.lines.append(f"# HELP {name} {_escape_help(help_text)}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            if value is None:
                continue
            label_text = ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{label_text}}} {_number(value)}" if label_text
                              else f"{name} {_number(value)}")

    def one(self, name: str, kind: str, help_text: str, value: float | int | bool | None) -> None:
        self.family(name, kind, help_text, [({}, value)])

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _store(w: _Writer, p: str, st: dict[str, Any]) -> None:
    """The store section: whether the file takes writes (a full disk stops every device ack)."""
    state = st.get("state")
    known = state in STORE_STATES
    w.family(p + "store_state", "gauge", "1 for the database's current write state.",
             [({"state": s}, s == state if known else None) for s in STORE_STATES])
    w.one(p + "store_writable", "gauge", "1 while writes to the database commit.",
          state == "ok" if known else None)
    w.one(p + "store_episode_write_failures", "gauge",
          "Failed write transactions in the current full/busy/error episode.", st.get("failures"))
    w.one(p + "store_write_failures_total", "counter",
          "Failed write transactions since the gateway started.", st.get("total_failures"))
    w.one(p + "store_last_error_timestamp_seconds", "gauge",
          "Gateway wall time of the last failed write.", st.get("last_error_at"))
    w.one(p + "store_db_bytes", "gauge", "Size of the SQLite file.", st.get("db_bytes"))
    w.one(p + "store_wal_bytes", "gauge", "Size of its write-ahead log.", st.get("wal_bytes"))
    w.one(p + "store_disk_free_bytes", "gauge", "Free space on the database's filesystem.",
          st.get("disk_free_bytes"))
    ret = st.get("retention") or {}
    w.one(p + "store_retention_last_run_timestamp_seconds", "gauge",
          "Gateway wall time of the last pruning of sent outbox rows.", ret.get("last_run_at"))
    w.one(p + "store_retention_last_pruned", "gauge", "Rows the last pruning deleted.",
          ret.get("last_pruned") if ret.get("last_run_at") else None)


def render_metrics(doc: dict[str, Any]) -> str:
    """The exposition text for one status document (see docs/gateway.md, "Metrics")."""
    w = _Writer()
    p = "hcp_gateway_"
    w.family(p + "info", "gauge", "The gateway's hall (always 1).", [({"hall": doc.get("hall") or ""}, 1)])
    summary = doc["summary"]
    w.family(p + "devices", "gauge", "Registered devices by presence (never_seen: no status yet).",
             [({"presence": s}, summary[s]) for s in PRESENCES])
    w.one(p + "devices_unregistered", "gauge", "Devices heard on MQTT but not registered here.",
          summary["unregistered"])
    devices = doc["devices"]
    w.family(p + "device_online", "gauge", "1 while the device is online (status and heartbeat).",
             [({"device": d["device"], "window": d["window"] or ""}, d["presence"] == "online")
              for d in devices])
    w.family(p + "device_last_seen_timestamp_seconds", "gauge",
             "Gateway wall time of the device's last message.",
             [({"device": d["device"]}, d["last_seen"]) for d in devices])
    w.family(p + "device_flash_outbox", "gauge", "Ratings waiting in the device's flash (health ob).",
             [({"device": d["device"]}, (d["health"] or {}).get("ob")) for d in devices])
    w.family(p + "device_clock_offset_ms", "gauge",
             "Gateway wall ms minus device monotonic ms at the last health.",
             [({"device": d["device"]}, (d["clock"] or {}).get("offset_ms")) for d in devices])
    w.family(p + "device_missing_ratings", "gauge", "Rating counters skipped and not yet received.",
             [({"device": d["device"]}, (d["gaps"] or {}).get("missing", 0)) for d in devices])
    open_by_kind = dict.fromkeys(KINDS, 0)
    for a in doc["alerts"]["open"]:
        open_by_kind[a["kind"]] = open_by_kind.get(a["kind"], 0) + 1
    w.family(p + "alerts_open", "gauge", "Open alerts by kind.",
             [({"kind": k}, n) for k, n in open_by_kind.items()])
    w.family(p + "outbox_items", "gauge", "Outbox rows by state.",
             [({"state": s}, n) for s, n in doc["outbox"].items()])
    w.one(p + "outbox_oldest_pending_age_seconds", "gauge",
          "Age of the oldest item not yet answered by the hub.", doc.get("outbox_oldest_pending_s"))
    w.family(p + "outbox_dead_letters", "gauge",
             "Outbox rows the hub rejected (dead letters), by its reason.",
             [({"reason": r}, n) for r, n in sorted((doc.get("dead_letters") or {}).items())])
    _store(w, p, doc.get("store") or {})
    hub = doc.get("hub") or {}
    state = hub.get("state", "unknown")
    w.family(p + "hub_link_state", "gauge", "1 for the hub link's current state.",
             [({"state": s}, s == state) for s in HUB_STATES])
    w.one(p + "hub_link_up", "gauge", "1 while the hub answered the last post.", state == "up")
    w.one(p + "hub_consecutive_failures", "gauge", "Failed posts since the last answer.",
          hub.get("failures"))
    mqtt = doc.get("mqtt") or {}
    w.one(p + "mqtt_connected", "gauge", "1 while connected to the hall broker.", mqtt.get("connected"))
    w.one(p + "mqtt_connects_total", "counter", "Connections to the broker since the gateway started.",
          mqtt.get("connects"))
    ingest = doc.get("ingest") or {}
    w.one(p + "ingest_commits_total", "counter",
          "Device-message transactions committed since the gateway started (group commits).",
          ingest.get("batches"))
    w.one(p + "ingest_commit_failures_total", "counter",
          "Commits that failed (disk full, I/O) since the gateway started.",
          ingest.get("commit_failures"))
    w.one(p + "ingest_isolated_retries_total", "counter",
          "Groups run again message by message after one message failed with a bug.",
          ingest.get("isolated_retries"))
    w.one(p + "ingest_backlog", "gauge", "Device messages received and not yet committed.",
          ingest.get("backlog"))
    w.family(p + "quarantine_payloads", "gauge", "Distinct rejected MQTT payloads kept, by reason.",
             [({"reason": r}, n) for r, n in sorted(doc["quarantine"].items())])
    w.family(p + "events_total", "counter",
             "The gateway's durable counters (ratings.ok, quarantine.*, forward.*, alerts.*, ...).",
             [({"name": name}, n) for name, n in sorted(doc["counters"].items())])
    return w.text()
