"""The ``memdock`` command line: the README round trip (`memdock add` in one process, `memdock search` in
another, on the embedded default: real Chroma under MEMDOCK_HOME, real MiniLM embedder, networking
unused), one-line errors, global options before or after the command, plugin commands, and what a lean
install loads and says."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from memdock.cli import _parser, main


def memdock_cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed console script with its data under `home`, no MEMDOCK_URL."""
    env = {k: v for k, v in os.environ.items() if k != "MEMDOCK_URL"}
    env.update(MEMDOCK_HOME=str(home), HF_HUB_OFFLINE="1")
    exe = shutil.which("memdock", path=str(Path(sys.executable).parent)) or "memdock"
    return subprocess.run([exe, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_round_trip_on_embedded_default_across_processes(tmp_path: Path) -> None:
    added = memdock_cli(tmp_path, "add", "I like green tea", "--user-id", "u1")
    assert added.returncode == 0, added.stderr
    memdock_cli(tmp_path, "add", "My car is a red hatchback", "--user-id", "u1")
    memdock_cli(tmp_path, "add", "I play chess on Sundays", "--user-id", "u1")

    found = memdock_cli(tmp_path, "search", "what drink?", "--user-id", "u1", "--json")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert hits[0]["text"] == "I like green tea"
    assert hits[0]["scope"]["user_id"] == "u1"
    assert 0.0 <= hits[-1]["score"] <= hits[0]["score"] <= 1.0

    other = memdock_cli(tmp_path, "search", "what drink?", "--user-id", "u2", "--json")
    assert other.returncode == 0, other.stderr
    assert json.loads(other.stdout) == []
    assert any(p.name.startswith("chroma") or p.suffix == ".sqlite3" for p in tmp_path.iterdir())


def test_history_and_delete_through_the_cli(tmp_path: Path) -> None:
    added = json.loads(memdock_cli(tmp_path, "add", "likes jasmine tea", "--user-id", "u1", "--json").stdout)
    memory_id = added[0]["id"]
    assert memdock_cli(tmp_path, "update", memory_id, "--text", "likes oolong tea").returncode == 0
    assert memdock_cli(tmp_path, "delete", memory_id).returncode == 0
    events = json.loads(memdock_cli(tmp_path, "history", memory_id, "--json").stdout)
    assert [e["event"] for e in events] == ["ADD", "UPDATE", "DELETE"]
    assert events[1]["old_text"] == "likes jasmine tea" and events[1]["new_text"] == "likes oolong tea"
    missing = memdock_cli(tmp_path, "get", memory_id)
    assert missing.returncode == 1 and "MemoryNotFound" in missing.stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("add", "x"), "scope"),
        (("add", "x", "--user-id", "u1", "--metadata", "[1]"), "metadata"),
        (("search", "q", "--user-id", "u1", "--filter", '{"rating": {"near": 3}}'), "near"),
        (("--url", "nosuch://x", "count", "--user-id", "u1"), "nosuch"),
    ],
)
def test_errors_print_one_line_and_exit_non_zero(tmp_path: Path, args: tuple[str, ...], needle: str) -> None:
    result = memdock_cli(tmp_path, *args)
    assert result.returncode == 2
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("memdock: error:")]
    assert len(error_lines) == 1 and needle in error_lines[0]


# --- global options in either position --------------------------------------------------------------


def store_url(name: str) -> str:
    """A named in-process store (shared by every `Memory.open` in this process) with the hash embedder."""
    return f"memory://{name}?embedder=hash"


def count_in_process(capsys: pytest.CaptureFixture[str], *argv: str) -> int:
    """`memdock ... count --user-id u1` run in this process; returns the printed count."""
    capsys.readouterr()
    assert main([*argv]) == 0
    return int(capsys.readouterr().out.strip())


def test_url_works_before_and_after_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    filled, empty = store_url(f"filled-{uuid.uuid4().hex}"), store_url(f"empty-{uuid.uuid4().hex}")
    assert main(["--url", filled, "add", "before the command", "--user-id", "u1"]) == 0
    assert main(["add", "after the command", "--user-id", "u1", "--url", filled]) == 0
    assert main(["add", "--url", filled, "right after the name", "--user-id", "u1"]) == 0

    assert count_in_process(capsys, "--url", filled, "count", "--user-id", "u1") == 3
    assert count_in_process(capsys, "count", "--url", filled, "--user-id", "u1") == 3
    assert count_in_process(capsys, "count", "--url", empty, "--user-id", "u1") == 0


def test_the_url_typed_last_wins(capsys: pytest.CaptureFixture[str]) -> None:
    filled, empty = store_url(f"filled-{uuid.uuid4().hex}"), store_url(f"empty-{uuid.uuid4().hex}")
    assert main(["--url", filled, "add", "remember me", "--user-id", "u1"]) == 0
    assert count_in_process(capsys, "--url", empty, "count", "--user-id", "u1", "--url", filled) == 1
    assert count_in_process(capsys, "--url", filled, "count", "--user-id", "u1", "--url", empty) == 0
    assert count_in_process(capsys, "count", "--url", empty, "--url", filled, "--user-id", "u1") == 1


