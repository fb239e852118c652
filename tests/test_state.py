"""Tests for fetcher.state: round trips, batched commits, validators, and unusable state files."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fetcher.errors import StateError
from fetcher.state import BATCH_SIZE, SCHEMA_VERSION, Record, State, next_record
from fetcher.store import Destination, FileInfo


def record(n: int = 0, **changes: object) -> Record:
    base = Record(
        url=f"https://example.org/img/{n}.png?v=1",
        path=f"example.org/img/{n}.png",
        etag=f'W/"etag-{n}"',
        last_modified="Sun, 06 Nov 1994 08:49:37 GMT",
        size=1000 + n,
        mtime_ns=784111777_000_000_000 + n,
        sha256=f"{n:064x}",
        outcome="new",
        reason="new",
        checked=1_700_000_000.25 + n,
        changed=1_700_000_000.5,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def committed(path: Path) -> int:
    """Rows visible to another connection, i.e. committed."""
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("SELECT count(*) FROM records").fetchone()[0])
    finally:
        conn.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "dest" / ".fetcher" / "state.sqlite3"


# --- round trip and batching -------------------------------------------------------------


def test_round_trip(db: Path) -> None:
    records = [
        record(1),
        record(
            2,
            etag=None,
            last_modified=None,
            size=None,
            mtime_ns=None,
            sha256=None,
            outcome="failed",
            reason="http-404",
            changed=None,
        ),
        record(3, url="https://例え.jp/ünïcödé/ß.jpg", path="例え.jp/ünïcödé/ß.jpg"),
    ]
    with State.open(db) as state:
        assert state.get(records[0].url, records[0].path) is None
        for rec in records:
            state.put(rec)
        assert [state.get(rec.url, rec.path) for rec in records] == records  # visible before commit
    with State.open(db) as again:
        assert [again.get(rec.url, rec.path) for rec in records] == records
        assert again.get("https://example.org/other", records[0].path) is None


def test_put_replaces(db: Path) -> None:
    with State.open(db) as state:
        state.put(record(1))
        state.flush()
        state.put(record(1, outcome="changed", reason="dissimilar", size=5))
        assert state.get(record(1).url, record(1).path) == record(
            1, outcome="changed", reason="dissimilar", size=5
        )
    with State.open(db) as again:
        assert again.get(record(1).url, record(1).path) == record(
            1, outcome="changed", reason="dissimilar", size=5
        )
    assert committed(db) == 1


def test_puts_are_batched(db: Path) -> None:
    with State.open(db) as state:
        for n in range(BATCH_SIZE - 1):
            state.put(record(n))
        assert committed(db) == 0
        state.put(record(BATCH_SIZE - 1))  # the batch is full: committed
        assert committed(db) == BATCH_SIZE
        state.put(record(BATCH_SIZE))
        assert committed(db) == BATCH_SIZE
        state.flush()
        assert committed(db) == BATCH_SIZE + 1
    assert committed(db) == BATCH_SIZE + 1


def test_puts_are_committed_after_a_second(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    with State.open(db) as state:
        state.put(record(1))
        clock[0] += 0.5
        state.put(record(2))
        assert committed(db) == 0
        clock[0] += 0.6  # 1.1 s since the last commit (at open)
        state.put(record(3))
        assert committed(db) == 3


def test_close_commits_and_a_second_state_sees_it(db: Path) -> None:
    first = State.open(db)
    first.put(record(7))
    assert committed(db) == 0
    first.close()
    first.close()  # harmless
    with State.open(db) as second:
        assert second.get(record(7).url, record(7).path) == record(7)
    with pytest.raises(StateError, match="closed"):
        first.get(record(7).url, record(7).path)


def test_interrupted_run_still_commits(db: Path) -> None:
    with pytest.raises(KeyboardInterrupt), State.open(db) as state:
        state.put(record(1))
        raise KeyboardInterrupt
    assert committed(db) == 1


def test_other_thread_is_a_bug_not_a_state_error(db: Path) -> None:
    caught: list[BaseException] = []
    with State.open(db) as state:

        def use() -> None:
            try:
                state.get("https://example.org/x", "x")
            except BaseException as exc:
                caught.append(exc)

        thread = threading.Thread(target=use)
        thread.start()
        thread.join()
    assert len(caught) == 1
    assert isinstance(caught[0], sqlite3.ProgrammingError)
    assert not isinstance(caught[0], StateError)


# --- schema ------------------------------------------------------------------------------


def test_wal_schema_version_and_url_path_key(db: Path) -> None:
    with State.open(db) as state:
        state.put(record(1))
        state.put(record(1, path="elsewhere/1.png", size=7))  # the same URL, another path
        state.flush()
        assert os.path.exists(f"{db}-wal")
        conn = sqlite3.connect(db)
        try:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
            plan = " ".join(
                str(row[-1])
                for row in conn.execute(
                    "EXPLAIN QUERY PLAN SELECT * FROM records WHERE url = ? AND path = ?",
                    ("x", "y"),
                )
            )
            assert "USING INDEX" in plan and "url=? AND path=?" in plan  # the key, no scan
        finally:
            conn.close()
        assert state.get(record(1).url, record(1).path) == record(1)
        assert state.get(record(1).url, "elsewhere/1.png") == record(
            1, path="elsewhere/1.png", size=7
        )


SCHEMA_1 = """
CREATE TABLE records (
    url TEXT PRIMARY KEY NOT NULL, path TEXT NOT NULL, etag TEXT, last_modified TEXT,
    size INTEGER, mtime_ns INTEGER, sha256 TEXT, outcome TEXT NOT NULL, reason TEXT NOT NULL,
    checked REAL NOT NULL, changed REAL
);
CREATE INDEX records_path ON records (path);
PRAGMA user_version = 1;
"""


def test_a_schema_1_state_is_migrated_keeping_every_record(db: Path) -> None:
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(SCHEMA_1)
    # last outcome "new": the record describes the file that run wrote (``written``)
    old = [record(n, written=True) for n in range(5)]
    conn.executemany(
        f"INSERT INTO records VALUES ({', '.join('?' * 11)})",
        [dataclasses.astuple(r)[:11] for r in old],
    )
    conn.close()
    with State.open(db, readonly=True) as peek:  # a dry run reads schema 1 as it is
        assert peek.get(old[2].url, old[2].path) == old[2]
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == 1
    with State.open(db) as state:
        assert [state.get(r.url, r.path) for r in old] == old
        state.put(record(0, path="second/0.png"))  # now a URL can have two paths
    with State.open(db) as state:
        assert state.get(old[0].url, old[0].path) == old[0]
        assert state.get(old[0].url, "second/0.png") == record(0, path="second/0.png")
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_a_schema_2_state_is_migrated_and_written_is_set_only_where_it_is_known(
    db: Path,
) -> None:
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.executescript(
        SCHEMA_1.replace("url TEXT PRIMARY KEY NOT NULL", "url TEXT NOT NULL")
        .replace("changed REAL\n", "changed REAL, PRIMARY KEY (url, path)\n")
        .replace("user_version = 1", "user_version = 2")
    )
    wrote = record(1, outcome="changed", reason="dissimilar")  # describes what that run wrote
    found = record(2, outcome="unchanged", reason="identical-pixels")  # found, never written
    kept = record(3, outcome="unchanged", reason="not-modified")  # unknown: counted as not
    conn.executemany(
        f"INSERT INTO records VALUES ({', '.join('?' * 11)})",
        [dataclasses.astuple(r)[:11] for r in (wrote, found, kept)],
    )
    conn.close()
    with State.open(db, readonly=True) as peek:  # a dry run reads schema 2 as migrated
        assert peek.get(wrote.url, wrote.path) == dataclasses.replace(wrote, written=True)
    with State.open(db) as state:
        assert state.get(wrote.url, wrote.path) == dataclasses.replace(wrote, written=True)
        assert state.get(found.url, found.path) == found
        assert state.get(kept.url, kept.path) == kept
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


WRITTEN = FileInfo(10, 111, "a" * 64)


@pytest.mark.parametrize(
    ("outcome", "file", "wrote", "written"),
    [
        ("changed", FileInfo(12, 222, "b" * 64), True, True),  # fetcher wrote it now
        ("unchanged", None, False, True),  # a 304: the written file is still there
        ("failed", None, False, True),  # a failure changes nothing
        ("unchanged", WRITTEN, False, True),  # read from disk: still the file it wrote
        ("unchanged", FileInfo(10, 999, "a" * 64), False, False),  # touched since
        ("unchanged", FileInfo(10, 111, "c" * 64), False, False),  # other bytes, same stat
    ],
)
def test_next_record_says_written_only_of_the_file_fetcher_wrote(
    outcome: str, file: FileInfo | None, wrote: bool, written: bool
) -> None:
    previous = record(1, size=10, mtime_ns=111, sha256="a" * 64, written=True)
    args: dict[str, Any] = {"url": previous.url, "outcome": outcome, "reason": "r", "etag": None}
    after = next_record(
        previous, path=previous.path, last_modified=None, file=file, wrote=wrote, now=5.0, **args
    )
    assert after.written is written
    never = dataclasses.replace(previous, written=False)  # a file fetcher only ever found
    after = next_record(
        never, path=previous.path, last_modified=None, file=file, wrote=wrote, now=5.0, **args
    )
    assert after.written is wrote
    moved = next_record(  # a record of another path says nothing of this one
        previous, path="elsewhere.png", last_modified=None, file=file, wrote=wrote, now=5.0, **args
    )
    assert moved.written is wrote


def test_listing_finds_unlisted_records_and_paths_another_entry_uses(db: Path) -> None:
    with State.open(db) as state:
        for n in range(4):
            state.put(record(n))
        state.put(record(9, path="Example.org/img/1.png"))  # the path of entry 1, other case
        state.begin_listing()
        state.listed(record(0).url, record(0).path, record(0).path.casefold())
        state.listed(record(1).url, record(1).path, record(1).path.casefold())
        got = {(r.url, r.path): used for r, used in state.unlisted()}
        assert got == {
            (record(2).url, record(2).path): False,
            (record(3).url, record(3).path): False,
            (record(9).url, "Example.org/img/1.png"): True,
        }
        state.forget(record(2).url, record(2).path)
        state.forget_now()
    with State.open(db) as state:
        assert state.get(record(2).url, record(2).path) is None
        assert state.get(record(3).url, record(3).path) == record(3)


def test_restored_describes_the_restored_file_and_keeps_the_validators(db: Path) -> None:
    with State.open(db) as state:
        state.put(record(1, written=True))
        state.put(record(2, path=record(1).path, written=True))  # another URL, the same path
        state.put(record(3))
        assert state.restored(record(1).path, FileInfo(5, 6, "f" * 64), now=7.0) == 2
        after = state.get(record(1).url, record(1).path)
        assert after is not None
        assert (after.size, after.mtime_ns, after.sha256, after.written) == (5, 6, "f" * 64, False)
        assert (after.etag, after.last_modified) == (record(1).etag, record(1).last_modified)
        assert (after.reason, after.changed) == ("restored", 7.0)
        assert state.get(record(3).url, record(3).path) == record(3)


def test_zero_byte_file_is_initialised(db: Path) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(b"")
    with State.open(db) as state:
        state.put(record(1))
    assert committed(db) == 1


def test_folder_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "dest").write_bytes(b"a file, not a folder")
    db = tmp_path / "dest" / ".fetcher" / "state.sqlite3"
    with pytest.raises(StateError, match="cannot create its folder") as caught:
        State.open(db)
    assert str(db) in str(caught.value)


# --- unusable state files: an error naming the file, never a silent reset -----------------


def populated(db: Path, count: int = 300) -> bytes:
    with State.open(db) as state:
        for n in range(count):
            state.put(record(n))
    assert not os.path.exists(f"{db}-wal")  # closing checkpointed everything into the file
    return db.read_bytes()


def assert_refused(db: Path, *fragments: str) -> None:
    before = db.read_bytes()
    with pytest.raises(StateError) as caught:
        State.open(db)
    message = str(caught.value)
    assert str(db) in message
    assert "move it aside" in message
    for fragment in fragments:
        assert fragment in message
    assert db.read_bytes() == before  # untouched: nothing was reset


def test_random_bytes(db: Path, rng: np.random.Generator) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(rng.integers(0, 256, 8192, dtype=np.uint8).tobytes())
    assert_refused(db, "not an SQLite database")


def test_text_file(db: Path) -> None:
    db.parent.mkdir(parents=True)
    db.write_text("url,path\nhttps://example.org/a.png,a.png\n")
    assert_refused(db, "not an SQLite database")


@pytest.mark.parametrize("keep", [0.5, 0.1])
def test_truncated(db: Path, keep: float) -> None:
    data = populated(db)
    db.write_bytes(data[: int(len(data) * keep)])
    assert_refused(db, "corrupted or truncated")


def test_truncated_inside_header(db: Path) -> None:
    data = populated(db)
    db.write_bytes(data[:10])
    assert_refused(db, "truncated")


def test_corrupted_page(db: Path, rng: np.random.Generator) -> None:
    data = bytearray(populated(db))
    page = 4096
    pages = len(data) // page
    assert pages > 4
    # A page deep in the file, not the schema page: only an integrity check finds it at open.
    start = (pages - 2) * page
    data[start : start + page] = rng.integers(0, 256, page, dtype=np.uint8).tobytes()
    db.write_bytes(bytes(data))
    assert_refused(db, "corrupted")


def test_every_zeroed_page_is_found(db: Path) -> None:
    data = populated(db)
    page = 4096
    for number in range(1, len(data) // page):  # page 0 holds the header and the schema
        broken = bytearray(data)
        broken[number * page : (number + 1) * page] = bytes(page)
        db.write_bytes(bytes(broken))
        with pytest.raises(StateError, match="corrupted") as caught:
            State.open(db)
        assert "\n" not in str(caught.value), f"page {number}"


def test_newer_schema(db: Path) -> None:
    populated(db, 1)
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    assert_refused(db, "newer fetcher", f"schema {SCHEMA_VERSION + 1}")


def test_foreign_database(db: Path) -> None:
    db.parent.mkdir(parents=True)
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE photos (id INTEGER)")
    conn.commit()
    conn.close()
    assert_refused(db, "not a fetcher state")


def test_wrong_columns(db: Path) -> None:
    populated(db, 1)
    conn = sqlite3.connect(db)
    conn.execute("ALTER TABLE records ADD COLUMN extra TEXT")
    conn.commit()
    conn.close()
    assert_refused(db, "columns")


# --- validators are only used for the file fetcher left ---------------------------------


def atomic_write(path: Path, data: bytes, *, mtime: float | None = None) -> FileInfo:
    with Destination.open(path.parent) as root:
        return root.write(path.name, data, mtime=mtime)


def file_info(path: Path) -> FileInfo | None:
    with Destination.open(path.parent) as root:
        return root.stat(path.name)


def written(dest: Path, name: str, data: bytes) -> tuple[Record, FileInfo]:
    info = atomic_write(dest / name, data, mtime=784111777.0)
    rec = record(0, path=name, size=info.size, mtime_ns=info.mtime_ns, sha256=info.sha256)
    return rec, info


def test_validators_for_matching_file(tmp_path: Path, db: Path) -> None:
    rec, _ = written(tmp_path, "a.png", b"image bytes")
    with State.open(db) as state:
        state.put(rec)
        on_disk = file_info(tmp_path / "a.png")
        assert state.validators_for(rec.url, rec.path, on_disk) == rec
        assert state.validators_for(rec.url, "moved/a.png", on_disk) is None


def test_validators_for_edited_file(tmp_path: Path, db: Path) -> None:
    rec, _ = written(tmp_path, "a.png", b"image bytes")
    target = tmp_path / "a.png"
    with State.open(db) as state:
        state.put(rec)
        # Same size, other bytes, mtime moved by an editor: not the file fetcher left.
        target.write_bytes(b"IMAGE BYTES")
        assert state.validators_for(rec.url, rec.path, file_info(target)) is None
        # Same bytes and size, but the mtime differs by a nanosecond.
        assert rec.mtime_ns is not None
        atomic_write(target, b"image bytes")
        os.utime(target, ns=(0, rec.mtime_ns + 1))
        assert state.validators_for(rec.url, rec.path, file_info(target)) is None
        # Other size with the recorded mtime restored.
        atomic_write(target, b"image bytes!", mtime=784111777.0)
        assert state.validators_for(rec.url, rec.path, file_info(target)) is None
        # Back to what was recorded.
        atomic_write(target, b"image bytes", mtime=784111777.0)
        assert state.validators_for(rec.url, rec.path, file_info(target)) == rec


def test_validators_for_missing_file_record_or_path(tmp_path: Path, db: Path) -> None:
    rec, info = written(tmp_path, "a.png", b"image bytes")
    with State.open(db) as state:
        assert state.validators_for(rec.url, rec.path, info) is None  # no record yet
        state.put(rec)
        (tmp_path / "a.png").unlink()
        assert state.validators_for(rec.url, rec.path, file_info(tmp_path / "a.png")) is None
        assert state.validators_for(rec.url, "moved/a.png", info) is None
        failed = dataclasses.replace(rec, size=None, mtime_ns=None)
        state.put(failed)
        assert state.validators_for(rec.url, rec.path, info) is None
