"""Tests for fetcher.history: versions kept on replace, pruned by count, restored (and the CLI)."""

from __future__ import annotations

import errno
import hashlib
import os
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import encode, gradient_rgb
from origin import Origin
from test_sync import Mirror, Run, boxed, etag_of, header

from fetcher.cli import main
from fetcher.errors import LockError, StoreError, UnsafePathError
from fetcher.history import History, Usage, find_destination, restore
from fetcher.store import Destination, DestinationLock

VERSION_NAME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\.png")


def versions_on_disk(dest: Path, relpath: str) -> list[Path]:
    folder = dest / ".fetcher" / "history" / relpath
    return sorted(folder.iterdir(), reverse=True) if folder.is_dir() else []


@pytest.fixture
def root(tmp_path: Path) -> Iterator[Destination]:
    (tmp_path / "dest").mkdir()
    with Destination.open(tmp_path / "dest") as held:
        yield held


# -- keeping and pruning, through the store ----------------------------------------------------
def test_a_replaced_file_is_kept_whole_with_its_mtime_and_the_time_it_was_replaced(
    root: Destination,
) -> None:
    root.write("a/b.png", b"first", mtime=1_000_000_000)
    history = History(root, keep=3)
    before = os.stat(root.path / "a/b.png")
    history.write("a/b.png", b"second", mtime=None)
    assert (root.path / "a/b.png").read_bytes() == b"second"
    [kept] = history.versions("a/b.png")
    on_disk = root.path / ".fetcher" / kept.path
    assert on_disk.read_bytes() == b"first"
    assert VERSION_NAME.fullmatch(on_disk.name)
    assert (kept.number, kept.size, kept.mtime_ns) == (1, 5, before.st_mtime_ns)
    assert os.stat(on_disk).st_ino == before.st_ino  # a hard link: the very file, no copy
    # the name says when it was replaced: after the first file's write, at the second's
    assert before.st_ctime <= kept.replaced <= os.stat(root.path / "a/b.png").st_mtime + 1


def test_versions_are_pruned_by_count_keeping_the_newest(root: Destination) -> None:
    history = History(root, keep=2)
    root.write("p.png", b"v1")
    for body in (b"v2", b"v3", b"v4", b"v5"):
        history.write("p.png", body, mtime=None)
    kept = history.versions("p.png")
    assert [v.number for v in kept] == [1, 2]
    assert [(root.path / ".fetcher" / v.path).read_bytes() for v in kept] == [b"v4", b"v3"]
    assert len(versions_on_disk(root.path, "p.png")) == 2


def test_lowering_keep_prunes_at_the_next_measure_and_zero_leaves_the_history_alone(
    root: Destination,
) -> None:
    History(root, keep=5).write("x.png", b"0", mtime=None)  # nothing to keep yet
    for body in (b"1", b"2", b"3", b"4"):
        History(root, keep=5).write("x.png", body, mtime=None)
    assert History(root, keep=5).usage(prune=True) == Usage(4, 4)
    assert History(root, keep=0).usage(prune=True) == Usage(4, 4)  # keep 0: nothing pruned
    assert History(root, keep=2).usage(prune=False) == Usage(4, 4)  # a dry run prunes nothing
    assert History(root, keep=2).usage(prune=True) == Usage(2, 2)
    assert [p.read_bytes() for p in versions_on_disk(root.path, "x.png")] == [b"3", b"2"]


def test_version_names_stay_in_order_when_the_clock_goes_back(
    root: Destination, monkeypatch: pytest.MonkeyPatch
) -> None:
    history = History(root, keep=5)
    root.write("c.png", b"1")
    history.write("c.png", b"2", mtime=None)
    monkeypatch.setattr("fetcher.history.time.time_ns", lambda: 0)  # the clock jumps to 1970
    history.write("c.png", b"3", mtime=None)
    assert [(root.path / ".fetcher" / v.path).read_bytes() for v in history.versions("c.png")] == [
        b"2",
        b"1",
    ]


def test_where_no_hard_link_is_possible_the_old_file_is_copied(
    root: Destination, monkeypatch: pytest.MonkeyPatch
) -> None:
    root.write("d.png", b"old bytes", mtime=1_500_000_000)

    def no_link(*args: object, **kwargs: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    History(root, keep=1).write("d.png", b"new", mtime=None)
    [kept] = versions_on_disk(root.path, "d.png")
    assert kept.read_bytes() == b"old bytes"
    assert kept.stat().st_mtime == 1_500_000_000
    assert (root.path / "d.png").read_bytes() == b"new"
    assert not list(root.path.rglob(".fetcher-tmp-*"))


def test_a_version_that_cannot_be_kept_leaves_the_file_as_it_was(
    root: Destination, monkeypatch: pytest.MonkeyPatch
) -> None:
    root.write("e.png", b"precious")
    before = os.stat(root.path / "e.png")

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "link", full)
    with pytest.raises(StoreError, match="keep the replaced version"):
        History(root, keep=1).write("e.png", b"replacement", mtime=None)
    assert (root.path / "e.png").read_bytes() == b"precious"
    assert os.stat(root.path / "e.png").st_ino == before.st_ino
    assert not list(root.path.rglob(".fetcher-tmp-*"))


