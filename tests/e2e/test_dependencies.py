"""`pip install .` must not pull torch: the default embedder runs on onnxruntime alone."""

from __future__ import annotations

import importlib.util
import re
from importlib.metadata import PackageNotFoundError, distribution

HEAVY = {"torch", "sentence-transformers", "transformers", "tensorflow", "jax"}


def _name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def runtime_closure(root: str) -> set[str]:
    """Names of every installed distribution `root` needs at run time (extras not followed)."""
    seen: set[str] = set()
    pending = [root]
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        pending.extend(_name(r) for r in requires if "extra ==" not in r)
    return seen


def test_runtime_dependency_tree_has_no_torch() -> None:
    closure = runtime_closure("memdock")
    assert {"onnxruntime", "tokenizers", "chromadb"} <= closure
    assert not closure & HEAVY, closure & HEAVY


def test_torch_is_not_importable_in_the_test_environment() -> None:
    assert importlib.util.find_spec("torch") is None
