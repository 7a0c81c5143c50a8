"""stateful: random sequences of every operation, answered exactly as the reference backend answers them."""

from __future__ import annotations

import uuid

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis.errors import Flaky

import memdock
from memdock.capabilities import Capability
from memdock.conformance.context import CheckContext
from memdock.conformance.differential import Divergence, Replay, Step, steps_strategy
from memdock.conformance.registry import check
from memdock.memory import Memory

EXAMPLES, THOROUGH_EXAMPLES = 40, 500
MAX_STEPS, THOROUGH_MAX_STEPS = 20, 40


def _reference_for(ctx: CheckContext) -> tuple[str, bool]:
    """The reference URL embedding as the backend does, and whether scores can then be compared exactly."""
    if ctx.memory.embedder is not None:
        return f"memory://?embedder={ctx.memory.embedder.name}", True
    name = ctx.memory.backend.server_embedder()
    return f"memory://?embedder={name or 'hash'}", name is not None


def _ids() -> tuple[str, ...]:
    base = f"s{uuid.uuid4().hex[:8]}"
    return (base, f"{base}0", base.upper())


@check("stateful")
def check_random_sequences_agree_with_the_reference(ctx: CheckContext) -> None:
    """Random sequences of add (texts and message batches), update, delete, delete_all, paged list, count,
    get, history and search, over scopes using all four ids (ids that are prefixes and case variants of each
    other), awkward JSON metadata and random filters, give the same answers as the reference backend:
    events, records (text, scope, metadata with JSON types kept), ids never reused, created_at kept,
    page sizes and the (created_at, id) order, counts, history, the hits of search and their scores (the
    clamped cosine, within 1e-4, when the vectors can be recomputed) and the typed error whenever the
    reference raises one. Scope fields the backend refuses with Unsupported are not used, and history
    metadata is not compared when the backend's history keeps none (both gaps of a service). Seeded
    (``--seed``), so every run is the same; ``--thorough`` runs 500 sequences of up to 40 steps instead of
    40 of up to 20.

    Troubleshooting: the failure names the seed and the minimal sequence of steps (hypothesis shrinks it);
    replay those steps by hand against your backend and ``memory://`` side by side. The first diverging
    answer is at the last step; scope matching by prefix or case, merged metadata, stale search vectors
    and lost JSON types are the usual causes.
    """
    sut = ctx.memory
    reference_url, exact_scores = _reference_for(ctx)
    capabilities = frozenset(sut.capabilities)
    history_after_delete = Capability.HISTORY_AFTER_DELETE in capabilities
    examples = THOROUGH_EXAMPLES if ctx.thorough else EXAMPLES
    max_steps = THOROUGH_MAX_STEPS if ctx.thorough else MAX_STEPS
    failure: dict[str, str] = {}
    fields = ctx.scope_fields()
    history_metadata = True
    if Capability.HISTORY in capabilities:  # a service whose history keeps no metadata: compare the rest
        probe = sut.add("history probe", user_id=ctx.user, metadata={"probe": 1})[0].record
        history_metadata = any(e.new_metadata is not None for e in sut.history(probe.id))
        sut.delete(probe.id)

    @seed(ctx.seed)
    @settings(max_examples=examples, deadline=None, database=None, derandomize=False, print_blob=False,
              report_multiple_bugs=False,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink])
    @given(steps_strategy(capabilities, max_steps=max_steps, fields=fields))
    def agree(steps: list[Step]) -> None:
        replay = Replay(sut, _open_reference(reference_url), _ids(), exact_scores=exact_scores,
                        history_after_delete=history_after_delete, history_metadata=history_metadata)
        try:
            for step in steps:
                replay.run(step)
        except Divergence as exc:
            failure["message"] = str(exc)
            failure["ids"] = ", ".join(replay.ids)
            failure["steps"] = "\n".join(f"  {n}. {line}" for n, line in enumerate(replay.log, 1))
            raise
        finally:
            replay.ref.close()
            replay.cleanup()

    try:
        agree()
    except (Divergence, Flaky) as exc:  # Flaky: the backend answered differently on a replay
        message = failure.get("message", f"{type(exc).__name__}: {exc}")
        raise AssertionError(
            f"{message}\n  seed {ctx.seed} (replay: --seed {ctx.seed}); scope ids {failure.get('ids', '?')} "
            f"(the 2nd extends the 1st, the 3rd is the 1st upper-cased); minimal sequence:\n"
            f"{failure.get('steps', '  (not recorded)')}"
        ) from None


def _open_reference(url: str) -> Memory:
    return memdock.open(url)
