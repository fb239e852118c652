"""The destination on disk, through directory descriptors: read, atomic write, lock, sweep.

:class:`Destination` holds the destination folder open. Every path below it is walked
one name at a time from that descriptor, each folder opened with
``O_NOFOLLOW | O_DIRECTORY`` relative to its parent (``os.open(name, flags,
dir_fd=parent)``) and created the same way when a write needs it; the file itself is
opened, created, renamed and fsynced relative to its final folder's descriptor. A
symbolic link swapped in for a folder or a file at any moment is therefore never
followed: the walk either holds the real folder already or meets the link and refuses
it (``UnsafePathError``). The destination itself may be a symbolic link; it is
followed once, when it is opened.

Writes never tear a file: the bytes go to a temporary file ``.fetcher-tmp-XXXX`` in the
target's own folder, which is flushed and fsynced (with its mtime set, when given)
before ``os.replace`` puts it in place and the folder is fsynced, so after a crash at
any point the target is either the old file or the new one, byte for byte. A killed
run can leave a temporary file behind; :meth:`Destination.sweep` removes them at the
start of the next run, under the destination lock.

What a read reports describes the bytes read: size and mtime come from ``fstat`` of
the descriptor the bytes were read through, taken before and after reading; a file
changed while it was read has no trustworthy description (``Snapshot.info`` is None).

The lock is ``fcntl.flock`` on ``DEST/.fetcher/lock``, opened through the
destination's descriptor and held on an open descriptor for the whole run, together
with the destination's own descriptor: the kernel drops the lock when the process
ends, however it ends, so a lock left by a killed run never blocks the next one. If
the destination is removed or moved while a run holds it, writes through the held
descriptor cannot re-create it (a removed folder takes no new entries) and
:meth:`Destination.check` tells the run to stop. The file holds the holder's pid, for
the message a second run prints; it is never deleted (deleting a lock file lets two
runs lock two different files). A process forked while the lock is held (a worker
pool) closes its inherited copy of the lock descriptor at once, so a forked child that
outlives a killed run cannot keep the destination locked.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import math
import os
import secrets
import stat
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType

from .errors import LockError, StoreError, UnsafePathError
from .paths import STATE_DIR, TEMP_PREFIX, _short

__all__ = [
    "LOCK_NAME",
    "STATE_DIR",
    "TEMP_PREFIX",
    "Destination",
    "DestinationLock",
    "FileInfo",
    "Snapshot",
    "parse_http_date",
]

LOCK_NAME = "lock"

# os.utime takes nanoseconds as a C int64: the latest representable mtime is in 2262.
_MAX_MTIME = (2**63 - 1) / 1e9
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO planted at the path must not hang (no effect on regular files).
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_LOCK_FLAGS = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class FileInfo:
    """What fetcher knows of a file on disk: size, mtime in nanoseconds, SHA-256 of its bytes.

    ``sha256`` is the hex digest, or ``""`` when the file was only stat-ed.
    """

    size: int
    mtime_ns: int
    sha256: str


@dataclass(frozen=True)
class Snapshot:
    """A file's bytes, and what describes exactly those bytes.

    ``info`` has the size and mtime from ``fstat`` of the descriptor the bytes were
    read through and the SHA-256 of ``data``; it is None when the file changed while
    it was read (its size or mtime moved), so nothing may be recorded about it.
    """

    data: bytes
    info: FileInfo | None


def _io_error(path: Path, action: str, exc: OSError) -> StoreError:
    why = exc.strerror or str(exc)
    return StoreError(f"cannot {action} {str(path)!r}: {why}", reason="io-error")


@contextlib.contextmanager
def _as_store_error(path: Path, action: str) -> Iterator[None]:
    """Turn an ``OSError`` of the block into a ``StoreError`` naming ``path`` and ``action``."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, StoreError):
            raise
        raise _io_error(path, action, exc) from None


def _not_regular(path: Path, mode: int) -> StoreError:
    kind = "a folder, not a regular file" if stat.S_ISDIR(mode) else "not a regular file"
    return StoreError(f"refusing {str(path)!r}: it is {kind}", reason="io-error")


def _symlink(relpath: str, where: Path) -> UnsafePathError:
    return UnsafePathError(f"path {_short(relpath)} is refused: {str(where)!r} is a symbolic link")


