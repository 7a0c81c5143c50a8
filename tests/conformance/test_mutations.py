"""Self-test by mutation: deliberately broken backends, each with ONE realistic bug (bugs real vector-store
adapters have shipped), reachable by ordinary use; the kit must FAIL every one of them, and the clean
wrappers they are built on must pass. The mutants live here, never in the installed package."""

from __future__ import annotations

import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ConfigDict

from memdock import Capability
from memdock.backends.reference import CAPABILITIES, ReferenceBackend
from memdock.conformance import Status, run
from memdock.embedding import Embedder
from memdock.errors import InvalidFilter
from memdock.filters import And, Comparison, Exists, Filter, Not, Or, evaluate
from memdock.models import HistoryEvent, MemoryRecord, Page, Scope, SearchHit
from memdock.plugins import backend_classes


class Clean(ReferenceBackend):
    """The clean wrapper: the reference backend with its read paths split into overridable pieces, and
    PERSISTENCE declared (a named ``memory://`` store outlives its Memory objects within the process)."""

    capabilities = CAPABILITIES | {Capability.PERSISTENCE}

    def scope_matches(self, read: Scope, stored: Scope) -> bool:
        return read.contains(stored)

    def matches(self, where: Filter, record: MemoryRecord) -> bool:
        return evaluate(where, record)

    def _visible(self, scope: Scope, where: Filter | None) -> list[MemoryRecord]:
        now = self.now()
        with self._store.lock:
            candidates = [r for r in self._store.records.values()
                          if self.scope_matches(scope, r.scope) and not r.is_expired(now)]
        return [r for r in candidates if where is None or self.matches(where, r)]


# -- scopes -------------------------------------------------------------------------------------------


class PrefixScope(Clean):
    """Scope ids matched with LIKE 'id%'."""

    def scope_matches(self, read: Scope, stored: Scope) -> bool:
        return all((getattr(stored, f) or "").startswith(v) for f, v in read.ids().items())


class CaseFoldedScope(Clean):
    """Scope ids compared under a case-insensitive collation."""

    def scope_matches(self, read: Scope, stored: Scope) -> bool:
        return all((getattr(stored, f) or "").lower() == v.lower() for f, v in read.ids().items())


class IgnoresRunId(Clean):
    """run_id is stored but never queried."""

    def scope_matches(self, read: Scope, stored: Scope) -> bool:
        return read.model_copy(update={"run_id": None}).contains(stored) if read.ids().keys() - {"run_id"} \
            else read.contains(stored)


class IgnoresAppId(Clean):
    """app_id is stored but never queried."""

    def scope_matches(self, read: Scope, stored: Scope) -> bool:
        return read.model_copy(update={"app_id": None}).contains(stored) if read.ids().keys() - {"app_id"} \
            else read.contains(stored)


class DropsAgentNextToUser(Clean):
    """With a user_id, the agent_id of a read is dropped (so delete_all(user, agent) wipes the user)."""

    def scope_matches(self, read: Scope, stored: Scope) -> bool:
        if read.user_id is not None:
            read = read.model_copy(update={"agent_id": None})
        return read.contains(stored)


class DedupByContainedScope(Clean):
    """find_by_hash matches any record the scope can read, not the exact scope."""

    def find_by_hash(self, scope: Scope, text_hash: str) -> MemoryRecord | None:
        for record in self._visible(scope, None):
            if record.hash == text_hash:
                return record.model_copy(deep=True)
        return None


class FilterReplacesScope(Clean):
    """A filter naming user_id replaces the scope clause instead of being AND-ed with it."""

    def search(self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None,
               limit: int) -> list[SearchHit]:
        if isinstance(where, Comparison) and where.field == "user_id":
            scope = Scope(user_id=str(where.value))
        return super().search(vector, text, scope, where, limit)


# -- search after writes ------------------------------------------------------------------------------


class StaleVectorOnUpdate(Clean):
    """update writes text and metadata but keeps the old vector."""

    def update(self, record: MemoryRecord) -> None:
        old = self._store.records[record.id]
        super().update(record.model_copy(update={"vector": old.vector}))


