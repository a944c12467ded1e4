"""schemathesis against the real hub's OpenAPI: whatever a client sends, the hub answers it as its
spec says and never with a 5xx; without a token, every protected operation is refused.

The hub is the real process (`python -m hub`, its own SQLite file) with one hall's gateway and one
device registered, so generated requests reach the code behind authentication. Each operation gets
`HCP_FUZZ_EXAMPLES` generated requests (default 60).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from schemathesis import GenerationMode
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import ignored_auth, negative_data_rejection, positive_data_acceptance

from hub.app import create_app
from hub.config import HubSettings
from simulator.services import HubProcess
from tests.fixtures.device import device_key

EXAMPLES = int(os.environ.get("HCP_FUZZ_EXAMPLES", "60"))
# Operations whose parameters limit each other in a way OpenAPI cannot state (GET /api/v1/stats:
# `to` not before `from` and at most 366 days after it): there a schema-valid request may get its
# documented 422, so only "valid data accepted" is not checked; tests/hub/test_stats.py checks both.
# The same for the cases' writes (docs/cases.md): which arguments an action takes, a callback's time
# (not in the future, not before the rating), a ledger date within the region's limit, a handler's
# unit, rules that need `fix` and `ledger`: tests/hub/test_api_cases.py checks those.
CROSS_PARAMETER_RULES = {"GET /api/v1/stats", "PUT /api/v1/cases/rules/{region}",
                         "POST /api/v1/cases/{case_id}/transitions", "POST /api/v1/cases/{case_id}/callbacks"}
GATEWAY_KEY = bytes(range(32))


@pytest.fixture(scope="module")
def fuzzed_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path_factory.mktemp("fuzz-hub")).start()
    try:
        hub.gateway_token = hub.register_gateway("H1", GATEWAY_KEY)  # type: ignore[attr-defined]
        hub.register_device("D07", "H1", "7", device_key("D07"))
        yield hub
        assert hub.running, f"the hub died under the fuzzer:\n{hub.log_text()}"
    finally:
        hub.close()


def _hub_schema():
    """The hub's OpenAPI, from the app itself (the same document the server serves at
    /openapi.json: a test below checks that), so operations are known at collection time."""
    app = create_app(HubSettings(db_path=Path("unused.sqlite3"), admin_token="x"))
    return schemathesis.openapi.from_dict(app.openapi())


SCHEMA = _hub_schema()
OPERATIONS = sorted(op.ok().label for op in SCHEMA.get_all_operations())
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large])


def _auth(hub: HubProcess, path: str) -> dict[str, str]:
    token = hub.gateway_token if path == "/api/v1/ingest" else hub.admin_token  # type: ignore[attr-defined]
    return {"Authorization": f"Bearer {token}"}


def test_the_server_serves_this_schema(fuzzed_hub: HubProcess) -> None:
    assert fuzzed_hub.http.get("/openapi.json").json() == SCHEMA.raw_schema


# /healthz takes nothing, so nothing about a request to it can be invalid
CASES = [(label, mode) for label in OPERATIONS for mode in GenerationMode
         if not (mode is GenerationMode.NEGATIVE and label == "GET /healthz")]


@pytest.mark.parametrize(("label", "mode"), CASES)
def test_every_operation_answers_as_its_spec_says(label: str, mode: GenerationMode,
                                                  fuzzed_hub: HubProcess) -> None:
    """Authenticated, with requests the spec allows (positive) and requests it forbids (negative):
    no 5xx; the valid ones accepted and the invalid ones refused with a 4xx; status codes, content
    types and bodies as documented."""
    operation = SCHEMA.find_operation_by_label(label)
    # ignored_auth: the token is given on purpose. negative_data_rejection only where there is a
    # body: in a query string, the "invalid" values schemathesis makes (null, a number, an object)
    # arrive as text that is often valid ("null" is a fine hall id), and unknown headers are
    # allowed by HTTP; the query rules themselves (unknown or repeated parameter: 422) are tested
    # below, and every answer must still be documented and never a 5xx.
    excluded = [ignored_auth] if operation.method.upper() == "POST" else [ignored_auth, negative_data_rejection]
    if label in CROSS_PARAMETER_RULES:
        excluded.append(positive_data_acceptance)

    @FUZZ
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        case.call_and_validate(base_url=fuzzed_hub.url, headers=_auth(fuzzed_hub, case.path),
                               excluded_checks=excluded)

    run()


@pytest.mark.parametrize("label", [op for op in OPERATIONS if not op.endswith(" /healthz")])
def test_without_a_token_protected_operations_are_refused(label: str, fuzzed_hub: HubProcess) -> None:
    operation = SCHEMA.find_operation_by_label(label)

    @settings(FUZZ, max_examples=max(10, EXAMPLES // 4))
    @given(case=operation.as_strategy())
    def run(case) -> None:
        response = case.call(base_url=fuzzed_hub.url, headers={})
        assert response.status_code in (401, 413, 422), (response.status_code, response.text)
        assert response.json()["detail"], response.text

    run()


def test_unknown_and_repeated_query_parameters_are_refused(fuzzed_hub: HubProcess) -> None:
    headers = {"Authorization": f"Bearer {fuzzed_hub.admin_token}"}
    typo = fuzzed_hub.http.get("/api/v1/ratings", params={"hal": "H1"}, headers=headers)
    assert typo.status_code == 422, typo.text
    (error,) = typo.json()["detail"]
    assert error["loc"] == ["query", "hal"] and "hall" in error["msg"], error
    twice = fuzzed_hub.http.get("/api/v1/ratings?hall=H1&hall=H2", headers=headers)
    assert twice.status_code == 422, twice.text
    assert twice.json()["detail"][0]["loc"] == ["query", "hall"], twice.text
    assert fuzzed_hub.http.get("/api/v1/ratings", params={"hall": "H1"}, headers=headers).status_code == 200
