"""The `.difypkg` as the plugin daemon gets it: built by `memdock dify package`, unzipped into an empty
folder, its requirements installed into a fresh Python 3.12 venv from the package registry, `main`
imported there and a tool invoked. Also the static rules of dify.md on the package's contents."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from dify_plugin import Endpoint, Tool, ToolProvider
from dify_plugin.core.utils.class_loader import get_subclasses_from_module, import_module_from_source

from memdock.dify_adapter.packaging.manifest import check_manifest
from memdock.dify_adapter.packaging.package import MAX_UNCOMPRESSED_BYTES, plugin_folder
from memdock.dify_adapter.plugin_logic.tools import TOOL_NAMES
from tests.helpers.plugin_loading import inside, load_plugin

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


@pytest.mark.slow  # a fresh venv, filled from the package registry
def test_the_package_installs_in_a_fresh_venv_and_a_tool_runs(unpacked: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    assert subprocess.run([str(python), "-c", "import sys; assert sys.version_info[:2] >= (3, 12)"]).returncode == 0
    # --no-compile: Python compiles what it imports; byte-compiling every installed module up front is most
    # of pip's time here and changes nothing the probe can observe.
    install = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-compile",
                              "-r", "requirements.txt"], cwd=unpacked, capture_output=True, text=True, timeout=1500)
    assert install.returncode == 0, install.stderr[-3000:]
    probe = subprocess.run([str(python), "-c", PROBE], cwd=unpacked, capture_output=True, text=True, timeout=300,
                           stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                                          "HF_HUB_OFFLINE": "1"})
    lines = [line for line in probe.stdout.splitlines() if line.startswith("PROBE ")]
    assert probe.returncode == 0 and lines, probe.stderr[-3000:]
    result = json.loads(lines[0].removeprefix("PROBE "))
    assert result["memdock"] == "memdock/__init__.py"  # the copy inside the package, not a registry install
    assert result["tools"] == sorted(TOOL_NAMES)
    assert result["added"][0]["results"][0]["event"] == "ADD"
    assert result["found"][0]["results"][0]["memory"] == "I like green tea"
    status, answer = result["retrieval"]
    assert status == 200 and [r["content"] for r in answer["records"]] == ["My car is a red hatchback"]


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
    assert "dify_plugin==0.10.2" in requirements and any(r.startswith("chromadb") for r in requirements)
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
    permission = manifest["resource"]["permission"]
    assert permission["tool"]["enabled"] and permission["endpoint"]["enabled"]
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
