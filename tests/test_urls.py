"""Tests for fetcher.urls: the list parser, URL-to-path mapping and the safe join."""

from __future__ import annotations

import hashlib
import os
import random
import time
import tracemalloc
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetcher.errors import StoreError, UnsafePathError, UrlError
from fetcher.urls import (
    BadLine,
    Entry,
    clean_relpath,
    parse_line,
    path_key,
    read_entries,
    safe_join,
    url_to_path,
    validate_url,
)


def qhash(query: str) -> str:
    """The documented query hash: first 8 hex digits of SHA-256 over the raw query."""
    return hashlib.sha256(query.encode("utf-8")).hexdigest()[:8]


# --- URL -> path table ------------------------------------------------------------------

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


# --- validate_url -----------------------------------------------------------------------

@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/a.jpg",
        "https://example.com",
        "HTTP://EXAMPLE.COM/A",
        "http://[2001:db8::1]/x",
        "http://bücher.de/x",
        "http://h/a|b{c}.jpg",
    ],
)
def test_validate_url_accepts(url: str) -> None:
    assert validate_url(url) == url


@pytest.mark.parametrize(
    ("url", "cause"),
    [
        ("", "empty"),
        ("example.com/a.jpg", "http or https"),
        ("ftp://h/a.jpg", "http or https"),
        ("file:///etc/passwd", "http or https"),
        ("javascript:alert(1)", "http or https"),
        ("http:///a.jpg", "no host"),
        ("http://user@/a.jpg", "no host"),
        ("http://h/a b.jpg", "space"),
        ("http://h/a\tb.jpg", "control"),
        ("http://h/a\x00b", "control"),
        ("http://h/a\u00a0b", "space"),
        ("http://h:99999/a", "malformed"),
        ("http://h:port/a", "malformed"),
        ("http://h:0/a", "port 0"),
        ("http://[::1/a", "malformed"),
        ("http://[zz::1]/a", "IPv6"),
        ("http://a<b>/x", "host"),
        ("http://.../x", "host"),
    ],
)
def test_validate_url_refuses(url: str, cause: str) -> None:
    with pytest.raises(UrlError, match=cause) as info:
        validate_url(url)
    assert info.value.reason == "bad-url"
    assert not isinstance(info.value, UnsafePathError)


# --- explicit PATH ----------------------------------------------------------------------

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


# --- parse_line and read_entries --------------------------------------------------------

def test_parse_line_forms() -> None:
    assert parse_line("") is None
    assert parse_line("   \t ") is None
    assert parse_line("# a comment") is None
    assert parse_line("   # indented comment http://h/x") is None
    assert parse_line("http://h/a.jpg", 3) == Entry(3, "http://h/a.jpg", "h/a.jpg")
    assert parse_line("  http://h/a.jpg \t dir/my file.jpg  ", 4) == Entry(
        4, "http://h/a.jpg", "dir/my file.jpg"
    )
    assert parse_line("http://h/a.jpg", layout="path") == Entry(0, "http://h/a.jpg", "a.jpg")
    assert parse_line("http://h/a.jpg#frag") == Entry(0, "http://h/a.jpg#frag", "h/a.jpg")


def test_parse_line_errors_name_the_line() -> None:
    with pytest.raises(UrlError, match=r"^line 7: .*http or https") as bad:
        parse_line("ftp://h/a.jpg", 7)
    assert type(bad.value) is UrlError
    with pytest.raises(UnsafePathError, match=r"^line 8: .*'\.\.'"):
        parse_line("http://h/a.jpg ../../etc/cron.d/x", 8)
    with pytest.raises(UrlError, match="control"):
        parse_line("http://h/a.jpg a\tb.jpg", 9)  # a tab inside PATH is not a separator
    with pytest.raises(UrlError) as unnumbered:
        parse_line("nonsense")
    assert not str(unnumbered.value).startswith("line")


def test_read_entries_mixed_list() -> None:
    lines = [
        "\ufeffhttp://h/one.jpg\r\n",  # BOM on line 1, CRLF
        "# comment\n",
        "\n",
        "   \r\n",
        "http://h/two.jpg   pics/two.jpg\n",
        "not a url\n",
        "http://h/three.jpg /etc/passwd\n",
        "http://h/four.jpg\r\n",
        "\ufeffhttp://h/five.jpg\n",  # a BOM after line 1 is garbage
        "http://H/ONE.JPG\n",  # same file as line 1 up to case
        "http://h/one.jpg/x.jpg\n",  # needs line 1's file as a folder
        "http://other/pics\n",  # fine: different host
        "http://h/x.jpg pics/two.jpg/deeper.jpg\n",
        "http://h/y.jpg pics\n",  # the folder of line 5's file
        "http://h/last.jpg",  # no final newline
    ]
    got = list(read_entries(lines))
    entries = [e for e in got if isinstance(e, Entry)]
    bad = [b for b in got if isinstance(b, BadLine)]
    assert [(e.line, e.path) for e in entries] == [
        (1, "h/one.jpg"),
        (5, "pics/two.jpg"),
        (8, "h/four.jpg"),
        (12, "other/pics"),
        (15, "h/last.jpg"),
    ]
    assert [(b.line, b.error.reason) for b in bad] == [
        (6, "bad-url"),
        (7, "unsafe-path"),
        (9, "bad-url"),
        (10, "unsafe-path"),
        (11, "unsafe-path"),
        (13, "unsafe-path"),
        (14, "unsafe-path"),
    ]
    for b in bad:
        assert str(b.error).startswith(f"line {b.line}: ")
        assert "\n" not in b.text and "\r" not in b.text
    by_line = {b.line: str(b.error) for b in bad}
    assert "line 1" in by_line[10].removeprefix("line 10")
    assert "line 1" in by_line[11].removeprefix("line 11")
    assert "line 5" in by_line[13].removeprefix("line 13")
    assert "line 5" in by_line[14].removeprefix("line 14")
    assert bad[0].text == "not a url"


