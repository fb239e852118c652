"""Tests for fetcher.store.safe_join: joining a list path under the destination, safely."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetcher.errors import StoreError, UnsafePathError, UrlError
from fetcher.paths import clean_relpath, url_to_path
from fetcher.store import safe_join
from fetcher.urllist import validate_url


def test_safe_join_plain(tmp_path: Path) -> None:
    assert safe_join(tmp_path, "a/b.jpg") == tmp_path / "a" / "b.jpg"
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b.jpg").write_bytes(b"x")
    assert safe_join(tmp_path, "a/b.jpg") == tmp_path / "a" / "b.jpg"
    assert safe_join(tmp_path / "missing", "x.jpg") == tmp_path / "missing" / "x.jpg"


def test_safe_join_refuses_planted_symlink_outside(tmp_path: Path) -> None:
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (dest / "host").symlink_to(outside, target_is_directory=True)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        safe_join(dest, "host/a.jpg")
    (dest / "b").mkdir()
    (dest / "b" / "victim.jpg").symlink_to(outside / "victim.jpg")
    with pytest.raises(UnsafePathError, match="symbolic link"):
        safe_join(dest, "b/victim.jpg")
    assert list(outside.iterdir()) == []


def test_safe_join_refuses_symlink_inside_and_allows_linked_dest(tmp_path: Path) -> None:
    real = tmp_path / "real"
    (real / "inner").mkdir(parents=True)
    (real / "alias").symlink_to(real / "inner", target_is_directory=True)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        safe_join(real, "alias/a.jpg")
    link = tmp_path / "dest-link"
    link.symlink_to(real, target_is_directory=True)
    assert safe_join(link, "inner/a.jpg") == link / "inner" / "a.jpg"


def test_safe_join_refuses_what_clean_relpath_refuses(tmp_path: Path) -> None:
    for bad in ("../x.jpg", "/etc/passwd", "a\x00b", ".fetcher/lock"):
        with pytest.raises(UnsafePathError):
            safe_join(tmp_path, bad)


def test_safe_join_resolve_check_is_a_second_defence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import fetcher.store

    monkeypatch.setattr(fetcher.store, "clean_relpath", lambda path: path)
    with pytest.raises(UnsafePathError, match="outside"):
        safe_join(tmp_path / "dest", "../escape.jpg")


def test_safe_join_under_a_file_component(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"")
    assert safe_join(tmp_path, "f/x.jpg") == tmp_path / "f" / "x.jpg"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every folder")
def test_safe_join_unreadable_folder_is_io_error(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        with pytest.raises(StoreError) as info:
            safe_join(tmp_path, "locked/a/b.jpg")
        assert info.value.reason == "io-error"
    finally:
        locked.chmod(0o700)


def assert_inside(dest: Path, joined: Path) -> None:
    """The invariants every destination path must keep."""
    rel = joined.relative_to(dest)
    assert not rel.is_absolute()
    assert rel.parts and ".." not in rel.parts and "." not in rel.parts
    assert "\x00" not in str(rel)
    assert all(len(part.encode("utf-8")) <= 255 for part in rel.parts)
    assert joined.resolve().is_relative_to(dest.resolve())
    assert rel.parts[0].casefold() != ".fetcher"
    assert not any(p.casefold().startswith(".fetcher-tmp-") for p in rel.parts)


@pytest.fixture(scope="module")
def dest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dest")


URLISH = st.from_regex(
    r"(https?|HTTP|ftp)://([a-zA-Z0-9.-]{0,12}|\[[0-9a-f:]{0,8}\])(:[0-9]{0,6})?"
    r"(/([A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2}|\.\.|[^\x00-\x7f]){0,12}){0,6}"
    r"(\?[^# ]{0,10})?(#.{0,5})?",
    fullmatch=True,
)


SEGMENT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=40
) | st.sampled_from([".", "..", "%2e%2e", "CON", ".fetcher", ".fetcher-tmp-1", "é" * 200])


BUILT_URL = st.builds(
    lambda host, segs, q: "http://" + host + "/" + "/".join(segs) + q,
    st.sampled_from(["h", "a.example", "127.0.0.1:81", "[::1]", ".fetcher", "con"]),
    st.lists(SEGMENT, max_size=8),
    st.sampled_from(["", "?", "?a=1", "?a=%00"]),
)


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(path=st.text(max_size=60) | st.lists(SEGMENT, min_size=1, max_size=6).map("/".join))
def test_any_path_is_refused_or_lands_inside(dest: Path, path: str) -> None:
    try:
        joined = safe_join(dest, path)
    except UnsafePathError as exc:
        assert exc.reason == "unsafe-path"
        return
    assert_inside(dest, joined)
    assert clean_relpath(clean_relpath(path)) == clean_relpath(path)


def test_safe_join_takes_a_relative_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for dest in (".", "d", "d/", "d/../d"):
        assert safe_join(Path(dest), "a/b.jpg") == Path(dest) / "a" / "b.jpg"


@SETTINGS
@given(url=st.text(max_size=80) | URLISH | BUILT_URL, layout=st.sampled_from(["host/path", "path"]))
def test_any_url_is_refused_or_lands_inside(dest: Path, url: str, layout: str) -> None:
    try:
        path = url_to_path(validate_url(url), layout=layout)
    except UrlError as exc:
        assert exc.reason == "bad-url"
        return
    assert clean_relpath(path) == path  # derived paths are already clean
    assert_inside(dest, safe_join(dest, path))
