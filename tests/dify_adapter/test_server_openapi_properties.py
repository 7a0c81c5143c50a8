"""A property-based run of the published OpenAPI document (schemathesis) against a real server: no input,
valid or not, makes the native API answer 5xx."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from tests.helpers.memdock_server import backend_url, memdock_server

EXAMPLES_PER_OPERATION = 60


@pytest.fixture(scope="module", params=["memory", "chroma"])
def base(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = backend_url(request.param, tmp_path_factory.mktemp("openapi"), "props")
    with memdock_server(url) as base_url:
        yield base_url


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_generated_request_gets_a_5xx_from_the_native_api(base: str, mode: GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{base}/openapi.json").include(path_regex="^/v1/")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 9
    server_errors: list[str] = []
    calls = {"n": 0}
    for operation in operations:

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(operation.as_strategy(generation_mode=mode))
        def call(case: schemathesis.Case) -> None:
            response = case.call(base_url=base, timeout=30)
            calls["n"] += 1
            if response.status_code >= 500:
                server_errors.append(f"{case.method} {case.formatted_path} -> {response.status_code}: "
                                     f"{response.text[:300]}")

        call()
    assert calls["n"] >= len(operations) * 10, calls
    assert server_errors == []
