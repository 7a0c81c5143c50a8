"""The options and the handler of ``memdock dify package``. Importing this module is cheap (PyYAML and the
packager load when the command runs), so the CLI can register the options of a command it may not run."""

from __future__ import annotations

import argparse

BACKENDS_HELP = (
    "the backends the package must serve, comma-separated: URL schemes (memdock+http, mem0+http, chroma+http, "
    "chroma, pgvector, memory), whole backend URLs (their embedder= counts) or 'all'; its requirements pull only "
    "what these need (default: memdock+http,mem0+http,chroma+http,pgvector,memory, i.e. all but embedded chroma)"
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--backends`` to the ``dify package`` parser (``-o/--output`` is the command's own)."""
    parser.add_argument("--backends", metavar="LIST", help=BACKENDS_HELP)


def run(args: argparse.Namespace) -> int:
    """Build the package at ``args.output`` for ``args.backends`` and print its path, size and what its
    requirements are for. Raises `memdock.errors.InvalidInput` (field ``backends``) for an unknown backend."""
    from pathlib import Path

    from memdock.dify_adapter.packaging.package import build_package
    from memdock.dify_adapter.packaging.requirements import select

    backends = getattr(args, "backends", None)
    selection = select(backends.split(",") if backends is not None else None)
    built = build_package(Path(args.output), selection=selection)
    print(f"{built} ({built.stat().st_size} bytes; {selection.describe()})")
    return 0
