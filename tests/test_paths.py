"""Tests for fetcher.paths: URL-to-path mapping, explicit path checks, path keys and claims."""

from __future__ import annotations

import hashlib
import os
import random
import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetcher.errors import UnsafePathError
from fetcher.paths import clean_relpath, path_key, url_to_path
from fetcher.urllist import read_entries


def qhash(query: str) -> str:
    """The documented query hash: first 8 hex digits of SHA-256 over the raw query."""
    return hashlib.sha256(query.encode("utf-8")).hexdigest()[:8]


URL_CASES = [
    # plain, host lower-cased, userinfo and fragment dropped, default port dropped
    ("http://example.com/img/a.jpg", "example.com/img/a.jpg"),
    ("HTTPS://User:Secret@Example.COM/A.jpg#frag", "example.com/A.jpg"),
    ("http://example.com:80/a.jpg", "example.com/a.jpg"),
    ("https://example.com:443/a.jpg", "example.com/a.jpg"),
    # ports kept as HOST_PORT
    ("http://example.com:8080/a.jpg", "example.com_8080/a.jpg"),
    ("https://example.com:80/a.jpg", "example.com_80/a.jpg"),
    ("http://127.0.0.1:5000/x.png", "127.0.0.1_5000/x.png"),
    ("http://[::1]:8080/x.png", "__1_8080/x.png"),
    # percent-decoding, per segment (%2F stays inside its segment)
    ("http://h/a%20b/c%C3%A9.jpg", "h/a b/cé.jpg"),
    ("http://h/a%2Fb.jpg", "h/a_b.jpg"),
    ("http://h/bad%FF.jpg", "h/bad\ufffd.jpg"),
    # trailing slash / empty path -> index
    ("http://h", "h/index"),
    ("http://h/", "h/index"),
    ("http://h/dir/", "h/dir/index"),
    ("http://h//a//b.jpg", "h/a/b.jpg"),
    # dot segments resolved, never escaping
    ("http://h/a/../b.jpg", "h/b.jpg"),
    ("http://h/../../../etc/passwd", "h/etc/passwd"),
    ("http://h/%2e%2e/%2E%2E/x.jpg", "h/x.jpg"),
    ("http://h/a/./b.jpg", "h/a/b.jpg"),
    ("http://h/a/..", "h/index"),
    ("http://h/a/b/..", "h/a/index"),
    ("http://h/a/b/%2E%2e", "h/a/index"),
    ("http://h/a/b/%2e", "h/a/b/index"),
    # unicode: NFC, IDNA host kept as written
    ("http://h/cafe%CC%81.jpg", "h/café.jpg"),
    ("http://xn--bcher-kva.de/b.jpg", "xn--bcher-kva.de/b.jpg"),
    # characters refused on common filesystems, control characters, trailing dots
    ("http://h/a%3Cb%3E%3A%22%5C%7C%2A.jpg", "h/a_b______.jpg"),
    ("http://h/a%00b%1Fc%7F.jpg", "h/a_b_c_.jpg"),
    ("http://h/name.%20.", "h/name"),
    ("http://h/...", "h/_"),
    # Windows device names, any case, any extension
    ("http://h/CON", "h/_CON"),
    ("http://h/con.jpg", "h/_con.jpg"),
    ("http://h/Lpt9.tar.gz", "h/_Lpt9.tar.gz"),
    ("http://h/COM1/x.jpg", "h/_COM1/x.jpg"),
    ("http://nul/x.jpg", "_nul/x.jpg"),
    ("http://h/CONSOLE.jpg", "h/CONSOLE.jpg"),
    # fetcher's reserved names
    ("http://h/.fetcher/state.sqlite3", "h/.fetcher/state.sqlite3"),
    ("http://h/.fetcher-tmp-123", "h/_.fetcher-tmp-123"),
    ("http://h/.FETCHER-TMP-x.jpg", "h/_.FETCHER-TMP-x.jpg"),
]


