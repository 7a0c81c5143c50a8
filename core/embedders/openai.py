"""`OpenAIEmbedder`: embeddings from any OpenAI-compatible ``POST {base_url}/embeddings`` endpoint.

Configuration (constructor keyword arguments override the environment):

* ``MEMDOCK_OPENAI_BASE_URL`` (default ``https://api.openai.com/v1``)
* ``MEMDOCK_OPENAI_API_KEY`` (falls back to ``OPENAI_API_KEY``; optional for local servers)
* ``MEMDOCK_OPENAI_MODEL`` (default ``text-embedding-3-small``)
* ``MEMDOCK_OPENAI_DIMENSION`` (default 1536)
* ``MEMDOCK_OPENAI_TIMEOUT`` in seconds (default 30)

The API key is sent only in the ``Authorization`` header; it never appears in logs or error messages.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from memdock.embedding import Embedder
from memdock.errors import AuthenticationFailed, BackendUnavailable, InvalidInput

if TYPE_CHECKING:
    import httpx

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "text-embedding-3-small"
DEFAULT_DIMENSION = 1536
DEFAULT_TIMEOUT = 30.0
BATCH_SIZE = 256


def _env_number(name: str, default: float, convert: type[int] | type[float]) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return convert(raw)
    except ValueError as exc:
        raise InvalidInput(f"not a number: {raw!r}", field=name) from exc


class OpenAIEmbedder(Embedder):
    """Calls an OpenAI-compatible embeddings endpoint in batches of up to 256 inputs.

    Contract: returns one unit-norm vector of `dimension` floats per text, in input order (the response
    is ordered by each item's ``index``). Errors: unreachable server, timeout or 5xx ->
    `BackendUnavailable`; 401/403 -> `AuthenticationFailed`; a malformed response or a vector of the
    wrong length -> `BackendUnavailable` naming the offending field. The key never appears in messages.
    """

    name = "openai"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        dimension: int | None = None,
        timeout: float | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """Read unset options from the environment. `transport` is for tests (e.g. `httpx.MockTransport`)."""
        self.base_url = (base_url or os.environ.get("MEMDOCK_OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip(
            "/"
        )
        key = (
            api_key
            if api_key is not None
            else (os.environ.get("MEMDOCK_OPENAI_API_KEY") or os.environ.get("OPENAI_API_KEY"))
        )
        self._api_key = key or None
        self.model = model or os.environ.get("MEMDOCK_OPENAI_MODEL") or DEFAULT_MODEL
        dim = (
            dimension
            if dimension is not None
            else _env_number("MEMDOCK_OPENAI_DIMENSION", DEFAULT_DIMENSION, int)
        )
        if isinstance(dim, bool) or int(dim) != dim or dim < 1:
            raise InvalidInput("must be a positive integer", field="dimension")
        self.dimension = int(dim)
        seconds = (
            timeout if timeout is not None else _env_number("MEMDOCK_OPENAI_TIMEOUT", DEFAULT_TIMEOUT, float)
        )
        if not seconds > 0 or math.isinf(seconds):
            raise InvalidInput("must be a positive number of seconds", field="timeout")
        self.timeout = float(seconds)
        self._transport = transport

    @property
    def identity(self) -> str:
        """``openai:<model>:<dimension>``."""
        return f"{self.name}:{self.model}:{self.dimension}"

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(base_url={self.base_url!r}, model={self.model!r}, dimension={self.dimension})"

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _scrub(self, text: str) -> str:
        """Remove the API key from text that may echo it (server error bodies, exception strings)."""
        return text.replace(self._api_key, "***") if self._api_key else text

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed each text; one unit-norm vector per text, in order. See the class docstring for errors."""
        if not texts:
            return []
        import httpx  # here, not at module top: importing memdock must not load the HTTP client

        timeout = httpx.Timeout(self.timeout, connect=min(self.timeout, 10.0))
        vectors: list[list[float]] = []
        with httpx.Client(timeout=timeout, transport=self._transport, follow_redirects=False) as client:
            for start in range(0, len(texts), BATCH_SIZE):
                vectors.extend(self._embed_batch(client, list(texts[start : start + BATCH_SIZE])))
        return vectors

    def _embed_batch(self, client: httpx.Client, batch: list[str]) -> list[list[float]]:
        import httpx

        payload: dict[str, Any] = {"model": self.model, "input": batch, "encoding_format": "float"}
        if self.model.startswith("text-embedding-3"):  # only these models accept a requested dimension
            payload["dimensions"] = self.dimension
        url = f"{self.base_url}/embeddings"
        try:
            response = client.post(url, json=payload, headers=self._headers())
        except httpx.TimeoutException:
            raise BackendUnavailable(
                f"embeddings request to {url} timed out after {self.timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            message = self._scrub(f"{type(exc).__name__}: {exc}")
            raise BackendUnavailable(f"embeddings request to {url} failed: {message}") from None
        status = response.status_code
        if status in (401, 403):
            raise AuthenticationFailed(f"embeddings endpoint {url} refused the credentials (HTTP {status})")
        if status >= 500 or status == 429:
            raise BackendUnavailable(f"embeddings endpoint {url} returned HTTP {status}")
        if status >= 400:
            detail = self._scrub(response.text[:300])
            raise BackendUnavailable(f"embeddings endpoint {url} returned HTTP {status}: {detail}")
        return self._parse(response, len(batch))

    def _parse(self, response: httpx.Response, expected: int) -> list[list[float]]:
        try:
            body = response.json()
        except ValueError:
            raise BackendUnavailable("embeddings response is not valid JSON") from None
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise BackendUnavailable("embeddings response: field 'data' is missing or not a list")
        if len(data) != expected:
            raise BackendUnavailable(
                f"embeddings response: field 'data' has {len(data)} items, expected {expected}"
            )
        ordered: list[list[float] | None] = [None] * expected
        for position, item in enumerate(data):
            index = item.get("index", position) if isinstance(item, dict) else None
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < expected:
                raise BackendUnavailable(f"embeddings response: field 'data[{position}].index' is invalid")
            if ordered[index] is not None:
                raise BackendUnavailable(f"embeddings response: field 'data[{position}].index' is duplicated")
            ordered[index] = self._vector(item.get("embedding"), f"data[{position}].embedding")
        return [vector for vector in ordered if vector is not None]

    def _vector(self, raw: object, field: str) -> list[float]:
        if not isinstance(raw, list):
            raise BackendUnavailable(
                f"embeddings response: field '{field}' is missing or not a list of floats"
            )
        if len(raw) != self.dimension:
            raise BackendUnavailable(
                f"embeddings response: field '{field}' has {len(raw)} dimensions, expected {self.dimension}"
            )
        values: list[float] = []
        for value in raw:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise BackendUnavailable(f"embeddings response: field '{field}' holds a non-numeric value")
            values.append(float(value))
        norm = math.sqrt(sum(v * v for v in values))
        if norm == 0.0:
            raise BackendUnavailable(f"embeddings response: field '{field}' is the zero vector")
        return [v / norm for v in values]
