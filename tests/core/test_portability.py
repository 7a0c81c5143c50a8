"""The archive format, ``memdock export`` / ``import`` / ``migrate`` (run in-process through
`memdock.cli.main`, on named memory:// stores, which live as long as the process) and the migration
engine's guarantees: faithful, idempotent, verified, bad lines named, progress reported."""

from __future__ import annotations

import gzip
import json
import os
import pty
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from memdock.archive import BadArchiveLine, read_header, read_lines
from memdock.cli import main
from memdock.errors import InvalidInput, Unsupported
from memdock.memory import Memory
from memdock.migration import export_archive, import_archive, migrate
from memdock.models import Scope, utcnow
from memdock.progress import LineReporter, RichReporter, reporter_for
from tests.helpers.mem0_server_standin import mem0_server_standin
from tests.helpers.memdock_server import memdock_app_server


def store() -> str:
    return f"memory://p-{uuid.uuid4().hex[:10]}?embedder=hash"


def filled(url: str, count: int = 12) -> Memory:
    memory = Memory.open(url)
    for i in range(count):
        memory.add(f"note {i}", user_id="alice" if i % 2 else "bob", metadata={"i": i, "tags": ["a", {"b": i}]})
    first = memory.list(user_id="alice", limit=1).items[0]
    memory.update(first.id, text="note one, edited")
    memory.add("short-lived", user_id="carol", expires_at=utcnow() + timedelta(days=3))
    return memory


def records_of(memory: Memory) -> list[dict[str, object]]:
    return sorted((r.model_dump(exclude={"vector"}) for p in memory.pages() for r in p.items),
                  key=lambda r: str(r["id"]))


# -- export and import -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["memories.jsonl", "memories.jsonl.gz"])
def test_export_then_import_keeps_everything(tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]) -> None:
    source_url, destination_url = store(), store()
    source = filled(source_url)
    archive = tmp_path / name
    assert main(["export", source_url, "-o", str(archive), "--with-vectors", "--with-history", "-q"]) == 0
    if name.endswith(".gz"):
        with gzip.open(archive) as unpacked:
            assert unpacked.read(1) == b"{"
    header = read_header(archive)
    assert (header.format, header.version, header.source) == ("memdock-archive", 1, source_url)
    assert header.embedder is not None and (header.embedder.name, header.embedder.dimension) == ("hash", 64)
    assert (header.counts.records, header.counts.scopes, header.counts.vectors) == (13, 3, 13)
    assert header.counts.history_events == 14  # 13 ADD + 1 UPDATE
    assert main(["import", str(archive), destination_url, "-q"]) == 0
    out = capsys.readouterr().out
    assert "import: read 13, added 13, already there 0" in out and "vectors: reused" in out
    destination = Memory.open(destination_url)
    assert records_of(destination) == records_of(source)  # ids, text, scope, metadata, hash, all three times
    edited = next(r for r in destination.pages(scope=Scope(user_id="alice")).__next__().items
                  if r.text == "note one, edited")
    assert [e.event for e in destination.history(edited.id)] == ["ADD", "UPDATE"]
    assert destination.history(edited.id) == source.history(edited.id)
    assert main(["import", str(archive), destination_url, "-q"]) == 0  # idempotent
    assert "added 0, already there 13" in capsys.readouterr().out
    assert destination.count(user_id="alice") == 6


def test_export_redacts_the_source_and_global_options_work_after_the_command(tmp_path: Path) -> None:
    key = "s3cret-key-" + uuid.uuid4().hex
    with memdock_app_server(store(), "--api-key", key) as base:
        url = f"memdock+http://{base.removeprefix('http://')}?api_key={key}"
        with Memory.open(url) as memory:
            memory.add("served fact", user_id="u")
        archive = tmp_path / "a.jsonl"
        assert main(["export", "-o", str(archive), "--user-id", "u", "-q", "--url", url]) == 0
    text = archive.read_text()
    assert key not in text
    assert read_header(archive).source.endswith("api_key=***")
    destination = store()
    assert main(["import", str(archive), "-q", "--url", destination]) == 0
    assert [r.text for r in Memory.open(destination).export(user_id="u")] == ["served fact"]


def write_archive(path: Path, lines: list[str]) -> None:
    header = {"format": "memdock-archive", "version": 1, "source": "memory://", "embedder": None,
              "created_at": "2026-01-01T00:00:00Z",
              "counts": {"records": len(lines), "scopes": 1, "vectors": 0, "history_events": 0}}
    path.write_text("\n".join([json.dumps(header), *lines]) + "\n")


def good(n: int) -> str:
    return json.dumps({"id": f"id-{n}", "text": f"text {n}", "scope": {"user_id": "u"}, "metadata": {"n": n},
                       "hash": "x", "created_at": "2026-01-02T03:04:05Z", "updated_at": "2026-01-02T03:04:05Z"})