class DeletedStaysInIndex(Clean):
    """A separate vector index that delete forgets to clean: search still finds deleted memories."""

    def __init__(self, settings: ReferenceBackend.Settings, embedder: Embedder | None) -> None:
        super().__init__(settings, embedder)
        self.index: dict[str, MemoryRecord] = {}

    def add(self, records: Sequence[MemoryRecord]) -> None:
        super().add(records)
        self.index.update({r.id: r.model_copy(deep=True) for r in records})

    def update(self, record: MemoryRecord) -> None:
        super().update(record)
        self.index[record.id] = record.model_copy(deep=True)

    def search(self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None,
               limit: int) -> list[SearchHit]:
        from memdock.scoring import rank_by_cosine

        assert vector is not None
        candidates = [r for r in self.index.values() if scope.contains(r.scope) and (where is None or
                                                                                  evaluate(where, r))]
        return rank_by_cosine(vector, candidates, limit)


class HiddenResultCap(Clean):
    """The index query caps results at 100 whatever the limit."""

    def search(self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None,
               limit: int) -> list[SearchHit]:
        return super().search(vector, text, scope, where, min(limit, 100))


class SquaredCosine(Clean):
    """Reports cosine squared: in [0, 1], same order, exact match still 1."""

    def search(self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None,
               limit: int) -> list[SearchHit]:
        return [SearchHit(record=h.record, score=h.score ** 2) for h in super().search(vector, text, scope, where,
                                                                                           limit)]


class FilteredPathHalfCosine(Clean):
    """The filtered query path converts distances differently: (1 + cosine) / 2."""

    def search(self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None,
               limit: int) -> list[SearchHit]:
        hits = super().search(vector, text, scope, where, limit)
        return hits if where is None else [SearchHit(record=h.record, score=(1 + h.score) / 2) for h in hits]


class PostFilters(Clean):
    """Takes the top `limit` first, then applies the filter (returns too few)."""

    def search(self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None,
               limit: int) -> list[SearchHit]:
        hits = super().search(vector, text, scope, None, limit)
        return [h for h in hits if where is None or evaluate(where, h.record)]


class SearchShowsExpired(Clean):
    """Search forgets the expiry test."""

    def search(self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None,
               limit: int) -> list[SearchHit]:
        from memdock.scoring import rank_by_cosine

        assert vector is not None
        with self._store.lock:
            candidates = [r for r in self._store.records.values() if scope.contains(r.scope)
                          and (where is None or evaluate(where, r))]
        return rank_by_cosine(vector, candidates, limit)


# -- keyword and hybrid search -----------------------------------------------------------------------


class KeywordIgnoresScope(Clean):
    """Keyword search ranks every scope's memories."""

    def keyword_search(self, text: str, scope: Scope, where: Filter | None, limit: int) -> list[SearchHit]:
        return super().keyword_search(text, Scope(), where, limit)


class StaleKeywordIndex(Clean):
    """An update leaves the old text's terms in the keyword index."""

    def update(self, record: MemoryRecord) -> None:
        with self._store.lock:
            old_text = self._store.records[record.id].text if record.id in self._store.records else None
            super().update(record)
            if old_text is not None:
                self._store.terms.add(record.id, f"{old_text} {record.text}")


class HybridTakesTheBetterScore(Clean):
    """Hybrid scores each memory by the better of its two scores instead of their mean."""

    def hybrid_search(self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None,
                      limit: int) -> list[SearchHit]:
        best: dict[str, SearchHit] = {}
        for hit in (*self.search(vector, text, scope, where, 1000), *self.keyword_search(text, scope, where, 1000)):
            if hit.record.id not in best or hit.score > best[hit.record.id].score:
                best[hit.record.id] = hit
        return sorted(best.values(), key=lambda h: (-h.score, h.record.id))[:limit]


class KeywordIgnoresFilter(Clean):
    """Keyword search drops the filter."""

    def keyword_search(self, text: str, scope: Scope, where: Filter | None, limit: int) -> list[SearchHit]:
        return super().keyword_search(text, scope, None, limit)


# -- batches ------------------------------------------------------------------------------------------