def _names(relpath: str) -> list[str]:
    """The names of ``relpath``; refuse any that could leave its folder or is fetcher's own.

    The list reader has already checked the path (``paths.clean_relpath``); this is the
    store's own lexical guard, cheap enough to run on every access.
    """
    names = relpath.split("/")
    for name in names:
        if name in ("", ".", "..") or "\x00" in name:
            raise UnsafePathError(f"path {_short(relpath)} is refused: bad name {name!r}")
        if name.startswith(TEMP_PREFIX):
            raise UnsafePathError(f"path {_short(relpath)} is refused: {name!r} is fetcher's")
    if names[0].casefold() == STATE_DIR:
        raise UnsafePathError(f"path {_short(relpath)} is refused: {STATE_DIR} is fetcher's")
    return names


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_folder(fd: int) -> None:
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # the filesystem cannot sync folders
            raise


def _create_temp(folder: int) -> tuple[str, int]:
    """Create a new temporary file in the folder ``folder`` (0o666 less the umask)."""
    for _ in range(16):
        name = f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            return name, os.open(name, _TEMP_FLAGS, 0o666, dir_fd=folder)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name")


def _mtime_ns(mtime: float | None) -> int | None:
    if mtime is None:
        return None
    if not (math.isfinite(mtime) and -_MAX_MTIME < mtime < _MAX_MTIME):
        raise ValueError(f"mtime {mtime!r} is not a representable file time")
    return round(mtime * 1_000_000_000)


