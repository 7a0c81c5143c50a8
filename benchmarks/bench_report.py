"""Turn a results dict of `bench_backends` into Markdown tables (printed, and pasted into docs/benchmarks.md)
and two PNG plots: median scoped search latency against the record count, per store, and memdock beside
mem0 and the raw engine for every operation, per store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

STORES = ("memory", "chroma", "pgvector")
LATENCY_PLOT = "bench-latency-vs-records.png"
SIDE_BY_SIDE_PLOT = "bench-memdock-mem0-raw.png"


def _get(section: dict[str, Any] | None, label: str, *keys: str) -> Any:
    value: Any = (section or {}).get(label)
    for key in keys:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _empty(section: dict[str, Any] | None, label: str) -> str:
    empty, calls = _get(section, label, "empty_answers"), _get(section, label, "calls")
    return f" ({empty} of {calls} answers empty)" if empty else ""


def _share(vector_ms: Any, text_ms: Any) -> str:
    if not isinstance(vector_ms, int | float) or not isinstance(text_ms, int | float) or not text_ms:
        return "-"
    return f"{max(0.0, 1 - vector_ms / text_ms):.0%}"


def _ratio(a: Any, b: Any) -> str:
    return f"{a / b:.2f}x" if isinstance(a, int | float) and isinstance(b, int | float) and b else "-"


def labels_of(size: dict[str, Any]) -> list[str]:
    """Every system label that has a figure at this size, in the stores' order."""
    seen: list[str] = []
    for key in ("search_vector_user", "search_text", "add_one"):
        for label in size.get(key, {}):
            if label not in seen:
                seen.append(label)
    return sorted(seen, key=lambda label: (_store_of(label), seen.index(label)))


def _store_of(label: str) -> int:
    for n, store in enumerate(STORES):
        if label.endswith(store) or (store == "memory" and label == "raw numpy") or (
                store == "chroma" and label == "raw chromadb") or (store == "pgvector" and label == "raw psycopg"):
            return n
    return len(STORES)


RAW = {"memory": "raw numpy", "chroma": "raw chromadb", "pgvector": "raw psycopg"}


def _style(label: str) -> tuple[str, str]:
    """One colour per kind of system (memdock blue, raw grey, mem0 orange), dashed for memdock's backend call."""
    if label.startswith("memdock backend"):
        return "tab:cyan", "--"
    if label.startswith("memdock"):
        return "tab:blue", "-"
    if label.startswith("mem0"):
        return "tab:orange", "-"
    return "tab:gray", "-"


