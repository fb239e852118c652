"""Tests for fetcher.store: atomic writes under faults, symlinks, leftovers, lock, HTTP dates."""

from __future__ import annotations

import calendar
import errno
import hashlib
import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetcher import store
from fetcher.errors import LockError, StoreError
from fetcher.store import (
    STATE_DIR,
    TEMP_PREFIX,
    DestinationLock,
    atomic_write,
    clean_stale_temporaries,
    file_info,
    parse_http_date,
    read_file,
)

REPO = Path(__file__).resolve().parents[1]
# RFC 9110 section 5.6.7's example date, computed independently of the parser.
EXAMPLE_STAMP = calendar.timegm((1994, 11, 6, 8, 49, 37, 0, 0, 0))


def temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(f"{TEMP_PREFIX}*")]


# --- atomic_write: the happy path -------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 4096, 3 * 1024 * 1024 + 7])
def test_atomic_write_exact_bytes(tmp_path: Path, rng: np.random.Generator, size: int) -> None:
    data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
    target = tmp_path / "img.bin"
    info = atomic_write(target, data)
    assert target.read_bytes() == data
    assert info.size == size == target.stat().st_size
    assert info.sha256 == hashlib.sha256(data).hexdigest()
    assert info.mtime_ns == target.stat().st_mtime_ns
    assert temporaries(tmp_path) == []


def test_atomic_write_sets_mtime(tmp_path: Path) -> None:
    target = tmp_path / "a.png"
    info = atomic_write(target, b"x", mtime=EXAMPLE_STAMP + 0.5)
    expected_ns = EXAMPLE_STAMP * 10**9 + 500_000_000
    assert target.stat().st_mtime_ns == expected_ns
    assert info.mtime_ns == expected_ns
    assert file_info(target) == store.FileInfo(size=1, mtime_ns=expected_ns, sha256="")


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), 1e19])
def test_atomic_write_refuses_unrepresentable_mtime(tmp_path: Path, bad: float) -> None:
    with pytest.raises(ValueError, match="mtime"):
        atomic_write(tmp_path / "a", b"x", mtime=bad)
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_creates_folders(tmp_path: Path) -> None:
    target = tmp_path / "host" / "deep" / "er" / "img.jpg"
    atomic_write(target, b"jpeg")
    assert target.read_bytes() == b"jpeg"


def test_atomic_write_replaces_and_keeps_mode(tmp_path: Path) -> None:
    target = tmp_path / "img.gif"
    target.write_bytes(b"old bytes, longer than the new ones")
    target.chmod(0o640)
    atomic_write(target, b"new")
    assert target.read_bytes() == b"new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert temporaries(tmp_path) == []


def test_atomic_write_new_file_follows_umask(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "f", b"x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o640


def test_atomic_write_handles_short_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rng: np.random.Generator
) -> None:
    real_write = os.write
    calls = []

    def short_write(fd: int, data: Any) -> int:
        calls.append(fd)
        return real_write(fd, bytes(data)[:7])

    data = rng.integers(0, 256, 100, dtype=np.uint8).tobytes()
    monkeypatch.setattr(os, "write", short_write)
    atomic_write(tmp_path / "f", data)
    monkeypatch.undo()
    assert (tmp_path / "f").read_bytes() == data
    assert len(calls) == 15  # ceil(100 / 7): the loop went on until every byte was written


def test_atomic_write_fsyncs_file_then_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_fsync = os.fsync
    synced: list[tuple[str, bool]] = []  # (kind, target in place yet)
    target = tmp_path / "img.png"

    def spy(fd: int) -> None:
        kind = "folder" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        synced.append((kind, target.exists()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    atomic_write(target, b"x")
    assert synced == [("file", False), ("folder", True)]


# tmp_path is shared by the examples on purpose: later examples overwrite earlier files.
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=2048), name=st.sampled_from(["a", "b.png", "sub/c.jpg"]))
def test_atomic_write_round_trip_property(tmp_path: Path, data: bytes, name: str) -> None:
    target = tmp_path / "prop" / name
    info = atomic_write(target, data)
    assert read_file(target) == data
    assert info.size == len(data)


# --- atomic_write: faults leave the old file intact -------------------------------------


def inject(
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    code: int,
    *,
    only: Callable[..., bool] = lambda *a, **k: True,
) -> None:
    """Make ``os.<name>`` raise OSError(code) whenever ``only`` accepts its arguments."""
    real = getattr(os, name)

    def fake(*args: Any, **kwargs: Any) -> Any:
        if only(*args, **kwargs):
            raise OSError(code, os.strerror(code))
        return real(*args, **kwargs)

    monkeypatch.setattr(os, name, fake)


def creating(path: Any, flags: int, *args: Any, **kwargs: Any) -> bool:
    return bool(flags & os.O_CREAT)