class Destination:
    """The destination folder, held open: every path below it is walked from its descriptor.

    Open it with :meth:`open` and close it with :meth:`close` (or a ``with`` block).
    Paths are relative, ``/``-separated, as the list reader produces them. A method
    that meets a symbolic link anywhere below the destination raises
    ``UnsafePathError``; any other ``OSError`` becomes ``StoreError`` (reason
    ``io-error``) naming the path and the cause.

    Parameters
    ----------
    path : Path
        The destination, for messages and for :meth:`check`.
    fd : int or None
        Its open descriptor (owned: closed by :meth:`close`); None for a destination
        that does not exist (a dry run on a new destination): it holds no file.
    """

    def __init__(self, path: Path, fd: int | None) -> None:
        self.path = path
        self._fd = fd
        self._identity = None if fd is None else _identity(os.fstat(fd))

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, missing_ok: bool = False) -> Destination:
        """Open the destination folder ``path`` (a symbolic link there is followed, once).

        Parameters
        ----------
        path : path-like
            The destination folder. It is never created here.
        missing_ok : bool
            If the folder does not exist, return an empty destination that holds no
            file (for a dry run) instead of raising.

        Raises
        ------
        StoreError
            The folder does not exist (unless ``missing_ok``), is not a folder, or
            cannot be opened; naming it.
        """
        where = Path(path)
        try:
            fd = os.open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError as exc:
            if missing_ok:
                return cls(where, None)
            raise _io_error(where, "open destination", exc) from None
        except OSError as exc:
            raise _io_error(where, "open destination", exc) from None
        return cls(where, fd)

    @property
    def exists(self) -> bool:
        """False for the empty destination of a dry run on a folder that does not exist."""
        return self._fd is not None

    def close(self) -> None:
        """Close the descriptor; closing twice is harmless."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)

    def __enter__(self) -> Destination:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Destination({str(self.path)!r}, fd={self._fd})"

    # -- the walk ---------------------------------------------------------------------------
    def _folder(self, relpath: str, names: list[str], *, create: bool) -> int | None:
        """Open the folder holding ``names[-1]``, one name at a time; None if it is absent.

        The returned descriptor is the caller's to close. With ``create``, missing
        folders are made (``mkdir`` relative to the parent's descriptor, then opened
        with ``O_NOFOLLOW``, so a link planted in between is met, not followed).
        """
        if self._fd is None:
            if create:
                raise StoreError(f"destination {str(self.path)!r} does not exist")
            return None
        here = os.dup(self._fd)
        where = self.path
        try:
            for name in names[:-1]:
                where = where / name
                child = self._open_folder(here, name, relpath, where, create=create)
                os.close(here)
                here = -1
                if child is None:
                    return None
                here = child
            found, here = here, -1
            return found
        finally:
            if here >= 0:
                os.close(here)

    @staticmethod
    def _open_folder(
        parent: int, name: str, relpath: str, where: Path, *, create: bool
    ) -> int | None:
        for _ in range(8):  # a folder removed or made by someone else between two calls
            try:
                return os.open(name, _DIR_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    return None
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, 0o777, dir_fd=parent)
                continue
            except NotADirectoryError:  # O_NOFOLLOW | O_DIRECTORY: a link or a non-folder
                try:
                    mode = os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode
                except FileNotFoundError:
                    continue
                if stat.S_ISLNK(mode):
                    raise _symlink(relpath, where) from None
                raise StoreError(
                    f"cannot use {str(where)!r} for {_short(relpath)}: it is not a folder",
                    reason="io-error",
                ) from None
            except OSError as exc:
                raise _io_error(where, "open folder", exc) from None
        raise StoreError(f"cannot open folder {str(where)!r}: it keeps changing")

    # -- reading ------------------------------------------------------------------------------
    def stat(self, relpath: str) -> FileInfo | None:
        """Size and mtime of the file at ``relpath`` (``sha256`` is ``""``), None if absent.

        Raises
        ------
        UnsafePathError
            A symbolic link at the file or at a folder on the way.
        StoreError
            The file is a folder or another non-regular file, a folder on the way is a
            file, or it cannot be examined; reason ``io-error``.
        """
        names = _names(relpath)
        target = self.path / relpath
        folder = self._folder(relpath, names, create=False)
        if folder is None:
            return None
        try:
            st = os.stat(names[-1], dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise _io_error(target, "examine", exc) from None
        finally:
            os.close(folder)
        if stat.S_ISLNK(st.st_mode):
            raise _symlink(relpath, target)
        if not stat.S_ISREG(st.st_mode):
            raise _not_regular(target, st.st_mode)
        return FileInfo(size=st.st_size, mtime_ns=st.st_mtime_ns, sha256="")

    def read(self, relpath: str) -> Snapshot | None:
        """The bytes of the file at ``relpath`` and what describes them; None if absent.

        Raises
        ------
        UnsafePathError, StoreError
            As :meth:`stat`, or reading fails (permission denied, I/O error...).
        """
        names = _names(relpath)
        target = self.path / relpath
        folder = self._folder(relpath, names, create=False)
        if folder is None:
            return None
        try:
            fd = _open_to_read(folder, names[-1], relpath, target)
        finally:
            os.close(folder)
        if fd is None:
            return None
        try:
            return _read_described(fd, target)
        finally:
            os.close(fd)

    # -- writing ------------------------------------------------------------------------------
    def write(
        self, relpath: str, data: bytes, *, mtime: float | None = None, keep: str | None = None
    ) -> FileInfo:
        """Replace the file at ``relpath`` with exactly ``data``, atomically and durably.

        Missing folders are created. The bytes go to a new temporary file in the final
        folder, are written and fsynced (after the mtime is set, if given), and the file
        is renamed over the target, both names relative to that folder's descriptor;
        then the folder is fsynced so the rename itself survives a crash. A file already
        there keeps its permission bits; a new file gets 0o666 less the umask.

        Parameters
        ----------
        relpath : str
            The target, relative to the destination.
        data : bytes
            The bytes to write, unchanged.
        mtime : float, optional
            POSIX timestamp to set as the file's modification (and access) time, e.g. the
            origin's ``Last-Modified`` from ``parse_http_date``. None keeps the write time.
        keep : str, optional
            Where to keep the file being replaced, as a path below ``DEST/.fetcher``
            (e.g. ``history/a/b.jpg/<time>.jpg``; see :mod:`fetcher.history`). Once the
            new bytes are durable and before they replace the old file, the old file is
            hard-linked there (copied, fsynced and renamed where links are not possible)
            and that folder fsynced: at every moment the old bytes are at the target, at
            ``keep``, or both. If keeping fails the target is left as it was.

        Returns
        -------
        FileInfo
            Size and mtime from ``fstat`` of the written file's descriptor, and the
            SHA-256 of ``data``: all three describe the same bytes.

        Raises
        ------
        UnsafePathError
            A symbolic link at the target or at a folder on the way.
        StoreError
            The target is a folder or another non-regular file, or any ``OSError`` (no
            space, permission denied, read-only filesystem...); reason ``io-error``, the
            message names the target and the cause. Before the rename the temporary file
            is removed and the old file is untouched; if only the final folder fsync
            fails the new file is in place but may not survive a power loss.
        ValueError
            ``mtime`` is not finite or not representable as a file time.
        """
        mtime_ns = _mtime_ns(mtime)
        names = _names(relpath)
        target = self.path / relpath
        keeper = None if keep is None else functools.partial(self._keep, keep, relpath)
        folder = self._folder(relpath, names, create=True)
        assert folder is not None  # create=True never returns None
        try:
            return _write_in(folder, names[-1], relpath, target, data, mtime_ns, keeper)
        finally:
            os.close(folder)

    # -- fetcher's own files: kept versions under DEST/.fetcher --------------------------------
    def _keep(self, keep: str, relpath: str, folder: int, name: str) -> None:
        """Keep the file ``name`` of ``folder`` at ``DEST/.fetcher/<keep>`` (nothing if absent).

        A hard link where the filesystem allows one (the same inode: no copy, no
        moment without the old bytes), else a copy written like any file (temporary
        file, fsync, rename); then the folder it went to is fsynced.
        """
        names = _internal_names(keep)
        shown = self.path / STATE_DIR / keep
        into = self._folder(f"{STATE_DIR}/{keep}", names, create=True)
        assert into is not None  # create=True never returns None
        try:
            with _as_store_error(shown, f"keep the replaced version of {_short(relpath)} as"):
                try:
                    os.link(
                        name, names[-1], src_dir_fd=folder, dst_dir_fd=into, follow_symlinks=False
                    )
                except FileNotFoundError:
                    return  # nothing there to keep
                except OSError as exc:
                    if exc.errno not in _NO_LINK:
                        raise
                    if not _copy_file(folder, name, into, names[-1], shown):
                        return
                else:
                    kept = os.stat(names[-1], dir_fd=into, follow_symlinks=False)
                    if not stat.S_ISREG(kept.st_mode):  # a link swapped in for the file
                        os.unlink(names[-1], dir_fd=into)
                        return
                _fsync_folder(into)
        finally:
            os.close(into)

    def remove(self, relpath: str, expect: FileInfo, *, keep: str, discard: bool) -> bool:
        """Remove the file at ``relpath`` if its bytes are still exactly ``expect``.

        The file is read through one descriptor and its size, mtime and SHA-256
        compared with ``expect``; only if all three match is it renamed to
        ``DEST/.fetcher/<keep>`` (copied there, then unlinked, if that is another
        filesystem), and the renamed file checked to be the very file that was read
        (same inode, size and mtime), else put back. With ``discard`` it is then
        unlinked from there; otherwise it stays there (a kept version).

        Returns
        -------
        bool
            True if the file was removed; False if it is absent or not ``expect``.

        Raises
        ------
        UnsafePathError, StoreError
            As :meth:`read`, or the rename or unlink fails; or the file changed during
            the removal and could not be put back (it is then at ``keep``, named).
        """
        names = _names(relpath)
        target = self.path / relpath
        folder = self._folder(relpath, names, create=False)
        if folder is None:
            return False
        fd: int | None = None
        try:
            fd = _open_to_read(folder, names[-1], relpath, target)
            if fd is None or _read_described(fd, target).info != expect:
                return False
            knames = _internal_names(keep)
            into = self._folder(f"{STATE_DIR}/{keep}", knames, create=True)
            assert into is not None
            try:
                with _as_store_error(target, "delete"):
                    moved = _move_verified(folder, names[-1], into, knames[-1], fd, expect, target)
                    if moved and discard:
                        os.unlink(knames[-1], dir_fd=into)
                        _fsync_folder(into)
                return moved
            finally:
                os.close(into)
        finally:
            if fd is not None:
                os.close(fd)
            os.close(folder)

    def put_back(self, kept: str, relpath: str, *, keep: str | None = None) -> FileInfo:
        """Move the file ``DEST/.fetcher/<kept>`` to ``relpath``, atomically replacing it.

        The file there now, if any, is first kept at ``DEST/.fetcher/<keep>`` (as
        :meth:`write` keeps a replaced file). The move is one ``rename`` (a copy
        written like any file where ``kept`` is on another filesystem), then both
        folders are fsynced.

        Returns
        -------
        FileInfo
            Size, mtime and SHA-256 of the file now at ``relpath``.

        Raises
        ------
        UnsafePathError
            A symbolic link at ``relpath`` or a folder on the way.
        StoreError
            ``kept`` does not exist or is not a regular file, ``relpath`` is not a
            regular file, or the move fails (``relpath`` is then as it was).
        """
        knames = _internal_names(kept)
        kshown = self.path / STATE_DIR / kept
        kfolder = self._folder(f"{STATE_DIR}/{kept}", knames, create=False)
        if kfolder is None:
            raise StoreError(f"{str(kshown)!r} does not exist", reason="io-error")
        try:
            kfd = _open_to_read(kfolder, knames[-1], kept, kshown)
            if kfd is None:
                raise StoreError(f"{str(kshown)!r} does not exist", reason="io-error")
            try:
                snapshot = _read_described(kfd, kshown)
            finally:
                os.close(kfd)
            if snapshot.info is None:
                raise StoreError(f"{str(kshown)!r} changed while it was read", reason="io-error")
            self._move_in(kfolder, knames[-1], relpath, snapshot, keep)
            return snapshot.info
        finally:
            os.close(kfolder)

    def _move_in(
        self, kfolder: int, kname: str, relpath: str, snapshot: Snapshot, keep: str | None
    ) -> None:
        assert snapshot.info is not None
        names = _names(relpath)
        target = self.path / relpath
        folder = self._folder(relpath, names, create=True)
        assert folder is not None
        try:
            with _as_store_error(target, "restore"):
                _regular_or_absent(folder, names[-1], relpath, target)
                if keep is not None:
                    self._keep(keep, relpath, folder, names[-1])
                try:
                    os.rename(kname, names[-1], src_dir_fd=kfolder, dst_dir_fd=folder)
                except OSError as exc:
                    if exc.errno != errno.EXDEV:
                        raise
                    data, mtime_ns = snapshot.data, snapshot.info.mtime_ns
                    _write_in(folder, names[-1], relpath, target, data, mtime_ns)
                    os.unlink(kname, dir_fd=kfolder)
                _fsync_folder(folder)
                _fsync_folder(kfolder)
        finally:
            os.close(folder)

    def listing(self, folder: str) -> Iterator[tuple[str, list[tuple[str, FileInfo]]]]:
        """Walk ``DEST/.fetcher/<folder>`` (links not followed): each folder's regular files.

        Yields ``(path, [(name, FileInfo), ...])`` per folder, top-down, ``path``
        relative to ``DEST/.fetcher`` and ``sha256`` empty. Nothing if it is absent.
        """
        names = _internal_names(folder)
        top = self._folder(f"{STATE_DIR}/{folder}", [*names, ""], create=False)
        if top is None:
            return
        try:
            for where, _dirs, files, fd in os.fwalk(".", dir_fd=top):
                found = []
                for name in sorted(files):
                    with contextlib.suppress(FileNotFoundError):
                        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                        if stat.S_ISREG(st.st_mode):
                            found.append((name, FileInfo(st.st_size, st.st_mtime_ns, "")))
                yield (folder if where == "." else f"{folder}/{where[2:]}"), found
        except OSError as exc:
            raise _io_error(self.path / STATE_DIR / folder, "list", exc) from None
        finally:
            os.close(top)

    def discard(self, path: str) -> bool:
        """Unlink the regular file ``DEST/.fetcher/<path>``; False if it is not there."""
        shown = self.path / STATE_DIR / path
        return self._in_folder_of(
            path, lambda folder, name: bool(_remove_regular(folder, name, shown, "remove"))
        )

    def tidy(self, folder: str) -> bool:
        """Remove the folder ``DEST/.fetcher/<folder>`` if it is empty; True if removed."""
        return self._in_folder_of(folder, _remove_if_empty)

    def _in_folder_of(self, path: str, act: Callable[[int, str], bool]) -> bool:
        """``act(folder, name)`` on ``DEST/.fetcher/<path>``'s folder; False if it is absent."""
        names = _internal_names(path)
        folder = self._folder(f"{STATE_DIR}/{path}", names, create=False)
        if folder is None:
            return False
        try:
            return act(folder, names[-1])
        finally:
            os.close(folder)

    # -- housekeeping ------------------------------------------------------------------------
    def sweep(self) -> int:
        """Remove the temporary files a killed run left anywhere under the destination.

        Call it only while holding the :class:`DestinationLock`: a running sync's
        temporary files look exactly like stale ones. Folders are walked through their
        descriptors without following symbolic links (``os.fwalk``), ``DEST/.fetcher``
        is skipped, and only regular files whose name starts with ``TEMP_PREFIX`` are
        removed.

        Returns
        -------
        int
            How many files were removed.

        Raises
        ------
        StoreError
            A temporary file that cannot be removed; reason ``io-error``, naming it.
        """
        if self._fd is None:
            return 0
        removed = 0
        for top, dirs, files, folder in os.fwalk(".", dir_fd=self._fd):
            if top == "." and STATE_DIR in dirs:
                dirs.remove(STATE_DIR)
            for name in files:
                if name.startswith(TEMP_PREFIX):
                    removed += _remove_regular(folder, name, self.path / top / name)
        return removed

    def check(self) -> None:
        """Raise unless the destination's path still names the folder this object holds.

        Raises
        ------
        StoreError
            The destination was removed, moved or replaced since it was opened: the
            lock at its path no longer keeps other runs out, so the run must stop.
        """
        if self._fd is None:
            return
        try:
            now = _identity(os.stat(self.path))
        except OSError:
            now = None
        held = os.fstat(self._fd)
        if now != self._identity or held.st_nlink == 0:
            raise StoreError(
                f"destination {str(self.path)!r} was removed or replaced during the run; "
                "stopping (its lock no longer keeps other runs out)"
            )


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


