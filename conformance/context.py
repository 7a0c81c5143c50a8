"""What a check works with: a Memory on a fresh, empty, uniquely named namespace, and unique scope ids."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit

import memdock
from memdock.backend import BackendURL
from memdock.capabilities import Capability
from memdock.errors import Unsupported
from memdock.memory import Memory
from memdock.models import SCOPE_FIELDS, Scope
from memdock.search_modes import SearchMode
from memdock.urls import backend_class_for


def fresh_url(base_url: str) -> str:
    """`base_url` pointed at a new, empty namespace, with the deterministic ``hash`` embedder unless the
    URL names one (backends that embed server-side get no embedder parameter): the backend's
    `Backend.namespace_param` (``collection``, ``table``, a store ``name``, ...) gets a unique value,
    replacing one that is there. A backend without namespaces keeps its URL; checks then rely on their
    unique scope ids."""
    parts = urlsplit(base_url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    backend_class = backend_class_for(BackendURL.parse(base_url))
    if Capability.SERVER_SIDE_EMBEDDING not in backend_class.capabilities:
        params.setdefault("embedder", "hash")
    if backend_class.namespace_param is not None:
        params[backend_class.namespace_param] = f"conf_{uuid.uuid4().hex[:16]}"
    return parts._replace(query=urlencode(params)).geturl()


DEFAULT_SEED = 15
"""The seed of the kit's randomised checks unless ``--seed`` says otherwise: runs are the same every time."""


@dataclass
class CheckContext:
    """A check's world. `memory` is open on `url`; `user`/`other` are scope ids no other check uses.

    `seed` seeds the randomised checks (the stateful differential check prints it with a failure, so a run
    can be replayed with ``--seed``); `thorough` asks them for many more examples."""

    url: str
    memory: Memory
    seed: int = DEFAULT_SEED
    thorough: bool = False
    user: str = field(default_factory=lambda: f"u-{uuid.uuid4().hex[:10]}")
    other: str = field(default_factory=lambda: f"o-{uuid.uuid4().hex[:10]}")
    agent: str = field(default_factory=lambda: f"a-{uuid.uuid4().hex[:10]}")

    @classmethod
    def open(cls, base_url: str, *, seed: int = DEFAULT_SEED, thorough: bool = False) -> CheckContext:
        """Open a fresh namespace derived from `base_url`."""
        url = fresh_url(base_url)
        return cls(url=url, memory=memdock.open(url), seed=seed, thorough=thorough)

    def search_modes(self) -> tuple[SearchMode, ...]:
        """The search modes the backend answers (`memdock.search_modes`): ``vector``, plus ``hybrid`` and
        ``keyword`` where it declares `KEYWORD_SEARCH`. Checks of what every search must honour (scope,
        filters, expiry) run in each."""
        if Capability.KEYWORD_SEARCH in self.memory.capabilities:
            return ("vector", "hybrid", "keyword")
        return ("vector",)

    def scope_fields(self) -> tuple[str, ...]:
        """The scope fields the backend can store and query: `SCOPE_FIELDS` minus those a read under them
        refuses with `Unsupported` (a service without ``app_id``, say). Checks using every field use these."""
        fields = []
        for name in SCOPE_FIELDS:
            try:
                self.memory.count(scope=Scope(**{name: f"probe-{uuid.uuid4().hex[:8]}"}))
            except Unsupported:
                continue
            fields.append(name)
        return tuple(fields)

    def has(self, capability: Capability) -> bool:
        """Whether the backend declares `capability`."""
        return capability in self.memory.capabilities

    def reopen(self) -> Memory:
        """Close the Memory and open the same URL again (for persistence checks)."""
        self.memory.close()
        self.memory = memdock.open(self.url)
        return self.memory

    def cleanup(self) -> None:
        """Delete what the check wrote under its scope ids, then close."""
        try:
            for user in (self.user, self.other):
                self.memory.delete_all(user_id=user)
        finally:
            self.memory.close()