FAULTS = [
    pytest.param("write", errno.ENOSPC, {}, "No space left on device", id="ENOSPC-write"),
    pytest.param("fsync", errno.ENOSPC, {}, "No space left on device", id="ENOSPC-fsync"),
    pytest.param("fsync", errno.EIO, {}, "Input/output error", id="EIO-fsync"),
    pytest.param("open", errno.EACCES, {"only": creating}, "Permission denied", id="EACCES-open"),
    pytest.param("replace", errno.EROFS, {}, "Read-only file system", id="EROFS-replace"),
    pytest.param("utime", errno.EPERM, {}, "Operation not permitted", id="EPERM-utime"),
]


@pytest.mark.parametrize(("name", "code", "kw", "text"), FAULTS)
def test_atomic_write_fault_keeps_old_file(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    code: int,
    kw: dict[str, Any],
    text: str,
) -> None:
    target = tmp_path / "img.png"
    target.write_bytes(b"the good old image")
    os.utime(target, ns=(10**18, 10**18))
    inject(monkeypatch, name, code, **kw)
    with pytest.raises(StoreError) as caught:
        atomic_write(target, b"new bytes" * 1000, mtime=EXAMPLE_STAMP)
    monkeypatch.undo()
    assert caught.value.reason == "io-error"
    assert str(target) in str(caught.value) and text in str(caught.value)
    assert isinstance(caught.value, OSError)
    assert target.read_bytes() == b"the good old image"
    assert target.stat().st_mtime_ns == 10**18
    assert temporaries(tmp_path) == []


def test_atomic_write_fault_on_new_file_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    inject(monkeypatch, "write", errno.ENOSPC)
    with pytest.raises(StoreError, match="No space left"):
        atomic_write(tmp_path / "new.png", b"data")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_atomic_write_folder_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"a file where a folder should be")
    with pytest.raises(StoreError, match="file"):
        atomic_write(tmp_path / "file" / "img.png", b"x")
    assert (tmp_path / "file").read_bytes() == b"a file where a folder should be"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_atomic_write_read_only_folder_for_real(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "img").write_bytes(b"old")
    folder.chmod(0o555)
    try:
        with pytest.raises(StoreError, match="Permission denied"):
            atomic_write(folder / "img", b"new")
    finally:
        folder.chmod(0o755)
    assert (folder / "img").read_bytes() == b"old"


# --- symbolic links and other non-files at the target -----------------------------------


def test_atomic_write_refuses_symlink_at_target(tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_bytes(b"precious")
    dest = tmp_path / "dest"
    dest.mkdir()
    link = dest / "img.png"
    link.symlink_to(outside)
    with pytest.raises(StoreError, match="symbolic link") as caught:
        atomic_write(link, b"attack")
    assert caught.value.reason == "io-error"
    assert outside.read_bytes() == b"precious"
    assert link.is_symlink()
    assert temporaries(dest) == []


def test_dangling_symlink_is_not_written_through(tmp_path: Path) -> None:
    link = tmp_path / "img.png"
    link.symlink_to(tmp_path / "would-be-created")
    with pytest.raises(StoreError, match="symbolic link"):
        atomic_write(link, b"x")
    assert not (tmp_path / "would-be-created").exists()


def test_read_and_stat_refuse_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"secret")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(StoreError, match="symbolic link"):
        read_file(tmp_path / "link")
    with pytest.raises(StoreError, match="symbolic link"):
        file_info(tmp_path / "link")


def test_fifo_at_target_is_refused_without_hanging(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "img")
    for call in (lambda p: atomic_write(p, b"x"), read_file, file_info):
        with pytest.raises(StoreError, match="not a regular file"):
            call(tmp_path / "img")


def test_folder_at_target_is_refused(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    for call in (lambda p: atomic_write(p, b"x"), read_file, file_info):
        with pytest.raises(StoreError, match="not a regular file"):
            call(tmp_path / "img")


# --- read_file and file_info -------------------------------------------------------------


def test_read_file(tmp_path: Path) -> None:
    assert read_file(tmp_path / "missing") is None
    assert read_file(tmp_path / "no" / "folder") is None
    (tmp_path / "f").write_bytes(b"\x00\xffbytes")
    assert read_file(tmp_path / "f") == b"\x00\xffbytes"


def test_read_file_permission_denied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "f").write_bytes(b"x")
    inject(monkeypatch, "open", errno.EACCES)
    with pytest.raises(StoreError, match="Permission denied") as caught:
        read_file(tmp_path / "f")
    monkeypatch.undo()
    assert str(tmp_path / "f") in str(caught.value)


def test_file_info(tmp_path: Path) -> None:
    assert file_info(tmp_path / "missing") is None
    target = tmp_path / "f"
    target.write_bytes(b"12345")
    os.utime(target, ns=(1, 123_456_789_012_345_678))
    assert file_info(target) == store.FileInfo(size=5, mtime_ns=123_456_789_012_345_678, sha256="")


# --- stale temporary files ---------------------------------------------------------------


