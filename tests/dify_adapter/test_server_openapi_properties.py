"""A property-based run of the published OpenAPI document (schemathesis) against the server over real HTTP
(uvicorn in a thread of this process), for each API that publishes its routes there: memdock's native
``/v1``, the mem0 server dialect ``/mem0`` and the mem0ai-api dialect ``/mem0ai-api``. For every request,
valid or not, the answer is documented: its status is one the operation lists, its content type and its
body are the ones listed for that status (each API's own error envelope), and it is never a 5xx.

The run is derandomized, so every backend receives the same generated requests: they are generated once
per served document, API and generation mode, and sent to each backend (generating them costs far more than
sending them). ``MEMDOCK_SOAK=1`` generates ten times as many."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence

import hypothesis.errors
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import APIOperation, OpenApiSchema

from tests.helpers.hostile import scaled
from tests.helpers.memdock_server import fresh_backend_url, memdock_app_server

APIS: dict[str, tuple[str, int, int]] = {
    "native": ("^/v1/", 14, 60),  # every native route (test_server_native lists them)
    "mem0": ("^/mem0/", 9, 20),  # every mem0 server route (docs/server.md)
    "mem0ai-api": ("^/mem0ai-api/", 10, 20),  # every mem0ai-api route, both /search included
}
"""Per API: the paths it is mounted at (the default mounts), how many operations the document lists there,
and how many cases to generate per operation and mode in CI (`scaled`: ten times under ``MEMDOCK_SOAK=1``)."""

CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
"""schemathesis's own checks; 5xx answers are judged by `server_fault` instead of its `not_a_server_error`."""


def server_fault(status: int, body: str) -> bool:
    """A 5xx other than the documented 501 of a capability the backend does not declare (``Unsupported``:
    e.g. ``mode: "keyword"`` on a backend without keyword search), which is an answer, not a fault."""
    return status >= 500 and not (status == 501 and '"type":"Unsupported"' in body.replace(" ", ""))
_GENERATED: dict[tuple[str, str, GenerationMode], list[schemathesis.Case]] = {}


@pytest.fixture(scope="module", params=["memory", "chroma"])
def base(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = fresh_backend_url(request.param, tmp_path_factory.mktemp("openapi"), "props")
    with memdock_app_server(url) as base_url:
        yield base_url


def generated_cases(schema: OpenApiSchema, api: str, operations: Sequence[APIOperation], mode: GenerationMode,
                    per_operation: int) -> list[schemathesis.Case]:
    """`per_operation` derandomized cases per operation in `mode`, operation by operation; the same list for
    every schema whose document is the same (generated on the first call)."""
    key = (json.dumps(schema.raw_schema, sort_keys=True), api, mode)
    if key not in _GENERATED:
        cases: list[schemathesis.Case] = []
        for operation in operations:

            @settings(max_examples=per_operation, deadline=None, database=None, derandomize=True,
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
@pytest.mark.parametrize("api", list(APIS))
def test_every_generated_request_gets_a_documented_answer_and_no_5xx(base: str, api: str,
                                                                     mode: GenerationMode) -> None:
    paths, expected_operations, per_operation = APIS[api]
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json").include(path_regex=paths)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == expected_operations
    problems: list[str] = []
    calls = {"n": 0}
    for case in generated_cases(schema, api, operations, mode, scaled(per_operation)):
        response = case.call(base_url=base, timeout=30)
        calls["n"] += 1
        if server_fault(response.status_code, response.text):
            problems.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {response.text[:200]}")
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as failures:
            problems.extend(f"{case.method} {case.formatted_path} -> {response.status_code} "
                            f"{response.headers.get('content-type')}: {failure.title}: {response.text[:200]}"
                            for failure in failures.exceptions)
    assert calls["n"] >= len(operations) * 10, calls
    assert problems == []