@pytest.mark.parametrize(("url", "expected"), URL_CASES)
def test_url_to_path_table(url: str, expected: str) -> None:
    assert url_to_path(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://h:8080/a/b.jpg", "a/b.jpg"),
        ("http://h/", "index"),
        ("http://h/.fetcher/x.jpg", "_.fetcher/x.jpg"),
        ("http://h/.Fetcher./x.jpg", "_.Fetcher/x.jpg"),
    ],
)
def test_url_to_path_path_layout(url: str, expected: str) -> None:
    assert url_to_path(url, layout="path") == expected


def test_unknown_layout_is_refused() -> None:
    with pytest.raises(ValueError, match="layout"):
        url_to_path("http://h/a", layout="flat")
    with pytest.raises(ValueError, match="layout"):
        read_entries([], layout="flat")


@pytest.mark.parametrize(
    ("url", "stem", "query", "ext"),
    [
        ("http://h/img.jpg?w=100", "h/img", "w=100", ".jpg"),
        ("http://h/img.jpg?w=200", "h/img", "w=200", ".jpg"),
        ("http://h/img?w=100", "h/img", "w=100", ""),
        ("http://h/?page=2", "h/index", "page=2", ""),
        ("http://h/a.png?x=%2F..%2F&y=%00", "h/a", "x=%2F..%2F&y=%00", ".png"),
    ],
)
def test_query_becomes_hash_before_extension(url: str, stem: str, query: str, ext: str) -> None:
    assert url_to_path(url) == f"{stem}.q-{qhash(query)}{ext}"


def test_query_hash_stable_and_distinct() -> None:
    urls = [f"http://h/img.jpg?w={w}" for w in range(500)]
    paths = [url_to_path(u) for u in urls]
    assert paths == [url_to_path(u) for u in urls]
    assert len(set(paths)) == len(urls)
    assert url_to_path("http://h/img.jpg?") == "h/img.jpg"  # empty query counts as none
    assert url_to_path("http://h/img.jpg") not in paths


def test_long_names_are_capped_distinct_and_keep_extension() -> None:
    names = ["é" * 300 + "a.jpg", "é" * 300 + "b.jpg", "x" * 1000 + ".webp"]
    paths = [url_to_path("http://h/" + n) for n in names]
    assert len(set(paths)) == 3
    for path, name in zip(paths, names, strict=True):
        last = path.split("/")[-1]
        assert len(last.encode("utf-8")) <= 255
        assert last.endswith(os.path.splitext(name)[1])
        assert last.startswith(name[:50])
    # a short name is never touched
    assert url_to_path("http://h/" + "y" * 251 + ".jpg") == "h/" + "y" * 251 + ".jpg"


def test_long_combining_name_stays_nfc() -> None:
    name = "e\u0301\u0327" * 120 + ".png"  # no precomposed form covers both marks
    path = url_to_path("http://h/" + name)
    assert unicodedata.normalize("NFC", path) == path
    assert len(path.split("/")[-1].encode("utf-8")) <= 255


def test_deep_paths_are_capped() -> None:
    deep = "/".join(f"d{i:03d}" for i in range(400))
    path = url_to_path(f"http://h/{deep}/x.jpg")
    other = url_to_path(f"http://h/{deep}/y/x.jpg")
    assert len(path.encode("utf-8")) <= 1024
    assert path.startswith("h/") and path.endswith("/x.jpg")
    assert path != other


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("a.jpg", "a.jpg"),
        ("photos/2024/a.jpg", "photos/2024/a.jpg"),
        ("./a//b/./c.jpg", "a/b/c.jpg"),
        ("with space/a b.jpg", "with space/a b.jpg"),
        ("cafe\u0301.jpg", "café.jpg"),
        ("sub/.fetcher/x.jpg", "sub/.fetcher/x.jpg"),
        (".fetcherx/a.jpg", ".fetcherx/a.jpg"),
        ("~/a.jpg", "~/a.jpg"),
        ("CONSOLE.jpg", "CONSOLE.jpg"),
        ("x" * 255, "x" * 255),
    ],
)
def test_clean_relpath_accepts(path: str, expected: str) -> None:
    assert clean_relpath(path) == expected