def subcommand_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[
        tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """(command words, parser) of every command and nested command below `parser`."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield (*path, name), sub
                yield from subcommand_parsers(sub, (*path, name))


def test_every_command_including_plugin_commands_takes_the_global_url() -> None:
    parser = _parser()
    commands = dict(subcommand_parsers(parser))
    assert {("serve",), ("dify",), ("dify", "package"), ("openapi",), ("conformance",), ("add",),
            ("count",)} <= set(commands)
    for words, sub in commands.items():
        assert any("--url" in action.option_strings for action in sub._actions), words
    assert parser.parse_args(["serve", "--url", "memory://a"]).url == "memory://a"
    assert parser.parse_args(["--url", "memory://a", "serve", "--port", "9"]).url == "memory://a"
    assert parser.parse_args(["--url", "memory://a", "serve", "--url", "memory://b"]).url == "memory://b"
    assert parser.parse_args(["dify", "--url", "memory://a", "package", "--url", "memory://b"]).url == "memory://b"
    assert parser.parse_args(["conformance", "memory://kit", "--url", "memory://a"]).target_url == "memory://kit"
    assert parser.parse_args(["serve"]).url is None


def test_serve_takes_url_after_the_command() -> None:
    """Configuration is checked before anything is bound: the refusal proves `serve --url` parsed."""
    result = subprocess.run([sys.executable, "-m", "memdock.cli", "serve", "--url", "memory://?embedder=hash",
                             "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2, result.stderr
    assert "refusing to listen on 0.0.0.0 without an API key" in result.stderr


# --- lean installs: what loads, and what a missing extra says ----------------------------------------


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=120, check=False)


HEAVY = ("fastapi", "starlette", "uvicorn", "yaml", "hypothesis", "chromadb", "onnxruntime", "psycopg",
         "httpx")
"""What building the parser must not import: the plugins' commands import these when they run, the
backends and embedders when they are opened."""


def test_help_loads_no_server_packaging_kit_or_driver_dependency() -> None:
    result = python(f"""
        import contextlib, json, sys
        from memdock.cli import main
        with contextlib.redirect_stdout(sys.stderr), contextlib.suppress(SystemExit):
            main(["--help"])
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})))
    """)
    assert result.returncode == 0, result.stderr
    assert "serve" in result.stderr and "conformance" in result.stderr  # the plugins' commands are listed
    assert json.loads(result.stdout.splitlines()[-1]) == []


def test_import_memdock_loads_neither_the_cli_nor_an_adapter_or_plugin() -> None:
    result = python("""
        import json, sys
        import memdock
        print(json.dumps(sorted(m for m in sys.modules if m == "memdock.cli" or m.startswith(
            ("memdock.backends", "memdock.dify_adapter", "memdock.conformance", "fastapi", "uvicorn")))))
    """)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


@pytest.mark.parametrize(
    ("missing", "argv", "command", "extra"),
    [
        ("fastapi", ["--url", "memory://?embedder=hash", "serve"], "memdock serve", "server"),
        ("uvicorn", ["serve"], "memdock serve", "server"),
        ("fastapi", ["openapi"], "memdock openapi", "server"),
        ("yaml", ["dify", "package", "-o", "OUT/memdock.difypkg"], "memdock dify package", "dify"),
        ("hypothesis", ["conformance", "memory://"], "memdock conformance", "conformance"),
        ("psycopg", ["--url", "pgvector://u@127.0.0.1:9/db?embedder=hash", "count", "--user-id", "u"],
         "the pgvector backend", "pgvector"),
        ("httpx", ["--url", "mem0+http://127.0.0.1:9", "count", "--user-id", "u"], "the mem0 backend", "mem0"),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(
    tmp_path: Path, missing: str, argv: list[str], command: str, extra: str,
) -> None:
    args = [arg.replace("OUT", str(tmp_path)) for arg in argv]
    result = python(f"""
        import sys
        sys.modules[{missing!r}] = None  # as if not installed: importing it raises ModuleNotFoundError
        from memdock.cli import main
        sys.exit(main({args!r}))
    """)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("memdock: error:")]
    assert errors == [f"memdock: error: Unsupported: {command} needs {missing}, which is not installed: "
                      f"pip install 'memdock[{extra}]'"]
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


def test_dify_package_needs_only_the_dify_extra(tmp_path: Path) -> None:
    """The package carries every memdock module, found without running them (some import other extras)."""
    output = tmp_path / "memdock.difypkg"
    result = python(f"""
        import sys
        for name in ("hypothesis", "fastapi", "starlette", "uvicorn", "psycopg", "psycopg_pool", "pgvector"):
            sys.modules[name] = None  # as if not installed
        from memdock.cli import main
        sys.exit(main(["dify", "package", "-o", {str(output)!r}]))
    """)
    assert result.returncode == 0, result.stderr
    assert str(output) in result.stdout
    with zipfile.ZipFile(output) as archive:
        assert {"memdock/conformance/checks/filter_properties.py", "memdock/dify_adapter/server/app.py",
                "memdock/dify_adapter/commands.py", "manifest.yaml"} <= set(archive.namelist())


@pytest.mark.parametrize(("backend", "title"), [("chroma", "ChromaBackend.Settings"),
                                                ("pgvector", "PgvectorBackend.Settings"),
                                                ("reference", "ReferenceBackend.Settings")])
def test_a_backends_settings_schema_is_named_after_it_and_refuses_unknown_parameters(
    backend: str, title: str, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["backends", "--schema", backend]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == title and schema["additionalProperties"] is False
