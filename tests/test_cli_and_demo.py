"""The `hcp` command and the README's main job, `hcp demo`, as a user runs them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

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


@pytest.mark.slow
def test_demo_shows_ratings_arriving_and_reconciles(tmp_path: Path):
    out = _run("demo", "--devices", "2", "--duration", "12", "--pace", "3", "--workdir",
               str(tmp_path / "demo"), timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    arrived = re.findall(r"^\d\d:\d\d:\d\d  window +\d+  ticket A\d+  staff S\d+  \d \S+  "
                         r"\[D0\d:\d+, signature verified\]", out.stdout, re.M)
    assert len(arrived) >= 3, out.stdout
    pressed = int(re.search(r"citizens who pressed +(\d+)", out.stdout).group(1))
    at_hub = int(re.search(r"ratings at the hub +(\d+)", out.stdout).group(1))
    assert pressed == at_hub == len(arrived)
    assert re.search(r"lost +0$", out.stdout, re.M)


def test_demo_stops_cleanly_on_ctrl_c(tmp_path: Path):
    proc = subprocess.Popen([*HCP, "demo", "--devices", "2", "--pace", "3", "--workdir",
                             str(tmp_path / "demo")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    seen = ""
    assert proc.stdout is not None
    while "signature verified" not in seen and time.monotonic() < deadline:
        seen += proc.stdout.readline()
    assert "signature verified" in seen, seen
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, seen + rest + err
    assert "reconciliation (asked of the hub)" in rest
    # nothing of the hall is left running
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout
    assert leftovers.strip() == "", leftovers
