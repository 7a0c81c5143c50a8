"""The Dify plugin's tests run in a pytest process of their own: `import dify_plugin` patches the whole
process with gevent. They reuse the server fixtures and helpers of ../tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from server_fixtures import chroma_http_url, pg_url

__all__ = ["chroma_http_url", "pg_url"]
