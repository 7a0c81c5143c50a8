"""Export, import and verified live migration between any two `Memory` stores, in bounded memory.

- `export_archive`: a store (one scope, or every record) to an archive file (`memdock.archive`).
- `import_archive`: an archive into a store; every line is checked first and a bad one stops the import
  before anything is written, unless bad lines are skipped (then they are reported by number).
- `migrate`: source to destination page by page. A checkpoint (SQLite) records, in one transaction per
  batch, the source cursor, which source id became which destination id and how many records each exact
  scope holds, so a run killed at any point resumes where it stopped and a re-run adds nothing. It never
  writes to the source. At the end it verifies counts per scope and every record (or a sample).

Vectors travel when both embedders have the same identity (name, model, dimension) and re-embedding is
not forced; otherwise the destination embeds the text (a server-side embedding store gets text only).
History travels when the source keeps it and the destination stores memdock's events (`keeps_history`).
Nothing here prints or logs memory text: reports name ids, scopes and fields only.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from memdock.archive import ArchiveRecord, ArchiveWriter, BadArchiveLine, EmbedderInfo, read_header, read_lines
from memdock.backend import Backend
from memdock.capabilities import Capability
from memdock.errors import InvalidInput, MemdockError, Unsupported
from memdock.filters import Filter, coerce_filter
from memdock.memory import Memory
from memdock.models import HistoryEvent, MemoryRecord, Scope
from memdock.progress import Reporter, SilentReporter
from memdock.validation import check_metadata, check_text, text_hash

OnConflict = Literal["skip", "replace", "fail"]
VerifyMode = Literal["full", "sample", "none"]
MAX_LISTED_DIFFERENCES = 100
SAMPLE_SIZE = 1000


# -- what a run reports ----------------------------------------------------------------------------------


@dataclass
class Verification:
    """What `verify` compared and found. `differences` lists at most `MAX_LISTED_DIFFERENCES` of them
    (ids, scopes and field names, never text); `difference_count` counts them all."""

    mode: VerifyMode
    scopes_checked: int = 0
    records_checked: int = 0
    differences: list[str] = field(default_factory=list)
    difference_count: int = 0
    times_compared: bool = True
    history_compared: bool = False

    @property
    def ok(self) -> bool:
        """True when nothing differs."""
        return self.difference_count == 0

    def differ(self, message: str) -> None:
        """Note one difference."""
        self.difference_count += 1
        if len(self.differences) < MAX_LISTED_DIFFERENCES:
            self.differences.append(message)


@dataclass
class Summary:
    """The outcome of an export, import or migration (counts of records)."""

    action: str
    read: int = 0
    added: int = 0
    skipped: int = 0
    replaced: int = 0
    bad_lines: list[str] = field(default_factory=list)
    bad_line_count: int = 0
    history_events: int = 0
    vectors_reused: bool = False
    resumed: bool = False
    dry_run: bool = False
    id_map: Path | None = None
    seconds: float = 0.0
    verification: Verification | None = None

    @property
    def ok(self) -> bool:
        """True unless verification found a difference."""
        return self.verification is None or self.verification.ok

    def lines(self) -> list[str]:
        """The human summary, one fact per line."""
        rate = self.read / self.seconds if self.seconds > 0 else 0.0
        verb = "would add" if self.dry_run else "added"
        out = [f"{self.action}: read {self.read}, {verb} {self.added}, already there {self.skipped}"
               + (f", replaced {self.replaced}" if self.replaced else "")
               + f" in {self.seconds:.1f}s ({rate:.0f}/s)" + (" (resumed)" if self.resumed else "")]
        if self.bad_line_count:
            out.append(f"skipped {self.bad_line_count} bad lines:")
            out.extend(f"  {line}" for line in self.bad_lines)
        if self.action == "export":
            out.append("vectors: included" if self.vectors_reused else "vectors: not included")
        else:
            out.append("vectors: reused" if self.vectors_reused else "vectors: computed by the destination")
        if self.history_events:
            out.append(f"history events carried: {self.history_events}")
        if self.id_map is not None:
            out.append(f"the destination assigned its own ids: id map written to {self.id_map}")
        v = self.verification
        if v is not None and v.mode != "none":
            kind = "every record" if v.mode == "full" else "a sample"
            state = "OK" if v.ok else f"{v.difference_count} DIFFERENCES"
            out.append(f"verify ({kind}): {v.scopes_checked} scopes, {v.records_checked} records checked: {state}")
            if not v.times_compared:
                out.append("  times not compared: the destination assigns its own ids and times")
            out.extend(f"  {d}" for d in v.differences)
        return out


# -- capabilities of a pair ---------------------------------------------------------------------------------


def keeps_history(memory: Memory) -> bool:
    """True when `memory`'s backend stores the history events memdock writes (so migrated history can be
    written there): it declares `HISTORY`, implements `record_history`, and does not embed server-side
    (a remote memdock or mem0 service records its own events as it stores each memory)."""
    caps = memory.capabilities
    backend_type = type(memory.backend)
    return (Capability.HISTORY in caps and Capability.SERVER_SIDE_EMBEDDING not in caps
            and backend_type.record_history is not Backend.record_history)


def vectors_compatible(source: Memory, destination: Memory) -> bool:
    """True when vectors computed for `source` are valid in `destination` (same embedder identity)."""
    return (source.embedder is not None and destination.embedder is not None
            and source.embedder.identity == destination.embedder.identity)


def embedder_info(memory: Memory) -> EmbedderInfo | None:
    """The embedder a store's vectors come from, for an archive header (None when it embeds server-side)."""
    if memory.embedder is None:
        return None
    e = memory.embedder
    return EmbedderInfo(name=e.name, dimension=e.dimension, identity=e.identity)


