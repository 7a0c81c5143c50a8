"""Optional dependencies: which extra of the memdock distribution brings a third-party module, and one
error that says so when it is missing (``pip install 'memdock[pgvector]'``, ...)."""

from __future__ import annotations

import importlib

from memdock.errors import Unsupported


def require_extra(extra: str, command: str, *modules: str) -> None:
    """Import `modules` (the third-party ones `command` needs); when one is not installed, raise
    `Unsupported` naming it and ``pip install 'memdock[EXTRA]'``, which the CLI prints as one line."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            missing = exc.name or module
            raise Unsupported(f"{command} needs {missing}, which is not installed: "
                              f"pip install 'memdock[{extra}]'") from None
