"""Scenario files: the examples load, a bad file is a clear error naming the place, any TOML the
parser is given either loads or raises ScenarioError (never another exception), and the same seed
draws the same citizens."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import tomllib
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.plan import draw, make_plan
from simulator.scenario import ScenarioError, load, parse

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "simulator" / "scenarios").glob("*.toml"))
SMALL = Path(__file__).with_name("small.toml")


@pytest.mark.parametrize("path", [*EXAMPLES, SMALL], ids=lambda p: p.name)
def test_examples_load(path):
    sc = load(path)
    assert sc.windows and make_plan(sc).count > 0


def test_regional_examples_carry_their_rules():
    by_region = {load(p).region: load(p) for p in EXAMPLES if p.name != "demo-hall.toml"}
    jilin = by_region["jilin"]
    assert jilin.preset == "jilin" and jilin.invite  # 7 calendar days; the burst needs the invite key
    ninth = by_region["xpcc-9th-division"]
    assert ninth.preset == "xpcc-9th-division" and ninth.lang == "ug"  # 5 working days, Uyghur display


GOOD = SMALL.read_text(encoding="utf-8")


def _with(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new, 1)


@pytest.mark.parametrize("text,message", [
    ("[scenario\nname=1", "not valid TOML"),
    (_with('staff = "S02"\narrivals', 'staff = "S09"\narrivals'), "window[1].staff: unknown staff 'S09'"),
    (_with('device = "lite"', 'device = "fake"'), "window[2].device: 'fake' is not one of real, lite"),
    (_with('opening = ["09:00", "09:10"]', 'opening = ["09:00", "08:10"]'), "hall.opening[0]: closes (08:10) before it opens"),
    (_with('opening = ["09:00", "09:10"]', 'opening = ["9am", "09:10"]'), "'9am' is not a time of day"),
    (_with('kind = "hub_outage"', 'kind = "meteor"'), "fault[1].kind: 'meteor' is not one of"),
    (_with('at = "09:05"', 'at = "11:00"'), "fault[1].at: 11:00 is outside the opening hours"),
    (_with('for = "60s"', 'for = "a minute"'), "fault[1].for: 'a minute' is not a duration"),
    (_with('no_rating = 0.15', 'no_rating = 1.5'), "citizens.no_rating: must be a number in 0..1"),
    (_with('ratings = { 5 = 1, 1 = 1 }', 'ratings = { 6 = 1 }'), "staff[1].ratings: score '6' is not one of 1..5"),
    (_with('preset = "jilin"', 'preset = "mars"'), "region.preset: 'mars' is not one of"),
    (_with('speed = 30', 'speed = 30\nsped = 2'), "scenario: unknown key(s) sped"),
    (_with('session_ttl = "30s"', 'session_ttl = "2s"'), "hall.session_ttl: '2s' must be between 5 s"),
    (_with('[[fault]]\nkind = "broker_restart"', '[[fault]]\nkind = "wifi_flap"'), "fault[0]: a wifi_flap needs the window"),
    (GOOD + '\n[[window]]\nid = 4\ncount = 3\nstaff = "S01"\n', "window[6].id: window '4' is listed twice"),
    (GOOD + '\n[[window]]\nid = "A"\ncount = 2\nstaff = "S01"\n',
     "window[6].id: with count = 2 the id is the first window's number"),
    (GOOD + '\n[[window]]\nid = 7\ncount = 0\nstaff = "S01"\n', "window[6].count: must be an integer in 1..10000"),
])
def test_bad_scenario_names_the_place(text, message):
    with pytest.raises(ScenarioError) as err:
        parse(text, "bad.toml")
    assert str(err.value).startswith("bad.toml: ")
    assert message in str(err.value)


def test_cli_bad_scenario_is_exit_2_with_the_reason(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(_with('device = "lite"', 'device = "fake"'), encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "hcp.cli", "sim", str(bad)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip() == f"hcp sim: {bad}: window[2].device: 'fake' is not one of real, lite"
    missing = subprocess.run([sys.executable, "-m", "hcp.cli", "sim", str(tmp_path / "none.toml")],
                             capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_cli_date_plays_another_day_with_the_same_citizens():
    """`--date` moves the day (today and yesterday in China's time); the seed's citizens stay."""
    from datetime import datetime, timedelta

    from hub.default_rules import CHINA_TZ

    def plan(*extra: str) -> dict:
        out = subprocess.run([sys.executable, "-m", "hcp.cli", "sim", str(SMALL), "--plan", *extra],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    own, moved = plan(), plan("--date", "2026-12-01")
    assert own["date"] == str(load(SMALL).day) != "2026-12-01" and moved["date"] == "2026-12-01"
    assert moved["visits"] == own["visits"] and moved["visits"]
    before = datetime.now(CHINA_TZ).date()
    today, yesterday = plan("--date", "today")["date"], plan("--date", "yesterday")["date"]
    after = datetime.now(CHINA_TZ).date()
    assert today in (str(before), str(after))  # China's midnight may pass between the two
    assert yesterday in (str(before - timedelta(days=1)), str(after - timedelta(days=1)))
    for bad in ("2026-13-01", "tomorrow", ""):
        out = subprocess.run([sys.executable, "-m", "hcp.cli", "sim", str(SMALL), "--plan", "--date", bad],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 2 and out.stdout == ""
        assert out.stderr.strip() == f"hcp sim: --date {bad!r} is not YYYY-MM-DD, today or yesterday"


# any value where the small scenario has one: the parser answers with a scenario or ScenarioError
toml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False, width=32)
    | st.text(max_size=12) | st.sampled_from(["09:00", "5m", "+30s", "real", "lite", "S01", "1", "jilin"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)


def _paths(doc, prefix=()):
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield prefix + (k,)
            yield from _paths(v, prefix + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield prefix + (i,)
            yield from _paths(v, prefix + (i,))


BASE = tomllib.loads(GOOD)
PATHS = list(_paths(BASE))


def _dumps(doc) -> str:
    """A TOML writer good enough for these documents (inline tables everywhere)."""
    def value(v):
        if v is None:
            return None
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v) if v == v and v not in (float("inf"), float("-inf")) else "0"
        if isinstance(v, str):
            return '"' + v.encode("unicode_escape").decode().replace('"', '\\"') + '"'
        if isinstance(v, list):
            return "[" + ", ".join(x for x in map(value, v) if x is not None) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f'"{k}" = {x}' for k, x in ((k, value(x)) for k, x in v.items()) if x is not None) + "}"
        raise TypeError(v)
    return "\n".join(f'"{k}" = {x}' for k, x in ((k, value(v)) for k, v in doc.items()) if x is not None)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(PATHS), toml_values)
def test_any_change_loads_or_is_a_scenario_error(path, new):
    import copy
    doc = copy.deepcopy(BASE)
    node = doc
    for key in path[:-1]:
        node = node[key]
    if new is None:
        del node[path[-1]]
    else:
        node[path[-1]] = new
    try:
        text = _dumps(doc)
        tomllib.loads(text)
    except (tomllib.TOMLDecodeError, TypeError, UnicodeError):
        return  # the writer above could not express it
    try:
        sc = parse(text, "x.toml")
    except ScenarioError as exc:
        assert str(exc).startswith("x.toml: ")
        return
    make_plan(sc)  # a scenario that loads can be planned


def test_same_seed_same_citizens_other_seed_others():
    sc = load(SMALL)
    assert make_plan(sc).as_dict() == make_plan(sc).as_dict()
    assert make_plan(sc, seed=8).as_dict() != make_plan(sc).as_dict()
    # another window added leaves the others' citizens as they were
    more = parse(GOOD + '\n[[window]]\nid = "9"\ndevice = "lite"\nstaff = "S01"\n', "more.toml")
    a, b = make_plan(sc).as_dict()["visits"], make_plan(more).as_dict()["visits"]
    assert all(a[w] == b[w] for w in a)


def test_duration_cuts_the_citizens_and_the_bursts_after_it():
    """`--duration` plays the first part of the day: a burst planned later is not waited for (the
    Jilin example's 16:30 burst kept a 20-minute run going for the rest of its day)."""
    jilin = load(ROOT / "simulator" / "scenarios" / "jilin-city-hall.toml")
    whole = make_plan(jilin)
    assert [(w, len(b)) for w, b in whole.bursts.items() if b] == [("5", 1)]
    burst_at = whole.bursts["5"][0].at_s
    part = make_plan(replace(jilin, duration_s=burst_at - 1))
    assert not any(part.bursts.values())
    assert 0 < part.count < whole.count
    assert all(v.start_s < burst_at - 1 for vs in part.visits.values() for v in vs)
    assert make_plan(replace(jilin, duration_s=burst_at)).bursts == whole.bursts  # at its moment: played


def test_a_hall_open_until_stopped_has_the_days_citizens_then_the_next_days():
    """`hcp demo`'s hall (days None): the first day's citizens are the one-day plan's, drawn as they
    come, and the next citizens are the next calendar day's, within its opening hours."""
    day = load(SMALL)
    endless = replace(day, days=None)
    with pytest.raises(ValueError):
        make_plan(endless)  # no whole plan of an endless hall
    planned = make_plan(day).visits
    for window, visits in draw(endless).items():
        more = list(itertools.islice(visits, len(planned[window]) + 30))
        assert tuple(more[:len(planned[window])]) == planned[window]
        later = more[len(planned[window]):]
        assert later and all(v.start_s >= day.open_s for v in later)
        tickets = [v.ticket for v in more]
        assert len(set(tickets)) == len(tickets)  # tickets run on across days: event ids stay unique
    opens, closes = day.opening[0]
    assert endless.clock_of(day.day_s) == closes  # the closing moment is still the first day
    assert endless.clock_of(day.day_s + 60) == 86400 + opens + 60  # then the next morning
    assert endless.day_of(2.5 * day.day_s) == 2
    assert day.clock_of(day.day_s + 60) == closes  # a one-day hall: past the end is its closing


def test_citizens_waiting_at_opening_are_served_first():
    sc = load(SMALL)
    assert all(vs[0].start_s > 0 for vs in make_plan(sc).visits.values())
    queued = replace(sc, citizens=replace(sc.citizens, waiting_at_opening=2))
    for vs in make_plan(queued).visits.values():
        assert vs[0].start_s == 0 and vs[1].start_s == vs[0].end_s  # the second waits for the first
    with pytest.raises(ScenarioError, match="citizens.waiting_at_opening: must be an integer"):
        parse(_with("no_rating = 0.15", "no_rating = 0.15\nwaiting_at_opening = -1"), "bad.toml")


def test_window_count_stands_for_that_many_numbered_windows():
    sc = parse(GOOD + '\n[[window]]\nid = 10\ncount = 3\ndevice = "lite"\nstaff = "S01"\n', "count.toml")
    added = sc.windows[-3:]
    assert [(w.id, w.device_id, w.device) for w in added] == [("10", "D10", "lite"), ("11", "D11", "lite"),
                                                              ("12", "D12", "lite")]
    assert len(sc.windows) == 9
    # each is a window of its own, with the citizens it would have if written out alone
    alone = parse(GOOD + '\n[[window]]\nid = "11"\ndevice = "lite"\nstaff = "S01"\n', "alone.toml")

    def drawn(visits):
        return [(v.start_s, v.end_s, v.action, v.score) for v in visits]
    assert drawn(make_plan(sc).visits["11"]) == drawn(make_plan(alone).visits["11"])
    assert drawn(make_plan(sc).visits["10"]) != drawn(make_plan(sc).visits["11"])
