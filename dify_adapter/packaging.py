"""``memdock dify package``: build the Dify plugin package (``.difypkg``).

A ``.difypkg`` is a ZIP of the plugin folder's contents (relative paths, no top-level folder). memdock is
not on the package registry, so the package carries it: the installed memdock's Python files go into
``memdock/`` and a small ``memdock-<version>.dist-info`` (with the entry points memdock finds its
backends through) sits beside them; the plugin daemon runs ``main`` from the package folder, so both are
importable there. ``requirements.txt`` lists memdock's own requirements and the Dify SDK, all from the
registry. ``.difyignore`` (gitignore syntax) is honoured, and the manifest is checked before anything is
written.
"""

from __future__ import annotations

import importlib
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib.metadata import distribution
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from memdock.errors import InvalidInput

DIFY_PLUGIN_REQUIREMENT = "dify_plugin==0.10.2"
MAX_UNCOMPRESSED_BYTES = 50 * 1024 * 1024
SUBPACKAGES = ("memdock", "memdock.embedders", "memdock.backends", "memdock.dify_adapter", "memdock.conformance",
               "memdock.conformance.checks")
"""Every package of the memdock distribution (pyproject's ``packages``)."""
PACKAGE_FILES = ("*.py", "py.typed")
NAME = re.compile(r"^[a-z0-9_-]{1,128}$")
AUTHOR = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def plugin_folder() -> Path:
    """The plugin source folder shipped inside memdock."""
    return Path(importlib.import_module("memdock.dify_adapter").__path__[0]) / "plugin"


@dataclass(frozen=True)
class IgnoreRule:
    """One line of a gitignore-style file."""

    pattern: str
    negated: bool
    directory_only: bool
    anchored: bool

    def matches(self, path: PurePosixPath, is_dir: bool) -> bool:
        """Does the rule match `path` (relative to the plugin folder)?"""
        if self.directory_only and not is_dir:
            return False
        if self.anchored or "/" in self.pattern:
            return _glob(path.as_posix(), self.pattern)
        return _glob(path.name, self.pattern)


def _glob(text: str, pattern: str) -> bool:
    """fnmatch with ``**`` spanning folders and ``*`` staying within one."""
    regex = ""
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            regex += "(?:.*/)?"
            index += 3
        elif pattern.startswith("**", index):
            regex += ".*"
            index += 2
        elif pattern[index] == "*":
            regex += "[^/]*"
            index += 1
        elif pattern[index] == "?":
            regex += "[^/]"
            index += 1
        else:
            regex += re.escape(pattern[index])
            index += 1
    return re.fullmatch(regex, text) is not None


def parse_ignore(text: str) -> list[IgnoreRule]:
    """The rules of a ``.difyignore`` (blank lines and ``#`` comments skipped; ``!`` re-includes)."""
    rules = []
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        negated = stripped.startswith("!")
        stripped = stripped[1:] if negated else stripped
        directory_only = stripped.endswith("/")
        stripped = stripped.rstrip("/")
        anchored = stripped.startswith("/")
        rules.append(IgnoreRule(stripped.lstrip("/"), negated, directory_only, anchored))
    return rules


def ignored(path: PurePosixPath, is_dir: bool, rules: list[IgnoreRule]) -> bool:
    """The last matching rule decides; a file inside an ignored folder is ignored."""
    for parent in reversed(path.parents[:-1]):
        if _decide(parent, True, rules):
            return True
    return _decide(path, is_dir, rules)


def _decide(path: PurePosixPath, is_dir: bool, rules: list[IgnoreRule]) -> bool:
    verdict = False
    for rule in rules:
        if rule.matches(path, is_dir):
            verdict = not rule.negated
    return verdict


def plugin_files(folder: Path) -> Iterator[tuple[Path, str]]:
    """(file, archive name) of every plugin file that ``.difyignore`` does not exclude."""
    ignore = folder / ".difyignore"
    rules = parse_ignore(ignore.read_text(encoding="utf-8")) if ignore.exists() else []
    for path in sorted(folder.rglob("*")):
        relative = PurePosixPath(path.relative_to(folder).as_posix())
        if path.is_file() and not ignored(relative, False, rules):
            yield path, relative.as_posix()


