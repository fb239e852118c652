"""Tests for ``--delete`` (fetcher.stale): only files fetcher wrote, still as it wrote them."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import encode, gradient_rgb
from origin import Origin
from test_sync import FAST, Mirror, boxed, image_files

from fetcher.cli import main
from fetcher.config import load_config
from fetcher.mirror import sync

NAMES = ("a", "b", "c", "d")


def picture(n: int) -> bytes:
    return encode(gradient_rgb(40 + 8 * n, 32), "PNG")


@pytest.fixture
def site(origin: Origin, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Mirror:
    """Four URLs mirrored once, each to an explicit path NAME.png (in sub/ for d)."""
    m = Mirror(origin, tmp_path, capsys)
    for n, name in enumerate(NAMES):
        origin.publish(f"/{name}.png", picture(n))
    m.write_list(*(line(m, name) for name in NAMES))
    first = m.sync()
    assert first.code == 0, first.err
    return m


def line(m: Mirror, name: str) -> str:
    return f"{m.url(f'/{name}.png')} {'sub/' if name == 'd' else ''}{name}.png"


def files(m: Mirror) -> set[str]:
    return {p.relative_to(m.dest).as_posix() for p in image_files(m.dest)}


def records(m: Mirror) -> set[str]:
    db = m.dest / ".fetcher" / "state.sqlite3"
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return {row[0] for row in conn.execute("SELECT path FROM records")}


def deleted(run: object) -> list[str]:
    return sorted(row["path"] for row in run.report if row["outcome"] == "deleted")  # type: ignore[attr-defined]


def test_delete_removes_only_what_fetcher_wrote_for_urls_no_longer_listed(site: Mirror) -> None:
    site.write_list(line(site, "a"))
    run = site.sync("--delete")
    assert run.code == 0, run.err
    assert deleted(run) == ["b.png", "c.png", "sub/d.png"]
    assert {r["reason"] for r in run.report if r["outcome"] == "deleted"} == {"not-listed"}
    assert files(site) == {"a.png"}
    assert ", deleted 3," in run.out
    assert records(site) == {"a.png"}  # the records of unlisted URLs are dropped


def test_files_fetcher_did_not_write_or_that_changed_since_are_never_deleted(
    site: Mirror,
) -> None:
    # e: a file that was there before fetcher and that it judged unchanged, never wrote
    e = site.dest / "e.png"
    e.write_bytes(picture(4))
    site.origin.publish("/e.png", picture(4))
    site.write_list(*(line(site, n) for n in NAMES), f"{site.url('/e.png')} e.png")
    run = site.sync()
    assert run.by_url[site.url("/e.png")]["outcome"] == "unchanged"
    b, c = site.dest / "b.png", site.dest / "c.png"
    # b: hand-edited (other bytes, other size)
    b.write_bytes(boxed(picture(1)))
    # c: the same size and mtime, other bytes: only the SHA-256 tells
    original = c.read_bytes()
    st = c.stat()
    c.write_bytes(bytes(reversed(original)))
    os.utime(c, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert c.stat().st_size == st.st_size

    site.write_list(line(site, "a"))
    run = site.sync("--delete")
    assert run.code == 0, run.err
    assert deleted(run) == ["sub/d.png"]  # the only one still exactly as fetcher wrote it
    assert files(site) == {"a.png", "b.png", "c.png", "e.png"}
    assert c.read_bytes() == bytes(reversed(original))


def test_a_file_rewritten_by_fetcher_after_a_hand_edit_counts_as_fetchers_again(
    site: Mirror,
) -> None:
    (site.dest / "b.png").write_bytes(boxed(picture(1)))
    assert site.sync().by_url[site.url("/b.png")]["outcome"] == "changed"  # rewritten
    site.write_list(line(site, "a"))
    assert "b.png" in deleted(site.sync("--delete"))


def test_dry_run_lists_what_it_would_delete_and_deletes_nothing(site: Mirror) -> None:
    site.write_list(line(site, "a"), line(site, "b"))
    before = files(site)
    run = site.sync("--delete", "--dry-run")
    assert run.code == 0, run.err
    assert deleted(run) == ["c.png", "sub/d.png"]
    assert "deleted   not-listed       c.png" in run.out  # listed without -v
    assert "dry run" in run.out
    assert files(site) == before
    assert records(site) == {"a.png", "b.png", "c.png", "sub/d.png"}
    assert deleted(site.sync("--delete")) == ["c.png", "sub/d.png"]  # then for real


def test_a_path_another_listed_url_now_uses_is_not_deleted(site: Mirror) -> None:
    # b.png now comes from another URL (the same picture): the old record is unlisted
    site.origin.publish("/b2.png", picture(1))
    site.write_list(line(site, "a"), f"{site.url('/b2.png')} b.png")
    run = site.sync("--delete")
    assert run.code == 0, run.err
    assert deleted(run) == ["c.png", "sub/d.png"]
    assert "b.png" in files(site)
    # also when the path differs only in case (the same file on a case-folding filesystem)
    site.write_list(line(site, "a"), f"{site.url('/b2.png')} B.png")
    run = site.sync("--delete")
    assert "b.png" not in deleted(run)
    assert "b.png" in files(site)


@pytest.mark.parametrize(
    ("listed", "why"),
    [
        (["a", "not a url"], "1 line(s) of the list were refused"),
        ([], "the list names no URL"),
    ],
)
def test_a_list_with_refused_lines_or_no_url_deletes_nothing(
    site: Mirror, listed: list[str], why: str
) -> None:
    site.write_list(*(line(site, n) if n in NAMES else n for n in listed), "# only this")
    before = files(site)
    run = site.sync("--delete")
    assert deleted(run) == []
    assert f"--delete deleted nothing: {why}" in run.err
    assert files(site) == before


def test_a_list_that_fails_to_read_to_the_end_deletes_nothing(site: Mirror) -> None:
    before = files(site)

    def cut_short() -> Iterator[str]:
        yield line(site, "a")
        raise OSError(5, "Input/output error")

    config = load_config(None, **FAST)
    with pytest.raises(OSError, match="Input/output"):
        sync(cut_short(), site.dest, config, delete=True)
    assert files(site) == before


def test_an_interrupted_run_deletes_nothing(site: Mirror) -> None:
    before = files(site)

    def interrupted() -> Iterator[str]:
        yield line(site, "a")
        raise KeyboardInterrupt

    report = sync(interrupted(), site.dest, load_config(None, **FAST), delete=True)
    assert report.interrupted
    assert report.not_deleted == "the run was interrupted before the end of the list"
    assert files(site) == before


def test_with_keep_a_deleted_file_goes_to_the_history_and_can_be_restored(site: Mirror) -> None:
    b = site.dest / "b.png"
    wrote = b.read_bytes()
    site.write_list(line(site, "a"), line(site, "c"), line(site, "d"))
    run = site.sync("--delete", "--keep", "1")
    assert deleted(run) == ["b.png"]
    [row] = [r for r in run.report if r["outcome"] == "deleted"]
    assert row["detail"].startswith("kept as .fetcher/history/b.png/")
    assert not b.exists()
    assert main(["restore", str(b)]) == 0
    assert b.read_bytes() == wrote


def test_delete_needs_the_flag(site: Mirror) -> None:
    site.write_list(line(site, "a"))
    run = site.sync()
    assert deleted(run) == []
    assert files(site) == {"a.png", "b.png", "c.png", "sub/d.png"}
