"""Third-party plugins: a throwaway distribution declaring a ``memdock`` entry point is found, listed with
its version, can be disabled by name, and opens through a URL; a plugin whose import fails is reported
and does not take the other backends down.

The throwaway packages are really pip-installed, into a folder of their own that only the checks'
subprocesses put on their path (so tests running beside them never see them); every check runs in a
fresh subprocess so entry points are read anew.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# A per-run suffix keeps concurrent runs in one environment from uninstalling each other's packages.
RUN = uuid.uuid4().hex[:8]
TOY_DIST = f"memdock-toy-backend-{RUN}"
TOY_MODULE_NAME = f"memdock_toy_backend_{RUN}"
TOY_VERSION = "1.2.3"
BROKEN_DIST = f"memdock-broken-plugin-{RUN}"
BROKEN_MODULE_NAME = f"memdock_broken_plugin_{RUN}"
BROKEN_VERSION = "0.0.1"

TOY_MODULE = '''
"""A toy memdock backend: the reference store under another scheme, plus a tiny embedder."""

import hashlib
import math
from typing import Any

from memdock.backends.reference import CAPABILITIES, ReferenceBackend
from memdock.embedding import Embedder, EmbedderSpec
from memdock.hookspecs import hookimpl


class ToyEmbedder(Embedder):
    name = "toyhash"
    dimension = 16

    def embed(self, texts):
        out = []
        for text in texts:
            vector = [0.0] * self.dimension
            for token in text.lower().split():
                vector[hashlib.sha256(token.encode()).digest()[0] % self.dimension] += 1.0
            norm = math.sqrt(sum(v * v for v in vector)) or 1.0
            out.append([v / norm for v in vector])
        return out


class ToyBackend(ReferenceBackend):
    name = "toy"
    description = "A toy backend for the plugin tests."
    schemes = ("toy",)
    capabilities = CAPABILITIES


@hookimpl
def register_backends(register: Any) -> None:
    register(ToyBackend)


@hookimpl
def register_embedders(register: Any) -> None:
    register(EmbedderSpec(name="toyhash", factory=ToyEmbedder, description="toy embedder"))
'''

BROKEN_MODULE = '''
raise RuntimeError("this plugin is broken on purpose")
'''


def pyproject(dist: str, version: str, module: str, entry_name: str) -> str:
    return textwrap.dedent(f"""\
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "{dist}"
        version = "{version}"
        requires-python = ">=3.12"

        [project.entry-points.memdock]
        {entry_name} = "{module}"

        [tool.setuptools]
        py-modules = ["{module}"]
        """)


def make_package(root: Path, dist: str, version: str, module: str, entry_name: str, source: str) -> Path:
    root.mkdir(parents=True)
    (root / "pyproject.toml").write_text(pyproject(dist, version, module, entry_name))
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    return root


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        capture_output=True, text=True, timeout=300, check=False,
    )


@pytest.fixture(scope="module")
def installed_plugins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    root = tmp_path_factory.mktemp("plugins")
    toy = make_package(root / "toy", TOY_DIST, TOY_VERSION, TOY_MODULE_NAME, "toy", TOY_MODULE)
    broken = make_package(
        root / "broken", BROKEN_DIST, BROKEN_VERSION, BROKEN_MODULE_NAME, "broken", BROKEN_MODULE
    )
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    site = root / "site"
    result = pip("install", "--no-deps", "--target", str(site), *isolation, str(toy), str(broken))
    assert result.returncode == 0, result.stdout + result.stderr
    _plugin_site.append(str(site))
    try:
        yield
    finally:
        _plugin_site.remove(str(site))


_plugin_site: list[str] = []
"""Where `installed_plugins` put the throwaway distributions while its tests run."""


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MEMDOCK_DISABLE_PLUGINS", "MEMDOCK_URL")}
    if _plugin_site:
        env["PYTHONPATH"] = os.pathsep.join([*_plugin_site, *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=clean_env(**env),
        capture_output=True, text=True, timeout=120, check=False,
    )


def memdock_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "memdock"
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "memdock.cli"]
    return subprocess.run(
        [*command, *args], env=clean_env(**env), capture_output=True, text=True, timeout=120, check=False
    )


LIST_PLUGINS = """
    import json
    from memdock.plugins import backend_classes, embedder_specs, list_plugins, load_failures
    print(json.dumps({
        "plugins": [{"name": p.name, "version": p.version, "hooks": list(p.hooks)} for p in list_plugins()],
        "schemes": sorted(backend_classes()),
        "embedders": sorted(embedder_specs()),
        "failures": load_failures(),
    }))
