"""The data every system in the side-by-side benchmark gets: the same records (texts, unit vectors, scopes),
the same queries, and the exact answers (numpy brute force) that recall is measured against.

- Records: ``count`` texts made of words drawn from small vocabularies (unique, sentence-like, so the
  default embedder has real work), a random unit vector of 384 floats each, a ``user_id`` spread evenly
  over ``users`` users (100 users: each scope holds 1% of the records) and an ``agent_id`` drawn from a
  Zipf distribution over ``agents`` agents (the skewed scopes: from ~19% down to ~0.2% of the records).
- `TableEmbedder` maps every probe text and every text of the add scenarios to its vector, so "vectors
  given" runs go through each system's own embed step at the cost of a dict look-up, and every system sees
  the same vectors (the base records are bulk-loaded with their vectors and never embedded). Texts it has
  not been given raise: a system can never embed something else silently.
- Queries: ``probe NNNNNN`` texts whose vectors are random unit vectors (no word in common with any record,
  so a peer's keyword scoring adds nothing), each with a user scope and an agent scope.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from memdock.embedding import Embedder
from memdock.models import MemoryRecord, Scope

DIMENSION = 384
LIMIT = 10
NAMES = ("Ada", "Bo", "Chen", "Dara", "Eli", "Fatima", "Gus", "Hana", "Ines", "Jonas", "Kemal", "Lea", "Mika",
         "Noor", "Omar", "Pia", "Quinn", "Rosa", "Sami", "Tove")
VERBS = ("prefers", "booked", "asked about", "dislikes", "ordered", "cancelled", "recommended", "forgot", "reviewed",
         "planned", "paid for", "returned", "liked", "compared", "shared")
THINGS = ("a window seat", "oat milk", "the blue jacket", "a table for four", "vegan options", "the night train",
          "a quiet room", "the premium plan", "extra towels", "a late checkout", "the red wine", "gluten-free bread",
          "a city map", "the museum pass", "an electric bike", "a yoga mat", "the jazz concert", "fresh flowers")
WHEN = ("on Monday", "last week", "in March", "before the trip", "after lunch", "every Friday", "at the airport",
        "during the meeting", "for the weekend", "yesterday", "next month", "in the evening")


def sentence(rng: np.random.Generator, tag: str) -> str:
    """A short sentence-like text; `tag` makes it unique."""
    return (f"{NAMES[rng.integers(len(NAMES))]} {VERBS[rng.integers(len(VERBS))]} "
            f"{THINGS[rng.integers(len(THINGS))]} {WHEN[rng.integers(len(WHEN))]} ({tag})")


def unit_vectors(rng: np.random.Generator, count: int) -> np.ndarray:
    """`count` random unit vectors of `DIMENSION` float32."""
    vectors = rng.normal(size=(count, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


class TableEmbedder(Embedder):
    """Texts to vectors by table look-up (the benchmark's "vectors given" embedder); unknown texts raise."""

    name = "bench-table"
    dimension = DIMENSION

    def __init__(self) -> None:
        self.table: dict[str, list[float]] = {}

    def put(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Register each text's vector."""
        for text, vector in zip(texts, vectors.tolist(), strict=True):
            self.table[text] = vector

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """The registered vector of each text; `KeyError` for a text never registered."""
        return [self.table[text] for text in texts]


@dataclass
class Item:
    """One record as every system receives it."""

    id: str
    text: str
    user_id: str
    agent_id: str
    bucket: int
    vector: np.ndarray = field(repr=False)

    def hash(self) -> str:
        """md5 of the text (what memdock and mem0 both store)."""
        return hashlib.md5(self.text.encode()).hexdigest()

    def record(self) -> MemoryRecord:
        """The memdock record of this item (for bulk loading through the backend)."""
        now = datetime.now(UTC)
        return MemoryRecord(id=self.id, text=self.text, scope=Scope(user_id=self.user_id, agent_id=self.agent_id),
                            metadata={"bucket": self.bucket}, hash=self.hash(), created_at=now, updated_at=now,
                            vector=self.vector.tolist())


@dataclass
class Query:
    """One probe: its text (registered in the table embedder), its vector, and the scopes it is asked in."""

    text: str
    vector: np.ndarray = field(repr=False)
    user_id: str
    agent_id: str


@dataclass
class Dataset:
    """Records, probes and the exact top-`LIMIT` ids of each probe in each of its scopes."""

    items: list[Item]
    vectors: np.ndarray
    queries: list[Query]
    users: int
    agents: int
    truth_user: list[list[str]] = field(default_factory=list)
    truth_agent: list[list[str]] = field(default_factory=list)

    def scope_sizes(self, key: str) -> dict[str, int]:
        """How many records each ``user_id`` or ``agent_id`` holds."""
        sizes: dict[str, int] = {}
        for item in self.items:
            value = item.user_id if key == "user_id" else item.agent_id
            sizes[value] = sizes.get(value, 0) + 1
        return sizes


def zipf_weights(count: int, exponent: float = 1.0) -> np.ndarray:
    """Probabilities proportional to 1 / rank**exponent."""
    weights = 1.0 / np.arange(1, count + 1) ** exponent
    return weights / weights.sum()


def make_dataset(count: int, queries: int, users: int, agents: int, seed: int, table: TableEmbedder) -> Dataset:
    """The records and probes of one size (the probes registered in `table`), with their exact answers."""
    rng = np.random.default_rng(seed)
    vectors = unit_vectors(rng, count)
    agent_of = rng.choice(agents, size=count, p=zipf_weights(agents))
    items = [Item(id=str(uuid.UUID(int=int(rng.integers(2**62)) << 64 | n)), text=sentence(rng, f"r{n}"),
                  user_id=f"u-{n % users:03d}", agent_id=f"a-{agent_of[n]:03d}", bucket=n % 10, vector=vectors[n])
             for n in range(count)]
    probe_vectors = unit_vectors(rng, queries)
    probes = [Query(text=f"probe {seed % 1000:03d}-{n:06d}", vector=probe_vectors[n],
                    user_id=f"u-{rng.integers(users):03d}", agent_id=f"a-{rng.integers(agents):03d}")
              for n in range(queries)]
    table.put([q.text for q in probes], probe_vectors)
    data = Dataset(items=items, vectors=vectors, queries=probes, users=users, agents=agents)
    user_rows = _rows([item.user_id for item in items])
    agent_rows = _rows([item.agent_id for item in items])
    ids = np.array([item.id for item in items])
    for probe in probes:
        data.truth_user.append(_exact(vectors, ids, user_rows.get(probe.user_id), probe.vector))
        data.truth_agent.append(_exact(vectors, ids, agent_rows.get(probe.agent_id), probe.vector))
    return data


def _rows(keys: list[str]) -> dict[str, np.ndarray]:
    rows: dict[str, list[int]] = {}
    for n, key in enumerate(keys):
        rows.setdefault(key, []).append(n)
    return {key: np.array(value) for key, value in rows.items()}


def _exact(vectors: np.ndarray, ids: np.ndarray, rows: np.ndarray | None, query: np.ndarray) -> list[str]:
    """The ids of the `LIMIT` rows most similar to `query` (exact, float64)."""
    if rows is None or len(rows) == 0:
        return []
    sims = vectors[rows].astype(np.float64) @ query.astype(np.float64)
    order = np.argsort(-sims, kind="stable")[:LIMIT]
    return [str(x) for x in ids[rows[order]]]


def recall(found: Sequence[str], truth: Sequence[str]) -> float:
    """|found ∩ truth| / |truth| (1.0 when the scope is empty and nothing was found)."""
    if not truth:
        return 1.0
    return len(set(found[:LIMIT]) & set(truth)) / len(truth)


def new_items(rng: np.random.Generator, count: int, tag: str, users: int, table: TableEmbedder) -> list[Item]:
    """Fresh records for the add scenarios, in their own users (``w-TAG-N``), registered in `table`."""
    vectors = unit_vectors(rng, count)
    items = [Item(id=str(uuid.uuid4()), text=sentence(rng, f"{tag}-{n}"), user_id=f"w-{tag}-{n % users}",
                  agent_id="a-add", bucket=n % 10, vector=vectors[n]) for n in range(count)]
    table.put([item.text for item in items], vectors)
    return items
