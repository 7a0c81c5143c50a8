"""The abstract `Backend`: the class a plugin registers, declaring everything about its backend.

A backend stores and retrieves records. It never embeds text, never parses user JSON and never
formats HTTP: `Memory` validates input, embeds, stamps ids, hashes and times before calling it.
Backends raise memdock's typed errors (`BackendUnavailable` for network and database faults) and
must never leave a batch half-written.
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Self
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from pydantic import BaseModel, ConfigDict, ValidationError

from memdock.capabilities import Capability
from memdock.embedding import Embedder
from memdock.errors import InvalidInput, Unsupported
from memdock.filters import Filter
from memdock.models import HistoryEvent, MemoryRecord, Page, Scope, SearchHit, utcnow
from memdock.search_modes import HYBRID_CANDIDATES, fuse_hits


@dataclass(frozen=True)
class BackendURL:
    """A parsed backend URL. `params` holds the query string (last value wins)."""

    raw: str
    scheme: str
    host: str | None
    port: int | None
    path: str
    username: str | None
    password: str | None
    params: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, url: str) -> BackendURL:
        """Split a URL; raises `InvalidInput` (field ``url``) when it has no scheme or a bad port."""
        parts = urlsplit(url)
        if not parts.scheme:
            raise InvalidInput(f"not a backend URL (no scheme): {redact(url)!r}", field="url")
        try:
            port = parts.port
        except ValueError as exc:
            raise InvalidInput(f"bad port in {redact(url)!r}", field="url") from exc
        return cls(
            raw=url,
            scheme=parts.scheme.lower(),
            host=unquote(parts.hostname) if parts.hostname else None,
            port=port,
            path=unquote(parts.path),
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            params=dict(parse_qsl(parts.query, keep_blank_values=True)),
        )

    def redacted(self) -> str:
        """The URL with any password replaced by ``***`` (safe to log)."""
        return redact(self.raw)


SECRET_PARAMETERS: set[str] = {"password", "api_key", "token", "secret"}
"""URL query parameters whose values `redact` hides: these, plus every `Backend.secret_param` a backend
class declares (added when the class is defined)."""


def redact(url: str) -> str:
    """The URL with its password and every secret query parameter's value replaced by ``***`` (safe to
    log). The one redaction rule for every URL memdock prints."""
    parts = urlsplit(url)
    secret_query = any(name in SECRET_PARAMETERS for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    if parts.password is None and not secret_query:
        return url  # unchanged, to the letter (``memory://`` would come back from urlsplit as ``memory:``)
    if parts.password is not None:
        parts = parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1))
    if parts.query:
        pairs = parse_qsl(parts.query, keep_blank_values=True)
        if any(name in SECRET_PARAMETERS for name, _ in pairs):
            hidden = [(name, "***" if name in SECRET_PARAMETERS else value) for name, value in pairs]
            parts = parts._replace(query=urlencode(hidden, safe="*/:"))
    return parts.geturl()


class BackendSettings(BaseModel):
    """Base of every backend's settings model. Unknown query parameters are refused."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    @classmethod
    def from_url(cls, url: BackendURL) -> Self:
        """Build settings from a URL; the default reads only the query parameters.

        Raises `InvalidInput` whose field names the bad parameter.
        """
        return cls.validated(dict(url.params))

    @classmethod
    def validated(cls, data: dict[str, Any]) -> Self:
        """`model_validate` that turns pydantic errors into `InvalidInput` naming the parameter."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            name = ".".join(str(p) for p in first["loc"]) or "url"
            message = "unknown parameter" if first["type"] == "extra_forbidden" else first["msg"]
            raise InvalidInput(message, field=name) from None


class Backend(ABC):
    """Storage for memory records, and the ONE declaration of a backend: a plugin registers the class.

    A concrete backend sets, as class attributes:

    - `name`: a short unique name (``memdock backends`` lists it); `description`: one line for people.
    - `schemes`: the URL schemes that select it (``chroma``, ``chroma+http``, ...).
    - `Settings`: a nested `BackendSettings` model built from the URL (unknown parameters are refused).
    - `capabilities`: what it supports; the conformance kit holds it to exactly this.
    - `namespace_param`: the URL query parameter (a field of `Settings`) that selects an isolated
      namespace (a collection, a table, a store name) in one store, or None when records are kept apart
      by their scope ids alone.
    - `secret_param`: the URL query parameter that carries its secret (a password or API key), or None.
      Its value is redacted wherever memdock prints the URL; the Dify plugin puts its key there.
    - `local_path_param`: the `Settings` field holding a path on this machine where the store keeps its
      files (embedded Chroma's ``path``), or None. Adapters that take URLs from less trusted
      configuration (the Dify plugin's credentials) confine such paths to a directory of their own.

    Every backend is opened the same way, ``TheClass(settings, embedder)``; `embedder` is None when it
    declares `SERVER_SIDE_EMBEDDING`. Import drivers in ``__init__`` (or in modules it imports), not at
    module top, so that loading plugins stays cheap.

    All methods are synchronous and must be thread-safe when the backend declares `CONCURRENT_WRITES`.
    Reads take a non-empty `Scope` and must return only records it `contains`; expired records
    (`expires_at <= now`) are invisible when `TTL` is declared. The records and hits a read returns are
    the caller's: new objects sharing nothing mutable with what the backend keeps (the kit's ``crud``
    group checks it); `Memory` hands them on without copying, dropping only their vectors.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    schemes: ClassVar[tuple[str, ...]]
    Settings: ClassVar[type[BackendSettings]] = BackendSettings
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    namespace_param: ClassVar[str | None] = None
    secret_param: ClassVar[str | None] = None
    local_path_param: ClassVar[str | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__dict__.get("secret_param"):
            SECRET_PARAMETERS.add(cls.__dict__["secret_param"])
        settings = cls.__dict__.get("Settings")
        if (isinstance(settings, type) and issubclass(settings, BackendSettings)
                and settings is not BackendSettings and "title" not in settings.model_config):
            # its schema (built on first use) is titled after the backend, not "Settings"
            settings.model_config = {**settings.model_config, "title": f"{cls.__name__}.Settings"}

    @abstractmethod
    def __init__(self, settings: Any, embedder: Embedder | None) -> None:
        """Open the store `settings` describe (an instance of `Settings`). Raise `BackendUnavailable`
        when it cannot be reached and `InvalidInput` for settings it cannot use."""

    @classmethod
    def check_declaration(cls) -> None:
        """Raise `InvalidInput` (field ``backend``) naming what is missing or wrong in the class's
        declaration; `memdock.plugins` calls it when the class is registered."""
        problems = []
        if not isinstance(getattr(cls, "name", None), str) or not cls.name:
            problems.append("`name` must be a non-empty string")
        schemes = getattr(cls, "schemes", None)
        if not isinstance(schemes, tuple) or not schemes or not all(isinstance(s, str) and s for s in schemes):
            problems.append("`schemes` must be a non-empty tuple of strings")
        if not (isinstance(cls.Settings, type) and issubclass(cls.Settings, BackendSettings)):
            problems.append("`Settings` must be a BackendSettings subclass")
        elif cls.namespace_param is not None and cls.namespace_param not in cls.Settings.model_fields:
            problems.append(f"`namespace_param` {cls.namespace_param!r} is not a field of its Settings")
        elif cls.secret_param is not None and cls.secret_param not in cls.Settings.model_fields:
            problems.append(f"`secret_param` {cls.secret_param!r} is not a field of its Settings")
        elif cls.local_path_param is not None and cls.local_path_param not in cls.Settings.model_fields:
            problems.append(f"`local_path_param` {cls.local_path_param!r} is not a field of its Settings")
        if not all(isinstance(c, Capability) for c in cls.capabilities):
            problems.append("`capabilities` must hold Capability members")
        if getattr(cls, "__abstractmethods__", None):
            problems.append(f"abstract methods not implemented: {', '.join(sorted(cls.__abstractmethods__))}")
        if problems:
            raise InvalidInput(f"backend class {cls.__module__}.{cls.__qualname__}: {'; '.join(problems)}",
                               field="backend")

    @abstractmethod
    def add(self, records: Sequence[MemoryRecord]) -> Sequence[MemoryRecord] | None:
        """Store new records (ids are fresh). All or nothing: on failure none of them is stored.

        Return None when the records were stored exactly as given. A backend whose store assigns its
        own ids or times (a remote service) returns the records as stored, one per input, in order;
        `Memory` then reports those ids and times to the caller.
        """

    def add_with_history(
        self, records: Sequence[MemoryRecord], events: Sequence[HistoryEvent]
    ) -> Sequence[MemoryRecord] | None:
        """Store new records together with their history `events` (which name records by the ids given
        here; empty when history is not kept), all or nothing: no record without its events, no event
        without its record. Returns as `add` does.

        The default calls `add`, re-points the events at the stored ids when the store assigned its own,
        calls `record_history` and, when that fails, deletes the records it just stored before re-raising
        (the recovery rule of a store without transactions; a crash between the two calls can still leave
        records without events). A store with transactions overrides it and writes both in one."""
        returned = self.add(records)
        if not events:
            return returned
        stored = records if returned is None else returned
        if len(stored) != len(records):  # a broken answer: `Memory` reports it as BackendUnavailable
            return returned
        moved = {given.id: kept.id for given, kept in zip(records, stored, strict=True) if given.id != kept.id}
        try:
            self.record_history([e.model_copy(update={"memory_id": moved[e.memory_id]}) if e.memory_id in moved
                                 else e for e in events])
        except BaseException:
            self.delete([r.id for r in stored])
            raise
        return returned

    @abstractmethod
    def get(self, memory_id: str) -> MemoryRecord | None:
        """The record with this id, or None when there is none (or it expired)."""

    @abstractmethod
    def find_by_hash(self, scope: Scope, text_hash: str) -> MemoryRecord | None:
        """A record whose scope EQUALS `scope` (every id, set or not) and whose hash is `text_hash`."""

    def find_duplicate(self, scope: Scope, text: str, text_hash: str) -> MemoryRecord | None:
        """What `Memory` asks before storing `text` in `scope`: a live record of exactly this scope whose
        hash is `text_hash`. The default is `find_by_hash`; a store that can look records up by content
        only (a remote service) overrides it."""
        return self.find_by_hash(scope, text_hash)

    def find_duplicates(self, wanted: Sequence[tuple[Scope, str, str]]) -> builtins.list[MemoryRecord | None]:
        """`find_duplicate` for many ``(scope, text, text_hash)`` triples at once: one answer per triple, in
        order (the same record may answer several triples). `Memory` asks this once per batch it adds or
        imports. The default asks `find_duplicate` triple by triple; a store that can answer many in one
        round trip (one query, one index lookup) overrides it, with exactly the same answers."""
        return [self.find_duplicate(scope, text, digest) for scope, text, digest in wanted]

    @abstractmethod
    def update(self, record: MemoryRecord) -> None:
        """Replace the stored record with the same id (text, metadata, hash, times, vector)."""

    @abstractmethod
    def delete(self, memory_ids: Sequence[str]) -> None:
        """Delete these records; ids that do not exist are ignored."""

    @abstractmethod
    def search(
        self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None, limit: int
    ) -> list[SearchHit]:
        """The vector mode: at most `limit` hits in `scope` matching `where`, most similar first.

        `vector` is the embedded query (None for server-side embedding backends, which use `text`).
        Scores are similarities in [0, 1], higher is more similar (`memdock.scoring`).
        """

    def keyword_search(self, text: str, scope: Scope, where: Filter | None, limit: int) -> builtins.list[SearchHit]:
        """With `KEYWORD_SEARCH`: at most `limit` hits in `scope` matching `where`, ranked by keywords, best
        first, ties by id. The score is the keyword mode's of `memdock.search_modes` (BM25 of memdock's
        terms over these candidates, divided by the query's bound); records sharing no term are not hits.
        A backend may compute the terms its own way (a full-text index) if its ranking stays that close
        (the conformance kit and the retrieval-quality set compare it with the reference). The default
        raises `Unsupported`."""
        raise Unsupported(f"{type(self).__name__} has no keyword search")

    def hybrid_search(
        self, vector: Sequence[float] | None, text: str, scope: Scope, where: Filter | None, limit: int
    ) -> builtins.list[SearchHit]:
        """With `KEYWORD_SEARCH`: at most `limit` hits in `scope` matching `where`, ranked by the hybrid
        score of `memdock.search_modes` (``0.5 * vector score + 0.5 * keyword score``), best first, ties by
        id. The default fuses `search` and `keyword_search`, each asked for
        ``max(limit, HYBRID_CANDIDATES)`` hits (`memdock.search_modes.fuse_hits`); a store that can score
        every candidate both ways at once overrides it."""
        wide = max(limit, HYBRID_CANDIDATES)
        return fuse_hits(self.search(vector, text, scope, where, wide),
                         self.keyword_search(text, scope, where, wide), limit)

    @abstractmethod
    def list(self, scope: Scope, where: Filter | None, limit: int, cursor: str | None) -> Page:
        """Records in `scope` matching `where`, ordered by (created_at, id), at most `limit` per page.

        The cursor is opaque; paging with it never repeats or skips a record that exists throughout.
        """

    @abstractmethod
    def count(self, scope: Scope, where: Filter | None) -> int:
        """How many records in `scope` match `where`."""

    def record_history(self, events: Sequence[HistoryEvent]) -> None:  # noqa: B027 - optional hook
        """Append history events. Backends without `HISTORY` ignore them."""

    def history(self, memory_id: str) -> builtins.list[HistoryEvent]:
        """Events of one memory, oldest first. Backends without `HISTORY` return an empty list."""
        return []

    def server_embedder(self) -> str | None:
        """For a backend that declares `SERVER_SIDE_EMBEDDING`: the name of the memdock embedder (as in
        ``embedder=``) its service embeds with, when the service says so; None when unknown (the
        default). Clients can then compute vectors comparable to the stored ones (the conformance kit
        checks scores exactly; migration reuses vectors)."""
        return None

    def list_every(self, limit: int, cursor: str | None, *, vectors: bool = False) -> Page:
        """One page of EVERY live record of this namespace, whatever its scope (for export and migration
        of a whole store), at most `limit` per page; pass `next_cursor` back for the next page. Paging
        never repeats a record and, while no record is deleted meanwhile, never skips one; the cursor
        stays valid across processes (a migration resumes from it). With `vectors`, records carry their
        stored vectors where the store returns them cheaply (None otherwise). Optional: the default raises
        `Unsupported` (then export and migrate need scope ids)."""
        raise Unsupported(f"{type(self).__name__} cannot list records across scopes; give scope ids")

    def get_many(self, memory_ids: Sequence[str]) -> builtins.list[MemoryRecord]:
        """The live records with these ids (missing and expired ones left out), in any order. Optional: the
        default calls `get` once per id; a store that can read many ids at once overrides it."""
        return [record for memory_id in memory_ids if (record := self.get(memory_id)) is not None]

    def history_many(self, memory_ids: Sequence[str]) -> dict[str, builtins.list[HistoryEvent]]:
        """`history` of each id, by id. Optional: the default calls `history` once per id."""
        return {memory_id: self.history(memory_id) for memory_id in memory_ids}

    def count_every(self) -> int:
        """How many records this namespace holds, whatever their scope (may include expired ones not yet
        purged: progress bars use it as an estimate). Optional: the default raises `Unsupported`."""
        raise Unsupported(f"{type(self).__name__} cannot count records across scopes")

    def reset(self) -> None:
        """Delete every record and every history event of every scope in this namespace. Optional:
        the default raises `Unsupported`."""
        raise Unsupported(f"{type(self).__name__} cannot delete everything at once")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources. The backend is not used afterwards."""

    def now(self) -> datetime:
        """The current UTC time, as used for expiry (overridable in tests)."""
        return utcnow()