class CursorOnCreatedAtOnly(Clean):
    """The keyset cursor compares created_at alone: records sharing a time are skipped."""

    def list(self, scope: Scope, where: Filter | None, limit: int, cursor: str | None) -> Page:
        from memdock.pagination import decode_cursor, encode_cursor, sort_key

        ordered = sorted(self._visible(scope, where), key=sort_key)
        if cursor is not None:
            created, _ = decode_cursor(cursor)
            ordered = [r for r in ordered if sort_key(r)[0] > created]
        items = ordered[:limit]
        return Page(items=[r.model_copy(deep=True) for r in items],
                    next_cursor=encode_cursor(items[-1]) if len(ordered) > limit and items else None)


class HistoryOfFirstOnly(Clean):
    """record_history keeps only the first event of each call (a batch's other ADDs are lost)."""

    def record_history(self, events: Sequence[HistoryEvent]) -> None:
        super().record_history(list(events)[:1])


class DeleteStopsAtTen(Clean):
    """delete(ids) deletes only the first ten ids of a call."""

    def delete(self, memory_ids: Sequence[str]) -> None:
        super().delete(list(memory_ids)[:10])


class ListOrderedById(Clean):
    """Pages ordered by id alone."""

    def list(self, scope: Scope, where: Filter | None, limit: int, cursor: str | None) -> Page:
        ordered = sorted(self._visible(scope, where), key=lambda r: r.id)
        start = 0 if cursor is None else next((n + 1 for n, r in enumerate(ordered) if r.id == cursor), len(ordered))
        items = ordered[start:start + limit]
        return Page(items=[r.model_copy(deep=True) for r in items],
                    next_cursor=items[-1].id if start + limit < len(ordered) and items else None)


# -- fixed inputs: filters ----------------------------------------------------------------------------


def _with_metadata(record: MemoryRecord, metadata: dict[str, Any]) -> MemoryRecord:
    return record.model_copy(update={"metadata": metadata})


