"""The gateway for people, over a real gateway process: the hall status page, Prometheus `/metrics`
(parsed with prometheus_client's own parser), `hcp gateway status` live and from the file, and
JSON log lines."""

from __future__ import annotations

import json
import subprocess
import sys
from html.parser import HTMLParser

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fixtures.gateway import TestGateway

SETTINGS = {"registry_sweep_s": 0.1, "alert_offline_after_s": 0.3,
            "devices": [{"device": "D07", "window": "7"}, {"device": "D10", "window": "10"}]}
EVIL = "<script>alert(1)</script>"


@pytest.fixture
def hall(broker, gateway_factory, device_peers):
    """A gateway with D07 online (one rating, a stuck button, an evil firmware string), D10
    registered but never connected (offline alert), and an unregistered D99 that sent a status."""
    gw = gateway_factory(broker, **SETTINGS)
    dev = device_peers(broker, "D07")
    dev.publish("status", dev.status_payload("online", fw=EVIL[:32]), retain=True)
    dev.rate(1, score=5)
    dev.wait_ack(1)
    dev.health(stuck=["4"], fw=EVIL[:32], err=f"{EVIL} & more")
    stranger = device_peers(broker, "D99")
    stranger.publish("status", stranger.status_payload("online"), retain=True)
    gw.wait_status(lambda st: len(st["alerts"]["open"]) == 2 and len(st["devices"]) == 3)
    return gw