def _scope_key(scope: Scope) -> str:
    return json.dumps(scope.ids(), sort_keys=True)


def _estimate(memory: Memory, scope: Scope | None, where: Filter | None) -> int | None:
    try:
        if scope is None or scope.is_empty():
            return None if where is not None else memory._call(memory.backend.count_every)
        return memory.count(scope=scope, filter=where)
    except MemdockError:
        return None


def _history_of(memory: Memory, records: Sequence[MemoryRecord]) -> dict[str, list[HistoryEvent]]:
    return memory.histories([r.id for r in records]) if records else {}


# -- export --------------------------------------------------------------------------------------------------


def export_archive(
    memory: Memory,
    path: Path,
    *,
    scope: Scope | None = None,
    filter: Filter | Mapping[str, Any] | None = None,
    with_vectors: bool = False,
    with_history: bool = False,
    source: str = "",
    batch: int = 500,
    progress: Reporter | None = None,
) -> Summary:
    """Write `scope`'s records (every record with no scope) matching `filter` to the archive `path`.
    `source` is the (redacted) URL for the header. `Unsupported` when history is asked of a store that
    keeps none, or every record of a store that cannot list across scopes."""
    if with_history and Capability.HISTORY not in memory.capabilities:
        raise Unsupported(f"{memory.name} keeps no history (drop --with-history)")
    where = coerce_filter(filter)
    report = progress or SilentReporter()
    began = time.monotonic()
    summary = Summary(action="export")
    report.start("export", _estimate(memory, scope, where))
    with ArchiveWriter(path, source=source or memory.name, embedder=embedder_info(memory)) as writer:
        for page in memory.pages(scope=scope, filter=where, vectors=with_vectors, page_size=batch):
            history = _history_of(memory, page.items) if with_history else {}
            for record in page.items:
                events = history.get(record.id) if with_history else None
                writer.write(ArchiveRecord.of(record, events))
                summary.history_events += len(events or [])
            summary.read += len(page.items)
            summary.vectors_reused |= any(r.vector is not None for r in page.items)
            report.advance(len(page.items))
    report.finish()
    summary.added = summary.read
    summary.seconds = time.monotonic() - began
    return summary


# -- import --------------------------------------------------------------------------------------------------


