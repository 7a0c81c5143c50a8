"""The rules a Dify plugin folder must meet before it is packaged (those Dify's plugin daemon and packager
enforce): the manifest's required fields and patterns, and every file the manifest and the YAML it names refer to.
`check_manifest` raises `InvalidInput` whose ``field`` names the offending entry (``manifest.name``,
``tools/add_memory.yaml``, ...)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from memdock.errors import InvalidInput

NAME = re.compile(r"^[a-z0-9_-]{1,128}$")
AUTHOR = re.compile(r"^[a-z0-9_-]{1,64}$")
VERSION = re.compile(r"^\d{1,4}(\.\d{1,4}){1,3}(-\w{1,16})?$")
REQUIRED = ("version", "type", "author", "name", "label", "description", "icon", "created_at", "resource",
            "plugins", "meta")
ARCHES = frozenset({"amd64", "arm64"})


def check_manifest(folder: Path) -> dict[str, Any]:
    """The parsed ``manifest.yaml`` of the plugin in `folder`, once every rule holds."""
    manifest = load_yaml(folder, "manifest.yaml")
    for key in REQUIRED:
        if key not in manifest:
            raise InvalidInput("is missing", field=f"manifest.{key}")
    _match(manifest, "type", re.compile(r"^plugin$"))
    _match(manifest, "name", NAME)
    _match(manifest, "author", AUTHOR)
    _match(manifest, "version", VERSION)
    _i18n(manifest, "label", "manifest")
    _i18n(manifest, "description", "manifest")
    _rfc3339(manifest["created_at"])
    if not (folder / "_assets" / str(manifest["icon"])).is_file():
        raise InvalidInput(f"_assets/{manifest['icon']} does not exist", field="manifest.icon")
    meta = manifest["meta"]
    runner = meta.get("runner") if isinstance(meta, Mapping) else None
    if not isinstance(runner, Mapping) or runner.get("language") != "python" or str(runner.get("version")) != "3.12":
        raise InvalidInput("must be {language: python, version: '3.12', entrypoint: ...}", field="manifest.meta.runner")
    if not meta.get("arch") or not set(meta["arch"]) <= ARCHES:
        raise InvalidInput(f"must list some of {sorted(ARCHES)}", field="manifest.meta.arch")
    for path in referenced_files(folder, manifest):
        if not (folder / path).is_file():
            raise InvalidInput(f"{path} is referenced but does not exist", field="manifest")
    return manifest


def referenced_files(folder: Path, manifest: Mapping[str, Any]) -> list[str]:
    """Every file the manifest and the YAML it names refer to: provider, tool, endpoint group and endpoint
    YAML, their Python sources, the entry point and the privacy policy. Checks the shape of each YAML on
    the way (credentials a mapping, endpoint settings a list, labels with ``en_US``)."""
    files = [f"{manifest['meta']['runner']['entrypoint']}.py"]
    if manifest.get("privacy"):
        files.append(str(manifest["privacy"]))
    plugins = manifest["plugins"]
    for provider in plugins.get("tools", []):
        files.append(provider)
        data = load_yaml(folder, provider)
        if not isinstance(data.get("credentials_for_provider", {}), Mapping):
            raise InvalidInput("must be a mapping keyed by credential name",
                               field=f"{provider}.credentials_for_provider")
        _i18n(data.get("identity", {}), "label", f"{provider}.identity")
        files.append(_source(data, provider))
        for tool in data.get("tools", []):
            files.append(tool)
            tool_data = load_yaml(folder, tool)
            _i18n(tool_data.get("identity", {}), "label", f"{tool}.identity")
            files.append(_source(tool_data, tool))
    for group in plugins.get("endpoints", []):
        files.append(group)
        data = load_yaml(folder, group)
        if not isinstance(data.get("settings", []), list):
            raise InvalidInput("must be a list of settings, each with a name", field=f"{group}.settings")
        for endpoint in data.get("endpoints", []):
            files.append(endpoint)
            files.append(_source(load_yaml(folder, endpoint), endpoint))
    return files


def load_yaml(folder: Path, relative: str) -> dict[str, Any]:
    """A YAML mapping from the plugin folder; `InvalidInput` if it is missing or not a mapping."""
    path = folder / relative
    if not path.is_file():
        raise InvalidInput("is referenced but does not exist", field=relative)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InvalidInput(f"is not valid YAML: {exc}", field=relative) from None
    if not isinstance(data, dict):
        raise InvalidInput("is not a YAML mapping", field=relative)
    return data


def _source(data: Mapping[str, Any], where: str) -> str:
    try:
        return str(data["extra"]["python"]["source"])
    except (KeyError, TypeError):
        raise InvalidInput("needs extra.python.source", field=where) from None


def _match(manifest: Mapping[str, Any], key: str, pattern: re.Pattern[str]) -> None:
    if not pattern.match(str(manifest[key])):
        raise InvalidInput(f"must match {pattern.pattern}", field=f"manifest.{key}")


def _i18n(data: Any, key: str, where: str) -> None:
    value = data.get(key) if isinstance(data, Mapping) else None
    if not isinstance(value, Mapping) or not str(value.get("en_US") or "").strip():
        raise InvalidInput("needs an en_US text", field=f"{where}.{key}")


def _rfc3339(value: Any) -> None:
    """YAML reads an unquoted timestamp as a datetime; a quoted one must parse, with a time zone."""
    if isinstance(value, datetime):
        when = value
    elif isinstance(value, date) or not isinstance(value, str):
        raise InvalidInput("must be an RFC 3339 date-time", field="manifest.created_at")
    else:
        try:
            when = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidInput("must be an RFC 3339 date-time", field="manifest.created_at") from None
    if when.tzinfo is None and not isinstance(value, datetime):
        raise InvalidInput("needs a time zone (e.g. Z)", field="manifest.created_at")
