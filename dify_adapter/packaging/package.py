"""``memdock dify package``: build the Dify plugin package (``.difypkg``).

A ``.difypkg`` is a ZIP of the plugin folder's contents (relative paths, no top-level folder). memdock is
not on the package registry, so the package carries it: the installed memdock's Python files go into
``memdock/`` and a small ``memdock-<version>.dist-info`` (with the entry points memdock finds its backends
through) sits beside them; the plugin daemon runs ``main`` from the package folder, so both are importable
there. ``requirements.txt`` lists memdock's core requirements, the extras of the backends the package is
built for (`memdock.dify_adapter.packaging.requirements`) and the Dify SDK, all installed by the daemon
from the package registry. ``.difyignore`` is honoured (`memdock.dify_adapter.packaging.difyignore`), the
manifest is checked (`memdock.dify_adapter.packaging.manifest`) and the 50 MB limit enforced before
anything is written.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import tempfile
import zipfile
from collections.abc import Iterator
from importlib.metadata import distribution
from pathlib import Path, PurePosixPath

from memdock.dify_adapter.packaging.difyignore import ignored, parse_ignore
from memdock.dify_adapter.packaging.manifest import check_manifest
from memdock.dify_adapter.packaging.requirements import Selection, requirements_txt, select
from memdock.errors import InvalidInput

MAX_UNCOMPRESSED_BYTES = 50 * 1024 * 1024
SUBPACKAGES = (
    "memdock",
    "memdock.embedders",
    "memdock.formats",
    "memdock.backends",
    "memdock.backends.pgvector",
    "memdock.backends.mem0",
    "memdock.dify_adapter",
    "memdock.dify_adapter.server",
    "memdock.dify_adapter.plugin_logic",
    "memdock.dify_adapter.packaging",
    "memdock.dify_adapter.mcp_server",
    "memdock.conformance",
    "memdock.conformance.checks",
)
"""Every package of the memdock distribution (pyproject's ``packages``; a test keeps them equal)."""
PACKAGE_FILES = ("*.py", "py.typed")
"""What is taken from each package folder: its modules and the typing marker (no caches, no subfolders:
subpackages are listed above, and the plugin folder is packaged at the top of the archive instead)."""

Entry = tuple[str, Path | bytes]
"""An archive name and its content: a file to copy, or bytes."""


def plugin_folder() -> Path:
    """The plugin source folder shipped inside memdock (package data of `memdock.dify_adapter`)."""
    return Path(importlib.import_module("memdock.dify_adapter").__path__[0]) / "plugin"


def plugin_files(folder: Path) -> Iterator[tuple[Path, str]]:
    """(file, archive name) of every file in the plugin folder that its ``.difyignore`` keeps."""
    ignore = folder / ".difyignore"
    rules = parse_ignore(ignore.read_text(encoding="utf-8")) if ignore.is_file() else []
    for path in sorted(folder.rglob("*")):
        relative = PurePosixPath(path.relative_to(folder).as_posix())
        if path.is_file() and not ignored(relative, False, rules):
            yield path, relative.as_posix()


def memdock_files() -> Iterator[tuple[Path, str]]:
    """(file, archive name) of the installed memdock's Python files, found through each package's
    ``__path__``: an editable install maps the packages to the source folders, a wheel install to
    site-packages; the archive names are the same either way (``memdock/...``). The packages are found,
    not run: some import what only an extra installs (the conformance checks need Hypothesis)."""
    for name in SUBPACKAGES:
        prefix = name.replace(".", "/")
        spec = importlib.util.find_spec(name)
        if spec is None or spec.submodule_search_locations is None:
            raise LookupError(f"the memdock package {name} is not installed")
        for folder in spec.submodule_search_locations:
            for pattern in PACKAGE_FILES:
                for path in sorted(Path(folder).glob(pattern)):
                    yield path, f"{prefix}/{path.name}"


def dist_info() -> dict[str, str]:
    """A minimal ``memdock-<version>.dist-info`` so memdock's entry points are found from the package."""
    dist = distribution("memdock")
    folder = f"memdock-{dist.version}.dist-info"
    return {
        f"{folder}/METADATA": f"Metadata-Version: 2.1\nName: memdock\nVersion: {dist.version}\n",
        f"{folder}/entry_points.txt": dist.read_text("entry_points.txt") or "",
        f"{folder}/top_level.txt": "memdock\n",
    }


def package_entries(folder: Path, selection: Selection | None = None) -> list[Entry]:
    """Everything the package holds, in archive order; its requirements are those of `selection` (default:
    `memdock.dify_adapter.packaging.requirements.DEFAULT_BACKENDS`). `InvalidInput` for a broken plugin
    folder, a name given twice, or more than Dify's 50 MB uncompressed."""
    check_manifest(folder)
    generated = {**dist_info(), "requirements.txt": requirements_txt(selection or select())}
    entries: list[Entry] = [(name, path) for path, name in plugin_files(folder)]
    entries += [(name, path) for path, name in memdock_files()]
    entries += [(name, text.encode()) for name, text in generated.items()]
    names = [name for name, _ in entries]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise InvalidInput(f"the package would hold {twice} twice (remove them from the plugin folder)",
                           field="plugin")
    total = sum(len(content) if isinstance(content, bytes) else content.stat().st_size for _, content in entries)
    if total > MAX_UNCOMPRESSED_BYTES:
        raise InvalidInput(f"the package would be {total} bytes uncompressed; Dify allows "
                           f"{MAX_UNCOMPRESSED_BYTES}", field="plugin")
    return entries


def build_package(output: Path, folder: Path | None = None, selection: Selection | None = None) -> Path:
    """Write the ``.difypkg`` of the plugin in `folder` (default: the one shipped with memdock), for the
    backends of `selection` (default as `package_entries`), to `output` and return it. The archive is
    written next to `output` and moved into place, so a failure leaves no partial package. Raises
    `InvalidInput` as `package_entries`."""
    entries = package_entries(folder or plugin_folder(), selection)
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=".difypkg-", dir=output.parent)
    os.close(handle)
    try:
        os.chmod(temporary, 0o644)
        with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, content in entries:
                if isinstance(content, bytes):
                    archive.writestr(name, content)
                else:
                    archive.write(content, name)
        os.replace(temporary, output)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return output