"""


@pytest.mark.usefixtures("installed_plugins")
def test_toy_plugin_is_registered_with_its_version() -> None:
    result = run_python(LIST_PLUGINS)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    toy = {p["name"]: p for p in data["plugins"]}["toy"]
    assert toy["version"] == TOY_VERSION
    assert set(toy["hooks"]) == {"register_backends", "register_embedders"}
    assert "toy" in data["schemes"] and "memory" in data["schemes"]
    assert "toyhash" in data["embedders"]
    reference = {p["name"]: p for p in data["plugins"]}["reference"]
    assert reference["hooks"] == ["register_backends"]


@pytest.mark.usefixtures("installed_plugins")
def test_cli_plugins_json_lists_the_toy_plugin() -> None:
    result = memdock_cli("plugins", "--json")
    assert result.returncode == 0, result.stderr
    entries = json.loads(result.stdout)
    assert isinstance(entries, list)
    by_name = {e["name"]: e for e in entries}
    assert by_name["toy"]["version"] == TOY_VERSION
    assert "register_backends" in by_name["toy"]["hooks"]
    assert "reference" in by_name


@pytest.mark.usefixtures("installed_plugins")
def test_cli_backends_lists_the_toy_backend() -> None:
    plain = memdock_cli("backends")
    assert plain.returncode == 0, plain.stderr
    assert "toy://" in plain.stdout and "memory://" in plain.stdout
    as_json = memdock_cli("backends", "--json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    toy = {b["name"]: b for b in data["backends"]}["toy"]
    assert toy["schemes"] == ["toy"]
    assert "history" in toy["capabilities"]
    assert "toyhash" in {e["name"] for e in data["embedders"]}
    schema = memdock_cli("backends", "--schema", "toy")
    assert schema.returncode == 0, schema.stderr
    assert "name" in json.loads(schema.stdout)["properties"]


@pytest.mark.usefixtures("installed_plugins")
def test_disabled_plugin_is_absent() -> None:
    result = run_python(LIST_PLUGINS, MEMDOCK_DISABLE_PLUGINS="toy")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert "toy" not in {p["name"] for p in data["plugins"]}
    assert "toy" not in data["schemes"]
    assert "memory" in data["schemes"]

    cli = memdock_cli("plugins", "--json", MEMDOCK_DISABLE_PLUGINS="toy")
    assert cli.returncode == 0, cli.stderr
    assert "toy" not in {e["name"] for e in json.loads(cli.stdout)}
    backends = memdock_cli("backends", MEMDOCK_DISABLE_PLUGINS="some-other, toy")
    assert backends.returncode == 0, backends.stderr
    assert "toy://" not in backends.stdout and "memory://" in backends.stdout

    opened = run_python(
        """
        import memdock
        try:
            memdock.open("toy://?embedder=toyhash")
        except memdock.InvalidInput as exc:
            print(exc.field, exc)
        """,
        MEMDOCK_DISABLE_PLUGINS="toy",
    )
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.startswith("url ") and "'toy'" in opened.stdout


@pytest.mark.usefixtures("installed_plugins")
def test_open_toy_url_round_trip() -> None:
    result = run_python(
        """
        import memdock
        mem = memdock.open("toy://?embedder=toyhash")
        assert type(mem.backend).__name__ == "ToyBackend", type(mem.backend)
        [added] = mem.add("the toy backend remembers", user_id="u1")
        hits = mem.search("the toy backend remembers", user_id="u1")
        assert hits[0].record.id == added.record.id
        assert mem.count(user_id="u1") == 1
        named_a = memdock.open("toy://shared?embedder=toyhash")
        named_b = memdock.open("toy://shared?embedder=toyhash")
        named_a.add("shared", user_id="u1")
        assert named_b.count(user_id="u1") == 1
        print("ok")
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


@pytest.mark.usefixtures("installed_plugins")
def test_broken_plugin_is_reported_and_isolated() -> None:
    result = run_python(LIST_PLUGINS)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert "broken" in data["failures"]
    assert "RuntimeError" in data["failures"]["broken"]
    assert "broken on purpose" in data["failures"]["broken"]
    assert "broken" not in {p["name"] for p in data["plugins"]}
    assert {"memory", "toy"} <= set(data["schemes"])

    works = run_python(
        """
        import memdock
        for url in ("memory://?embedder=toyhash", "toy://?embedder=toyhash"):
            mem = memdock.open(url)
            mem.add("still works", user_id="u1")
            assert mem.count(user_id="u1") == 1
        print("ok")
        """
    )
    assert works.returncode == 0, works.stderr
    assert works.stdout.strip() == "ok"

    cli = memdock_cli("plugins", "--json")
    assert cli.returncode == 0, cli.stderr
    broken = {e["name"]: e for e in json.loads(cli.stdout)}["broken"]
    assert "broken on purpose" in broken["error"]


@pytest.mark.usefixtures("installed_plugins")
def test_disabling_the_broken_plugin_silences_it() -> None:
    result = run_python(LIST_PLUGINS, MEMDOCK_DISABLE_PLUGINS="broken")
    assert result.returncode == 0, result.stderr
    assert "broken" not in json.loads(result.stdout)["failures"]
