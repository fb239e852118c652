"""Tests for fetcher.store: atomic writes under faults, symlinks, leftovers, lock, HTTP dates."""

from __future__ import annotations

import calendar
import errno
import hashlib
import os
import re
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
from conftest import BUILT_URL, SEGMENT, URLISH, swapping_for_a_link
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetcher.errors import LockError, StoreError, UnsafePathError, UrlError
from fetcher.paths import clean_relpath, url_to_path
from fetcher.store import (
    STATE_DIR,
    TEMP_PREFIX,
    Destination,
    DestinationLock,
    FileInfo,
    Snapshot,
    parse_http_date,
)
from fetcher.urllist import validate_url

REPO = Path(__file__).resolve().parents[1]
# RFC 9110 section 5.6.7's example date, computed independently of the parser.
EXAMPLE_STAMP = calendar.timegm((1994, 11, 6, 8, 49, 37, 0, 0, 0))


def temporaries(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(f"{TEMP_PREFIX}*")]


def atomic_write(path: Path, data: bytes, *, mtime: float | None = None) -> FileInfo:
    """Write ``path`` through a Destination opened on the test's ``tmp_path``."""
    root, rel = _split(path)
    root.mkdir(parents=True, exist_ok=True)
    with Destination.open(root) as dest:
        return dest.write(rel, data, mtime=mtime)


def read_file(path: Path) -> bytes | None:
    snapshot = read_snapshot(path)
    return None if snapshot is None else snapshot.data


def read_snapshot(path: Path) -> Snapshot | None:
    root, rel = _split(path)
    with Destination.open(root) as dest:
        return dest.read(rel)


def file_info(path: Path) -> FileInfo | None:
    root, rel = _split(path)
    with Destination.open(root) as dest:
        return dest.stat(rel)


def _split(path: Path) -> tuple[Path, str]:
    """The test's ``tmp_path`` (a folder in ``.../pytest-N/``) and ``path`` relative to it."""
    for parent in path.parents:
        if re.fullmatch(r"pytest-\d+", parent.parent.name):
            return parent, str(path.relative_to(parent))
    raise AssertionError(f"{path} is not under a pytest tmp_path")


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
    assert file_info(target) == FileInfo(size=1, mtime_ns=expected_ns, sha256="")


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
    with pytest.raises(UnsafePathError, match="symbolic link") as caught:
        atomic_write(link, b"attack")
    assert caught.value.reason == "unsafe-path"
    assert outside.read_bytes() == b"precious"
    assert link.is_symlink()
    assert temporaries(dest) == []


def test_dangling_symlink_is_not_written_through(tmp_path: Path) -> None:
    link = tmp_path / "img.png"
    link.symlink_to(tmp_path / "would-be-created")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        atomic_write(link, b"x")
    assert not (tmp_path / "would-be-created").exists()


def test_read_and_stat_refuse_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").write_bytes(b"secret")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        read_file(tmp_path / "link")
    with pytest.raises(UnsafePathError, match="symbolic link"):
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
    inject(monkeypatch, "open", errno.EACCES, only=lambda path, *a, **k: os.fsdecode(path) == "f")
    with pytest.raises(StoreError, match="Permission denied") as caught:
        read_file(tmp_path / "f")
    monkeypatch.undo()
    assert str(tmp_path / "f") in str(caught.value)


def test_file_info(tmp_path: Path) -> None:
    assert file_info(tmp_path / "missing") is None
    target = tmp_path / "f"
    target.write_bytes(b"12345")
    os.utime(target, ns=(1, 123_456_789_012_345_678))
    assert file_info(target) == FileInfo(size=5, mtime_ns=123_456_789_012_345_678, sha256="")


# --- stale temporary files ---------------------------------------------------------------


def sweep(dest: Path) -> int:
    with Destination.open(dest, missing_ok=True) as root:
        return root.sweep()


def test_sweep_removes_stale_temporaries_only(tmp_path: Path) -> None:
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

    assert sweep(dest) == 3
    assert not any(p.exists() for p in stale)
    assert all(p.exists() for p in keep)
    assert (dest / f"{TEMP_PREFIX}folder").is_dir()
    assert (outside / f"{TEMP_PREFIX}9").exists()
    assert sweep(dest) == 0
    assert sweep(tmp_path / "missing") == 0


def test_sweep_names_an_unremovable_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / f"{TEMP_PREFIX}1").write_bytes(b"x")
    inject(monkeypatch, "unlink", errno.EACCES)
    with pytest.raises(StoreError, match=f"{TEMP_PREFIX}1.*Permission denied"):
        sweep(tmp_path)


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
    assert str(caught.value) == f"destination {str(dest)!r} is not a folder"
    assert dest.read_bytes() == b"a file, not a folder"


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


# --- the walk: every path below the destination through folder descriptors -------------


