"""`Memory`: the one facade users call. It validates input, embeds text (unless the backend embeds
server-side), stamps ids, hashes and times, records history, and turns any backend fault into a typed
memdock error. Everything above it (CLI, server, Dify plugin) is thin."""

from __future__ import annotations

import builtins
import copy
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, ParamSpec, Self, TypeVar

from memdock.backend import Backend
from memdock.capabilities import Capability
from memdock.embedding import Embedder
from memdock.errors import (
    BackendUnavailable,
    InvalidInput,
    MemdockError,
    MemoryNotFound,
    Unsupported,
    WriteConflict,
)
from memdock.filters import Filter, coerce_filter, evaluate
from memdock.micro_batch import MicroBatcher
from memdock.models import EventKind, HistoryEvent, MemoryRecord, Page, Scope, SearchHit, WriteResult, utcnow
from memdock.scope_locks import ScopeLocks
from memdock.search_modes import SearchMode, check_mode
from memdock.urls import open_backend
from memdock.validation import (
    check_expires_at,
    check_limit,
    check_memory_id,
    check_metadata,
    check_storable,
    check_text,
    check_threshold,
    make_scope,
    split_messages,
    text_hash,
)

T = TypeVar("T")
P = ParamSpec("P")
WRITE_CONFLICT_ATTEMPTS = 3
"""How often `Memory` retries a write the backend refused with `WriteConflict`."""
QUERY_CACHE_SIZE = 1024
"""How many recent search queries' embeddings each `Memory` keeps (repeated queries skip the embedder)."""
FilterInput = Filter | Mapping[str, Any] | None


