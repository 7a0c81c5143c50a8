"""payloads: unicode, large texts, nested metadata and every JSON scalar round-trip exactly."""

from __future__ import annotations

from memdock.capabilities import Capability
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


AWKWARD = {
    "big": 2**53 + 1, "neg_big": -(2**63), "f": 0.1, "tiny": 5e-324, "huge": 1.5e300, "int_like_float": 3.0,
    "empty_list": [], "empty_obj": {}, "a.b": "dotted key", "a": {"b": "nested under a"}, "nfc": "caf\u00e9",
    "nfd": "cafe\u0301", "cafe\u0301": "NFD key", "caf\u00e9": "NFC key", "long": "v" * 20_000,
    "list_of_mixed": [1, 1.0, True, None, "1", [], {}], "deep": {"x": {"y": {"z": [[[]]]}}},
}


@check("payloads", requires=Capability.NESTED_METADATA)
def check_awkward_json_round_trips(ctx: CheckContext) -> None:
    """Integers past 2^53 and 64-bit ones, subnormal and huge floats, 3.0 vs 3, [] and {}, a dotted key next
    to an object under its first part, NFC and NFD spellings (as keys and values, kept apart), a 20 KB value
    and mixed lists read back exactly, JSON types kept, through get, list and search.

    Troubleshooting: store metadata as JSON text or jsonb (not float64 numbers, not flattened on dots, not
    Unicode-normalised); parse it back with the JSON types it had.
    """
    from memdock.conformance.differential import canonical

    record = ctx.memory.add("awkward payload", user_id=ctx.user, metadata=AWKWARD)[0].record
    seen = {
        "get": ctx.memory.get(record.id).metadata,
        "list": ctx.memory.list(user_id=ctx.user).items[0].metadata,
        "search": ctx.memory.search("awkward payload", user_id=ctx.user, limit=1)[0].record.metadata,
    }
    for where, got in seen.items():
        wrong = sorted(k for k in AWKWARD if k not in got or canonical(got[k]) != canonical(AWKWARD[k]))
        extra = sorted(set(got) - set(AWKWARD))
        assert not wrong and not extra, f"{where}: keys read back differently {wrong}, extra keys {extra}"
