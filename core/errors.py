"""Typed errors: the only exceptions memdock lets a caller see.

Every backend fault is translated into one of these by the backend or by `Memory`; a raw driver
exception reaching a caller is a bug.
"""

from __future__ import annotations


class MemdockError(Exception):
    """Base class of every memdock error."""


class MemoryNotFound(MemdockError):
    """No memory with this id exists in the caller's scope (or at all)."""

    def __init__(self, memory_id: str) -> None:
        super().__init__(f"memory not found: {memory_id!r}")
        self.memory_id = memory_id


class InvalidInput(MemdockError, ValueError):
    """Input failed validation. `field` names the offending field (dotted path) when known."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


class InvalidFilter(InvalidInput):
    """A filter is malformed, uses an unknown operator, or compares values of mismatched types."""


class ScopeRequired(InvalidInput):
    """A write (or scoped read) was attempted without user_id, agent_id, run_id or app_id."""

    def __init__(self, message: str = "at least one of user_id, agent_id, run_id, app_id is required") -> None:
        super().__init__(message, field="scope")


class Unsupported(MemdockError):
    """The selected backend does not support this operation (see its declared capabilities)."""


class BackendUnavailable(MemdockError):
    """The backend could not be reached or failed transiently. Retrying later may succeed."""


class MalformedResponse(BackendUnavailable):
    """A remote backend answered with something its protocol does not allow. `dialect` names the protocol
    and `field` the offending part of the answer."""

    def __init__(self, message: str, *, dialect: str, field: str | None = None) -> None:
        where = f"{dialect}: {field}" if field else dialect
        super().__init__(f"malformed response ({where}): {message}")
        self.dialect = dialect
        self.field = field


class WriteConflict(BackendUnavailable):
    """A write met the store's uniqueness rule: between `Memory`'s duplicate check and the insert, another
    writer (another process) stored the same text in the same scope, or a record with the same id. The
    backend stored nothing of the batch; `Memory` checks again and retries (a few times) before passing
    it on, so a caller sees it only under sustained contention."""


class AuthenticationFailed(MemdockError):
    """The backend refused the credentials it was given."""


class EmbedderMismatch(InvalidInput):
    """A collection was written with one embedder and opened with another (vector spaces differ)."""
