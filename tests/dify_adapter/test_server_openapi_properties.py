"""A property-based run of the published OpenAPI document (schemathesis) against the server over real HTTP
(uvicorn in a thread of this process): no input, valid or not, makes the native API answer 5xx.

The run is derandomized, so every backend receives the same generated requests: they are generated once
per served document and generation mode, and sent to each backend (generating them costs far more than
sending them)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence

import hypothesis.errors
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.specs.openapi.schemas import APIOperation, OpenApiSchema

from tests.helpers.memdock_server import fresh_backend_url, memdock_app_server

EXAMPLES_PER_OPERATION = 60
_GENERATED: dict[tuple[str, GenerationMode], list[schemathesis.Case]] = {}


@pytest.fixture(scope="module", params=["memory", "chroma"])
def base(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = fresh_backend_url(request.param, tmp_path_factory.mktemp("openapi"), "props")
    with memdock_app_server(url) as base_url:
        yield base_url


def generated_cases(schema: OpenApiSchema, operations: Sequence[APIOperation],
                    mode: GenerationMode) -> list[schemathesis.Case]:
    """`EXAMPLES_PER_OPERATION` derandomized cases per operation in `mode`, operation by operation; the
    same list for every schema whose document is the same (generated on the first call)."""
    key = (json.dumps(schema.raw_schema, sort_keys=True), mode)
    if key not in _GENERATED:
        cases: list[schemathesis.Case] = []
        for operation in operations:

            @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                      suppress_health_check=list(HealthCheck))
            @given(operation.as_strategy(generation_mode=mode))
            def collect(case: schemathesis.Case) -> None:
                cases.append(case)

            # an operation without inputs (GET /v1/info) has no invalid request to generate
            with contextlib.suppress(hypothesis.errors.Unsatisfiable):
                collect()
        _GENERATED[key] = cases
    return _GENERATED[key]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_generated_request_gets_a_5xx_from_the_native_api(base: str, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json").include(path_regex="^/v1/")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 14  # every native route (test_server_native lists them)
    server_errors: list[str] = []
    calls = {"n": 0}
    for case in generated_cases(schema, operations, mode):
        response = case.call(base_url=base, timeout=30)
        calls["n"] += 1
        if response.status_code >= 500:
            server_errors.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                 f"{response.text[:300]}")
    assert calls["n"] >= len(operations) * 10, calls
    assert server_errors == []
