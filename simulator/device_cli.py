"""`hcp device`: one real firmware device under MicroPython, driven from the keyboard.

Type 1..5 and Enter to press a rating button, `i` for the staff invite key, `q` to quit. Every
change of what the device shows is printed. Useful to watch a device against a running gateway.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import threading
import time
from pathlib import Path

from simulator.device_process import DeviceProcess


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--flash", type=Path, required=True,
                        help="directory that is this device's flash (created if missing)")
    parser.add_argument("--dev", help="device id (first run: required)")
    parser.add_argument("--hall", help="hall id (first run: required)")
    parser.add_argument("--window", help="window id")
    parser.add_argument("--broker-host", default=None)
    parser.add_argument("--broker-port", type=int, default=None)
    parser.add_argument("--lang", choices=("zh-Hans", "zh-Hant", "en", "ug"))
    parser.add_argument("--invite", action="store_true", help="allow the staff invite key")
    parser.add_argument("--new-key", action="store_true",
                        help="write a fresh random key (printed once, so you can register it)")


def run_from_args(args: argparse.Namespace) -> int:
    flash: Path = args.flash
    cfg_path = flash / "config.json"
    config = json.loads(cfg_path.read_text()) if cfg_path.exists() else {}
    for name in ("dev", "hall", "window", "broker_host", "broker_port", "lang"):
        value = getattr(args, name)
        if value is not None:
            config[name] = value
    if args.invite:
        config["invite"] = True
    key = None
    if args.new_key or not (flash / "key.bin").exists():
        key = secrets.token_bytes(32)
        print(f"new device key (register it with the hub, it is not shown again): {key.hex()}")
    device = DeviceProcess(flash, config=config, key=key).start()
    print(f"device {config.get('dev')} running on flash {flash}; keys: 1-5 rate, i invite, q quit")
    stop = threading.Event()

    def show() -> None:
        seen = 0
        while not stop.is_set() and device.running:
            events = device.events[seen:]
            seen += len(events)
            for e in events:
                if e.name == "state":
                    print(f"[{time.strftime('%H:%M:%S')}] {e.data['state']:9} | "
                          + " | ".join(device.display.get("lines", []))
                          + (f"  [QR {device.display['qr']}]" if device.display.get("qr") else ""))
                elif e.name in ("rating", "ack", "online", "offline", "error", "badmsg"):
                    print(f"[{time.strftime('%H:%M:%S')}] {e.name}: {e.data}")
            time.sleep(0.05)

    watcher = threading.Thread(target=show, daemon=True)
    watcher.start()
    try:
        for line in sys.stdin:
            word = line.strip()
            if word == "q":
                break
            if word in ("1", "2", "3", "4", "5"):
                device.tap(word)
            elif word == "i":
                device.tap("invite")
            elif word:
                print("keys: 1-5 rate, i invite, q quit")
    except KeyboardInterrupt:
        pass
    stop.set()
    device.stop()
    return 0
