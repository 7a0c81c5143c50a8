"""Imports run one way: the core imports none of the backends, the conformance kit or the Dify adapter;
backends import only the core; the kit imports the core and the reference backend; the adapter may import
everything. Checked on the source with an AST walk, so imports inside functions and ``if TYPE_CHECKING``
blocks count as much as those at module top."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from tests.helpers.paths import REPO

FOLDERS = {"core": "memdock", "backends": "memdock.backends", "conformance": "memdock.conformance",
           "dify_adapter": "memdock.dify_adapter"}
"""Source folder -> the import package it installs as (pyproject's package-dir)."""

FORBIDDEN: dict[str, tuple[str, ...]] = {
    "core": ("memdock.backends", "memdock.dify_adapter", "memdock.conformance"),
    "backends": ("memdock.dify_adapter", "memdock.conformance"),
    "conformance": ("memdock.dify_adapter", "memdock.backends"),
    "dify_adapter": (),
}
"""Per folder, the modules (and everything below them) its files must not import..."""

ALLOWED: dict[str, tuple[str, ...]] = {"conformance": ("memdock.backends.reference",)}
"""...except these (and everything below them)."""


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == prefix or name.startswith(f"{prefix}.") for prefix in prefixes)


def module_name(root: Path, path: Path) -> str:
    """The import name of source file `path` (``core/embedders/minilm.py`` -> ``memdock.embedders.minilm``)."""
    folder, *rest = path.relative_to(root).with_suffix("").parts
    if rest and rest[-1] == "__init__":
        rest.pop()
    return ".".join([FOLDERS[folder], *rest])


def imported_names(tree: ast.Module, module: str, is_package: bool) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of everything `tree` imports, anywhere in it: ``import a.b``, ``from a import b``
    (as ``a.b``), relative imports resolved against `module`, and ``importlib.import_module("a.b")`` with
    a literal name."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - (node.level - 1)])
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                yield node.lineno, base if alias.name == "*" else f"{base}.{alias.name}"
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = node.func
            called = function.attr if isinstance(function, ast.Attribute) else getattr(function, "id", "")
            if called in {"import_module", "__import__"} and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value


def wrong_way_imports(root: Path) -> list[str]:
    """One message per import under `root` (a tree with the repository's source folders) that runs the
    wrong way, naming the file, line, imported name and the rule it breaks."""
    problems = []
    for folder, forbidden in FORBIDDEN.items():
        for path in sorted((root / folder).rglob("*.py")):
            module = module_name(root, path)
            tree = ast.parse(path.read_bytes(), filename=str(path))
            for line, name in imported_names(tree, module, path.name == "__init__.py"):
                if _within(name, forbidden) and not _within(name, ALLOWED.get(folder, ())):
                    rule = next(prefix for prefix in forbidden if _within(name, (prefix,)))
                    problems.append(f"{path.relative_to(root).as_posix()}:{line} imports {name} "
                                    f"({FOLDERS[folder]} must not import {rule})")
    return problems


def test_imports_run_one_way() -> None:
    assert wrong_way_imports(REPO) == []


def test_the_checker_reports_each_wrong_way_import(tmp_path: Path) -> None:
    files = {
        "core/__init__.py": "from memdock.formats.mem0 import to_mem0\n",
        "core/cli.py": "def serve():\n    from memdock.dify_adapter.server.serve import run\n    return run\n",
        "core/sub/__init__.py": "",
        "core/sub/relative.py": "from .. import backends\nfrom ..errors import InvalidInput\n",
        "core/dynamic.py": "import importlib\nkit = importlib.import_module('memdock.conformance.runner')\n",
        "backends/thing.py": ("from typing import TYPE_CHECKING\nimport memdock.formats.mem0\n"
                              "if TYPE_CHECKING:\n    import memdock.conformance.report\n"),
        "conformance/checks.py": ("from memdock.backends.reference import ReferenceBackend\n"
                                  "from memdock.backends import reference\nfrom memdock.backends import chroma\n"),
        "dify_adapter/anything.py": "import memdock.backends.chroma\nimport memdock.conformance\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert wrong_way_imports(tmp_path) == [
        "core/cli.py:2 imports memdock.dify_adapter.server.serve.run (memdock must not import memdock.dify_adapter)",
        "core/dynamic.py:2 imports memdock.conformance.runner (memdock must not import memdock.conformance)",
        "core/sub/relative.py:1 imports memdock.backends (memdock must not import memdock.backends)",
        "backends/thing.py:4 imports memdock.conformance.report "
        "(memdock.backends must not import memdock.conformance)",
        "conformance/checks.py:3 imports memdock.backends.chroma "
        "(memdock.conformance must not import memdock.backends)",
    ]