def _flatten(metadata: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


class DottedFieldsAsPaths(Clean):
    """Filters see metadata flattened on dots, so 'a.b' also names the path a -> b."""

    def matches(self, where: Filter, record: MemoryRecord) -> bool:
        return evaluate(where, _with_metadata(record, {**record.metadata, **_flatten(record.metadata)}))


def _rewrite(expr: Filter, leaf: Callable[[Comparison], Filter]) -> Filter:
    if isinstance(expr, Comparison):
        return leaf(expr)
    if isinstance(expr, And | Or):
        return type(expr)(tuple(_rewrite(item, leaf) for item in expr.items))
    if isinstance(expr, Not):
        return Not(_rewrite(expr.item, leaf))
    return expr


class StartswithIgnoresCase(Clean):
    """startswith compiled to ILIKE 'x%'."""

    def matches(self, where: Filter, record: MemoryRecord) -> bool:
        lowered = {k: v.lower() if isinstance(v, str) else v for k, v in record.metadata.items()}

        def leaf(c: Comparison) -> Filter:
            return Comparison(c.field, "startswith", c.value.lower()) if c.op == "startswith" else c

        return evaluate(_rewrite(where, leaf), _with_metadata(record, lowered)) if _has_op(where, "startswith") \
            else evaluate(where, record)


def _has_op(expr: Filter, op: str) -> bool:
    if isinstance(expr, Comparison):
        return expr.op == op
    if isinstance(expr, And | Or):
        return any(_has_op(item, op) for item in expr.items)
    if isinstance(expr, Not):
        return _has_op(expr.item, op)
    return False


class ContainsInsideListElements(Clean):
    """contains on a list is compiled to a substring match over the JSON text of the list."""

    def matches(self, where: Filter, record: MemoryRecord) -> bool:
        if not _has_op(where, "contains"):
            return evaluate(where, record)
        joined = {k: " ".join(map(str, v)) if isinstance(v, list) else v for k, v in record.metadata.items()}
        return evaluate(where, _with_metadata(record, joined))


class BoolsAreNumbers(Clean):
    """Stored booleans compared as 0/1 (SQLite, some JSON paths)."""

    def matches(self, where: Filter, record: MemoryRecord) -> bool:
        numeric = {k: int(v) if isinstance(v, bool) else v for k, v in record.metadata.items()}
        return evaluate(where, _with_metadata(record, numeric))


class OrSwallowsRaises(Clean):
    """OR compiled with a CASE that turns a type error in a branch into false."""

    def matches(self, where: Filter, record: MemoryRecord) -> bool:
        def safe(expr: Filter) -> bool:
            if isinstance(expr, Or):
                results = []
                for item in expr.items:
                    try:
                        results.append(safe(item))
                    except InvalidFilter:
                        results.append(False)
                return any(results)
            if isinstance(expr, And):
                return all(safe(i) for i in expr.items)
            if isinstance(expr, Not):
                return not safe(expr.item)
            return evaluate(expr, record)

        return safe(where)


class NeSkipsMissing(Clean):
    """ne compiled as `field <> value`, which is NULL (false) where the field is missing."""

    def matches(self, where: Filter, record: MemoryRecord) -> bool:
        def leaf(c: Comparison) -> Filter:
            return And((Exists(c.field), c)) if c.op in ("ne", "nin") else c

        return evaluate(_rewrite(where, leaf), record)


class CountIgnoresFilter(Clean):
    """count forgets the filter."""

    def count(self, scope: Scope, where: Filter | None) -> int:
        return super().count(scope, None)


# -- fixed inputs: payloads ---------------------------------------------------------------------------


def _map_values(value: Any, change: Callable[[Any], Any]) -> Any:
    if isinstance(value, dict):
        return {k: _map_values(v, change) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_values(v, change) for v in value]
    return change(value)


class StoresMetadata(Clean):
    """Base for payload bugs: `store_metadata` is applied on the way in (add and update)."""

    def store_metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        return metadata

    def add(self, records: Sequence[MemoryRecord]) -> None:
        super().add([_with_metadata(r, self.store_metadata(r.metadata)) for r in records])

    def update(self, record: MemoryRecord) -> None:
        super().update(_with_metadata(record, self.store_metadata(record.metadata)))


class BigIntsAsDoubles(StoresMetadata):
    """Integers go through float64 (2^53 + 1 becomes 2^53)."""

    def store_metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = _map_values(
            metadata, lambda v: int(float(v)) if isinstance(v, int) and not isinstance(v, bool) else v)
        return result


class DropsEmptyLists(StoresMetadata):
    """Empty lists are dropped (a store that cannot keep them)."""

    def store_metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in metadata.items() if v != []}


class SplitsDottedKeys(StoresMetadata):
    """A dotted key is stored as a nested path (flatten/unflatten round trip)."""

    def store_metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in metadata.items():
            if "." in key:
                head, tail = key.split(".", 1)
                target = out.setdefault(head, {})
                if isinstance(target, dict):
                    target[tail] = value
            else:
                out.setdefault(key, value)
        return out


class NormalisesUnicode(StoresMetadata):
    """Metadata strings (values) NFC-normalised on the way in."""

    def store_metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = _map_values(
            metadata, lambda v: unicodedata.normalize("NFC", v) if isinstance(v, str) else v)
        return result


class TruncatesLongValues(StoresMetadata):
    """Metadata strings truncated to 1000 characters (a VARCHAR column)."""

    def store_metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = _map_values(metadata, lambda v: v[:1000] if isinstance(v, str) else v)
        return result


class FloatsThatAreWholeBecomeInts(StoresMetadata):
    """3.0 comes back as 3 (JSON through a JavaScript-like number type)."""

    def store_metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = _map_values(
            metadata, lambda v: int(v) if isinstance(v, float) and v.is_integer() and abs(v) < 1e15 else v)
        return result


class MergingUpdate(Clean):
    """update merges the new metadata into the stored one (mem0's server PUT)."""

    def update(self, record: MemoryRecord) -> None:
        old = self._store.records[record.id]
        super().update(_with_metadata(record, {**old.metadata, **record.metadata}))


# -- time and identity --------------------------------------------------------------------------------


