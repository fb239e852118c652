"""The destination on disk: read and atomically write files, lock the destination, sweep leftovers.

Writes never tear a file: the bytes go to a temporary file ``.fetcher-tmp-XXXX`` in the
target's own folder, which is flushed and fsynced (with its mtime set, when given)
before ``os.replace`` puts it in place and the folder is fsynced, so after a crash at
any point the target is either the old file or the new one, byte for byte. A killed
run can leave a temporary file behind; ``clean_stale_temporaries`` removes them at the
start of the next run, under the destination lock.

The lock is ``fcntl.flock`` on ``DEST/.fetcher/lock``, held on an open descriptor for
the whole run: the kernel drops it when the process ends, however it ends, so a lock
left by a killed run never blocks the next one. The file holds the holder's pid, for
the message a second run prints; it is never deleted (deleting a lock file lets two
runs lock two different files). A process forked while the lock is held (a worker
pool) closes its inherited copy of the descriptor at once, so a forked child that
outlives a killed run cannot keep the destination locked.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import math
import os
import secrets
import stat
import weakref
from dataclasses import dataclass
from datetime import UTC
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType

from .errors import LockError, StoreError, UnsafePathError
from .paths import STATE_DIR, TEMP_PREFIX, _short, clean_relpath

__all__ = [
    "LOCK_NAME",
    "STATE_DIR",
    "TEMP_PREFIX",
    "DestinationLock",
    "FileInfo",
    "atomic_write",
    "clean_stale_temporaries",
    "file_info",
    "parse_http_date",
    "read_file",
    "safe_join",
]

LOCK_NAME = "lock"

# os.utime takes nanoseconds as a C int64: the latest representable mtime is in 2262.
_MAX_MTIME = (2**63 - 1) / 1e9
# O_NONBLOCK: opening a FIFO planted at the path must not hang (no effect on regular files).
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
_TEMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


@dataclass(frozen=True)
class FileInfo:
    """What fetcher knows of a file on disk: size, mtime in nanoseconds, SHA-256 of its bytes.

    ``sha256`` is the hex digest, or ``""`` when only the file was stat-ed (``file_info``).
    """

    size: int
    mtime_ns: int
    sha256: str


def _io_error(path: Path, action: str, exc: OSError) -> StoreError:
    why = exc.strerror or str(exc)
    return StoreError(f"cannot {action} {str(path)!r}: {why}", reason="io-error")


def _not_regular(path: Path, mode: int) -> StoreError:
    kind = "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file"
    return StoreError(f"refusing {str(path)!r}: it is {kind}", reason="io-error")


def file_info(path: Path) -> FileInfo | None:
    """Stat the file at ``path`` without reading it.

    Parameters
    ----------
    path : Path
        The file; a symbolic link at ``path`` is not followed.

    Returns
    -------
    FileInfo or None
        Size and mtime (``sha256`` is ``""``), or None if nothing is there.

    Raises
    ------
    StoreError
        ``path`` is a symbolic link, a folder or another non-regular file, or cannot
        be examined (e.g. permission denied); reason ``io-error``.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _io_error(path, "examine", exc) from None
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(path, st.st_mode)
    return FileInfo(size=st.st_size, mtime_ns=st.st_mtime_ns, sha256="")


def read_file(path: Path) -> bytes | None:
    """Read the whole file at ``path``.

    Parameters
    ----------
    path : Path
        The file; a symbolic link at ``path`` is not followed.

    Returns
    -------
    bytes or None
        The file's bytes, or None if nothing is there.

    Raises
    ------
    StoreError
        ``path`` is a symbolic link or not a regular file, or reading fails
        (permission denied, I/O error...); reason ``io-error``.
    """
    try:
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW met a symbolic link
            raise _not_regular(path, stat.S_IFLNK) from None
        raise _io_error(path, "read", exc) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(path, mode)
        with open(fd, "rb", closefd=False) as handle:
            return handle.read()
    except OSError as exc:
        if isinstance(exc, StoreError):
            raise
        raise _io_error(path, "read", exc) from None
    finally:
        os.close(fd)


