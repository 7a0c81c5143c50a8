"""The plugin registry: a lazily built pluggy PluginManager fed by the ``memdock`` entry-point group.

Built-in backends and embedders are registered through the same entry points as third-party ones.
``MEMDOCK_DISABLE_PLUGINS=name,name`` blocks plugins by entry-point name.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points

import pluggy

from memdock import hookspecs
from memdock.backend import BackendSpec
from memdock.embedding import EmbedderSpec
from memdock.errors import InvalidInput

ENTRY_POINT_GROUP = "memdock"
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


@cache
def plugin_manager() -> pluggy.PluginManager:
    """The process-wide manager, built on first use (entry points are loaded then)."""
    with _lock:
        manager = pluggy.PluginManager("memdock")
        manager.add_hookspecs(hookspecs)
        for name in os.environ.get(DISABLE_ENV, "").split(","):
            if name.strip():
                manager.set_blocked(name.strip())
        _versions.clear()
        _failures.clear()
        for entry_point in entry_points(group=ENTRY_POINT_GROUP):
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


def reset() -> None:
    """Forget the manager and registries so the next call reloads plugins (tests, env changes)."""
    plugin_manager.cache_clear()
    backend_specs.cache_clear()
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
def backend_specs() -> dict[str, BackendSpec]:
    """Registered backends by URL scheme. Two backends claiming one scheme is an error."""
    specs: dict[str, BackendSpec] = {}

    def register(spec: BackendSpec) -> None:
        for scheme in spec.schemes:
            if scheme in specs and specs[scheme] is not spec:
                raise InvalidInput(f"scheme {scheme!r} registered by {specs[scheme].name!r} and {spec.name!r}")
            specs[scheme] = spec

    plugin_manager().hook.register_backends(register=register)
    return specs


@cache
def embedder_specs() -> dict[str, EmbedderSpec]:
    """Registered embedders by name."""
    specs: dict[str, EmbedderSpec] = {}

    def register(spec: EmbedderSpec) -> None:
        specs[spec.name] = spec

    plugin_manager().hook.register_embedders(register=register)
    return specs
