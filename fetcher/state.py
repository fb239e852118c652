"""The state kept between runs: per URL and path, its validators and what fetcher left on disk.

One SQLite file, ``DEST/.fetcher/state.sqlite3`` by default, in WAL mode, with one
table ``records`` keyed by (URL, path): the same URL listed for two paths has a record
for each. The schema is versioned with ``PRAGMA user_version``; a state of schema 1
(keyed by URL alone) or 2 (without ``written``) is migrated in place when it is opened
for writing: ``written`` is set where the last outcome was ``new`` or ``changed`` (the
record then describes the file that run wrote) and left unset elsewhere, since an older
state cannot tell a file fetcher wrote from one it found and judged unchanged. A file that
cannot be used (not a database, corrupted, truncated, written by a newer fetcher) is
a ``StateError`` naming the file; it is never reset behind the user's back. The one
exception is a zero-byte file with no ``-wal`` beside it: SQLite writes nothing until
the first commit, so such a file has never held a record (a run killed while
creating it) and is initialised.

Safety does not depend on the state being complete: validators are only used when
the file on disk still has the size and mtime recorded for it (``Record.describes``),
a record's size, mtime and digest describe the same bytes (``store.Snapshot``), and a
record is only written after its file is durably on disk, so a lost or stale record
costs a full download, never a wrong ``unchanged``.

Another process holding the database (a backup, an ``sqlite3`` shell) is waited for,
up to ``timeout`` seconds per attempt (SQLite's busy timeout). Opening for writing
takes and drops the write lock once, so a state held by someone else stops the run
before it writes any file. Later, a batch that still finds the database busy stays
pending and is committed with a later one; only the last commit (``close``) fails if
the database stays busy, naming how many results it could not record.

Writes are buffered and committed in batches (every ``BATCH_SIZE`` puts or
``BATCH_SECONDS``), and on ``flush()``/``close()``. A ``State`` belongs to the thread
that opened it (SQLite's ``check_same_thread``): the sync coordinator, not the workers.
"""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import StateError
from .paths import path_key
from .store import FileInfo

__all__ = [
    "BATCH_SECONDS",
    "BATCH_SIZE",
    "BUSY_TIMEOUT",
    "SCHEMA_VERSION",
    "STATE_FILE",
    "Record",
    "State",
    "next_record",
]

SCHEMA_VERSION = 3
#: The state's file name in ``DEST/.fetcher`` unless ``[sync] state`` names another.
STATE_FILE = "state.sqlite3"
BATCH_SIZE = 200
BATCH_SECONDS = 1.0
#: Seconds to wait for another process holding the database, per attempt.
BUSY_TIMEOUT = 10.0
#: Results kept pending while the database stays busy before the run must stop.
MAX_PENDING = 50 * BATCH_SIZE

_SQLITE_MAGIC = b"SQLite format 3\x00"
# Misuse of the connection (e.g. from another thread) is a bug, not a state fault.
_MISUSE = (sqlite3.ProgrammingError, sqlite3.InterfaceError)
_AFRESH = "move it aside to start afresh (the next run then downloads every URL in full)"


@dataclass(frozen=True)
class Record:
    """What fetcher knows of one URL after its last check.

    ``path`` is relative to the destination; ``size``, ``mtime_ns`` and ``sha256``
    describe the file on disk as fetcher left it (None if it left none); ``outcome``
    is ``new``, ``changed``, ``unchanged`` or ``failed``; ``checked`` and ``changed``
    are POSIX times of the last check and the last write. ``written`` is True when
    the file described is one fetcher wrote itself (not one it found on disk and
    judged unchanged, nor one put back by ``fetcher restore``): only such a file may
    be deleted by ``--delete``.
    """

    url: str
    path: str
    etag: str | None
    last_modified: str | None
    size: int | None
    mtime_ns: int | None
    sha256: str | None
    outcome: str
    reason: str
    checked: float
    changed: float | None
    written: bool = False

    def describes(self, on_disk: FileInfo | None, *, path: str | None = None) -> bool:
        """True if ``on_disk`` is still the file fetcher left: same size and mtime (and path).

        A file deleted, replaced or edited since fetcher wrote it has another size or
        mtime; its stored validators and digest no longer say anything about it.

        Parameters
        ----------
        on_disk : FileInfo or None
            ``Destination.stat`` of the destination file now (None: no file).
        path : str, optional
            The destination path (relative to DEST) the file is now at; if given, a
            record made for another path does not describe it.
        """
        if on_disk is None or (path is not None and self.path != path):
            return False
        return self.size == on_disk.size and self.mtime_ns == on_disk.mtime_ns