def hcp(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hcp.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


# ---------------------------------------------------------------------------- the page


class _Text(HTMLParser):
    """The page as a browser would show it: text only, and every element seen."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.tags: list[str] = []
        self.meta: list[dict] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)
        if tag == "meta":
            self.meta.append(dict(attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_the_status_page_shows_devices_alerts_and_links_escaped_and_refreshing(hall):
    resp = hall.http.get("/status")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    assert resp.headers["cache-control"] == "no-store"
    page = _Text()
    page.feed(resp.text)
    assert "script" not in page.tags  # the firmware and error strings are shown, never run
    assert EVIL[:32] in page.text and "<script>alert(1)</script> & more" in page.text
    assert {"http-equiv": "refresh", "content": "10"} in page.meta
    text = " ".join(" ".join(page.text).split())
    assert "H1" in text and "1 online, 0 offline of 2 registered, 1 never seen, 1 unregistered" in text
    assert "stuck_button" in text and "button(s) stuck: 4" in text
    assert "registered at window 10 but never connected" in text
    assert "#1" in text  # D07's last rating
    # the rating and the two alerts wait for the hub, which is away
    assert "pending 3, sent 0, dead 0 (oldest pending" in text
    # windows in counter order: 7 before 10; the unregistered device last
    assert text.index("D07") < text.index("D10") < text.index("D99")


# ---------------------------------------------------------------------------- metrics


def test_metrics_parse_as_prometheus_text_and_carry_the_status_figures(hall):
    resp = hall.http.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    assert samples[("hcp_gateway_devices", (("presence", "online"),))] == 1
    assert samples[("hcp_gateway_devices", (("presence", "never_seen"),))] == 1
    assert samples[("hcp_gateway_devices_unregistered", ())] == 1
    assert samples[("hcp_gateway_device_online", (("device", "D07"), ("window", "7")))] == 1
    assert samples[("hcp_gateway_device_online", (("device", "D10"), ("window", "10")))] == 0
    assert samples[("hcp_gateway_alerts_open", (("kind", "stuck_button"),))] == 1
    assert samples[("hcp_gateway_alerts_open", (("kind", "offline"),))] == 1
    assert samples[("hcp_gateway_alerts_open", (("kind", "counter_gap"),))] == 0
    st = hall.status()
    for state, n in st["outbox"].items():
        assert samples[("hcp_gateway_outbox_items", (("state", state),))] == n
    assert samples[("hcp_gateway_events_total", (("name", "ratings.ok"),))] == 1
    assert samples[("hcp_gateway_hub_link_state", (("state", st["hub"]["state"]),))] == 1
    assert sum(v for (name, _), v in samples.items() if name == "hcp_gateway_hub_link_state") == 1
    assert samples[("hcp_gateway_mqtt_connected", ())] == 1
    assert samples[("hcp_gateway_ingest_commits_total", ())] >= 1
    assert ("hcp_gateway_outbox_oldest_pending_age_seconds", ()) in samples  # the hub is away


# ---------------------------------------------------------------------------- hcp gateway status


def test_hcp_gateway_status_prints_the_hall_live_and_as_json(hall):
    out = hcp("gateway", "status", "--url", hall.url)
    assert out.returncode == 0, out.stderr
    assert f"live from {hall.url}" in out.stdout
    assert "1 online, 0 offline of 2 registered, 1 never seen, 1 unregistered" in out.stdout
    lines = out.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("WINDOW"))
    rows = [line.split()[:3] for line in lines[header + 1:header + 4]]
    assert rows == [["7", "D07", "online"], ["10", "D10", "never"], ["(none)", "D99", "online"]]
    assert "ALERTS: 2 open" in out.stdout and "button(s) stuck: 4" in out.stdout
    doc = json.loads(hcp("gateway", "status", "--url", hall.url, "--json").stdout)
    assert doc["live"] is True and doc["summary"]["alerts_open"] == 2
    assert {d["device"] for d in doc["devices"]} == {"D07", "D10", "D99"}


def test_hcp_gateway_status_reads_the_file_when_the_gateway_is_down(hall):
    hall.stop()
    out = hcp("gateway", "status", "--config", str(hall.config_path))
    assert out.returncode == 0, out.stderr
    assert "did not answer" in out.stderr
    assert f"from the file {hall.db_path}" in out.stdout and "hall H1" in out.stdout
    assert "MQTT     unknown" in out.stdout and "ALERTS: 2 open" in out.stdout
    doc = json.loads(hcp("gateway", "status", "--db", str(hall.data_dir), "--json").stdout)
    d07 = next(d for d in doc["devices"] if d["device"] == "D07")
    assert doc["live"] is False and d07["last_rating"]["n"] == 1 and d07["alerts"] == ["stuck_button"]
    assert doc["hub"] == {"state": "unknown"}


def test_hcp_gateway_status_fails_clearly_with_nothing_to_read(tmp_path):
    out = hcp("gateway", "status", "--url", "http://127.0.0.1:9")
    assert out.returncode == 1 and "did not answer" in out.stderr and "--config or --db" in out.stderr
    out = hcp("gateway", "status", "--db", str(tmp_path / "none.sqlite3"))
    assert out.returncode == 1 and "no gateway database" in out.stderr


# ---------------------------------------------------------------------------- logs


class JsonLogGateway(TestGateway):
    __test__ = False

    def command(self) -> list[str]:
        return super().command() + ["--log-format", "json"]


def test_json_logs_are_one_object_a_line_with_structured_fields(broker, tmp_path, device_peers):
    gw = JsonLogGateway(tmp_path / "gw", broker, "http://127.0.0.1:9", **SETTINGS).start()
    try:
        dev = device_peers(broker, "D07")
        dev.health(stuck=["2"])
        gw.wait_status(lambda st: any(a["kind"] == "stuck_button" for a in st["alerts"]["open"]))
        gw.wait_status(lambda st: st["hub"]["state"] == "down")  # its alert item could not be posted
        gw.stop()
    finally:
        gw.close()
    stderr = [line for line in gw.log_text().splitlines() if line and line not in gw.output]
    records = [json.loads(line) for line in stderr]  # every line is a JSON object
    assert records and all({"ts", "level", "logger", "msg"} <= r.keys() for r in records)
    alert = next(r for r in records if r["logger"] == "gateway.alerts" and r.get("alert") == "stuck_button")
    assert alert["level"] == "WARNING" and alert["device"] == "D07"
    assert any(r["logger"] == "gateway.forwarder" for r in records)  # the hub is away: warned
