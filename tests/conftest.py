"""Shared fixtures (a real Chroma server and a real PostgreSQL with pgvector for the whole session), and
the rule that keeps the Dify SDK's tests out of every pytest process that was not started for them alone
(`import dify_plugin` patches the whole process with gevent)."""

from pathlib import Path

import pytest

from tests.helpers.server_fixtures import chroma_http_url, pg_url

__all__ = ["chroma_http_url", "pg_url"]

PLUGIN_SDK_TESTS = Path(__file__).resolve().parent / "dify_adapter" / "plugin_sdk"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Skip collecting the plugin SDK folder unless every path on the command line lies inside it."""
    if collection_path.resolve() != PLUGIN_SDK_TESTS:
        return None
    named = [Path(arg.split("::")[0]).resolve() for arg in config.args]
    return not (named and all(path.is_relative_to(PLUGIN_SDK_TESTS) for path in named))
