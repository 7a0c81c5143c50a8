"""The stateful differential check's engine: random sequences of operations run against the backend under
test AND the reference backend, every answer compared.

A sequence is a list of `Step` values drawn by hypothesis (`steps_strategy`); `Replay` runs one sequence
on a pair of `Memory` objects and raises `Divergence` at the first answer that differs. Records are known
by *handle* (the n-th memory the sequence created), because the two backends stamp different ids; a step
naming a handle that was deleted checks that both refuse it (and that ids are never reused).

What is compared, per operation: events and records of add (single texts and message batches), update and
delete; ``delete_all`` counts; ``get``; every page of ``list`` (sizes, cursors, records, the backend's own
(created_at, id) order); ``count``; ``history`` (kinds, old/new text and metadata); ``search`` (the hits,
and their scores within `SCORE_TOLERANCE` when both sides embed alike, else only which records are found);
and the typed error when the reference raises one. Scope ids come in prefix and case variants of each
other and are set on all four fields; metadata is awkward JSON; filters use every operator the backend
declares, with case and type variants.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

from memdock.capabilities import Capability
from memdock.errors import MemdockError
from memdock.memory import Memory
from memdock.models import SCOPE_FIELDS, HistoryEvent, MemoryRecord, Scope, SearchHit, WriteResult

SCORE_TOLERANCE = 1e-4
"""How far a score may stray from the reference's exact clamped cosine (float32 indexes round)."""

LIST_LIMITS = (1, 2, 3, 100)

WRITE_SCOPES: tuple[dict[str, int], ...] = (
    {"user_id": 0}, {"user_id": 1}, {"user_id": 2}, {"user_id": 0, "agent_id": 0}, {"user_id": 0, "agent_id": 1},
    {"agent_id": 0}, {"user_id": 0, "run_id": 0}, {"run_id": 0}, {"app_id": 0}, {"user_id": 1, "app_id": 0},
    {"user_id": 0, "agent_id": 0, "run_id": 0, "app_id": 0}, {"agent_id": 2},
)
"""Scopes memories are written under: values index the example's three ids (id1 extends id0, so id0 is
its prefix; id2 is id0 upper-cased); the same id also appears under different fields."""
READ_SCOPES: tuple[dict[str, int], ...] = (
    *WRITE_SCOPES, {"agent_id": 1}, {"app_id": 1}, {"run_id": 1}, {"user_id": 0, "app_id": 0},
)

TEXTS: tuple[str, ...] = (
    "green tea in the morning", "Green tea in the morning", "green  tea in the  morning", "caf\u00e9 au lait",
    "cafe\u0301 au lait", "a red hatchback car", "chess on Sunday afternoons", "black coffee", "tea",
    "long " * 200,
)
"""Texts: case variants, one that folds white space into another (a duplicate), NFC and NFD spellings."""

KEYS = ("k", "n", "a.b", "a", "tags", "\u00e9", "e\u0301")
"""Metadata keys: a dotted key beside an object under its first part, NFC and NFD spellings."""

SCALARS: tuple[Any, ...] = (
    0, 1, -1, 2**53 + 1, 1.0, 1.5, -2.5, 1e20, True, False, None, "", "a", "A", "tea", "Tea", "Green tea",
    "caf\u00e9", "cafe\u0301", "x.y", "1", "L" * 1500,
)
"""Awkward JSON scalars: a big int past 2^53, int vs float, bool vs number, strings that differ by case or
normalisation, a long value."""

FILTER_FIELDS = ("k", "n", "a.b", "a", "tags", "\u00e9", "role", "absent", "user_id", "agent_id")
NUMBERS: tuple[Any, ...] = (0, 1, 1.5, -1, 2**53, 1e20)
BAD_ORDER_OPERANDS: tuple[Any, ...] = (True, "1", None)
STRINGS = ("a", "A", "te", "Te", "ea", "tea", "caf\u00e9", "cafe\u0301", ".", "")
SCOPE_VALUES = ("@0", "@1", "@2")
"""Filter operands naming scope ids; ``@n`` is replaced by the example's n-th id when the step runs."""


