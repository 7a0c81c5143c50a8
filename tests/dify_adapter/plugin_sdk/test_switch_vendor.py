"""The promise of the plugin: the same tool calls with the same parameters give equivalent results whatever
memory vendor the Backend URL names. One sequence, run against memory://, a Chroma server, a memdock
server through the mem0 dialect, and PostgreSQL + pgvector."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers.memdock_server import memdock_server
from tests.helpers.plugin_loading import load_plugin, messages, tool_classes

ID = re.compile(r"^[0-9a-f-]{36}$")


@pytest.fixture(scope="module")
def mem0_via_memdock_server() -> Iterator[str]:
    with memdock_server("memory://vendor-switch?embedder=hash") as base:
        yield f"mem0+{base}/mem0?dialect=server"


@pytest.fixture(scope="module")
def backend_urls(chroma_http_url: str, mem0_via_memdock_server: str, pg_url: str) -> dict[str, str]:
    return {
        "memory": f"memory://vendor-switch-{uuid.uuid4().hex[:8]}?embedder=hash",
        "chroma server": f"{chroma_http_url}?embedder=hash&collection=vendor_switch_{uuid.uuid4().hex[:8]}",
        "mem0 dialect of a memdock server": mem0_via_memdock_server,
        "pgvector": f"{pg_url}&embedder=hash&table=vendor_switch_{uuid.uuid4().hex[:8]}",
    }


def run_sequence(tools: dict[str, Any], backend_url: str) -> list[Any]:
    """Every tool, in the order an app would call them, with fixed parameters; ids are replaced by their
    position so that results of different vendors compare."""
    credentials = {"backend_url": backend_url}
    user = {"user_id": "vendor-switch-user"}
    ids: dict[str, str] = {}

    def call(tool: str, **parameters: Any) -> dict[str, Any]:
        out = messages(tools[tool], credentials, {**user, **parameters})
        return out

    def name_ids(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: name_ids(v) for k, v in value.items() if k not in ("created_at", "updated_at", "score")}
        if isinstance(value, list):
            return [name_ids(v) for v in value]
        if isinstance(value, str) and value in ids.values():
            return next(f"<id of {k}>" for k, v in ids.items() if v == value)
        return value

    trace: list[Any] = []
    first = call("add_memory", text="I like green tea", metadata='{"topic": "drinks"}')
    ids["tea"] = first["json"][0]["results"][0]["id"]
    pair = call("add_memory", user="I live in Lyon", assistant="Lyon is a lovely city")
    ids["lyon"], ids["lovely"] = (r["id"] for r in pair["json"][0]["results"])
    trace += [name_ids(first["json"]), name_ids(pair["json"]), first["text"], pair["text"]]
    trace.append(name_ids(call("add_memory", text="I like green tea")["json"]))
    searched = call("search_memory", query="green tea", top_k=3)
    trace.append([r["memory"] for r in searched["json"][0]["results"]][:1])
    trace.append(sorted(r["memory"] for r in searched["json"][0]["results"]))
    trace.append(name_ids(call("search_memory", query="Lyon", filters='{"role": "user"}')["json"]))
    listed = call("get_all_memories")["json"][0]
    # memories added together share created_at; their order then follows their (random) ids
    trace.append({**name_ids(listed), "memories": sorted(name_ids(listed["memories"]), key=lambda m: m["memory"])})
    trace.append(name_ids(call("update_memory", memory_id=ids["tea"], text="I like oolong tea")["json"]))
    trace.append(name_ids(call("get_memory", memory_id=ids["tea"])["json"]))
    history = call("get_memory_history", memory_id=ids["tea"])["json"][0]["history"]
    trace.append([(e["event"], e["old_memory"], e["new_memory"]) for e in history])
    trace.append(name_ids(call("delete_memory", memory_id=ids["lovely"])["json"]))
    trace.append(call("get_memory", memory_id=ids["lovely"])["json"][0]["error"]["type"])
    trace.append(call("get_all_memories", top_k=1)["json"][0]["count"])
    trace.append(call("add_memory", metadata="{oops", text="x")["json"][0]["error"]["field"])
    trace.append(messages(tools["add_memory"], credentials, {"text": "nobody's"})["json"][0]["error"]["type"])
    trace.append(call("delete_all_memories")["json"])
    trace.append(call("get_all_memories")["json"][0]["count"])
    assert all(ID.match(v) for v in ids.values()) or backend_url.startswith("mem0+"), ids
    return trace


def test_the_same_tool_calls_give_the_same_results_on_every_vendor(backend_urls: dict[str, str]) -> None:
    tools = tool_classes(load_plugin())
    traces = {vendor: run_sequence(tools, url) for vendor, url in backend_urls.items()}
    reference = traces.pop("memory")
    assert reference[-1] == 0 and reference[-2] == [{"deleted": 2}]
    for vendor, trace in traces.items():
        for step, (got, expected) in enumerate(zip(trace, reference, strict=True)):
            assert got == expected, f"{vendor}, step {step}: {got!r} != {expected!r}"
