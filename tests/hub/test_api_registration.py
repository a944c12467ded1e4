"""Registration of gateways and devices, admin authentication, and keys staying write-only."""

from __future__ import annotations

import hashlib

import pytest

from hcp.protocol import key_id, sign_rating
from tests.fixtures.hub import binding, rating_item, running_app

from .conftest import device_key

GATEWAY_KEY = bytes(range(32))


def test_healthz_needs_no_token(hub_app):
    response = hub_app.http.get("/healthz")
    assert response.status_code == 200 and response.json() == {"ok": True}


def test_gateway_registration_issues_a_token_stored_only_as_its_hash(hub_app):
    response = hub_app.http.post("/api/v1/gateways", headers=hub_app.admin_headers,
                                 json={"hall": "H1", "key": GATEWAY_KEY.hex()})
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"hall", "token"} and body["hall"] == "H1" and len(body["token"]) >= 43
    [(token_hash, key_hex)] = hub_app.query("SELECT token_sha256, key_hex FROM gateways")
    assert token_hash == hashlib.sha256(body["token"].encode()).hexdigest()
    assert key_hex == GATEWAY_KEY.hex()
    assert hub_app.ingest(body["token"], "H1", []).status_code == 200


def test_registering_a_hall_again_rotates_its_token(hub_app):
    old = hub_app.register_gateway("H1", GATEWAY_KEY)
    new = hub_app.register_gateway("H1", GATEWAY_KEY)
    assert old != new
    assert hub_app.ingest(old, "H1", []).status_code == 401
    assert hub_app.ingest(new, "H1", []).status_code == 200


def test_device_registration_answers_the_kid(hub_app):
    key = device_key("D07")
    response = hub_app.http.post("/api/v1/devices", headers=hub_app.admin_headers,
                                 json={"device": "D07", "hall": "H1", "window": "7", "key": key.hex()})
    assert response.status_code == 201
    assert response.json() == {"device": "D07", "kid": key_id(key)}
    vector_key = bytes.fromhex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
    assert hub_app.register_device("D07", "H1", "7", vector_key) == "4773d12e"  # rotation


@pytest.mark.parametrize("body", [
    {"device": "D07", "hall": "H1", "window": "7", "key": "ab" * 31},  # 31 bytes
    {"device": "D07", "hall": "H1", "window": "7", "key": "zz" * 32},  # not hex
    {"device": "D/07", "hall": "H1", "window": "7", "key": "ab" * 32},
    {"device": "D07", "hall": "H 1", "window": "7", "key": "ab" * 32},
    {"device": "D07", "hall": "H1", "window": "7" * 17, "key": "ab" * 32},
    {"device": "D07", "hall": "H1", "key": "ab" * 32},
    {"device": 7, "hall": "H1", "window": "7", "key": "ab" * 32},
])
def test_bad_device_registration_is_422(hub_app, body):
    response = hub_app.http.post("/api/v1/devices", headers=hub_app.admin_headers, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["detail"]


def test_bad_gateway_registration_is_422(hub_app):
    for body in ({"hall": "H1"}, {"hall": "H1", "key": "ab"}, {"hall": "", "key": "ab" * 32}):
        response = hub_app.http.post("/api/v1/gateways", headers=hub_app.admin_headers, json=body)
        assert response.status_code == 422, body


ADMIN_CALLS = [
    ("POST", "/api/v1/gateways", {"hall": "H1", "key": "ab" * 32}),
    ("POST", "/api/v1/devices", {"device": "D1", "hall": "H1", "window": "1", "key": "ab" * 32}),
    ("GET", "/api/v1/ratings", None),
    ("GET", "/api/v1/ratings/D1/1", None),
    ("GET", "/api/v1/ingest/rejections", None),
]


@pytest.mark.parametrize("method, path, body", ADMIN_CALLS)
def test_admin_endpoints_need_the_admin_token(hub_app, method, path, body):
    gateway_token = hub_app.register_gateway("H9", GATEWAY_KEY)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Bearer {gateway_token}"},
                    {"Authorization": f"Basic {hub_app.admin_token}"}):
        response = hub_app.http.request(method, path, json=body, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"] == "Bearer"
    response = hub_app.http.request(method, path, json=body, headers=hub_app.admin_headers)
    assert response.status_code in (200, 201, 404)


def test_without_an_admin_token_admin_endpoints_answer_503(tmp_path, hub_db):
    with running_app(tmp_path, admin_token="", **hub_db) as hub:
        for method, path, body in ADMIN_CALLS:
            response = hub.http.request(method, path, json=body, headers={"Authorization": "Bearer guess"})
            assert response.status_code == 503
            assert response.json() == {"detail": "admin token not configured"}
        assert hub.http.get("/healthz").status_code == 200


def test_the_admin_token_is_not_a_gateway_token(hub_app):
    response = hub_app.ingest(hub_app.admin_token, "H1", [])
    assert response.status_code == 401


def test_no_endpoint_returns_a_key(hub_app):
    """Keys are write-only: nothing the hub answers contains a gateway's or a device's key."""
    gateway_key, dev_key = b"\x5a" * 32, device_key("D07")
    token = hub_app.register_gateway("H1", gateway_key)
    hub_app.register_device("D07", "H1", "7", dev_key)
    rating = sign_rating(dev_key, "H1", "D07", 1, 0, 10, "s1", 4)
    hub_app.ingest(token, "H1", [rating_item(rating, binding(service="s1")), {"kind": "junk"}])
    answers = [
        hub_app.http.post("/api/v1/gateways", headers=hub_app.admin_headers,
                          json={"hall": "H2", "key": gateway_key.hex()}),
        hub_app.http.post("/api/v1/devices", headers=hub_app.admin_headers,
                          json={"device": "D07", "hall": "H1", "window": "7", "key": dev_key.hex()}),
        hub_app.ingest(token, "H1", [rating_item(rating)]),
        hub_app.http.get("/api/v1/ratings", headers=hub_app.admin_headers),
        hub_app.http.get("/api/v1/ratings/D07/1", headers=hub_app.admin_headers),
        hub_app.http.get("/api/v1/ingest/rejections", headers=hub_app.admin_headers),
        hub_app.http.get("/openapi.json"),
        hub_app.http.get("/healthz"),
    ]
    assert [a.status_code for a in answers] == [201, 201, 200, 200, 200, 200, 200, 200]
    assert answers[4].json()["id"] == "D07:1"  # the reads did return the rating
    for answer in answers:
        text = answer.text.lower()
        for key in (gateway_key, dev_key):
            assert key.hex() not in text
