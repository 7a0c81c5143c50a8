"""Loading the plugin the way Dify's plugin daemon does: the SDK's own `PluginRegistration`, run in the
plugin folder, validates manifest and YAML with the SDK's models and loads each source module with the
"exactly one subclass" rule."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dify_plugin import DifyPluginEnv, Endpoint, Tool, ToolProvider
from dify_plugin.core.plugin_registration import PluginRegistration

from memdock.dify_adapter.packaging.package import plugin_folder


@contextmanager
def inside(folder: Path) -> Iterator[None]:
    """Work in `folder` with it on sys.path, as the daemon's ``python -m main`` does."""
    before = Path.cwd()
    os.chdir(folder)
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        sys.path.remove(str(folder))
        os.chdir(before)


def load_plugin(folder: Path | None = None) -> PluginRegistration:
    """The registration of the plugin in `folder` (default: the source folder shipped with memdock)."""
    with inside(folder or plugin_folder()):
        return PluginRegistration(DifyPluginEnv())


def tool_classes(registration: PluginRegistration) -> dict[str, type[Tool]]:
    _, _, tools = registration.tools_mapping["memdock"]
    return {name: cls for name, (_, cls) in tools.items()}


def provider_class(registration: PluginRegistration) -> type[ToolProvider]:
    return registration.tools_mapping["memdock"][1]


def endpoint_class(registration: PluginRegistration) -> type[Endpoint]:
    adapter = registration.endpoints.bind("localhost")
    endpoint, _ = adapter.match("/retrieval", method="POST")
    assert isinstance(endpoint, type) and issubclass(endpoint, Endpoint)
    return endpoint


def messages(tool: type[Tool], credentials: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """Invoke a tool through `from_credentials` and sort its messages: json, text, variables."""
    out: dict[str, Any] = {"json": [], "text": [], "variables": {}}
    for message in tool.from_credentials(credentials).invoke(parameters):
        kind = message.type.value
        if kind == "json":
            out["json"].append(message.message.json_object)
        elif kind == "text":
            out["text"].append(message.message.text)
        elif kind == "variable":
            out["variables"][message.message.variable_name] = message.message.variable_value
        else:
            raise AssertionError(f"unexpected message type {kind}")
    return out