def check_manifest(folder: Path) -> dict[str, Any]:
    """The manifest, after checking the rules the daemon enforces; `InvalidInput` names the problem."""
    manifest = _yaml(folder / "manifest.yaml")
    for key in ("version", "type", "author", "name", "label", "description", "icon", "created_at", "resource",
                "plugins", "meta"):
        if key not in manifest:
            raise InvalidInput("is missing", field=f"manifest.{key}")
    if manifest["type"] != "plugin":
        raise InvalidInput("must be 'plugin'", field="manifest.type")
    if not NAME.match(str(manifest["name"])):
        raise InvalidInput("must match ^[a-z0-9_-]{1,128}$", field="manifest.name")
    if not AUTHOR.match(str(manifest["author"])):
        raise InvalidInput("must match ^[a-zA-Z0-9_-]{1,64}$", field="manifest.author")
    if not (folder / "_assets" / str(manifest["icon"])).is_file():
        raise InvalidInput(f"_assets/{manifest['icon']} does not exist", field="manifest.icon")
    for path in referenced_files(folder, manifest):
        if not (folder / path).is_file():
            raise InvalidInput(f"{path} is referenced but does not exist", field="manifest")
    return manifest


def referenced_files(folder: Path, manifest: dict[str, Any]) -> list[str]:
    """Every file the manifest and the YAML it names refer to (YAML, Python sources, privacy policy)."""
    files: list[str] = []
    if manifest.get("privacy"):
        files.append(str(manifest["privacy"]))
    for provider in manifest["plugins"].get("tools", []):
        files.append(provider)
        data = _yaml(folder / provider)
        files.append(data["extra"]["python"]["source"])
        for tool in data.get("tools", []):
            files.append(tool)
            files.append(_yaml(folder / tool)["extra"]["python"]["source"])
    for group in manifest["plugins"].get("endpoints", []):
        files.append(group)
        for endpoint in _yaml(folder / group).get("endpoints", []):
            files.append(endpoint)
            files.append(_yaml(folder / endpoint)["extra"]["python"]["source"])
    files.append(f"{manifest['meta']['runner']['entrypoint']}.py")
    return files


def _yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InvalidInput(f"{path.name} does not exist", field="manifest")
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise InvalidInput("is not a YAML mapping", field=path.name)
    return data


def memdock_files() -> Iterator[tuple[Path, str]]:
    """(file, archive name) of the installed memdock's Python files, editable or not."""
    for name in SUBPACKAGES:
        folder = Path(importlib.import_module(name).__path__[0])
        prefix = name.replace(".", "/")
        for pattern in PACKAGE_FILES:
            for path in sorted(folder.glob(pattern)):
                yield path, f"{prefix}/{path.name}"


def requirements() -> str:
    """memdock's runtime requirements (no extras) and the Dify SDK, one per line."""
    wanted = [r for r in distribution("memdock").requires or [] if "extra ==" not in r]
    return "\n".join([*wanted, DIFY_PLUGIN_REQUIREMENT]) + "\n"


def dist_info() -> dict[str, str]:
    """A minimal ``memdock-<version>.dist-info`` so memdock's entry points are found from the package."""
    dist = distribution("memdock")
    folder = f"memdock-{dist.version}.dist-info"
    return {
        f"{folder}/METADATA": f"Metadata-Version: 2.1\nName: memdock\nVersion: {dist.version}\n",
        f"{folder}/entry_points.txt": dist.read_text("entry_points.txt") or "",
        f"{folder}/top_level.txt": "memdock\n",
    }


def build_package(output: Path) -> Path:
    """Write the ``.difypkg`` to `output`; returns it. Raises `InvalidInput` on a broken plugin folder or a
    package over Dify's 50 MB limit."""
    folder = plugin_folder()
    check_manifest(folder)
    total = 0
    output.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(output, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path, name in [*plugin_files(folder), *memdock_files()]:
            if "__pycache__" in name:
                continue
            archive.write(path, name)
            total += path.stat().st_size
        for name, text in {**dist_info(), "requirements.txt": requirements()}.items():
            archive.writestr(name, text)
            total += len(text.encode())
    if total > MAX_UNCOMPRESSED_BYTES:
        output.unlink()
        raise InvalidInput(f"the package would be {total} bytes uncompressed; Dify allows 50 MB", field="output")
    return output

