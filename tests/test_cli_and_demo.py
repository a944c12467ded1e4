"""The `hcp` command and the README's main job, `hcp demo`, as a user runs them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from tests.fixtures.accounts import Browser
import pytest

HCP = [sys.executable, "-m", "hcp.cli"]


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*HCP, *args], capture_output=True, text=True, timeout=timeout)


def test_help_lists_every_subcommand():
    out = _run("--help")
    assert out.returncode == 0
    for name in ("hub", "gateway", "device", "demo", "sim", "provision", "firmware"):
        assert re.search(rf"^\s+{name}\s+\S", out.stdout, re.M), name


@pytest.mark.parametrize("name,expect", [
    ("hub", "--admin-token"), ("gateway", "--config"), ("device", "--flash"), ("demo", "--duration"),
    ("sim", "--speed"), ("provision", "--replace"), ("firmware", "hcp firmware deploy:"),
    ("firmware build", "--board"), ("firmware deploy", "--port")])
def test_each_subcommand_explains_itself(name, expect):
    out = _run(*name.split(), "--help")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"usage: hcp {name}")
    assert expect in out.stdout


def test_unknown_subcommand_is_a_clear_error():
    out = _run("frobnicate")
    assert out.returncode == 2
    assert "invalid choice: 'frobnicate'" in out.stderr


def test_demo_hall_is_the_sim_scenario_with_the_demo_options():
    """`hcp demo` runs `hcp sim`'s engine on simulator/scenarios/demo-hall.toml: 12 real firmware
    devices by default, open from the given day until stopped; --devices past 12 repeat its windows."""
    from datetime import date

    from simulator.demo import demo_scenario
    sc = demo_scenario(day=date(2026, 11, 23))
    assert [w.id for w in sc.windows] == [str(i) for i in range(1, 13)]
    assert {w.device for w in sc.windows} == {"real"} and sc.days is None and sc.day == date(2026, 11, 23)
    assert sc.citizens.waiting_at_opening >= 1 and not sc.faults and not sc.frauds
    more = demo_scenario(devices=14, seed=5, pace=2)
    assert [w.device_id for w in more.windows][-3:] == ["D12", "D13", "D14"]
    assert more.windows[12].staff == sc.windows[0].staff and more.seed == 5 and more.speed == 2 * sc.speed
    assert [w.id for w in demo_scenario(devices=2).windows] == ["1", "2"]
    bad = _run("demo", "--devices", "51")
    assert bad.returncode == 2 and "--devices must be 1..50" in bad.stderr
    assert demo_scenario(qr_share=0.5).citizens.qr_share == 0.5 and sc.citizens.qr_share < 0.5
    too_many = _run("demo", "--qr-share", "0.9")  # with the 12 % who walk away: more than everyone
    assert too_many.returncode == 2 and too_many.stdout == ""
    assert too_many.stderr.strip() == ("hcp demo: --qr-share must be 0..0.88 (the demo hall's citizens "
                                       "who do not rate are 0.12)")


RATING_LINE = re.compile(r"^\d\d:\d\d:\d\d  window +(\d+)  ticket [A-Z]\d{3}  staff S\d+ \S+  [1-5] \S+  "
                         r"\[D(\d+):\d+, signature verified\]", re.M)
# the staff member is "?" when the phone's rating reached the hub before the hall's service did
PHONE_LINE = re.compile(r"^\d\d:\d\d:\d\d  window +(\d+)  service [0-9a-f]+  staff (?:S\d+ \S+|\?)  ([1-5]) \S+  "
                        r"\[phone page, phone:demo-hall:[0-9a-f]+:supplementary\]", re.M)


def _figure(out: str, name: str) -> int:
    return int(re.search(rf"^  {name} +(\d+)", out, re.M).group(1))


def _leftovers(workdir: Path) -> str:
    """Processes of the demo's hall still running: every one has the workdir on its command line
    (Mosquitto's config, the hub's database, the gateway's config, each device's flash)."""
    return subprocess.run(["pgrep", "-af", str(workdir)], capture_output=True, text=True).stdout.strip()


def test_demo_shows_ratings_arriving_and_reconciles(tmp_path: Path):
    import itertools

    from simulator.demo import demo_scenario
    from simulator.plan import draw
    workdir = tmp_path / "demo"
    # seed 16 with half the citizens on the QR code: window 1's first citizen scans it, window 2's
    # first two press, both called in the first 3 s
    first = {w: list(itertools.islice(visits, 2))
             for w, visits in draw(demo_scenario(devices=2, seed=16, pace=3, qr_share=0.5)).items()}
    assert first["1"][0].action == "qr" and [v.action for v in first["2"]] == ["press", "press"]
    assert first["2"][1].start_s < 3 * 3 * 30  # 3 real seconds at pace 3 (the hall's clock at 90x)
    out = _run("demo", "--devices", "2", "--duration", "6", "--pace", "3", "--seed", "16", "--qr-share", "0.5",
               "--workdir", str(workdir), timeout=120)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    # each rating printed as the hub has it, from the devices of the two windows
    arrived = RATING_LINE.findall(out.stdout)
    assert len(arrived) >= 2, text
    assert all(window == device for window, device in arrived) and {w for w, _ in arrived} <= {"1", "2"}, text
    # and each phone page rating, from the QR citizens (window 1's first one at least)
    phoned = PHONE_LINE.findall(out.stdout)
    assert "1" in {w for w, _ in phoned} and {w for w, _ in phoned} <= {"1", "2"}, text
    assert re.search(rf"^  rated by phone +{len(phoned)} \(at the hub {len(phoned)}\)$", text, re.M), text
    # the reconciliation asked of the hub: every press there, once; every service too
    assert "reconciliation (asked of the hub)" in text
    assert _figure(text, "presses stored") == _figure(text, "ratings at the hub") == len(arrived), text
    assert _figure(text, "lost") == 0 and _figure(text, "duplicated") == 0, text
    called = _figure(text, "citizens called")
    assert re.search(rf"^  services finished +{called} \(at the hub {called}\)$", text, re.M), text
    assert "OK: nothing lost, nothing doubled" in text
    assert _leftovers(workdir) == ""


def _start_demo(workdir: Path, *args: str) -> subprocess.Popen:
    """`hcp demo` in a session of its own, as on a terminal: Ctrl-C there is SIGINT to the whole
    foreground process group (`os.killpg`), not to the demo alone."""
    return subprocess.Popen([*HCP, "demo", "--workdir", str(workdir), *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _read_until(proc: subprocess.Popen, marker: str, timeout: float = 60) -> str:
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while marker not in seen and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
    assert marker in seen, seen
    return seen


def _rest(proc: subprocess.Popen, timeout: float) -> str:
    """What the demo prints until it exits. Read through `proc.stdout` itself: `communicate()` with
    a timeout reads the pipe beneath it and would miss lines `readline()` already buffered."""
    assert proc.stdout is not None
    timer = threading.Timer(timeout, os.killpg, (proc.pid, signal.SIGKILL))
    timer.start()
    try:
        rest = proc.stdout.read()
        proc.wait()
    finally:
        timer.cancel()
    return rest


def test_demo_prints_urls_that_answer_and_stops_cleanly_on_ctrl_c(tmp_path: Path):
    workdir = tmp_path / "demo"
    proc = _start_demo(workdir, "--devices", "2", "--pace", "3")
    try:
        seen = _read_until(proc, "signature verified")
        # the URLs it printed work as it says: the OpenAPI page and the gateway's status page without
        # a token, the hub's reads with the printed one (and not without), the devices of the hall there
        urls = dict(re.findall(r"^  (\w+) +(?:curl -sH 'Authorization: Bearer \S+' ')?(http://\S+?)'?(?:  |$)",
                               seen, re.M))
        token = re.search(r"^  token +(\S+)", seen, re.M).group(1)
        assert urls["API"].endswith("/docs") and urls["gateway"].endswith("/status"), urls
        assert urls["dashboard"] == urls["hub"] + "/dashboard", urls
        login, password = re.search(r"^  dashboard .*sign in as (\S+), password (\S+):", seen, re.M).groups()
        with Browser(urls["hub"]) as person:  # the printed account signs in and sees the dashboard
            assert person.sign_in(login, password).status_code == 303
            page = person.get("/dashboard")
            assert page.status_code == 200 and "/logout" in page.text, page.text[:300]
        for name in ("API", "gateway"):
            assert httpx.get(urls[name], timeout=10).status_code == 200, name
        bearer = {"Authorization": f"Bearer {token}"}
        for name in ("devices", "stats", "ratings"):
            assert httpx.get(urls[name], timeout=10).status_code == 401, name
            assert httpx.get(urls[name], headers=bearer, timeout=10).status_code == 200, name
        devices = httpx.get(urls["devices"], headers=bearer, timeout=10).json()
        assert sorted(d["device"] for d in devices) == ["D1", "D2"], devices
        assert len(_leftovers(workdir).splitlines()) == 6  # the demo, Mosquitto, hub, gateway, 2 devices
        os.killpg(proc.pid, signal.SIGINT)
        rest = _rest(proc, 90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = seen + rest
    assert proc.returncode == 0, text
    assert re.search(r"^stopping at day 1 \d\d:\d\d: no more citizens come", rest, re.M), rest
    assert "waiting for the last ratings to reach the hub (up to 60 s)" in rest
    assert "reconciliation (asked of the hub)" in rest
    assert _figure(rest, "lost") == 0 and _figure(rest, "duplicated") == 0, rest
    assert _figure(rest, "presses stored") == _figure(rest, "ratings at the hub") == len(RATING_LINE.findall(text))
    # those at a counter when Ctrl-C came were served: every citizen called has a finished service
    called = _figure(rest, "citizens called")
    assert re.search(rf"^  services finished +{called} \(at the hub {called}\)$", rest, re.M), rest
    assert "OK: nothing lost, nothing doubled" in rest
    assert _leftovers(workdir) == ""  # nothing of the hall is left running


def test_demo_second_ctrl_c_stops_at_once(tmp_path: Path):
    workdir = tmp_path / "demo"
    proc = _start_demo(workdir, "--devices", "1")
    try:
        _read_until(proc, "Citizens are arriving")
        os.killpg(proc.pid, signal.SIGINT)
        time.sleep(0.3)
        os.killpg(proc.pid, signal.SIGINT)
        began = time.monotonic()
        rest = _rest(proc, 30)
        took = time.monotonic() - began
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, rest
    assert "stopped at once: every process of the hall killed, no reconciliation" in rest
    assert "reconciliation (asked of the hub)" not in rest
    assert took < 10, took
    assert _leftovers(workdir) == ""
