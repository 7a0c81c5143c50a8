"""Safety of `memdock serve`: loopback by default, keys required elsewhere, constant-time key checks,
restricted keys, access logs without secrets or memory text, request ids, body limits, and a server that
stays responsive while a backend call is slow.

Routes are checked in-process (the app, or uvicorn in a thread where real HTTP matters); a real
``memdock serve`` process runs only where the process is the subject: the address it refuses to bind, and
what it prints."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from memdock import Memory
from memdock.backends.reference import ReferenceBackend
from memdock.dify_adapter import auth
from memdock.dify_adapter.auth import KeyRing, digest, plain_key
from memdock.dify_adapter.server.serve import build_config, is_loopback
from memdock.errors import InvalidInput
from memdock.models import Scope, SearchHit
from tests.helpers.memdock_app import memdock_client
from tests.helpers.memdock_server import fresh_backend_url, memdock_app_server, memdock_server, server_log
from tests.helpers.support import make_test_embedder

KEY = "serve-key-0123456789abcdef"
OTHER_KEY = "admin-key-0123456789abcdef"
SECRET_TEXT = "my bank PIN is 9876"


def serve_args(*argv: str) -> Any:
    from memdock.cli import _parser

    return _parser().parse_args(["serve", *argv])


def test_refuses_a_non_loopback_address_without_a_key() -> None:
    result = subprocess.run([sys.executable, "-m", "memdock.cli", "--url", "memory://", "serve", "--host", "0.0.0.0"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0 without an API key" in result.stderr
    with pytest.raises(InvalidInput) as info:
        build_config(serve_args("--host", "192.168.1.10"))
    assert info.value.field == "host"
    assert build_config(serve_args("--host", "0.0.0.0", "--api-key", KEY)).keys.authenticate(KEY) is not None
    assert build_config(serve_args()).keys.is_open()


@pytest.mark.parametrize(("host", "loopback"), [("127.0.0.1", True), ("127.9.9.9", True), ("::1", True),
                                                ("localhost", True), ("0.0.0.0", False), ("::", False),
                                                ("10.0.0.1", False), ("example.com", False)])
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_short_keys_and_bad_keys_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="at least 16"):
        plain_key("short", "key-1")
    bad = tmp_path / "keys.json"
    bad.write_text(json.dumps([{"name": "x", "key": KEY, "scopes": "u1"}]))
    with pytest.raises(InvalidInput) as info:
        KeyRing.from_sources([], bad, env={})
    assert info.value.field == "keys_file[0].scopes"


def test_every_key_is_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    ring = KeyRing([plain_key(f"key-number-{n}-0123456789", f"k{n}") for n in range(5)])
    compared: list[tuple[bytes, bytes]] = []
    real = auth.hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    found = ring.authenticate("key-number-0-0123456789")
    assert found is not None and found.label == "k0"
    assert len(compared) == 5, "stops early: timing would reveal which key matched"
    assert all(len(a) == len(b) == 32 for a, b in compared), "compares digests, not raw keys of any length"


def test_keys_from_env_and_hashed_keys_file(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps([{"name": "hashed", "sha256": digest("hashed-key-0123456789").hex()}]))
    ring = KeyRing.from_sources([], keys_file, env={"MEMDOCK_API_KEYS": "env-key-0123456789abc, other-key-0123456789"})
    assert [ring.authenticate(k).label for k in ("env-key-0123456789abc", "other-key-0123456789",  # type: ignore[union-attr]
                                                  "hashed-key-0123456789")] == ["key-1", "key-2", "hashed"]
    assert ring.authenticate("not-a-key-0123456789") is None


PRESENTED: list[tuple[str, str | None, str | None, auth.CredentialForms, str | None]] = [
    ("server-bearer", f"Bearer {KEY}", None, auth.SERVER_FORMS, KEY),
    ("server-token", f"Token {KEY}", None, auth.SERVER_FORMS, KEY),
    ("server-scheme-case-and-blanks", f"  bearer   {KEY} ", None, auth.SERVER_FORMS, KEY),
    ("server-x-api-key", None, f" {KEY} ", auth.SERVER_FORMS, KEY),
    ("server-x-api-key-wins", "Bearer other-key-0123456789", KEY, auth.SERVER_FORMS, KEY),
    ("server-empty-x-api-key", f"Bearer {KEY}", "", auth.SERVER_FORMS, KEY),
    ("server-blank-x-api-key", f"Bearer {KEY}", "  ", auth.SERVER_FORMS, None),
    ("server-basic", f"Basic {KEY}", None, auth.SERVER_FORMS, None),
    ("server-scheme-alone", "Bearer", None, auth.SERVER_FORMS, None),
    ("server-nothing", None, None, auth.SERVER_FORMS, None),
    ("dify-bearer", f"Bearer {KEY}", None, auth.EXTERNAL_KNOWLEDGE_FORMS, KEY),
    ("dify-token", f"Token {KEY}", None, auth.EXTERNAL_KNOWLEDGE_FORMS, None),
    ("dify-x-api-key", None, KEY, auth.EXTERNAL_KNOWLEDGE_FORMS, None),
    ("dify-empty", "", None, auth.EXTERNAL_KNOWLEDGE_FORMS, None),
]


@pytest.mark.parametrize(("authorization", "x_api_key", "forms", "expected"), [p[1:] for p in PRESENTED],
                         ids=[p[0] for p in PRESENTED])
def test_presented_keys_are_read_in_each_api_s_forms(
    authorization: str | None, x_api_key: str | None, forms: auth.CredentialForms, expected: str | None
) -> None:
    assert auth.presented_key(authorization, x_api_key, forms) == expected
    ring = KeyRing([plain_key(KEY, "the-key")])
    if expected is None:
        with pytest.raises(auth.MissingKey):
            auth.authenticate_request(ring, authorization, x_api_key, forms)
    else:
        found = auth.authenticate_request(ring, authorization, x_api_key, forms)
        assert found is not None and found.label == "the-key"
    assert auth.authenticate_request(KeyRing(), authorization, x_api_key, forms) is None, "an open ring lets all in"


def test_a_well_formed_unknown_key_is_not_a_missing_one() -> None:
    ring = KeyRing([plain_key(KEY, "the-key")])
    for forms in (auth.SERVER_FORMS, auth.EXTERNAL_KNOWLEDGE_FORMS):
        with pytest.raises(auth.UnknownKey) as info:
            auth.authenticate_request(ring, "Bearer wrong-key-0123456789", None, forms)
        assert "wrong-key" not in str(info.value) and KEY not in str(info.value)


def test_a_restricted_key_cannot_leave_its_scopes(tmp_path: Path) -> None:
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"name": "bot", "key": KEY, "scopes": [{"agent_id": "bot"}]}]))
    with memdock_client(fresh_backend_url("memory", tmp_path, "restricted"), "--keys-file", str(keys),
                        headers={"X-API-Key": KEY}) as client:
        ok = client.post("/v1/memories", json={"text": "bot fact", "agent_id": "bot", "user_id": "anyone"})
        assert ok.status_code == 201
        assert client.get("/v1/count", params={"agent_id": "bot"}).json() == {"count": 1}
        refused = client.post("/v1/memories", json={"text": "elsewhere", "agent_id": "other"})
        assert refused.status_code == 403 and refused.json()["error"]["type"] == "Forbidden"
        assert client.get("/v1/count", params={"user_id": "anyone"}).status_code == 403
        mixed = [{"agent_id": "bot", "user_id": "anyone", "text": "bot fact"},
                 {"user_id": "anyone", "text": "bot fact"}]
        assert client.post("/v1/lookups", json={"lookups": mixed}).status_code == 403
        own = client.post("/v1/lookups", json={"lookups": mixed[:1]}).json()["memories"]
        assert [m["text"] for m in own] == ["bot fact"]


def test_a_key_limited_to_knowledge_ids_is_refused_by_every_memory_api(tmp_path: Path) -> None:
    """Its restriction names knowledge ids only; on /v1, /mem0 and /mem0ai-api it must not mean "anything"."""
    keys = tmp_path / "keys.json"
    keys.write_text(json.dumps([{"name": "kb", "key": KEY, "knowledge_ids": ["kb-1"]}]))
    with memdock_client(fresh_backend_url("memory", tmp_path, "kb-only"), "--api-key", OTHER_KEY,
                        "--keys-file", str(keys), headers={"X-API-Key": OTHER_KEY}) as client:
        stored = client.post("/v1/memories", json={"text": "a private fact", "user_id": "victim"})
        assert stored.status_code == 201
        memory_id = stored.json()["results"][0]["memory"]["id"]
        with client.as_another(headers={"X-API-Key": KEY}) as kb:
            assert kb.get("/v1/memories", params={"user_id": "victim"}).status_code == 403
            assert kb.delete("/v1/memories", params={"user_id": "victim"}).status_code == 403
            assert kb.get(f"/v1/memories/{memory_id}").status_code == 404
            assert kb.post("/mem0/search", json={"query": "fact", "filters": {"user_id": "victim"}}).status_code == 403
            assert kb.get("/mem0/memories", params={"user_id": "victim"}).status_code == 403
            tonori = kb.post("/mem0ai-api/search", headers={"Authorization": f"Bearer {KEY}"},
                             json={"query": "fact", "user_id": "victim"})
            assert tonori.json().get("code") != 0, tonori.text
        assert client.get("/v1/count", params={"user_id": "victim"}).json() == {"count": 1}


FORBIDDEN_IN_LOGS = (KEY, "wrong-key", "PIN", "9876", "bank", "query=", "data=")


def send_requests_holding_secrets(client: httpx.Client) -> None:
    """Requests whose bodies, query strings and headers hold `KEY`, a wrong key and `SECRET_TEXT`: a store,
    an update and a search with the good key and request id ``trace-abc-123``, a count with a wrong key,
    and a health check with a request id the server must replace."""
    headers = {"Authorization": f"Bearer {KEY}", "X-Request-ID": "trace-abc-123"}
    added = client.post("/mem0ai-api/store", headers=headers, json={"data": SECRET_TEXT, "user_id": "u1"})
    assert added.headers["x-request-id"] == "trace-abc-123"
    memory_id = added.json()["data"][0]["id"]
    client.put(f"/mem0ai-api/update/{memory_id}", headers=headers, params={"data": SECRET_TEXT + " now"})
    client.get("/mem0ai-api/search", headers=headers, params={"query": SECRET_TEXT, "user_id": "u1"})
    client.get("/v1/count", headers={"Authorization": "Bearer wrong-key-0123456789"}, params={"user_id": "u1"})
    odd = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert odd.headers["x-request-id"] != "bad id with spaces"


def assert_access_log_names_requests_but_no_secrets(log: str) -> None:
    """The JSON access lines of `send_requests_holding_secrets` name each request (id, method, path,
    status, time, key label) and nothing in `log` holds a key or a memory's text."""
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert {"request_id", "method", "path", "status", "ms", "key"} <= set(lines[0])
    assert any(entry["request_id"] == "trace-abc-123" and entry["key"] == "key-1" for entry in lines)
    assert any(entry["status"] == 401 for entry in lines)
    for forbidden in FORBIDDEN_IN_LOGS:
        assert forbidden not in log, forbidden


