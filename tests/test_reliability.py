"""Reliability of ``fetcher sync`` end to end: crashes, disk and state faults, hostile input."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import encode, swapping_for_a_link
from origin import Origin
from PIL import Image
from test_probe import frame_bomb_gif

import fetcher.ladder
import fetcher.state
from fetcher.cli import main
from fetcher.config import load_config
from fetcher.errors import StateError, StoreError
from fetcher.mirror import sync
from fetcher.report import Report, Result
from fetcher.state import State
from fetcher.store import TEMP_PREFIX, DestinationLock

REPO = Path(__file__).resolve().parents[1]
STATE = Path(".fetcher") / "state.sqlite3"

#: Small timeouts and backoff so that every fault ends within seconds.
FAST: dict[str, dict[str, Any]] = {
    "sync": {"workers": 2, "per_host": 2},
    "http": {
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
        "deadline": 10.0,
        "retries": 1,
        "backoff": 0.01,
        "backoff_max": 0.05,
    },
}

#: The child process: ``fetcher sync`` through the CLI, optionally on a slow disk (every
#: os.write at most 256 KiB and 4 ms, every fsync 30 ms) so that a kill lands mid-write.
CHILD = """
import os, sys, time
if os.environ.get("FETCHER_TEST_SLOW_DISK"):
    _write, _fsync = os.write, os.fsync
    def write(fd, data):
        time.sleep(0.004)
        return _write(fd, data[:262144])
    def fsync(fd):
        time.sleep(0.03)
        _fsync(fd)
    os.write, os.fsync = write, fsync
import fetcher.ladder
import fetcher.state
from fetcher.cli import main
sys.exit(main(sys.argv[1:]))
"""


# -- helpers -----------------------------------------------------------------------------------
class QuietOrigin(Origin):
    """The loopback origin without socketserver's tracebacks when a client hangs up."""

    def start(self) -> QuietOrigin:
        super().start()
        assert self._server is not None
        self._server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        return self


@pytest.fixture
def origin() -> Iterator[Origin]:
    with QuietOrigin() as served:
        yield served


def write_config(path: Path, **overrides: dict[str, Any]) -> Path:
    sections = {name: dict(keys) for name, keys in FAST.items()}
    for name, keys in overrides.items():
        sections.setdefault(name, {}).update(keys)
    text = "".join(
        f"[{name}]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
        for name, keys in sections.items()
    )
    path.write_text(text, encoding="utf-8")
    return path


def noise_png(rng: np.random.Generator, width: int, height: int) -> bytes:
    """Incompressible RGB noise as PNG: about 3 bytes a pixel, and no two alike."""
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels, "RGB"), "PNG", compress_level=0)


def tiny_png(seed: int, side: int = 8) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels, "RGB"), "PNG")


def png_header_only(width: int, height: int) -> bytes:
    """A valid PNG signature and IHDR claiming ``width`` x ``height``, then a tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data)
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 49, 9)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def many_frames_gif(n: int) -> bytes:
    """An 8x8 animated GIF of ``n`` distinct frames (Pillow would merge equal ones)."""
    frames = [Image.new("P", (8, 8), i % 256) for i in range(n)]
    for i, frame in enumerate(frames):
        frame.putpixel((i % 8, (i // 8) % 8), (i * 7 + 1) % 256)
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=10)


def temporaries(dest: Path) -> list[Path]:
    return [p for p in dest.rglob(f"{TEMP_PREFIX}*")]


def files_under(root: Path) -> dict[str, bytes]:
    """Every regular file under ``root`` outside ``.fetcher``, by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and not p.is_symlink() and p.relative_to(root).parts[0] != ".fetcher"
    }


def child_env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path, **extra}


@dataclass
class Child:
    """A ``fetcher`` CLI child process with its output in files."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    @classmethod
    def start(cls, tmp: Path, name: str, argv: list[str], *, slow_disk: bool = False) -> Child:
        out, err = tmp / f"{name}.out", tmp / f"{name}.err"
        env = child_env(FETCHER_TEST_SLOW_DISK="1") if slow_disk else child_env()
        with out.open("wb") as o, err.open("wb") as e:
            command = [sys.executable, "-c", CHILD, *argv]
            proc = subprocess.Popen(command, stdout=o, stderr=e, env=env)
        return cls(proc, out, err)

    def wait_rusage(self, timeout: float = 60) -> tuple[int, int]:
        """Reap the child: exit code (negative: killed by that signal) and peak RSS in KiB."""
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                self.proc.kill()
                raise AssertionError(f"child still running after {timeout} s")
            time.sleep(0.01)
        code = os.waitstatus_to_exitcode(status)
        self.proc.returncode = code
        return code, usage.ru_maxrss

    def wait(self, timeout: float = 60) -> int:
        return self.wait_rusage(timeout)[0]

    @property
    def stderr(self) -> str:
        return self.err.read_text("utf-8", "replace")


def children_of(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    """True if ``pid`` runs (a zombie waiting for init to reap it counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def wait_for(condition: Callable[[], bool], timeout: float, poll: float = 0.0005) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll)
    return False


