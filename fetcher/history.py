"""Old versions kept under ``DEST/.fetcher/history``: kept on replace, pruned by count, restored.

With ``[sync] keep = N`` (``--keep N``) a file that fetcher replaces (``changed``) or
deletes (``--delete``) is kept first, as ``DEST/.fetcher/history/PATH/TIME.EXT``:
``PATH`` the file's path below the destination (a folder here), ``TIME`` when it was
replaced, in UTC to the microsecond (``2026-05-01T03:00:00.123456Z``), ``EXT`` the
file's own extension, so a version opens in any image viewer. A name fetcher gives a
path can never contain ``:`` (the list reader refuses or replaces it), so a version
never collides with the folder of another path. The newest ``N`` versions of a path
are kept; older ones are removed whenever that path gets a new version, and at the end
of every run that keeps versions (so lowering ``N`` takes effect at once). ``keep = 0``
keeps nothing new and leaves an existing history alone.

Every step goes through :class:`~fetcher.store.Destination` (directory descriptors,
no symbolic link followed): the replaced file is hard-linked into the history after
the new bytes are durable and before they replace it, so it is at every moment at
its path, in the history, or both.

``fetcher restore PATH [--version K]`` (:func:`restore`) puts version ``K`` (1: the
most recently replaced) back, atomically (one rename), keeping the file it replaces
as a new version, so a restore can itself be undone by restoring again. It records the
restored file in the state: the URL's validators stay, so the next run still asks the
origin "changed since?", keeps the restored file while the origin answers 304, and
compares anything new the origin publishes with the restored file. The restored file
counts as the operator's (``written`` unset): ``--delete`` never deletes it.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .config import Config
from .errors import StoreError
from .paths import STATE_DIR, _split_ext
from .state import STATE_FILE, State
from .store import Destination, DestinationLock, FileInfo

__all__ = ["HISTORY", "History", "Restored", "Usage", "Version", "find_destination", "restore"]

#: The history's folder below ``DEST/.fetcher``.
HISTORY = "history"

_VERSION = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{6})Z(\.[A-Za-z0-9]{1,15})?")


def _stamp(micros: int) -> str:
    seconds, fraction = divmod(micros, 1_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{fraction:06d}Z"


def _micros(name: str) -> int | None:
    """When version ``name`` was replaced (microseconds since the epoch); None: not a version."""
    found = _VERSION.fullmatch(name)
    if found is None:
        return None
    when = datetime.strptime(found[1], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
    return int(when.timestamp()) * 1_000_000 + int(found[2])


@dataclass(frozen=True)
class Version:
    """One kept version of a file.

    Attributes
    ----------
    number : int
        1 for the most recently replaced version, 2 for the one before, ...
    path : str
        Where it is kept, relative to ``DEST/.fetcher`` (``history/PATH/TIME.EXT``).
    replaced : float
        POSIX time at which it was replaced (or deleted, or restored over).
    size : int
        Its size in bytes.
    mtime_ns : int
        Its modification time, as it had at its path.
    """

    number: int
    path: str
    replaced: float
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Usage:
    """What the history holds: files and bytes (the run summary's ``history`` figures)."""

    files: int
    bytes: int


class History:
    """The kept versions of one destination.

    Parameters
    ----------
    root : Destination
        The destination, held open by the caller.
    keep : int
        Versions to keep per path (``[sync] keep``); 0 keeps none (nothing is pruned).
    """

    def __init__(self, root: Destination, keep: int) -> None:
        self.root = root
        self.keep = keep

    def versions(self, relpath: str) -> list[Version]:
        """The kept versions of ``relpath``, newest first (``number`` 1, 2, ...)."""
        found: list[tuple[int, str, FileInfo]] = []
        for _folder, files in self.root.listing(f"{HISTORY}/{relpath}"):
            for name, info in files:
                micros = _micros(name)
                if micros is not None:
                    found.append((micros, name, info))
            break  # this folder only: subfolders hold the versions of other paths
        found.sort(reverse=True)
        return [
            Version(n, f"{HISTORY}/{relpath}/{name}", micros / 1e6, info.size, info.mtime_ns)
            for n, (micros, name, info) in enumerate(found, start=1)
        ]

    def _next(self, relpath: str, versions: list[Version]) -> str:
        """Where the next version of ``relpath`` goes: now, or just after the newest kept."""
        micros = time.time_ns() // 1000
        if versions:
            newest = _micros(versions[0].path.rsplit("/", 1)[1]) or 0
            micros = max(micros, newest + 1)  # names stay in the order versions were made
        return f"{HISTORY}/{relpath}/{_stamp(micros)}{_split_ext(relpath.rsplit('/', 1)[-1])[1]}"

    def write(self, relpath: str, data: bytes, *, mtime: float | None) -> FileInfo:
        """Write ``data`` at ``relpath`` as :meth:`Destination.write` does, keeping the old file.

        Then the oldest versions beyond ``keep`` are removed.
        """
        versions = self.versions(relpath)
        info = self.root.write(relpath, data, mtime=mtime, keep=self._next(relpath, versions))
        self.prune(relpath)
        return info

    def delete(self, relpath: str, expect: FileInfo) -> str | None:
        """Remove the file at ``relpath`` if it is still ``expect``; with ``keep``, as a version.

        Returns
        -------
        str or None
            Where it is kept, relative to ``DEST/.fetcher`` (``""`` if it was deleted
            without keeping); None if it was not removed (absent, or not ``expect``).
        """
        kept = self._next(relpath, self.versions(relpath))
        if not self.root.remove(relpath, expect, keep=kept, discard=self.keep <= 0):
            return None
        if self.keep <= 0:
            self._tidy(relpath)
            return ""
        self.prune(relpath)
        return kept

    def prune(self, relpath: str) -> int:
        """Remove the versions of ``relpath`` beyond the newest ``keep``; how many were removed."""
        if self.keep <= 0:
            return 0
        removed = 0
        for version in self.versions(relpath)[self.keep :]:
            removed += self.root.discard(version.path)
        return removed

    def usage(self, *, prune: bool) -> Usage:
        """Files and bytes the history holds; with ``prune``, first trim every path to ``keep``."""
        files = size = 0
        for folder, entries in self.root.listing(HISTORY):
            drop: set[str] = set()
            if prune and self.keep > 0:
                stamped = sorted((name for name, _ in entries if _micros(name)), reverse=True)
                drop.update(stamped[self.keep :])
            for name, info in entries:
                if name in drop and self.root.discard(f"{folder}/{name}"):
                    continue
                files += 1
                size += info.size
        return Usage(files, size)

    def restore(self, relpath: str, number: int = 1) -> tuple[Version, FileInfo]:
        """Put version ``number`` of ``relpath`` back; keep the file it replaces as a version.

        Returns
        -------
        (Version, FileInfo)
            The version restored, and the file now at ``relpath`` (size, mtime, SHA-256).

        Raises
        ------
        StoreError
            There is no such version, or the move fails (``relpath`` is then as it was).
        """
        versions = self.versions(relpath)
        if not versions:
            raise StoreError(f"no kept version of {relpath!r} in {self._shown(relpath)!r}")
        if not 1 <= number <= len(versions):
            raise StoreError(
                f"{relpath!r} has {len(versions)} kept version(s): --version must be 1 to "
                f"{len(versions)}, not {number}"
            )
        chosen = versions[number - 1]
        info = self.root.put_back(chosen.path, relpath, keep=self._next(relpath, versions))
        self.prune(relpath)
        self._tidy(relpath)
        return chosen, info

    def _tidy(self, relpath: str) -> None:
        """Remove the history folders of ``relpath`` left empty (from the deepest up)."""
        parts = relpath.split("/")
        while parts and self.root.tidy("/".join([HISTORY, *parts])):
            parts.pop()

    def _shown(self, relpath: str) -> Path:
        return self.root.path / STATE_DIR / HISTORY / relpath


@dataclass(frozen=True)
class Restored:
    """What :func:`restore` did: the version put back, the file now there, records updated."""

    path: str
    version: Version
    file: FileInfo
    records: int
    replaced: bool = True  # False: there was no file at ``path`` (say, one --delete removed)


def find_destination(path: str | os.PathLike[str]) -> tuple[Path, str]:
    """The destination holding ``path`` and ``path`` relative to it.

    The destination is the nearest folder above ``path`` that holds a ``.fetcher``
    folder (``path`` itself need not exist: a deleted file can be restored).

    Raises
    ------
    StoreError
        No folder above ``path`` holds ``.fetcher``.
    """
    target = Path(os.path.abspath(path))
    for folder in target.parents:
        if (folder / STATE_DIR).is_dir():
            return folder, target.relative_to(folder).as_posix()
    raise StoreError(
        f"no fetcher destination above {str(path)!r} (no folder holding {STATE_DIR}/); "
        "name it with --dest"
    )


def restore(
    dest: str | os.PathLike[str],
    relpath: str,
    *,
    version: int = 1,
    config: Config | None = None,
) -> Restored:
    """Put a kept version of ``DEST/relpath`` back and record it in the state.

    Takes the destination's lock (a run in progress: ``LockError``), moves version
    ``version`` into place (:meth:`History.restore`) and updates every state record of
    ``relpath`` to describe the restored file (:meth:`~fetcher.state.State.restored`).

    Parameters
    ----------
    dest : path-like
        The destination folder.
    relpath : str
        The file's path relative to ``dest`` (as the report's ``path``).
    version : int
        1 for the most recently replaced version, 2 for the one before, ...
    config : Config, optional
        For ``[sync] keep`` (versions beyond it are pruned), ``state`` and
        ``state_timeout``.

    Raises
    ------
    LockError, StoreError, StateError
        A run holds the destination, there is no such version, or the file or the
        state cannot be written.
    """
    config = config or Config()
    dest_path = Path(dest).absolute()
    with DestinationLock(dest_path) as lock:
        assert lock.destination is not None
        replaced = lock.destination.stat(relpath) is not None
        chosen, info = History(lock.destination, config.sync.keep).restore(relpath, version)
        state_path = (
            Path(config.sync.state) if config.sync.state else dest_path / STATE_DIR / STATE_FILE
        )
        with State.open(state_path, timeout=config.sync.state_timeout) as state:
            records = state.restored(relpath, info, now=time.time())
    return Restored(relpath, chosen, info, records, replaced)