def test_a_bad_line_is_named_and_nothing_is_imported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "bad.jsonl"
    bad_scope = json.loads(good(3)) | {"scope": {"user_id": 5}}
    write_archive(archive, [good(1), good(2), json.dumps(bad_scope), "{not json", good(5)])
    destination = store()
    assert main(["import", str(archive), destination, "-q"]) == 2
    err = capsys.readouterr().err
    assert "bad.jsonl: line 4: scope.user_id: " in err  # line 1 is the header
    assert Memory.open(destination).count(user_id="u") == 0

    assert main(["import", str(archive), destination, "-q", "--skip-bad-lines"]) == 0
    out = capsys.readouterr().out
    assert "skipped 2 bad lines:" in out and "line 4: scope.user_id" in out and "line 5: not valid JSON" in out
    memory = Memory.open(destination)
    assert sorted(r.id for r in memory.export(user_id="u")) == ["id-1", "id-2", "id-5"]
    assert memory.get("id-1").created_at.isoformat() == "2026-01-02T03:04:05+00:00"


def test_bad_headers_and_invalid_content_are_named(tmp_path: Path) -> None:
    archive = tmp_path / "a.jsonl"
    archive.write_text('{"format": "other"}\n')
    with pytest.raises(BadArchiveLine, match="line 1: format") as caught:
        read_header(archive)
    assert caught.value.line == 1
    empty_text = json.loads(good(1)) | {"text": "  "}
    write_archive(archive, [good(0), json.dumps(empty_text), good(2).replace('"u"', "null")])
    with pytest.raises(BadArchiveLine, match="line 3: text: must not be empty"):
        import_archive(archive, Memory.open(store()))
    lines = list(read_lines(archive))
    assert [line.number for line in lines] == [2, 3, 4] and lines[0].error is None


def test_on_conflict_skip_replace_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    archive = tmp_path / "a.jsonl"
    write_archive(archive, [good(1), good(2)])
    destination = store()
    memory = Memory.open(destination)
    memory.import_([r.record().model_copy(update={"metadata": {"old": True}})
                    for r in (line.record for line in read_lines(archive)) if r is not None][:1])
    assert main(["import", str(archive), destination, "-q", "--on-conflict", "fail"]) == 2
    assert "records[0].id: memory id-1 is already stored" in capsys.readouterr().err
    assert memory.count(user_id="u") == 1  # nothing of the batch was written
    assert main(["import", str(archive), destination, "-q"]) == 0
    assert memory.get("id-1").metadata == {"old": True}
    assert main(["import", str(archive), destination, "-q", "--on-conflict", "replace"]) == 0
    assert "replaced 2" in capsys.readouterr().out
    assert memory.get("id-1").metadata == {"n": 1}
    assert [e.event for e in memory.history("id-1")][-1] == "UPDATE"


# -- migrate -----------------------------------------------------------------------------------------------


