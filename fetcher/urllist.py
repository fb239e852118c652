"""Read the URL list: lines -> :class:`Entry` or :class:`BadLine`, each URL validated.

The list holds one entry a line, ``URL [PATH]``: the URL, then (after spaces or tabs)
an optional PATH relative to the destination, which runs to the end of the line and
may contain inner spaces. Blank lines and lines whose first non-blank character is
``#`` are skipped; there are no comments after an entry (``#`` is part of a URL).
Without PATH the path is derived from the URL (:func:`fetcher.paths.url_to_path`);
an explicit PATH is checked (:func:`fetcher.paths.clean_relpath`). Two entries that
map to one path (also differing only in case or Unicode form), or where one's path
is a folder of the other's, are refused: the second is a ``BadLine`` naming the first.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from .errors import UrlError
from .paths import _CONTROL, _DEFAULT_PORTS, LAYOUTS, Claims, _short, clean_relpath, url_to_path

__all__ = ["BadLine", "Entry", "parse_line", "read_entries", "validate_url"]

_TEXT_CAP = 200
_SPACE_OR_CONTROL_RE = re.compile(f"[\\s{_CONTROL}]")
_HOST_CHARS = re.compile(r"[\w.-]+")


@dataclass(frozen=True)
class Entry:
    """One usable line of the URL list.

    ``line`` is 1-based (0 when built by a library caller); ``path`` is relative to the
    destination, with ``/`` separators, already sanitised and validated.
    """

    line: int
    url: str
    path: str


@dataclass(frozen=True)
class BadLine:
    """A list line that cannot be used; ``error.reason`` is ``bad-url`` or ``unsafe-path``."""

    line: int
    text: str
    error: UrlError


def validate_url(url: str) -> str:
    """Check that ``url`` can be fetched: http or https, a host, no spaces or control characters.

    Parameters
    ----------
    url : str
        The URL as written in the list.

    Returns
    -------
    str
        ``url`` itself, unchanged.

    Raises
    ------
    UrlError
        Naming the URL and what is wrong with it (reason ``bad-url``).
    """
    if not url:
        raise UrlError("empty URL")
    bad = _SPACE_OR_CONTROL_RE.search(url)
    if bad is not None:
        raise UrlError(f"URL {_short(url)} contains {bad[0]!r} (space or control character)")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlError(f"URL {_short(url)} is malformed: {exc}") from None
    if parts.scheme.lower() not in _DEFAULT_PORTS:
        raise UrlError(f"URL {_short(url)} is not http or https")
    host = parts.hostname
    if not host:
        raise UrlError(f"URL {_short(url)} has no host")
    if "[" in parts.netloc:
        try:
            ipaddress.IPv6Address(host.partition("%")[0])
        except ValueError:
            raise UrlError(f"URL {_short(url)} has a malformed IPv6 host") from None
    elif not _HOST_CHARS.fullmatch(host) or not _labels_ok(host):
        raise UrlError(f"URL {_short(url)} has a malformed host {_short(host, 60)}")
    if port == 0:
        raise UrlError(f"URL {_short(url)} has port 0")
    return url


def _labels_ok(host: str) -> bool:
    """DNS rules: no empty label (``a..b``), none over 63 characters, 253 in all."""
    labels = host.removesuffix(".").split(".")
    return len(host) <= 253 and all(0 < len(label) <= 63 for label in labels)


def parse_line(text: str, line: int = 0, *, layout: str = "host/path") -> Entry | None:
    """Parse one list line, ``URL [PATH]``.

    Parameters
    ----------
    text : str
        The line without its line ending.
    line : int
        Its 1-based line number, used in messages (0: no number).
    layout : {"host/path", "path"}
        How a path is derived when the line gives none (see ``url_to_path``).

    Returns
    -------
    Entry or None
        The entry, or None for a blank line or a ``#`` comment.

    Raises
    ------
    UrlError
        The URL is unusable (reason ``bad-url``); the message names the line.
    UnsafePathError
        The explicit PATH is refused (reason ``unsafe-path``); the message names the line.
    """
    stripped = text.strip(" \t")
    if not stripped or stripped.startswith("#"):
        return None
    url, *more = re.split(r"[ \t]+", stripped, maxsplit=1)
    rest = more[0] if more else ""
    try:
        validate_url(url)
        path = clean_relpath(rest) if rest else url_to_path(url, layout=layout)
    except UrlError as exc:
        if not line:
            raise
        raise type(exc)(f"line {line}: {exc.message}") from None
    return Entry(line=line, url=url, path=path)


def read_entries(
    lines: Iterable[str | bytes], *, layout: str = "host/path"
) -> Iterator[Entry | BadLine]:
    """Read a URL list one line at a time, yielding an entry or a bad line for each used line.

    Parameters
    ----------
    lines : iterable of str or bytes
        The list's lines, with or without ``\\n`` / ``\\r\\n`` endings (an open file,
        ``sys.stdin``, a generator); consumed lazily, never held whole. Lines given as
        bytes (a file opened in binary) must be UTF-8: one that is not is a ``BadLine``
        naming the line, the byte and its column.
    layout : {"host/path", "path"}
        How a path is derived for lines without PATH (see ``url_to_path``).

    Yields
    ------
    Entry or BadLine
        In list order; blank and comment lines yield nothing. A line that is malformed,
        names an unsafe PATH, or maps to a path an earlier entry already uses (or a
        folder of one, or the reverse) is a ``BadLine`` whose error names the line.

    Raises
    ------
    ValueError
        ``layout`` is not one of the two layouts (raised before any line is read).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    return _read_entries(lines, layout)


def _decoded(raw: bytes, number: int) -> str | BadLine:
    """One list line as text, or the BadLine saying where it is not UTF-8."""
    raw = raw.removesuffix(b"\n").removesuffix(b"\r")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = raw.decode("utf-8", "replace")
        error = UrlError(
            f"line {number}: not UTF-8: byte 0x{raw[exc.start]:02X} at column {exc.start + 1} "
            f"({exc.reason}); the list must be UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        )
        return BadLine(line=number, text=text[:_TEXT_CAP], error=error)


def _read_entries(lines: Iterable[str | bytes], layout: str) -> Iterator[Entry | BadLine]:
    claims = Claims()
    for number, line in enumerate(lines, start=1):
        raw = _decoded(line, number) if isinstance(line, bytes) else line
        if isinstance(raw, BadLine):
            yield raw
            continue
        text = raw.removesuffix("\n").removesuffix("\r")
        if number == 1:
            text = text.removeprefix("\ufeff")
        try:
            entry = parse_line(text, number, layout=layout)
        except UrlError as exc:
            yield BadLine(line=number, text=text[:_TEXT_CAP], error=exc)
            continue
        if entry is None:
            continue
        clash = claims.claim(entry.line, entry.path)
        yield entry if clash is None else BadLine(line=number, text=text[:_TEXT_CAP], error=clash)
