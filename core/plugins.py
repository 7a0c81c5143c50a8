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
from memdock.backend import Backend
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

    plugin_manager().hook.register_backends(register=register)
    return classes


@cache
def embedder_specs() -> dict[str, EmbedderSpec]:
    """Registered embedders by name."""
    specs: dict[str, EmbedderSpec] = {}

    def register(spec: EmbedderSpec) -> None:
        specs[spec.name] = spec

    plugin_manager().hook.register_embedders(register=register)
    return specs
