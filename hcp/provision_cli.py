"""`hcp provision`: the technician's command (docs/provisioning.md). Arguments, the site file, the
port choice and the questions on the terminal; the work is hcp/provision.py's."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from hcp.provision import SITE_KEYS, Site, provision
from hcp.registration import Service
from hcp.serial_console import Console, ConsoleError, candidates, find_devices

# Secrets come from the site file or the environment, never from the command line (shell history).
SECRET_ENV = {"gateway_admin_token": "HCP_GATEWAY_ADMIN_TOKEN", "hub_admin_token": "HCP_HUB_ADMIN_TOKEN",
              "wifi_pass": "HCP_WIFI_PASS", "mqtt_pass": "HCP_MQTT_PASS"}


class TerminalTechnician:
    def say(self, text: str) -> None:
        print(text, flush=True)

    def press(self, button: str) -> None:
        pass  # `say` has asked for it; the device notices the press itself

    def confirm(self, question: str) -> bool:
        while True:
            answer = input(f"{question} [y/n] ").strip().lower()
            if answer in ("y", "yes", "n", "no"):
                return answer.startswith("y")

    def ask(self, question: str) -> str:
        return input(f"{question} ")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--list", action="store_true",
                        help="list the serial ports and the counter devices answering on them")
    parser.add_argument("--port", help="the device's serial port (default: the only device found)")
    parser.add_argument("--dev", help="device id to give it, e.g. D07")
    parser.add_argument("--window", help="its window (default with --replace: the old device's)")
    parser.add_argument("--replace", metavar="OLD", help="this device replaces OLD, which is retired")
    parser.add_argument("--site", type=Path, help="the hall's site file (JSON): hall, gateway_url, "
                        "gateway_admin_token, hub_url, hub_admin_token, broker_host, broker_port, "
                        "wifi_ssid, wifi_pass, mqtt_user, mqtt_pass, lang, invite")
    parser.add_argument("--hall")
    parser.add_argument("--gateway-url")
    parser.add_argument("--hub-url")
    parser.add_argument("--broker-host")
    parser.add_argument("--broker-port", type=int)
    parser.add_argument("--wifi-ssid")
    parser.add_argument("--lang", choices=("zh-Hans", "zh-Hant", "en", "ug"))
    parser.add_argument("--force", action="store_true",
                        help="re-provision a device that is already another device")
    parser.add_argument("--selftest-s", type=int, default=15, help="seconds to wait for each button")
    parser.add_argument("--online-timeout", type=float, default=30.0)


def load_site(args: argparse.Namespace) -> Site:
    data: dict = json.loads(args.site.read_text()) if args.site else {}
    for key in ("hall", "gateway_url", "hub_url", "broker_host", "broker_port", "wifi_ssid", "lang"):
        if getattr(args, key, None) is not None:
            data[key] = getattr(args, key)
    for key, env in SECRET_ENV.items():
        if os.environ.get(env):
            data[key] = os.environ[env]
    missing = [k for k in ("hall", "gateway_url", "gateway_admin_token", "hub_url", "hub_admin_token")
               if not data.get(k)]
    if missing:
        raise ValueError(f"missing {', '.join(missing)} (site file, flags, or for tokens "
                         f"{', '.join(SECRET_ENV[k] for k in missing if k in SECRET_ENV)})")
    return Site(data["hall"], Service("gateway", data["gateway_url"], data["gateway_admin_token"]),
                Service("hub", data["hub_url"], data["hub_admin_token"]),
                {k: data[k] for k in SITE_KEYS if k in data})


def _list() -> int:
    found = find_devices()
    if not found:
        print("no serial ports found: plug the device in (a data cable, not a charging cable)")
        return 1
    for cand, info in found:
        what = (f"counter device {info.get('dev') or '(blank)'}, firmware {info.get('fw')}"
                if info else "no counter device answers")
        print(f"{cand.port}  {cand.known or cand.description}  — {what}")
    return 0


def _pick_port() -> str:
    found = [(c, i) for c, i in find_devices() if i is not None]
    if len(found) == 1:
        return found[0][0].port
    if not found:
        ports = ", ".join(c.port for c in candidates()) or "none"
        raise ConsoleError(f"no counter device answers on any serial port (ports: {ports}): "
                           f"plug it in, or give --port")
    raise ConsoleError(f"several counter devices found ({', '.join(c.port for c, _ in found)}): "
                       f"give --port")


def run_from_args(args: argparse.Namespace) -> int:
    if args.list:
        return _list()
    if not args.dev:
        print("hcp provision: give --dev (the device id), or --list", file=sys.stderr)
        return 2
    try:
        site = load_site(args)
    except (ValueError, OSError) as exc:
        print(f"hcp provision: {exc}", file=sys.stderr)
        return 2
    try:
        port = args.port or _pick_port()
        with Console(port) as con:
            check = provision(con, site, args.dev, args.window, TerminalTechnician(),
                              replace=args.replace, force=args.force, selftest_s=args.selftest_s,
                              online_timeout=args.online_timeout)
    except ConsoleError as exc:
        print(f"hcp provision: {exc}", file=sys.stderr)
        return 1
    print(check.text())
    return 0 if check.passed else 1