def read_report(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


def run_cli(
    capsys: pytest.CaptureFixture[str], urls: Path, dest: Path, config: Path, report: Path
) -> tuple[int, str, list[dict[str, Any]]]:
    """``fetcher sync`` in-process: exit code, stderr and the JSON-lines report."""
    capsys.readouterr()
    argv = ["sync", str(urls), "--dest", str(dest), "--config", str(config)]
    code = main([*argv, "--report", str(report)])
    err = capsys.readouterr().err
    rows = read_report(report) if report.exists() else []
    return code, err, rows


def run_lib(lines: Any, dest: Path, config: Path) -> tuple[Report, list[Result]]:
    """``sync()`` in-process: the report and every result."""
    results: list[Result] = []
    report = sync(lines, dest, load_config(config), on_result=results.append)
    return report, results


def reasons(rows: list[dict[str, Any]] | list[Result]) -> dict[str, tuple[str, str]]:
    dicts = [row if isinstance(row, dict) else row.to_dict() for row in rows]
    return {row["url"]: (row["outcome"], row["reason"]) for row in dicts}


def state_records(dest: Path) -> dict[str, tuple[Any, ...]]:
    with sqlite3.connect(f"file:{dest / STATE}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT url, path, size, mtime_ns, sha256 FROM records").fetchall()
    return {row[0]: row[1:] for row in rows}


def assert_state_matches_disk(dest: Path) -> None:
    """Every record describes its file exactly as it is on disk (size, mtime, SHA-256)."""
    for url, (path, size, mtime_ns, sha) in state_records(dest).items():
        st = (dest / path).stat()
        assert (size, mtime_ns) == (st.st_size, st.st_mtime_ns), url
        assert sha == hashlib.sha256((dest / path).read_bytes()).hexdigest(), url


# -- 1. crash safety ---------------------------------------------------------------------------
@dataclass
class BigMirror:
    origin: Origin
    dest: Path
    urls: Path
    config: Path
    old: dict[str, bytes]  # relative destination path -> bytes
    new: dict[str, bytes]

    def argv(self, *extra: str) -> list[str]:
        return [
            *("sync", str(self.urls), "--dest", str(self.dest), "--config", str(self.config)),
            *extra,
        ]

    def path_of(self, rel: str) -> Path:
        return self.dest / rel

    def publish_new(self) -> None:
        for rel, body in self.new.items():
            self.origin.publish("/" + rel, body)

    def assert_never_torn(self) -> None:
        """Every destination file is byte for byte the old or the new image."""
        for rel in self.old:
            data = self.path_of(rel).read_bytes()
            assert data == self.old[rel] or data == self.new[rel], f"{rel} is torn"

    def replaced(self, inodes: dict[str, int]) -> int:
        return sum(1 for rel, ino in inodes.items() if self.path_of(rel).stat().st_ino != ino)


def big_mirror(origin: Origin, tmp: Path, count: int) -> BigMirror:
    """``count`` 1-2.5 MB images mirrored once (in-process), and their next versions."""
    rng = np.random.default_rng(4)
    sides = rng.integers(600, 900, count)  # old and new of one path: same size in bytes
    old = {f"big/{i:02d}.png": noise_png(rng, int(s), int(s)) for i, s in enumerate(sides)}
    new = {rel: noise_png(rng, int(s), int(s)) for rel, s in zip(old, sides, strict=True)}
    for rel, body in old.items():
        origin.publish("/" + rel, body)
    urls = tmp / "big.txt"
    urls.write_text("".join(f"{origin.url(rel)} {rel}\n" for rel in old), encoding="utf-8")
    config = write_config(tmp / "big.toml")
    dest = tmp / "dest"
    with urls.open(encoding="utf-8") as lines:
        first = sync(lines, dest, load_config(config))
    assert first.exit_code == 0
    return BigMirror(origin, dest, urls, config, old, new)


@pytest.mark.slow
def test_sigkill_at_any_point_never_tears_a_file_and_the_next_run_finishes(
    origin: Origin, tmp_path: Path
) -> None:
    m = big_mirror(origin, tmp_path, 16)
    inodes = {rel: m.path_of(rel).stat().st_ino for rel in m.old}
    m.publish_new()
    folder = m.dest / "big"

    def writing() -> bool:
        """A temporary file exists, or (were writes not atomic) a target has a torn size."""
        if any(e.name.startswith(TEMP_PREFIX) for e in os.scandir(folder)):
            return True
        return any(m.path_of(rel).stat().st_size != len(m.old[rel]) for rel in m.old)

    kill_points: list[tuple[str, Callable[[], bool]]] = [
        ("while downloading", lambda: any(r.status == 200 for r in origin.requests)),
        ("while writing", writing),
        ("after 5 files", lambda: m.replaced(inodes) >= 5),
        ("after 11 files", lambda: m.replaced(inodes) >= 11),
    ]
    torn_temporaries = 0
    for i, (when, condition) in enumerate(kill_points):
        origin.clear_log()
        child = Child.start(tmp_path, f"kill{i}", m.argv(), slow_disk=True)
        assert wait_for(condition, timeout=30), f"never reached: {when}"
        child.proc.send_signal(signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL, when
        m.assert_never_torn()
        for temp in temporaries(m.dest):
            size = temp.stat().st_size
            torn_temporaries += size not in {len(b) for b in m.new.values()}
    assert torn_temporaries >= 1  # at least one kill really landed inside a write
    assert m.replaced(inodes) >= 11

    # the next run sweeps the leftovers and finishes the job
    final = Child.start(tmp_path, "final", m.argv("--report", str(tmp_path / "final.jsonl")))
    assert final.wait() == 0, final.stderr
    assert temporaries(m.dest) == []
    assert {rel: m.path_of(rel).read_bytes() for rel in m.old} == m.new
    rows = read_report(tmp_path / "final.jsonl")
    assert len(rows) == len(m.old)
    assert {r["outcome"] for r in rows} <= {"changed", "unchanged"}
    assert_state_matches_disk(m.dest)

    # and the state is consistent: one more run is all 304, nothing rewritten
    settled = {rel: m.path_of(rel).stat().st_ino for rel in m.old}
    origin.clear_log()
    with m.urls.open(encoding="utf-8") as lines:
        _, again = run_lib(lines, m.dest, m.config)
    assert set(reasons(again).values()) == {("unchanged", "not-modified")}
    assert all(r.status == 304 for r in origin.requests)
    assert {rel: m.path_of(rel).stat().st_ino for rel in m.old} == settled


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_and_ctrl_c_end_with_130_and_a_flushed_report_and_state(
    origin: Origin, tmp_path: Path, signum: int
) -> None:
    m = big_mirror(origin, tmp_path, 12)
    m.publish_new()
    report = tmp_path / "stopped.jsonl"
    child = Child.start(tmp_path, "stopped", m.argv("--report", str(report)), slow_disk=True)

    def three_lines_written() -> bool:  # the report grows beside its name until the end
        return any(p.read_text("utf-8").count("\n") >= 3 for p in tmp_path.glob(".stopped*"))

    assert wait_for(three_lines_written, timeout=30)
    child.proc.send_signal(signum)
    assert child.wait() == 130
    err = child.stderr
    assert "interrupted" in err and "Traceback" not in err
    rows = read_report(report)  # every line is whole JSON
    assert 3 <= len(rows) < len(m.old)
    assert len({r["url"] for r in rows}) == len(rows)
    m.assert_never_torn()
    assert temporaries(m.dest) == []  # in-flight writes finished or were discarded
    done = {r["path"] for r in rows if r["outcome"] == "changed"}
    assert done
    for rel in done:
        assert m.path_of(rel).read_bytes() == m.new[rel]
    # the state was flushed: what the interrupted run wrote is a 304 now
    origin.clear_log()
    with m.urls.open(encoding="utf-8") as lines:
        _, after = run_lib(lines, m.dest, m.config)
    decided = {r.path: (r.outcome, r.reason) for r in after}
    for rel in done:
        assert decided[rel] == ("unchanged", "not-modified"), rel
    assert {rel: m.path_of(rel).read_bytes() for rel in m.old} == m.new


def test_an_interrupt_while_a_result_is_recorded_loses_neither_report_nor_state(
    origin: Origin, tmp_path: Path
) -> None:
    """Ctrl-C landing between a result's report line and its state record waits for both."""
    bodies = {f"i/{n:02d}.png": tiny_png(n, side=16) for n in range(20)}
    for rel, body in bodies.items():
        origin.publish("/" + rel, body)
    lines = [f"{origin.url(rel)} {rel}" for rel in bodies]
    dest = tmp_path / "dest"
    seen: list[Result] = []

    def interrupt_on_third(result: Result) -> None:
        seen.append(result)
        if len(seen) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # handled in this (the main) thread, right here

    config = load_config(write_config(tmp_path / "c.toml"))
    report = sync(lines, dest, config, on_result=interrupt_on_third)
    assert report.interrupted and report.exit_code == 130
    assert report.total == len(seen) >= 3
    records = state_records(dest)
    for result in seen:  # every reported result is remembered, with its file as on disk
        assert result.url in records, result.path
    assert_state_matches_disk(dest)
    assert temporaries(dest) == []


# -- 4. overlapping runs -----------------------------------------------------------------------
@pytest.mark.slow
def test_a_second_run_exits_2_at_once_and_a_killed_holder_does_not_block(
    origin: Origin, tmp_path: Path
) -> None:
    origin.publish("/a.png", tiny_png(1))
    origin.publish("/slow.png", tiny_png(2))
    origin.fault("/slow.png", "stall", seconds=30)
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{origin.url('/a.png')} a.png\n{origin.url('/slow.png')} slow.png\n")
    config = write_config(tmp_path / "c.toml", http={"read_timeout": 60.0, "deadline": 60.0})
    dest = tmp_path / "dest"
    argv = ["sync", str(urls), "--dest", str(dest), "--config", str(config)]
    holder = Child.start(tmp_path, "holder", argv)
    assert wait_for(lambda: bool(origin.requests_for("/slow.png")), timeout=30)

    second = Child.start(tmp_path, "second", argv)
    assert second.wait() == 2
    assert holder.proc.poll() is None  # at once: it did not wait for the holder to end
    err = second.stderr
    lock = dest / ".fetcher" / "lock"
    assert str(lock) in err and str(holder.proc.pid) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert len(origin.requests_for("/a.png")) == 1  # only the holder's

    workers = children_of(holder.proc.pid)  # e.g. its compare processes
    holder.proc.send_signal(signal.SIGKILL)
    assert holder.wait() == -signal.SIGKILL
    # nothing of the killed run lives on (orphans would pile up under a cron job)
    try:
        assert wait_for(lambda: not any(alive(pid) for pid in workers), timeout=5, poll=0.05)
    finally:
        for pid in workers:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert lock.read_text().strip() == str(holder.proc.pid)  # left behind by the dead run
    origin.clear_fault("/slow.png")
    third = Child.start(tmp_path, "third", argv)
    assert third.wait() == 0, third.stderr
    assert (dest / "slow.png").read_bytes() == tiny_png(2)


def test_a_locked_out_run_never_touches_the_running_runs_report(
    origin: Origin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Overlapping cron runs: the second exits 2 and never opens the first one's report."""
    go = threading.Event()
    origin.publish("/a.png", tiny_png(1))
    origin.publish("/slow.png", tiny_png(2))
    origin.fault("/slow.png", "wait", event=go)
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{origin.url('/a.png')} a.png\n{origin.url('/slow.png')} slow.png\n")
    config = write_config(tmp_path / "c.toml")
    dest, report = tmp_path / "dest", tmp_path / "r.jsonl"
    report.write_text('{"previous": "report"}\n')  # what the run before left
    argv = ["sync", str(urls), "--dest", str(dest), "--config", str(config)]
    first = Child.start(tmp_path, "first", [*argv, "--report", str(report)])
    try:
        assert wait_for(lambda: bool(origin.requests_for("/slow.png")), timeout=60)
        partial = list(tmp_path.glob(".r.jsonl.*.part"))
        assert len(partial) == 1  # the first run writes beside the final name
        capsys.readouterr()
        assert main([*argv, "--report", str(report)]) == 2
        assert "locked by another fetcher run" in capsys.readouterr().err
        assert report.read_text() == '{"previous": "report"}\n'  # untouched until the end
        assert list(tmp_path.glob(".r.jsonl.*.part")) == partial
    finally:
        go.set()
    assert first.wait() == 0, first.stderr
    rows = read_report(report)  # whole, renamed into place at the end
    assert sorted(row["path"] for row in rows) == ["a.png", "slow.png"]
    assert list(tmp_path.glob(".r.jsonl.*")) == []


def test_a_child_forked_during_a_run_does_not_keep_the_lock(tmp_path: Path) -> None:
    """A worker process forked while the lock is held must not hold it after the run."""
    dest = tmp_path / "dest"
    ready, tell = os.pipe()
    with DestinationLock(dest):
        child = os.fork()
        if child == 0:  # pragma: no cover - the child says it runs, then only sleeps
            os.write(tell, b"x")
            time.sleep(30)
            os._exit(0)
        assert os.read(ready, 1) == b"x"  # the child is past its fork hooks
    os.close(ready)
    os.close(tell)
    try:
        with DestinationLock(dest):  # the run is over, its forked child still lives
            pass
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


# -- 2. disk faults ----------------------------------------------------------------------------
@dataclass
class DiskFaults:
    """Injected OS errors, each for the files of one folder of the destination."""

    write: dict[Path, int]  # os.write on files opened in the folder
    fsync: dict[Path, int]
    create: dict[Path, int]  # os.open with O_CREAT in the folder (by path or folder descriptor)
    read: dict[Path, int]  # os.open read-only of a file in the folder

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        real_open, real_write, real_fsync = os.open, os.write, os.fsync
        fd_folder: dict[int, Path] = {}

        def folder_of(path: Any, dir_fd: int | None) -> Path:
            base = Path(os.readlink(f"/proc/self/fd/{dir_fd}")) if dir_fd is not None else Path()
            return (base / os.fsdecode(path)).parent

        def fake_open(path: Any, flags: int, mode: int = 0o777, *, dir_fd: Any = None) -> int:
            folder = folder_of(path, dir_fd)
            writing = flags & (os.O_CREAT | os.O_WRONLY | os.O_RDWR)
            table = self.create if writing else self.read
            if folder in table and not flags & os.O_DIRECTORY:
                code = table[folder]
                raise OSError(code, os.strerror(code), os.fsdecode(path))
            fd = real_open(path, flags, mode, dir_fd=dir_fd)
            fd_folder[fd] = folder
            return fd

        def fake_write(fd: int, data: Any) -> int:
            code = self.write.get(fd_folder.get(fd, Path("/nonexistent")))
            if code is not None:
                raise OSError(code, os.strerror(code))
            return real_write(fd, data)

        def fake_fsync(fd: Any) -> None:
            code = self.fsync.get(fd_folder.get(fd, Path("/nonexistent")))
            if code is not None:
                raise OSError(code, os.strerror(code))
            real_fsync(fd)

        monkeypatch.setattr(os, "open", fake_open)
        monkeypatch.setattr(os, "write", fake_write)
        monkeypatch.setattr(os, "fsync", fake_fsync)


DISK_CASES = {
    "full-on-write": ("write", errno.ENOSPC, "No space left on device"),
    "full-on-fsync": ("fsync", errno.ENOSPC, "No space left on device"),
    "folder-not-writable": ("create", errno.EACCES, "Permission denied"),
    "file-not-readable": ("read", errno.EACCES, "Permission denied"),
    "read-only-folder": ("create", errno.EROFS, "Read-only file system"),
}


def test_disk_faults_fail_only_their_url_naming_the_path_and_keep_the_old_file(
    origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(7)
    names = [*DISK_CASES, "fine"]
    old = {name: noise_png(rng, 40, 30) for name in names}
    new = {name: noise_png(rng, 40, 30) for name in names}
    for name, body in old.items():
        origin.publish(f"/{name}.png", body)
    lines = [f"{origin.url(f'/{name}.png')} {name}/img.png" for name in names]
    dest = tmp_path / "dest"
    config = write_config(tmp_path / "c.toml")
    assert run_lib(lines, dest, config)[0].exit_code == 0
    for name, body in new.items():
        origin.publish(f"/{name}.png", body)

    faults = DiskFaults({}, {}, {}, {})
    for name, (where, code, _) in DISK_CASES.items():
        getattr(faults, where)[dest / name] = code
    with monkeypatch.context() as patch:
        faults.install(patch)
        report, results = run_lib(lines, dest, config)
    assert report.exit_code == 1
    by_path = {r.path: r for r in results}
    for name, (_, _, words) in DISK_CASES.items():
        result = by_path[f"{name}/img.png"]
        assert (result.outcome, result.reason) == ("failed", "io-error"), name
        assert str(dest / name / "img.png") in (result.error or ""), name
        assert words in (result.error or ""), name
        assert (dest / name / "img.png").read_bytes() == old[name], name
    assert (by_path["fine/img.png"].outcome, by_path["fine/img.png"].reason) == (
        "changed",
        "dissimilar",
    )
    assert (dest / "fine" / "img.png").read_bytes() == new["fine"]
    assert temporaries(dest) == []

    # the disk heals: the failed URLs are fetched again and written, the good one is a 304
    healed, results = run_lib(lines, dest, config)
    assert healed.exit_code == 0
    decided = {r.path: (r.outcome, r.reason) for r in results}
    assert decided["fine/img.png"] == ("unchanged", "not-modified")
    for name in DISK_CASES:
        assert decided[f"{name}/img.png"] == ("changed", "dissimilar")
    assert files_under(dest) == {f"{n}/img.png": b for n, b in new.items()}


def test_a_read_only_destination_exits_2_naming_it_and_changes_nothing(
    origin: Origin,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    origin.publish("/a.png", tiny_png(1))
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{origin.url('/a.png')} a.png\n")
    dest = tmp_path / "dest"
    config = write_config(tmp_path / "c.toml")
    assert run_cli(capsys, urls, dest, config, tmp_path / "r1.jsonl")[0] == 0
    origin.publish("/a.png", tiny_png(2))
    origin.clear_log()
    faults = DiskFaults({}, {}, {dest / ".fetcher": errno.EROFS, dest: errno.EROFS}, {})
    with monkeypatch.context() as patch:
        faults.install(patch)
        code, err, _ = run_cli(capsys, urls, dest, config, tmp_path / "r2.jsonl")
    assert code == 2
    assert str(dest) in err and "Read-only file system" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert origin.requests == []
    assert (dest / "a.png").read_bytes() == tiny_png(1)


# -- 3. state faults ---------------------------------------------------------------------------
def _truncate(state: Path) -> None:
    data = state.read_bytes()
    state.write_bytes(data[: len(data) // 2 + 100])


def _corrupt_page(state: Path) -> None:
    data = bytearray(state.read_bytes())
    page = 4096
    data[page : 2 * page] = np.random.default_rng(3).bytes(page)
    state.write_bytes(bytes(data))


def _newer_schema(state: Path) -> None:
    with sqlite3.connect(state) as conn:
        conn.execute("PRAGMA user_version = 99")
    conn.close()


@pytest.fixture
def small_mirror(
    origin: Origin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> tuple[Path, Path, Path, dict[str, bytes]]:
    """Forty small images mirrored once through the CLI: list, dest, config, bytes by path."""
    bodies = {f"img/{i:02d}.png": tiny_png(i, side=16) for i in range(40)}
    for rel, body in bodies.items():
        origin.publish("/" + rel, body)
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(f"{origin.url(rel)} {rel}\n" for rel in bodies), encoding="utf-8")
    dest = tmp_path / "dest"
    config = write_config(tmp_path / "c.toml")
    code, err, _ = run_cli(capsys, urls, dest, config, tmp_path / "first.jsonl")
    assert code == 0, err
    return urls, dest, config, bodies


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        pytest.param(_truncate, "corrupted or truncated", id="truncated"),
        pytest.param(_corrupt_page, "corrupted", id="corrupted-page"),
        pytest.param(_newer_schema, "newer fetcher", id="newer-schema"),
    ],
)
def test_an_unusable_state_exits_2_naming_it_and_touches_nothing(
    small_mirror: tuple[Path, Path, Path, dict[str, bytes]],
    origin: Origin,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    damage: Callable[[Path], None],
    words: str,
) -> None:
    urls, dest, config, _ = small_mirror
    state = dest / STATE
    assert not Path(f"{state}-wal").exists()  # checkpointed at the end of the run
    damage(state)
    damaged = state.read_bytes()
    before = {p: p.stat().st_mtime_ns for p in dest.rglob("*.png")}
    origin.clear_log()
    code, err, rows = run_cli(capsys, urls, dest, config, tmp_path / "r.jsonl")
    assert code == 2
    assert str(state) in err and words in err
    assert "move it aside" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert rows == [] and origin.requests == []
    assert state.read_bytes() == damaged  # never reset behind the user's back
    assert {p: p.stat().st_mtime_ns for p in dest.rglob("*.png")} == before


def test_a_lost_state_costs_full_downloads_but_rewrites_nothing(
    small_mirror: tuple[Path, Path, Path, dict[str, bytes]],
    origin: Origin,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    urls, dest, config, _ = small_mirror
    for leftover in (dest / ".fetcher").glob("state.sqlite3*"):
        leftover.unlink()
    inodes = {p: p.stat().st_ino for p in dest.rglob("*.png")}
    origin.clear_log()
    code, err, rows = run_cli(capsys, urls, dest, config, tmp_path / "r.jsonl")
    assert code == 0, err
    assert set(reasons(rows).values()) == {("unchanged", "identical-bytes")}
    assert all("If-None-Match" not in r.headers for r in origin.requests)
    assert {p: p.stat().st_ino for p in dest.rglob("*.png")} == inodes


def test_an_old_state_or_hand_edits_never_give_a_wrong_unchanged(
    small_mirror: tuple[Path, Path, Path, dict[str, bytes]],
    origin: Origin,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Validators are only sent for the very file fetcher left; anything else is fetched."""
    urls, dest, config, bodies = small_mirror
    state = dest / STATE
    backup = tmp_path / "state-backup.sqlite3"
    backup.write_bytes(state.read_bytes())
    rels = sorted(bodies)
    # the origin changes a few images and a run writes them
    changed = rels[:5]
    for rel in changed:
        origin.publish("/" + rel, tiny_png(1000 + rels.index(rel), side=16))
    code, _, _ = run_cli(capsys, urls, dest, config, tmp_path / "r2.jsonl")
    assert code == 0
    # ...then the old state comes back from a backup, and the origin reverts: the old
    # state's validators match the origin again but not the files on disk
    state.write_bytes(backup.read_bytes())
    for rel in changed:
        origin.publish("/" + rel, bodies[rel], last_modified=None)
    # by hand: one file deleted, one overwritten with other bytes, one truncated, one
    # replaced by an empty file with its old mtime
    deleted, edited, cut, emptied = rels[10], rels[11], rels[12], rels[13]
    (dest / deleted).unlink()
    (dest / edited).write_bytes(tiny_png(2000, side=16))
    with (dest / cut).open("r+b") as handle:
        handle.truncate(20)
    old_mtime = (dest / emptied).stat().st_mtime_ns
    (dest / emptied).write_bytes(b"")
    os.utime(dest / emptied, ns=(old_mtime, old_mtime))
    origin.clear_log()
    code, err, rows = run_cli(capsys, urls, dest, config, tmp_path / "r3.jsonl")
    assert code == 0, err
    decided = {row["path"]: (row["outcome"], row["reason"]) for row in rows}
    for rel in [*changed, edited]:
        assert decided[rel] == ("changed", "dissimilar"), rel
    assert decided[deleted] == ("new", "new")
    assert decided[cut] == ("changed", "disk-unreadable")
    assert decided[emptied] == ("changed", "disk-unreadable")
    for rel in [*changed, deleted, edited, cut, emptied]:
        sent = origin.requests_for("/" + rel)
        assert [r.status for r in sent] == [200], rel
        assert "If-None-Match" not in sent[0].headers, rel
    # nothing lost: the mirror is the origin, byte for byte
    assert files_under(dest) == bodies


def test_a_file_overwritten_while_it_is_compared_is_fetched_in_full_next_time(
    origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The record describes the bytes that were compared, not a file changed meanwhile."""
    picture = Image.fromarray(np.random.default_rng(5).integers(0, 256, (40, 40, 3), np.uint8))
    first, lossless = (
        encode(picture, "PNG", compress_level=9),
        encode(picture, "PNG", compress_level=1),
    )
    intruder = noise_png(np.random.default_rng(6), 40, 40)
    origin.publish("/p.png", first)
    lines, dest = [f"{origin.url('/p.png')} p.png"], tmp_path / "dest"
    config = write_config(tmp_path / "c.toml", sync={"processes": False})
    assert run_lib(lines, dest, config)[0].counts["new"] == 1
    origin.publish("/p.png", lossless)  # the same pixels, other bytes: identical-pixels
    real_compare = fetcher.ladder._compare

    def compare_while_someone_writes(old: bytes, new: bytes, cfg: Any) -> Any:
        (dest / "p.png").write_bytes(intruder)  # in place, after fetcher read the file
        os.utime(dest / "p.png", ns=(10**18, 10**18))
        return real_compare(old, new, cfg)

    with monkeypatch.context() as patch:
        patch.setattr(fetcher.ladder, "_compare", compare_while_someone_writes)
        _, results = run_lib(lines, dest, config)
    assert reasons(results) == {origin.url("/p.png"): ("unchanged", "identical-pixels")}
    assert (dest / "p.png").read_bytes() == intruder
    origin.clear_log()
    _, results = run_lib(lines, dest, config)
    sent = origin.requests_for("/p.png")
    assert [r.status for r in sent] == [200] and "If-None-Match" not in sent[0].headers
    assert reasons(results) == {origin.url("/p.png"): ("changed", "dissimilar")}
    assert (dest / "p.png").read_bytes() == lossless
    assert_state_matches_disk(dest)


def test_one_url_listed_for_two_paths_is_a_304_for_both(origin: Origin, tmp_path: Path) -> None:
    origin.publish("/a.png", tiny_png(1))
    lines = [f"{origin.url('/a.png')} one.png", f"{origin.url('/a.png')} two/a.png"]
    dest, config = tmp_path / "dest", write_config(tmp_path / "c.toml")
    assert run_lib(lines, dest, config)[0].counts["new"] == 2
    for _ in range(2):
        origin.clear_log()
        _, results = run_lib(lines, dest, config)
        assert {(r.path, r.reason) for r in results} == {
            ("one.png", "not-modified"),
            ("two/a.png", "not-modified"),
        }
        assert [r.status for r in origin.requests] == [304, 304]
    assert_state_matches_disk(dest)


@dataclass
class StateHolder:
    """Another process's write transaction on the state (here: another connection)."""

    path: Path
    conn: sqlite3.Connection | None = None

    def take(self) -> None:
        self.conn = sqlite3.connect(self.path, isolation_level=None, timeout=0)
        self.conn.execute("BEGIN IMMEDIATE")

    def release(self) -> None:
        if self.conn is not None:
            self.conn.execute("ROLLBACK")
            self.conn.close()
            self.conn = None


def busy_mirror(
    origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, count: int
) -> tuple[list[str], Path, Path, StateHolder, list[StateError]]:
    """``count`` images; batches of 2 records; flushes that met a busy state are noted."""
    for i in range(count):
        origin.publish(f"/s/{i:02d}.png", tiny_png(i))
    lines = [f"{origin.url(f'/s/{i:02d}.png')} s/{i:02d}.png" for i in range(count)]
    dest = tmp_path / "dest"
    config = write_config(tmp_path / "c.toml", sync={"state_timeout": 0.1})
    with State.open(dest / STATE):
        pass  # the state exists, empty
    monkeypatch.setattr(fetcher.state, "BATCH_SIZE", 2)
    refused: list[StateError] = []
    real_flush = State.flush

    def flush(self: State) -> None:
        try:
            real_flush(self)
        except StateError as exc:
            refused.append(exc)
            raise

    monkeypatch.setattr(State, "flush", flush)
    return lines, dest, config, StateHolder(dest / STATE), refused


def test_a_state_busy_mid_run_is_waited_for_and_every_result_recorded(
    origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines, dest, config, holder, refused = busy_mirror(origin, tmp_path, monkeypatch, 30)
    seen: list[Result] = []

    def hold_from_first_to_25th(result: Result) -> None:
        seen.append(result)
        if len(seen) == 1:
            holder.take()
        elif len(seen) == 25:
            holder.release()

    try:
        report = sync(lines, dest, load_config(config), on_result=hold_from_first_to_25th)
    finally:
        holder.release()
    assert refused and all("held by another process" in str(e) for e in refused)
    assert report.exit_code == 0 and report.counts["new"] == 30
    assert len(state_records(dest)) == 30  # nothing written goes unrecorded
    assert_state_matches_disk(dest)


def test_a_state_held_by_another_process_stops_the_run_before_any_write(
    origin: Origin,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines, dest, config, holder, _ = busy_mirror(origin, tmp_path, monkeypatch, 5)
    urls = tmp_path / "urls.txt"
    urls.write_text("\n".join(lines) + "\n", encoding="utf-8")
    holder.take()
    try:
        code, err, _ = run_cli(capsys, urls, dest, config, tmp_path / "r.jsonl")
    finally:
        holder.release()
    assert code == 2
    assert str(dest / STATE) in err and "held by another process (waited 0.1 s" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert origin.requests == [] and files_under(dest) == {}


def test_a_state_busy_to_the_end_says_what_it_could_not_record_and_loses_no_file(
    origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines, dest, config, holder, _ = busy_mirror(origin, tmp_path, monkeypatch, 12)
    seen: list[Result] = []

    def hold_from_the_first(result: Result) -> None:
        seen.append(result)
        if len(seen) == 1:
            holder.take()

    try:
        with pytest.raises(StateError, match=r"held by another process.* \d+ results not recorded"):
            sync(lines, dest, load_config(config), on_result=hold_from_the_first)
    finally:
        holder.release()
    assert len(seen) == 12 and len(files_under(dest)) == 12
    inodes = {p: p.stat().st_ino for p in dest.rglob("*.png")}
    _, again = run_lib(lines, dest, config)  # unrecorded files cost a download, not a write
    assert {r.outcome for r in again} == {"unchanged"}
    assert {p: p.stat().st_ino for p in dest.rglob("*.png")} == inodes
    assert_state_matches_disk(dest)


def test_a_destination_removed_mid_run_stops_it_and_is_never_re_created(
    origin: Origin, tmp_path: Path
) -> None:
    """Once its folder is gone the lock keeps nobody out: the run stops, writes nothing more."""
    for i in range(40):
        origin.publish(f"/g/{i:02d}.png", tiny_png(i))
    lines = [f"{origin.url(f'/g/{i:02d}.png')} g/{i:02d}.png" for i in range(40)]
    parent = tmp_path / "parent"
    seen: list[Result] = []

    def remove_the_parent_at_the_third(result: Result) -> None:
        seen.append(result)
        if len(seen) == 3:
            os.rename(parent, tmp_path / "trash")  # as rm -r sees it: the path is gone at once

    config = load_config(write_config(tmp_path / "c.toml"))
    with pytest.raises(StoreError, match="removed or replaced during the run"):
        sync(lines, parent / "dest", config, on_result=remove_the_parent_at_the_third)
    assert not parent.exists()  # no write re-created the tree (a second run could lock it)
    assert len(seen) < 40


# -- 5. hostile origins ------------------------------------------------------------------------
HOSTILE: dict[str, tuple[str, str]] = {
    # path: (expected outcome, reason) on the first run
    "/gzip-bomb.png": ("failed", "too-large"),
    "/huge-header.png": ("failed", "too-many-pixels"),
    "/frames.gif": ("failed", "not-an-image"),
    "/frame-bomb.gif": ("failed", "not-an-image"),
    "/loop.png": ("failed", "redirects"),
    "/to-file.png": ("failed", "redirect"),
    "/html-as-png.png": ("failed", "not-an-image"),
    "/png-as-html.png": ("new", "new"),
    "/ignores-inm.png": ("new", "new"),
    "/weak-etag.png": ("new", "new"),
}


@pytest.mark.slow
def test_hostile_origins_end_with_a_clear_reason_in_bounded_memory(
    origin: Origin, tmp_path: Path
) -> None:
    bomb = 512 << 20
    origin._bomb(bomb)  # build it now, not under the origin's lock while others wait
    origin.fault("/gzip-bomb.png", "gzip-bomb", size=bomb)
    origin.publish("/huge-header.png", png_header_only(100_000, 100_000))
    origin.publish("/frames.gif", many_frames_gif(3000), content_type="image/gif")
    origin.publish("/frame-bomb.gif", frame_bomb_gif(disposal=2), content_type="image/gif")
    origin.fault("/loop.png", "redirect")  # to itself
    origin.fault("/to-file.png", "redirect", location="file:///etc/passwd")
    origin.publish("/html-as-png.png", b"<!DOCTYPE html><html><body>Oops</body></html>")
    origin.publish("/png-as-html.png", tiny_png(1), content_type="text/html")
    origin.publish("/ignores-inm.png", tiny_png(2))
    origin.fault("/ignores-inm.png", "ignore-conditional")
    origin.publish("/weak-etag.png", tiny_png(3), etag='W/"v1-weak"', last_modified=None)
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(f"{origin.url(p)}\n" for p in HOSTILE), encoding="utf-8")
    baseline_urls = tmp_path / "baseline.txt"
    baseline_urls.write_text(f"{origin.url('/png-as-html.png')} one.png\n", encoding="utf-8")
    config = write_config(
        tmp_path / "c.toml",
        http={"max_bytes": 16 << 20, "read_timeout": 10.0, "deadline": 20.0},
        compare={"max_frames": 500, "max_pixels": 50_000_000},
    )

    def run(name: str, listing: Path, dest: Path) -> tuple[int, int, list[dict[str, Any]]]:
        report = tmp_path / f"{name}.jsonl"
        argv = ["sync", str(listing), "--dest", str(dest), "--config", str(config)]
        child = Child.start(tmp_path, name, [*argv, "--report", str(report)])
        code, peak_kib = child.wait_rusage(timeout=60)  # a hang fails loudly here
        assert "Traceback" not in child.stderr
        return code, peak_kib, read_report(report)

    _, baseline_kib, _ = run("baseline", baseline_urls, tmp_path / "baseline")
    dest = tmp_path / "dest"
    code, peak_kib, rows = run("hostile", urls, dest)
    assert code == 1
    decided = reasons(rows)
    assert decided == {origin.url(p): want for p, want in HOSTILE.items()}
    errors = {row["url"]: row["error"] for row in rows}
    assert "16 MiB" in errors[origin.url("/gzip-bomb.png")]
    huge = errors[origin.url("/huge-header.png")]
    assert "100000x100000" in huge or "10000000000 pixels" in huge
    assert "too many frames" in errors[origin.url("/frames.gif")]
    assert "frame 1 is 13000x13000" in errors[origin.url("/frame-bomb.gif")]
    assert "file:///etc/passwd" in errors[origin.url("/to-file.png")]
    assert "loop" in errors[origin.url("/loop.png")]
    # memory: 512 MiB of decoded bomb never held; the cap (16 MiB) bounds the body; the
    # 96-byte GIF whose second frame claims 13000x13000 allocated 644 MiB before
    assert (peak_kib - baseline_kib) < 80 * 1024, (peak_kib, baseline_kib)
    assert sorted(files_under(dest)) == sorted(
        row["path"] for row in rows if row["outcome"] == "new"
    )

    # second run: the server that ignores If-None-Match is settled by the bytes; the weak
    # ETag goes back verbatim and gets its 304
    inode = (dest / decided_path(rows, origin.url("/ignores-inm.png"))).stat().st_ino
    origin.clear_log()
    code, _, rows = run("hostile2", urls, dest)
    again = reasons(rows)
    assert again[origin.url("/ignores-inm.png")] == ("unchanged", "identical-bytes")
    assert again[origin.url("/weak-etag.png")] == ("unchanged", "not-modified")
    assert again[origin.url("/png-as-html.png")] == ("unchanged", "not-modified")
    assert origin.requests_for("/weak-etag.png")[0].headers["If-None-Match"] == 'W/"v1-weak"'
    assert origin.requests_for("/ignores-inm.png")[0].status == 200
    assert (dest / decided_path(rows, origin.url("/ignores-inm.png"))).stat().st_ino == inode


def decided_path(rows: list[dict[str, Any]], url: str) -> str:
    return next(str(row["path"]) for row in rows if row["url"] == url)


# -- 6. hostile lists and paths ----------------------------------------------------------------
def test_a_planted_symlink_is_never_written_through(
    origin: Origin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.png"
    victim.write_bytes(b"precious")
    origin.publish("/a.png", tiny_png(1))
    origin.publish("/b.png", tiny_png(2))
    origin.publish("/c.png", tiny_png(3))
    urls = tmp_path / "urls.txt"
    urls.write_text(
        f"{origin.url('/a.png')} a.png\n"
        f"{origin.url('/b.png')} linked/b.png\n"
        f"{origin.url('/c.png')} c.png\n",
        encoding="utf-8",
    )
    dest = tmp_path / "dest"
    config = write_config(tmp_path / "c.toml")
    assert run_cli(capsys, urls, dest, config, tmp_path / "r1.jsonl")[0] == 0
    # someone plants links: the mirrored file a.png -> a file outside, folder linked -> outside
    (dest / "a.png").unlink()
    (dest / "a.png").symlink_to(victim)
    (dest / "linked" / "b.png").unlink()
    (dest / "linked").rmdir()
    (dest / "linked").symlink_to(outside, target_is_directory=True)
    for path in ("/a.png", "/b.png", "/c.png"):
        origin.publish(path, tiny_png(10 + ord(path[1])))
    state_file = dest / ".fetcher" / "state.sqlite3"
    refused = [(origin.url("/a.png"), "a.png"), (origin.url("/b.png"), "linked/b.png")]
    with State.open(state_file) as state:
        before = [state.get(url, path) for url, path in refused]
    code, err, rows = run_cli(capsys, urls, dest, config, tmp_path / "r2.jsonl")
    assert code == 1
    with State.open(state_file) as state:  # a refused path leaves what was known alone
        assert [state.get(url, path) for url, path in refused] == before
        assert all(record is not None and record.etag for record in before)
    decided = {row["path"]: (row["outcome"], row["reason"]) for row in rows}
    assert decided == {
        "a.png": ("failed", "unsafe-path"),
        "linked/b.png": ("failed", "unsafe-path"),
        "c.png": ("changed", "dissimilar"),
    }
    assert "symbolic link" in err
    assert victim.read_bytes() == b"precious"
    assert sorted(p.name for p in outside.iterdir()) == ["victim.png"]
    assert (dest / "a.png").is_symlink() and (dest / "linked").is_symlink()


def test_a_folder_swapped_for_a_symlink_during_a_sync_never_redirects_a_write(
    origin: Origin, tmp_path: Path
) -> None:
    """A thread swaps ``dest/d`` for a link to a folder outside, again and again, mid-run."""
    bodies = {f"d/{i:03d}.png": tiny_png(i) for i in range(400)}
    for rel, body in bodies.items():
        origin.publish("/" + rel, body)
    lines = [f"{origin.url(rel)} {rel}" for rel in bodies]
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    (dest / "d").mkdir(parents=True)
    outside.mkdir()
    with swapping_for_a_link(dest / "d", outside) as swaps:
        report, results = run_lib(lines, dest, write_config(tmp_path / "c.toml"))
    assert swaps[0] > 0
    assert list(outside.rglob("*")) == []  # not one file through the link
    assert report.total == len(bodies)
    assert {r.reason for r in results if not r.ok} <= {"unsafe-path", "io-error"}
    written = {p.name: p.read_bytes() for p in dest.rglob("*.png")}
    assert len(written) == report.counts["new"]
    assert all(body == bodies[f"d/{name}"] for name, body in written.items())


def test_hostile_names_end_safely_inside_the_destination(
    origin: Origin, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    long = "a" * 300
    served = {
        "ctl": "/ctl%01%1F%7Fname.png",
        "long": f"/{long}.png",
        "upper": "/Case.png",
        "lower": "/case.png",
        "nfc": "/caf%C3%A9.png",
        "nfd": "/cafe%CC%81.png",
        "con": "/CON.png",
        "aux": "/aux.txt.png",
        "dots": "/trail..%20",
        "meta": "/.fetcher/state.sqlite3",
    }
    for i, path in enumerate(served.values()):
        origin.publish(path, tiny_png(100 + i))
    explicit = {
        "com1": ("/ex1.png", "COM1.png"),
        "bell": ("/ex2.png", "bell\x07.png"),
        "escape": ("/ex3.png", "../escape.png"),
        "absolute": ("/ex4.png", "/abs.png"),
        "long-explicit": ("/ex5.png", "b" * 300 + ".png"),
        "backslash": ("/ex6.png", "..\\win.png"),
    }
    for i, (path, _) in enumerate(explicit.values()):
        origin.publish(path, tiny_png(200 + i))
    lines = [origin.url(p) for p in served.values()]
    lines += [f"{origin.url(p)} {rel}" for p, rel in explicit.values()]
    lines += [f"http://{origin.url('/x')[7:]}\x00.png", "not a url at all", "ftp://host/x.png"]
    urls = tmp_path / "urls.txt"
    urls.write_text("\n".join(lines) + "\n", encoding="utf-8")
    dest = tmp_path / "dest"
    config = write_config(tmp_path / "c.toml")
    code, err, rows = run_cli(capsys, urls, dest, config, tmp_path / "r.jsonl")
    assert code == 1
    assert "Traceback" not in err
    assert len(rows) == len(lines)
    by_url = {row["url"]: row for row in rows if row["path"]}
    ok = [row for row in rows if row["outcome"] == "new"]
    failed = [row for row in rows if row["outcome"] == "failed"]
    assert all(row["reason"] in ("unsafe-path", "bad-url") for row in failed)
    # every written file lies under dest, with portable names only
    for row in ok:
        target = dest / row["path"]
        assert target.resolve().is_relative_to(dest.resolve())
        for name in Path(row["path"]).parts:
            assert len(name.encode()) <= 255
            assert not any(ord(c) < 32 or ord(c) == 127 for c in name), name
            assert name.split(".")[0].upper() not in ("CON", "AUX", "NUL", "COM1")
            assert name.rstrip(". ") == name
    assert files_under(dest) == {row["path"]: origin_body(origin, row["url"]) for row in ok}
    # a refused line is reported by its number ("line N: ...")
    by_line = {row["line"]: row for row in failed if not row["path"]}
    number = {key: i for i, key in enumerate([*served, *explicit, "nul", "words", "ftp"], 1)}
    # only the first of two names that differ by case or Unicode form is written
    for first, second in (("upper", "lower"), ("nfc", "nfd")):
        assert by_url[origin.url(served[first])]["outcome"] == "new"
        clash = by_line[number[second]]
        assert (clash["outcome"], clash["reason"]) == ("failed", "unsafe-path")
        assert "already used" in clash["error"]
    for key in ("ctl", "long", "con", "aux", "dots", "meta"):
        assert by_url[origin.url(served[key])]["outcome"] == "new", key
    assert not (dest / ".fetcher" / "state.sqlite3").read_bytes().startswith(b"\x89PNG")
    for key in explicit:
        assert by_line[number[key]]["reason"] == "unsafe-path", key
    for key in ("nul", "words", "ftp"):
        assert by_line[number[key]]["reason"] == "bad-url", key
    # nothing was created next to the destination
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml", "dest", "r.jsonl", "urls.txt"]


def origin_body(origin: Origin, url: str) -> bytes:
    path = url[len(origin.base_url) :]
    published = origin._published[path]
    return published.body