class SecondPrecision(Clean):
    """Times stored truncated to whole seconds."""

    def add(self, records: Sequence[MemoryRecord]) -> list[MemoryRecord]:  # type: ignore[override]
        stored = [r.model_copy(update={"created_at": r.created_at.replace(microsecond=0),
                                       "updated_at": r.updated_at.replace(microsecond=0)}) for r in records]
        super().add(stored)
        return stored


class WallClockShift(Clean):
    """Local time stored as if it were UTC: every time an hour off."""

    def add(self, records: Sequence[MemoryRecord]) -> list[MemoryRecord]:  # type: ignore[override]
        stored = [r.model_copy(update={"created_at": r.created_at + timedelta(hours=1),
                                       "updated_at": r.updated_at + timedelta(hours=1)}) for r in records]
        super().add(stored)
        return stored


class UpdatedAtStays(Clean):
    """update keeps the stored updated_at."""

    def update(self, record: MemoryRecord) -> None:
        old = self._store.records[record.id]
        super().update(record.model_copy(update={"updated_at": old.updated_at}))


class ReusesDeletedIds(Clean):
    """New records take the id of the last deleted one (an id pool)."""

    def __init__(self, settings: ReferenceBackend.Settings, embedder: Embedder | None) -> None:
        super().__init__(settings, embedder)
        self.free: list[str] = []

    def delete(self, memory_ids: Sequence[str]) -> None:
        super().delete(memory_ids)
        self.free.extend(memory_ids)

    def add(self, records: Sequence[MemoryRecord]) -> list[MemoryRecord]:  # type: ignore[override]
        stored = [r.model_copy(update={"id": self.free.pop()}) if self.free else r for r in records]
        super().add(stored)
        return stored


class SkipsHeldIds(Clean):
    """add silently skips a record whose id the store holds, even an expired one (Chroma's `add` does)."""

    def add(self, records: Sequence[MemoryRecord]) -> None:
        with self._store.lock:
            super().add([r for r in records if r.id not in self._store.records])


class AliasesTheStore(Clean):
    """get returns the stored object itself."""

    def get(self, memory_id: str) -> MemoryRecord | None:
        with self._store.lock:
            return self._store.records.get(memory_id)


class HistorySwapsMetadata(Clean):
    """History events of updates store old and new metadata the wrong way round."""

    def record_history(self, events: Sequence[HistoryEvent]) -> None:
        super().record_history([e.model_copy(update={"old_metadata": e.new_metadata, "new_metadata": e.old_metadata})
                                if e.event.value == "UPDATE" else e for e in events])


class UpdateDropsExpiry(Clean):
    """update writes the record without its expires_at."""

    def update(self, record: MemoryRecord) -> None:
        super().update(record.model_copy(update={"expires_at": None}))


class AcceptsUnknownSettings(Clean):
    """Unknown URL parameters are ignored (a typo falls back to the default store)."""

    class Settings(ReferenceBackend.Settings):
        model_config = ConfigDict(extra="ignore")


class NoEmbedderCheck(Clean):
    """The store never records which embedder wrote it."""

    def __init__(self, settings: ReferenceBackend.Settings, embedder: Embedder | None) -> None:
        super().__init__(settings, None)


class ResetKeepsHistory(Clean):
    """reset() clears the records but not the history."""

    def reset(self) -> None:
        with self._store.lock:
            for memory_id in list(self._store.records):
                self._store.drop(memory_id)


class ConcurrentUpdatesLost(Clean):
    """update by copy-modify-replace of the whole table without a lock."""

    def update(self, record: MemoryRecord) -> None:
        snapshot = dict(self._store.records)
        time.sleep(0.003)
        snapshot[record.id] = record
        for kept in snapshot.values():  # the stale snapshot written back: a concurrent update is lost
            self._store.put(kept)


class ReopenLosesHistory(Clean):
    """History is kept in memory only: a reopened store has none."""

    def __init__(self, settings: ReferenceBackend.Settings, embedder: Embedder | None) -> None:
        super().__init__(settings, embedder)
        with self._store.lock:
            self._store.events.clear()


