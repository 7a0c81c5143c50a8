"""The plugin registry: one lazily built pluggy PluginManager fed by two entry-point groups.

- ``memdock``: backends and embedders (`register_backends`, `register_embedders`), loaded the first time
  one is looked up.
- ``memdock.commands``: CLI subcommands (`register_commands`), loaded when the CLI builds its parser. These
  modules only build argparse options, so ``memdock --help`` does not import any backend.

Built-in plugins are registered through the same entry points as third-party ones.
``MEMDOCK_DISABLE_PLUGINS=name,name`` blocks plugins by entry-point name (in either group).
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoints, entry_points
from typing import TYPE_CHECKING

import pluggy

from memdock import hookspecs
from memdock.errors import InvalidInput

if TYPE_CHECKING:
    from memdock.backend import Backend
    from memdock.embedding import EmbedderSpec

ENTRY_POINT_GROUP = "memdock"
COMMANDS_GROUP = "memdock.commands"
DISABLE_ENV = "MEMDOCK_DISABLE_PLUGINS"
_lock = threading.Lock()
_log = logging.getLogger(__name__)
_versions: dict[str, str | None] = {}
_failures: dict[str, str] = {}


@dataclass(frozen=True)
class PluginInfo:
    """An installed plugin: its entry-point name, distribution version and implemented hooks."""

    name: str
    version: str | None
    hooks: tuple[str, ...]


_loaded_groups: set[str] = set()


@cache
def _manager() -> pluggy.PluginManager:
    """The process-wide manager with its hook specs and blocked names, before any group is loaded."""
    manager = pluggy.PluginManager("memdock")
    manager.add_hookspecs(hookspecs)
    for name in os.environ.get(DISABLE_ENV, "").split(","):
        if name.strip():
            manager.set_blocked(name.strip())
    _loaded_groups.clear()
    _versions.clear()
    _failures.clear()
    return manager


@cache
def _installed_entry_points() -> EntryPoints:
    """Every installed entry point, read once per process (both groups select from it)."""
    return entry_points()


def _loaded(*groups: str) -> pluggy.PluginManager:
    """The manager with every entry point of `groups` registered (each group is loaded once)."""
    with _lock:
        manager = _manager()
        for group in groups:
            if group in _loaded_groups:
                continue
            _loaded_groups.add(group)
            for entry_point in _installed_entry_points().select(group=group):
                if manager.is_blocked(entry_point.name) or manager.has_plugin(entry_point.name):
                    continue
                try:
                    manager.register(entry_point.load(), name=entry_point.name)
                except Exception as exc:  # a broken plugin must not take the others down
                    _failures[entry_point.name] = f"{type(exc).__name__}: {exc}"
                    _log.warning("memdock plugin %r failed to load: %s", entry_point.name, exc)
                    continue
                _versions[entry_point.name] = entry_point.dist.version if entry_point.dist else None
            manager.check_pending()
        return manager


def plugin_manager() -> pluggy.PluginManager:
    """The manager with every plugin of both groups loaded."""
    return _loaded(ENTRY_POINT_GROUP, COMMANDS_GROUP)


def command_manager() -> pluggy.PluginManager:
    """The manager with the CLI's command plugins loaded (and whatever else was loaded before)."""
    return _loaded(COMMANDS_GROUP)


def backend_manager() -> pluggy.PluginManager:
    """The manager with the backend and embedder plugins loaded."""
    return _loaded(ENTRY_POINT_GROUP)


def reset() -> None:
    """Forget the manager and registries so the next call reloads plugins (tests, env changes)."""
    _manager.cache_clear()
    _installed_entry_points.cache_clear()
    backend_classes.cache_clear()
    embedder_specs.cache_clear()


def list_plugins() -> list[PluginInfo]:
    """Every loaded plugin, sorted by name."""
    manager = plugin_manager()
    infos = []
    for plugin in manager.get_plugins():
        name = manager.get_name(plugin)
        if name is None:
            continue
        hooks = tuple(sorted(caller.name for caller in manager.get_hookcallers(plugin) or []))
        infos.append(PluginInfo(name=name, version=_versions.get(name), hooks=hooks))
    return sorted(infos, key=lambda info: info.name)


def load_failures() -> dict[str, str]:
    """Plugins whose entry point failed to import, with the error (they are left out, not fatal)."""
    plugin_manager()
    return dict(_failures)


@cache
def backend_classes() -> dict[str, type[Backend]]:
    """Registered backend classes by URL scheme. Each class's declaration is checked when it is registered
    (`Backend.check_declaration`); two backends claiming one scheme is an error."""
    from memdock.backend import Backend

    classes: dict[str, type[Backend]] = {}

    def register(backend_class: type[Backend]) -> None:
        if not (isinstance(backend_class, type) and issubclass(backend_class, Backend)):
            raise InvalidInput(f"register_backends must register Backend subclasses, not {backend_class!r}",
                               field="backend")
        backend_class.check_declaration()
        for scheme in backend_class.schemes:
            known = classes.get(scheme)
            if known is not None and known is not backend_class:
                raise InvalidInput(f"scheme {scheme!r} registered by {known.name!r} and {backend_class.name!r}",
                                   field="backend")
            classes[scheme] = backend_class

    backend_manager().hook.register_backends(register=register)
    return classes


@cache
def embedder_specs() -> dict[str, EmbedderSpec]:
    """Registered embedders by name."""
    specs: dict[str, EmbedderSpec] = {}

    def register(spec: EmbedderSpec) -> None:
        specs[spec.name] = spec

    backend_manager().hook.register_embedders(register=register)
    return specs
