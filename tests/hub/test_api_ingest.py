"""POST /api/v1/ingest and the reads (docs/protocol.md, "Hub ingest", "Hub registration and reads")."""

from __future__ import annotations

import json

import pytest

from hcp.protocol import BAD_SCORES, LEVELS, Rating, key_id, sign_rating
from tests.fixtures.hub import binding, rating_item, running_app, service_item

from .conftest import GATEWAY_KEY, H1, device_key, vectors

TABLES = ("ratings", "services", "rejections", "alerts", "devices", "device_keys", "gateways")




def rated(device: str = "D07", n: int = 1, score: int = 4, sess: str | None = "3f2a9c1e0b7d4a55",
          hall: str = H1, key: bytes | None = None) -> Rating:
    return sign_rating(key or device_key(device), hall, device, n, 3, 81234 + n, sess, score)


def table_counts(hub) -> dict[str, int]:
    return {t: hub.query(f"SELECT COUNT(*) FROM {t}")[0][0] for t in TABLES}


def results_of(response) -> list[tuple]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["v"] == 1
    return [(r["key"], r["status"], r.get("reason")) for r in body["results"]]


# ---------------------------------------------------------------------------- the happy path


def test_a_bound_rating_is_readable_with_every_binding_field(hub_app, hall):
    rating = rated(score=4)
    response = hub_app.ingest(hall, H1, [service_item(), rating_item(rating, binding())])
    assert response.json() == {"v": 1, "results": [
        {"key": "service:H1:3f2a9c1e0b7d4a55", "status": "accepted"},
        {"key": "rating:D07:1", "status": "accepted"}]}
    expected = {
        "id": "D07:1", "hall": "H1", "device": "D07", "n": 1, "score": 4, "level": "满意",
        "bad": False, "session": "3f2a9c1e0b7d4a55", "received_at": "2026-11-21T09:30:07.412+08:00",
        "bound": True, "unbound_reason": None, "service": "3f2a9c1e0b7d4a55", "ticket": "A023",
        "window": "7", "staff_id": "S0107", "matter_code": "000105001000",
        "case_no": "2026112100015", "unit": "市市场监督管理局", "verified": True,
    }
    assert hub_app.rating("D07", 1) == expected
    assert hub_app.ratings() == [expected]
    assert hub_app.ratings(ticket="A023", hall=H1, device="D07", window="7") == [expected]


def test_an_unbound_rating_keeps_its_reason_and_the_devices_window(hub_app, hall):
    rating = rated("D08", 5, score=1, sess=None)
    assert results_of(hub_app.ingest(hall, H1, [rating_item(rating, unbound_reason="no_service_in_progress")])) \
        == [("rating:D08:5", "accepted", None)]
    got = hub_app.rating("D08", 5)
    assert (got["bound"], got["unbound_reason"], got["window"], got["session"]) == \
        (False, "no_service_in_progress", "8", None)
    assert (got["service"], got["ticket"], got["staff_id"]) == (None, None, None)
    assert (got["level"], got["bad"]) == ("非常不满意", True)


def test_reads_filter_and_404(hub_app, hall):
    items = [rating_item(rated("D07", 1), binding(ticket="A001")),
             rating_item(rated("D08", 1), binding(ticket="A002", window="8")),
             rating_item(rated("D07", 2), binding(ticket="A003"))]
    results_of(hub_app.ingest(hall, H1, items))
    assert [r["id"] for r in hub_app.ratings()] == ["D07:2", "D08:1", "D07:1"]
    assert [r["id"] for r in hub_app.ratings(device="D07")] == ["D07:2", "D07:1"]
    assert [r["id"] for r in hub_app.ratings(window="8")] == ["D08:1"]
    assert [r["id"] for r in hub_app.ratings(ticket="A003")] == ["D07:2"]
    assert [r["id"] for r in hub_app.ratings(limit=2)] == ["D07:2", "D08:1"]
    assert hub_app.ratings(hall="H2") == []
    assert hub_app.rating("D07", 3) is None
    response = hub_app.http.get("/api/v1/ratings/D07/3", headers=hub_app.admin_headers)
    assert response.status_code == 404 and response.json() == {"detail": "no rating D07:3"}
    for params in ({"limit": 0}, {"limit": 1001}, {"hall": "a b"}, {"device": "D/1"}):
        response = hub_app.http.get("/api/v1/ratings", params=params, headers=hub_app.admin_headers)
        assert response.status_code == 422, params
    assert hub_app.http.get("/api/v1/ratings/D07/0", headers=hub_app.admin_headers).status_code == 422