@dataclass(frozen=True)
class Step:
    """One operation of a sequence. `op` names it; the other fields are its arguments (indexes into
    `TEXTS`, `WRITE_SCOPES`/`READ_SCOPES`, handles modulo the handles created so far)."""

    op: str
    scope: int = 0
    text: int | None = None
    texts: tuple[int, ...] = ()
    metadata: Mapping[str, Any] | None = None
    handle: int = 0
    where: Mapping[str, Any] | None = None
    limit: int = 10

    def describe(self, ids: tuple[str, ...]) -> str:
        """The step as a line a backend author can replay (ids spelled out)."""
        def scope_of(table: tuple[dict[str, int], ...]) -> str:
            return ", ".join(f"{field}={ids[index]!r}" for field, index in table[self.scope].items())

        def text_of(index: int | None) -> str:
            return "None" if index is None else _short(TEXTS[index])

        where = "" if self.where is None else f", filter={_short(json.dumps(_resolve(self.where, ids)), 300)}"
        meta = "" if self.metadata is None else f", metadata={_short(json.dumps(self.metadata), 300)}"
        handle = f"memory#{self.handle}"
        match self.op:
            case "add":
                return f"add({text_of(self.text)}, {scope_of(WRITE_SCOPES)}{meta})"
            case "add_messages":
                messages = [{"role": ("user", "assistant")[n % 2], "content": _short(TEXTS[t], 60, quote=False)}
                            for n, t in enumerate(self.texts)]
                return f"add({messages}, {scope_of(WRITE_SCOPES)}{meta})"
            case "update":
                return f"update({handle}, text={text_of(self.text)}{meta})"
            case "delete" | "get" | "history":
                return f"{self.op}({handle})"
            case "delete_all":
                return f"delete_all({scope_of(READ_SCOPES)}{where})"
            case "list":
                return f"list({scope_of(READ_SCOPES)}{where}, limit={self.limit}) and every next page"
            case "count":
                return f"count({scope_of(READ_SCOPES)}{where})"
            case _:
                return f"search({text_of(self.text)}, {scope_of(READ_SCOPES)}{where}, limit={self.limit})"


def _short(text: str, limit: int = 60, *, quote: bool = True) -> str:
    shown = text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"
    return repr(shown) if quote and not shown.startswith(("{", "[")) else shown


def _resolve(value: Any, ids: tuple[str, ...]) -> Any:
    """Replace ``@n`` operands by the example's ids."""
    if isinstance(value, str) and value in SCOPE_VALUES:
        return ids[int(value[1:])]
    if isinstance(value, list):
        return [_resolve(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _resolve(v, ids) for k, v in value.items()}
    return value


# -- strategies ---------------------------------------------------------------------------------------


def _json_values(nested: bool) -> st.SearchStrategy[Any]:
    scalars = st.sampled_from(SCALARS)
    if not nested:
        return scalars
    return st.recursive(
        scalars | st.just([]) | st.just({}),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(("b", "x", "y.z")), inner,
                                                                     max_size=2),
        max_leaves=4,
    )


