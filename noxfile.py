"""Every developer task. `nox -s tests` is the whole test suite (README's second command)."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = False
PYTHON = "3.12"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite against real Chroma (embedded and a `chroma run` server the tests start)."""
    session.install(".[test]")
    session.run("pytest", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over the whole tree."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package (core, backends, adapter, conformance)."""
    session.install(".", "mypy>=1.11", "pytest>=8")
    session.run("mypy", "--strict", "-p", "memdock")