class Memory:
    """Memories of users, agents, runs and apps, stored in one backend.

    Scope ids are keyword arguments (``user_id``, ``agent_id``, ``run_id``, ``app_id``) or a `Scope`.
    Writes need at least one id (`ScopeRequired`); reads see only records inside their scope.
    """

    def __init__(self, backend: Backend, embedder: Embedder | None, *, name: str = "backend") -> None:
        self.backend = backend
        self.embedder = embedder
        self.name = name
        self._scope_locks = ScopeLocks()
        self._query_vectors: OrderedDict[str, builtins.list[float]] = OrderedDict()
        self._query_lock = threading.Lock()
        self._query_batcher = MicroBatcher(self._embed_queries)

    @classmethod
    def open(cls, url: str | None = None, *, embedder: Embedder | None = None) -> Memory:
        """Open the backend a URL selects (default: ``MEMDOCK_URL``, else embedded Chroma)."""
        opened = open_backend(url, embedder=embedder)
        return cls(opened.backend, opened.embedder, name=f"{opened.backend_class.name} ({opened.url.redacted()})")

    @property
    def capabilities(self) -> frozenset[Capability]:
        """What the backend declares it supports."""
        return self.backend.capabilities

    @property
    def default_search_mode(self) -> SearchMode:
        """The mode `search` uses when given none: ``"hybrid"`` where the backend declares
        `Capability.KEYWORD_SEARCH`, else ``"vector"``."""
        return "hybrid" if Capability.KEYWORD_SEARCH in self.capabilities else "vector"

    def close(self) -> None:
        """Release the backend."""
        self._call(self.backend.close)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writes ---------------------------------------------------------------------------------------

    def add(
        self,
        data: str | Sequence[Mapping[str, Any]],
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        app_id: str | None = None,
        scope: Scope | None = None,
        metadata: Mapping[str, Any] | None = None,
        expires_at: datetime | None = None,
    ) -> list[WriteResult]:
        """Store a text, or one memory per non-system message of ``[{role, content}]`` (``role`` is
        added to each one's metadata). A text already stored under exactly this scope is not stored
        again: its existing record comes back with event NONE. The batch is all or nothing."""
        the_scope = make_scope(scope, _ids(user_id, agent_id, run_id, app_id), required=True)
        base_metadata = check_metadata(metadata)
        expires_at = check_expires_at(expires_at)
        if expires_at is not None and Capability.TTL not in self.capabilities:
            raise Unsupported(f"{self.name} does not honour expires_at (no TTL capability)")
        if isinstance(data, str):
            items = [(check_text(data), base_metadata)]
        elif isinstance(data, Sequence) and not isinstance(data, bytes | bytearray):
            messages = split_messages(data)
            items = [(content, {**copy.deepcopy(base_metadata), "role": role}) for role, content in messages]
        else:
            raise InvalidInput(f"must be a string or a list of messages, got {type(data).__name__}", field="data")
        with self._scope_locks.holding([the_scope]):
            return self._retrying(lambda: self._add_locked(the_scope, items, expires_at))

    def _add_locked(
        self, scope: Scope, items: list[tuple[str, dict[str, Any]]], expires_at: datetime | None
    ) -> list[WriteResult]:
        results: list[WriteResult | tuple[EventKind, int]] = []  # a result, or (event, index into `fresh`)
        fresh: list[MemoryRecord] = []
        seen: dict[str, int] = {}
        now = utcnow()
        digests = [text_hash(text) for text, _ in items]
        firsts = {digest: text for (text, _), digest in zip(items, digests, strict=True)}
        stored_before = dict(zip(firsts, self._call(
            self.backend.find_duplicates, [(scope, text, digest) for digest, text in firsts.items()]), strict=True))
        for (text, metadata), digest in zip(items, digests, strict=True):
            if digest in seen:  # repeated within the batch: the record as stored (a service may assign its id)
                results.append((EventKind.NONE, seen[digest]))
                continue
            existing = stored_before[digest]
            if existing is not None:
                results.append(WriteResult(event=EventKind.NONE, record=_public(existing)))
                continue
            record = MemoryRecord(
                id=str(uuid.uuid4()), text=text, scope=scope, metadata=metadata, hash=digest,
                created_at=now, updated_at=now, expires_at=expires_at,
            )
            seen[digest] = len(fresh)
            fresh.append(record)
            results.append((EventKind.ADD, len(fresh) - 1))
        stored = self._store_new(fresh)
        return [result if isinstance(result, WriteResult)
                else WriteResult(event=result[0], record=_public(stored[result[1]])) for result in results]

    def update(
        self,
        memory_id: str,
        *,
        text: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        scope: Scope | None = None,
    ) -> WriteResult:
        """Replace the text (re-embedding it) and/or the metadata of a memory.

        Raises `MemoryNotFound` when the id does not exist (or lies outside `scope`), and `InvalidInput`
        (field ``text``) when another memory of the same scope already holds the new text (a text is
        stored once per scope); returns event NONE when nothing changes."""
        if text is None and metadata is None:
            raise InvalidInput("give text, metadata or both", field="text")
        new_text = check_text(text) if text is not None else None
        new_metadata = check_metadata(metadata) if metadata is not None else None
        with self._scope_locks.holding([self._require(memory_id, scope).scope]):
            record = self._require(memory_id, scope)  # as it is now that this scope's writers wait
            changed = record.model_copy(deep=True)
            if new_text is not None and new_text != record.text:
                changed.text, changed.hash = new_text, text_hash(new_text)
                holder = self._call(self.backend.find_duplicate, record.scope, new_text, changed.hash)
                if holder is not None and holder.id != record.id:
                    raise InvalidInput(f"memory {holder.id} in this scope already holds this text", field="text")
                changed.vector = self._embed([new_text])[0]
            if new_metadata is not None:
                changed.metadata = new_metadata
            if changed.text == record.text and changed.metadata == record.metadata:
                return WriteResult(event=EventKind.NONE, record=_public(record))
            changed.updated_at = max(utcnow(), record.created_at)
            self._call(self.backend.update, changed)
            self._record([
                self._event(
                    record.id, EventKind.UPDATE, record.scope, old_text=record.text, new_text=changed.text,
                    old_metadata=record.metadata, new_metadata=changed.metadata,
                )
            ])
            return WriteResult(event=EventKind.UPDATE, record=_public(changed))

    def delete(self, memory_id: str, *, scope: Scope | None = None) -> WriteResult:
        """Delete one memory; `MemoryNotFound` when it does not exist (or lies outside `scope`)."""
        with self._scope_locks.holding([self._require(memory_id, scope).scope]):
            record = self._require(memory_id, scope)
            self._call(self.backend.delete, [record.id])
            self._record([self._event(record.id, EventKind.DELETE, record.scope, old_text=record.text,
                                      old_metadata=record.metadata)])
            return WriteResult(event=EventKind.DELETE, record=_public(record))

    def delete_all(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        app_id: str | None = None,
        scope: Scope | None = None,
        filter: FilterInput = None,
    ) -> int:
        """Delete every memory in the scope (a scope id is required) matching the filter; returns how many."""
        the_scope = make_scope(scope, _ids(user_id, agent_id, run_id, app_id), required=True)
        where = coerce_filter(filter)
        doomed = list(self._iterate(the_scope, where))
        for start in range(0, len(doomed), 500):
            chunk = doomed[start : start + 500]
            with self._scope_locks.holding(r.scope for r in chunk):
                self._call(self.backend.delete, [r.id for r in chunk])
                self._record([self._event(r.id, EventKind.DELETE, r.scope, old_text=r.text,
                                          old_metadata=r.metadata) for r in chunk])
        return len(doomed)

    def reset(self) -> None:
        """Delete every memory of EVERY scope, and their history. `Unsupported` when the backend cannot.
        Meant for administrators and tests; callers expose it only behind an explicit opt-in."""
        self._call(self.backend.reset)

    # -- reads ----------------------------------------------------------------------------------------

    def get(self, memory_id: str, *, scope: Scope | None = None) -> MemoryRecord:
        """The memory with this id; `MemoryNotFound` when missing, expired, or outside `scope`."""
        return _public(self._require(memory_id, scope))

    def search(
        self,
        query: str,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        app_id: str | None = None,
        scope: Scope | None = None,
        filter: FilterInput = None,
        limit: int = 10,
        threshold: float | None = None,
        mode: SearchMode | None = None,
    ) -> list[SearchHit]:
        """The `limit` memories in scope that best match `query`, best first.

        `mode` is ``"hybrid"``, ``"vector"`` or ``"keyword"`` (`memdock.search_modes` defines each and its
        score); None is the backend's default (`default_search_mode`). A mode the backend lacks is
        `Unsupported` (the message names ``mode``). Scores are in [0, 1] (higher = better); `threshold`
        drops hits scoring below it.
        """
        the_scope = make_scope(scope, _ids(user_id, agent_id, run_id, app_id), required=True)
        text = check_text(query, field="query")
        where = coerce_filter(filter)
        limit = check_limit(limit)
        minimum = check_threshold(threshold)
        chosen = check_mode(mode) or self.default_search_mode
        if chosen != "vector" and Capability.KEYWORD_SEARCH not in self.capabilities:
            raise Unsupported(f"mode: {chosen!r} needs keyword search, which the {self.backend.name} backend lacks "
                              "(its only mode is 'vector')")
        if chosen == "keyword":
            hits = self._call(self.backend.keyword_search, text, the_scope, where, limit)
        elif chosen == "hybrid":
            hits = self._call(self.backend.hybrid_search, self._query_vector(text), text, the_scope, where, limit)
        else:
            hits = self._call(self.backend.search, self._query_vector(text), text, the_scope, where, limit)
        return [
            hit if hit.record.vector is None else SearchHit(record=_public(hit.record), score=hit.score)
            for hit in hits
            if minimum is None or hit.score >= minimum
        ]

    def list(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        app_id: str | None = None,
        scope: Scope | None = None,
        filter: FilterInput = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> Page:
        """One page of memories in scope, oldest first; pass `next_cursor` back for the next page."""
        the_scope = make_scope(scope, _ids(user_id, agent_id, run_id, app_id), required=True)
        where = coerce_filter(filter)
        limit = check_limit(limit)
        if cursor is not None and not isinstance(cursor, str):
            raise InvalidInput("must be a string", field="cursor")
        page = self._call(self.backend.list, the_scope, where, limit, cursor)
        return Page(items=[_public(r) for r in page.items], next_cursor=page.next_cursor)

    def count(
        self,
        *,
        user_id: str | None = None,
        agent_id: str | None = None,
        run_id: str | None = None,
        app_id: str | None = None,
        scope: Scope | None = None,
        filter: FilterInput = None,
    ) -> int:
        """How many memories in scope match the filter."""
        the_scope = make_scope(scope, _ids(user_id, agent_id, run_id, app_id), required=True)
        where = coerce_filter(filter)
        return self._call(self.backend.count, the_scope, where)

    def history(self, memory_id: str, *, scope: Scope | None = None) -> builtins.list[HistoryEvent]:
        """ADD / UPDATE / DELETE events of one memory, oldest first (also after it was deleted).

        `MemoryNotFound` when there is neither a memory nor any event for this id (or they lie outside
        `scope`); `Unsupported` when the backend keeps no history."""
        check_memory_id(memory_id)
        if Capability.HISTORY not in self.capabilities:
            raise Unsupported(f"{self.name} keeps no history")
        events = self._call(self.backend.history, memory_id)
        if scope is not None and not scope.is_empty():
            events = [e for e in events if scope.contains(e.scope)]
        if not events:
            self._require(memory_id, scope)
        return events

    def get_many(self, memory_ids: Sequence[str]) -> builtins.list[MemoryRecord]:
        """The memories with these ids that exist (missing ones left out), in any order, in as few backend
        calls as the backend allows (for migration and verification)."""
        for memory_id in memory_ids:
            check_memory_id(memory_id)
        return [_public(r) for r in self._call(self.backend.get_many, builtins.list(memory_ids))]

    def histories(self, memory_ids: Sequence[str]) -> dict[str, builtins.list[HistoryEvent]]:
        """`history` of each id (an empty list where there is none), by id; `Unsupported` when the
        backend keeps no history."""
        if Capability.HISTORY not in self.capabilities:
            raise Unsupported(f"{self.name} keeps no history")
        for memory_id in memory_ids:
            check_memory_id(memory_id)
        found = self._call(self.backend.history_many, builtins.list(memory_ids))
        return {memory_id: builtins.list(found.get(memory_id, [])) for memory_id in memory_ids}

    def export(self, **scope_ids: str | None) -> builtins.list[MemoryRecord]:
        """Every memory in the scope, oldest first (for moving data between backends). Holds them all in
        memory: `pages` streams instead."""
        the_scope = make_scope(None, scope_ids, required=True)
        return [_public(r) for r in self._iterate(the_scope, None)]

    def pages(
        self,
        *,
        scope: Scope | None = None,
        filter: FilterInput = None,
        vectors: bool = False,
        page_size: int = 500,
        cursor: str | None = None,
    ) -> Iterator[Page]:
        """Stream the store page by page (bounded memory), for export and migration: the records of `scope`
        oldest first, or with no scope (or an empty one) EVERY record of the store through
        `Backend.list_every` (`Unsupported` when the backend cannot list across scopes). Each page's
        `next_cursor` resumes the stream after it (pass it as `cursor`, also in another process); a page
        may be empty when `filter` drops all of it. With `vectors`, records keep the vectors the backend
        returns (None where it returns none)."""
        where = coerce_filter(filter)
        limit = check_limit(page_size)
        every = scope is None or scope.is_empty()
        while True:
            if every:
                page = self._call(self.backend.list_every, limit, cursor, vectors=vectors)
                items = [r for r in page.items if where is None or evaluate(where, r)]
            else:
                assert scope is not None
                page = self._call(self.backend.list, scope, where, limit, cursor)
                items = builtins.list(page.items)
            yield Page(items=[r if vectors else _public(r) for r in items], next_cursor=page.next_cursor)
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def import_(
        self,
        records: Sequence[MemoryRecord],
        *,
        on_conflict: str = "skip",
        keep_vectors: bool = False,
        history: Mapping[str, Sequence[HistoryEvent]] | None = None,
    ) -> builtins.list[WriteResult]:
        """Store records exported from another Memory, keeping their ids, scopes, metadata and times (a
        backend that assigns its own ids and times returns them in the results).

        A record is already stored when its id, or its text in exactly its scope, is. `on_conflict` says
        what then happens: ``skip`` (event NONE, the default), ``replace`` (the stored record takes the
        incoming text, metadata and times, keeping its id: event UPDATE) or ``fail`` (`InvalidInput` naming
        the record, before anything is written). Vectors are recomputed with this Memory's embedder unless
        `keep_vectors` and a record's vector has the embedder's dimension (the caller vouches that it
        comes from the same embedder); a server-side embedding backend gets text only. `history` maps an
        incoming record's id to its events: when the backend keeps history they are recorded (re-pointed
        at the stored id) instead of a fresh ADD event. All or nothing for the new records."""
        if on_conflict not in ("skip", "replace", "fail"):
            raise InvalidInput("must be skip, replace or fail", field="on_conflict")
        incoming = [MemoryRecord.model_validate(r.model_dump()) for r in records]
        for index, record in enumerate(incoming):
            if not record.id.strip():
                raise InvalidInput("must be a non-empty string", field=f"records[{index}].id")
            check_storable(record.id, f"records[{index}].id")
            check_text(record.text, field=f"records[{index}].text")
            record.metadata = check_metadata(record.metadata)
            if record.scope.is_empty():
                raise InvalidInput("needs a scope id", field=f"records[{index}].scope")
            if record.expires_at is not None and Capability.TTL not in self.capabilities:
                raise Unsupported(f"{self.name} does not honour expires_at (no TTL capability): records[{index}]")
            if not keep_vectors or self.embedder is None or (
                record.vector is not None and len(record.vector) != self.embedder.dimension
            ):
                record.vector = None
        with self._scope_locks.holding(r.scope for r in incoming):
            return self._retrying(lambda: self._import_locked(incoming, on_conflict, history))

    def _import_locked(
        self, incoming: builtins.list[MemoryRecord], on_conflict: str,
        history: Mapping[str, Sequence[HistoryEvent]] | None,
    ) -> builtins.list[WriteResult]:
        """`import_` of validated records, under the write locks of their scopes."""
        results: builtins.list[WriteResult | tuple[EventKind, int]] = []  # a result, or (event, index into fresh)
        fresh: builtins.list[MemoryRecord] = []
        replaced: builtins.list[tuple[MemoryRecord, MemoryRecord]] = []
        batch: dict[tuple[str, ...], int] = {}  # earlier new records of this batch (index into fresh), by id and text
        by_id = {r.id: r for r in self._call(self.backend.get_many, [r.id for r in incoming])}
        for record in incoming:
            record.hash = text_hash(record.text)
        holders = self._call(self.backend.find_duplicates, [(r.scope, r.text, r.hash) for r in incoming])
        for index, (record, holder) in enumerate(zip(incoming, holders, strict=True)):
            keys = [("id", record.id), ("text", record.scope.model_dump_json(), record.hash)]
            earlier = next((batch[k] for k in keys if k in batch), None)
            if earlier is not None:  # repeated within the batch: the first copy, as stored (its id may change)
                if on_conflict == "fail":
                    raise InvalidInput(f"memory {fresh[earlier].id} is already in this batch",
                                       field=f"records[{index}].id")
                results.append((EventKind.NONE, earlier))
                continue
            existing = by_id.get(record.id) or holder
            if existing is None:
                batch.update(dict.fromkeys(keys, len(fresh)))
                fresh.append(record)
                results.append((EventKind.ADD, len(fresh) - 1))
            elif on_conflict == "fail":
                raise InvalidInput(f"memory {existing.id} is already stored", field=f"records[{index}].id")
            elif on_conflict == "replace":
                replaced.append((existing, record.model_copy(update={"id": existing.id})))
                results.append(WriteResult(event=EventKind.UPDATE, record=_public(replaced[-1][1])))
            else:
                results.append(WriteResult(event=EventKind.NONE, record=_public(existing)))
        stored = self._store_new(fresh, history=history)  # first: a WriteConflict here leaves nothing replaced
        self._replace(replaced)
        return [result if isinstance(result, WriteResult)
                else WriteResult(event=result[0], record=_public(stored[result[1]])) for result in results]

    def import_history(self, events: Sequence[HistoryEvent]) -> None:
        """Record history events brought from another store (migration repairs a record stored just before
        a crash with them); nothing when the backend keeps no history."""
        self._record(builtins.list(events))

    def stored_copy(self, record: MemoryRecord) -> MemoryRecord | None:
        """The stored record that `import_` takes for `record`: the one with its id, else one holding its
        text in exactly its scope; None when there is neither."""
        return self._call(self.backend.get, record.id) or self._call(
            self.backend.find_duplicate, record.scope, record.text, text_hash(record.text)
        )

    def _replace(self, pairs: builtins.list[tuple[MemoryRecord, MemoryRecord]]) -> None:
        """Overwrite stored records with incoming ones (same id), recording UPDATE events."""
        for old, new in pairs:
            if new.vector is None:
                new.vector = self._embed([new.text])[0]
            self._call(self.backend.update, new)
            self._record([self._event(old.id, EventKind.UPDATE, old.scope, old_text=old.text, new_text=new.text,
                                      old_metadata=old.metadata, new_metadata=new.metadata)])

    # -- helpers --------------------------------------------------------------------------------------

    def _store_new(
        self, fresh: builtins.list[MemoryRecord], *, history: Mapping[str, Sequence[HistoryEvent]] | None = None
    ) -> builtins.list[MemoryRecord]:
        """Embed (records without a vector), store and record ADD events for new records (or, for a record
        whose id `history` maps, those events re-pointed at the stored id); all or nothing. Returns the
        records as stored (with the backend's own ids and times when it assigns them)."""
        if not fresh:
            return []
        missing = [r for r in fresh if r.vector is None]
        for record, vector in zip(missing, self._embed([r.text for r in missing]), strict=True):
            record.vector = vector
        events: builtins.list[HistoryEvent] = []
        if Capability.HISTORY in self.capabilities:
            for r in fresh:
                carried = (history or {}).get(r.id)
                if carried:
                    events.extend(e.model_copy(update={"memory_id": r.id}) for e in carried)
                else:
                    events.append(self._event(r.id, EventKind.ADD, r.scope, new_text=r.text, new_metadata=r.metadata))
        returned = self._call(self.backend.add_with_history, fresh, events)
        stored = fresh if returned is None else builtins.list(returned)
        if len(stored) != len(fresh):
            raise BackendUnavailable(f"{self.name} stored {len(stored)} records for {len(fresh)} given")
        return stored

    def _iterate(self, scope: Scope, where: Filter | None) -> Iterator[MemoryRecord]:
        cursor: str | None = None
        while True:
            page = self._call(self.backend.list, scope, where, 500, cursor)
            yield from page.items
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def _require(self, memory_id: str, scope: Scope | None) -> MemoryRecord:
        check_memory_id(memory_id)
        record = self._call(self.backend.get, memory_id)
        if record is None or (scope is not None and not scope.contains(record.scope)):
            raise MemoryNotFound(memory_id)
        return record

    def _embed(self, texts: builtins.list[str]) -> builtins.list[builtins.list[float]] | builtins.list[None]:
        if self.embedder is None:
            return [None] * len(texts)
        vectors = self._call(self.embedder.embed, texts)
        if len(vectors) != len(texts):
            raise BackendUnavailable(
                f"embedder {self.embedder.name!r} returned {len(vectors)} vectors for {len(texts)} texts"
            )
        return vectors

    def _embed_queries(self, texts: builtins.list[str]) -> builtins.list[builtins.list[float]]:
        vectors = self._embed(texts)
        return [v for v in vectors if v is not None]

    def _query_vector(self, text: str) -> builtins.list[float] | None:
        """The embedding of a search query, from a per-Memory LRU of the last `QUERY_CACHE_SIZE` queries
        (the embedder is deterministic: the same text always yields the same vector); None without a
        client-side embedder. A query not cached is embedded through a `MicroBatcher`, so the queries of
        concurrent searches (a server's threads) share one batch call. Callers must not modify the vector."""
        if self.embedder is None:
            return None
        with self._query_lock:
            cached = self._query_vectors.get(text)
            if cached is not None:
                self._query_vectors.move_to_end(text)
                return cached
        vector = self._query_batcher.embed_one(text)
        with self._query_lock:
            self._query_vectors[text] = vector
            while len(self._query_vectors) > QUERY_CACHE_SIZE:
                self._query_vectors.popitem(last=False)
        return vector

    def _retrying(self, write: Callable[[], T]) -> T:
        """Run a duplicate check and store (`write`) again when the backend reports a `WriteConflict`
        (another writer stored one of the texts in between; nothing was stored): the next check finds it.
        At most `WRITE_CONFLICT_ATTEMPTS` attempts; the last conflict is passed on."""
        for attempt in range(1, WRITE_CONFLICT_ATTEMPTS + 1):
            try:
                return write()
            except WriteConflict:
                if attempt == WRITE_CONFLICT_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    def _record(self, events: builtins.list[HistoryEvent]) -> None:
        if Capability.HISTORY in self.capabilities and events:
            self._call(self.backend.record_history, events)

    @staticmethod
    def _event(memory_id: str, kind: EventKind, scope: Scope, **changes: Any) -> HistoryEvent:
        return HistoryEvent(id=str(uuid.uuid4()), memory_id=memory_id, event=kind, scope=scope,
                            created_at=utcnow(), **changes)

    def _call(self, operation: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a backend operation; anything but a memdock error becomes `BackendUnavailable`."""
        try:
            return operation(*args, **kwargs)
        except MemdockError:
            raise
        except Exception as exc:
            raise BackendUnavailable(f"{self.name} failed: {type(exc).__name__}: {exc}") from exc


def _ids(user_id: str | None, agent_id: str | None, run_id: str | None, app_id: str | None) -> dict[str, Any]:
    return {"user_id": user_id, "agent_id": agent_id, "run_id": run_id, "app_id": app_id}


def _public(record: MemoryRecord) -> MemoryRecord:
    """The record as callers see it: without its vector. A record the backend returned is the caller's
    already (`Backend`), so one without a vector is handed on as it is."""
    return record if record.vector is None else record.model_copy(update={"vector": None})
