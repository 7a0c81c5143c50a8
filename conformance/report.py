"""Formats a conformance `Report` as a table or as JSON."""

from __future__ import annotations

import json

from memdock.conformance.runner import Report


def as_table(report: Report) -> str:
    """Group, check, status and time per line, then counts and the level."""
    lines = [f"{'group':<12} {'check':<44} {'status':<6} {'time':>7}"]
    for r in report.results:
        lines.append(f"{r.group:<12} {r.check:<44} {r.status.value:<6} {r.seconds:>6.2f}s")
        if r.detail and r.status.value != "PASS":
            lines.append(f"{'':<12} -> {r.detail}")
    counts = {s: sum(1 for r in report.results if r.status.value == s) for s in ("PASS", "FAIL", "N/A")}
    lines.append(f"{counts['PASS']} passed, {counts['FAIL']} failed, {counts['N/A']} n/a  level: {report.level}")
    if report.failed:
        lines.append(f"seed {report.seed}{' (thorough)' if report.thorough else ''}: replay with --seed {report.seed}")
    return "\n".join(lines)


def as_json(report: Report) -> str:
    """``{"url", "level", "seed", "thorough", "results": [{"group", "check", "status", "detail"}]}``; a FAIL's
    detail names its failing inputs (the stateful check's: the seed and the minimal sequence)."""
    return json.dumps({
        "url": report.url,
        "level": report.level,
        "seed": report.seed,
        "thorough": report.thorough,
        "results": [
            {"group": r.group, "check": r.check, "status": r.status.value, "detail": r.detail} for r in report.results
        ],
    }, indent=2)