def test_migrate_everything_reuses_vectors_and_is_idempotent(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    source_url, destination_url = store(), store()
    source = filled(source_url)
    monkeypatch.chdir(tmp_path)
    assert main(["migrate", source_url, destination_url, "--batch", "4", "-q"]) == 0
    out = capsys.readouterr().out
    assert "migrate: read 13, added 13" in out and "vectors: reused" in out
    assert "verify (every record): 3 scopes, 13 records checked: OK" in out
    destination = Memory.open(destination_url)
    assert records_of(destination) == records_of(source)
    some = source.export(user_id="bob")[0]
    assert destination.backend.get(some.id).vector == source.backend.get(some.id).vector  # type: ignore[union-attr]
    assert list(tmp_path.glob(".memdock-migrate-*.sqlite"))  # the default checkpoint
    assert main(["migrate", source_url, destination_url, "-q", "--re-embed"]) == 0
    assert "added 0, already there 13" in capsys.readouterr().out


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    source_url, destination_url = store(), store()
    source = filled(source_url)
    summary = migrate(source, Memory.open(destination_url), dry_run=True, checkpoint=tmp_path / "c.sqlite")
    assert (summary.read, summary.added, summary.verification) == (13, 13, None)
    assert Memory.open(destination_url).count(user_id="bob") == 0
    assert not (tmp_path / "c.sqlite").exists()
    assert "dry run: read 13, would add 13" in summary.lines()[0]


def test_verification_reports_a_difference_and_exits_non_zero(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    source_url, destination_url = store(), store()
    source = filled(source_url)
    checkpoint = tmp_path / "state.sqlite"
    args = ["migrate", source_url, destination_url, "-q", "--checkpoint", str(checkpoint)]
    assert main(args) == 0
    victim = source.export(user_id="bob")[0]
    Memory.open(destination_url).delete(victim.id)
    Memory.open(destination_url).add("an intruder", user_id="alice")
    capsys.readouterr()
    assert main(args) == 1
    out = capsys.readouterr().out
    assert f"record {victim.id}: missing in the destination" in out
    assert "scope {'user_id': 'bob'}: source holds 6, destination 5" in out
    assert "scope {'user_id': 'alice'}: source holds 6, destination 7" in out
    assert "an intruder" not in out and "note" not in out  # reports name ids and scopes, never text
    assert main([*args[:-2], "--checkpoint", str(tmp_path / "other.sqlite"), "--verify", "sample"]) == 1


def test_a_checkpoint_of_another_migration_is_refused(tmp_path: Path) -> None:
    checkpoint = tmp_path / "c.sqlite"
    migrate(filled(store()), Memory.open(store()), checkpoint=checkpoint, identity={"source": "a"})
    with pytest.raises(InvalidInput, match="belongs to another migration"):
        migrate(filled(store()), Memory.open(store()), checkpoint=checkpoint, identity={"source": "b"})


def test_a_store_that_cannot_list_across_scopes_needs_scope_ids(tmp_path: Path) -> None:
    with mem0_server_standin() as (service, _):
        mem0 = Memory.open(f"mem0+http://{service.url}?dialect=server&server_embedder=hash")
        mem0.add("remote fact", user_id="u")
        with pytest.raises(Unsupported, match="give scope ids"):
            migrate(mem0, Memory.open(store()))
        summary = migrate(mem0, Memory.open(store()), scope=Scope(user_id="u"), checkpoint=tmp_path / "c.sqlite")
        assert (summary.added, summary.ok) == (1, True)


def test_filter_and_scope_select_what_moves(tmp_path: Path) -> None:
    source = filled(store())
    destination = Memory.open(store())
    summary = migrate(source, destination, scope=Scope(user_id="bob"), filter={"i": {"gte": 6}})
    assert (summary.added, summary.ok) == (3, True)
    assert sorted(r.metadata["i"] for r in destination.export(user_id="bob")) == [6, 8, 10]
    assert destination.count(user_id="alice") == 0
    out = tmp_path / "f.jsonl"
    assert export_archive(source, out, filter={"i": {"lt": 2}}).read == 2


# -- progress ----------------------------------------------------------------------------------------------


def test_plain_progress_lines_off_a_terminal(tmp_path: Path) -> None:
    log = tmp_path / "progress.txt"
    with open(log, "w") as stream:
        reporter = reporter_for(stream)
        assert isinstance(reporter, LineReporter)
        migrate(filled(store()), Memory.open(store()), batch=5, progress=reporter)
    lines = log.read_text().splitlines()
    assert lines[0].startswith("migrate: 13/13 records, ") and lines[0].endswith("/s")
    assert lines[1].startswith("verify: 13/13 records")


def test_a_rich_progress_bar_on_a_terminal() -> None:
    primary, secondary = pty.openpty()
    with open(secondary, "w", closefd=True) as terminal:
        reporter = reporter_for(terminal)
        assert isinstance(reporter, RichReporter)
        migrate(filled(store()), Memory.open(store()), batch=5, progress=reporter)
    drawn = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        drawn += chunk
    os.close(primary)
    screen = drawn.decode(errors="replace")
    assert "migrate" in screen and "13/13" in screen and "/s" in screen and "ETA" in screen


# -- the documented format ---------------------------------------------------------------------------------


def documented_schema() -> dict[str, object]:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "portability.md").read_text()
    section = doc.split("## The archive format", 1)[1]
    block = section.split("```json", 1)[1].split("```", 1)[0]
    schema: dict[str, object] = json.loads(block)
    return schema


def test_exported_lines_match_the_schema_in_the_docs(tmp_path: Path) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(documented_schema(),
                                                format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)
    archive = tmp_path / "a.jsonl"
    export_archive(filled(store()), archive, with_vectors=True, with_history=True)
    lines = [json.loads(line) for line in archive.read_text().splitlines()]
    assert len(lines) == 14
    for line in lines:
        validator.validate(line)
    assert lines[1]["vector"] and lines[1]["history"][0]["event"] == "ADD"
    for broken in ({**lines[1], "scope": {}}, {**lines[1], "surprise": 1}, {**lines[0], "version": 2}):
        assert not validator.is_valid(broken)


def test_a_record_stored_just_before_a_crash_gets_its_history(tmp_path: Path) -> None:
    """A run killed between storing a batch and recording its history leaves records without events; the
    re-run finds them under their ids and records the source's events."""
    source = filled(store())
    destination = Memory.open(store())
    victim = source.export(user_id="alice")[0]
    stored = destination.backend.get_many([victim.id])
    assert stored == []
    destination.backend.add([source.backend.get(victim.id)])  # type: ignore[list-item]  # stored, no events
    assert destination.histories([victim.id]) == {victim.id: []}
    summary = migrate(source, destination, checkpoint=tmp_path / "c.sqlite")
    assert summary.ok, summary.lines()
    assert (summary.added, summary.skipped) == (12, 1)
    assert destination.history(victim.id) == source.history(victim.id)