# ---------------------------------------------------------------------------- idempotence


def test_the_same_batch_twice_changes_nothing(hub_app, hall):
    batch = [service_item("s1"), rating_item(rated("D07", 1, sess="s1"), binding(service="s1")),
             rating_item(rated("D08", 1, sess=None)), service_item("s2", outcome="no_show"),
             {"kind": "nonsense"}]
    first = results_of(hub_app.ingest(hall, H1, batch))
    assert [status for _, status, _ in first] == ["accepted"] * 4 + ["rejected"]
    before = table_counts(hub_app)
    ratings_before = hub_app.ratings()
    second = results_of(hub_app.ingest(hall, H1, batch))
    assert second == [(key, "duplicate", None) for key, _, _ in first[:4]] + [first[4]]
    after = table_counts(hub_app)
    assert {t: n for t, n in after.items() if t != "rejections"} == \
        {t: n for t, n in before.items() if t != "rejections"}
    assert after["rejections"] == before["rejections"] + 1  # every rejection is counted
    assert hub_app.ratings() == ratings_before


def test_a_different_payload_under_a_stored_id_is_a_conflict_with_an_alert(hub_app, hall):
    results_of(hub_app.ingest(hall, H1, [rating_item(rated("D07", 1, score=5))]))
    reused = rated("D07", 1, score=1)  # the device signed another rating with the same n
    forged = Rating(**{**rated("D07", 1, score=5).__dict__, "score": 2})  # not signed at all
    assert results_of(hub_app.ingest(hall, H1, [rating_item(reused), rating_item(forged)])) == [
        ("rating:D07:1", "rejected", "conflict"), ("rating:D07:1", "rejected", "conflict")]
    assert hub_app.rating("D07", 1)["score"] == 5
    alerts = hub_app.query("SELECT kind, hall, item_key, detail FROM alerts ORDER BY id")
    assert [(k, h, key) for k, h, key, _ in alerts] == [("tampering", H1, "rating:D07:1")] * 2
    details = [json.loads(d) for *_, d in alerts]
    assert [(d["posted"]["score"], d["signature_valid"]) for d in details] == [(1, True), (2, False)]
    assert hub_app.rejections()["by_reason"] == {"conflict": 2}


def test_a_service_posted_again_with_other_content_is_a_conflict(hub_app, hall):
    results_of(hub_app.ingest(hall, H1, [service_item("s1")]))
    assert results_of(hub_app.ingest(hall, H1, [service_item("s1", staff_id="S9999")])) == [
        ("service:H1:s1", "rejected", "conflict")]
    assert hub_app.query("SELECT kind FROM alerts") == [("service_conflict",)]
    assert hub_app.query("SELECT staff_id FROM services") == [("S0107",)]


# ---------------------------------------------------------------------------- verification


