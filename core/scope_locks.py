"""Write locks per exact scope: what `Memory` holds while it checks for a duplicate and stores.

A text is stored once per exact scope, so two writers only need to wait for each other when they write
the same exact scope; writers of other scopes (other users, other agents) go on, also while a slow or
unreachable store keeps one writer waiting. Locks are made on first use and dropped when no writer holds
or waits for them, so memory stays proportional to the scopes being written at the moment.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from memdock.models import Scope


class ScopeLocks:
    """A lock per exact scope (every id, set or not), taken several at a time in one global order (so two
    writers of overlapping scope sets never deadlock)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}  # key -> (lock, holders and waiters)

    @contextmanager
    def holding(self, scopes: Iterable[Scope]) -> Iterator[None]:
        """Hold the locks of `scopes` (duplicates folded) for the body of the ``with``."""
        entered: list[tuple[str, threading.Lock]] = []
        acquired = 0
        try:
            for key in sorted({scope.model_dump_json() for scope in scopes}):
                entered.append((key, self._enter(key)))
                entered[-1][1].acquire()
                acquired += 1
            yield
        finally:
            for n, (key, lock) in reversed(list(enumerate(entered))):
                if n < acquired:  # the last one entered may not be acquired (an interrupt while waiting)
                    lock.release()
                self._leave(key)

    def held(self) -> int:
        """How many scopes have a lock now (for tests)."""
        with self._guard:
            return len(self._locks)

    def _enter(self, key: str) -> threading.Lock:
        with self._guard:
            lock, users = self._locks.get(key, (None, 0))
            if lock is None:
                lock = threading.Lock()
            self._locks[key] = (lock, users + 1)
            return lock

    def _leave(self, key: str) -> None:
        with self._guard:
            found = self._locks.get(key)
            if found is None:
                return
            lock, users = found
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
