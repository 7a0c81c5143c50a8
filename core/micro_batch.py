"""Micro-batching: concurrent single-text embeddings coalesced into one batch call.

An embedding model embeds a batch of texts much faster per text than the same texts one by one, but a
server answers each search on its own thread with one query text. `MicroBatcher.embed_one` lets them
meet: a caller that finds the model idle embeds its text at once (a lone caller waits for nothing);
callers arriving while a batch is being embedded queue up, and when it is done the first of them embeds
the whole queue in one call (at most `max_batch` texts; a fuller queue is split). Every caller gets the
vector of its own text, or the exception the batch call raised. One batch call runs at a time.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["DEFAULT_MAX_BATCH", "MicroBatcher"]

DEFAULT_MAX_BATCH = 64

Vector = list[float]


@dataclass
class _Batch:
    texts: list[str] = field(default_factory=list)
    vectors: Sequence[Vector] = ()
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)


class MicroBatcher:
    """Coalesces concurrent `embed_one` calls into calls of `embed` (texts -> one vector each, in order)."""

    def __init__(self, embed: Callable[[list[str]], Sequence[Vector]], *, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._embed = embed
        self.max_batch = max_batch
        self._lock = threading.Lock()  # guards _open
        self._running = threading.Lock()  # held by the one batch call in progress
        self._open: _Batch | None = None  # the batch new callers join, led by its first caller
        self.calls = 0  # batch calls made (for tests and diagnostics)

    def embed_one(self, text: str) -> Vector:
        """The vector of `text`, embedded alone or with the texts of concurrent callers."""
        with self._lock:
            batch = self._open
            leads = batch is None or len(batch.texts) >= self.max_batch
            if leads:
                batch = self._open = _Batch()
            assert batch is not None
            index = len(batch.texts)
            batch.texts.append(text)
        if leads:
            self._run(batch)
        else:
            batch.done.wait()
        if batch.error is not None:
            raise batch.error
        return batch.vectors[index]

    def _run(self, batch: _Batch) -> None:
        """Embed `batch` once the model is free; from then on it takes no more texts."""
        with self._running:
            with self._lock:
                if self._open is batch:
                    self._open = None
            try:
                self.calls += 1
                vectors = self._embed(list(batch.texts))
                if len(vectors) != len(batch.texts):
                    raise ValueError(f"the embedder returned {len(vectors)} vectors for {len(batch.texts)} texts")
                batch.vectors = vectors
            except BaseException as exc:  # every waiter re-raises it
                batch.error = exc
            finally:
                batch.done.set()