_COLUMNS = tuple(f.name for f in dataclasses.fields(Record))
_TABLE = """
CREATE TABLE {name} (
    url TEXT NOT NULL,
    path TEXT NOT NULL,
    etag TEXT,
    last_modified TEXT,
    size INTEGER,
    mtime_ns INTEGER,
    sha256 TEXT,
    outcome TEXT NOT NULL,
    reason TEXT NOT NULL,
    checked REAL NOT NULL,
    changed REAL,
    written INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (url, path)
);
"""
_SCHEMA = _TABLE.format(name="records")
#: Columns of schemas 1 and 2, and what ``written`` is taken to be for their records.
_OLD_COLUMNS = _COLUMNS[:-1]
_WRITTEN_BEFORE_3 = "(outcome IN ('new', 'changed') AND size IS NOT NULL)"
# Schema 1 keyed records by URL alone (one record for a URL listed with two paths).
_MIGRATE_FROM_1 = f"""
{_TABLE.format(name="records_3")}
INSERT INTO records_3 SELECT {", ".join(_OLD_COLUMNS)}, {_WRITTEN_BEFORE_3} FROM records;
DROP TABLE records;
ALTER TABLE records_3 RENAME TO records;
"""
# Schema 2 had no column ``written``.
_MIGRATE_FROM_2 = f"""
ALTER TABLE records ADD COLUMN written INTEGER NOT NULL DEFAULT 0;
UPDATE records SET written = 1 WHERE {_WRITTEN_BEFORE_3};
"""
_LISTED = """
CREATE TEMP TABLE IF NOT EXISTS listed (
    url TEXT NOT NULL, path TEXT NOT NULL, PRIMARY KEY (url, path)
) WITHOUT ROWID;
CREATE TEMP TABLE IF NOT EXISTS listed_keys (key TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TEMP TABLE IF NOT EXISTS gone (
    url TEXT NOT NULL, path TEXT NOT NULL, PRIMARY KEY (url, path)
) WITHOUT ROWID;
DELETE FROM temp.listed;
DELETE FROM temp.listed_keys;
DELETE FROM temp.gone;
"""
_UPSERT = (
    f"INSERT OR REPLACE INTO records ({', '.join(_COLUMNS)}) "
    f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
)


class _StateBusy(StateError):
    """Another process held the database longer than the busy timeout."""


def _held_by_another(path: Path, timeout: float) -> str:
    return (
        f"state file {str(path)!r} is held by another process (waited {timeout:g} s; "
        "raise [sync] state_timeout to wait longer)"
    )


def _unusable(path: Path, why: str) -> StateError:
    return StateError(f"state file {str(path)!r} cannot be used: {why}; {_AFRESH}")


