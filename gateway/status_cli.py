"""`hcp gateway status`: the hall's status in a terminal, from the running gateway or from its file.

It asks the running gateway first (`GET /api/v1/status`: live MQTT and hub link states). When the
gateway does not answer and its SQLite file is known (`--config` gives `data_dir`, or `--db`), it
reads the file directly, read-only, and says so: devices, alerts, outbox and counters are all in the
file; the link states are not (shown as unknown). `--json` prints the status document itself.

Exit status: 0 shown; 1 neither the gateway nor its file could be read; 2 bad options or settings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import time
from pathlib import Path

import httpx

from gateway.config import DB_FILENAME, load_settings
from gateway.status import read_file
from gateway.status_views import render_text

DEFAULT_URL = "http://127.0.0.1:8710"
HTTP_TIMEOUT_S = 5.0  # the status read takes milliseconds; longer means the gateway is stuck


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path,
                        help="the gateway's JSON settings: its HTTP address, hall and data_dir")
    parser.add_argument("--url", help=f"the gateway's base URL (default: from --config, else {DEFAULT_URL})")
    parser.add_argument("--db", type=Path,
                        help="read this gateway.sqlite3 directly, without asking the gateway")
    parser.add_argument("--json", action="store_true", help="print the status document as JSON")


def run_from_args(args: argparse.Namespace) -> int:
    url, db, hall = args.url, args.db, None
    if args.config is not None:
        try:
            settings = load_settings(args.config)
        except (OSError, ValueError) as exc:
            print(f"hcp gateway status: bad settings: {exc}", file=sys.stderr)
            return 2
        host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::", "") else settings.http_host
        url = url or f"http://{host}:{settings.http_port}"
        db = db or settings.db_path
        hall = settings.hall
    if db is not None and db.is_dir():
        db = db / DB_FILENAME
    doc, source = None, ""
    if args.db is None:  # an explicit --db means "read the file", even if the gateway runs
        url = (url or DEFAULT_URL).rstrip("/")
        try:
            response = httpx.get(f"{url}/api/v1/status", timeout=HTTP_TIMEOUT_S)
            response.raise_for_status()
            doc, source = response.json(), f"live from {url}"
        except (httpx.HTTPError, ValueError) as exc:
            if db is None:
                print(f"hcp gateway status: the gateway at {url} did not answer ({exc}); give "
                      "--config or --db to read its database instead", file=sys.stderr)
                return 1
            print(f"the gateway at {url} did not answer ({type(exc).__name__}); "
                  f"reading {db} directly", file=sys.stderr)
    if doc is None:
        assert db is not None
        try:
            doc = asyncio.run(read_file(db, time.time()))
        except (OSError, RuntimeError, sqlite3.Error) as exc:
            print(f"hcp gateway status: {exc}", file=sys.stderr)
            return 1
        doc["hall"] = doc.get("hall") or hall
        source = f"from the file {db}; gateway not asked, links unknown"
    if args.json:
        print(json.dumps(doc, ensure_ascii=False, indent=1))
    else:
        sys.stdout.write(render_text(doc, source))
    return 0
