"""The hooks a memdock plugin may implement. Register implementations with `hookimpl`.

A plugin is any module named by an entry point in the ``memdock`` group. Loading it must stay cheap: import
drivers (database clients, HTTP libraries, model runtimes) when a backend is opened or a command runs, not
at module top.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from memdock.backend import Backend
    from memdock.embedding import EmbedderSpec

hookspec = pluggy.HookspecMarker("memdock")
hookimpl = pluggy.HookimplMarker("memdock")

CommandHandler = Callable[[argparse.Namespace], int]
"""Runs a CLI command with its parsed arguments and returns the exit status."""
AddCommand = Callable[..., argparse.ArgumentParser]
"""``add_command(name, handler, help_text)``: adds a subcommand and returns its parser, for its options.
A `handler` of None makes a command group: give the returned parser subcommands of its own."""


@hookspec
def register_backends(register: Callable[[type[Backend]], None]) -> None:
    """Call ``register(TheBackendClass)`` once for each backend the plugin provides (the class declares
    its name, URL schemes, settings, capabilities, namespace and secret parameters)."""


@hookspec
def register_embedders(register: Callable[[EmbedderSpec], None]) -> None:
    """Call ``register(EmbedderSpec(...))`` once for each embedder the plugin provides."""


@hookspec
def register_commands(add_command: AddCommand) -> None:
    """Call ``add_command(name, handler, help_text)`` once for each ``memdock`` subcommand the plugin adds
    and configure the parser it returns. Handlers import what they need when they run."""


__all__ = ["AddCommand", "CommandHandler", "hookimpl", "hookspec"]