def _checked(line_number: int, path: Path, line: ArchiveRecord) -> BadArchiveLine | None:
    """What `Memory.import_` would refuse in this line, as a `BadArchiveLine` (None when it is fine)."""
    try:
        check_text(line.text)
        check_metadata(line.metadata)
        if line.scope.is_empty():
            raise InvalidInput("needs a scope id", field="scope")
        if line.vector is not None and not line.vector:
            raise InvalidInput("must not be empty", field="vector")
    except InvalidInput as exc:
        message = str(exc).split(": ", 1)[1] if exc.field and ": " in str(exc) else str(exc)
        return BadArchiveLine(path, line_number, message, field=exc.field)
    return None


def import_archive(
    path: Path,
    memory: Memory,
    *,
    on_conflict: OnConflict = "skip",
    skip_bad_lines: bool = False,
    re_embed: bool = False,
    batch: int = 500,
    id_map: Path | None = None,
    progress: Reporter | None = None,
) -> Summary:
    """Import the archive at `path` into `memory`.

    A first pass reads every line: the first bad one raises `BadArchiveLine` (naming line and field) and
    nothing is imported, unless `skip_bad_lines` (then bad lines are listed in the summary and left out).
    The second pass imports in batches (`Memory.import_` with `on_conflict`). Vectors are reused when the
    header's embedder identity equals the destination's and `re_embed` is off. When the destination
    assigns its own ids, the pairs (archive id, stored id) go to `id_map` (default: next to the archive,
    ``NAME.idmap.jsonl``)."""
    if batch < 1 or batch > 1000:
        raise InvalidInput("must be between 1 and 1000", field="batch")
    header = read_header(path)
    report = progress or SilentReporter()
    began = time.monotonic()
    summary = Summary(action="import")
    bad_numbers: set[int] = set()
    for line in read_lines(path):
        problem = line.error or (_checked(line.number, path, line.record) if line.record else None)
        if problem is None:
            continue
        if not skip_bad_lines:
            raise problem
        bad_numbers.add(line.number)
        summary.bad_line_count += 1
        if len(summary.bad_lines) < MAX_LISTED_DIFFERENCES:
            summary.bad_lines.append(str(problem))
    reuse = (not re_embed and header.embedder is not None and memory.embedder is not None
             and header.embedder.identity == memory.embedder.identity)
    summary.vectors_reused = reuse and header.counts.vectors > 0
    carry = keeps_history(memory)
    map_path = id_map or path.with_name(path.name + ".idmap.jsonl")
    remapped = 0
    report.start("import", header.counts.records - len(bad_numbers))
    with _id_map_writer(map_path) as write_pair:
        pending: list[ArchiveRecord] = []

        def flush() -> None:
            nonlocal remapped
            history = {r.id: r.history for r in pending if carry and r.history}
            results = memory.import_([r.record() for r in pending], on_conflict=on_conflict, keep_vectors=reuse,
                                     history=history)
            for given, result in zip(pending, results, strict=True):
                summary.history_events += len(history.get(given.id) or [])
                if result.event.value == "ADD":
                    summary.added += 1
                elif result.event.value == "UPDATE":
                    summary.replaced += 1
                else:
                    summary.skipped += 1
                if result.record.id != given.id:
                    remapped += 1
                    write_pair(given.id, result.record.id)
            report.advance(len(pending))
            pending.clear()

        for line in read_lines(path):
            if line.number in bad_numbers or line.record is None:
                continue
            pending.append(line.record)
            summary.read += 1
            if len(pending) >= batch:
                flush()
        if pending:
            flush()
    report.finish()
    if remapped:
        summary.id_map = map_path
    else:
        map_path.unlink(missing_ok=True)
    summary.seconds = time.monotonic() - began
    return summary


@contextmanager
def _id_map_writer(path: Path) -> Iterator[Any]:
    """A function writing (source id, destination id) lines to `path` as JSON Lines."""
    with open(path, "a", encoding="utf-8") as handle:

        def write(source_id: str, destination_id: str) -> None:
            handle.write(json.dumps({"source_id": source_id, "destination_id": destination_id}) + "\n")

        yield write


# -- migrate -------------------------------------------------------------------------------------------------


