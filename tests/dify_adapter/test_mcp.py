"""``memdock mcp``, driven by the MCP SDK's own client: over stdio (a real ``memdock mcp`` subprocess the
client starts) and over Streamable HTTP (a real ``memdock mcp --transport http`` process on 127.0.0.1,
started and stopped here). Every tool, scope confinement, tool errors that leave the session usable, the
key rules of ``memdock serve``, and the isolation property the HTTP server's tests hold
(``test_u2_never_sees_u1s_memories_through_any_route``), here through every MCP tool and resource.

The tool definitions are shared with the Dify plugin: the first tests hold the plugin's tool YAML files
equal to `memdock.dify_adapter.plugin_logic.tool_specs`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import yaml
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client

from memdock.dify_adapter.mcp_server.scope import ScopeNotAllowed, ScopePolicy
from memdock.dify_adapter.plugin_logic.tool_specs import TOOL_SPECS, input_schema
from memdock.dify_adapter.plugin_logic.tools import TOOL_NAMES, ToolCall
from memdock.errors import InvalidInput, ScopeRequired
from memdock.memory import Memory
from memdock.models import Scope
from tests.helpers.local_process import free_port, serving
from tests.helpers.paths import REPO

MEMDOCK = shutil.which("memdock", path=str(Path(sys.executable).parent)) or "memdock"
PLUGIN_TOOLS = REPO / "dify_adapter" / "plugin" / "tools"
KEY_U1 = "u1-key-0123456789abcdef"
KEY_U2 = "u2-key-0123456789abcdef"
KEY_ALL = "all-key-0123456789abcdef"
SECRET = "u1 secret: the vault code is 1234"


def chroma_url(folder: Path) -> str:
    return f"chroma://{folder}/db?embedder=hash"


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    anyio.run(scenario)


@asynccontextmanager
async def stdio_client(*args: str) -> AsyncIterator[Client]:
    """The SDK's client over a ``memdock <args>`` subprocess it starts (and stops on exit)."""
    async with Client(StdioServerParameters(command=MEMDOCK, args=list(args)), read_timeout_seconds=60) as client:
        yield client