def test_ratings_the_hub_cannot_trust_are_rejected(hub_app, hall):
    hub_app.register_gateway("H2", GATEWAY_KEY)
    hub_app.register_device("E01", "H2", "1", device_key("E01"))
    tampered = Rating(**{**rated("D07", 2).__dict__, "score": 5})
    items = [
        rating_item(tampered),
        rating_item(rated("D07", 3, key=device_key("stolen"))),  # kid not registered for D07
        rating_item(rated("D99", 1)),  # not registered
        rating_item(rated("E01", 1)),  # registered to H2, signed for H1
        rating_item(rated("E01", 2, hall="H2")),  # H2's rating in H1's batch
        rating_item(rated("D07", 4)),  # good
    ]
    assert results_of(hub_app.ingest(hall, H1, items)) == [
        ("rating:D07:2", "rejected", "bad_signature"),
        ("rating:D07:3", "rejected", "unknown_key"),
        ("rating:D99:1", "rejected", "unknown_device"),
        ("rating:E01:1", "rejected", "unknown_device"),
        ("rating:E01:2", "rejected", "wrong_hall"),
        ("rating:D07:4", "accepted", None),
    ]
    assert [r["id"] for r in hub_app.ratings()] == ["D07:4"]
    rejections = hub_app.rejections()
    assert rejections["total"] == 5
    assert rejections["by_reason"] == {"bad_signature": 1, "unknown_key": 1, "unknown_device": 2,
                                       "wrong_hall": 1}
    assert rejections["recent"][0]["reason"] == "wrong_hall"
    assert json.loads(rejections["recent"][0]["item"])["rating"]["dev"] == "E01"
    assert hub_app.rejections(hall="H2")["total"] == 0
    assert len(hub_app.rejections(limit=2)["recent"]) == 2


def test_a_rating_signed_with_a_rotated_out_key_still_verifies(hub_app, hall):
    old_key = device_key("D07")
    hub_app.register_device("D07", H1, "7", b"\x77" * 32)
    assert results_of(hub_app.ingest(hall, H1, [rating_item(rated("D07", 1, key=old_key)),
                                                rating_item(rated("D07", 2, key=b"\x77" * 32))])) \
        == [("rating:D07:1", "accepted", None), ("rating:D07:2", "accepted", None)]


# ---------------------------------------------------------------------------- the vectors


def _object_level_invalid_vectors() -> list[dict]:
    out = []
    for vector in vectors()["invalid"]:
        try:
            vector["obj"] = json.loads(vector["raw"])
        except ValueError:
            continue  # not JSON: a gateway can never put that in an item
        out.append(vector)
    return out


@pytest.mark.parametrize("vector", _object_level_invalid_vectors(), ids=lambda v: v["name"])
def test_invalid_vectors_are_rejected_with_their_reason_and_spare_the_batch(hub_app, vector):
    key = bytes.fromhex(vectors()["valid"][0]["key"])  # the key the invalid ones are variants of
    token = hub_app.register_gateway("H1", GATEWAY_KEY)
    hub_app.register_device("D07", "H1", "7", key)
    good = sign_rating(key, "H1", "D07", 1, 0, 5, None, 3)
    results = results_of(hub_app.ingest(token, "H1", [rating_item(vector["obj"]), rating_item(good)]))
    assert results[0][1:] == ("rejected", vector["reason"])
    assert results[1] == ("rating:D07:1", "accepted", None)
    assert hub_app.rejections()["by_reason"] == {vector["reason"]: 1}


def test_every_valid_vector_verifies_and_is_accepted(hub_app):
    valid = vectors()["valid"]
    tokens: dict[str, str] = {}
    for vector in valid:
        key = bytes.fromhex(vector["key"])
        payload = vector["payload"]
        assert Rating(**{k: v for k, v in payload.items() if k != "v"}).verify(key)
        assert key_id(key) == vector["kid"]
        if payload["hall"] not in tokens:
            tokens[payload["hall"]] = hub_app.register_gateway(payload["hall"], GATEWAY_KEY)
        assert hub_app.register_device(payload["dev"], payload["hall"], "1", key) == vector["kid"]
    for vector in valid:
        payload = vector["payload"]
        item = rating_item(payload, binding(service=payload["sess"]) if payload["sess"] else None)
        assert results_of(hub_app.ingest(tokens[payload["hall"]], payload["hall"], [item])) == [
            (f"rating:{payload['dev']}:{payload['n']}", "accepted", None)]
        got = hub_app.rating(payload["dev"], payload["n"])
        assert (got["score"], got["level"], got["bad"], got["session"], got["bound"]) == (
            payload["score"], LEVELS[payload["score"]], payload["score"] in BAD_SCORES,
            payload["sess"], payload["sess"] is not None)
        assert got["verified"] is True
    assert len(hub_app.ratings()) == len(valid)