#: link() errors that mean "this filesystem (or this file's owner) allows no hard link here".
_NO_LINK = frozenset(
    {errno.EXDEV, errno.EPERM, errno.EACCES, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}
)


def _internal_names(path: str) -> list[str]:
    """``DEST/.fetcher/<path>`` as names from the destination; refuse any that could leave it."""
    names = path.split("/")
    for name in names:
        if name in ("", ".", "..") or "\x00" in name:
            raise UnsafePathError(f"path {_short(path)} is refused: bad name {name!r}")
    return [STATE_DIR, *names]


def _remove_if_empty(folder: int, name: str) -> bool:
    try:
        os.rmdir(name, dir_fd=folder)
    except OSError:
        return False  # not empty, not there, or not a folder: leave it
    return True


def _open_to_read(folder: int, name: str, relpath: str, target: Path) -> int | None:
    """Open ``name`` in ``folder`` for reading, never following a link; None if absent."""
    try:
        return os.open(name, _READ_FLAGS, dir_fd=folder)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link
            raise _symlink(relpath, target) from None
        raise _io_error(target, "read", exc) from None


def _copy_file(folder: int, name: str, into: int, to: str, shown: Path) -> bool:
    """Copy ``name`` of ``folder`` to ``to`` of ``into`` (mtime kept); False if it is absent."""
    fd = _open_to_read(folder, name, to, shown)
    if fd is None:
        return False
    try:
        snapshot = _read_described(fd, shown)  # a non-regular file is refused here
        mtime_ns = snapshot.info.mtime_ns if snapshot.info else os.fstat(fd).st_mtime_ns
    finally:
        os.close(fd)
    _write_in(into, to, to, shown, snapshot.data, mtime_ns)
    return True