def test_clean_stale_temporaries(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    (dest / "a" / "b").mkdir(parents=True)
    (dest / STATE_DIR).mkdir()
    stale = [
        dest / f"{TEMP_PREFIX}1",
        dest / "a" / f"{TEMP_PREFIX}2",
        dest / "a" / "b" / f"{TEMP_PREFIX}3",
    ]
    keep = [
        dest / "a" / "img.png",
        dest / "a" / f"x{TEMP_PREFIX}y",  # the prefix, but not at the start
        dest / STATE_DIR / f"{TEMP_PREFIX}state",  # the state folder is not swept
    ]
    for path in stale + keep:
        path.write_bytes(b"x")
    (dest / f"{TEMP_PREFIX}folder").mkdir()  # a folder is not a temporary file
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / f"{TEMP_PREFIX}9").write_bytes(b"not ours")
    (dest / "linked").symlink_to(outside)  # links are not followed

    assert clean_stale_temporaries(dest) == 3
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in keep)
    assert (dest / f"{TEMP_PREFIX}folder").is_dir()
    assert (outside / f"{TEMP_PREFIX}9").exists()
    assert clean_stale_temporaries(dest) == 0
    assert clean_stale_temporaries(tmp_path / "missing") == 0


def test_clean_stale_temporaries_unremovable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / f"{TEMP_PREFIX}1").write_bytes(b"x")
    inject(monkeypatch, "unlink", errno.EACCES)
    with pytest.raises(StoreError, match=f"{TEMP_PREFIX}1.*Permission denied"):
        clean_stale_temporaries(tmp_path)


# --- the destination lock ----------------------------------------------------------------


def test_lock_held_by_another_descriptor(tmp_path: Path) -> None:
    first = DestinationLock(tmp_path)
    first.acquire()
    lock_file = tmp_path / STATE_DIR / "lock"
    assert lock_file.read_text().strip() == str(os.getpid())
    with pytest.raises(LockError) as caught:
        DestinationLock(tmp_path).acquire()
    message = str(caught.value)
    assert message == (
        f"destination {str(tmp_path)!r} is locked by another fetcher run "
        f"(pid {os.getpid()}, lock file {str(lock_file)!r})"
    )
    assert caught.value.reason == "locked"
    first.release()
    first.release()  # harmless
    with DestinationLock(tmp_path) as again:
        assert again.held
    assert not again.held
    assert lock_file.exists()  # never deleted


def test_lock_acquire_twice_is_a_bug(tmp_path: Path) -> None:
    with DestinationLock(tmp_path) as lock, pytest.raises(RuntimeError):
        lock.acquire()


LOCK_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from fetcher.store import DestinationLock
    lock = DestinationLock(Path(sys.argv[1]))
    lock.acquire()
    print("locked", flush=True)
    time.sleep(60)
    """
)


def test_lock_of_killed_process_does_not_block(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    child = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(tmp_path)],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "locked"
        with pytest.raises(LockError, match=f"pid {child.pid},"):
            DestinationLock(tmp_path).acquire()
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    # The dead run's pid is still written in the file, but the kernel has dropped its lock.
    assert (tmp_path / STATE_DIR / "lock").read_text().strip() == str(child.pid)
    with DestinationLock(tmp_path) as lock:
        assert lock.held


def test_lock_destination_not_creatable(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.write_bytes(b"a file, not a folder")
    with pytest.raises(StoreError) as caught:
        DestinationLock(dest).acquire()
    assert not isinstance(caught.value, LockError)
    assert f"destination {str(dest)!r} is not writable" in str(caught.value)


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_lock_destination_not_writable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    inject(monkeypatch, "open", code)
    with pytest.raises(StoreError, match=os.strerror(code)) as caught:
        DestinationLock(tmp_path).acquire()
    monkeypatch.undo()
    assert not isinstance(caught.value, LockError)
    assert str(tmp_path) in str(caught.value)


# --- HTTP dates --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Sun, 06 Nov 1994 08:49:37 GMT", EXAMPLE_STAMP),  # IMF-fixdate
        ("Sunday, 06-Nov-94 08:49:37 GMT", EXAMPLE_STAMP),  # obsolete RFC 850
        ("Sun Nov  6 08:49:37 1994", EXAMPLE_STAMP),  # asctime, no zone: GMT
        ("  Sun, 06 Nov 1994 08:49:37 GMT ", EXAMPLE_STAMP),
        ("Sun, 06 Nov 1994 09:49:37 +0100", EXAMPLE_STAMP),
        ("Thu, 01 Jan 1970 00:00:00 GMT", 0),
    ],
)
def test_parse_http_date(value: str, expected: int) -> None:
    assert parse_http_date(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "Sun, 31 Feb 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 25:49:37 GMT",
        "Sun, 06 Nov 99999 08:49:37 GMT",
        "Fri, 01 Jan 3000 00:00:00 GMT",  # beyond what a file time in ns can hold
        "1994-11-06T08:49:37Z",
    ],
)
def test_parse_http_date_bad(value: str) -> None:
    assert parse_http_date(value) is None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_parse_http_date_never_raises(value: str) -> None:
    result = parse_http_date(value)
    assert result is None or isinstance(result, float)
