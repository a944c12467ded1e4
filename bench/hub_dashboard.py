"""The operator dashboard, bulletins and public results (docs/dashboard.md) on a large region: each
page timed end to end over HTTP through the real hub process, signed in as an operator.

The region is bench/hub_stats.py's (100 halls x 20 windows, 2,000 devices, 40 units, October 2026,
N ratings written straight into the tables by SQL, rollups summed by SQL). The pages read the
rollups and the devices overview only, so their time should not grow with N.

    .venv/bin/python bench/hub_dashboard.py [--ratings 1000000] [--backends sqlite,postgres] [--requests 20]
    .venv/bin/python bench/hub_dashboard.py --quick   # 20,000 ratings, 3 requests a page: under a minute

It ends by printing one JSON line: per backend, the fill times and every page's p50 / p99 / mean.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench._hub_harness import open_database  # noqa: E402
from bench.hub_stats import _hub, _percentile, _table_rows, fill, log  # noqa: E402

PASSWORD = "bench password 20261121"
WARMUP = 2
PAGES = [  # (name, path): the month of the region's halls, as an operator of the region reads it
    ("home", "/"),  # the operator's to-do of cases (none here: the fill writes no case)
    ("overview", "/dashboard?month=2026-10"),
    ("overview by staff", "/dashboard?month=2026-10&by=staff"),
    ("hall", "/dashboard/halls/H007?month=2026-10"),
    ("hall by staff", "/dashboard/halls/H007?month=2026-10&by=staff"),
    ("hall bulletin page", "/dashboard/bulletin?month=2026-10&hall=H007"),
    ("hall bulletin csv", "/dashboard/bulletin.csv?month=2026-10&hall=H007"),
    ("hall bulletin xlsx", "/dashboard/bulletin.xlsx?month=2026-10&hall=H007"),
    ("unit bulletin xlsx", "/dashboard/bulletin.xlsx?month=2026-10&unit=U7"),
    ("public results", "/results?month=2026-10"),
    ("public hall", "/results/halls/H007?month=2026-10"),
]


def _sign_in(url: str, admin: dict[str, str]) -> httpx.Client:
    body = {"login": "bench-op", "name": "bench operator", "role": "operator", "password": PASSWORD,
            "region": "R1"}
    httpx.post(f"{url}/api/v1/users", json=body, headers=admin, timeout=60).raise_for_status()
    client = httpx.Client(base_url=url, timeout=120, headers={"Accept": "text/html"})
    form = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]*)"', form.text)
    assert token, "no sign-in form"
    answer = client.post("/login", data={"login": "bench-op", "password": PASSWORD, "csrf_token": token.group(1)})
    assert answer.status_code == 303, answer.text
    return client


def run_backend(backend: str, args: argparse.Namespace, folder: Path) -> dict[str, Any]:
    db = open_database(backend, folder, args.pg_dsn)
    try:
        workdir = folder / "hub"
        hub = _hub(db, workdir).start()  # creates and migrates the database
        hub.close()
        log(f"{backend}: filling {args.ratings:,} ratings")
        took = fill(db, args.ratings)
        result: dict[str, Any] = {"fill": took, "rows": _table_rows(db), "pages": {}}
        hub = _hub(db, workdir).start()
        try:
            client = _sign_in(hub.url, hub.admin_headers)
            for name, path in PAGES:
                for _ in range(WARMUP):
                    client.get(path).raise_for_status()
                times, size = [], 0
                for _ in range(args.requests):
                    started = time.perf_counter()
                    answer = client.get(path)
                    times.append((time.perf_counter() - started) * 1000)
                    answer.raise_for_status()
                    size = len(answer.content)
                figure = {"p50_ms": round(_percentile(times, 50), 1), "p99_ms": round(_percentile(times, 99), 1),
                          "mean_ms": round(statistics.fmean(times), 1), "bytes": size}
                result["pages"][name] = figure
                log(f"  {name}: p50 {figure['p50_ms']} ms, p99 {figure['p99_ms']} ms, {size:,} bytes")
            client.close()
        finally:
            hub.close()
        return result
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="20,000 ratings and 3 requests a page (a smoke run)")
    parser.add_argument("--ratings", type=int, default=None, help="ratings to fill (default 1,000,000)")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--requests", type=int, default=None, help="timed requests per page (default 20)")
    parser.add_argument("--pg-dsn", default=None, help="a PostgreSQL server (default: HCP_PG_DSN or a throwaway cluster)")
    args = parser.parse_args()
    args.ratings = args.ratings or (20_000 if args.quick else 1_000_000)
    args.requests = args.requests or (3 if args.quick else 20)
    results = {}
    for backend in args.backends.split(","):
        with tempfile.TemporaryDirectory(prefix=f"hcp-bench-dashboard-{backend}-") as folder:
            results[backend] = run_backend(backend, args, Path(folder))
    print(json.dumps({"ratings": args.ratings, "requests": args.requests, "results": results}))


if __name__ == "__main__":
    main()