class Checkpoint:
    """A migration's durable state in one SQLite file (see the module docstring). Each batch is committed
    in one transaction, after the destination stored it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.executescript(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);"
            "CREATE TABLE IF NOT EXISTS ids (source_id TEXT PRIMARY KEY, destination_id TEXT NOT NULL);"
            "CREATE TABLE IF NOT EXISTS scopes (scope TEXT PRIMARY KEY, n INTEGER NOT NULL);"
        )

    def get(self, key: str) -> str | None:
        """A meta value."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def claim(self, identity: Mapping[str, str]) -> bool:
        """Bind the checkpoint to this migration; True when it resumes an earlier run of it. `InvalidInput`
        (field ``checkpoint``) when it belongs to another migration."""
        known = self.get("identity")
        wanted = json.dumps(dict(identity), sort_keys=True)
        if known is None:
            self._db.execute("INSERT INTO meta VALUES ('identity', ?)", (wanted,))
            return False
        if known != wanted:
            raise InvalidInput(f"{self.path} belongs to another migration (other source, destination or scope)",
                               field="checkpoint")
        return True

    def seen(self, source_ids: Sequence[str]) -> set[str]:
        """Which of these source ids were already migrated."""
        marks = ",".join("?" * len(source_ids))
        rows = self._db.execute(f"SELECT source_id FROM ids WHERE source_id IN ({marks})", list(source_ids))
        return {str(r[0]) for r in rows}

    def destination_id(self, source_id: str) -> str | None:
        """Where a source record went."""
        row = self._db.execute("SELECT destination_id FROM ids WHERE source_id = ?", (source_id,)).fetchone()
        return None if row is None else str(row[0])

    def commit_batch(self, pairs: Sequence[tuple[str, str, Scope]], cursor: str | None, finished: bool) -> None:
        """Record a stored batch and the cursor after it, atomically."""
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO ids VALUES (?, ?)", [(s, d) for s, d, _ in pairs])
            for _, _, scope in pairs:
                self._db.execute("INSERT INTO scopes VALUES (?, 1) ON CONFLICT(scope) DO UPDATE SET n = n + 1",
                                 (_scope_key(scope),))
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('cursor', ?)", (cursor,))
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('finished', ?)", ("1" if finished else "0",))

    def restart(self) -> None:
        """Start a new pass over the source (after a finished one), keeping the ids already migrated."""
        with self._transaction():
            self._db.execute("DELETE FROM meta WHERE key IN ('cursor', 'finished')")

    def scopes(self) -> Iterator[Scope]:
        """Every exact scope migrated records hold."""
        for (key,) in self._db.execute("SELECT scope FROM scopes ORDER BY scope").fetchall():
            yield Scope.model_validate(json.loads(key))

    def migrated(self) -> int:
        """How many source records are recorded."""
        row = self._db.execute("SELECT count(*) FROM ids").fetchone()
        return int(row[0])

    def remapped(self) -> Iterator[tuple[str, str]]:
        """Pairs whose destination id differs from the source id."""
        rows = self._db.execute("SELECT source_id, destination_id FROM ids WHERE source_id != destination_id")
        for source_id, destination_id in rows:
            yield str(source_id), str(destination_id)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the file."""
        self._db.close()


def migrate(
    source: Memory,
    destination: Memory,
    *,
    scope: Scope | None = None,
    filter: Filter | Mapping[str, Any] | None = None,
    batch: int = 500,
    re_embed: bool = False,
    dry_run: bool = False,
    history: bool | None = None,
    checkpoint: Path | None = None,
    id_map: Path | None = None,
    verify: VerifyMode = "full",
    identity: Mapping[str, str] | None = None,
    progress: Reporter | None = None,
) -> Summary:
    """Copy `scope`'s records (every record with no scope) matching `filter` from `source` to
    `destination`, then verify (see the module docstring). Returns the summary; `summary.ok` is False when
    verification found a difference.

    `checkpoint` is the SQLite file that makes the run resumable (None: a temporary one, removed at the
    end). `identity` names the migration in it (the CLI passes the redacted URLs and scope); a checkpoint
    of another migration is refused. `history` None carries history when the source keeps it and the
    destination can store it. With `dry_run`, nothing is written anywhere and the summary says how many
    records would be added. `id_map` receives the pairs (source id, destination id) when the destination
    assigns its own ids (default: next to the checkpoint)."""
    if batch < 1 or batch > 1000:
        raise InvalidInput("must be between 1 and 1000", field="batch")
    where = coerce_filter(filter)
    carry = keeps_history(destination) and Capability.HISTORY in source.capabilities
    if history and not carry:
        raise Unsupported(f"history cannot be carried from {source.name} to {destination.name}")
    carry = carry if history is None else bool(history)
    reuse = not re_embed and vectors_compatible(source, destination)
    report = progress or SilentReporter()
    began = time.monotonic()
    summary = Summary(action="dry run" if dry_run else "migrate", dry_run=dry_run)
    with tempfile.TemporaryDirectory(prefix="memdock-migrate-") as scratch:
        state_path = Path(scratch) / "checkpoint.sqlite" if checkpoint is None or dry_run else checkpoint
        with closing(Checkpoint(state_path)) as state:
            summary.resumed = state.claim(identity or {"source": source.name, "destination": destination.name,
                                                      "scope": _scope_key(scope or Scope())})
            finished_before = state.get("finished") == "1"
            if finished_before:
                state.restart()
            cursor = state.get("cursor")
            report.start(summary.action, _estimate(source, scope, where))
            if summary.resumed and not finished_before:
                report.advance(state.migrated())
            for page in source.pages(scope=scope, filter=where, vectors=reuse, page_size=batch, cursor=cursor):
                summary.vectors_reused |= reuse and any(r.vector is not None for r in page.items)
                placed = _copy_page(source, destination, page.items, state, summary, carry=carry, reuse=reuse,
                                    dry_run=dry_run)
                pairs = [(r.id, placed.get(r.id, r.id), r.scope) for r in page.items]
                state.commit_batch(pairs, page.next_cursor, page.next_cursor is None)
                report.advance(len(page.items))
            report.finish()
            if not dry_run:
                summary.id_map = _write_id_map(state, id_map or state_path.with_name(state_path.name + ".idmap.jsonl"))
                if verify != "none":
                    summary.verification = verify_migration(source, destination, state, scope=scope, filter=where,
                                                            mode=verify, history=carry, progress=report)
    summary.seconds = time.monotonic() - began
    return summary


def _copy_page(
    source: Memory, destination: Memory, records: Sequence[MemoryRecord], state: Checkpoint, summary: Summary,
    *, carry: bool, reuse: bool, dry_run: bool,
) -> dict[str, str]:
    """Store one page of source records in the destination (those not migrated before); returns where each
    source id is (or, in a dry run, would be) in the destination."""
    done = state.seen([r.id for r in records]) if records else set()
    todo = [r for r in records if r.id not in done]
    summary.read += len(records)
    summary.skipped += len(done)
    placed: dict[str, str] = {r.id: state.destination_id(r.id) or r.id for r in records if r.id in done}
    if dry_run:
        for record in todo:
            existing = destination.stored_copy(record)
            summary.skipped += existing is not None
            summary.added += existing is None
            placed[record.id] = existing.id if existing is not None else record.id
    elif todo:
        events = _history_of(source, todo) if carry else {}
        results = destination.import_(todo, keep_vectors=reuse, history=events)
        for record, result in zip(todo, results, strict=True):
            summary.added += result.event.value == "ADD"
            summary.skipped += result.event.value != "ADD"
            summary.history_events += len(events.get(record.id) or []) if result.event.value == "ADD" else 0
            placed[record.id] = result.record.id
        if carry:
            _repair_history(destination, [(r, res.record.id) for r, res in zip(todo, results, strict=True)
                                          if res.event.value != "ADD" and res.record.id == r.id], events, summary)
    return placed


def _repair_history(destination: Memory, found: Sequence[tuple[MemoryRecord, str]],
                    events: Mapping[str, Sequence[HistoryEvent]], summary: Summary) -> None:
    """Records already in the destination under their own id but without any event were stored by a run
    that stopped before it recorded their history: record it now."""
    if not found:
        return
    present = destination.histories([target for _, target in found])
    missing = [e for record, target in found if not present.get(target) for e in events.get(record.id, [])]
    if missing:
        destination.import_history(missing)
        summary.history_events += len(missing)


def _write_id_map(state: Checkpoint, path: Path) -> Path | None:
    """Write the pairs whose ids differ to `path` (JSON Lines); None (and no file) when there are none."""
    pairs = state.remapped()
    first = next(pairs, None)
    if first is None:
        path.unlink(missing_ok=True)
        return None
    with open(path, "w", encoding="utf-8") as handle:
        for source_id, destination_id in (first, *pairs):
            handle.write(json.dumps({"source_id": source_id, "destination_id": destination_id}) + "\n")
    return path


# -- verify --------------------------------------------------------------------------------------------------


def _comparable_events(events: Sequence[HistoryEvent]) -> list[tuple[Any, ...]]:
    return [(e.event, e.old_text, e.new_text, e.old_metadata, e.new_metadata, e.created_at) for e in events]


def verify_migration(
    source: Memory,
    destination: Memory,
    state: Checkpoint,
    *,
    scope: Scope | None,
    filter: Filter | None,
    mode: VerifyMode = "full",
    history: bool = False,
    progress: Reporter | None = None,
) -> Verification:
    """Compare source and destination after a migration recorded in `state`.

    Counts: for every exact scope the migrated records hold, the source's and the destination's `count`
    of that scope (with `filter`) must be equal (a destination that held other records of those scopes
    before shows them as extra). Records: every source record (``full``) or about `SAMPLE_SIZE` of them
    (``sample``) must be found in the destination under its id (or the id it was given there) with the
    same text, hash, scope, metadata and expiry, and the same created/updated times where the destination
    keeps the source's ids (a store that assigns ids assigns times too); with `history`, the same events."""
    report = progress or SilentReporter()
    result = Verification(mode=mode, history_compared=history)
    if mode == "none":
        return result
    for exact in state.scopes():
        wanted = source.count(scope=exact, filter=filter)
        got = destination.count(scope=exact, filter=filter)
        result.scopes_checked += 1
        if wanted != got:
            result.differ(f"scope {exact.ids()}: source holds {wanted}, destination {got}")
    total = state.migrated()
    step = 1 if mode == "full" else max(1, total // SAMPLE_SIZE)
    report.start("verify", total if mode == "full" else min(total, SAMPLE_SIZE))
    position = 0
    for page in source.pages(scope=scope, filter=filter, page_size=500):
        chosen = []
        for record in page.items:
            position += 1
            if not (position - 1) % step:
                chosen.append(record)
        _compare_page(chosen, source, destination, state, result, history=history)
        result.records_checked += len(chosen)
        report.advance(len(chosen))
    report.finish()
    return result


def _compare_page(records: Sequence[MemoryRecord], source: Memory, destination: Memory, state: Checkpoint,
                  result: Verification, *, history: bool) -> None:
    """Compare records of one source page with their destination copies (a few backend calls per page)."""
    targets = {r.id: state.destination_id(r.id) for r in records}
    wanted = [t for t in targets.values() if t is not None]
    stored = {r.id: r for r in destination.get_many(wanted)} if wanted else {}
    source_events = _history_of(source, records) if history else {}
    stored_events = destination.histories([t for t in wanted if t in stored]) if history and stored else {}
    for record in records:
        target = targets[record.id]
        if target is None:
            result.differ(f"record {record.id}: not migrated (added to the source after the migration?)")
        elif target not in stored:
            result.differ(f"record {record.id}: missing in the destination (as {target})")
        else:
            _compare(record, stored[target], result)
            if history and _comparable_events(source_events.get(record.id, [])) != _comparable_events(
                    stored_events.get(target, [])):
                result.differ(f"record {record.id}: history differs")


def _compare(record: MemoryRecord, stored: MemoryRecord, result: Verification) -> None:
    target = stored.id
    fields = {"text": (record.text, stored.text), "hash": (text_hash(record.text), stored.hash),
              "scope": (record.scope, stored.scope), "metadata": (record.metadata, stored.metadata),
              "expires_at": (record.expires_at, stored.expires_at)}
    if target == record.id:
        fields |= {"created_at": (record.created_at, stored.created_at),
                   "updated_at": (record.updated_at, stored.updated_at)}
    else:
        result.times_compared = False
    for name, (want, got) in fields.items():
        if want != got:
            result.differ(f"record {record.id}: {name} differs")