def test_access_log_has_ids_paths_and_labels_but_no_secrets_or_text(tmp_path: Path) -> None:
    with memdock_client(fresh_backend_url("memory", tmp_path, "logs"), "--api-key", KEY) as client:
        send_requests_holding_secrets(client)
        log = client.server_log()
    assert_access_log_names_requests_but_no_secrets(log)


def test_the_serve_process_prints_its_start_up_line_and_access_log_but_no_secrets() -> None:
    """Everything ``memdock serve`` writes (its start-up line, uvicorn's own messages, the access log) for
    the same requests: the access log reaches the output, uvicorn's access log (which would print query
    strings) stays off, and no key or memory text appears anywhere."""
    with memdock_server("memory://logs?embedder=hash", "--api-key", KEY) as base, \
            httpx.Client(base_url=base, timeout=30) as client:
        send_requests_holding_secrets(client)
        log = server_log(base)
    [started] = [line for line in log.splitlines() if line.startswith("memdock serving ")]
    assert started.endswith(f" on {base} (1 API key(s))"), started
    assert_access_log_names_requests_but_no_secrets(log)


def test_bodies_over_the_limit_get_413_and_store_nothing(tmp_path: Path) -> None:
    """Over real HTTP (uvicorn in a thread): a streamed body arrives in chunks, as from a network client."""
    with memdock_app_server(fresh_backend_url("memory", tmp_path, "limits"), "--max-body-bytes", "2048") as base:
        big = {"text": "x" * 4000, "user_id": "u1"}
        assert httpx.post(f"{base}/v1/memories", json=big).status_code == 413

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
            yield b'{"text": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'", "user_id": "u1"}'

        streamed = httpx.post(f"{base}/v1/memories", content=chunks(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        assert httpx.get(f"{base}/v1/count", params={"user_id": "u1"}).json() == {"count": 0}
        small = httpx.post(f"{base}/v1/memories", json={"text": "fits", "user_id": "u1"})
        assert small.status_code == 201


class SlowSearchBackend(ReferenceBackend):
    """Search blocks until released, like a backend stuck on a slow query."""

    release = threading.Event()
    entered = threading.Event()

    def search(
        self, vector: Sequence[float] | None, text: str, scope: Scope, where: Any, limit: int
    ) -> list[SearchHit]:
        self.entered.set()
        self.release.wait(timeout=30)
        return super().search(vector, text, scope, where, limit)


def test_a_slow_backend_call_does_not_block_other_requests() -> None:
    embedder = make_test_embedder()
    memory = Memory(SlowSearchBackend(ReferenceBackend.Settings(), embedder), embedder)
    memory.add("a fact", user_id="u1")
    with memdock_app_server(memory) as base:
        slow: dict[str, httpx.Response] = {}
        worker = threading.Thread(target=lambda: slow.update(
            r=httpx.post(f"{base}/v1/search", json={"query": "fact", "user_id": "u1", "mode": "vector"}, timeout=60)))
        worker.start()
        try:
            assert SlowSearchBackend.entered.wait(timeout=30)
            assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200
            assert httpx.get(f"{base}/v1/count", params={"user_id": "u1"}, timeout=10).json() == {"count": 1}
            assert worker.is_alive(), "the slow search finished early; the test proved nothing"
        finally:
            SlowSearchBackend.release.set()
            worker.join(timeout=30)
        assert slow["r"].status_code == 200 and slow["r"].json()["results"][0]["memory"]["text"] == "a fact"
