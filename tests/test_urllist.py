"""Tests for fetcher.urllist: URL validation and the list reader."""

from __future__ import annotations

import tracemalloc
import unicodedata
from collections.abc import Iterator

import pytest
from conftest import BUILT_URL, URLISH
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fetcher.errors import UnsafePathError, UrlError
from fetcher.paths import path_key
from fetcher.urllist import BadLine, Entry, parse_line, read_entries, validate_url


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/a.jpg",
        "https://example.com",
        "HTTP://EXAMPLE.COM/A",
        "http://[2001:db8::1]/x",
        "http://bücher.de/x",
        "http://h/a|b{c}.jpg",
        "http://example.com./a.jpg",
        "http://" + "a" * 63 + ".example/x.png",
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
        ("http://a..b/x.png", "malformed host"),
        ("http://" + "a" * 64 + ".example/x.png", "malformed host"),
        ("http://" + "a." * 127 + "bc/x.png", "malformed host"),
    ],
)
def test_validate_url_refuses(url: str, cause: str) -> None:
    with pytest.raises(UrlError, match=cause) as info:
        validate_url(url)
    assert info.value.reason == "bad-url"
    assert not isinstance(info.value, UnsafePathError)


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
    rest = list(it)
    items = [first, *rest]
    bad = [x.line for x in items if isinstance(x, BadLine)]
    good = [x for x in items if isinstance(x, Entry)]
    assert bad == list(range(100, n + 1, 100))
    assert len(good) == n - n // 100
    assert len({e.path for e in good}) == len(good)


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


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