def _check_target(path: Path) -> int | None:
    """The permission bits of the regular file at ``path``, None if absent; refuse anything else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(path, st.st_mode)
    return stat.S_IMODE(st.st_mode)


def _create_temp(folder: Path) -> tuple[Path, int]:
    """Create a new temporary file in ``folder`` (mode 0o666 less the umask); name and fd."""
    for _ in range(16):
        temp = folder / f"{TEMP_PREFIX}{secrets.token_hex(8)}"
        try:
            return temp, os.open(temp, _TEMP_FLAGS, 0o666)
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no free temporary file name", str(folder))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):  # the filesystem cannot sync folders
            raise
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, *, mtime: float | None = None) -> FileInfo:
    """Replace the file at ``path`` with exactly ``data``, atomically and durably.

    The bytes go to a new temporary file ``TEMP_PREFIX + random`` in ``path``'s folder
    (created with its parents if missing), are written, fsynced (after the mtime is
    set, if given), and the file is moved over ``path`` with ``os.replace``; then the
    folder is fsynced so the rename itself survives a crash. A file already at
    ``path`` keeps its permission bits; a new file gets 0o666 less the umask.

    Parameters
    ----------
    path : Path
        The target file. The caller has already checked its parents (``urls.safe_join``);
        ``path`` itself must not be a symbolic link.
    data : bytes
        The bytes to write, unchanged.
    mtime : float, optional
        POSIX timestamp to set as the file's modification (and access) time, e.g. the
        origin's ``Last-Modified`` from ``parse_http_date``. None keeps the write time.

    Returns
    -------
    FileInfo
        Size, mtime in nanoseconds and SHA-256 of the file as written.

    Raises
    ------
    StoreError
        ``path`` is a symbolic link, a folder or another non-regular file, or any
        ``OSError`` (no space, permission denied, read-only filesystem...); reason
        ``io-error``, the message names ``path`` and the cause. Before the rename the
        temporary file is removed and the old file is untouched; if only the final
        folder fsync fails the new file is in place but may not survive a power loss.
    ValueError
        ``mtime`` is not finite or not representable as a file time (before 1970 is
        allowed; after 2262 is not).
    """
    mtime_ns = None
    if mtime is not None:
        if not (math.isfinite(mtime) and -_MAX_MTIME < mtime < _MAX_MTIME):
            raise ValueError(f"mtime {mtime!r} is not a representable file time")
        mtime_ns = round(mtime * 1_000_000_000)
    folder = path.parent
    temp: Path | None = None
    fd = -1
    try:
        folder.mkdir(parents=True, exist_ok=True)
        old_mode = _check_target(path)
        temp, fd = _create_temp(folder)
        if old_mode is not None:
            os.fchmod(fd, old_mode)
        _write_all(fd, data)
        if mtime_ns is not None:
            os.utime(fd, ns=(mtime_ns, mtime_ns))
        os.fsync(fd)
        written_ns = os.fstat(fd).st_mtime_ns
        os.close(fd)
        fd = -1
        os.replace(temp, path)
        temp = None
        _fsync_folder(folder)
    except OSError as exc:
        if isinstance(exc, StoreError):
            raise
        raise _io_error(path, "write", exc) from None
    finally:
        if fd >= 0:
            os.close(fd)
        if temp is not None:
            try:
                os.unlink(temp)
            except FileNotFoundError:
                pass
            except OSError:  # the temporary file stays; the next run's sweep removes it
                pass
    return FileInfo(size=len(data), mtime_ns=written_ns, sha256=hashlib.sha256(data).hexdigest())


def clean_stale_temporaries(dest: Path) -> int:
    """Remove the temporary files a killed run left anywhere under ``dest``.

    Call it only while holding the ``DestinationLock``: a running sync's temporary
    files look exactly like stale ones. Folders are walked without following symbolic
    links, ``DEST/.fetcher`` is skipped, and only regular files whose name starts with
    ``TEMP_PREFIX`` are removed.

    Parameters
    ----------
    dest : Path
        The destination folder; a missing one holds nothing to clean.

    Returns
    -------
    int
        How many files were removed.

    Raises
    ------
    StoreError
        A temporary file that cannot be removed; reason ``io-error``, naming it.
    """
    removed = 0
    for top, dirs, files in os.walk(dest):
        if top == os.fspath(dest) and STATE_DIR in dirs:
            dirs.remove(STATE_DIR)
        for name in files:
            if not name.startswith(TEMP_PREFIX):
                continue
            leftover = Path(top, name)
            try:
                if not stat.S_ISREG(os.lstat(leftover).st_mode):
                    continue
                os.unlink(leftover)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise _io_error(leftover, "remove stale temporary file", exc) from None
            removed += 1
    return removed


class DestinationLock:
    """Exclusive, non-blocking lock on ``DEST/.fetcher/lock`` for one run.

    ``acquire()`` creates ``DEST/.fetcher`` if needed, takes ``fcntl.flock`` on the lock
    file and writes this process's pid into it; ``release()`` (or leaving the ``with``
    block) gives it up. The lock belongs to the open descriptor, which child processes
    do not inherit; the kernel releases it when the process dies.

    Parameters
    ----------
    dest : Path
        The destination folder.
    """

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.path = dest / STATE_DIR / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock or fail at once.

        Raises
        ------
        LockError
            Another run (another process, or another descriptor in this one) holds it;
            the message names the destination, the holder's pid and the lock file.
        StoreError
            The destination or its lock file cannot be created or opened (not
            writable, read-only filesystem...), naming the destination.
        RuntimeError
            This object already holds the lock.
        """
        if self._fd is not None:
            raise RuntimeError(f"the lock {str(self.path)!r} is already held by this object")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise StoreError(
                f"destination {str(self.dest)!r} is not writable: cannot create "
                f"{str(self.path)!r}: {why}",
                reason="io-error",
            ) from None
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
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        except OSError as exc:
            os.close(fd)
            raise _io_error(self.path, "write", exc) from None
        self._fd = fd
        _HELD.add(self)

    def release(self) -> None:
        """Give the lock up; nothing happens if it is not held."""
        fd, self._fd = self._fd, None
        _HELD.discard(self)
        if fd is None:
            return
        try:
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


