"""memdock's archive format: JSON Lines, gzip-compressed when the file name ends in ``.gz``.

Line 1 is the header, every further line one record::

    {"format": "memdock-archive", "version": 1, "source": "pgvector://me:***@db/memories",
     "embedder": {"name": "minilm", "dimension": 384, "identity": "minilm:..."} | null,
     "created_at": "2026-...", "counts": {"records": 2, "scopes": 1, "vectors": 0, "history_events": 0}}
    {"id": "...", "text": "...", "scope": {"user_id": "u1"}, "metadata": {}, "hash": "...",
     "created_at": "...", "updated_at": "...", "expires_at": null,
     "vector": [0.1, ...] (optional), "history": [{event}, ...] (optional)}

`ArchiveWriter` streams records to a part file next to the target and, on `close`, writes the header with
the final counts followed by the records, then renames it into place (a crash leaves no half archive).
`read_header` and `read_records` stream an archive back; every bad line raises (or, when skipping,
yields) a `BadArchiveLine` naming the line number and the field. docs/portability.md holds the JSON schema.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from memdock.errors import InvalidInput
from memdock.models import HistoryEvent, MemoryRecord, Scope, utcnow

FORMAT: Literal["memdock-archive"] = "memdock-archive"
VERSION: Literal[1] = 1


class EmbedderInfo(BaseModel):
    """The vector space the archive's vectors (if any) live in."""

    model_config = ConfigDict(extra="forbid")

    name: str
    dimension: int = Field(ge=1)
    identity: str


class ArchiveCounts(BaseModel):
    """How many records, distinct exact scopes, vectors and history events the archive holds."""

    model_config = ConfigDict(extra="forbid")

    records: int = Field(ge=0)
    scopes: int = Field(ge=0)
    vectors: int = Field(ge=0)
    history_events: int = Field(ge=0)


class ArchiveHeader(BaseModel):
    """Line 1 of an archive."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["memdock-archive"]
    version: Literal[1]
    source: str
    embedder: EmbedderInfo | None
    created_at: datetime
    counts: ArchiveCounts


class ArchiveRecord(BaseModel):
    """One record line: a `MemoryRecord` with optional vector and history events."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(min_length=1)
    text: str
    scope: Scope
    metadata: dict[str, Any] = Field(default_factory=dict)
    hash: str
    created_at: datetime
    updated_at: datetime
    expires_at: datetime | None = None
    vector: list[float] | None = None
    history: list[HistoryEvent] | None = None

    def record(self) -> MemoryRecord:
        """The `MemoryRecord` this line describes (with its vector, if any)."""
        return MemoryRecord.model_validate(self.model_dump(exclude={"history"}))

    @classmethod
    def of(cls, record: MemoryRecord, history: list[HistoryEvent] | None = None) -> ArchiveRecord:
        """The line for `record` (its vector included when set)."""
        return cls.model_validate({**record.model_dump(), "history": history})


class BadArchiveLine(InvalidInput):
    """A line of an archive that is not valid JSON or not a valid header or record. `line` is its 1-based
    number; `field` the offending field (dotted) when one is to blame."""

    def __init__(self, path: Path, line: int, message: str, *, field: str | None = None) -> None:
        where = f"{path.name}: line {line}" + (f": {field}" if field else "")
        InvalidInput.__init__(self, message)
        self.args = (f"{where}: {message}",)
        self.line = line
        self.field = field
        self.path = path


def _open_text(path: Path, mode: Literal["rt", "wt"], *, gz: bool | None = None) -> IO[str]:
    if path.name.endswith(".gz") if gz is None else gz:
        return gzip.open(path, mode, encoding="utf-8", newline="\n")
    return open(path, mode, encoding="utf-8", newline="\n")


def _problem(exc: ValidationError) -> tuple[str, str | None]:
    first = exc.errors()[0]
    field = ".".join(str(p) for p in first["loc"]) or None
    message = "unknown field" if first["type"] == "extra_forbidden" else first["msg"]
    return message, field


