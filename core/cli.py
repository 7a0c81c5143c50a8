"""The ``memdock`` command line. Thin: every command is one `Memory` call plus formatting.

The core commands are defined here; plugins in the ``memdock.commands`` entry-point group add theirs
through the ``register_commands`` hook (`memdock.hookspecs`), so building the parser loads those light
modules only, no backend and no driver. Every
command also accepts the global options after its name: ``memdock COMMAND --url URL`` is
``memdock --url URL COMMAND``, and when both are given the one typed last wins.

Errors print one line (``memdock: error: ...``) and exit non-zero: 2 for bad input, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from memdock.cli_args import json_arg, scope_args, scope_of
from memdock.errors import InvalidInput, MemdockError
from memdock.hookspecs import CommandHandler
from memdock.plugins import backend_classes, command_manager, embedder_specs, list_plugins, load_failures
from memdock.portability_commands import add_commands as add_portability_commands

if TYPE_CHECKING:  # imported where a command runs, so that building the parser stays cheap
    from memdock.memory import Memory
    from memdock.models import HistoryEvent, MemoryRecord, SearchHit, WriteResult

Handler = CommandHandler


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except InvalidInput as exc:
        print(f"memdock: error: {exc}", file=sys.stderr)
        return 2
    except MemdockError as exc:
        print(f"memdock: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _add_global_options(parser: argparse.ArgumentParser, *, default: Any) -> None:
    """The options accepted both before and after the command name."""
    parser.add_argument("--url", default=default,
                        help="backend URL (default: $MEMDOCK_URL, else embedded Chroma in $MEMDOCK_HOME)")


class _CommandParser(argparse.ArgumentParser):
    """A command's parser: it accepts the global options too, defaulting to `argparse.SUPPRESS` so a value
    given after the command replaces the global one and an absent one leaves it. The subcommands of a
    command group are parsers of this class as well (argparse's default `parser_class`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _add_global_options(self, default=argparse.SUPPRESS)


def _parser() -> argparse.ArgumentParser:
    """The whole parser: global options, the core commands, then every plugin's commands."""
    parser = argparse.ArgumentParser(prog="memdock", description="A pluggable memory layer for AI agents.")
    _add_global_options(parser, default=None)
    commands = parser.add_subparsers(required=True, metavar="COMMAND", parser_class=_CommandParser)

    def command(name: str, handler: Handler | None, help_text: str) -> argparse.ArgumentParser:
        """Add command `name` and return its parser. `handler` None makes a command group: its parser
        gets subcommands of its own, and the group alone is a usage error."""
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler or _group_without_command(sub))
        return sub

    sub = command("plugins", _plugins, "list installed plugins with versions and hooks")
    sub.add_argument("--json", action="store_true")
    sub = command("backends", _backends, "list backends and embedders, or print a backend's settings schema")
    sub.add_argument("--json", action="store_true")
    sub.add_argument("--schema", metavar="NAME", help="print the JSON schema of this backend's settings")

    sub = command("add", _add, "store a memory")
    sub.add_argument("text")
    scope_args(sub)
    sub.add_argument("--metadata", type=json_arg("metadata"), help="a JSON object")
    sub.add_argument("--json", action="store_true")

    sub = command("search", _search, "find the memories most similar to a query")
    sub.add_argument("query")
    scope_args(sub)
    sub.add_argument("--limit", type=int, default=10)
    sub.add_argument("--threshold", type=float, help="minimum score in [0, 1]")
    sub.add_argument("--filter", type=json_arg("filter"), help='mem0-style JSON, e.g. {"rating": {"gte": 4}}')
    sub.add_argument("--mode", choices=("hybrid", "vector", "keyword"),
                     help="what to rank by (default: hybrid where the backend has keyword search, else vector)")
    sub.add_argument("--json", action="store_true")

    sub = command("list", _list, "list memories in a scope, oldest first")
    scope_args(sub)
    sub.add_argument("--limit", type=int, default=100)
    sub.add_argument("--cursor")
    sub.add_argument("--filter", type=json_arg("filter"))
    sub.add_argument("--json", action="store_true")

    sub = command("count", _count, "count memories in a scope")
    scope_args(sub)
    sub.add_argument("--filter", type=json_arg("filter"))

    sub = command("get", _get, "show one memory")
    sub.add_argument("memory_id")
    sub.add_argument("--json", action="store_true")

    sub = command("update", _update, "change a memory's text and/or metadata")
    sub.add_argument("memory_id")
    sub.add_argument("--text")
    sub.add_argument("--metadata", type=json_arg("metadata"))
    sub.add_argument("--json", action="store_true")

    sub = command("delete", _delete, "delete one memory")
    sub.add_argument("memory_id")

    sub = command("history", _history, "show the ADD/UPDATE/DELETE events of a memory")
    sub.add_argument("memory_id")
    sub.add_argument("--json", action="store_true")

    add_portability_commands(command)  # export, import, migrate (memdock.portability_commands)
    command_manager().hook.register_commands(add_command=command)
    return parser