# ---------------------------------------------------------------------------- malformed items


def test_malformed_items_are_rejected_one_by_one(hub_app, hall):
    good = rating_item(rated("D07", 1))
    no_binding = {k: v for k, v in rating_item(rated("D07", 2)).items() if k != "binding"}
    items = [
        5, "text", None, [], {},
        {"kind": 7},
        {"kind": "vote"},
        {"kind": "rating"},
        {"kind": "rating", "rating": "not an object"},
        rating_item(rated("D07", 2), received_at="yesterday"),
        rating_item(rated("D07", 2), received_at="2026-11-21T09:30:07"),  # no UTC offset
        rating_item(rated("D07", 2), offset_ms=1.5),
        rating_item(rated("D07", 2), offset_ms=True),
        no_binding,
        rating_item(rated("D07", 2), unbound_reason="because"),
        rating_item(rated("D07", 2), binding(), unbound_reason="no_service_in_progress"),
        rating_item(rated("D07", 2), binding(window="7/8")),
        rating_item(rated("D07", 2), {"ticket": "A1", "window": "7"}),
        rating_item(rated("D07", 2), "s1"),  # type: ignore[arg-type]
        service_item("s/1"),
        service_item("s1", outcome="cancelled"),
        service_item("s1", finished_at=None),
        service_item("s1", accepted_at="09:21"),
        {k: v for k, v in service_item("s1").items() if k != "ticket"},
        good,
    ]
    results = results_of(hub_app.ingest(hall, H1, items))
    assert [reason for _, _, reason in results] == [
        "bad_json", "bad_json", "bad_json", "bad_json", "missing_field:kind",
        "bad_field:kind", "unknown_kind", "missing_field:rating", "bad_json",
        "bad_field:received_at", "bad_field:received_at", "bad_field:offset_ms",
        "bad_field:offset_ms", "missing_field:binding", "bad_field:unbound_reason",
        "bad_field:unbound_reason", "bad_field:binding.window", "missing_field:binding.service",
        "bad_field:binding",
        "bad_field:id", "bad_field:outcome", "bad_field:finished_at", "bad_field:accepted_at",
        "missing_field:ticket",
        None,
    ]
    assert [status for _, status, _ in results] == ["rejected"] * (len(items) - 1) + ["accepted"]
    assert [key for key, _, _ in results[:9]] == [None] * 9
    assert results[9][0] == "rating:D07:2" and results[19][0] is None
    assert results[20][0] == "service:H1:s1"
    assert hub_app.rejections()["total"] == len(items) - 1
    assert [r["id"] for r in hub_app.ratings()] == ["D07:1"]


def test_text_no_store_can_keep_is_rejected_not_a_server_error(hub_app, hall):
    """JSON may spell U+0000 and lone surrogates (\\u0000, \\ud800): rejected item by item."""
    items = [service_item("s1", unit="a\x00b"), service_item("s2", unit="\ud800"),
             rating_item(rated("D07", 1), binding(ticket="\udc00")), rating_item(rated("D07", 2))]
    body = json.dumps({"v": 1, "hall": H1, "items": items}).encode("ascii")  # escapes them
    assert b"\\u0000" in body and b"\\ud800" in body
    response = hub_app.http.post("/api/v1/ingest", content=body,
                                 headers={"Authorization": f"Bearer {hall}", "Content-Type": "application/json"})
    assert results_of(response) == [("service:H1:s1", "rejected", "bad_field:unit"),
                                    ("service:H1:s2", "rejected", "bad_field:unit"),
                                    ("rating:D07:1", "rejected", "bad_field:binding.ticket"),
                                    ("rating:D07:2", "accepted", None)]
    assert hub_app.rejections()["by_reason"] == {"bad_field:unit": 2, "bad_field:binding.ticket": 1}
    assert table_counts(hub_app)["services"] == 0