def test_paths_below_the_destination_are_walked_and_folders_made(tmp_path: Path) -> None:
    with Destination.open(tmp_path) as root:
        assert root.stat("a/b.jpg") is None and root.read("a/b.jpg") is None
        info = root.write("a/b.jpg", b"x")
        assert (tmp_path / "a" / "b.jpg").read_bytes() == b"x"
        assert root.stat("a/b.jpg") == FileInfo(info.size, info.mtime_ns, "")
        snapshot = root.read("a/b.jpg")
        assert snapshot is not None and snapshot.data == b"x" and snapshot.info == info


def test_a_planted_symlink_at_a_folder_or_file_is_refused(tmp_path: Path) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (outside / "victim.jpg").write_bytes(b"precious")
    (dest / "host").symlink_to(outside, target_is_directory=True)
    (dest / "b").mkdir()
    (dest / "b" / "victim.jpg").symlink_to(outside / "victim.jpg")
    with Destination.open(dest) as root:
        for rel in ("host/a.jpg", "host/victim.jpg", "b/victim.jpg"):
            for call in (root.stat, root.read, lambda r: root.write(r, b"attack")):
                with pytest.raises(UnsafePathError, match="symbolic link") as caught:
                    call(rel)
                assert caught.value.reason == "unsafe-path"
    assert sorted(p.name for p in outside.iterdir()) == ["victim.jpg"]
    assert (outside / "victim.jpg").read_bytes() == b"precious"


def test_a_link_inside_is_refused_and_a_linked_destination_is_followed(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "inner").mkdir(parents=True)
    (real / "alias").symlink_to(real / "inner", target_is_directory=True)
    with Destination.open(real) as root, pytest.raises(UnsafePathError, match="symbolic link"):
        root.write("alias/a.jpg", b"x")
    link = tmp_path / "dest-link"
    link.symlink_to(real, target_is_directory=True)
    with Destination.open(link) as root:
        root.write("inner/a.jpg", b"x")
    assert (real / "inner" / "a.jpg").read_bytes() == b"x"


@pytest.mark.parametrize(
    "bad", ["../x.jpg", "/etc/passwd", "a//b", "./a", "a\x00b", ".fetcher/lock", "a/.fetcher-tmp-1"]
)
def test_the_store_refuses_names_that_leave_a_folder_or_are_its_own(
    tmp_path: Path, bad: str
) -> None:
    with Destination.open(tmp_path) as root:
        for call in (root.stat, root.read, lambda r: root.write(r, b"x")):
            with pytest.raises(UnsafePathError, match="refused"):
                call(bad)
    assert list(tmp_path.iterdir()) == []


def test_a_file_where_a_folder_should_be_is_an_io_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    with Destination.open(tmp_path) as root:
        for call in (root.stat, root.read, lambda r: root.write(r, b"x")):
            with pytest.raises(StoreError, match="not a folder") as caught:
                call("f/x.jpg")
            assert caught.value.reason == "io-error"
            assert str(tmp_path / "f") in str(caught.value)
    assert (tmp_path / "f").read_bytes() == b""


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_an_unreadable_folder_is_an_io_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        with Destination.open(tmp_path) as root, pytest.raises(StoreError) as info:
            root.stat("locked/a/b.jpg")
        assert info.value.reason == "io-error"
    finally:
        locked.chmod(0o700)


