"""`GET /api/v1/gaps` over HTTP on each backend: gaps opened by ratings posted to /api/v1/ingest,
shown with their counts and holes, closed by late ratings; the filters and the errors; and random
arrival orders with repeats, where the open gaps after every batch are the numbers not received."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hcp.protocol import sign_rating
from hub.gaps import missing_below
from tests.fixtures.hub import rating_item, running_app

from .conftest import GATEWAY_KEY, H1, device_key

MAX_EXAMPLES = 25  # each example is a few HTTP round trips on one running app
N = 20  # numbers 1..N per device in the random test


def rated(device: str, n: int, hall: str = H1):
    return rating_item(sign_rating(device_key(device), hall, device, n, 1, 1000 + n, None, 4))


def post(hub, token: str, device: str, *numbers: int, hall: str = H1) -> list[str]:
    response = hub.ingest(token, hall, [rated(device, n, hall) for n in numbers])
    assert response.status_code == 200, response.text
    return [r["status"] for r in response.json()["results"]]


def gaps(hub, **params) -> list[dict]:
    response = hub.http.get("/api/v1/gaps", params=params, headers=hub.admin_headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_gap_is_shown_with_its_counts_and_closed_by_late_ratings(hub_app, hall):
    assert post(hub_app, hall, "D07", 1, 2, 6) == ["accepted"] * 3
    [gap] = gaps(hub_app)
    assert {k: v for k, v in gap.items() if k != "opened_at"} == {
        "device": "D07", "hall": H1, "first": 3, "last": 5, "size": 3, "missing": 3, "arrived": 0,
        "state": "open", "closed_at": None, "holes": [[3, 5]]}
    assert post(hub_app, hall, "D07", 4) == ["accepted"]
    [gap] = gaps(hub_app)
    assert (gap["missing"], gap["arrived"], gap["holes"]) == (2, 1, [[3, 3], [5, 5]])
    assert post(hub_app, hall, "D07", 4, 3, 5) == ["duplicate", "accepted", "accepted"]
    assert gaps(hub_app) == []
    [closed] = gaps(hub_app, state="closed")
    assert (closed["first"], closed["last"], closed["missing"], closed["arrived"], closed["state"],
            closed["holes"]) == (3, 5, 0, 3, "closed", [])
    assert closed["opened_at"] == gap["opened_at"] and closed["closed_at"] >= closed["opened_at"]
    assert gaps(hub_app, state="all") == [closed]


def test_filters_and_limit(hub_app, hall):
    post(hub_app, hall, "D07", 2)  # 1..1
    post(hub_app, hall, "D08", 1, 5)  # 2..4
    assert [(g["device"], g["first"]) for g in gaps(hub_app)] == [("D08", 2), ("D07", 1)]
    assert [g["device"] for g in gaps(hub_app, device="D07")] == ["D07"]
    assert [g["device"] for g in gaps(hub_app, hall=H1, limit=1)] == ["D08"]
    assert gaps(hub_app, hall="H2") == [] and gaps(hub_app, device="D99") == []
    assert gaps(hub_app, state="closed") == []


@pytest.mark.parametrize("params", [{"state": "gone"}, {"limit": 0}, {"limit": 1001}, {"hall": "a b"},
                                    {"device": "-x"}, {"hal": "H1"}])
def test_bad_parameters_are_refused(hub_app, params):
    response = hub_app.http.get("/api/v1/gaps", params=params, headers=hub_app.admin_headers)
    assert response.status_code == 422, response.text


def test_the_admin_token_is_required(hub_app):
    assert hub_app.http.get("/api/v1/gaps").status_code == 401
    wrong = hub_app.http.get("/api/v1/gaps", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["detail"]


@pytest.mark.slow
def test_random_arrival_orders_show_exactly_the_missing_numbers(tmp_path, hub_db):
    devices = (f"G{i}" for i in itertools.count())
    with running_app(tmp_path, **hub_db) as hub:
        token = hub.register_gateway(H1, GATEWAY_KEY)

        @settings(max_examples=MAX_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
        @given(order=st.permutations(range(1, N + 1)), repeats=st.lists(st.integers(1, N), max_size=8),
               cuts=st.lists(st.integers(1, N + 8), max_size=6), data=st.data())
        def check(order, repeats, cuts, data):
            device = next(devices)
            hub.register_device(device, H1, "7", device_key(device))
            arrivals = list(order)
            for n in repeats:  # a resend, somewhere after the first copy
                arrivals.insert(data.draw(st.integers(arrivals.index(n) + 1, len(arrivals))), n)
            received: set[int] = set()
            bounds = sorted({0, len(arrivals), *(c for c in cuts if c < len(arrivals))})
            for start, end in itertools.pairwise(bounds):
                batch = arrivals[start:end]
                statuses = post(hub, token, device, *batch)
                assert statuses == ["duplicate" if n in received or n in batch[:i] else "accepted"
                                    for i, n in enumerate(batch)]
                received.update(batch)
                shown = gaps(hub, device=device, state="all")
                holes = sorted(tuple(h) for g in shown for h in g["holes"])
                assert holes == missing_below(max(received), received)
                assert sum(g["missing"] for g in shown) == sum(b - a + 1 for a, b in holes)
            assert gaps(hub, device=device) == []
            assert all(g["state"] == "closed" and g["arrived"] == g["size"]
                       for g in gaps(hub, device=device, state="all"))

        check()