def test_read_entries_nfc_nfd_collide() -> None:
    nfc = unicodedata.normalize("NFC", "café.jpg")
    nfd = unicodedata.normalize("NFD", "café.jpg")
    got = list(read_entries([f"http://h/a.jpg {nfc}", f"http://h/b.jpg {nfd}"]))
    assert isinstance(got[0], Entry) and isinstance(got[1], BadLine)
    assert "line 1" in str(got[1].error)


def test_read_entries_truncates_long_bad_lines() -> None:
    line = "http://h/" + "a b" * 10_000
    (bad,) = list(read_entries([line]))
    assert isinstance(bad, BadLine)
    assert 0 < len(bad.text) <= 200
    assert len(str(bad.error)) < 400


def test_read_entries_streams_100k_lines_with_1_percent_garbage() -> None:
    n = 100_000
    pulled = 0

    def lines() -> Iterator[str]:
        nonlocal pulled
        for i in range(1, n + 1):
            pulled = i
            if i % 100 == 0:
                yield f"garbage line {i}\n"
            else:
                yield f"https://cdn{i % 7}.example.com/img/{i}.jpg?v={i % 3}\n"

    it = read_entries(lines())
    first = next(it)
    assert isinstance(first, Entry) and first.line == 1
    assert pulled == 1  # lazy: nothing read ahead
    start = time.perf_counter()
    rest = list(it)
    elapsed = time.perf_counter() - start
    items = [first, *rest]
    bad = [x.line for x in items if isinstance(x, BadLine)]
    good = [x for x in items if isinstance(x, Entry)]
    assert bad == list(range(100, n + 1, 100))
    assert len(good) == n - n // 100
    assert len({e.path for e in good}) == len(good)
    assert elapsed < 20


# --- path_key ---------------------------------------------------------------------------

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


# --- safe_join --------------------------------------------------------------------------

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
    import fetcher.urls

    monkeypatch.setattr(fetcher.urls, "clean_relpath", lambda path: path)
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


# --- properties -------------------------------------------------------------------------

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
SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@SETTINGS
@given(url=st.text(max_size=80) | URLISH | BUILT_URL, layout=st.sampled_from(["host/path", "path"]))
def test_any_url_is_refused_or_lands_inside(dest: Path, url: str, layout: str) -> None:
    try:
        path = url_to_path(url, layout=layout)
    except UrlError as exc:
        assert exc.reason == "bad-url"
        return
    assert clean_relpath(path) == path  # derived paths are already clean
    assert_inside(dest, safe_join(dest, path))


@SETTINGS
@given(
    path=st.text(max_size=60)
    | st.lists(SEGMENT, min_size=1, max_size=6).map("/".join)
)
def test_any_path_is_refused_or_lands_inside(dest: Path, path: str) -> None:
    try:
        joined = safe_join(dest, path)
    except UnsafePathError as exc:
        assert exc.reason == "unsafe-path"
        return
    assert_inside(dest, joined)
    assert clean_relpath(clean_relpath(path)) == clean_relpath(path)


@settings(SETTINGS, max_examples=100)
@given(lines=st.lists(st.text(max_size=40) | URLISH | BUILT_URL, max_size=20))
def test_read_entries_accounts_for_every_line(lines: list[str]) -> None:
    text = "\n".join(lines)
    rows = text.split("\n") if text else []
    got = list(read_entries(rows))
    numbers = [item.line for item in got]
    assert numbers == sorted(set(numbers))
    content = [
        row.removesuffix("\r").removeprefix("\ufeff" if i == 1 else "").strip(" \t")
        for i, row in enumerate(rows, 1)
    ]
    skipped = {i for i, c in enumerate(content, 1) if not c or c.startswith("#")}
    assert set(numbers) == set(range(1, len(rows) + 1)) - skipped
    keys = [path_key(e.path) for e in got if isinstance(e, Entry)]
    assert len(keys) == len(set(keys))


def test_digest_table_behaves_like_a_dict_through_growth() -> None:
    from fetcher.urls import _DigestTable

    rng = random.Random(5)
    table, reference = _DigestTable(capacity=8), {}
    for _ in range(5000):
        key = rng.getrandbits(64) or 1
        if rng.random() < 0.2 and reference:
            key = rng.choice(list(reference))  # a key already in: must keep its first line
        line = rng.randrange(1, 1 << 31)
        table.setdefault(key, line)
        reference.setdefault(key, line)
    assert all(table.get(key) == line for key, line in reference.items())
    assert all(table.get(rng.getrandbits(64) | 1 << 63) is None for _ in range(1000))


def test_path_claims_of_a_long_list_stay_small() -> None:
    """A run holds its list's path claims to the end: a few dozen bytes a line, not 130."""
    lines = [f"http://h.example/{i // 100}/{i}.png" for i in range(50_000)]
    tracemalloc.start()
    try:
        entries = read_entries(iter(lines))
        first = next(entries)
        before = tracemalloc.get_traced_memory()[0]
        count = 1 + sum(1 for _ in entries)
        peak = tracemalloc.get_traced_memory()[1]  # the claims at their largest
    finally:
        tracemalloc.stop()
    assert isinstance(first, Entry) and count == 50_000
    assert (peak - before) / count < 60, (peak - before) / count


def test_safe_join_takes_a_relative_destination(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for dest in (".", "d", "d/", "d/../d"):
        assert safe_join(Path(dest), "a/b.jpg") == Path(dest) / "a" / "b.jpg"