def test_a_relative_destination(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    for dest in (".", "d", "d/", "d/../d"):
        with Destination.open(dest) as root:
            root.write("a/b.jpg", dest.encode())
            assert (Path(dest) / "a" / "b.jpg").read_bytes() == dest.encode()


def test_a_missing_destination_holds_nothing_and_is_never_created(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(StoreError, match="missing"):
        Destination.open(missing)
    with Destination.open(missing, missing_ok=True) as root:
        assert not root.exists
        assert root.stat("a/b.jpg") is None and root.read("a/b.jpg") is None
        assert root.sweep() == 0
        with pytest.raises(StoreError, match="does not exist"):
            root.write("a/b.jpg", b"x")
    assert not missing.exists()


def test_a_folder_swapped_for_a_symlink_mid_walk_is_never_followed(tmp_path: Path) -> None:
    """A thread swaps the folder ``d`` for a link to ``outside`` while 300 files are written."""
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    (dest / "d").mkdir(parents=True)
    outside.mkdir()
    refused = 0
    with Destination.open(dest) as root, swapping_for_a_link(dest / "d", outside) as swaps:
        for i in range(300):
            try:
                root.write(f"d/{i:03d}.png", b"%d" % i)
            except (UnsafePathError, StoreError):
                refused += 1
    assert swaps[0] > 0
    assert list(outside.iterdir()) == []  # nothing, ever, through the link
    written = {p.name: p.read_bytes() for p in dest.rglob("*.png")}
    assert len(written) == 300 - refused
    assert all(body == b"%d" % int(name[:3]) for name, body in written.items())


def assert_inside(dest: Path, rel: str) -> None:
    """The invariants of a path written below the destination."""
    path = Path(rel)
    assert not path.is_absolute()
    assert path.parts and ".." not in path.parts and "." not in path.parts
    assert "\x00" not in rel
    assert all(len(part.encode("utf-8")) <= 255 for part in path.parts)
    assert (dest / rel).resolve().is_relative_to(dest.resolve())
    assert path.parts[0].casefold() != ".fetcher"
    assert not any(p.casefold().startswith(".fetcher-tmp-") for p in path.parts)


@pytest.fixture(scope="module")
def dest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dest")


SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def write_or_refuse(dest: Path, rel: str) -> bool:
    """Write ``rel`` below ``dest``: True if written (and then found there), False if refused."""
    try:
        with Destination.open(dest) as root:
            root.write(rel, rel.encode("utf-8", "surrogatepass"))
    except UnsafePathError as exc:
        assert exc.reason == "unsafe-path"
        return False
    except StoreError as exc:  # a file where an earlier example made a folder, a long name
        assert exc.reason == "io-error" and str(dest) in str(exc), exc
        return False
    assert (dest / rel).read_bytes() == rel.encode("utf-8", "surrogatepass")
    return True


@SETTINGS
@given(path=st.text(max_size=60) | st.lists(SEGMENT, min_size=1, max_size=6).map("/".join))
def test_any_list_path_is_refused_or_lands_inside(dest: Path, path: str) -> None:
    try:
        rel = clean_relpath(path)
    except UnsafePathError:
        return
    assert clean_relpath(rel) == rel
    if write_or_refuse(dest, rel):
        assert_inside(dest, rel)


@SETTINGS
@given(url=st.text(max_size=80) | URLISH | BUILT_URL, layout=st.sampled_from(["host/path", "path"]))
def test_any_url_is_refused_or_lands_inside(dest: Path, url: str, layout: str) -> None:
    try:
        rel = url_to_path(validate_url(url), layout=layout)
    except UrlError as exc:
        assert exc.reason == "bad-url"
        return
    assert clean_relpath(rel) == rel  # derived paths are already clean
    if write_or_refuse(dest, rel):
        assert_inside(dest, rel)


@SETTINGS
@given(path=st.text(max_size=60) | st.lists(SEGMENT, min_size=1, max_size=6).map("/".join))
def test_the_store_alone_keeps_any_path_inside(dest: Path, path: str) -> None:
    """Even a path the list reader never checked cannot leave the destination."""
    if path and write_or_refuse(dest, path):
        assert_inside(dest, path)


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


# -- removing a file only if it is still the one fetcher wrote (--delete) ------------------------
def _written(tmp_path: Path, data: bytes = b"fetcher wrote this") -> tuple[Destination, FileInfo]:
    (tmp_path / "d").mkdir(exist_ok=True)
    dest = Destination.open(tmp_path / "d")
    return dest, dest.write("x/y.png", data)


def test_remove_deletes_only_the_exact_bytes_and_keeps_them_when_asked(tmp_path: Path) -> None:
    dest, info = _written(tmp_path)
    with dest:
        other = FileInfo(info.size, info.mtime_ns, "0" * 64)
        assert dest.remove("x/y.png", other, keep="history/x/y.png/v", discard=True) is False
        assert (tmp_path / "d/x/y.png").exists()
        assert dest.remove("x/y.png", info, keep="history/x/y.png/v", discard=False) is True
        assert not (tmp_path / "d/x/y.png").exists()
        assert (tmp_path / "d/.fetcher/history/x/y.png/v").read_bytes() == b"fetcher wrote this"
        assert dest.remove("x/y.png", info, keep="history/x/y.png/w", discard=True) is False


def test_remove_puts_back_a_file_swapped_in_between_the_check_and_the_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest, info = _written(tmp_path)
    target = tmp_path / "d/x/y.png"
    real_rename = os.rename

    def swap_first(src: Any, dst: Any, **kwargs: Any) -> None:
        monkeypatch.setattr(os, "rename", real_rename)
        target.with_name("new").write_bytes(b"a hand put this here")
        real_rename(target.with_name("new"), target)  # someone replaces the file just now
        real_rename(src, dst, **kwargs)

    monkeypatch.setattr(os, "rename", swap_first)
    with dest:
        assert dest.remove("x/y.png", info, keep="history/x/y.png/v", discard=True) is False
    assert target.read_bytes() == b"a hand put this here"
    assert not (tmp_path / "d/.fetcher/history/x/y.png/v").exists()


def test_remove_across_filesystems_copies_then_unlinks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest, info = _written(tmp_path)

    def cross_device(*args: Any, **kwargs: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "rename", cross_device)
    with dest:
        assert dest.remove("x/y.png", info, keep="history/x/y.png/v", discard=False) is True
    assert not (tmp_path / "d/x/y.png").exists()
    kept = tmp_path / "d/.fetcher/history/x/y.png/v"
    assert (kept.read_bytes(), kept.stat().st_mtime_ns) == (b"fetcher wrote this", info.mtime_ns)
