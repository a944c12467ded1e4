"""Random batches of valid, repeated, conflicting, forged and malformed items, posted and then
posted again in another order: every answer matches a small model of the contract, and the hub ends
up holding exactly the valid distinct ratings and services (the first of each key)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hcp.protocol import sign_rating
from tests.fixtures.hub import binding, rating_item, running_app, service_item

from .conftest import device_key

GATEWAY_KEY = b"\x42" * 32
MAX_EXAMPLES = 60  # each example is a few HTTP round trips on one running app: about 2 s in all


@dataclass(frozen=True)
class RatingSpec:
    dev: int  # 0, 1: registered; 2: never registered
    n: int
    score: int
    sess: str | None
    bound: bool
    flaw: str  # "", "tampered" (changed after signing), "wrong_key" (kid not the device's)


@dataclass(frozen=True)
class ServiceSpec:
    sid: str
    ticket: str
    outcome: str


@dataclass(frozen=True)
class Broken:
    """A rating item with one field broken; always rejected."""

    base: RatingSpec
    field: str


@dataclass(frozen=True)
class Junk:
    value: object


rating_specs = st.builds(
    RatingSpec, dev=st.sampled_from([0, 0, 1, 1, 2]), n=st.integers(1, 4), score=st.integers(1, 5),
    sess=st.sampled_from([None, "s1", "s2"]), bound=st.booleans(),
    flaw=st.sampled_from(["", "", "", "tampered", "wrong_key"]))
service_specs = st.builds(ServiceSpec, sid=st.sampled_from(["s1", "s2", "s3"]),
                          ticket=st.sampled_from(["A1", "A2"]),
                          outcome=st.sampled_from(["finished", "no_show"]))
broken = st.builds(Broken, base=rating_specs,
                   field=st.sampled_from(["score", "n", "sig", "received_at", "binding", "kind",
                                          "rating", "hall"]))
junk = st.builds(Junk, st.one_of(st.none(), st.integers(), st.text(max_size=4),
                                 st.lists(st.integers(), max_size=2),
                                 st.dictionaries(st.sampled_from(["kind", "id", "v"]), st.integers(),
                                                 max_size=2)))
specs = st.one_of(rating_specs, rating_specs, service_specs, broken, junk)
batches = st.lists(st.lists(specs, max_size=8), min_size=1, max_size=5)


class Scenario:
    """One example's hall, its devices, and a model of what the hub must answer."""

    def __init__(self, ns: str):
        self.hall = ns
        self.devices = [f"{ns}d{i}" for i in range(3)]
        self.ratings: dict[str, dict] = {}  # key -> stored payload
        self.services: dict[str, dict] = {}  # key -> stored item
        self.rejected = self.alerts = 0

    def rating_payload(self, spec: RatingSpec) -> dict:
        dev = self.devices[spec.dev]
        key = device_key("not this one") if spec.flaw == "wrong_key" else device_key(dev)
        payload = sign_rating(key, self.hall, dev, spec.n, 1, 100 * spec.n, spec.sess, spec.score).payload()
        if spec.flaw == "tampered":
            payload["score"] = spec.score % 5 + 1
        return payload

    def item(self, spec) -> dict | object:
        if isinstance(spec, RatingSpec):
            bound = binding(service=spec.sess or "s0", ticket=f"T{spec.n}") if spec.bound else None
            return rating_item(self.rating_payload(spec), bound)
        if isinstance(spec, ServiceSpec):
            return service_item(spec.sid, ticket=spec.ticket, outcome=spec.outcome)
        if isinstance(spec, Broken):
            item = self.item(spec.base)
            rating = dict(item["rating"])
            item = {**item, "rating": rating}
            if spec.field in ("score", "n"):
                rating[spec.field] = 0
            elif spec.field in ("sig", "hall"):
                rating[spec.field] = "x y"
            elif spec.field == "rating":
                item["rating"] = [rating]
            else:
                item[spec.field] = {"received_at": "never", "binding": 5, "kind": "ratin"}[spec.field]
            return item
        return spec.value

    def expect(self, spec, item) -> tuple[str | None, str, str | None]:
        """(key, status, reason); reason None means 'any reason' for malformed items."""
        if isinstance(spec, RatingSpec):
            payload = item["rating"]
            key = f"rating:{payload['dev']}:{payload['n']}"
            if key in self.ratings:
                if self.ratings[key] == payload:
                    return key, "duplicate", None
                self.alerts += 1
                return self._reject(key, "conflict")
            if spec.dev == 2:
                return self._reject(key, "unknown_device")
            if spec.flaw == "wrong_key":
                return self._reject(key, "unknown_key")
            if spec.flaw == "tampered":
                return self._reject(key, "bad_signature")
            self.ratings[key] = payload
            return key, "accepted", None
        if isinstance(spec, ServiceSpec):
            key = f"service:{self.hall}:{spec.sid}"
            if key in self.services:
                if self.services[key] == item:
                    return key, "duplicate", None
                self.alerts += 1
                return self._reject(key, "conflict")
            self.services[key] = item
            return key, "accepted", None
        return self._reject(None, None)

    def _reject(self, key: str | None, reason: str | None) -> tuple[str | None, str, str | None]:
        self.rejected += 1
        return key, "rejected", reason


@pytest.mark.slow
def test_random_batches_posted_twice_in_any_order(tmp_path, hub_db):
    namespaces = (f"P{i}" for i in itertools.count())
    with running_app(tmp_path, **hub_db) as hub:

        @settings(max_examples=MAX_EXAMPLES, deadline=None,
                  suppress_health_check=[HealthCheck.too_slow])
        @given(batches=batches, data=st.data())
        def check(batches, data):
            model = Scenario(next(namespaces))
            token = hub.register_gateway(model.hall, GATEWAY_KEY)
            for index, device in enumerate(model.devices[:2]):
                hub.register_device(device, model.hall, str(index + 1), device_key(device))
            order = list(range(len(batches))) + data.draw(st.permutations(range(len(batches))))
            for number in order:
                specs = batches[number]
                items = [model.item(spec) for spec in specs]
                response = hub.ingest(token, model.hall, items)
                assert response.status_code == 200, response.text
                results = response.json()["results"]
                assert len(results) == len(items)
                for spec, item, result in zip(specs, items, results, strict=True):
                    key, status, reason = model.expect(spec, item)
                    assert result["status"] == status, (spec, result)
                    if key is not None:
                        assert result["key"] == key, (spec, result)
                    if status == "rejected":
                        assert result["reason"] == reason if reason else result["reason"], (spec, result)
                    else:
                        assert "reason" not in result

            stored = {f"rating:{r['device']}:{r['n']}": r for r in hub.ratings(hall=model.hall)}
            assert set(stored) == set(model.ratings)
            for key, payload in model.ratings.items():
                assert (stored[key]["score"], stored[key]["session"]) == (payload["score"], payload["sess"])
            services = hub.query("SELECT id, ticket, outcome FROM services WHERE hall = ?", model.hall)
            [(alerts,)] = hub.query("SELECT COUNT(*) FROM alerts WHERE hall = ?", model.hall)
            assert sorted(services) == sorted((s["id"], s["ticket"], s["outcome"])
                                              for s in model.services.values())
            assert alerts == model.alerts
            assert hub.rejections(hall=model.hall)["total"] == model.rejected

        check()
