"""The ``memdock export``, ``memdock import`` and ``memdock migrate`` commands (`memdock.migration`).

Building them only adds argparse options; each handler imports the migration engine when it runs. Progress
goes to stderr (a `rich` bar on a terminal, plain lines otherwise, nothing with ``--quiet``); the summary
goes to stdout. A verification that finds a difference exits 1 after printing the differences.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from memdock.cli_args import json_arg, scope_args, scope_of

if TYPE_CHECKING:
    from memdock.memory import Memory
    from memdock.migration import Summary

AddCommand = Callable[..., argparse.ArgumentParser]


def add_commands(command: AddCommand) -> None:
    """Add the three commands through the CLI's ``command(name, handler, help)``."""
    sub = command("export", _export, "write memories to an archive file (JSON Lines; gzip for .gz)")
    sub.add_argument("source", nargs="?", metavar="URL", help="backend URL (default: --url / $MEMDOCK_URL)")
    sub.add_argument("-o", "--output", required=True, metavar="FILE", help="archive to write (.jsonl or .jsonl.gz)")
    scope_args(sub)
    sub.add_argument("--filter", type=json_arg("filter"), help="mem0-style JSON filter")
    sub.add_argument("--with-vectors", action="store_true", help="include each record's vector")
    sub.add_argument("--with-history", action="store_true", help="include each record's history events")
    _common(sub)

    sub = command("import", _import, "store the memories of an archive file in a backend")
    sub.add_argument("file", metavar="FILE")
    sub.add_argument("destination", nargs="?", metavar="URL", help="backend URL (default: --url / $MEMDOCK_URL)")
    sub.add_argument("--on-conflict", choices=("skip", "replace", "fail"), default="skip",
                     help="when a record (its id, or its text in its scope) is already stored (default skip)")
    sub.add_argument("--skip-bad-lines", action="store_true",
                     help="leave out invalid lines (listed at the end) instead of importing nothing")
    sub.add_argument("--re-embed", action="store_true", help="ignore the archive's vectors")
    sub.add_argument("--id-map", type=Path, metavar="FILE", help="where to write archive id -> stored id pairs")
    _common(sub)

    sub = command("migrate", _migrate, "copy memories from one backend to another, resumably, and verify them")
    sub.add_argument("source", metavar="SRC_URL")
    sub.add_argument("destination", metavar="DST_URL")
    scope_args(sub)
    sub.add_argument("--filter", type=json_arg("filter"), help="mem0-style JSON filter")
    sub.add_argument("--re-embed", action="store_true", help="recompute vectors even when the embedders match")
    sub.add_argument("--dry-run", action="store_true", help="read the source and report; write nothing")
    sub.add_argument("--no-history", action="store_true", help="do not carry history events")
    sub.add_argument("--verify", choices=("full", "sample", "none"), default="full",
                     help="check every record (default), a sample of about 1000, or nothing")
    sub.add_argument("--checkpoint", type=Path, metavar="FILE",
                     help="resume state (default: .memdock-migrate-<digest>.sqlite in the current folder)")
    sub.add_argument("--id-map", type=Path, metavar="FILE", help="where to write source id -> destination id pairs")
    _common(sub)


def _common(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--batch", type=int, default=500, metavar="N", help="records per batch (1-1000, default 500)")
    sub.add_argument("-q", "--quiet", action="store_true", help="no progress output")


def _open(url: str | None) -> Memory:
    """The store at `url`, in a process whose malloc arenas are capped first (`memdock.malloc_arenas`: the
    streaming commands stay in bounded memory with Chroma's threads writing)."""
    from memdock.malloc_arenas import limit_arenas
    from memdock.memory import Memory

    limit_arenas()
    return Memory.open(url)


def _print(summary: Summary) -> int:
    for line in summary.lines():
        print(line)
    return 0 if summary.ok else 1


def _export(args: argparse.Namespace) -> int:
    from memdock.backend import redact
    from memdock.migration import export_archive
    from memdock.progress import reporter_for
    from memdock.urls import default_url

    url = args.source or args.url
    with _open(url) as memory:
        summary = export_archive(memory, Path(args.output), scope=scope_of(args), filter=args.filter,
                                 with_vectors=args.with_vectors, with_history=args.with_history,
                                 source=redact(url or default_url()), batch=args.batch,
                                 progress=reporter_for(quiet=args.quiet))
    print(f"wrote {args.output}")
    return _print(summary)


def _import(args: argparse.Namespace) -> int:
    from memdock.migration import import_archive
    from memdock.progress import reporter_for

    with _open(args.destination or args.url) as memory:
        summary = import_archive(Path(args.file), memory, on_conflict=args.on_conflict,
                                 skip_bad_lines=args.skip_bad_lines, re_embed=args.re_embed, batch=args.batch,
                                 id_map=args.id_map, progress=reporter_for(quiet=args.quiet))
    return _print(summary)


def _migrate(args: argparse.Namespace) -> int:
    from memdock.backend import redact
    from memdock.migration import migrate
    from memdock.progress import reporter_for

    scope = scope_of(args)
    identity = {"source": redact(args.source), "destination": redact(args.destination),
                "scope": json.dumps(scope.ids(), sort_keys=True),
                "filter": json.dumps(args.filter, sort_keys=True)}
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    checkpoint = args.checkpoint or Path(f".memdock-migrate-{digest}.sqlite")
    with _open(args.source) as source, _open(args.destination) as destination:
        summary = migrate(source, destination, scope=scope, filter=args.filter, batch=args.batch,
                          re_embed=args.re_embed, dry_run=args.dry_run, history=False if args.no_history else None,
                          checkpoint=checkpoint, id_map=args.id_map, verify=args.verify, identity=identity,
                          progress=reporter_for(quiet=args.quiet))
    if not args.dry_run:
        print(f"checkpoint: {checkpoint} (a re-run resumes from it; delete it to start afresh)")
    return _print(summary)
