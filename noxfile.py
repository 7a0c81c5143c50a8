"""Every developer task. `nox -s tests` is the whole test suite (README's second command)."""

from __future__ import annotations

import os

import nox

nox.options.sessions = ["tests", "lint", "typecheck"]
nox.options.reuse_existing_virtualenvs = False
PYTHON = "3.12"


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The whole test suite against real servers the tests start and stop (`chroma run`, PostgreSQL with
    pgvector, `memdock serve`). The Dify plugin's tests run in a second pytest process: `import dify_plugin`
    patches the whole process with gevent. The first process spreads its tests over up to 4 workers
    (pytest-xdist; each worker starts its own servers); ``nox -s tests -- -n 0`` runs them in one."""
    session.install(".[test]")
    workers = str(min(4, os.cpu_count() or 1))
    session.run("pytest", "-n", workers, "--dist", "worksteal", *session.posargs)
    session.run("pytest", "tests/dify_adapter/plugin_sdk", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff over the whole tree."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on the package (core, backends, adapter, conformance)."""
    session.install(".[all]", "mypy>=1.11", "pytest>=8", "types-PyYAML")
    session.run("mypy", "--strict", "-p", "memdock")


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The side-by-side benchmark (not a test): memdock against the raw engines (chromadb, hand-written
    psycopg SQL, numpy) and against mem0ai's `Memory(infer=False)` on the same data, in one process,
    interleaved. Writes benchmarks/results/NAME.json and the plots in docs/img/; docs/benchmarks.md quotes
    them. ``nox -s bench -- --quick`` is the CI smoke; ``-- --records 1000,10000,100000`` the large run.
    The peer is pinned: mem0ai 2.2.1, the newest on PyPI when the harness was written."""
    session.install(".[test]", "mem0ai==2.2.1", "matplotlib>=3.8")
    session.run("python", "benchmarks/bench_backends.py", *session.posargs)


@nox.session(python=PYTHON)
def quality(session: nox.Session) -> None:
    """Retrieval quality on the project's set (benchmarks/quality/): recall@1/5/10 and MRR of vector, keyword
    and fused rankings per backend URL (``nox -s quality -- --url memory:// --url chroma:///tmp/q``),
    written to benchmarks/results/quality-NAME.json. Installs every backend's driver and the default
    embedder (the ``embedder`` extra, through ``local``)."""
    session.install(".[local,pgvector,mem0,http]")
    session.run("python", "benchmarks/quality/run.py", *session.posargs)


@nox.session(python=PYTHON)
def soak(session: nox.Session) -> None:
    """The long variants of the hardening suites: hostile input, the isolation property, the load test, the
    fault suite (tests/e2e/) and the OpenAPI property run, with ``MEMDOCK_SOAK=1``, which scales their
    examples and durations up about tenfold; the same tests run short in ``nox -s tests``. Extra arguments
    go to pytest (e.g. one file)."""
    session.install(".[test]")
    paths = session.posargs or ["tests/e2e/test_hostile_input.py", "tests/e2e/test_isolation_property.py",
                                "tests/e2e/test_load.py", "tests/e2e/test_faults.py",
                                "tests/dify_adapter/test_server_openapi_properties.py"]
    session.run("pytest", "-q", *paths, env={"MEMDOCK_SOAK": "1"})
