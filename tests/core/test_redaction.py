"""One redaction rule for every URL memdock prints: the netloc password and the value of every secret
query parameter (the common names, plus each backend's declared `secret_param`) become ``***``; a URL
without secrets comes back to the letter."""

from __future__ import annotations

import pytest

from memdock.backend import BackendURL, redact
from memdock.backends.mem0.backend import Mem0Backend
from memdock.backends.pgvector.backend import PgvectorBackend
from memdock.plugins import backend_classes


@pytest.mark.parametrize("url", ["memory://", "memory://shared", "chroma:///var/lib/memdock?collection=a",
                                 "chroma+http://127.0.0.1:8000", "pgvector://u@h:5432/db?table=t"])
def test_a_url_without_secrets_is_unchanged(url: str) -> None:
    assert redact(url) == url


@pytest.mark.parametrize(("url", "expected"), [
    ("pgvector://u:pw@h/db?table=t", "pgvector://u:***@h/db?table=t"),
    ("pgvector://u@h/db?password=pw&table=t", "pgvector://u@h/db?password=***&table=t"),
    ("mem0+http://h:1/base?api_key=k&dialect=server", "mem0+http://h:1/base?api_key=***&dialect=server"),
    ("chroma+http://h:1?token=t", "chroma+http://h:1?token=***"),
])
def test_passwords_and_secret_parameters_are_hidden(url: str, expected: str) -> None:
    assert redact(url) == expected
    assert BackendURL.parse(url).redacted() == expected


def test_every_declared_secret_parameter_is_redacted() -> None:
    declared = {cls.secret_param for cls in backend_classes().values() if cls.secret_param}
    assert {PgvectorBackend.secret_param, Mem0Backend.secret_param} <= declared
    for name in declared:
        assert redact(f"x://h?{name}=hunter2-secret") == f"x://h?{name}=***"
