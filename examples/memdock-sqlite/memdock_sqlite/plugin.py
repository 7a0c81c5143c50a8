"""The pluggy plugin: registers the ``sqlite://`` backend with memdock (the class declares the rest)."""

from collections.abc import Callable

from memdock import Backend
from memdock.hookspecs import hookimpl
from memdock_sqlite.backend import SQLiteBackend


@hookimpl
def register_backends(register: Callable[[type[Backend]], None]) -> None:
    """Register ``sqlite://``."""
    register(SQLiteBackend)
