"""The backend behind the Dify plugin's tools and endpoint: a memdock URL plus an optional key, opened
once per process (opening embedded Chroma again and again leaks), checked with a harmless read, and
closed when the process exits (pgvector's pool and mem0's HTTP client release their connections).

The key goes where the backend reads its secret, the URL parameter its class declares as
`Backend.secret_param` (``?api_key=`` of a ``mem0+http(s)://`` URL, ``?password=`` of a ``pgvector://`` /
``postgresql://`` URL). Backends that declare none take no key, and giving one is an error (a Chroma
server's token comes only from ``MEMDOCK_CHROMA_TOKEN`` in the plugin daemon's environment). A key already
in the URL wins. Nothing here imports `dify_plugin`.

Backend URLs come from Dify users' credentials, so a store that keeps files on this machine (a backend's
`Backend.local_path_param`, e.g. embedded ``chroma:///path``) is confined to the plugin's data directory,
``$MEMDOCK_PLUGIN_DATA_ROOT`` (default: ``memdock-data`` in the plugin's working directory). Paths are
resolved first (``..``, symlinks, ``/proc/self/cwd``), so no URL reaches another directory's data.
"""

from __future__ import annotations

import atexit
import os
import threading
from dataclasses import replace
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

from memdock.backend import BackendURL
from memdock.errors import AuthenticationFailed, BackendUnavailable, InvalidInput, MemdockError, Unsupported
from memdock.memory import Memory
from memdock.plugins import backend_classes
from memdock.urls import backend_class_for

DATA_ROOT_ENV = "MEMDOCK_PLUGIN_DATA_ROOT"
CHECK_SCOPE = "memdock-credentials-check"
"""The user id of the throwaway scope `check_backend` counts in."""

_memories: dict[str, Memory] = {}
_memories_lock = threading.Lock()


class CredentialsError(Exception):
    """Settings that cannot open a working backend; the message says which setting and what is wrong."""


def keyed_url(url: str | None, api_key: str | None) -> str:
    """`url` with `api_key` placed where that backend reads it. `InvalidInput` (field ``backend_url`` or
    ``api_key``) for an empty URL, or a key the backend cannot use."""
    url = (url or "").strip()
    if not url:
        raise InvalidInput("is required (e.g. chroma+http://host:8000 or pgvector://user@host/db)", field="backend_url")
    key = (api_key or "").strip()
    if not key:
        return url
    parts = urlsplit(url)
    backend_class = backend_classes().get(parts.scheme.lower())
    parameter = backend_class.secret_param if backend_class is not None else None
    if parameter is None:
        raise InvalidInput(f"is not used by {parts.scheme or 'this'}:// backends; leave it empty", field="api_key")
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    params.setdefault(parameter, key)
    return parts._replace(query=urlencode(params)).geturl()


def data_root() -> Path:
    """The one directory under which the plugin's backends may keep files (resolved)."""
    return Path(os.environ.get(DATA_ROOT_ENV) or Path.cwd() / "memdock-data").resolve()


def check_confined(url: str) -> None:
    """Refuse (`InvalidInput`, field ``backend_url``) a URL whose backend would keep its files outside
    `data_root()`. URLs of backends without local files pass unchanged."""
    parsed = BackendURL.parse(url)
    backend_class = backend_class_for(parsed)
    if backend_class.local_path_param is None:
        return
    params = {k: v for k, v in parsed.params.items() if k != "embedder"}
    settings = backend_class.Settings.from_url(replace(parsed, params=params))
    path = getattr(settings, backend_class.local_path_param)
    root = data_root()
    if path is not None and not Path(path).resolve().is_relative_to(root):
        raise InvalidInput(f"{parsed.scheme}:// paths must lie under the plugin's data directory {root} "
                           f"(set {DATA_ROOT_ENV} in the plugin daemon to move it)", field="backend_url")


def open_memory(url: str | None, api_key: str | None = None) -> Memory:
    """The `Memory` for `url` and `api_key`, opened on first use and then reused by every call of this
    process. Raises memdock's typed errors (`InvalidInput` for a bad URL or a path outside `data_root()`,
    `BackendUnavailable`, ...)."""
    full = keyed_url(url, api_key)
    check_confined(full)
    with _memories_lock:
        memory = _memories.get(full)
        if memory is None:
            memory = _memories[full] = Memory.open(full)
        return memory


@atexit.register
def close_all() -> None:
    """Close every `Memory` `open_memory` opened and forget them (the next call opens afresh). Runs at exit."""
    with _memories_lock:
        memories = list(_memories.values())
        _memories.clear()
    for memory in memories:
        memory.close()


def check_backend(url: str | None, api_key: str | None = None) -> Memory:
    """Open the backend and count the memories of a throwaway scope (a read that changes nothing).
    Raises `CredentialsError` with a message naming the setting and the problem; never the key itself."""
    try:
        memory = open_memory(url, api_key)
        memory.count(user_id=CHECK_SCOPE)
    except MemdockError as exc:
        raise CredentialsError(explain(exc)) from None
    return memory


def explain(exc: MemdockError) -> str:
    """A one-line account of why the backend cannot be used, for a person filling in the settings."""
    if isinstance(exc, AuthenticationFailed):
        return f"The backend refused the API key: {exc}"
    if isinstance(exc, BackendUnavailable):
        return f"Cannot reach the backend: {exc}"
    if isinstance(exc, Unsupported) and "pip install 'memdock[" in str(exc):
        return (f"Backend URL: this plugin package was built without what this backend needs ({exc}); build it "
                "for this backend with memdock dify package --backends SCHEME (see docs/dify-plugin.md)")
    if isinstance(exc, InvalidInput):
        field = exc.field or "backend_url"
        message = str(exc).removeprefix(f"{exc.field}: ")
        where = {"api_key": "API key", "url": "Backend URL", "backend_url": "Backend URL"}.get(field)
        return f"{where}: {message}" if where else f"Backend URL, parameter {field!r}: {message}"
    return f"{type(exc).__name__}: {exc}"