def _refuse_path(relpath: str, why: str) -> UnsafePathError:
    return UnsafePathError(f"path {_short(relpath)} is refused: {why}")


def safe_join(dest: Path, relpath: str) -> Path:
    """Join ``relpath`` under ``dest``, refusing any way out of ``dest``.

    Every existing component below ``dest`` (the file itself included) is checked
    with ``lstat``: a symbolic link anywhere below ``dest`` is refused, even one that
    points inside it, since the target would change behind fetcher's back. ``dest``
    itself may be a link. The joined path, normalised, must lie under ``dest``.

    Parameters
    ----------
    dest : Path
        The destination folder (it need not exist yet).
    relpath : str
        A relative path; it is checked with ``clean_relpath`` first.

    Returns
    -------
    Path
        ``dest / relpath`` (not resolved).

    Raises
    ------
    UnsafePathError
        ``relpath`` is refused by ``clean_relpath``, crosses a symbolic link below
        ``dest``, or leads outside ``dest``.
    StoreError
        A component cannot be examined (e.g. permission denied); reason ``io-error``.
    """
    clean = clean_relpath(relpath)
    here = dest
    for name in clean.split("/"):
        here = here / name
        try:
            mode = os.lstat(here).st_mode
        except FileNotFoundError:
            break
        except OSError as exc:  # e.g. a component that is a file, not a folder
            if exc.errno == errno.ENOTDIR:  # nothing can exist below a file
                break
            raise StoreError(f"cannot check {str(here)!r} for {_short(relpath)}: {exc}") from None
        if stat.S_ISLNK(mode):
            raise _refuse_path(relpath, f"{str(here)!r} is a symbolic link")
    # With no link below dest, a lexical check is exact; resolve() would lstat every
    # component from / again. It repeats clean_relpath's refusal of "..", in case a
    # future change to the cleaning lets one through.
    root = os.path.abspath(dest)
    if not os.path.normpath(os.path.join(root, clean)).startswith(root.rstrip("/") + "/"):
        raise _refuse_path(relpath, f"it leads outside {root!r}")
    return dest / clean
