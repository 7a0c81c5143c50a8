"""The built wheel holds exactly one import package, `memdock`, with every sub-package, the typing
marker, the ``memdock`` entry-point group and the console script.

The wheel is built from a copy of the repository root (so the working tree gains no ``build/`` or
``*.egg-info``), with the environment's setuptools when it has one, else in build isolation.
"""

from __future__ import annotations

import configparser
import importlib.util
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers.paths import REPO

pytestmark = pytest.mark.slow  # builds a wheel

IGNORED = shutil.ignore_patterns(
    ".git", "build", "dist", "*.egg-info", "__pycache__", ".venv*", ".nox", ".mypy_cache", ".ruff_cache",
    ".pytest_cache", ".hypothesis", "*.difypkg",
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wheel")
    source = root / "src"
    shutil.copytree(REPO, source, ignore=IGNORED)
    out = root / "dist"
    if importlib.util.find_spec("build") is not None:
        isolation = ["--no-isolation"] if importlib.util.find_spec("setuptools") is not None else []
        command = [sys.executable, "-m", "build", "--wheel", *isolation, "--outdir", str(out), str(source)]
    else:
        isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") is not None else []
        command = [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-w", str(out), str(source)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    wheels = list(out.glob("memdock-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def names(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        return archive.namelist()


def dist_info(wheel: Path) -> str:
    [info] = {name.split("/")[0] for name in names(wheel) if name.split("/")[0].endswith(".dist-info")}
    return info


def read(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(name).decode()


def test_wheel_holds_only_the_memdock_package(wheel: Path) -> None:
    info = dist_info(wheel)
    assert info.startswith("memdock-")
    strays = [n for n in names(wheel) if not (n.startswith("memdock/") or n.startswith(f"{info}/"))]
    assert strays == []
    assert not any(n.startswith(("core/", "backends/", "tests/", "conformance/", "dify_adapter/"))
                   for n in names(wheel))


@pytest.mark.parametrize(
    "required",
    [
        "memdock/__init__.py",
        "memdock/py.typed",
        "memdock/memory.py",
        "memdock/filters.py",
        "memdock/cli.py",
        "memdock/backends/__init__.py",
        "memdock/backends/reference.py",
        "memdock/embedders/__init__.py",
        "memdock/dify_adapter/__init__.py",
        "memdock/conformance/__init__.py",
    ],
)
def test_wheel_contains(wheel: Path, required: str) -> None:
    assert required in names(wheel)


def test_wheel_contains_the_embedders_package(wheel: Path) -> None:
    assert any(n.startswith("memdock/embedders/") and n.endswith(".py") for n in names(wheel))


def test_wheel_has_no_bytecode_or_tests(wheel: Path) -> None:
    assert not [n for n in names(wheel) if n.endswith((".pyc", ".pyo")) or "/tests/" in n]


def test_entry_points_declare_the_plugin_group_and_console_script(wheel: Path) -> None:
    parser = configparser.ConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string(read(wheel, f"{dist_info(wheel)}/entry_points.txt"))
    assert parser["console_scripts"]["memdock"].replace(" ", "") == "memdock.cli:main"
    group = dict(parser["memdock"])
    assert group["reference"].replace(" ", "") == "memdock.backends.reference"
    for target in group.values():  # every entry point names a module shipped in the wheel
        module = target.split(":")[0].strip()
        path = module.replace(".", "/")
        assert f"{path}.py" in names(wheel) or f"{path}/__init__.py" in names(wheel), module


def test_metadata_names_the_distribution(wheel: Path) -> None:
    metadata = read(wheel, f"{dist_info(wheel)}/METADATA")
    assert "Name: memdock\n" in metadata
    assert "Requires-Python: >=3.12" in metadata


SOURCE_FOLDERS = {"core": "memdock", "backends": "memdock/backends", "dify_adapter": "memdock/dify_adapter",
                  "conformance": "memdock/conformance"}


def test_every_source_module_is_in_the_wheel(wheel: Path) -> None:
    """A subpackage missing from pyproject's explicit package list would silently drop out of installs."""
    root = REPO
    shipped = names(wheel)
    expected = {
        f"{target}/{path.relative_to(root / folder).as_posix()}"
        for folder, target in SOURCE_FOLDERS.items()
        for path in (root / folder).rglob("*.py")
    }
    assert expected - set(shipped) == set()
