"""Argument helpers every ``memdock`` command module shares: the four scope-id options, JSON-valued
options, and the `Scope` they name. Cheap to import (argparse and json only; the core loads on use)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memdock.models import Scope


def scope_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--user-id``, ``--agent-id``, ``--run-id`` and ``--app-id``."""
    for name in ("user-id", "agent-id", "run-id", "app-id"):
        parser.add_argument(f"--{name}")


def json_arg(field: str) -> Callable[[str], Any]:
    """An argparse ``type`` that parses JSON, naming `field` when the text is not JSON."""

    def parse(raw: str) -> Any:
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"{field} is not valid JSON: {exc.msg}") from None
        except RecursionError:
            raise argparse.ArgumentTypeError(f"{field} nests too deeply") from None
        except ValueError as exc:  # e.g. an integer of more digits than Python converts
            raise argparse.ArgumentTypeError(f"{field} is not usable JSON: {str(exc)[:80]}") from None

    return parse


def scope_of(args: argparse.Namespace) -> Scope:
    """The (possibly empty) scope the `scope_args` options name; `InvalidInput` names a bad id."""
    from memdock.validation import make_scope

    ids = {"user_id": args.user_id, "agent_id": args.agent_id, "run_id": args.run_id, "app_id": args.app_id}
    return make_scope(None, ids, required=False)
