"""Statistics (hub/stats.py, GET /api/v1/stats): the rollups kept at ingest equal a recount of the
raw records, whatever arrives in whatever order, on both backends.

`recount` below is a second, independent implementation of docs/hub.md "Statistics" over the raw
tables (days by zoneinfo's Asia/Shanghai, not by hub.stats), and every figure the API answers for
every group, period and filter is compared with it.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hcp.protocol import sign_rating
from hub import stats
from hub.api.models import StatsOut
from hub.default_rules import PRESETS
from hub.stats import Figures, ServiceFacts, StatsQuery, china_day
from hub.store import HubStore, rollups
from hub.workdays import WorkCalendar
from tests.fixtures.hub import running_app

from .conftest import device_key

SHANGHAI = ZoneInfo("Asia/Shanghai")
GATEWAY_KEY = b"\x17" * 32
GROUPS = [None, *stats.GROUPS]
MAX_EXAMPLES = 25  # each example posts a few batches and checks 73 answers: about 0.3 s each

# Times as gateways may write them: day and month boundaries in China, other offsets, the space
# separator, the basic format (the slow path of china_day), all long before the tests run, so the
# default job finds every unrated finished service due.
TIMES = [
    "2025-02-28T23:59:59+08:00",        # Feb 28
    "2025-02-28T16:00:00Z",             # Mar 1 00:00 in China: another day and month
    "2025-03-01T00:00:00+08:00",
    "2025-03-01T09:30:07.412+08:00",
    "2025-03-01T10:00:00-05:00",        # Mar 1 23:00 in China
    "2025-03-01 12:00:00+08:00",
    "2025-03-02T08:00:00+09:00",        # Mar 2 07:00 in China
    "20250302T235959+0800",
    "2025-03-31T20:00:00-04:00",        # Apr 1 08:00 in China
]
WINDOWS, STAFF, MATTERS, UNITS = ["1", "2"], [None, "S1", "S2"], [None, "M1", "M2"], [None, "U1", "市监局"]


# ---------------------------------------------------------------------------- pure


def _shanghai(text: str) -> str:
    return datetime.fromisoformat(text).astimezone(SHANGHAI).date().isoformat()


# from 1992: Asia/Shanghai in the tz database had summer time 1986-1991 (and other offsets in the
# 1940s); the hub's China day is UTC+8 throughout, which is what the region's rules mean today
@given(moment=st.datetimes(min_value=datetime(1992, 1, 2), max_value=datetime(9998, 12, 31)),
       minutes=st.integers(-14 * 60, 14 * 60), seconds=st.sampled_from([0, 0, 30]),
       sep=st.sampled_from(["T", " "]), spec=st.sampled_from(["auto", "minutes", "seconds", "milliseconds"]))
def test_china_day_is_the_date_in_shanghai(moment, minutes, seconds, sep, spec):
    zone = timezone(timedelta(minutes=minutes, seconds=seconds))
    text = moment.replace(tzinfo=zone).isoformat(sep=sep, timespec=spec)
    assert china_day(text) == _shanghai(text)


def test_china_day_of_written_forms():
    assert [china_day(t) for t in TIMES] == [_shanghai(t) for t in TIMES] == [
        "2025-02-28", "2025-03-01", "2025-03-01", "2025-03-01", "2025-03-01", "2025-03-01",
        "2025-03-02", "2025-03-02", "2025-04-01"]
    assert china_day("9999-12-31T23:00:00-10:00") == "9999-12-31"  # past year 9999 in China: its own date


def test_figures_of_the_bulletin_in_seed_001():
    """23,283 ratings, 23,156 非常满意, 126 满意: "好评率 99.99%" (one rating is 差评)."""
    f = Figures(services=25_000, rated=23_283, rated_or_default=24_000, defaulted=800,
                scores=(1, 0, 0, 126, 23_156))
    assert (f.ratings, f.bad, f.good) == (23_283, 1, 23_282)
    assert f.satisfaction == 23_282 / 23_283 and int(f.satisfaction * 10_000) == 9999  # 99.99%, cut
    assert f.evaluation_rate == 23_283 / 25_000 and f.evaluation_rate_with_defaults == 0.96
    assert f.satisfaction_with_defaults == (23_282 + 800) / (23_283 + 800)
    assert Figures().evaluation_rate is None and Figures().satisfaction is None


def test_query_limits():
    StatsQuery(date(2024, 1, 1), date(2024, 12, 31))  # 366 days
    with pytest.raises(ValueError, match="at most 366"):
        StatsQuery(date(2024, 1, 1), date(2025, 1, 1))
    with pytest.raises(ValueError, match="before"):
        StatsQuery(date(2025, 3, 2), date(2025, 3, 1))
    with pytest.raises(ValueError, match="group"):
        StatsQuery(date(2025, 3, 1), date(2025, 3, 1), group="floor")


def test_a_month_is_read_whole_where_the_range_covers_it():
    def spans(a: date, b: date, period: str = "month"):
        return StatsQuery(a, b, period).spans()

    assert spans(date(2026, 10, 1), date(2026, 10, 31)) == (["2026-10"], [])
    assert spans(date(2026, 9, 15), date(2026, 11, 3)) == (
        ["2026-10"], [("2026-09-15", "2026-09-30"), ("2026-11-01", "2026-11-03")])
    assert spans(date(2024, 2, 1), date(2024, 2, 29)) == (["2024-02"], [])  # leap February
    assert spans(date(2024, 2, 1), date(2024, 2, 28)) == ([], [("2024-02-01", "2024-02-28")])
    assert spans(date(9999, 12, 1), date(9999, 12, 31)) == (["9999-12"], [])
    assert spans(date(2026, 9, 15), date(2026, 11, 3), "day") == ([], [("2026-09-15", "2026-11-03")])


@given(start=st.dates(date(1, 1, 1), date(9998, 12, 31)), days=st.integers(0, 365))
def test_the_spans_cover_each_day_once(start, days):
    end = start + timedelta(days=days)
    months, ranges = StatsQuery(start, end, "month").spans()
    covered = [d for first, last in ranges for d in _days(date.fromisoformat(first), date.fromisoformat(last))]
    for month in months:
        first = date.fromisoformat(month + "-01")
        covered += [d for d in _days(first, first + timedelta(days=30)) if d.isoformat()[:7] == month]
    assert sorted(covered) == list(_days(start, end))


def _days(first: date, last: date) -> list[date]:
    return [first + timedelta(days=i) for i in range((last - first).days + 1)]


def test_default_rows_count_each_service_once():
    """stats_rows_for_defaults, as the default job uses it: a default makes a service rated
    "with defaults" unless a bound rating did already; a no-show is never defaulted."""
    done = ServiceFacts("s1", "7", None, "M1", None, "2025-03-01T10:00:00+08:00", "finished")
    rated = ServiceFacts("s2", "7", None, "M1", None, "2025-03-01T11:00:00+08:00", "finished")
    absent = ServiceFacts("s3", "7", None, "M1", None, "2025-03-01T12:00:00+08:00", "no_show")
    tables = dict(rollups.stats_rows_for_defaults([("H1", done, False), ("H1", rated, True),
                                                   ("H1", absent, False)]))
    month, day = tables[stats.ROLLUPS[1]]  # stats_hall: the month's row, then the day's
    assert (month[:2], day[:2], month[2:]) == (("H1", "2025-03"), ("H1", "2025-03-01"), day[2:])
    counters = dict(zip(stats.COUNTERS, day[2:], strict=True))
    assert (counters["defaulted"], counters["rated_or_default"], counters["services"]) == (2, 1, 0)
    assert [row[1] for row in tables[stats.FINE]] == ["2025-03-01"]  # the fine table: days only


# ---------------------------------------------------------------------------- the recount


@dataclass(frozen=True)
class Raw:
    """The raw records, read once for many recounts."""

    regions: dict[str, str]
    rated: set[tuple[str, str]]
    defaulted: set[tuple[str, str]]
    ratings: list[tuple]
    services: list[tuple]
    not_adopted: list[tuple] = ()  # type: ignore[assignment]  # the statistics keys of ratings not adopted

    @classmethod
    def read(cls, hub) -> Raw:
        return cls(dict(hub.query("SELECT hall, region FROM halls")),
                   set(hub.query("SELECT hall, service FROM ratings WHERE service IS NOT NULL")),
                   set(hub.query("SELECT hall, service FROM default_ratings")),
                   hub.query("SELECT hall, received_at, score, window_id, staff_id, matter_code, unit, "
                             "service FROM ratings"),
                   hub.query("SELECT hall, id, window_id, staff_id, matter_code, unit, finished_at, "
                             "outcome FROM services"),
                   [tuple(v if v != "" else None for v in row) for row in hub.query(
                       "SELECT hall, stats_day, stats_window, stats_staff, stats_matter, stats_unit "
                       "FROM appeal_decisions WHERE outcome = 'not_adopted'")])


def recount(raw: Raw, query: StatsQuery) -> dict[tuple, dict]:
    """Every figure of `query`, from the raw records: (period, key items) -> the API's fields."""
    regions, rated, defaulted = raw.regions, raw.rated, raw.defaulted
    counts: dict[tuple, dict] = defaultdict(lambda: defaultdict(int))

    def select(hall: str, day: str) -> bool:
        return (query.start.isoformat() <= day <= query.end.isoformat()
                and query.hall in (None, hall) and query.region in (None, regions.get(hall)))

    def key(hall, day, window, staff, matter, unit) -> tuple:
        period = day if query.period == "day" else day[:7]
        by = {None: {}, "region": {"region": regions.get(hall)}, "hall": {"hall": hall},
              "window": {"hall": hall, "window": window}, "staff": {"staff_id": staff},
              "matter": {"matter_code": matter}, "unit": {"unit": unit}}[query.group]
        return period, tuple(by.items())

    for hall, received_at, score, window, staff, matter, unit, service in raw.ratings:
        day = _shanghai(received_at)
        if select(hall, day):
            c = counts[key(hall, day, window, staff, matter, unit)]
            c[f"s{score}"] += 1
            c["unbound"] += service is None
    for hall, day, window, staff, matter, unit in raw.not_adopted:
        if select(hall, day):
            counts[key(hall, day, window, staff, matter, unit)]["not_adopted"] += 1
    for hall, sid, window, staff, matter, unit, finished_at, outcome in raw.services:
        day = _shanghai(finished_at)
        if not select(hall, day):
            continue
        c = counts[key(hall, day, window, staff, matter, unit)]
        if outcome == "no_show":
            c["no_shows"] += 1
            continue
        c["services"] += 1
        c["rated"] += (hall, sid) in rated
        c["defaulted"] += (hall, sid) in defaulted
        c["rated_or_default"] += (hall, sid) in rated or (hall, sid) in defaulted

    def ratio(a: int, b: int) -> float | None:
        return a / b if b else None

    expected = {}
    for k, c in counts.items():
        ratings = sum(c[f"s{s}"] for s in range(1, 6))
        bad = c["s1"] + c["s2"]
        expected[k] = {
            "services": c["services"], "no_shows": c["no_shows"], "ratings": ratings,
            "scores": {str(s): c[f"s{s}"] for s in range(5, 0, -1)}, "bad": bad,
            "unbound": c["unbound"], "not_adopted": c["not_adopted"], "rated_services": c["rated"],
            "rated_services_with_defaults": c["rated_or_default"], "defaulted": c["defaulted"],
            "evaluation_rate": ratio(c["rated"], c["services"]),
            "evaluation_rate_with_defaults": ratio(c["rated_or_default"], c["services"]),
            "satisfaction": ratio(ratings - bad, ratings - c["not_adopted"]),
            "satisfaction_with_defaults": ratio(ratings - bad + c["defaulted"],
                                                ratings - c["not_adopted"] + c["defaulted"])}
    return expected


