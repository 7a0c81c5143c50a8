"""The `.difypkg` as the plugin daemon gets it: built by `memdock dify package`, unzipped into an empty
folder, its requirements installed into a fresh Python 3.12 venv from the package registry, `main`
imported there and a tool invoked. Also the static rules of dify.md on the package's contents."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import textwrap
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from memdock.dify_adapter.packaging import MAX_UNCOMPRESSED_BYTES, ignored, parse_ignore, plugin_folder
from memdock.dify_adapter.plugin_endpoint import SETTINGS as ENDPOINT_SETTINGS
from memdock.dify_adapter.plugin_tools import CREDENTIALS, PARAMETERS, TOOL_NAMES

PROBE = textwrap.dedent("""
    import json
    import main  # what the daemon runs: builds the Plugin, loading every YAML and source module

    tools = {name: cls for name, (_, cls) in main.plugin.registration.tools_mapping["memdock"][2].items()}
    credentials = {"backend_url": "memory://package-check"}  # the default, offline MiniLM embedder

    def run(tool, **parameters):
        return [m.message.json_object for m in tools[tool].from_credentials(credentials).invoke(parameters)
                if m.type.value == "json"]

    added = run("add_memory", user_id="u1", text="I like green tea")
    run("add_memory", user_id="u1", text="My car is a red hatchback")
    found = run("search_memory", user_id="u1", query="What do I drink?", top_k=1)
    print("PROBE " + json.dumps({"added": added, "found": found, "tools": sorted(tools)}))
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


def test_the_package_installs_in_a_fresh_venv_and_a_tool_runs(unpacked: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    assert subprocess.run([str(python), "-c", "import sys; assert sys.version_info[:2] >= (3, 12)"]).returncode == 0
    install = subprocess.run([str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r",
                              "requirements.txt"], cwd=unpacked, capture_output=True, text=True, timeout=1500)
    assert install.returncode == 0, install.stderr[-3000:]
    probe = subprocess.run([str(python), "-c", PROBE], cwd=unpacked, capture_output=True, text=True, timeout=300,
                           stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                                                          "HF_HUB_OFFLINE": "1"})
    lines = [line for line in probe.stdout.splitlines() if line.startswith("PROBE ")]
    assert probe.returncode == 0 and lines, probe.stderr[-3000:]
    result = json.loads(lines[0].removeprefix("PROBE "))
    assert result["tools"] == sorted(TOOL_NAMES)
    assert result["added"][0]["results"][0]["event"] == "ADD"
    assert result["found"][0]["results"][0]["memory"] == "I like green tea"


def test_the_package_holds_the_plugin_memdock_and_its_requirements(package: Path, unpacked: Path) -> None:
    with zipfile.ZipFile(package) as archive:
        names = archive.namelist()
        total = sum(info.file_size for info in archive.infolist())
    assert total < MAX_UNCOMPRESSED_BYTES
    assert not any(name.startswith("/") or name.startswith("plugin/") or "__pycache__" in name for name in names)
    for required in ("manifest.yaml", "main.py", "PRIVACY.md", "README.md", "_assets/icon.svg", ".difyignore",
                     "requirements.txt", "memdock/memory.py", "memdock/backends/chroma.py",
                     "memdock/dify_adapter/plugin_tools.py"):
        assert required in names, required
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "memdock.backends.pgvector" in (unpacked / entry_points).read_text()
    requirements = (unpacked / "requirements.txt").read_text().splitlines()
    assert "dify_plugin==0.10.2" in requirements and any(r.startswith("chromadb") for r in requirements)
    assert not any("extra ==" in r for r in requirements)


def test_difyignore_is_honoured(tmp_path: Path) -> None:
    rules = parse_ignore("# comment\n__pycache__/\n*.pyc\n/secret.txt\ndocs/**/draft.md\n!keep.pyc\n")
    cases = {("tools/__pycache__/x.py", False): True, ("a/b.pyc", False): True, ("keep.pyc", False): False,
             ("secret.txt", False): True, ("sub/secret.txt", False): False, ("docs/a/b/draft.md", False): True,
             ("docs/draft.md", False): True, ("tools/add_memory.py", False): False, ("__pycache__", True): True}
    for (path, is_dir), expected in cases.items():
        assert ignored(PurePosixPath(path), is_dir, rules) is expected, path


# -- static rules of dify.md -------------------------------------------------------------------------------

FOLDER = plugin_folder()


def load(path: str) -> dict[str, Any]:
    data = yaml.safe_load((FOLDER / path).read_text())
    assert isinstance(data, dict), path
    return data


def test_manifest_names_and_references() -> None:
    manifest = load("manifest.yaml")
    assert re.fullmatch(r"[a-z0-9_-]{1,128}", manifest["name"])
    assert re.fullmatch(r"[a-zA-Z0-9_-]{1,64}", manifest["author"])
    assert manifest["type"] == "plugin" and manifest["meta"]["runner"] == {"language": "python", "version": "3.12",
                                                                          "entrypoint": "main"}
    assert (FOLDER / "_assets" / manifest["icon"]).is_file() and (FOLDER / manifest["privacy"]).is_file()
    assert manifest["resource"]["permission"]["tool"]["enabled"] and manifest["resource"]["permission"]["endpoint"][
        "enabled"]
    for provider in manifest["plugins"]["tools"]:
        data = load(provider)
        assert isinstance(data["credentials_for_provider"], dict), "a mapping keyed by credential name"
        assert (FOLDER / data["extra"]["python"]["source"]).is_file()
        for tool in data["tools"]:
            assert (FOLDER / load(tool)["extra"]["python"]["source"]).is_file()
    for group in manifest["plugins"]["endpoints"]:
        data = load(group)
        assert isinstance(data["settings"], list)
        for endpoint in data["endpoints"]:
            assert (FOLDER / load(endpoint)["extra"]["python"]["source"]).is_file()


def test_one_dify_subclass_per_source_module() -> None:
    """The loader takes the single subclass of Tool/ToolProvider/Endpoint in each module's namespace."""
    for source in sorted(FOLDER.glob("*/*.py")):
        tree = ast.parse(source.read_text())
        classes = [node for node in tree.body if isinstance(node, ast.ClassDef)]
        imported = [alias.asname or alias.name for node in tree.body if isinstance(node, ast.ImportFrom)
                    for alias in node.names]
        assert len(classes) == 1, source
        assert not any(name.endswith(("Tool", "Provider", "Endpoint")) and name not in ("Tool", "ToolProvider",
                                                                                         "Endpoint")
                       for name in imported), f"{source} imports another plugin class"


def test_declared_parameters_and_credentials_match_what_the_code_reads() -> None:
    provider = load("provider/memdock.yaml")
    assert set(provider["credentials_for_provider"]) == set(CREDENTIALS)
    assert [Path(t).stem for t in provider["tools"]] == list(TOOL_NAMES)
    for name in TOOL_NAMES:
        tool = load(f"tools/{name}.yaml")
        assert tool["identity"]["name"] == name
        assert {p["name"] for p in tool["parameters"]} == set(PARAMETERS[name]), name
        for parameter in tool["parameters"]:
            assert parameter["form"] in ("llm", "form") and parameter["label"]["en_US"]
            for option in parameter.get("options", []):
                assert isinstance(option["value"], str)
    settings = load("endpoints/memdock.yaml")["settings"]
    for setting in settings:
        for option in setting.get("options", []):
            assert isinstance(option["value"], str)
    assert {s["name"] for s in settings} == set(ENDPOINT_SETTINGS)