class ReopenTruncatesTimes(Clean):
    """Times are written at second precision: a reopened store reads them truncated."""

    def __init__(self, settings: ReferenceBackend.Settings, embedder: Embedder | None) -> None:
        super().__init__(settings, embedder)
        with self._store.lock:
            for r in list(self._store.records.values()):
                self._store.put(r.model_copy(update={"created_at": r.created_at.replace(microsecond=0),
                                                     "updated_at": r.updated_at.replace(microsecond=0)}))


class DeleteDropsHistory(Clean):
    """Declares HISTORY_AFTER_DELETE, but delete removes the memory's events."""

    def delete(self, memory_ids: Sequence[str]) -> None:
        super().delete(memory_ids)
        with self._store.lock:
            for memory_id in memory_ids:
                self._store.events.pop(memory_id, None)

    def record_history(self, events: Sequence[HistoryEvent]) -> None:
        super().record_history([e for e in events if e.event.value != "DELETE"])


MUTANTS: dict[str, tuple[type[Clean], tuple[str, ...]]] = {
    # scopes
    "prefix-scope": (PrefixScope, ("scope", "stateful")),
    "casefold-scope": (CaseFoldedScope, ("scope", "stateful")),
    "ignores-run-id": (IgnoresRunId, ("scope",)),
    "ignores-app-id": (IgnoresAppId, ("scope",)),
    "drops-agent-next-to-user": (DropsAgentNextToUser, ("scope",)),
    "dedup-by-contained-scope": (DedupByContainedScope, ("dedup", "stateful")),
    "filter-replaces-scope": (FilterReplacesScope, ("scope",)),
    # search after writes
    "stale-vector-on-update": (StaleVectorOnUpdate, ("search",)),
    "deleted-stays-in-index": (DeletedStaysInIndex, ("search",)),
    "hidden-result-cap": (HiddenResultCap, ("search",)),
    "squared-cosine": (SquaredCosine, ("search",)),
    "filtered-path-half-cosine": (FilteredPathHalfCosine, ("search",)),
    "post-filters": (PostFilters, ("search", "filters")),
    "search-shows-expired": (SearchShowsExpired, ("ttl",)),
    # keyword and hybrid search
    "keyword-ignores-scope": (KeywordIgnoresScope, ("scope",)),
    "stale-keyword-index": (StaleKeywordIndex, ("search_modes",)),
    "hybrid-takes-the-better-score": (HybridTakesTheBetterScore, ("search_modes",)),
    "keyword-ignores-filter": (KeywordIgnoresFilter, ("filters",)),
    # batches
    "cursor-on-created-at-only": (CursorOnCreatedAtOnly, ("pagination",)),
    "history-of-first-only": (HistoryOfFirstOnly, ("history",)),
    "delete-stops-at-ten": (DeleteStopsAtTen, ("scope",)),
    "list-ordered-by-id": (ListOrderedById, ("pagination", "stateful")),
    # fixed inputs: filters
    "dotted-fields-as-paths": (DottedFieldsAsPaths, ("filters",)),
    "startswith-ignores-case": (StartswithIgnoresCase, ("filters",)),
    "contains-inside-list-elements": (ContainsInsideListElements, ("filters",)),
    "bools-are-numbers": (BoolsAreNumbers, ("filters",)),
    "or-swallows-raises": (OrSwallowsRaises, ("filters",)),
    "ne-skips-missing": (NeSkipsMissing, ("filters",)),
    "count-ignores-filter": (CountIgnoresFilter, ("filters",)),
    # fixed inputs: payloads
    "big-ints-as-doubles": (BigIntsAsDoubles, ("payloads",)),
    "drops-empty-lists": (DropsEmptyLists, ("payloads",)),
    "splits-dotted-keys": (SplitsDottedKeys, ("payloads",)),
    "normalises-unicode": (NormalisesUnicode, ("payloads",)),
    "truncates-long-values": (TruncatesLongValues, ("payloads",)),
    "whole-floats-become-ints": (FloatsThatAreWholeBecomeInts, ("payloads",)),
    "merging-update": (MergingUpdate, ("crud",)),
    # time and identity
    "second-precision": (SecondPrecision, ("timestamps",)),
    "wall-clock-shift": (WallClockShift, ("timestamps",)),
    "updated-at-stays": (UpdatedAtStays, ("timestamps",)),
    "reuses-deleted-ids": (ReusesDeletedIds, ("crud",)),
    "aliases-the-store": (AliasesTheStore, ("crud",)),
    "history-swaps-metadata": (HistorySwapsMetadata, ("history",)),
    "update-drops-expiry": (UpdateDropsExpiry, ("ttl",)),
    "skips-held-ids": (SkipsHeldIds, ("ttl",)),
    "accepts-unknown-settings": (AcceptsUnknownSettings, ("bad_input",)),
    "no-embedder-check": (NoEmbedderCheck, ("bad_input",)),
    "reset-keeps-history": (ResetKeepsHistory, ("crud",)),
    "concurrent-updates-lost": (ConcurrentUpdatesLost, ("concurrency",)),
    "reopen-loses-history": (ReopenLosesHistory, ("persistence",)),
    "reopen-truncates-times": (ReopenTruncatesTimes, ("persistence",)),
    "delete-drops-history": (DeleteDropsHistory, ("history",)),
}
"""scheme -> (mutant, the groups whose checks must catch it)."""

