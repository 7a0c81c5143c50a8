"""The pluggy plugin: registers the ``sqlite://`` backend with memdock."""

from __future__ import annotations

from collections.abc import Callable

from memdock import BackendSpec
from memdock.hookspecs import hookimpl
from memdock_sqlite.backend import CAPABILITIES, SQLiteBackend, SQLiteSettings


@hookimpl
def register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Register ``sqlite://``."""
    register(BackendSpec(
        name="sqlite", schemes=("sqlite",), settings_model=SQLiteSettings,
        factory=lambda settings, embedder: SQLiteBackend(settings, embedder),
        capabilities=CAPABILITIES, description="One SQLite file, exact cosine search (example plugin).",
    ))
