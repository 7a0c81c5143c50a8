"""The worked third-party example installs into a fresh venv and passes the whole kit through the CLI; the
pytest front end runs two groups of it there (persistence, which the example declares and memory:// does
not, and scope)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from memdock.capabilities import Capability
from memdock.conformance import all_checks
from tests.helpers.paths import REPO

pytestmark = pytest.mark.slow  # a fresh venv, filled from the package registry


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv with memdock, the example package and pytest installed from the package registry (without
    compiling every installed module to bytecode up front: Python compiles what it imports)."""
    venv = tmp_path_factory.mktemp("example") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile"]
    subprocess.run([*pip, f"{REPO}[conformance]", str(REPO / "examples" / "memdock-sqlite"), "pytest"],
                   check=True, timeout=900, capture_output=True)
    return venv


def test_example_plugin_is_listed(fresh_venv: Path) -> None:
    listed = subprocess.run([str(fresh_venv / "bin" / "memdock"), "plugins", "--json"], capture_output=True,
                            text=True, check=True, timeout=120)
    assert {"name": "sqlite", "version": "0.1.0", "hooks": ["register_backends"]} in json.loads(listed.stdout)


def test_example_passes_the_kit_through_the_cli(fresh_venv: Path, tmp_path: Path) -> None:
    result = subprocess.run([str(fresh_venv / "bin" / "memdock"), "conformance", f"sqlite://{tmp_path}/kit.db",
                             "--json"], capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["level"] == "BASE" and len(report["results"]) == len(all_checks()) >= 100
    not_applicable = {r["check"]: r["detail"] for r in report["results"] if r["status"] != "PASS"}
    keyword_checks = {c.name for c in all_checks() if c.requires is Capability.KEYWORD_SEARCH}
    assert not_applicable == {"reset_deletes_everything_when_supported":
                              "reset() is not supported: SQLiteBackend cannot delete everything at once",
                              **dict.fromkeys(keyword_checks, "capability keyword_search not declared")}


def test_example_passes_the_kit_through_pytest(fresh_venv: Path, tmp_path: Path) -> None:
    result = subprocess.run([str(fresh_venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             "--pyargs", "memdock.conformance", "--memdock-url", f"sqlite://{tmp_path}/kit.db",
                             "-k", "persistence__ or scope__"],
                            capture_output=True, text=True, timeout=600, check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:]
    selected = sum(1 for c in all_checks() if c.group in ("persistence", "scope"))
    assert re.search(rf"\b{selected} passed", result.stdout), result.stdout[-3000:]
    assert "failed" not in result.stdout and "skipped" not in result.stdout