def answered(hub, query: StatsQuery) -> dict[tuple, dict]:
    params = {"from": query.start.isoformat(), "to": query.end.isoformat(), "period": query.period}
    for name in ("group", "region", "hall"):
        if getattr(query, name) is not None:
            params[name] = getattr(query, name)
    response = hub.http.get("/api/v1/stats", params=params, headers=hub.admin_headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert StatsOut.model_validate(body).model_dump(by_alias=True) == body  # as documented
    rows = {}
    for row in body["rows"]:
        figures = {k: v for k, v in row.items() if k not in ("period", "key")}
        rows[(row["period"], tuple(row["key"].items()))] = figures
    keys = [(p, dict(k)) for p, k in rows]
    assert keys == sorted(keys, key=lambda pk: (pk[0], [(v is None, v or "") for v in pk[1].values()]))
    total = defaultdict(int)
    for figures in rows.values():
        for name in ("services", "ratings", "bad", "rated_services", "defaulted"):
            total[name] += figures[name]
    assert {name: body["total"][name] for name in total} == dict(total)
    return rows


def check_every_figure(hub, halls: list[str], regions: list[str]) -> int:
    """Compare the API with the recount for every group, both periods, and each filter."""
    compared, raw = 0, Raw.read(hub)
    start, end = date(2025, 2, 1), date(2025, 4, 30)
    for group, period, (region, hall) in itertools.product(
            GROUPS, ("day", "month"), [(None, None), (regions[0], None), (regions[1], None),
                                       (None, halls[0]), (regions[0], halls[2])]):
        query = StatsQuery(start, end, period, group, region, hall)
        assert answered(hub, query) == recount(raw, query), query
        compared += 1
    for narrow in (StatsQuery(date(2025, 3, 1), date(2025, 3, 1), "day", "window"),
                   StatsQuery(date(2025, 2, 28), date(2025, 3, 31), "month", "staff"),  # a day, a month
                   StatsQuery(date(2025, 3, 2), date(2025, 4, 1), "month", "hall", regions[0])):  # days only
        assert answered(hub, narrow) == recount(raw, narrow), narrow
    return compared


# ---------------------------------------------------------------------------- random batches


@dataclass(frozen=True)
class ServiceSpec:
    hall: int
    sid: int
    outcome: str
    finished_at: str
    window: str
    staff: str | None
    matter: str | None
    unit: str | None


@dataclass(frozen=True)
class RatingSpec:
    hall: int
    dev: int
    n: int
    score: int
    service: int | None  # bound to service s{service} of its hall, or unbound
    received_at: str
    window: str
    staff: str | None
    matter: str | None
    unit: str | None


HALLS = 4  # h0, h1 in region r1; h2 in r2; h3 in none
dims = dict(window=st.sampled_from(WINDOWS), staff=st.sampled_from(STAFF),
            matter=st.sampled_from(MATTERS), unit=st.sampled_from(UNITS))
service_specs = st.builds(ServiceSpec, hall=st.integers(0, HALLS - 1), sid=st.integers(0, 5),
                          outcome=st.sampled_from(["finished", "finished", "no_show"]),
                          finished_at=st.sampled_from(TIMES), **dims)
rating_specs = st.builds(RatingSpec, hall=st.integers(0, HALLS - 1), dev=st.integers(0, 1),
                         n=st.integers(1, 6), score=st.integers(1, 5),
                         service=st.one_of(st.none(), st.integers(0, 5)),
                         received_at=st.sampled_from(TIMES), **dims)
batches = st.lists(st.lists(st.one_of(service_specs, rating_specs, rating_specs), max_size=14),
                   min_size=1, max_size=6)


class Region:
    """One example's halls, regions and devices, named apart from the other examples'."""

    def __init__(self, hub, ns: str):
        self.hub = hub
        self.halls = [f"{ns}h{i}" for i in range(HALLS)]
        self.regions = [f"{ns}r1", f"{ns}r2"]
        self.tokens = {}
        for region in self.regions:
            put = hub.http.put(f"/api/v1/regions/{region}", json={"name": region, "preset": "jilin"},
                               headers=hub.admin_headers)
            assert put.status_code == 200, put.text
        for i, hall in enumerate(self.halls):
            self.tokens[hall] = hub.register_gateway(hall, GATEWAY_KEY)
            for dev in range(2):
                hub.register_device(self.device(i, dev), hall, WINDOWS[dev], device_key(self.device(i, dev)))
            if i < 3:
                put = hub.http.put(f"/api/v1/halls/{hall}", json={"region": self.regions[i // 2]},
                                   headers=hub.admin_headers)
                assert put.status_code == 200, put.text

    def device(self, hall: int, dev: int) -> str:
        return f"{self.halls[hall]}d{dev}"

    def item(self, spec: ServiceSpec | RatingSpec) -> dict:
        extra = {"staff_id": spec.staff, "matter_code": spec.matter, "unit": spec.unit}
        if isinstance(spec, ServiceSpec):
            return {"kind": "service", "id": f"s{spec.sid}", "ticket": "A1", "window": spec.window,
                    **extra, "finished_at": spec.finished_at, "outcome": spec.outcome}
        dev = self.device(spec.hall, spec.dev)
        payload = sign_rating(device_key(dev), self.halls[spec.hall], dev, spec.n, 1, spec.n,
                              None, spec.score).payload()
        binding = None if spec.service is None else {
            "service": f"s{spec.service}", "ticket": "A1", "window": spec.window, **extra}
        return {"kind": "rating", "rating": payload, "received_at": spec.received_at, "offset_ms": 0,
                "binding": binding, "unbound_reason": None if binding else "no_service_in_progress"}

    def post(self, specs: list) -> None:
        by_hall = defaultdict(list)
        for spec in specs:
            by_hall[self.halls[spec.hall]].append(self.item(spec))
        for hall, items in by_hall.items():
            response = self.hub.ingest(self.tokens[hall], hall, items)
            assert response.status_code == 200, response.text


def snapshot(hub) -> dict[str, list[tuple]]:
    return {t: sorted(hub.query(f"SELECT * FROM {t}")) for t in rollups.ROLLUP_TABLES}


def rebuild(hub) -> dict:
    response = hub.http.post("/api/v1/stats/rebuild", headers=hub.admin_headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.slow
def test_every_figure_equals_a_recount_of_the_raw_records(tmp_path, hub_db):
    """Random batches of several halls in two regions (and one in none): services and ratings in
    any order (ratings before their service, several ratings of one service, unbound ones, no-shows,
    conflicting and repeated items), the default job run in between, late ratings after it. After
    each example every figure equals the recount; at the end a rebuild changes no rollup row."""
    namespaces = (f"T{i}" for i in itertools.count())
    with running_app(tmp_path, defaults_interval_s=0, **hub_db) as hub:

        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(batches=batches, data=st.data())
        def check(batches, data):
            region = Region(hub, next(namespaces))
            defaults_at = data.draw(st.integers(0, len(batches)))
            again = data.draw(st.lists(st.integers(0, len(batches) - 1), max_size=2))
            for number, specs in enumerate(batches):
                if number == defaults_at:
                    run = hub.http.post("/api/v1/defaults/run", headers=hub.admin_headers)
                    assert run.status_code == 200, run.text
                region.post(specs)
            for number in again:  # repeated batches change nothing
                region.post(batches[number])
            # and always a service defaulted, then rated late (sid 9, n 9: no spec names them)
            region.post([ServiceSpec(0, 9, "finished", TIMES[3], "1", "S1", None, None)])
            assert hub.http.post("/api/v1/defaults/run", headers=hub.admin_headers).json()["applied"] >= 1
            region.post([RatingSpec(0, 0, 9, 2, 9, TIMES[-1], "2", "S2", "M2", "U1")])
            assert check_every_figure(hub, region.halls, region.regions) == 70

        check()
        [(defaulted,)] = hub.query("SELECT COUNT(*) FROM default_ratings")
        [(late,)] = hub.query("SELECT COUNT(*) FROM default_ratings d WHERE EXISTS (SELECT 1 FROM ratings r "
                              "WHERE r.hall = d.hall AND r.service = d.service)")
        assert defaulted > 0 and late > 0  # the examples did reach defaults, and late ratings after them
        before = snapshot(hub)
        assert sum(map(len, before.values())) > 0
        rebuilt = rebuild(hub)
        assert rebuilt["rows"] == {t: len(rows) for t, rows in before.items()}
        assert snapshot(hub) == before


def test_rebuild_repairs_damaged_rollups_and_runs_when_a_migration_asks(tmp_path, hub_db):
    """After a restore the rollups may not match the records: POST /api/v1/stats/rebuild recounts
    them; a row in stats_rebuild (as the migration that adds them leaves) makes the next start do it."""
    with running_app(tmp_path, defaults_interval_s=0, **hub_db) as hub:
        region = Region(hub, "R")
        region.post([RatingSpec(0, 0, n, n % 5 + 1, n % 3, TIMES[n], "1", "S1", None, None) for n in range(1, 6)]
                    + [ServiceSpec(0, s, "finished", TIMES[s], "1", "S1", "M1", None) for s in range(3)])
        good = snapshot(hub)
        query = StatsQuery(date(2025, 2, 1), date(2025, 4, 30), "month", "staff")
        assert answered(hub, query) == recount(Raw.read(hub), query)
        with raw_db(hub) as run:
            run("DELETE FROM stats_hall")
            run("UPDATE stats_fine SET score1 = score1 + 7")
        assert snapshot(hub) != good
        rebuilt = rebuild(hub)
        assert (rebuilt["ratings"], rebuilt["services"]) == (5, 3)
        assert snapshot(hub) == good
        with raw_db(hub) as run:
            for table in rollups.ROLLUP_TABLES:
                run(f"DELETE FROM {table}")
            run("INSERT INTO stats_rebuild (id) VALUES (1)")
    with running_app(tmp_path, defaults_interval_s=0, **hub_db) as hub:
        assert snapshot(hub) == good
        assert hub.query("SELECT COUNT(*) FROM stats_rebuild") == [(0,)]


class raw_db:  # noqa: N801 (used as a statement: `with raw_db(hub) as run`)
    """Statements on the app's database behind the hub's back (a damaged restore)."""

    def __init__(self, hub):
        self.hub = hub

    def __enter__(self) -> Callable[[str], None]:
        url = self.hub.settings.postgres_url
        self.db = sqlite3.connect(self.hub.db_path) if url is None else psycopg.connect(url)
        return lambda sql: self.db.execute(sql) and None

    def __exit__(self, *exc: object) -> None:
        self.db.commit()
        self.db.close()


# ---------------------------------------------------------------------------- concurrency


@pytest.mark.anyio
async def test_a_rating_and_its_service_in_concurrent_batches_count_once(store: HubStore):
    """A rating bound to a service and the service itself, posted at the same moment by two
    requests: each service is counted rated exactly once (PostgreSQL runs them side by side)."""
    await store.register_gateway("H1", "ab" * 32, GATEWAY_KEY)
    await store.register_device("D1", "H1", "1", device_key("D1"))
    finished = "2025-03-01T10:00:00+08:00"
    for n in range(1, 41):
        sid = f"c{n}"
        rating = sign_rating(device_key("D1"), "H1", "D1", n, 1, n, None, 4).payload()
        rating_item = {"kind": "rating", "rating": rating, "received_at": finished, "offset_ms": 0,
                       "binding": {"service": sid, "ticket": "A1", "window": "1"}, "unbound_reason": None}
        service_item = {"kind": "service", "id": sid, "ticket": "A1", "window": "1",
                        "finished_at": finished, "outcome": "finished"}
        first, second = (rating_item, service_item) if n % 2 else (service_item, rating_item)
        results = await asyncio.gather(store.ingest("H1", [first]), store.ingest("H1", [second]))
        assert [r[0].status for r in results] == ["accepted", "accepted"]
    (row,) = await store.stats(StatsQuery(date(2025, 3, 1), date(2025, 3, 1)))
    assert (row.figures.services, row.figures.rated, row.figures.rated_or_default) == (40, 40, 40)
    assert row.figures.scores[3] == 40
    rebuilt = await store.rebuild_stats()
    assert rebuilt.rows["stats_hall"] == 2  # the day and its month
    assert await store.stats(StatsQuery(date(2025, 3, 1), date(2025, 3, 1))) == [row]


@pytest.mark.anyio
async def test_default_job_counts_its_defaults(store: HubStore):
    """run_defaults (the job) counts each default into the rollups in its own transaction; a
    rating that arrives after the default makes the service rated, not rated twice."""
    await store.register_gateway("H1", "cd" * 32, GATEWAY_KEY)
    await store.register_device("D1", "H1", "1", device_key("D1"))
    await store.put_region("R", name="R", area_code=None, default_rule=PRESETS["jilin"].rule)
    await store.put_hall("H1", region="R")
    services = [{"kind": "service", "id": f"d{i}", "ticket": "A1", "window": "1", "staff_id": "S1",
                 "finished_at": "2025-03-01T10:00:00+08:00", "outcome": "finished"} for i in range(3)]
    await store.ingest("H1", services)
    result = await store.run_defaults(WorkCalendar(), now=datetime(2025, 4, 1, tzinfo=UTC))
    assert result.applied == 3
    late = sign_rating(device_key("D1"), "H1", "D1", 1, 1, 1, None, 1).payload()
    await store.ingest("H1", [{"kind": "rating", "rating": late, "received_at": "2025-04-02T10:00:00+08:00",
                               "offset_ms": 0, "binding": {"service": "d0", "ticket": "A1", "window": "1"},
                               "unbound_reason": None}])
    (march, april) = await store.stats(StatsQuery(date(2025, 3, 1), date(2025, 4, 30), "month", "staff"))
    assert (march.period, march.key) == ("2025-03", {"staff_id": "S1"})
    assert (march.figures.services, march.figures.defaulted, march.figures.rated,
            march.figures.rated_or_default) == (3, 3, 1, 3)
    assert (april.period, april.key, april.figures.bad) == ("2025-04", {"staff_id": None}, 1)
    assert march.figures.satisfaction_with_defaults == 3 / 3  # the 差评 is counted in April
    before = await store.stats(StatsQuery(date(2025, 3, 1), date(2025, 4, 30), "day", "window"))
    await store.rebuild_stats()
    assert await store.stats(StatsQuery(date(2025, 3, 1), date(2025, 4, 30), "day", "window")) == before


# ---------------------------------------------------------------------------- the API's answers


@pytest.mark.parametrize(("params", "where"), [
    ({"from": "2025-03-01", "to": "2025-02-28"}, "before"),
    ({"from": "2025-01-01", "to": "2026-01-02"}, "at most 366"),
    ({"from": "2025-3-1", "to": "2025-03-02"}, "YYYY-MM-DD"),
    ({"from": "1740787200", "to": "2025-03-02"}, "YYYY-MM-DD"),
    ({"from": "2025-02-30", "to": "2025-03-02"}, "date"),
    ({"from": "2025-03-01"}, "Field required"),
    ({"from": "2025-03-01", "to": "2025-03-02", "group": "floor"}, "region"),
    ({"from": "2025-03-01", "to": "2025-03-02", "period": "week"}, "day"),
    ({"from": "2025-03-01", "to": "2025-03-02", "hall": "H 1"}, "pattern"),
    ({"from": "2025-03-01", "to": "2025-03-02", "region": "x" * 40}, "pattern"),
    ({"from": "2025-03-01", "to": "2025-03-02", "grup": "hall"}, "unknown query parameter"),
])
def test_bad_parameters_are_422_saying_why(hub_app, params, where):
    response = hub_app.http.get("/api/v1/stats", params=params, headers=hub_app.admin_headers)
    assert response.status_code == 422, response.text
    assert where in response.text, response.text


def test_an_answer_too_large_is_refused(hub_app, monkeypatch):
    token = hub_app.register_gateway("H1", GATEWAY_KEY)
    services = [{"kind": "service", "id": f"s{i}", "ticket": "A1", "window": str(i), "outcome": "finished",
                 "finished_at": "2025-03-01T10:00:00+08:00"} for i in range(1, 5)]
    assert hub_app.ingest(token, "H1", services).status_code == 200
    params = {"from": "2025-03-01", "to": "2025-03-31", "period": "month", "group": "window"}
    monkeypatch.setattr(stats, "MAX_ROWS", 4)
    assert len(hub_app.http.get("/api/v1/stats", params=params, headers=hub_app.admin_headers).json()["rows"]) == 4
    monkeypatch.setattr(stats, "MAX_ROWS", 3)
    refused = hub_app.http.get("/api/v1/stats", params=params, headers=hub_app.admin_headers)
    assert refused.status_code == 422 and "more than 3 rows" in refused.text, refused.text


def test_answer_without_data_and_without_token(hub_app):
    ok = hub_app.http.get("/api/v1/stats", params={"from": "2025-03-01", "to": "2025-03-31",
                                                   "period": "month", "group": "hall", "region": "nowhere"},
                          headers=hub_app.admin_headers)
    assert ok.status_code == 200, ok.text
    body = ok.json()
    assert (body["from"], body["to"], body["group"], body["region"], body["rows"]) == \
        ("2025-03-01", "2025-03-31", "hall", "nowhere", [])
    assert body["total"]["services"] == 0 and body["total"]["evaluation_rate"] is None
    refused = hub_app.http.get("/api/v1/stats", params={"from": "2025-03-01", "to": "2025-03-31"})
    assert refused.status_code == 401
    assert hub_app.http.post("/api/v1/stats/rebuild").status_code == 401


def test_every_request_within_the_limits_is_answered(hub_app):
    """What the fuzz test cannot check for this operation (tests/hub/test_api_fuzz.py,
    CROSS_PARAMETER_RULES): any days within 366 of each other, any period, group and ids: 200."""
    ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}", fullmatch=True)

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(start=st.dates(date(1, 1, 1), date(9998, 1, 1)), days=st.integers(0, 365),
           period=st.sampled_from(["day", "month", None]), group=st.sampled_from(GROUPS),
           region=st.none() | ids, hall=st.none() | ids)
    def check(start, days, period, group, region, hall):
        params = {"from": start.isoformat(), "to": (start + timedelta(days=days)).isoformat(),
                  "period": period, "group": group, "region": region, "hall": hall}
        response = hub_app.http.get("/api/v1/stats", headers=hub_app.admin_headers,
                                    params={k: v for k, v in params.items() if v is not None})
        assert response.status_code == 200, response.text
        assert response.json()["rows"] == []

    check()