STATEFUL_CATCHES = ("prefix-scope", "casefold-scope", "merging-update", "dedup-by-contained-scope",
                    "drops-empty-lists")
"""Mutants the stateful differential check must catch on its own, at the default seed."""

_lock = threading.Lock()


@pytest.fixture(scope="module")
def mutant_schemes() -> Iterator[None]:
    classes = backend_classes()
    with _lock:
        for scheme, (cls, _) in {**MUTANTS, "clean": (Clean, ())}.items():
            declared = type(f"Declared{cls.__name__}", (cls,), {"name": scheme, "schemes": (scheme,)})
            declared.check_declaration()
            classes[scheme] = declared
        yield
        for scheme in (*MUTANTS, "clean"):
            classes.pop(scheme, None)


def test_there_are_at_least_40_mutants_of_every_kind() -> None:
    assert len(MUTANTS) >= 40 and len({cls for cls, _ in MUTANTS.values()}) == len(MUTANTS)


def test_the_clean_wrapper_passes_the_whole_kit(mutant_schemes: None) -> None:
    report = run("clean://")
    assert [(r.group, r.check, r.detail) for r in report.results if r.status is Status.FAIL] == []
    assert report.level == "FULL", [(r.check, r.detail) for r in report.results if r.status is not Status.PASS]


@pytest.mark.parametrize("scheme", sorted(MUTANTS))
def test_every_mutant_is_caught(mutant_schemes: None, scheme: str) -> None:
    _, groups = MUTANTS[scheme]
    report = run(f"{scheme}://", groups=list(groups))
    failed = [f"{r.group}/{r.check}" for r in report.results if r.status is Status.FAIL]
    assert failed, f"{scheme} passed {groups}: {[(r.check, r.status.value) for r in report.results]}"
    assert report.failed and report.level != "FULL"


@pytest.mark.parametrize("scheme", STATEFUL_CATCHES)
def test_the_stateful_check_alone_catches_scope_and_payload_mutants(mutant_schemes: None, scheme: str) -> None:
    """The differential check finds these without a targeted check, and names the seed and the steps."""
    report = run(f"{scheme}://", groups=["stateful"])
    (result,) = report.results
    assert result.status is Status.FAIL, scheme
    assert "seed 15" in result.detail and "minimal sequence:" in result.detail and "  1. add(" in result.detail


def test_a_failing_run_is_reproducible_with_its_seed(mutant_schemes: None) -> None:
    """The same seed gives the same minimal sequence (scope ids aside, which are fresh per run)."""
    import re

    def steps(seed: int) -> str:
        detail = run("prefix-scope://", groups=["stateful"], seed=seed).results[0].detail
        return re.sub(r"[sS][0-9a-fA-F]{8}", "ID", detail.split("minimal sequence:")[1])

    assert steps(15) == steps(15)
    assert run("clean://", groups=["stateful"], seed=99).results[0].status is Status.PASS