def test_a_symlinked_history_is_refused_and_nothing_lands_outside(
    root: Destination, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    root.write("f.png", b"old")
    (root.path / ".fetcher").mkdir(exist_ok=True)
    (root.path / ".fetcher" / "history").symlink_to(outside)
    with pytest.raises(UnsafePathError):
        History(root, keep=1).write("f.png", b"new", mtime=None)
    assert list(outside.iterdir()) == []
    assert (root.path / "f.png").read_bytes() == b"old"


# -- restoring ----------------------------------------------------------------------------------
def test_restore_puts_a_version_back_and_keeps_the_file_it_replaces(root: Destination) -> None:
    history = History(root, keep=3)
    root.write("g.png", b"A")
    history.write("g.png", b"B", mtime=None)
    history.write("g.png", b"C", mtime=None)  # versions: 1 = B, 2 = A
    chosen, info = history.restore("g.png", 2)
    assert (root.path / "g.png").read_bytes() == b"A"
    assert (chosen.number, info.sha256) == (2, hashlib.sha256(b"A").hexdigest())
    bodies = [(root.path / ".fetcher" / v.path).read_bytes() for v in history.versions("g.png")]
    assert bodies == [b"C", b"B"]  # the replaced file is the newest version; A left the history
    history.restore("g.png", 1)  # and restoring again undoes the restore
    assert (root.path / "g.png").read_bytes() == b"C"


def test_restore_of_a_deleted_file_and_of_a_missing_version(root: Destination) -> None:
    history = History(root, keep=2)
    root.write("h/i.png", b"one")
    history.write("h/i.png", b"two", mtime=None)
    (root.path / "h/i.png").unlink()
    history.restore("h/i.png")
    assert (root.path / "h/i.png").read_bytes() == b"one"
    assert history.versions("h/i.png") == []
    assert not (root.path / ".fetcher" / "history" / "h").exists()  # empty folders tidied
    with pytest.raises(StoreError, match="no kept version"):
        history.restore("h/i.png")
    history.write("h/i.png", b"three", mtime=None)
    with pytest.raises(StoreError, match="--version must be 1 to 1, not 2"):
        history.restore("h/i.png", 2)


def test_restore_never_follows_a_link_planted_at_the_target(
    root: Destination, tmp_path: Path
) -> None:
    history = History(root, keep=2)
    root.write("j.png", b"one")
    history.write("j.png", b"two", mtime=None)
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"not fetcher's")
    (root.path / "j.png").unlink()
    (root.path / "j.png").symlink_to(outside)
    with pytest.raises(UnsafePathError):
        history.restore("j.png")
    assert outside.read_bytes() == b"not fetcher's"
    assert len(history.versions("j.png")) == 1


def test_find_destination_walks_up_to_the_folder_holding_dot_fetcher(tmp_path: Path) -> None:
    (tmp_path / "m" / ".fetcher").mkdir(parents=True)
    assert find_destination(tmp_path / "m" / "gone" / "x.png") == (tmp_path / "m", "gone/x.png")
    with pytest.raises(StoreError, match="no fetcher destination"):
        find_destination(tmp_path / "elsewhere.png")