def _parse(path: Path, number: int, raw: str, model: type[BaseModel]) -> Any:
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise BadArchiveLine(path, number, f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(data, dict):
        raise BadArchiveLine(path, number, f"must be a JSON object, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message, field = _problem(exc)
        raise BadArchiveLine(path, number, message, field=field) from None


def read_header(path: Path) -> ArchiveHeader:
    """The archive's header; `BadArchiveLine` (line 1) when it is missing or invalid, `InvalidInput`
    (field ``file``) when the file cannot be read."""
    try:
        with _open_text(path, "rt") as handle:
            first = handle.readline()
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}", field="file") from None
    if not first.strip():
        raise BadArchiveLine(path, 1, "the header line is missing (empty file)")
    header: ArchiveHeader = _parse(path, 1, first, ArchiveHeader)
    return header


@dataclass(frozen=True)
class Line:
    """One record line as read: its number and either the record or what is wrong with it."""

    number: int
    record: ArchiveRecord | None
    error: BadArchiveLine | None


def read_lines(path: Path) -> Iterator[Line]:
    """Every record line after the header, in order, each parsed or with its error (blank lines are
    skipped). Streams: one line in memory at a time."""
    read_header(path)
    try:
        with _open_text(path, "rt") as handle:
            handle.readline()
            for number, raw in enumerate(handle, start=2):
                if not raw.strip():
                    continue
                try:
                    yield Line(number, _parse(path, number, raw, ArchiveRecord), None)
                except BadArchiveLine as bad:
                    yield Line(number, None, bad)
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read {path}: {exc}", field="file") from None


class ArchiveWriter:
    """Writes an archive in bounded memory (see the module docstring). Use as a context manager: on a
    clean exit the archive is finished and moved into place, on an exception the part file is removed."""

    def __init__(self, path: Path, *, source: str, embedder: EmbedderInfo | None) -> None:
        self.path = path
        self._part = path.with_name(path.name + ".part")
        self._source = source
        self._embedder = embedder
        self._records = 0
        self._vectors = 0
        self._events = 0
        self._scopes: set[str] = set()
        self._handle: IO[str] = open(self._part, "w", encoding="utf-8", newline="\n")  # noqa: SIM115

    def write(self, line: ArchiveRecord) -> None:
        """Append one record."""
        self._handle.write(line.model_dump_json(exclude_none=False) + "\n")
        self._records += 1
        self._vectors += line.vector is not None
        self._events += len(line.history or [])
        self._scopes.add(json.dumps(line.scope.ids(), sort_keys=True))

    def header(self) -> ArchiveHeader:
        """The header as it stands (counts so far)."""
        return ArchiveHeader(
            format=FORMAT, version=VERSION, source=self._source, embedder=self._embedder, created_at=utcnow(),
            counts=ArchiveCounts(records=self._records, scopes=len(self._scopes), vectors=self._vectors,
                                 history_events=self._events),
        )

    def close(self) -> ArchiveHeader:
        """Write header + records to the target (gzip for ``.gz``) and return the header."""
        self._handle.close()
        header = self.header()
        final = self.path.with_name(self.path.name + ".tmp")
        try:
            gz = self.path.name.endswith(".gz")
            with _open_text(final, "wt", gz=gz) as out, open(self._part, encoding="utf-8", newline="\n") as records:
                out.write(header.model_dump_json() + "\n")
                shutil.copyfileobj(records, out, 1 << 20)
            os.replace(final, self.path)
        finally:
            final.unlink(missing_ok=True)
            self._part.unlink(missing_ok=True)
        return header

    def abort(self) -> None:
        """Drop what was written."""
        self._handle.close()
        self._part.unlink(missing_ok=True)

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, kind: object, *rest: object) -> None:
        if kind is None:
            self.close()
        else:
            self.abort()


def archive_json_schema() -> dict[str, Any]:
    """JSON schemas of the header line and of a record line (docs/portability.md prints them)."""
    return {"header": ArchiveHeader.model_json_schema(), "record": ArchiveRecord.model_json_schema()}
