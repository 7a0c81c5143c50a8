"""Loading memdock stays cheap: drivers load when a backend that needs them is opened, the adapters' web
stack when one of their commands runs. Each case runs in a fresh interpreter and reports which of the
heavy modules it loaded."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("psycopg", "psycopg_pool", "pgvector", "chromadb", "httpx", "fastapi", "uvicorn", "starlette",
         "onnxruntime", "tokenizers", "yaml", "hypothesis", "numpy")

PROBE = """
import contextlib, io, json, sys
{body}
print(json.dumps(sorted({{name.split('.')[0] for name in sys.modules}} & set({heavy!r}))))
"""


def heavy_modules_loaded(body: str) -> list[str]:
    """Run `body` in a fresh interpreter; the heavy top-level modules it left in `sys.modules`."""
    code = PROBE.format(body=body, heavy=HEAVY)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    loaded: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return loaded


def test_import_and_a_reference_store_load_no_driver() -> None:
    body = ("import memdock\nm = memdock.open('memory://?embedder=hash')\n"
            "m.add('tea', user_id='u')\nm.count(user_id='u')")
    assert heavy_modules_loaded(body) == []


def test_loading_every_plugin_loads_no_driver() -> None:
    body = ("from memdock.plugins import backend_classes, embedder_specs, load_failures\n"
            "assert {'memory', 'chroma', 'pgvector', 'mem0+http'} <= set(backend_classes()), backend_classes()\n"
            "assert not load_failures(), load_failures()\nembedder_specs()")
    assert heavy_modules_loaded(body) == []


@pytest.mark.parametrize("argv", [["--help"], ["serve", "--help"], ["--url", "memory://", "count", "--user-id", "u"]])
def test_cli_commands_that_need_no_driver_load_none(argv: list[str]) -> None:
    body = ("from memdock.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n"
            f"        main({argv!r})\n"
            "    except SystemExit:\n"
            "        pass")
    assert heavy_modules_loaded(body) == []


def test_the_probe_sees_a_driver_when_one_is_loaded() -> None:
    """The probe itself can fail: opening a Chroma store loads chromadb, and the probe reports it."""
    body = ("import tempfile, memdock\n"
            "memdock.open(f'chroma://{tempfile.mkdtemp()}?embedder=hash').count(user_id='u')")
    assert "chromadb" in heavy_modules_loaded(body)
