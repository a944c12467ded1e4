"""`hcp sim` end to end with the real parts: a small seeded hall (2 real firmware devices, 4
lightweight ones) through a broker restart and a hub outage reconciles, by asking the hub, to
nothing lost and nothing doubled; what the citizens did is what the seed drew."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hcp.protocol import sign_rating
from simulator.hall import Pressed, reconcile, report_lines
from tests.fixtures.hub import binding, rating_item, service_item

SMALL = Path(__file__).with_name("small.toml")
HCP = [sys.executable, "-m", "hcp.cli", "sim"]


def _figure(out: str, name: str) -> int:
    return int(re.search(rf"^  {name} +(\d+)", out, re.M).group(1))


@pytest.mark.slow
def test_small_hall_through_broker_restart_and_hub_outage_reconciles(tmp_path):
    log = tmp_path / "citizens.log"
    out = subprocess.run([*HCP, str(SMALL), "--workdir", str(tmp_path / "run"), "--log", str(log)],
                         capture_output=True, text=True, timeout=120)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "fault: broker restart: begins" in text and "fault: hub outage: ends" in text
    assert _figure(text, "lost") == 0 and _figure(text, "duplicated") == 0, text
    pressed, at_hub = _figure(text, "presses stored"), _figure(text, "ratings at the hub")
    assert pressed == at_hub > 20, text
    assert re.search(r"services finished +(\d+) \(at the hub \1\)", text), text
    assert "OK: nothing lost, nothing doubled" in text
    # what each citizen did is what the seed drew for that ticket
    plan = json.loads(subprocess.run([*HCP, str(SMALL), "--plan"], capture_output=True, text=True,
                                     timeout=60).stdout)
    drawn = {(v["window"], v["ticket"]): v for vs in plan["visits"].values() for v in vs}
    lines = log.read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(drawn)
    checked = no_prompt = 0
    for line in lines:
        window, ticket, staff, action, *rest = line.split()
        v = drawn[(window, ticket)]
        assert staff == v["staff"]
        if action == "no":  # "no prompt": the device had no prompt to answer (broker restart)
            no_prompt += 1
            continue
        assert action == v["action"], line
        if action in ("press", "staff_press"):
            assert int(rest[0]) == v["score"], line
        checked += 1
    # Prompts are lost only while the broker is down (devices use clean sessions): a few of the
    # citizens at the counters then, more on a loaded machine (4 of 56 seen in CI); never most.
    assert checked + no_prompt == len(drawn) and no_prompt <= 8, (checked, no_prompt)


def test_reconciliation_asks_the_hub_and_fails_on_lost_and_doubled(hub_server):
    """A press the hub lacks is lost; a second rating answering one session is doubled; a
    rating at the hub that no press made is doubled too."""
    hub = hub_server
    key = os.urandom(32)
    token = hub.register_gateway("H1", os.urandom(32))
    hub.register_device("D1", "H1", "1", key)
    items = [service_item("s1", "A001", "1", finished_at="2026-11-21T09:30:00+08:00")]
    for n, sess in ((1, "s1"), (2, "s1"), (3, None)):
        bound = binding("s1", "A001", "1") if sess else None
        items.append(rating_item(sign_rating(key, "H1", "D1", n, 1, 1000 * n, sess, 5), bound))
    assert [r["status"] for r in hub.ingest(token, "H1", items).json()["results"]] == ["accepted"] * 4
    days = ("2026-11-20", "2026-11-22")
    presses = [Pressed("D1", 1, 5, "s1"), Pressed("D1", 3, 5, None)]
    clean = reconcile(hub, "H1", ["D1"], presses + [Pressed("D1", 2, 5, "s1")], 1, days, run_defaults=False)
    assert clean.duplicated == ["D1:2"]  # one session, two ratings: doubled whoever pressed them
    r = reconcile(hub, "H1", ["D1"], presses + [Pressed("D1", 4, 4, None)], 1, days)
    assert r.lost == ["D1:4"] and r.duplicated == ["D1:2"] and not r.ok
    assert (r.services_posted, r.services_at_hub, r.pressed, r.at_hub) == (1, 1, 3, 3)
    assert r.unbound == 1 and r.unbound_reasons == {"no_service_in_progress": 1}
    assert r.defaults == 0  # the one service is rated
    text = "\n".join(report_lines(r))
    assert "lost                   1 D1:4" in text and "duplicated             1 D1:2" in text
    services_lost = reconcile(hub, "H1", ["D1"], [Pressed("D1", 1, 5, "s1")], 2, days, run_defaults=False)
    assert services_lost.services_lost == 1 and not services_lost.ok