def _move_verified(
    folder: int, name: str, into: int, to: str, fd: int, expect: FileInfo, target: Path
) -> bool:
    """Move ``name`` (read and checked through ``fd``) to ``to``; put it back if it changed.

    Returns True once the very file read through ``fd``, unchanged, is at ``to`` and
    no longer at ``name``; False if it changed between the check and the move.
    """
    held = os.fstat(fd)
    try:
        os.rename(name, to, src_dir_fd=folder, dst_dir_fd=into)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        # Another filesystem: copy the checked bytes there, then unlink the file if it is
        # still the one checked.
        os.lseek(fd, 0, os.SEEK_SET)
        snapshot = _read_described(fd, target)
        if snapshot.info != expect:
            return False
        _write_in(into, to, to, target, snapshot.data, expect.mtime_ns)
        if _identity(os.stat(name, dir_fd=folder, follow_symlinks=False)) != _identity(held):
            os.unlink(to, dir_fd=into)
            return False
        os.unlink(name, dir_fd=folder)
        _fsync_folder(folder)
        return True
    moved = os.stat(to, dir_fd=into, follow_symlinks=False)
    now = os.fstat(fd)
    if _identity(moved) == _identity(held) and (now.st_size, now.st_mtime_ns) == (
        expect.size,
        expect.mtime_ns,
    ):
        _fsync_folder(folder)
        _fsync_folder(into)
        return True
    # Replaced or written to between the check and the rename: put it back.
    try:
        os.link(to, name, src_dir_fd=into, dst_dir_fd=folder, follow_symlinks=False)
    except FileExistsError:
        raise StoreError(
            f"{str(target)!r} changed while it was being deleted and a new file took its "
            "place; the changed file is kept in fetcher's history",
            reason="io-error",
        ) from None
    os.unlink(to, dir_fd=into)
    _fsync_folder(folder)
    return False


