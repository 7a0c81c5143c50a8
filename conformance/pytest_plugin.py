"""pytest front end of the conformance kit (registered through the ``pytest11`` entry point).

``pytest --pyargs memdock.conformance --memdock-url URL [--memdock-seed N] [--memdock-thorough]`` runs
every check against URL; without the option the reference backend ``memory://`` is used. Third parties
can instead subclass `memdock.conformance.suite.ConformanceSuite` in their own test file.
"""

from __future__ import annotations

import pytest

DEFAULT_URL = "memory://"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Add ``--memdock-url``."""
    group = parser.getgroup("memdock", "memdock conformance kit")
    group.addoption("--memdock-url", default=None, help=f"backend URL to check (default: {DEFAULT_URL})")
    group.addoption("--memdock-seed", type=int, default=None,
                    help="seed of the kit's randomised checks (default 15; a failure prints it)")
    group.addoption("--memdock-thorough", action="store_true", default=False,
                    help="many more random sequences in the stateful check")


@pytest.fixture
def memdock_url(request: pytest.FixtureRequest) -> str:
    """The backend URL under test: ``--memdock-url`` or the reference backend."""
    url = request.config.getoption("--memdock-url")
    return str(url) if url else DEFAULT_URL