@pytest.mark.parametrize(
    ("path", "cause"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("/etc/passwd", "absolute"),
        ("//server/share/a", "absolute"),
        ("C:/Windows/a.jpg", "drive letter"),
        ("c:a.jpg", "drive letter"),
        ("ab:c.jpg", "':'"),
        ("..\\a.jpg", "backslash"),
        ("a\\b.jpg", "backslash"),
        ("../a.jpg", r"contains '\.\.'"),
        ("a/../../b.jpg", r"contains '\.\.'"),
        ("a/..", r"contains '\.\.'"),
        ("a\x00b", "NUL"),
        ("a\nb", "control"),
        ("a\x1bb", "control"),
        ("a\x85b", "control"),
        ("a?.jpg", "not allowed"),
        ("a*.jpg", "not allowed"),
        ('a".jpg', "not allowed"),
        ("a<b>.jpg", "not allowed"),
        ("a|b.jpg", "not allowed"),
        ("a./b.jpg", "dot or a space"),
        ("a.jpg ", "dot or a space"),
        ("CON", "device"),
        ("sub/nul.txt", "device"),
        ("com1.jpg", "device"),
        (".fetcher/state.sqlite3", "reserved"),
        (".FETCHER/x", "reserved"),
        ("./.fetcher/x", "reserved"),
        ("a/.fetcher-tmp-1234", "reserved"),
        ("x" * 256, "255 bytes"),
        ("é" * 128, "255 bytes"),
        ("/".join(["d" * 200] * 6), "1024 bytes"),
        ("dir/", "must name a file"),
        (".", "names no file"),
        ("./", "must name a file"),
    ],
)
def test_clean_relpath_refuses(path: str, cause: str) -> None:
    with pytest.raises(UnsafePathError, match=cause) as info:
        clean_relpath(path)
    assert info.value.reason == "unsafe-path"
    assert repr(path)[:40] in str(info.value)  # the message names the path


def test_path_key_collisions() -> None:
    assert path_key("Photos/A.JPG") == path_key("photos/a.jpg")
    assert path_key("STRASSE.jpg") == path_key("straße.jpg")
    assert path_key(unicodedata.normalize("NFD", "Å.jpg")) == path_key("å.jpg")
    assert path_key("\u212bngstr\u00f6m") == path_key("ångström")  # Angstrom sign vs Å
    assert path_key("a.jpg") != path_key("b.jpg")
    assert path_key("a/b.jpg") != path_key("ab.jpg")


@given(st.text(max_size=30))
def test_path_key_ignores_case_and_normal_form(name: str) -> None:
    for form in ("NFC", "NFD", "NFKC"):
        variant = unicodedata.normalize(form, name)
        if unicodedata.normalize("NFC", variant) == unicodedata.normalize("NFC", name):
            assert path_key(variant) == path_key(name)
    assert path_key(name.upper()) == path_key(name.upper().lower())


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_digest_table_behaves_like_a_dict_through_growth() -> None:
    from fetcher.paths import _DigestTable

    rng = random.Random(5)
    table, reference = _DigestTable(capacity=8), dict[int, int]()
    for _ in range(5000):
        key = rng.getrandbits(64) or 1
        if rng.random() < 0.2 and reference:
            key = rng.choice(list(reference))  # a key already in: must keep its first line
        line = rng.randrange(1, 1 << 31)
        table.setdefault(key, line)
        reference.setdefault(key, line)
    assert all(table.get(key) == line for key, line in reference.items())
    assert all(table.get(rng.getrandbits(64) | 1 << 63) is None for _ in range(1000))
