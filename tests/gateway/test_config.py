"""Settings: file < HCP_GW_* environment < flags, validated at load."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gateway.config import load_settings

BASE = {"hall": "H1", "data_dir": "/tmp/gw", "hub_url": "http://hub.example/", "hub_token": "t",
        "gateway_key": "ab" * 32, "queue_token": "q", "admin_token": "a",
        "devices": [{"device": "D07", "window": "7"}]}


def test_file_then_environment_then_flags(tmp_path, monkeypatch):
    path = tmp_path / "gw.json"
    path.write_text(json.dumps({**BASE, "broker_port": 1884, "session_ttl_s": 30}))
    monkeypatch.setenv("HCP_GW_BROKER_PORT", "1885")
    s = load_settings(path, http_port=9000)
    assert (s.broker_port, s.session_ttl_s, s.http_port) == (1885, 30, 9000)
    assert s.hub_url == "http://hub.example" and s.phone_base == "http://hub.example"
    assert str(s.db_path) == "/tmp/gw/gateway.sqlite3"
    assert s.gateway_key_bytes == bytes([0xAB]) * 32 and s.devices[0].window == "7"
    assert "ab" * 32 not in repr(s)  # secrets stay out of logs


@pytest.mark.parametrize("change", [{"gateway_key": "ab" * 16}, {"hall": "H 1"},
                                    {"prompt_on": "called"}, {"devices": [{"device": "D/7", "window": "7"}]},
                                    {"unknown_setting": 1}])
def test_bad_settings_are_refused_at_load(tmp_path, change):
    path = tmp_path / "gw.json"
    path.write_text(json.dumps({**BASE, **change}))
    with pytest.raises(ValueError):
        load_settings(path)


def test_the_command_reports_bad_settings_and_exits_2(tmp_path):
    path = tmp_path / "gw.json"
    path.write_text(json.dumps({**BASE, "hall": "H 1"}))
    proc = subprocess.run([sys.executable, "-m", "gateway", "--config", str(path)],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2 and "bad hall id" in proc.stderr