def _read_described(fd: int, target: Path) -> Snapshot:
    """Read all of ``fd``; describe the bytes by ``fstat`` before and after reading."""
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise _not_regular(target, before.st_mode)
        with open(fd, "rb", closefd=False) as handle:
            data = handle.read()
        after = os.fstat(fd)
    except OSError as exc:
        if isinstance(exc, StoreError):
            raise
        raise _io_error(target, "read", exc) from None
    stable = (before.st_size, before.st_mtime_ns) == (after.st_size, after.st_mtime_ns)
    if not stable or len(data) != after.st_size:
        return Snapshot(data, None)  # written to while read: these bytes describe nothing
    digest = hashlib.sha256(data).hexdigest()
    return Snapshot(data, FileInfo(size=after.st_size, mtime_ns=after.st_mtime_ns, sha256=digest))


def _regular_or_absent(folder: int, name: str, relpath: str, target: Path) -> os.stat_result | None:
    """``lstat`` of ``name`` in ``folder``: None if absent; a link or non-regular file refused."""
    try:
        old = os.stat(name, dir_fd=folder, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(old.st_mode):
        raise _symlink(relpath, target)
    if not stat.S_ISREG(old.st_mode):
        raise _not_regular(target, old.st_mode)
    return old


def _write_in(
    folder: int,
    name: str,
    relpath: str,
    target: Path,
    data: bytes,
    mtime_ns: int | None,
    keeper: Callable[[int, str], None] | None = None,
) -> FileInfo:
    """The write itself, every call relative to the final folder's descriptor.

    ``keeper(folder, name)``, if given, keeps the old file elsewhere once the new bytes
    are durable, just before they replace it.
    """
    temp: str | None = None
    fd = -1
    try:
        old = _regular_or_absent(folder, name, relpath, target)
        temp, fd = _create_temp(folder)
        if old is not None:
            os.fchmod(fd, stat.S_IMODE(old.st_mode))
        _write_all(fd, data)
        if mtime_ns is not None:
            os.utime(fd, ns=(mtime_ns, mtime_ns))
        os.fsync(fd)
        written = os.fstat(fd)
        os.close(fd)
        fd = -1
        if keeper is not None:
            keeper(folder, name)
        os.replace(temp, name, src_dir_fd=folder, dst_dir_fd=folder)
        temp = None
        _fsync_folder(folder)
    except OSError as exc:
        if isinstance(exc, StoreError):
            raise
        raise _io_error(target, "write", exc) from None
    finally:
        if fd >= 0:
            os.close(fd)
        if temp is not None:
            # if this fails the temporary file stays; the next run's sweep removes it
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=folder)
    return FileInfo(
        size=written.st_size,
        mtime_ns=written.st_mtime_ns,
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _remove_regular(
    folder: int, name: str, shown: Path, action: str = "remove stale temporary file"
) -> int:
    """Unlink the regular file ``name`` in ``folder``: 1 if removed, 0 if not there or not one."""
    try:
        if not stat.S_ISREG(os.stat(name, dir_fd=folder, follow_symlinks=False).st_mode):
            return 0
        os.unlink(name, dir_fd=folder)
    except FileNotFoundError:
        return 0
    except OSError as exc:
        raise _io_error(shown, action, exc) from None
    return 1


class DestinationLock:
    """Exclusive, non-blocking lock on ``DEST/.fetcher/lock`` for one run.

    ``acquire()`` creates the destination and ``DEST/.fetcher`` if needed, opens the
    destination (:attr:`destination`, held for the whole run), takes ``fcntl.flock``
    on the lock file, opened through the destination's descriptor, and writes this
    process's pid into it; ``release()`` (or leaving the ``with`` block) gives both
    up. The lock belongs to the open descriptor, which child processes do not
    inherit; the kernel releases it when the process dies.

    Parameters
    ----------
    dest : Path
        The destination folder.
    create : bool
        True (a run that writes): create the destination, ``.fetcher`` and the lock
        file if missing, and write the pid. False (a dry run): create nothing and
        write nothing; if there is no lock file yet, no run ever wrote here and
        nothing is locked (:attr:`held` stays False).
    """

    def __init__(self, dest: Path, *, create: bool = True) -> None:
        self.dest = dest
        self.path = dest / STATE_DIR / LOCK_NAME
        self.create = create
        self.destination: Destination | None = None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def _not_writable(self, exc: OSError, what: Path) -> StoreError:
        why = exc.strerror or str(exc)
        return StoreError(
            f"destination {str(self.dest)!r} is not writable: cannot create {str(what)!r}: {why}",
            reason="io-error",
        )

    def acquire(self) -> Destination:
        """Open the destination and take the lock, or fail at once.

        Returns
        -------
        Destination
            The destination, held open until ``release()``.

        Raises
        ------
        LockError
            Another run (another process, or another descriptor in this one) holds it;
            the message names the destination, the holder's pid and the lock file.
        StoreError
            The destination or its lock file cannot be created or opened (not
            writable, read-only filesystem, a symbolic link at ``.fetcher``...),
            naming the destination.
        RuntimeError
            This object already holds the lock.
        """
        if self.destination is not None:
            raise RuntimeError(f"the lock {str(self.path)!r} is already held by this object")
        if self.create:
            try:
                self.dest.mkdir(parents=True, exist_ok=True)
            except FileExistsError:
                raise StoreError(
                    f"destination {str(self.dest)!r} is not a folder", reason="io-error"
                ) from None
            except OSError as exc:
                raise self._not_writable(exc, self.dest) from None
        destination = Destination.open(self.dest, missing_ok=not self.create)
        try:
            self._fd = self._lock(destination)
        except BaseException:
            destination.close()
            raise
        self.destination = destination
        _HELD.add(self)
        return destination

    def _lock(self, destination: Destination) -> int | None:
        """Open the lock file through the destination's descriptor and flock it."""
        if not destination.exists:
            return None
        assert destination._fd is not None
        try:
            if self.create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(STATE_DIR, 0o777, dir_fd=destination._fd)
            state_dir = os.open(STATE_DIR, _DIR_FLAGS, dir_fd=destination._fd)
        except FileNotFoundError:
            if not self.create:
                return None
            raise StoreError(f"destination {str(self.dest)!r} vanished") from None
        except OSError as exc:
            raise self._not_writable(exc, self.path.parent) from None
        try:
            flags = _LOCK_FLAGS | (os.O_CREAT if self.create else 0)
            fd = os.open(LOCK_NAME, flags, 0o644, dir_fd=state_dir)
        except FileNotFoundError:
            return None  # a dry run where no run ever took the lock
        except OSError as exc:
            raise self._not_writable(exc, self.path) from None
        finally:
            os.close(state_dir)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = _read_pid(fd)
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise LockError(
                    f"destination {str(self.dest)!r} is locked by another fetcher run "
                    f"(pid {holder}, lock file {str(self.path)!r})"
                ) from None
            raise _io_error(self.path, "lock", exc) from None
        if self.create:
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            except OSError as exc:
                os.close(fd)
                raise _io_error(self.path, "write", exc) from None
        return fd

    def release(self) -> None:
        """Give the lock and the destination up; nothing happens if they are not held."""
        fd, self._fd = self._fd, None
        destination, self.destination = self.destination, None
        _HELD.discard(self)
        if destination is not None:
            destination.close()
        if fd is None:
            return
        try:
            if self.create:
                os.ftruncate(fd, 0)  # no stale pid for the next reader; the file itself stays
        except OSError:
            pass
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> DestinationLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


_HELD: weakref.WeakSet[DestinationLock] = weakref.WeakSet()


def _drop_locks_in_child() -> None:
    """After fork, in the child: close the inherited lock descriptors (the parent keeps its lock).

    flock belongs to the open file description, which a forked child shares; while any
    copy stays open the lock stays held, even after the parent has died.
    """
    for lock in list(_HELD):
        fd, lock._fd = lock._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_drop_locks_in_child)


def _read_pid(fd: int) -> str:
    """The pid written in the lock file, or ``"unknown"``."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return "unknown"
    return text if text.isdigit() else "unknown"


def parse_http_date(value: str) -> float | None:
    """Turn an HTTP date (``Last-Modified``) into a POSIX timestamp for the file's mtime.

    Accepts the three forms of RFC 9110 section 5.6.7 (IMF-fixdate, obsolete RFC 850,
    asctime); a date without a zone counts as UTC (HTTP dates are always GMT).

    Parameters
    ----------
    value : str
        The header value as received.

    Returns
    -------
    float or None
        Seconds since the epoch, or None if ``value`` is not a valid date or lies
        outside what a file time can hold (after 2262).
    """
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    stamp = when.timestamp()
    if not -_MAX_MTIME < stamp < _MAX_MTIME:
        return None
    return stamp