def _group_without_command(group: argparse.ArgumentParser) -> Handler:
    def refuse(args: argparse.Namespace) -> int:
        group.error("a command is required")  # exits with status 2, like any usage error

    return refuse


def _open(args: argparse.Namespace) -> Memory:
    from memdock.memory import Memory

    return Memory.open(args.url)


def _emit(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2, default=str))


def _record_json(record: MemoryRecord) -> dict[str, Any]:
    return record.model_dump(mode="json", exclude={"vector"})


def _plugins(args: argparse.Namespace) -> int:
    infos = list_plugins()
    failures = load_failures()
    if args.json:
        _emit([{"name": i.name, "version": i.version, "hooks": list(i.hooks)} for i in infos]
              + [{"name": name, "error": error} for name, error in failures.items()])
        return 0
    for info in infos:
        print(f"{info.name:<20} {info.version or '-':<12} {', '.join(info.hooks)}")
    for name, error in failures.items():
        print(f"{name:<20} FAILED       {error}")
    return 0


def _backends(args: argparse.Namespace) -> int:
    specs = {backend_class.name: backend_class for backend_class in backend_classes().values()}
    if args.schema:
        chosen = specs.get(args.schema)
        if chosen is None:
            raise InvalidInput(f"unknown backend {args.schema!r} (installed: {', '.join(sorted(specs))})",
                               field="schema")
        _emit(chosen.Settings.model_json_schema())
        return 0
    rows = [
        {"name": s.name, "schemes": list(s.schemes), "capabilities": sorted(s.capabilities),
         "description": s.description}
        for s in sorted(specs.values(), key=lambda s: s.name)
    ]
    embedders = [{"name": e.name, "description": e.description} for e in embedder_specs().values()]
    if args.json:
        _emit({"backends": rows, "embedders": embedders})
        return 0
    for row in rows:
        schemes = ", ".join(f"{s}://" for s in row["schemes"])
        print(f"{row['name']:<12} {schemes:<28} {row['description']}")
    print("embedders: " + ", ".join(e["name"] for e in embedders))
    return 0


def _add(args: argparse.Namespace) -> int:
    with _open(args) as memory:
        results = memory.add(args.text, metadata=args.metadata, scope=scope_of(args))
    if args.json:
        _emit([_write_json(r) for r in results])
    for result in results if not args.json else []:
        print(f"{result.event.value} {result.record.id}")
    return 0


def _write_json(result: WriteResult) -> dict[str, Any]:
    return {"event": result.event.value, **_record_json(result.record)}


def _search(args: argparse.Namespace) -> int:
    with _open(args) as memory:
        hits = memory.search(args.query, filter=args.filter, limit=args.limit, threshold=args.threshold,
                             scope=scope_of(args), mode=args.mode)
    if args.json:
        _emit([_hit_json(hit) for hit in hits])
        return 0
    for hit in hits:
        print(f"{hit.score:.3f}  {hit.record.id}  {hit.record.text}")
    return 0


def _hit_json(hit: SearchHit) -> dict[str, Any]:
    return {"score": hit.score, **_record_json(hit.record)}


def _list(args: argparse.Namespace) -> int:
    with _open(args) as memory:
        page = memory.list(filter=args.filter, limit=args.limit, cursor=args.cursor, scope=scope_of(args))
    if args.json:
        _emit({"items": [_record_json(r) for r in page.items], "next_cursor": page.next_cursor})
        return 0
    for record in page.items:
        print(f"{record.id}  {record.text}")
    if page.next_cursor:
        print(f"next cursor: {page.next_cursor}")
    return 0


def _count(args: argparse.Namespace) -> int:
    with _open(args) as memory:
        print(memory.count(filter=args.filter, scope=scope_of(args)))
    return 0


def _get(args: argparse.Namespace) -> int:
    with _open(args) as memory:
        record = memory.get(args.memory_id)
    if args.json:
        _emit(_record_json(record))
    else:
        print(f"{record.id}  {record.text}\n{json.dumps(record.metadata, ensure_ascii=False)}")
    return 0


def _update(args: argparse.Namespace) -> int:
    with _open(args) as memory:
        result = memory.update(args.memory_id, text=args.text, metadata=args.metadata)
    if args.json:
        _emit(_write_json(result))
    else:
        print(f"{result.event.value} {result.record.id}")
    return 0


def _delete(args: argparse.Namespace) -> int:
    with _open(args) as memory:
        result = memory.delete(args.memory_id)
    print(f"{result.event.value} {result.record.id}")
    return 0


def _history(args: argparse.Namespace) -> int:
    with _open(args) as memory:
        events = memory.history(args.memory_id)
    if args.json:
        _emit([_event_json(e) for e in events])
        return 0
    for event in events:
        print(f"{event.created_at.isoformat()}  {event.event.value:<6}  {event.old_text!r} -> {event.new_text!r}")
    return 0


def _event_json(event: HistoryEvent) -> dict[str, Any]:
    return event.model_dump(mode="json")


if __name__ == "__main__":
    sys.exit(main())
