"""The hooks a memdock plugin may implement. Register implementations with `hookimpl`."""

from __future__ import annotations

from collections.abc import Callable

import pluggy

from memdock.backend import BackendSpec
from memdock.embedding import EmbedderSpec

hookspec = pluggy.HookspecMarker("memdock")
hookimpl = pluggy.HookimplMarker("memdock")


@hookspec
def register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Call ``register(BackendSpec(...))`` once for each backend the plugin provides."""


@hookspec
def register_embedders(register: Callable[[EmbedderSpec], None]) -> None:
    """Call ``register(EmbedderSpec(...))`` once for each embedder the plugin provides."""
