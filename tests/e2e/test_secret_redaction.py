"""A password given as the URL's ``password=`` parameter (how the Dify plugin passes the database
password) never leaves memdock: not in `memdock serve`'s start-up line or log, not in the 503 bodies of
any API family while PostgreSQL is down, not in a Dify tool's output or a credential check's message,
and not where an error wraps the store's name (a driver fault memdock does not know, reported as
`BackendUnavailable` naming the store).
Real parts: a PostgreSQL of this test's own that demands the password, a `memdock serve` subprocess, the
plugin's tool runner. Also: Dify's ``/retrieval`` with more conditions than the filter bound is refused
as bad input (400), not answered as an outage."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from memdock import BackendUnavailable, Memory
from memdock.backends.pgvector.backend import PgvectorBackend
from memdock.dify_adapter.plugin_logic.backend import CredentialsError, check_backend, close_all
from memdock.dify_adapter.plugin_logic.tools import run_tool
from memdock.filters import MAX_FILTER_CONDITIONS
from tests.helpers.memdock_server import memdock_app_server, memdock_server, server_log
from tests.helpers.pg_server import PgServer

SECRET = "hunter2-Zq8-secret"


@pytest.fixture(scope="module")
def guarded_pg() -> Iterator[tuple[PgServer, str]]:
    """A PostgreSQL of this module's own (it is stopped and started again) demanding `SECRET` for role
    ``agent``, and the ``pgvector://`` URL with the password as the ``password=`` parameter."""
    server = PgServer(Path(tempfile.mkdtemp(prefix="memdock-pg-secret-")) / "data")
    try:
        url = server.require_password("agent", SECRET, "agentdb")
        yield server, f"{url}&password={SECRET}&embedder=hash&connect_timeout=2"
    finally:
        server.cleanup()


def _calls(base: str) -> dict[str, httpx.Response]:
    """One search on every API family."""
    with httpx.Client(base_url=base, timeout=30) as client:
        return {
            "native": client.post("/v1/search", json={"query": "tea", "user_id": "u1"}),
            "mem0": client.post("/mem0/search", json={"query": "tea", "filters": {"user_id": "u1"}}),
            "mem0ai-api": client.post("/mem0ai-api/search", json={"query": "tea", "user_id": "u1"}),
            "dify": client.post("/retrieval", json={"knowledge_id": "u1", "query": "tea",
                                                    "retrieval_setting": {"top_k": 3, "score_threshold": 0}}),
        }


def test_the_password_parameter_stays_secret_while_postgres_is_down(guarded_pg: tuple[PgServer, str]) -> None:
    server, url = guarded_pg
    with memdock_server(url) as base:
        with httpx.Client(base_url=base, timeout=30) as client:
            added = client.post("/v1/memories", json={"text": "green tea", "user_id": "u1"})
        assert added.status_code == 201, added.text
        up = _calls(base)
        statuses = {name: r.status_code for name, r in up.items()}
        assert statuses == dict.fromkeys(up, 200), {name: r.text[:300] for name, r in up.items()}
        server.stop()
        try:
            down = _calls(base)
        finally:
            server.start()
        log = server_log(base)
    unavailable = {name: r.status_code for name, r in down.items()}
    assert set(unavailable.values()) == {503}, unavailable  # the outage is seen (so messages were produced)
    for name, response in down.items():
        assert SECRET not in response.text, (name, response.text)
    assert "password=***" in log or "password" not in log, log[:2000]
    assert SECRET not in log


def test_a_dify_tool_and_the_credential_check_never_show_the_password(guarded_pg: tuple[PgServer, str]) -> None:
    server, url = guarded_pg
    plain = url.replace(f"&password={SECRET}", "")
    credentials = {"backend_url": plain, "api_key": SECRET, "default_user_id": "u1"}
    [added] = [o.value for o in run_tool("add_memory", credentials, {"text": "oolong"}) if o.kind == "json"]
    assert [r["event"] for r in added["results"]] == ["ADD"], added
    server.stop()
    try:
        outputs = run_tool("search_memory", credentials, {"query": "oolong"})
        with pytest.raises(CredentialsError) as refused:
            close_all()  # a fresh open, as the plugin daemon's credential check does
            check_backend(plain, SECRET)
    finally:
        server.start()
        close_all()
    shown = json.dumps([[o.kind, o.value] for o in outputs], default=str)
    assert "BackendUnavailable" in shown, shown  # the failure is reported ...
    assert SECRET not in shown, shown  # ... without the password
    assert SECRET not in str(refused.value) and "reach" in str(refused.value), str(refused.value)


class DriverFault(Exception):
    """An error of the store's driver that memdock does not map (it wraps it with the store's name)."""


@pytest.fixture
def faulty_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pgvector search mode raises `DriverFault`; everything else stays real."""
    def fail(*_args: object, **_kwargs: object) -> None:
        raise DriverFault("the driver lost its state")

    for method in ("search", "keyword_search", "hybrid_search"):
        monkeypatch.setattr(PgvectorBackend, method, fail)


@pytest.mark.usefixtures("faulty_search")
def test_an_error_wrapping_the_store_name_never_shows_the_password(guarded_pg: tuple[PgServer, str]) -> None:
    _, url = guarded_pg
    with Memory.open(url) as memory:
        with pytest.raises(BackendUnavailable) as wrapped:
            memory.search("tea", user_id="u1")
        assert "pgvector (" in str(wrapped.value) and "DriverFault" in str(wrapped.value)  # the name is wrapped
        assert SECRET not in str(wrapped.value) and SECRET not in memory.name
        with memdock_app_server(memory) as base:
            answers = _calls(base)
    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(answers, 503)
    assert "password=***" in answers["native"].text, answers["native"].text  # the wrapped name is in the body
    for name, response in answers.items():
        assert SECRET not in response.text, (name, response.text)
    plain = url.replace(f"&password={SECRET}", "")
    try:
        outputs = run_tool("search_memory", {"backend_url": plain, "api_key": SECRET, "default_user_id": "u1"},
                           {"query": "tea"})
    finally:
        close_all()
    shown = json.dumps([[o.kind, o.value] for o in outputs], default=str)
    assert "DriverFault" in shown and "password=***" in shown and SECRET not in shown, shown


def test_retrieval_with_more_conditions_than_the_bound_is_refused_as_bad_input() -> None:
    conditions = [{"name": ["n"], "comparison_operator": "=", "value": str(i)} for i in
                  range(MAX_FILTER_CONDITIONS + 72)]
    with memdock_app_server("memory://?embedder=hash") as base, httpx.Client(base_url=base, timeout=30) as client:
        answer = client.post("/retrieval", json={
            "knowledge_id": "u1", "query": "tea", "retrieval_setting": {"top_k": 3, "score_threshold": 0},
            "metadata_condition": {"logical_operator": "and", "conditions": conditions}})
    assert answer.status_code == 400, answer.text
    assert answer.json()["error_code"] != 2001 and "condition" in answer.json()["error_msg"], answer.text
    assert "Retry-After" not in answer.headers