def test_a_no_show_needs_only_its_end_time(hub_app, hall):
    item = service_item("s9", outcome="no_show", accepted_at=None, staff_id=None, matter_code=None,
                        case_no=None, unit=None, staff_name=None, matter_name=None)
    no_end = service_item("s8", outcome="no_show", finished_at=None)
    assert results_of(hub_app.ingest(hall, H1, [item, no_end])) == [
        ("service:H1:s9", "accepted", None), ("service:H1:s8", "rejected", "bad_field:finished_at")]


# ---------------------------------------------------------------------------- the envelope


def test_ingest_needs_a_gateway_token(hub_app, hall):
    for headers in ({}, {"Authorization": "Bearer not-a-token"}, {"Authorization": f"Basic {hall}"}):
        response = hub_app.http.post("/api/v1/ingest", json={"v": 1, "hall": H1, "items": []},
                                     headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"


def test_another_halls_token_is_403(hub_app, hall):
    other = hub_app.register_gateway("H2", GATEWAY_KEY)
    response = hub_app.ingest(other, H1, [rating_item(rated())])
    assert response.status_code == 403
    assert "H2" in response.json()["detail"]
    assert table_counts(hub_app)["ratings"] == 0


def test_too_many_items_is_413_and_stores_nothing(hub_app, hall):
    items = [service_item(f"s{i}") for i in range(hub_app.settings.max_items + 1)]
    response = hub_app.ingest(hall, H1, items)
    assert response.status_code == 413
    assert "1000" in response.json()["detail"]
    assert table_counts(hub_app)["services"] == 0
    assert hub_app.ingest(hall, H1, items[:-1]).status_code == 200


def test_a_body_over_the_limit_is_413(tmp_path, hub_db):
    with running_app(tmp_path, max_body_bytes=4096, **hub_db) as hub:
        token = hub.register_gateway(H1, GATEWAY_KEY)
        big = [service_item(f"s{i}") for i in range(40)]
        response = hub.ingest(token, H1, big)
        assert response.status_code == 413
        assert "4096" in response.json()["detail"]
        body = json.dumps({"v": 1, "hall": H1, "items": big}).encode()

        def chunks():  # no Content-Length: the limit applies while reading
            for start in range(0, len(body), 1000):
                yield body[start:start + 1000]

        response = hub.http.post("/api/v1/ingest", content=chunks(),
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
        assert response.status_code == 413
        assert table_counts(hub)["services"] == 0
        assert hub.ingest(token, H1, big[:5]).status_code == 200


@pytest.mark.parametrize("body", [
    {"hall": H1, "items": []},
    {"v": 2, "hall": H1, "items": []},
    {"v": "1", "hall": H1, "items": []},
    {"v": True, "hall": H1, "items": []},
    {"v": 1, "items": []},
    {"v": 1, "hall": "H 1", "items": []},
    {"v": 1, "hall": H1},
    {"v": 1, "hall": H1, "items": {"kind": "rating"}},
    [],
])
def test_an_unreadable_envelope_is_422(hub_app, hall, body):
    response = hub_app.http.post("/api/v1/ingest", json=body, headers={"Authorization": f"Bearer {hall}"})
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


def test_invalid_json_is_422(hub_app, hall):
    response = hub_app.http.post("/api/v1/ingest", content=b'{"v":1,"hall":"H1","items":[',
                                 headers={"Authorization": f"Bearer {hall}",
                                          "Content-Type": "application/json"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == "json_invalid"


def test_unknown_envelope_fields_are_ignored(hub_app, hall):
    response = hub_app.ingest(hall, H1, [rating_item(rated())], sent_at="2026-11-21T10:00:00+08:00")
    assert results_of(response) == [("rating:D07:1", "accepted", None)]
