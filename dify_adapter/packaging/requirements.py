"""Which requirements a plugin package installs: memdock's core, the extras of the backends (and embedders)
the package is built for, and the Dify SDK.

The backend URL is a credential entered in Dify after the plugin is installed, so the package is built
for a choice of backends (``memdock dify package --backends ...``). Each item of the choice is a URL
scheme as written in a backend URL (``memdock+http``; ``memdock_http`` and the ``https`` variants say the
same), a whole backend URL (its scheme and its ``embedder=`` parameter count), or ``all``. A backend that
embeds on the client (``memory``, ``chroma``, ``chroma+http``, ``pgvector``) brings the embedder its URL
names, ``minilm`` (onnxruntime and the model) when it names none; ``memdock+http`` and ``mem0+http``
embed on their server and bring none. ``chroma+http`` alone uses Chroma's thin HTTP client
(``chromadb-client``); with ``chroma`` (embedded) the full ``chromadb`` serves both.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import distribution
from urllib.parse import parse_qsl, urlsplit

from memdock.errors import InvalidInput

DIFY_PLUGIN_REQUIREMENT = "dify_plugin==0.10.2"


@dataclass(frozen=True)
class BackendNeeds:
    """What one backend scheme needs inside the plugin: memdock `extras`, and whether it embeds on the
    client (then its embedder's extra too). A test keeps `embeds_locally` equal to the registered class's
    capabilities (no ``SERVER_SIDE_EMBEDDING``)."""

    extras: tuple[str, ...]
    embeds_locally: bool


BACKENDS: dict[str, BackendNeeds] = {
    "memory": BackendNeeds((), True),
    "chroma": BackendNeeds(("chroma",), True),
    "chroma+http": BackendNeeds(("chroma-client",), True),
    "pgvector": BackendNeeds(("pgvector",), True),
    "mem0+http": BackendNeeds(("mem0",), False),
    "memdock+http": BackendNeeds(("http",), False),
}
"""Every backend memdock ships, by its canonical scheme (a test checks every registered scheme is here or
in `ALIASES`)."""

ALIASES = {"postgres": "pgvector", "postgresql": "pgvector", "mem0+https": "mem0+http",
           "memdock+https": "memdock+http"}
"""Schemes that name the same backend as a canonical one."""

EMBEDDERS: dict[str, tuple[str, ...]] = {"minilm": ("embedder",), "openai": ("openai",), "hash": ()}
"""The extras of each embedder memdock ships."""

DEFAULT_EMBEDDER = "minilm"
DEFAULT_BACKENDS = ("memdock+http", "mem0+http", "chroma+http", "pgvector", "memory")
"""What ``memdock dify package`` builds for without ``--backends``: every backend but embedded Chroma
(whose server stack is most of a full package's size), each client-side one with the minilm embedder."""

ALWAYS = ("dify",)
"""Extras every package installs: ``dify`` (PyYAML, for the packaging modules the package carries)."""

_SPEC_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")


@dataclass(frozen=True)
class Selection:
    """The backends (canonical schemes) and embedders a package is built for."""

    backends: tuple[str, ...]
    embedders: tuple[str, ...]

    def extras(self) -> tuple[str, ...]:
        """memdock's extras for the selection, in a stable order, each once."""
        chosen: list[str] = []
        for scheme in self.backends:
            chosen += BACKENDS[scheme].extras
        if "chroma" in chosen:  # the full chromadb has the HTTP client too; the two must never meet
            chosen = [extra for extra in chosen if extra != "chroma-client"]
        for embedder in self.embedders:
            chosen += EMBEDDERS[embedder]
        return tuple(dict.fromkeys([*chosen, *ALWAYS]))

    def describe(self) -> str:
        """One line for the top of ``requirements.txt``."""
        return (f"backends: {', '.join(self.backends)}; embedders on the client: "
                f"{', '.join(self.embedders) or 'none'}; memdock extras: {', '.join(self.extras())}")


def _canonical(scheme: str) -> str:
    name = scheme.strip().lower().replace("_", "+")
    name = ALIASES.get(name, name)
    if name not in BACKENDS:
        raise InvalidInput(f"unknown backend {scheme.strip()!r} (known: all, {', '.join(BACKENDS)})",
                           field="backends")
    return name


def select(items: Iterable[str] | None = None) -> Selection:
    """The `Selection` for `items` (schemes, URLs or ``all``; default `DEFAULT_BACKENDS`). `InvalidInput`
    (field ``backends``, or ``embedder``) for an unknown scheme or embedder, or an empty choice."""
    wanted = [item.strip() for item in (DEFAULT_BACKENDS if items is None else items) if item.strip()]
    if not wanted:
        raise InvalidInput("names no backend (e.g. memdock+http,pgvector, or all)", field="backends")
    backends: list[str] = []
    embedders: list[str] = []
    for item in wanted:
        if item.lower() == "all":
            schemes = list(BACKENDS)
            url_embedder = None
        elif "://" in item:
            parts = urlsplit(item)
            schemes = [_canonical(parts.scheme)]
            url_embedder = dict(parse_qsl(parts.query)).get("embedder")
        else:
            schemes = [_canonical(item)]
            url_embedder = None
        for scheme in schemes:
            backends.append(scheme)
            if BACKENDS[scheme].embeds_locally:
                embedder = (url_embedder or DEFAULT_EMBEDDER).lower()
                if embedder not in EMBEDDERS:
                    raise InvalidInput(f"unknown embedder {embedder!r} for {scheme} (known: {', '.join(EMBEDDERS)})",
                                       field="embedder")
                embedders.append(embedder)
    return Selection(tuple(dict.fromkeys(backends)), tuple(dict.fromkeys(embedders)))


def requirement_specs(extras: Sequence[str], requires: Sequence[str] | None = None) -> list[str]:
    """memdock's runtime requirements and those of `extras` (markers dropped; ``memdock[x,y]`` entries,
    extras made of extras, followed), each once, in metadata order. `requires` defaults to the installed
    memdock's metadata."""
    lines = list(distribution("memdock").requires or []) if requires is None else list(requires)
    by_extra: dict[str | None, list[str]] = {}
    for line in lines:
        spec, _, marker = (part.strip() for part in line.partition(";"))
        found = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        by_extra.setdefault(found.group(1) if found else None, []).append(spec)
    wanted: list[str] = []
    seen: set[str] = set()

    def take(extra: str | None) -> None:
        if extra in seen:
            return
        if extra is not None:
            seen.add(extra)
            if extra not in by_extra:
                raise LookupError(f"memdock has no extra {extra!r}")
        for spec in by_extra.get(extra, []):
            match = _SPEC_NAME.match(spec)
            if match and match.group(1).lower() == "memdock":
                for inner in (match.group(2) or "").split(","):
                    if inner.strip():
                        take(inner.strip())
            else:
                wanted.append(spec)

    take(None)
    for extra in extras:
        take(extra)
    return list(dict.fromkeys(wanted))


def requirements_txt(selection: Selection) -> str:
    """The package's ``requirements.txt``: a comment naming the selection, then one requirement a line."""
    specs = [*requirement_specs(selection.extras()), DIFY_PLUGIN_REQUIREMENT]
    return "\n".join([f"# {selection.describe()}", *specs]) + "\n"
