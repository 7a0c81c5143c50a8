"""Shared fixtures: a real Chroma server and a real PostgreSQL with pgvector for the whole session."""

from server_fixtures import chroma_http_url, pg_url

__all__ = ["chroma_http_url", "pg_url"]