def render_tables(report: dict[str, Any]) -> str:
    """Markdown: per size, every system's figures and the side-by-side ratios; then /retrieval and the
    embedder."""
    lines: list[str] = []
    machine = report.get("machine", {})
    lines.append(f"machine: {machine.get('cpus')} CPUs, Python {machine.get('python')}, {machine.get('platform')}, "
                 f"load average {machine.get('load_average_at_start')} -> {machine.get('load_average_at_end')}")
    lines.append(f"versions: {machine.get('versions')}")
    for size in report.get("sizes", []):
        n = size["records"]
        lines += ["", f"### {n:,} records ({size['users']} users: 1% each; {size['agents']} agents, Zipf: "
                  f"{size['agent_scope_sizes'][0]} to {size['agent_scope_sizes'][-1]} records)", "",
                  "| system | search, vector given: p50 / p95 ms | recall@10 (1% scopes) | skewed scopes: p50 ms "
                  "| recall@10 (skewed) | search, text: p50 / p95 ms | add one by one (records/s) "
                  "| add batched (records/s) |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for label in labels_of(size):
            u, a, t = size.get("search_vector_user"), size.get("search_vector_agent"), size.get("search_text")
            lines.append(
                f"| {label} | {_fmt(_get(u, label, 'median_ms'))} / {_fmt(_get(u, label, 'p95_ms'))} "
                f"| {_fmt(_get(u, label, 'recall_at_10'))} | {_fmt(_get(a, label, 'median_ms'))} "
                f"| {_fmt(_get(a, label, 'recall_at_10'))} "
                f"| {_fmt(_get(t, label, 'median_ms'))} / {_fmt(_get(t, label, 'p95_ms'))}{_empty(t, label)} "
                f"| {_fmt(_get(size.get('add_one'), label, 'per_s'), 0)} "
                f"| {_fmt(_get(size.get('add_batch'), label, 'per_s'), 0)} |")
        lines += ["", "| store | search (vector) memdock / raw | memdock backend call / raw | search (text) memdock "
                  "/ raw | search (text) memdock / mem0 | add one: memdock / mem0 throughput | add batched: memdock "
                  "/ mem0 throughput | query embedding's share of memdock's text search |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for store in STORES:
            md, raw, m0, be = f"memdock {store}", RAW[store], f"mem0 {store}", f"memdock backend {store}"
            u, t = size.get("search_vector_user"), size.get("search_text")
            lines.append(
                f"| {store} | {_ratio(_get(u, md, 'median_ms'), _get(u, raw, 'median_ms'))} "
                f"| {_ratio(_get(u, be, 'median_ms'), _get(u, raw, 'median_ms'))} "
                f"| {_ratio(_get(t, md, 'median_ms'), _get(t, raw, 'median_ms'))} "
                f"| {_ratio(_get(t, md, 'median_ms'), _get(t, m0, 'median_ms'))} "
                f"| {_ratio(_get(size.get('add_one'), md, 'per_s'), _get(size.get('add_one'), m0, 'per_s'))} "
                f"| {_ratio(_get(size.get('add_batch'), md, 'per_s'), _get(size.get('add_batch'), m0, 'per_s'))} "
                f"| {_share(_get(u, md, 'median_ms'), _get(t, md, 'median_ms'))} |")
        retrieval = size.get("retrieval")
        if retrieval:
            lines += ["", "| /retrieval | 1 client: p50 / p95 ms | 1 client: requests/s | 8 clients: p50 / p95 ms "
                      "| 8 clients: requests/s | 8 clients / 1 client |", "| --- | --- | --- | --- | --- | --- |"]
            for label, fig in retrieval.items():
                lines.append(f"| {label} | {_fmt(fig['1']['median_ms'])} / {_fmt(fig['1']['p95_ms'])} "
                             f"| {_fmt(fig['1']['requests_per_s'], 1)} | {_fmt(fig['8']['median_ms'])} / "
                             f"{_fmt(fig['8']['p95_ms'])} | {_fmt(fig['8']['requests_per_s'], 1)} "
                             f"| {fig['scaling_8_over_1']:.2f}x |")
    embedder = report.get("embedder")
    if embedder:
        lines += ["", "| default embedder (MiniLM int8) | sentences/s |", "| --- | --- |",
                  f"| batch 1 | {_fmt(embedder['batch_1']['per_s'], 1)} |",
                  f"| batch 64 | {_fmt(embedder['batch_64']['per_s'], 1)} |",
                  f"| batch 64 / batch 1 | {embedder['speedup_64_over_1']:.2f}x |"]
    lines += ["", *render_targets(report)]
    if report.get("failures"):
        lines += ["", "failures:"] + [f"- {label}: {why}" for label, why in report["failures"].items()]
    return "\n".join(lines)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def render_targets(report: dict[str, Any]) -> list[str]:
    """Issue 19's targets against the largest size measured: target, figure, met or missed (and by how much)."""
    sizes = report.get("sizes", [])
    if not sizes:
        return []
    size = sizes[-1]  # the largest: the one with every scenario
    n = f"{size['records']:,} records"
    rows: list[tuple[str, float | None, float, bool]] = []  # what, measured, target, higher is better
    u, t = size.get("search_vector_user"), size.get("search_text")
    for store, bound in (("pgvector", 1.15), ("chroma", 1.15), ("memory", 5.0)):
        md, raw = _num(_get(u, f"memdock {store}", "median_ms")), _num(_get(u, RAW[store], "median_ms"))
        rows.append((f"search overhead, vector given, {store}: memdock / {RAW[store]}",
                     md / raw if md and raw else None, bound, False))
    for store in ("chroma", "pgvector"):
        for key, bound, what in (("add_one", 2.0, "one by one"), ("add_batch", 5.0, "batched")):
            md, m0 = _num(_get(size.get(key), f"memdock {store}", "per_s")), _num(_get(size.get(key), f"mem0 {store}",
                                                                                          "per_s"))
            rows.append((f"add {what}, {store}: memdock / mem0 throughput", md / m0 if md and m0 else None, bound,
                         True))
        md, m0 = _num(_get(t, f"memdock {store}", "median_ms")), _num(_get(t, f"mem0 {store}", "median_ms"))
        rows.append((f"search, text, {store}: memdock / mem0 latency", md / m0 if md and m0 else None, 0.7, False))
    for store in STORES:
        rows.append((f"recall@10 at 1%, memdock {store}", _num(_get(u, f"memdock {store}", "recall_at_10")), 1.0,
                     True))
    retrieval = size.get("retrieval") or {}
    rows.append(("/retrieval p50 ms, pgvector, 1 client", _num(_get(retrieval, "memdock pgvector", "1", "median_ms")),
                 20.0, False))
    for store in STORES:
        rows.append((f"/retrieval throughput, {store}: 8 clients / 1 client",
                     _num(_get(retrieval, f"memdock {store}", "scaling_8_over_1")), 1.6, True))
    lines = [f"Targets of issue 19 at {n}:", "", "| target | measured | bound | verdict |", "| --- | --- | --- | --- |"]
    for what, measured, bound, higher in rows:
        if measured is None:
            verdict = "not measured"
        elif (measured >= bound) if higher else (measured <= bound):
            verdict = "met"
        else:
            verdict = (f"missed: {measured / bound:.0%} of the bound" if higher
                       else f"missed: {measured / bound:.2f}x the bound")
        sign = ">=" if higher else "<="
        lines.append(f"| {what} | {_fmt(measured)} | {sign} {bound:g} | {verdict} |")
    return lines


def draw_plots(report: dict[str, Any], folder: Path) -> list[Path]:
    """Write the two PNGs into `folder`; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    sizes = report.get("sizes", [])
    title = (f"{report['machine'].get('cpus')} CPUs, Python {report['machine'].get('python')}, "
             f"{report.get('when', '')[:10]}")

    fig, axes = plt.subplots(1, len(STORES), figsize=(13, 4), sharey=True)
    for ax, store in zip(axes, STORES, strict=True):
        labels = sorted({label for s in sizes for label in s.get("search_vector_user", {})
                         if _store_of(label) == STORES.index(store)})
        for label in labels:
            points = [(s["records"], s["search_vector_user"][label]["median_ms"]) for s in sizes
                      if label in s.get("search_vector_user", {})]
            colour, style = _style(label)
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label, color=colour,
                    linestyle=style)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(store)
        ax.set_xlabel("records")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("scoped top-10 search, vector given: median ms")
    fig.suptitle(f"Search latency against record count ({title})")
    fig.tight_layout()
    latency = folder / LATENCY_PLOT
    fig.savefig(latency, dpi=110)
    plt.close(fig)

    last = sizes[-1] if sizes else {}
    operations = (("search, vector", "search_vector_user", False), ("search, text", "search_text", False),
                  ("add one", "add_one", True), ("add batched", "add_batch", True))
    fig, axes = plt.subplots(1, len(STORES), figsize=(13, 4.2), sharey=True)
    for ax, store in zip(axes, STORES, strict=True):
        systems = [(f"memdock {store}", "tab:blue"), (RAW[store], "tab:gray"), (f"mem0 {store}", "tab:orange")]
        width = 0.8 / len(systems)
        for k, (label, colour) in enumerate(systems):
            heights = []
            for _, key, is_rate in operations:
                figure = _get(last.get(key), label, "per_s" if is_rate else "median_ms")
                heights.append((1000.0 / figure if is_rate else figure) if figure else 0.0)
            if any(heights):
                ax.bar([n + k * width for n in range(len(operations))], heights, width, label=label, color=colour)
        ax.set_xticks([n + width for n in range(len(operations))], [op[0] for op in operations], fontsize=8)
        ax.set_yscale("log")
        ax.set_title(store)
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("ms per search / ms per record added (lower is better)")
    fig.suptitle(f"memdock, mem0ai and the raw engine at {last.get('records', 0):,} records ({title})")
    fig.tight_layout()
    side = folder / SIDE_BY_SIDE_PLOT
    fig.savefig(side, dpi=110)
    plt.close(fig)
    return [latency, side]
