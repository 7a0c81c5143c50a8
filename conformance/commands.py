"""``memdock conformance URL [--json] [--group G] [--seed N] [--thorough]``: run the kit against a backend URL
and print the report.

A plugin module (entry point ``conformance`` in the ``memdock`` group). Registering the command only
builds its options; the kit (and Hypothesis, for its property checks) is imported when the command runs.
"""

from __future__ import annotations

import argparse

from memdock.extras import require_extra
from memdock.hookspecs import AddCommand, hookimpl


@hookimpl
def register_commands(add_command: AddCommand) -> None:
    """Add ``conformance``."""
    sub = add_command("conformance", _conformance, "run the conformance kit against a backend URL")
    sub.add_argument("target_url", metavar="URL")
    sub.add_argument("--json", action="store_true")
    sub.add_argument("--group", action="append", help="only this group (repeatable)")
    sub.add_argument("--seed", type=int, default=None,
                     help="seed of the randomised checks (default 15; a failure prints the seed to replay)")
    sub.add_argument("--thorough", action="store_true",
                     help="many more random sequences in the stateful check (slower)")


def _conformance(args: argparse.Namespace) -> int:
    """Print the report for the URL; exit status 0 only when no check FAILs."""
    require_extra("conformance", "memdock conformance", "hypothesis")
    from memdock.conformance.report import as_json, as_table
    from memdock.conformance.runner import run

    report = run(args.target_url, args.group, seed=args.seed, thorough=args.thorough)
    print(as_json(report) if args.json else as_table(report))
    return 1 if report.failed else 0