def _filters(capabilities: frozenset[Capability]) -> st.SearchStrategy[dict[str, Any]] | None:
    """Random mem0-style filters over the operators the backend declares (None: it declares none)."""
    if Capability.FILTER_EQUALITY not in capabilities:
        return None
    field = st.sampled_from(FILTER_FIELDS)
    operand: st.SearchStrategy[Any] = st.sampled_from(SCALARS + SCOPE_VALUES) | st.just([]) | st.just(["tea", 1])
    leaves: list[st.SearchStrategy[dict[str, Any]]] = [
        st.builds(lambda f, v: {f: v}, field, st.sampled_from(SCALARS[:-1] + SCOPE_VALUES)),
        st.builds(lambda f, op, v: {f: {op: v}}, field, st.sampled_from(("eq", "ne")), operand),
        st.builds(lambda f, op, v: {f: {op: v}}, field, st.sampled_from(("in", "nin")),
                  st.lists(st.sampled_from(SCALARS[:-1] + SCOPE_VALUES), max_size=3)),
        st.builds(lambda f: {f: "*"}, field),
    ]
    if Capability.FILTER_RANGE in capabilities:
        leaves.append(st.builds(lambda f, op, v: {f: {op: v}}, field, st.sampled_from(("gt", "gte", "lt", "lte")),
                                st.sampled_from(NUMBERS + BAD_ORDER_OPERANDS)))
    if Capability.CONTAINS in capabilities:
        leaves.append(st.builds(lambda f, op, v: {f: {op: v}}, field,
                                st.sampled_from(("contains", "icontains", "startswith", "endswith")),
                                st.sampled_from(STRINGS) | st.sampled_from((1, True, None))))
    return st.recursive(
        st.one_of(leaves),
        lambda inner: st.one_of(
            st.builds(lambda items: {"AND": items}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda items: {"OR": items}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda item: {"NOT": item}, inner),
        ),
        max_leaves=4,
    )


def steps_strategy(capabilities: frozenset[Capability], *, max_steps: int,
                   fields: tuple[str, ...] = SCOPE_FIELDS) -> st.SearchStrategy[list[Step]]:
    """Sequences of steps using only what the backend declares (update needs UPDATE, history HISTORY) and
    scopes over the scope `fields` it supports."""
    nested = Capability.NESTED_METADATA in capabilities
    metadata = st.dictionaries(st.sampled_from(KEYS), _json_values(nested), max_size=3)
    filters = _filters(capabilities)
    where: st.SearchStrategy[Any] = st.none() if filters is None else st.none() | filters
    text = st.integers(0, len(TEXTS) - 1)
    write_scope = st.sampled_from([n for n, scope in enumerate(WRITE_SCOPES) if set(scope) <= set(fields)])
    read_scope = st.sampled_from([n for n, scope in enumerate(READ_SCOPES) if set(scope) <= set(fields)])
    handle = st.integers(0, 40)
    adds = [
        st.builds(Step, op=st.just("add"), scope=write_scope, text=text, metadata=st.none() | metadata),
        st.builds(Step, op=st.just("add_messages"), scope=write_scope, texts=st.lists(text, min_size=1, max_size=4)
                  .map(tuple), metadata=st.none() | metadata),
    ]
    steps: list[st.SearchStrategy[Step]] = [
        *adds, *adds,
        st.builds(Step, op=st.just("delete"), handle=handle),
        st.builds(Step, op=st.just("delete_all"), scope=read_scope, where=where),
        st.builds(Step, op=st.just("get"), handle=handle),
        st.builds(Step, op=st.just("list"), scope=read_scope, where=where, limit=st.sampled_from(LIST_LIMITS)),
        st.builds(Step, op=st.just("count"), scope=read_scope, where=where),
    ]
    search = st.builds(Step, op=st.just("search"), scope=read_scope, text=text, where=where,
                       limit=st.sampled_from((1, 3, 100)))
    steps += [search, search]
    if Capability.UPDATE in capabilities:
        update = st.builds(Step, op=st.just("update"), handle=handle, text=st.none() | text,
                           metadata=st.none() | metadata)
        steps += [update, update]
    if Capability.HISTORY in capabilities:
        steps.append(st.builds(Step, op=st.just("history"), handle=handle))
    first = st.lists(st.one_of(adds), min_size=1, max_size=6)
    return st.tuples(first, st.lists(st.one_of(steps), min_size=1, max_size=max_steps)).map(lambda p: p[0] + p[1])


# -- running a sequence -------------------------------------------------------------------------------


class Divergence(AssertionError):
    """The backend under test answered differently from the reference."""


def canonical(value: Any) -> str:
    """JSON with types kept apart (1, 1.0 and True differ), for comparing metadata."""
    def tag(v: Any) -> Any:
        if isinstance(v, bool) or v is None or isinstance(v, str):
            return v
        if isinstance(v, int):
            return {"int": str(v)}
        if isinstance(v, float):
            return {"float": repr(v)}
        if isinstance(v, list):
            return [tag(x) for x in v]
        if isinstance(v, dict):
            return {k: tag(x) for k, x in v.items()}
        return {"?": repr(v)}

    return json.dumps(tag(value), sort_keys=True, ensure_ascii=False)


