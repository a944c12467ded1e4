"""The public results page (hub/results.py says what is published and why): no sign-in, no
personal data, cache-friendly.

- GET /results?month=YYYY-MM            every region's halls and units (default: last month)
- GET /results/halls/{hall}?month=…     one hall: its units and, where published, staff ids

Caching: each answer carries an ETag (a digest of the page) and `Cache-Control: public`, a short
max-age for the current month (figures still move) and a longer one for earlier months; a request
with a matching If-None-Match gets 304. Rendered pages are also kept in process for CACHE_S, so a
crowd reloading the page costs the database one read per page per CACHE_S.
"""

from __future__ import annotations

import hashlib
import time
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import Response

from ..api.deps import SettingsDep, StoreDep
from ..dashboard import TARGET, Month
from ..results import hall_results, month_results
from .templating import render

router = APIRouter(include_in_schema=False)

CACHE_S = 60.0  # in-process cache of a rendered page
CACHE_ENTRIES = 256  # at most this many pages kept (then the cache starts over)
MAX_AGE_CURRENT_S = 300  # browsers and proxies: the month still counting
MAX_AGE_PAST_S = 3600  # an earlier month (late ratings and defaults still arrive, rarely)


def _month(text: str | None) -> Month:
    if not text:
        return Month.current().previous()  # 每月初…对上月…进行公示: last month's results
    try:
        return Month.parse(text)
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "month: YYYY-MM") from None


def _cache(request: Request) -> dict:
    cache = getattr(request.app.state, "results_cache", None)
    if cache is None or len(cache) > CACHE_ENTRIES:
        cache = request.app.state.results_cache = {}
    return cache


def _answer(request: Request, body: bytes, etag: str, month: Month) -> Response:
    max_age = MAX_AGE_CURRENT_S if month >= Month.current() else MAX_AGE_PAST_S
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={max_age}", "Vary": "Accept-Encoding"}
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    response = Response(body, media_type="text/html; charset=utf-8", headers=headers)
    return response


async def _cached(request: Request, key: tuple, month: Month, make) -> Response:
    cache = _cache(request)
    hit = cache.get(key)
    now = time.monotonic()
    if hit is None or hit[0] < now:
        page = await make()
        body = bytes(page.body)
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        hit = cache[key] = (now + CACHE_S, body, etag, dict(page.headers), page.status_code)
    _, body, etag, headers, code = hit
    if code != 200:
        return Response(body, status_code=code, media_type="text/html; charset=utf-8")
    response = _answer(request, body, etag, month)
    for name in ("content-security-policy", "x-content-type-options", "x-frame-options", "referrer-policy"):
        if name in headers:
            response.headers[name] = headers[name]
    return response


MonthQuery = Annotated[str | None, Query(max_length=7)]


@router.get("/results")
async def results(request: Request, store: StoreDep, month: MonthQuery = None) -> Response:
    m = _month(month)

    async def make() -> Response:
        return render(request, "results/index.html", {"month": m, "regions": await month_results(store, m),
                                                      "target": TARGET, "principal": None})
    return await _cached(request, ("index", str(m)), m, make)


@router.get("/results/halls/{hall}")
async def hall(request: Request, store: StoreDep, settings: SettingsDep, hall: str,
               month: MonthQuery = None) -> Response:
    m = _month(month)

    async def make() -> Response:
        found = await hall_results(store, hall, m, staff=settings.public_staff_results)
        if found is None:
            return render(request, "results/missing.html", {"month": m, "principal": None},
                          status_code=status.HTTP_404_NOT_FOUND)
        return render(request, "results/hall.html", {"month": m, "r": found, "target": TARGET,
                                                     "principal": None})
    return await _cached(request, ("hall", hall, str(m)), m, make)