def test_restore_waits_for_no_run_it_refuses_while_one_holds_the_lock(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    with DestinationLock(dest) as lock:
        assert lock.destination is not None
        History(lock.destination, 1).root.write("k.png", b"1")
        with pytest.raises(LockError):
            restore(dest, "k.png")


# -- end to end: sync --keep, restore, next run -------------------------------------------------
def versions(body: bytes) -> list[bytes]:
    """Three different pictures: the original, then two visible edits of it."""
    return [body, boxed(body, fill=(255, 0, 0)), boxed(body, fill=(0, 0, 255))]


@pytest.fixture
def site(origin: Origin, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Mirror:
    m = Mirror(origin, tmp_path, capsys)
    origin.publish("/pic.png", encode(gradient_rgb(96, 64), "PNG"))
    origin.publish("/other.png", encode(gradient_rgb(64, 48), "PNG"))
    m.write_list(f"{m.url('/pic.png')} pic.png", f"{m.url('/other.png')} other.png")
    return m


def outcome(run: Run, mirror: Mirror, path: str) -> tuple[str, str]:
    row = run.by_url[mirror.url(path)]
    return row["outcome"], row["reason"]


def test_sync_keep_restore_and_the_next_runs(site: Mirror) -> None:
    v1, v2, v3 = versions(encode(gradient_rgb(96, 64), "PNG"))
    pic = site.dest / "pic.png"
    assert site.sync("--keep", "2").code == 0

    site.origin.publish("/pic.png", v2)
    run = site.sync("--keep", "2")
    assert outcome(run, site, "/pic.png") == ("changed", "dissimilar")
    assert [p.read_bytes() for p in versions_on_disk(site.dest, "pic.png")] == [v1]
    assert ", history 1 file 2" in run.out  # the summary names the history's size

    # restore through the CLI, by the file's own path (DEST found above it)
    code = main(["restore", str(pic)])
    assert code == 0
    assert pic.read_bytes() == v1
    assert [p.read_bytes() for p in versions_on_disk(site.dest, "pic.png")] == [v2]

    # the next run asks the origin "changed since v2?", gets 304, and keeps the restored file
    site.origin.clear_log()
    run = site.sync("--keep", "2")
    assert outcome(run, site, "/pic.png") == ("unchanged", "not-modified")
    [sent] = site.origin.requests_for("/pic.png")
    assert header(sent, "If-None-Match") == etag_of(v2)
    assert pic.read_bytes() == v1

    # something new from the origin is compared with the restored file, and kept over it
    site.origin.publish("/pic.png", v3)
    run = site.sync("--keep", "2")
    assert outcome(run, site, "/pic.png") == ("changed", "dissimilar")
    assert pic.read_bytes() == v3
    assert [p.read_bytes() for p in versions_on_disk(site.dest, "pic.png")] == [v1, v2]


def test_without_the_state_record_a_restored_file_would_be_fetched_again(site: Mirror) -> None:
    """The control of the test above: what the state record of a restore prevents."""
    _, v2, _ = versions(encode(gradient_rgb(96, 64), "PNG"))
    site.sync("--keep", "1")
    site.origin.publish("/pic.png", v2)
    site.sync("--keep", "1")
    assert main(["restore", "pic.png", "--dest", str(site.dest)]) == 0
    state = site.dest / ".fetcher" / "state.sqlite3"
    with sqlite3.connect(state) as conn:
        conn.execute("UPDATE records SET size = size + 1 WHERE path = 'pic.png'")  # undo it
    run = site.sync("--keep", "1")
    assert outcome(run, site, "/pic.png") == ("changed", "dissimilar")
    assert (site.dest / "pic.png").read_bytes() == v2


def test_a_dry_run_keeps_nothing_and_a_run_without_keep_keeps_nothing(site: Mirror) -> None:
    _, v2, _ = versions(encode(gradient_rgb(96, 64), "PNG"))
    site.sync()
    site.origin.publish("/pic.png", v2)
    run = site.sync("--keep", "3", "--dry-run")
    assert outcome(run, site, "/pic.png") == ("changed", "dissimilar")
    assert not (site.dest / ".fetcher" / "history").exists()
    run = site.sync()
    assert outcome(run, site, "/pic.png") == ("changed", "dissimilar")
    assert not (site.dest / ".fetcher" / "history").exists()
    assert "history" not in run.out


def test_restore_list_and_its_errors_on_the_command_line(
    site: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    _, v2, v3 = versions(encode(gradient_rgb(96, 64), "PNG"))
    site.sync("--keep", "5")
    for body in (v2, v3):
        site.origin.publish("/pic.png", body)
        site.sync("--keep", "5")
    capsys.readouterr()
    assert main(["restore", "pic.png", "--dest", str(site.dest), "--list"]) == 0
    listed = capsys.readouterr().out
    assert "pic.png: 2 kept version(s), newest first" in listed
    assert re.search(r"^\s+1\s+replaced \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", listed, re.M)
    assert (site.dest / "pic.png").read_bytes() == v3  # --list restores nothing

    assert main(["restore", "pic.png", "--dest", str(site.dest), "--version", "3"]) == 2
    assert "--version must be 1 to 2, not 3" in capsys.readouterr().err
    assert main(["restore", "other.png", "--dest", str(site.dest)]) == 2
    assert "no kept version of 'other.png'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["restore", "pic.png", "--version", "0"])
    assert "--version" in capsys.readouterr().err


def test_restoring_a_deleted_file_says_there_was_nothing_to_replace(
    site: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    site.sync("--keep", "2")
    site.write_list(f"{site.url('/other.png')} other.png")  # pic.png is no longer listed
    run = site.sync("--keep", "2", "--delete")
    assert outcome(run, site, "/pic.png") == ("deleted", "not-listed")
    capsys.readouterr()
    assert main(["restore", "pic.png", "--dest", str(site.dest)]) == 0
    said = capsys.readouterr().out
    assert "there was no file there to replace" in said and "now version 1" not in said
    assert (site.dest / "pic.png").is_file() and not versions_on_disk(site.dest, "pic.png")