@dataclass
class Outcome:
    """What one side answered: a value, or the name of the memdock error it raised."""

    value: Any = None
    error: str | None = None


def _attempt(call: Callable[[], Any]) -> Outcome:
    try:
        return Outcome(value=call())
    except MemdockError as exc:
        return Outcome(error=type(exc).__name__)


class Replay:
    """Runs steps on the backend under test (`sut`) and the reference (`ref`), comparing every answer.

    `ids` are the example's three scope ids; `exact_scores` says whether both sides embed with the same
    embedder (then scores must agree within `SCORE_TOLERANCE`; otherwise only the hits found are compared).
    """

    def __init__(self, sut: Memory, ref: Memory, ids: tuple[str, ...], *, exact_scores: bool,
                 history_after_delete: bool, history_metadata: bool = True) -> None:
        self.sut, self.ref, self.ids = sut, ref, ids
        self.exact_scores = exact_scores
        self.history_after_delete = history_after_delete
        self.history_metadata = history_metadata
        self.handles: list[tuple[str, str]] = []
        self.by_ref: dict[str, int] = {}
        self.by_sut: dict[str, int] = {}
        self.created: dict[int, Any] = {}
        self.deleted: set[int] = set()
        self.log: list[str] = []
        """The steps run so far, as `Step.describe` lines with handles resolved."""

    # helpers

    def scope(self, table: tuple[dict[str, int], ...], index: int) -> Scope:
        return Scope(**{field: self.ids[i] for field, i in table[index].items()})

    def both(self, what: str, call: Callable[[Memory], Any]) -> tuple[Any, Any] | None:
        """Run `call` on both; None when both raised the same error; a Divergence when they disagree."""
        ref, sut = _attempt(lambda: call(self.ref)), _attempt(lambda: call(self.sut))
        if ref.error is not None or sut.error is not None:
            if ref.error != sut.error:
                expected = f"raises {ref.error}" if ref.error else "succeeds"
                got = f"raised {sut.error}" if sut.error else "succeeded"
                raise Divergence(f"{what}: the reference {expected}, the backend {got}")
            return None
        return sut.value, ref.value

    def record_matches(self, what: str, got: MemoryRecord, expected: MemoryRecord) -> None:
        """Same text, scope, metadata (types kept) and expiry; times as the backend first reported them."""
        handle = self.by_ref.get(expected.id)
        if handle is None or self.handles[handle][0] != got.id:
            raise Divergence(f"{what}: returned id {got.id}, expected the id of memory#{handle}")
        if got.text != expected.text:
            raise Divergence(f"{what}: memory#{handle} text {got.text!r}, reference {expected.text!r}")
        if got.scope != expected.scope:
            raise Divergence(f"{what}: memory#{handle} scope {got.scope.ids()}, reference {expected.scope.ids()}")
        if canonical(got.metadata) != canonical(expected.metadata):
            raise Divergence(f"{what}: memory#{handle} metadata {canonical(got.metadata)}, "
                             f"reference {canonical(expected.metadata)}")
        if got.created_at != self.created.get(handle, got.created_at):
            raise Divergence(f"{what}: memory#{handle} created_at moved from {self.created[handle]} "
                             f"to {got.created_at}")
        if got.updated_at < got.created_at:
            raise Divergence(f"{what}: memory#{handle} updated_at {got.updated_at} before created_at {got.created_at}")

    def results_match(self, what: str, got: list[WriteResult], expected: list[WriteResult]) -> None:
        if [r.event for r in got] != [r.event for r in expected]:
            raise Divergence(f"{what}: events {[r.event.value for r in got]}, reference "
                             f"{[r.event.value for r in expected]}")
        for mine, theirs in zip(got, expected, strict=True):
            if theirs.event.value == "ADD":
                if mine.record.id in self.by_sut:
                    raise Divergence(f"{what}: the new memory got id {mine.record.id}, already used by "
                                     f"memory#{self.by_sut[mine.record.id]}")
                handle = len(self.handles)
                self.handles.append((mine.record.id, theirs.record.id))
                self.by_ref[theirs.record.id], self.by_sut[mine.record.id] = handle, handle
                self.created[handle] = mine.record.created_at
            self.record_matches(what, mine.record, theirs.record)

    def handle(self, index: int) -> int | None:
        return index % len(self.handles) if self.handles else None

    # operations

    def run(self, step: Step) -> None:
        """Run one step on both sides and compare (raises `Divergence`)."""
        what = step.describe(self.ids)
        if step.op in ("update", "delete", "get", "history") and self.handles:
            what = what.replace(f"memory#{step.handle}", f"memory#{step.handle % len(self.handles)}")
        self.log.append(what)
        where = None if step.where is None else _resolve(step.where, self.ids)
        match step.op:
            case "add" | "add_messages":
                scope = self.scope(WRITE_SCOPES, step.scope)
                data: Any = TEXTS[step.text or 0] if step.op == "add" else [
                    {"role": ("user", "assistant")[n % 2], "content": TEXTS[t]} for n, t in enumerate(step.texts)]
                pair = self.both(what, lambda m: m.add(data, scope=scope, metadata=step.metadata))
                if pair is not None:
                    self.results_match(what, pair[0], pair[1])
            case "update" | "delete" | "get" | "history":
                self.run_on_handle(step, what)
            case "delete_all":
                scope = self.scope(READ_SCOPES, step.scope)
                pair = self.both(what, lambda m: m.delete_all(scope=scope, filter=where))
                if pair is not None and pair[0] != pair[1]:
                    raise Divergence(f"{what}: deleted {pair[0]}, reference {pair[1]}")
                if pair is not None:
                    self.forget_deleted()
            case "count":
                scope = self.scope(READ_SCOPES, step.scope)
                pair = self.both(what, lambda m: m.count(scope=scope, filter=where))
                if pair is not None and pair[0] != pair[1]:
                    raise Divergence(f"{what}: counted {pair[0]}, reference {pair[1]}")
            case "list":
                self.run_list(step, what, where)
            case _:
                self.run_search(step, what, where)

    def forget_deleted(self) -> None:
        """After delete_all: note which handles the reference no longer holds."""
        for handle, (_, ref_id) in enumerate(self.handles):
            if handle not in self.deleted and _attempt(functools.partial(self.ref.get, ref_id)).error is not None:
                self.deleted.add(handle)

    def run_on_handle(self, step: Step, what: str) -> None:
        handle = self.handle(step.handle)
        if handle is None:
            return
        sut_id, ref_id = self.handles[handle]
        if step.op == "update":
            text = None if step.text is None else TEXTS[step.text]
            pair = self.both(what, lambda m: m.update(sut_id if m is self.sut else ref_id, text=text,
                                                      metadata=step.metadata))
            if pair is not None:
                self.results_match(what, [pair[0]], [pair[1]])
        elif step.op == "delete":
            pair = self.both(what, lambda m: m.delete(sut_id if m is self.sut else ref_id))
            if pair is not None:
                self.results_match(what, [pair[0]], [pair[1]])
                self.deleted.add(handle)
        elif step.op == "get":
            pair = self.both(what, lambda m: m.get(sut_id if m is self.sut else ref_id))
            if pair is not None:
                self.record_matches(what, pair[0], pair[1])
        else:
            if handle in self.deleted and not self.history_after_delete:
                return
            pair = self.both(what, lambda m: m.history(sut_id if m is self.sut else ref_id))
            if pair is not None:
                self.history_matches(what, handle, pair[0], pair[1])

    def history_matches(self, what: str, handle: int, got: list[HistoryEvent], expected: list[HistoryEvent]) -> None:
        def shape(events: list[HistoryEvent]) -> list[tuple[Any, ...]]:
            if not self.history_metadata:
                return [(e.event.value, e.old_text, e.new_text, e.scope) for e in events]
            return [(e.event.value, e.old_text, e.new_text, canonical(e.old_metadata), canonical(e.new_metadata),
                     e.scope) for e in events]

        if shape(got) != shape(expected):
            raise Divergence(f"{what}: history of memory#{handle} is {shape(got)}, reference {shape(expected)}")
        if any(e.memory_id != self.handles[handle][0] for e in got):
            raise Divergence(f"{what}: history of memory#{handle} holds another memory's events")

    def run_list(self, step: Step, what: str, where: Any) -> None:
        scope = self.scope(READ_SCOPES, step.scope)

        def walk(memory: Memory) -> list[list[MemoryRecord]]:
            pages = [memory.list(scope=scope, filter=where, limit=step.limit)]
            while pages[-1].next_cursor is not None and len(pages) < 200:
                pages.append(memory.list(scope=scope, filter=where, limit=step.limit, cursor=pages[-1].next_cursor))
            return [page.items for page in pages]

        pair = self.both(what, walk)
        if pair is None:
            return
        got, expected = pair
        if [len(p) for p in got] != [len(p) for p in expected]:
            raise Divergence(f"{what}: page sizes {[len(p) for p in got]}, reference {[len(p) for p in expected]}")
        mine = [r for page in got for r in page]
        theirs = {r.id: r for page in expected for r in page}
        wanted = {self.handles[self.by_ref[ref_id]][0]: r for ref_id, r in theirs.items()}
        if sorted(r.id for r in mine) != sorted(wanted) or len({r.id for r in mine}) != len(mine):
            extra = [self.by_sut.get(r.id, r.id) for r in mine if r.id not in wanted]
            missing = sorted(self.by_sut[i] for i in set(wanted) - {r.id for r in mine})
            raise Divergence(f"{what}: listed unexpected/duplicate memories {extra}, missed {missing}")
        keys = [(r.created_at, r.id) for r in mine]
        if keys != sorted(keys):
            raise Divergence(f"{what}: pages are not in (created_at, id) order: "
                             f"{[f'memory#{self.by_sut[r.id]}' for r in mine]}")
        for record in mine:
            self.record_matches(what, record, wanted[record.id])

    def run_search(self, step: Step, what: str, where: Any) -> None:
        scope = self.scope(READ_SCOPES, step.scope)
        query = TEXTS[step.text or 0]
        pair = self.both(what, lambda m: m.search(query, scope=scope, filter=where, mode="vector",
                                                  limit=step.limit if m is self.sut else 1000))
        if pair is None:
            return
        got: list[SearchHit] = pair[0]
        everything: list[SearchHit] = pair[1]
        expected = everything[: step.limit]
        exact = {self.handles[self.by_ref[h.record.id]][0]: h for h in everything}
        ids = [h.record.id for h in got]
        if len(set(ids)) != len(ids) or not set(ids) <= set(exact) or len(got) != len(expected):
            found = [self.by_sut.get(i, i) for i in ids]
            raise Divergence(f"{what}: found {found}, the reference finds "
                             f"{[self.by_ref[h.record.id] for h in expected]} (of {len(everything)} matching)")
        for hit in got:
            self.record_matches(what, hit.record, exact[hit.record.id].record)
        if not self.exact_scores:
            return
        for hit, best in zip(got, expected, strict=True):
            truth = exact[hit.record.id].score
            if not (math.isclose(hit.score, truth, abs_tol=SCORE_TOLERANCE)
                    and math.isclose(hit.score, best.score, abs_tol=SCORE_TOLERANCE)):
                raise Divergence(f"{what}: memory#{self.by_sut[hit.record.id]} scored {hit.score:.6f}; its clamped "
                                 f"cosine is {truth:.6f} and the hit at this rank scores {best.score:.6f}")

    def cleanup(self) -> None:
        """Delete everything the sequence wrote on the backend under test (every field, every id)."""
        for field in SCOPE_FIELDS:
            for scope_id in self.ids:
                _attempt(functools.partial(self.sut.delete_all, scope=Scope(**{field: scope_id})))
