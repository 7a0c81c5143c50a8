"""persistence (every field) and bad_input (settings and embedders): what reopening keeps, what opening
refuses."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode, urlsplit

import memdock
from memdock.capabilities import Capability
from memdock.conformance.context import CheckContext
from memdock.conformance.differential import canonical
from memdock.conformance.registry import NotApplicable, check
from memdock.embedding import Embedder
from memdock.errors import InvalidInput
from memdock.memory import Memory


def _with_param(url: str, name: str, value: str) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&" if parts.query else ""
    return parts._replace(query=query + urlencode({name: value})).geturl()


@check("persistence", requires=Capability.PERSISTENCE)
def check_every_field_and_the_history_survive_reopen(ctx: CheckContext) -> None:
    """After close() and reopening: id, text, all four scope ids (those the backend supports), metadata
    (JSON types kept), created_at, updated_at, expires_at (with TTL) of an updated memory, and its whole
    history, read back as before.

    Troubleshooting: persist every field of `MemoryRecord` and every `HistoryEvent`, with full time precision.
    """
    expires = datetime.now(UTC) + timedelta(days=3) if Capability.TTL in ctx.memory.capabilities else None
    ids = {"user_id": ctx.user, "agent_id": ctx.agent, "run_id": "r", "app_id": "p"}
    scope = {f: v for f, v in ids.items() if f in ctx.scope_fields()}
    record = ctx.memory.add("durable in every field", **scope,  # type: ignore[arg-type]
                            metadata={"i": 2**53 + 1, "f": 1.0, "l": [None, {"x": []}]}, expires_at=expires)[0].record
    if Capability.UPDATE in ctx.memory.capabilities:
        ctx.memory.update(record.id, text="durable in every field, updated", metadata={"i": 1, "n": None})
    before = ctx.memory.get(record.id)
    history = _history(ctx.memory, record.id)
    memory = ctx.reopen()
    after = memory.get(record.id)
    fields = ("id", "text", "scope", "created_at", "updated_at", "expires_at")
    assert [getattr(after, f) for f in fields] == [getattr(before, f) for f in fields], (before, after)
    assert canonical(after.metadata) == canonical(before.metadata), (before.metadata, after.metadata)
    assert _history(memory, record.id) == history, "history changed on reopen"


def _history(memory: Memory, memory_id: str) -> list[tuple[object, ...]]:
    if Capability.HISTORY not in memory.capabilities:
        return []
    return [(e.event, e.old_text, e.new_text, canonical(e.old_metadata), canonical(e.new_metadata), e.scope)
            for e in memory.history(memory_id)]


@check("bad_input")
def check_unknown_url_settings_are_refused(ctx: CheckContext) -> None:
    """Opening the URL with an unknown query parameter raises InvalidInput naming the parameter (a typo
    must not silently fall back to a default store).

    Troubleshooting: build settings with `BackendSettings.validated` (``extra="forbid"``).
    """
    try:
        memdock.open(_with_param(ctx.url, "colection_typo", "x")).close()
    except InvalidInput as exc:
        assert exc.field is not None and "colection_typo" in exc.field, exc.field
        return
    raise AssertionError("an unknown URL parameter 'colection_typo' was accepted")


class _OtherEmbedder(Embedder):
    """Same dimension as ``hash``, another vector space."""

    name = "conformance-other"
    dimension = 64

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[1.0] + [0.0] * (self.dimension - 1) for _ in texts]


@check("bad_input")
def check_a_mismatched_embedder_is_refused(ctx: CheckContext) -> None:
    """A store written with one embedder, opened again with another (same dimension, other identity),
    raises InvalidInput naming the embedder at open or at the first write or search, and keeps its data.
    A backend that embeds server-side must refuse any embedder at open. N/A for a store that keeps
    nothing between opens.

    Troubleshooting: record `Embedder.identity` with the store (collection metadata, a table row) and
    compare it when opening (`memdock.errors.EmbedderMismatch`).
    """
    ctx.memory.add("written with the first embedder", user_id=ctx.user)
    try:
        other = Memory.open(ctx.url, embedder=_OtherEmbedder())
    except InvalidInput as exc:
        assert exc.field == "embedder", exc.field
        return
    try:
        if other.count(user_id=ctx.user) == 0:
            raise NotApplicable("the store keeps nothing between opens of the same URL")
        try:
            other.add("written with another embedder", user_id=ctx.user)
            other.search("written", user_id=ctx.user)
        except InvalidInput as exc:
            assert exc.field == "embedder", exc.field
            return
    finally:
        other.close()
    raise AssertionError("a store written with embedder 'hash' accepted embedder 'conformance-other'")