def _check_header(path: Path) -> None:
    """Refuse a file that is plainly not an SQLite database before SQLite touches it."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_SQLITE_MAGIC))
    except FileNotFoundError:
        return
    except OSError as exc:
        raise _unusable(path, exc.strerror or str(exc)) from None
    if head and head != _SQLITE_MAGIC[: len(head)]:
        raise _unusable(path, "it is not an SQLite database")
    if not head and os.path.exists(f"{path}-wal"):
        return  # the database so far lives in the write-ahead log; SQLite recovers it
    if head and len(head) < len(_SQLITE_MAGIC):
        raise _unusable(path, "it is truncated")


def _prepare(conn: sqlite3.Connection, path: Path, *, readonly: bool) -> int:
    """Check version, integrity and tables; for writing, switch to WAL, create or migrate.

    Returns the schema version the connection now reads: ``SCHEMA_VERSION`` when opened
    for writing, the file's own when read-only (0: the file holds no state yet).
    """
    # 1 MiB of page cache (SQLite's default is 2), set first so the integrity check of a
    # big state stays within it too: a run looks each URL up once, so a bigger cache
    # buys little and would make a long list's run hold more memory.
    conn.execute("PRAGMA cache_size=-1024")
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise _unusable(
            path,
            f"it was written by a newer fetcher (schema {version}; this one reads "
            f"schema {SCHEMA_VERSION})",
        )
    problems = [row[0] for row in conn.execute("PRAGMA quick_check")]
    if problems != ["ok"]:
        found = " ".join(" ".join(map(str, problems[:3])).split())  # one line, for the CLI
        raise _unusable(path, f"it is corrupted ({found[:200]})")
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    if version == 0 and tables:
        raise _unusable(path, "it is an SQLite database but not a fetcher state")
    have = [row[1] for row in conn.execute("PRAGMA table_info(records)")]
    if version > 0 and tuple(have) != (_COLUMNS if version >= 3 else _OLD_COLUMNS):
        raise _unusable(path, "its records table does not have the columns of this schema")
    if readonly:
        return int(version)
    # Only now, with the file known to be ours, change anything in it.
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise _unusable(path, f"SQLite refused WAL mode (journal mode {mode!r})")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL: commits stay consistent, fsync per checkpoint
    if version == 0:
        conn.executescript(f"BEGIN; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
    elif version in (1, 2):
        migrate = _MIGRATE_FROM_1 if version == 1 else _MIGRATE_FROM_2
        conn.executescript(
            f"BEGIN IMMEDIATE; {migrate} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
        )
    # Take and drop the write lock once: a state held by another process stops the run
    # here, after waiting the busy timeout, before any file is written.
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("ROLLBACK")
    return SCHEMA_VERSION


def _busy(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorname", "") in ("SQLITE_BUSY", "SQLITE_LOCKED")


class State:
    """The state database of one destination; open it with ``State.open(path)``.

    ``get`` sees every ``put`` at once, including those not yet committed. Use it as a
    context manager, or call ``close()`` in a ``finally``, so that the last batch is
    committed even when the run is interrupted. Only the thread that opened it may use
    it; from any other thread SQLite raises ``sqlite3.ProgrammingError`` (a bug in the
    caller, deliberately not turned into ``StateError``).
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        *,
        timeout: float,
        version: int = SCHEMA_VERSION,
    ) -> None:
        self.path = path
        self.timeout = timeout
        self._conn: sqlite3.Connection | None = conn
        self._pending: dict[tuple[str, str], Record] = {}
        self._last_commit = time.monotonic()
        # A read-only open of an older schema reads ``written`` as a migration would set it.
        written = "written" if version >= 3 else _WRITTEN_BEFORE_3
        self._columns = f"{', '.join(_OLD_COLUMNS)}, {written}"
        self._listed: list[tuple[str, str, str]] = []

    @classmethod
    def open(cls, path: Path, *, timeout: float = BUSY_TIMEOUT, readonly: bool = False) -> State:
        """Open the state at ``path``, creating it (and its folders) if missing.

        Parameters
        ----------
        path : Path
            The SQLite file, e.g. ``DEST/.fetcher/state.sqlite3``.
        timeout : float
            Seconds to wait, per attempt, for another process holding the database.
        readonly : bool
            Read only (a dry run): create nothing, change nothing, not even SQLite's
            ``-wal`` and ``-shm`` files. The file is read as last checkpointed
            (``immutable``), which is safe while this run holds the destination lock
            (no other run writes it); a missing file reads as an empty state.

        Returns
        -------
        State
            The open state, in WAL mode, at ``SCHEMA_VERSION`` (unless read-only).

        Raises
        ------
        StateError
            The folder or file cannot be created or opened, another process holds it
            longer than ``timeout``, or the file is not an SQLite database, is
            corrupted or truncated, is not a fetcher state, or was written by a newer
            schema. The message names the file and says what to do.
        """
        if not readonly:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _unusable(path, f"cannot create its folder: {exc.strerror or exc}") from None
        _check_header(path)
        target = path
        if readonly:
            target = Path(":memory:")
            if path.exists():
                target = Path(f"{path.absolute().as_uri()}?mode=ro&immutable=1")
        try:
            conn = sqlite3.connect(target, isolation_level=None, timeout=timeout, uri=readonly)
        except sqlite3.Error as exc:
            raise _unusable(path, str(exc)) from None
        try:
            version = _prepare(conn, path, readonly=readonly)
            if not version:
                conn.close()
                conn = sqlite3.connect(":memory:", isolation_level=None)
                conn.executescript(_SCHEMA)
                version = SCHEMA_VERSION
        except sqlite3.Error as exc:
            conn.close()
            if _busy(exc):
                raise StateError(_held_by_another(path, timeout)) from None
            if getattr(exc, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
                raise _unusable(path, f"it is corrupted or truncated ({exc})") from None
            raise _unusable(path, str(exc)) from None
        except StateError:
            conn.close()
            raise
        return cls(conn, path, timeout=timeout, version=version)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StateError(f"state file {str(self.path)!r} is already closed")
        return self._conn

    def get(self, url: str, path: str) -> Record | None:
        """The record of ``url`` mirrored to ``path``, or None if it has none.

        Raises
        ------
        StateError
            The database cannot be read.
        """
        pending = self._pending.get((url, path))
        if pending is not None:
            return pending
        conn = self._connection()
        select = f"SELECT {self._columns} FROM records WHERE url = ? AND path = ?"
        try:
            row = conn.execute(select, (url, path)).fetchone()
        except _MISUSE:
            raise
        except sqlite3.Error as exc:
            raise StateError(f"cannot read state file {str(self.path)!r}: {exc}") from None
        return None if row is None else _record(row)

    def put(self, record: Record) -> None:
        """Store ``record``, replacing the previous one of its URL and path.

        The write is buffered and committed with its batch: once ``BATCH_SIZE`` records
        are pending or ``BATCH_SECONDS`` have passed since the last commit, or on
        ``flush()`` and ``close()``. A batch that finds the database held by another
        process (after waiting ``timeout``) stays pending for the next one.

        Raises
        ------
        StateError
            A batch commit fails for another reason, or ``MAX_PENDING`` records are
            pending because the database stays busy (the batch stays pending).
        """
        self._connection()
        self._pending[(record.url, record.path)] = record
        due = time.monotonic() - self._last_commit >= BATCH_SECONDS
        if len(self._pending) >= BATCH_SIZE or due:
            try:
                self.flush()
            except _StateBusy:
                if len(self._pending) >= MAX_PENDING:
                    raise

    def flush(self) -> None:
        """Commit every pending record in one transaction.

        Raises
        ------
        StateError
            The commit fails (another process holds the database longer than
            ``timeout``, or the database cannot be written); it is rolled back and the
            records stay pending. The message says how many are pending.
        """
        conn = self._connection()
        if self._pending:
            rows = [dataclasses.astuple(record) for record in self._pending.values()]
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    conn.executemany(_UPSERT, rows)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
            except _MISUSE:
                raise
            except sqlite3.Error as exc:
                self._last_commit = time.monotonic()  # the next attempt waits its turn
                unrecorded = (
                    f"{len(rows)} results not recorded (their files are on disk; the next "
                    "run fetches them in full and rewrites only what differs)"
                )
                if _busy(exc):
                    busy = f"{_held_by_another(self.path, self.timeout)}; {unrecorded}"
                    raise _StateBusy(busy) from None
                raise StateError(
                    f"cannot write state file {str(self.path)!r}: {exc}; {unrecorded}"
                ) from None
            self._pending.clear()
        self._last_commit = time.monotonic()

    def close(self) -> None:
        """Commit what is pending and close the database; closing twice is harmless.

        Raises
        ------
        StateError
            The last commit fails (the database is closed all the same).
        """
        if self._conn is None:
            return
        try:
            self.flush()
        finally:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> State:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- what the list names, for --delete ---------------------------------------------------
    def begin_listing(self) -> None:
        """Start noting what the list names (temporary tables: nothing is written to the file).

        Raises
        ------
        StateError
            The temporary tables cannot be made.
        """
        self._execute_script(_LISTED)
        self._connection().create_function("fetcher_path_key", 1, path_key, deterministic=True)
        self._listed.clear()

    def listed(self, url: str, path: str, key: str) -> None:
        """Note that the list names ``url`` at ``path`` (``key``: the path's ``path_key``)."""
        self._listed.append((url, path, key))
        if len(self._listed) >= BATCH_SIZE:
            self._flush_listed()

    def _flush_listed(self) -> None:
        rows, self._listed = self._listed, []
        conn = self._connection()
        try:
            conn.execute("BEGIN")
            conn.executemany(
                "INSERT OR IGNORE INTO temp.listed VALUES (?, ?)", [(u, p) for u, p, _ in rows]
            )
            conn.executemany(
                "INSERT OR IGNORE INTO temp.listed_keys VALUES (?)", [(k,) for _, _, k in rows]
            )
            conn.execute("COMMIT")
        except _MISUSE:
            raise
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StateError(f"cannot note the list in {str(self.path)!r}: {exc}") from None

    def unlisted(self) -> Iterator[tuple[Record, bool]]:
        """Every record whose (URL, path) the list did not name, and whether its path is listed.

        The second item is True when another listed entry uses the record's path
        (compared by ``path_key``, as the list reader compares paths).

        Raises
        ------
        StateError
            The database cannot be read.
        """
        self.flush()
        self._flush_listed()
        conn = self._connection()
        query = (
            f"SELECT {self._columns}, EXISTS (SELECT 1 FROM temp.listed_keys AS k "
            "WHERE k.key = fetcher_path_key(r.path)) FROM records AS r WHERE NOT EXISTS "
            "(SELECT 1 FROM temp.listed AS l WHERE l.url = r.url AND l.path = r.path)"
        )
        try:
            for row in conn.execute(query):
                yield _record(row[:-1]), bool(row[-1])
        except _MISUSE:
            raise
        except sqlite3.Error as exc:
            raise StateError(f"cannot read state file {str(self.path)!r}: {exc}") from None

    def forget(self, url: str, path: str) -> None:
        """Drop the record of ``url`` at ``path`` when :meth:`forget_now` runs (after a walk)."""
        self._execute("INSERT OR IGNORE INTO temp.gone VALUES (?, ?)", (url, path))

    def forget_now(self) -> None:
        """Delete every record :meth:`forget` named, in one transaction.

        Raises
        ------
        StateError
            The commit fails (another process holds the database, or it cannot be written).
        """
        self.flush()
        self._execute_script(
            "BEGIN IMMEDIATE; DELETE FROM records WHERE EXISTS (SELECT 1 FROM temp.gone AS g "
            "WHERE g.url = records.url AND g.path = records.path); DELETE FROM temp.gone; COMMIT;"
        )

    def restored(self, path: str, file: FileInfo, *, now: float) -> int:
        """Record that ``fetcher restore`` put ``file`` at ``path``: every record of that path.

        The records keep their validators (the next run still asks the origin "changed
        since?" and compares anything new with the restored file) and now describe
        ``file`` with ``written`` unset (a restored file is the operator's choice;
        ``--delete`` leaves it). Returns how many records were updated.

        Raises
        ------
        StateError
            The commit fails.
        """
        self.flush()
        return self._execute(
            "UPDATE records SET size = ?, mtime_ns = ?, sha256 = ?, written = 0, "
            "reason = 'restored', changed = ? WHERE path = ?",
            (file.size, file.mtime_ns, file.sha256 or None, now, path),
        )

    def _execute(self, sql: str, args: tuple[object, ...] = ()) -> int:
        """One statement, committed on its own; how many rows it changed."""
        try:
            return int(self._connection().execute(sql, args).rowcount)
        except _MISUSE:
            raise
        except sqlite3.Error as exc:
            raise StateError(f"cannot write state file {str(self.path)!r}: {exc}") from None

    def _execute_script(self, sql: str) -> None:
        conn = self._connection()
        try:
            conn.executescript(sql)
        except _MISUSE:
            raise
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            message = f"cannot write state file {str(self.path)!r}: {exc}"
            raise StateError(message) from None

    def validators_for(self, url: str, path: str, on_disk: FileInfo | None) -> Record | None:
        """The record of ``url`` if its validators still describe the file on disk.

        A file deleted, replaced or edited since fetcher wrote it has another size or
        mtime; sending the old ``ETag``/``Last-Modified`` could then get a 304 for bytes
        that are no longer there, so the URL must be fetched in full instead.

        Parameters
        ----------
        url : str
            The URL.
        path : str
            Its destination path (relative to DEST).
        on_disk : FileInfo or None
            ``Destination.stat`` of that file now (None: no file).

        Returns
        -------
        Record or None
            The record if ``on_disk`` has exactly its recorded ``size`` and
            ``mtime_ns``; otherwise None.

        Raises
        ------
        StateError
            The database cannot be read.
        """
        record = self.get(url, path)
        return record if record is not None and record.describes(on_disk) else None


def _record(row: tuple[Any, ...]) -> Record:
    """A record from a row of ``State._columns`` (``written`` read as a bool)."""
    values = dict(zip(_COLUMNS, row, strict=True))
    values["written"] = bool(values["written"])
    return Record(**values)


def next_record(
    previous: Record | None,
    *,
    url: str,
    path: str,
    outcome: str,
    reason: str,
    etag: str | None,
    last_modified: str | None,
    file: FileInfo | None,
    wrote: bool,
    now: float,
) -> Record:
    """The URL's record after one job: what the state should remember next.

    A failure keeps what was known of the file and its validators; an ``unchanged``
    that did not look at the disk (304, or a digest match: ``file`` is None) keeps the
    recorded file and takes any new validators; everything else records ``file``, the
    file as it is now. The file counts as ``written`` by fetcher if this job wrote it,
    or if it is still the very file (size, mtime, digest) a write of fetcher's left.
    """
    info = file
    same_path = previous is not None and previous.path == path
    written = wrote or (
        same_path
        and previous is not None
        and previous.written
        and (
            info is None
            or outcome == "failed"
            or (previous.size, previous.mtime_ns, previous.sha256)
            == (info.size, info.mtime_ns, info.sha256 or None)
        )
    )
    if outcome == "failed" or info is None:
        if previous is not None and previous.path == path:
            info = (
                FileInfo(previous.size, previous.mtime_ns, previous.sha256 or "")
                if previous.size is not None and previous.mtime_ns is not None
                else None
            )
            if outcome == "failed":
                etag, last_modified = previous.etag, previous.last_modified
            else:
                etag = etag or previous.etag
                last_modified = last_modified or previous.last_modified
        elif outcome == "failed":
            etag = last_modified = None
    return Record(
        url=url,
        path=path,
        etag=etag,
        last_modified=last_modified,
        size=info.size if info else None,
        mtime_ns=info.mtime_ns if info else None,
        sha256=(info.sha256 or None) if info else None,
        outcome=outcome,
        reason=reason,
        checked=now,
        changed=now if wrote else (previous.changed if previous else None),
        written=written,
    )