@asynccontextmanager
async def http_client(url: str, key: str | None) -> AsyncIterator[Client]:
    """The SDK's client over Streamable HTTP, presenting `key` as a bearer token."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with (httpx2.AsyncClient(headers=headers, timeout=60) as http,
                Client(streamable_http_client(url, http_client=http), read_timeout_seconds=60) as client):
        yield client


@contextmanager
def mcp_http_server(tmp_path: Path, *args: str) -> Iterator[str]:
    """A real ``memdock mcp --transport http`` on a free 127.0.0.1 port; yields its endpoint URL."""
    port = free_port()
    command = [MEMDOCK, "--url", chroma_url(tmp_path), "mcp", "--transport", "http", "--port", str(port), *args]
    with serving(command, f"http://127.0.0.1:{port}/healthz", tmp_path / "mcp.log"):
        yield f"http://127.0.0.1:{port}/mcp"


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """A successful call's structured result (fails the test on a tool error)."""
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, (tool, result.content)
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def refused(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    """A call that must be a tool error: its ``error`` object (type, message, field)."""
    result = await client.call_tool(tool, arguments)
    assert result.is_error, (tool, result.structured_content)
    text = result.content[0].text  # type: ignore[union-attr]
    error = result.structured_content["error"]
    assert text == f"Error: {error['message']}"
    return dict(error)


# -- one definition for both front ends ----------------------------------------------------------------------


@pytest.mark.parametrize("spec", TOOL_SPECS, ids=lambda s: s.name)
def test_the_dify_tool_yaml_says_what_the_shared_spec_says(spec: Any) -> None:
    declared = yaml.safe_load((PLUGIN_TOOLS / f"{spec.name}.yaml").read_text())
    assert declared["identity"]["name"] == spec.name
    assert declared["description"]["llm"] == spec.description
    assert declared["output_schema"] == spec.output_schema
    dify_type = {"string": "string", "json": "string", "number": "number", "integer": "number"}
    assert [(p["name"], p["type"], p["required"], p["llm_description"]) for p in declared["parameters"]] == [
        (p.name, "select" if p.options else dify_type[p.kind], p.required, p.description) for p in spec.params]
    for param in declared["parameters"]:
        shared = next(p for p in spec.params if p.name == param["name"])
        assert (param.get("default"), param.get("min"), param.get("max")) == (
            shared.default, shared.minimum, shared.maximum)
        assert [option["value"] for option in param.get("options", [])] == list(shared.options)
    assert tuple(s.name for s in TOOL_SPECS) == TOOL_NAMES


def test_input_schemas_leave_the_scope_out_unless_calls_may_choose_it() -> None:
    search = next(s for s in TOOL_SPECS if s.name == "search_memory")
    fixed = input_schema(search, scope_arguments=False)
    assert set(fixed["properties"]) == {"query", "top_k", "threshold", "filters", "mode"}
    assert fixed["properties"]["mode"]["enum"] == ["hybrid", "vector", "keyword"]
    assert fixed["required"] == ["query"]
    assert fixed["properties"]["top_k"] == {"type": "integer", "description": "How many memories to return.",
                                            "default": 5, "minimum": 1, "maximum": 100}
    assert fixed["properties"]["filters"]["type"] == "object"
    assert {"user_id", "agent_id", "run_id"} <= set(input_schema(search)["properties"])


# -- the scope rule ------------------------------------------------------------------------------------------


def scope_for(policy: ScopePolicy, **arguments: Any) -> Scope:
    return policy.scope_of(ToolCall(arguments, policy.rule()))


def test_a_fixed_scope_cannot_be_changed_or_widened_by_a_call() -> None:
    policy = ScopePolicy.from_ids({"user_id": "alice"}, allow_arguments=False)
    assert scope_for(policy).ids() == {"user_id": "alice"}
    assert scope_for(policy, user_id="alice").ids() == {"user_id": "alice"}
    with pytest.raises(ScopeNotAllowed, match="fixed to user_id='alice'") as error:
        scope_for(policy, user_id="bob")
    assert error.value.field == "user_id"
    with pytest.raises(ScopeNotAllowed, match="--allow-scope-arguments"):
        scope_for(policy, run_id="r1")
    with pytest.raises(InvalidInput, match="--user-id"):
        ScopePolicy.from_ids({}, allow_arguments=False)


def test_scope_arguments_may_narrow_but_never_change_the_fixed_ids() -> None:
    policy = ScopePolicy.from_ids({"user_id": "alice"}, allow_arguments=True)
    assert scope_for(policy, run_id="r1").ids() == {"user_id": "alice", "run_id": "r1"}
    with pytest.raises(ScopeNotAllowed):
        scope_for(policy, user_id="bob", run_id="r1")
    open_policy = ScopePolicy.from_ids({}, allow_arguments=True)
    assert scope_for(open_policy, user_id="bob").ids() == {"user_id": "bob"}
    with pytest.raises(ScopeRequired):
        scope_for(open_policy)


# -- stdio: a real memdock mcp subprocess --------------------------------------------------------------------


def test_every_tool_over_stdio_within_the_fixed_scope(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with stdio_client("mcp", "--url", chroma_url(tmp_path), "--user-id", "alice") as client:
            listed = {tool.name: tool for tool in (await client.list_tools()).tools}
            assert tuple(listed) == TOOL_NAMES
            for tool in listed.values():
                assert not {"user_id", "agent_id", "run_id"} & set(tool.input_schema["properties"])
                assert tool.output_schema is not None and "error" not in tool.output_schema["properties"]
            assert "memories" not in listed["search_memory"].output_schema["properties"]  # type: ignore[index]

            added = await call(client, "add_memory", text="I like green tea", metadata={"topic": "drinks"})
            [record] = added["results"]
            assert (record["event"], record["memory"], record["user_id"]) == ("ADD", "I like green tea", "alice")
            pair = await call(client, "add_memory", user="I live in Lisbon", metadata='{"topic": "home"}')
            assert pair["results"][0]["memory"] == "I live in Lisbon"
            memory_id = record["id"]

            hits = (await call(client, "search_memory", query="green tea", top_k=1))["results"]
            assert [h["id"] for h in hits] == [memory_id] and 0 <= hits[0]["score"] <= 1
            filtered = await call(client, "search_memory", query="tea", filters={"topic": "home"})
            assert [h["memory"] for h in filtered["results"]] == ["I live in Lisbon"]
            listed_all = await call(client, "get_all_memories")
            assert (listed_all["count"], listed_all["more"]) == (2, False)
            assert (await call(client, "get_memory", memory_id=memory_id))["memory"] == "I like green tea"
            updated = await call(client, "update_memory", memory_id=memory_id, text="I like oolong tea")
            assert (updated["event"], updated["memory"]) == ("UPDATE", "I like oolong tea")
            history = (await call(client, "get_memory_history", memory_id=memory_id))["history"]
            assert [e["event"] for e in history] == ["ADD", "UPDATE"]
            assert history[1]["old_memory"] == "I like green tea"
            resources = (await client.list_resources()).resources
            assert [str(r.uri) for r in resources] == ["memdock://memories"]
            contents = (await client.read_resource("memdock://memories")).contents
            assert {m["memory"] for m in json.loads(contents[0].text)["memories"]} == {  # type: ignore[union-attr]
                "I like oolong tea", "I live in Lisbon"}
            assert (await call(client, "delete_memory", memory_id=memory_id))["event"] == "DELETE"
            assert (await refused(client, "get_memory", memory_id=memory_id))["type"] == "MemoryNotFound"
            assert (await call(client, "delete_all_memories"))["deleted"] == 1
            assert (await call(client, "get_all_memories"))["count"] == 0

    run(scenario)


def test_bad_arguments_and_other_scopes_get_tool_errors_and_the_session_goes_on(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with stdio_client("--url", chroma_url(tmp_path), "mcp", "--user-id", "alice") as client:
            await call(client, "add_memory", text="alice likes chess")
            error = await refused(client, "search_memory", query="chess", top_k="lots")
            assert (error["type"], error["field"]) == ("InvalidInput", "top_k")
            assert (await refused(client, "add_memory", metadata={"a": 1}))["field"] == "text"
            assert (await refused(client, "search_memory", query="x", filters="{not json"))["field"] == "filters"
            assert (await refused(client, "get_memory"))["message"] == "memory_id: is required"
            assert (await refused(client, "no_such_tool"))["field"] == "name"
            other = await refused(client, "search_memory", query="chess", user_id="bob")
            assert (other["type"], other["field"]) == ("ScopeNotAllowed", "user_id")
            assert (await refused(client, "add_memory", text="bob's", user_id="bob"))["type"] == "ScopeNotAllowed"
            hits = (await call(client, "search_memory", query="chess"))["results"]
            assert [h["memory"] for h in hits] == ["alice likes chess"]

    run(scenario)
    with Memory.open(chroma_url(tmp_path)) as memory:
        assert memory.count(user_id="bob") == 0 and memory.count(user_id="alice") == 1


def test_scope_arguments_when_enabled_and_a_server_that_needs_a_scope(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with stdio_client("mcp", "--url", chroma_url(tmp_path), "--allow-scope-arguments") as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            assert "user_id" in tools["add_memory"].input_schema["properties"]
            assert (await client.list_resources()).resources == []
            await call(client, "add_memory", text="ann plays go", user_id="ann")
            await call(client, "add_memory", text="ben plays chess", user_id="ben")
            hits = (await call(client, "search_memory", query="plays", user_id="ben"))["results"]
            assert [h["memory"] for h in hits] == ["ben plays chess"]
            assert (await refused(client, "get_all_memories"))["type"] == "ScopeRequired"
            ann_id = (await call(client, "get_all_memories", user_id="ann"))["memories"][0]["id"]
            assert (await refused(client, "get_memory", memory_id=ann_id, user_id="ben"))["type"] == "MemoryNotFound"

    run(scenario)
    refusal = subprocess.run([MEMDOCK, "--url", chroma_url(tmp_path), "mcp"], capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL)
    assert refusal.returncode == 2 and "--user-id" in refusal.stderr and refusal.stdout == ""


def seed_u1(folder: Path) -> list[str]:
    """Three memories of u1 and one of u2 in the Chroma store at `folder`; u1's ids."""
    with Memory.open(chroma_url(folder)) as memory:
        ids = [memory.add(text, user_id="u1", metadata={"n": n})[0].record.id
               for n, text in enumerate((SECRET, SECRET + "!", SECRET + "!!"))]
        memory.add("u2 likes jazz", user_id="u2")
    return ids


async def assert_u2_never_reaches_u1(client: Client, u1_ids: list[str]) -> None:
    """Every tool and resource, as u2 (who may name u1), never shows or changes u1's memories."""
    def leaked(result: Any) -> bool:
        return "vault code" in json.dumps(result.model_dump(mode="json"))

    reads: list[tuple[str, dict[str, Any]]] = [
        ("search_memory", {"query": "vault code"}), ("search_memory", {"query": "vault code", "user_id": "u1"}),
        ("get_all_memories", {}), ("get_all_memories", {"user_id": "u1"}),
        ("search_memory", {"query": "vault", "filters": {"user_id": "u1"}}),
        ("delete_all_memories", {"user_id": "u1"}), ("add_memory", {"text": "planted", "user_id": "u1"}),
    ]
    for memory_id in u1_ids:
        for scope in ({}, {"user_id": "u1"}):
            reads += [("get_memory", {"memory_id": memory_id, **scope}),
                      ("get_memory_history", {"memory_id": memory_id, **scope}),
                      ("update_memory", {"memory_id": memory_id, "text": "overwritten", **scope}),
                      ("delete_memory", {"memory_id": memory_id, **scope})]
    for tool, arguments in reads:
        result = await client.call_tool(tool, arguments)
        assert not leaked(result), (tool, arguments, result)
        named_u1 = arguments.get("user_id") == "u1"
        by_id = "memory_id" in arguments
        if named_u1 or by_id:
            assert result.is_error, (tool, arguments, result)
            kind = result.structured_content["error"]["type"]
            assert kind == ("ScopeNotAllowed" if named_u1 else "MemoryNotFound"), (tool, arguments, kind)
    for resource in (await client.list_resources()).resources:
        assert "vault code" not in json.dumps((await client.read_resource(str(resource.uri))).model_dump())
    assert [h["memory"] for h in (await call(client, "get_all_memories"))["memories"]] == ["u2 likes jazz"]


def assert_u1_intact(folder: Path) -> None:
    with Memory.open(chroma_url(folder)) as memory:
        texts = {r.text for r in memory.list(user_id="u1").items}
    assert texts == {SECRET, SECRET + "!", SECRET + "!!"}


def test_u2_never_sees_u1s_memories_through_any_tool_over_stdio(tmp_path: Path) -> None:
    u1_ids = seed_u1(tmp_path)

    async def scenario() -> None:
        async with stdio_client("mcp", "--url", chroma_url(tmp_path), "--user-id", "u2") as client:
            await assert_u2_never_reaches_u1(client, u1_ids)

    run(scenario)
    assert_u1_intact(tmp_path)


# -- HTTP: a real memdock mcp --transport http process -------------------------------------------------------


def keys_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps([{"name": "u1", "key": KEY_U1, "scopes": [{"user_id": "u1"}]},
                                {"name": "u2", "key": KEY_U2, "scopes": [{"user_id": "u2"}]},
                                {"name": "all", "key": KEY_ALL}]))
    return path


def test_every_tool_over_http_with_keys_and_the_isolation_property(tmp_path: Path) -> None:
    with mcp_http_server(tmp_path, "--allow-scope-arguments", "--keys-file", str(keys_file(tmp_path))) as url:
        assert httpx2.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}).status_code == 401
        wrong = httpx2.post(url, json={}, headers={"Authorization": "Bearer not-a-key-0123456789"})
        assert wrong.status_code == 401 and "not-a-key" not in wrong.text

        async def scenario() -> None:
            async with http_client(url, KEY_U1) as u1:
                assert tuple(t.name for t in (await u1.list_tools()).tools) == TOOL_NAMES
                u1_ids = [(await call(u1, "add_memory", text=text, user_id="u1"))["results"][0]["id"]
                          for text in (SECRET, SECRET + "!", SECRET + "!!")]
                hits = (await call(u1, "search_memory", query="vault code", user_id="u1", top_k=3))["results"]
                assert {h["id"] for h in hits} == set(u1_ids)
                first = u1_ids[0]
                assert (await call(u1, "get_memory", memory_id=first, user_id="u1"))["memory"] == SECRET
                await call(u1, "update_memory", memory_id=first, user_id="u1", metadata={"seen": True})
                events = (await call(u1, "get_memory_history", memory_id=first, user_id="u1"))["history"]
                assert [e["event"] for e in events] == ["ADD", "UPDATE"]
                extra = (await call(u1, "add_memory", text="temporary", user_id="u1", run_id="r9"))["results"][0]
                assert (await call(u1, "delete_memory", memory_id=extra["id"], user_id="u1"))["event"] == "DELETE"
                assert (await call(u1, "delete_all_memories", user_id="u1", run_id="nothing-here"))["deleted"] == 0
                assert (await refused(u1, "get_all_memories", user_id="u2"))["type"] == "ScopeNotAllowed"
                assert (await refused(u1, "search_memory", query="x", top_k=0, user_id="u1"))["field"] == "limit"
                assert (await call(u1, "get_all_memories", user_id="u1"))["count"] == 3  # the session went on
            async with http_client(url, KEY_U2) as u2:
                await call(u2, "add_memory", text="u2 likes jazz", user_id="u2")
                await assert_u2_with_key_never_reaches_u1(u2, u1_ids)
            async with http_client(url, KEY_ALL) as anyone:
                everything = await call(anyone, "get_all_memories", user_id="u1")
                assert {m["memory"] for m in everything["memories"]} == {SECRET, SECRET + "!", SECRET + "!!"}

        run(scenario)


async def assert_u2_with_key_never_reaches_u1(client: Client, u1_ids: list[str]) -> None:
    """As `assert_u2_never_reaches_u1`, for a key limited to u2 on a server that lets calls name scopes:
    naming u1 is refused by the key, and u1's ids are not found under u2."""
    for tool, arguments in [("search_memory", {"query": "vault code", "user_id": "u1"}),
                            ("get_all_memories", {"user_id": "u1"}), ("delete_all_memories", {"user_id": "u1"}),
                            ("add_memory", {"text": "planted", "user_id": "u1"}),
                            *[(name, {"memory_id": i, "user_id": "u1", "text": "overwritten"})
                              for i in u1_ids for name in ("get_memory", "update_memory", "delete_memory")]]:
        error = await refused(client, tool, **arguments)
        assert error["type"] == "ScopeNotAllowed" and "vault" not in error["message"], (tool, error)
    for memory_id in u1_ids:
        for tool in ("get_memory", "get_memory_history", "delete_memory"):
            error = await refused(client, tool, memory_id=memory_id, user_id="u2")
            assert error["type"] == "MemoryNotFound", (tool, error)
    hits = (await call(client, "search_memory", query="vault code", user_id="u2"))["results"]
    assert [h["memory"] for h in hits] == ["u2 likes jazz"]


def test_the_http_transport_refuses_other_hosts_without_a_key(tmp_path: Path) -> None:
    refusal = subprocess.run([MEMDOCK, "mcp", "--url", chroma_url(tmp_path), "--transport", "http",
                              "--host", "0.0.0.0", "--user-id", "u1"], capture_output=True, text=True, timeout=60)
    assert refusal.returncode == 2 and "refusing to listen on 0.0.0.0 without an API key" in refusal.stderr
    assert not (tmp_path / "db").exists()  # refused before the backend was opened


def test_a_fixed_scope_http_server_serves_one_user_and_checks_the_host(tmp_path: Path) -> None:
    u1_ids = seed_u1(tmp_path / "store")
    with mcp_http_server(tmp_path / "store", "--user-id", "u2") as url:
        rebinding = httpx2.post(url, json={}, headers={"Host": "evil.example:80"})
        assert rebinding.status_code in (403, 421)

        async def scenario() -> None:
            async with http_client(url, None) as client:
                await assert_u2_never_reaches_u1(client, u1_ids)

        run(scenario)
    assert_u1_intact(tmp_path / "store")


# -- MCP inside memdock serve ---------------------------------------------------------------------------------


def test_memdock_serve_mounts_mcp_beside_its_other_apis_with_the_same_keys(tmp_path: Path) -> None:
    """``memdock serve --mount mcp=/mcp``: one process, all APIs; MCP calls name their scope, the server's
    keys confine them, and what MCP stores the native API reads."""
    from tests.helpers.memdock_server import memdock_server

    with memdock_server(chroma_url(tmp_path), "--keys-file", str(keys_file(tmp_path)), "--mount", "mcp=/mcp") as base:
        url = f"{base}/mcp/"
        assert httpx2.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}).status_code == 401

        async def scenario() -> None:
            async with http_client(url, KEY_U1) as u1:
                assert tuple(t.name for t in (await u1.list_tools()).tools) == TOOL_NAMES
                added = (await call(u1, "add_memory", text=SECRET, user_id="u1"))["results"][0]
                assert (await refused(u1, "get_all_memories", user_id="u2"))["type"] == "ScopeNotAllowed"
                assert (await refused(u1, "get_all_memories"))["type"] == "ScopeRequired"
            async with http_client(url, KEY_U2) as u2:
                error = await refused(u2, "get_memory", memory_id=added["id"], user_id="u2")
                assert error["type"] == "MemoryNotFound"

        run(scenario)
        native = httpx2.get(f"{base}/v1/memories", params={"user_id": "u1"},
                            headers={"Authorization": f"Bearer {KEY_ALL}"})
        assert [m["text"] for m in native.json()["items"]] == [SECRET]


def test_the_mcp_mount_needs_a_prefix_of_its_own(tmp_path: Path) -> None:
    from memdock.dify_adapter.server.app import create_app
    from memdock.dify_adapter.server.config import ServerConfig
    from memdock.dify_adapter.server.options import DEFAULT_MOUNTS

    with Memory.open("memory://?embedder=hash") as memory, pytest.raises(InvalidInput) as caught:
        create_app(memory, ServerConfig(mounts={**DEFAULT_MOUNTS, "mcp": ""}))
    assert caught.value.field == "mount"
