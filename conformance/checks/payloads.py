"""payloads: unicode, large texts, nested metadata and every JSON scalar round-trip exactly."""

from __future__ import annotations

from memdock.conformance.context import CheckContext
from memdock.conformance.registry import check


@check("payloads")
def check_unicode_and_emoji_round_trip(ctx: CheckContext) -> None:
    """Text and metadata with accents, CJK, RTL and emoji come back byte for byte.

    Troubleshooting: store text as UTF-8 and JSON without ASCII-escaping loss.
    """
    text = "Grüße, 你好, مرحبا 🍵🚗 — \u2018quotes\u2019"
    record = ctx.memory.add(text, user_id=ctx.user, metadata={"emoji": "🍵", "ключ": "значение"})[0].record
    got = ctx.memory.get(record.id)
    assert (got.text, got.metadata) == (text, {"emoji": "🍵", "ключ": "значение"}), got


@check("payloads")
def check_100_kb_text_round_trips(ctx: CheckContext) -> None:
    """A 100 KB text is stored and returned whole.

    Troubleshooting: use a text column without a small length limit; do not truncate documents.
    """
    text = ("memory " * 15000)[:100_000]
    record = ctx.memory.add(text, user_id=ctx.user)[0].record
    assert ctx.memory.get(record.id).text == text


@check("payloads")
def check_every_json_type_round_trips(ctx: CheckContext) -> None:
    """int stays int, float stays float, bool stays bool, null stays null, lists and objects nest.

    Troubleshooting: keep the metadata as JSON (or jsonb) and return it as stored.
    """
    metadata = {"i": 7, "f": 7.0, "neg": -1.5, "t": True, "fl": False, "n": None, "s": "",
                "l": [1, "a", None, [2]], "o": {"deep": {"deeper": [True]}}}
    record = ctx.memory.add("typed payload", user_id=ctx.user, metadata=metadata)[0].record
    got = ctx.memory.get(record.id).metadata
    assert got == metadata, got
    assert [type(got[k]) for k in ("i", "f", "t", "n")] == [int, float, bool, type(None)], got
