"""Read the URL list, map each URL to a safe destination path, and join it under the destination.

The list holds one entry a line, ``URL [PATH]``: the URL, then (after spaces or tabs)
an optional PATH relative to the destination, which runs to the end of the line and
may contain inner spaces. Blank lines and lines whose first non-blank character is
``#`` are skipped; there are no comments after an entry (``#`` is part of a URL).

Derived paths (no PATH given), ``layout="host/path"``: ``HOST[_PORT]/URL-PATH``;
``layout="path"``: ``URL-PATH`` only. Each path segment is percent-decoded on its own
(UTF-8, undecodable bytes become U+FFFD, so ``%2F`` stays inside its segment as
``_``), then sanitised:

- NFC-normalised; control characters (C0, DEL, C1) and ``<>:"/\\|?*`` become ``_``;
  trailing dots and spaces are stripped; a segment left empty becomes ``_``.
- ``.`` segments are dropped, ``..`` removes the segment before it (RFC 3986 dot
  segments, as the server sees them) and never climbs above the top; empty segments
  (``a//b``) are dropped.
- Windows device names (``CON``, ``PRN``, ``AUX``, ``NUL``, ``COM0``-``COM9``,
  ``LPT0``-``LPT9``, ``CONIN$``, ``CONOUT$``, with any extension, any case) get a ``_``
  prefix, as do names fetcher reserves: ``.fetcher`` as the first segment (the state
  folder) and any segment starting with ``.fetcher-tmp-`` (temporary files).
- A path ending in ``/`` (or empty) names the file ``index``.
- A query string becomes ``.q-XXXXXXXX`` before the extension, ``XXXXXXXX`` the first
  8 hex digits of SHA-256 over the raw query text (``img.jpg?w=100`` ->
  ``img.q-<hash>.jpg``); an empty query (``img.jpg?``) counts as none. The fragment is
  ignored (it is never sent to the server).
- A segment over 255 bytes of UTF-8 is cut, keeping its extension, and ``~XXXXXXXX``
  (SHA-256 of the uncut segment) is added so distinct long names stay distinct. A
  whole path over 1024 bytes keeps its first and last segment and replaces the
  middle by one ``_deep-XXXXXXXX`` folder (SHA-256 of the whole path).
- The host is lower-cased, userinfo dropped, an IDNA host kept as written (punycode
  stays punycode), an IPv6 literal written without brackets (``::1`` -> ``__1``), and
  the port kept as ``HOST_PORT`` unless it is the scheme's default (80, 443), so
  ``http://h:80/a`` and ``http://h/a`` share one path. ``http`` and ``https`` URLs of
  one host share the folder.

An explicit PATH is checked, not rewritten: it must already be a portable relative
path (what the sanitiser would leave unchanged), apart from NFC normalisation and
``.``/repeated-``/`` segments, which are normalised away. Anything else raises
``UnsafePathError``: absolute paths, drive letters or any ``:``, backslashes, ``..``,
NUL or control characters, ``<>"|?*``, trailing dots or spaces, device names, names
fetcher reserves, a segment over 255 bytes, a path over 1024 bytes, a trailing ``/``.

``read_entries`` also refuses (``unsafe-path``) an entry whose path is already used by
an earlier line, compared by ``path_key`` (case-folded, NFC), or whose path is a
folder of an earlier entry's file or the reverse. For that it keeps a 64-bit digest
and a line number per distinct file and folder: about 100 bytes per entry, the one
thing that grows with the list.
"""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import os
import re
import stat
import unicodedata
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .errors import StoreError, UnsafePathError, UrlError
from .store import STATE_DIR
from .store import TEMP_PREFIX as TMP_PREFIX

__all__ = [
    "BadLine",
    "Entry",
    "clean_relpath",
    "parse_line",
    "path_key",
    "read_entries",
    "safe_join",
    "url_to_path",
    "validate_url",
]

LAYOUTS = ("host/path", "path")
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 1024
INDEX_NAME = "index"
_TEXT_CAP = 200
_DEFAULT_PORTS = {"http": 80, "https": 443}
_WINDOWS_FORBIDDEN = '<>:"/\\|?*'
_CONTROL = "\x00-\x1f\x7f-\x9f\ud800-\udfff"  # Unicode categories Cc and Cs
_CONTROL_RE = re.compile(f"[{_CONTROL}]")
_SPACE_OR_CONTROL_RE = re.compile(f"[\\s{_CONTROL}]")
_UNPORTABLE_RE = re.compile(f"[{re.escape(_WINDOWS_FORBIDDEN)}{_CONTROL}]")
_FORBIDDEN_RE = re.compile(f"[{re.escape(_WINDOWS_FORBIDDEN)}]")
_DEVICE_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{dev}{n}" for dev in ("COM", "LPT") for n in [*"0123456789", "¹", "²", "³"]]
)
_HOST_CHARS = re.compile(r"[\w.-]+")
_EXT = re.compile(r"\.[A-Za-z0-9]{1,15}")


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


def _short(text: str, limit: int = 100) -> str:
    """``repr`` of ``text``, cut to about ``limit`` characters for a message."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _hash8(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


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
    elif not _HOST_CHARS.fullmatch(host) or not host.strip("."):
        raise UrlError(f"URL {_short(url)} has a malformed host {_short(host, 60)}")
    if port == 0:
        raise UrlError(f"URL {_short(url)} has port 0")
    return url


def _split_ext(name: str) -> tuple[str, str]:
    """Split ``name`` into stem and extension (``.jpg``); no extension unless short and plain."""
    dot = name.rfind(".")
    if dot > 0 and _EXT.fullmatch(name, dot):
        return name[:dot], name[dot:]
    return name, ""


def _is_device_name(name: str) -> bool:
    return name.split(".", 1)[0].rstrip(" ").upper() in _DEVICE_NAMES


def _is_fetcher_name(name: str, *, first: bool) -> bool:
    folded = name.casefold()
    return folded.startswith(TMP_PREFIX) or (first and folded == STATE_DIR)


def _cap_name(name: str) -> str:
    """Cut ``name`` to ``MAX_NAME_BYTES`` of UTF-8, keeping its extension, adding a hash."""
    if len(name.encode("utf-8")) <= MAX_NAME_BYTES:
        return name
    stem, ext = _split_ext(name)
    tail = f"~{_hash8(name)}{ext}"
    room = MAX_NAME_BYTES - len(tail.encode("utf-8"))
    cut = stem.encode("utf-8")[:room].decode("utf-8", "ignore")
    # A cut can leave a base character whose combining mark was dropped; keep the
    # result NFC (and unchanged by a second pass) by shortening until it is.
    while cut and unicodedata.normalize("NFC", cut) != cut:
        cut = cut[:-1]
    return cut.rstrip(". ") + tail


def _sanitise(segment: str, *, first: bool) -> str:
    """Turn one decoded URL segment into a portable file or folder name."""
    name = unicodedata.normalize("NFC", segment)
    name = _UNPORTABLE_RE.sub("_", name)
    name = name.rstrip(". ") or "_"
    if _is_device_name(name) or _is_fetcher_name(name, first=first):
        name = "_" + name
    return _cap_name(name)


def _with_query(name: str, query: str) -> str:
    stem, ext = _split_ext(name)
    return f"{stem}.q-{_hash8(query)}{ext}"


def _url_segments(path: str) -> list[str]:
    """Percent-decode the segments of a URL path and resolve dot segments without escaping."""
    out: list[str] = []
    segment = ""
    for raw in path.split("/"):
        segment = unquote(raw, encoding="utf-8", errors="replace")
        if segment == "..":
            if out:
                out.pop()
        elif segment not in ("", "."):
            out.append(segment)
    if not out or segment in ("", ".", ".."):  # the path names a folder
        out.append(INDEX_NAME)
    return out


def _cap_path(parts: list[str]) -> list[str]:
    whole = "/".join(parts)
    if len(whole.encode("utf-8")) <= MAX_PATH_BYTES or len(parts) <= 2:
        return parts
    return [parts[0], f"_deep-{_hash8(whole)}", parts[-1]]


def url_to_path(url: str, *, layout: str = "host/path") -> str:
    """Derive the destination path of ``url``, relative to the destination folder.

    Parameters
    ----------
    url : str
        An http or https URL.
    layout : {"host/path", "path"}
        ``"host/path"``: ``HOST[_PORT]/URL-PATH``; ``"path"``: the URL path only.

    Returns
    -------
    str
        A relative POSIX path, sanitised as the module docstring describes; it always
        passes ``clean_relpath`` unchanged.

    Raises
    ------
    UrlError
        ``url`` is not a usable URL (see ``validate_url``).
    ValueError
        ``layout`` is not one of the two layouts.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    parts = urlsplit(validate_url(url))
    segments = _url_segments(parts.path)
    if parts.query:
        segments[-1] = _with_query(segments[-1], parts.query)
    if layout == "host/path":
        host = parts.hostname or ""
        port = parts.port
        if port is not None and port != _DEFAULT_PORTS[parts.scheme.lower()]:
            host = f"{host}_{port}"
        segments.insert(0, host)
    names = [_sanitise(seg, first=i == 0) for i, seg in enumerate(segments)]
    return "/".join(_cap_path(names))


def _refuse(path: str, why: str) -> UnsafePathError:
    return UnsafePathError(f"path {_short(path)} is refused: {why}")


def _check_component(path: str, name: str, *, first: bool) -> None:
    bad = _CONTROL_RE.search(name)
    if bad is not None:
        raise _refuse(path, f"control character {bad[0]!r}")
    bad = _FORBIDDEN_RE.search(name)
    if bad is not None:
        raise _refuse(path, f"{bad[0]!r} is not allowed in a file name on every filesystem")
    if name.rstrip(". ") != name:
        raise _refuse(path, f"{name!r} ends in a dot or a space")
    if _is_device_name(name):
        raise _refuse(path, f"{name!r} is a reserved device name on Windows")
    if _is_fetcher_name(name, first=first):
        raise _refuse(path, f"{name!r} is reserved for fetcher's own files")
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise _refuse(path, f"a name is longer than {MAX_NAME_BYTES} bytes")


def clean_relpath(path: str) -> str:
    """Validate and normalise an explicit destination PATH from the list.

    Parameters
    ----------
    path : str
        A path relative to the destination, ``/``-separated.

    Returns
    -------
    str
        The path NFC-normalised, with ``.`` segments and repeated ``/`` removed.

    Raises
    ------
    UnsafePathError
        Naming the path and the cause: absolute, a drive letter or ``:``, a backslash,
        ``..``, NUL or a control character, a character or name some filesystem refuses,
        a name reserved by fetcher, too long, or naming a folder rather than a file.
    """
    if not path.strip():
        raise _refuse(path, "empty")
    if "\x00" in path:
        raise _refuse(path, "contains NUL")
    if "\\" in path:
        raise _refuse(path, "contains a backslash (use '/' between folders)")
    if path.startswith("/"):
        raise _refuse(path, "absolute (it must be relative to the destination)")
    if re.match(r"[A-Za-z]:", path):
        raise _refuse(path, "starts with a drive letter")
    if path.endswith("/"):
        raise _refuse(path, "ends with '/' (it must name a file)")
    names = [n for n in unicodedata.normalize("NFC", path).split("/") if n not in ("", ".")]
    if not names:
        raise _refuse(path, "names no file")
    if ".." in names:
        raise _refuse(path, "contains '..'")
    for i, name in enumerate(names):
        _check_component(path, name, first=i == 0)
    clean = "/".join(names)
    if len(clean.encode("utf-8")) > MAX_PATH_BYTES:
        raise _refuse(path, f"longer than {MAX_PATH_BYTES} bytes")
    return clean


def safe_join(dest: Path, relpath: str) -> Path:
    """Join ``relpath`` under ``dest``, refusing any way out of ``dest``.

    Every existing component below ``dest`` (the file itself included) is checked
    with ``lstat``: a symbolic link anywhere below ``dest`` is refused, even one that
    points inside it, since the target would change behind fetcher's back. ``dest``
    itself may be a link. The joined path, normalised, must lie under ``dest``.

    Parameters
    ----------
    dest : Path
        The destination folder (it need not exist yet).
    relpath : str
        A relative path; it is checked with ``clean_relpath`` first.

    Returns
    -------
    Path
        ``dest / relpath`` (not resolved).

    Raises
    ------
    UnsafePathError
        ``relpath`` is refused by ``clean_relpath``, crosses a symbolic link below
        ``dest``, or leads outside ``dest``.
    StoreError
        A component cannot be examined (e.g. permission denied); reason ``io-error``.
    """
    clean = clean_relpath(relpath)
    here = dest
    for name in clean.split("/"):
        here = here / name
        try:
            mode = os.lstat(here).st_mode
        except FileNotFoundError:
            break
        except OSError as exc:  # e.g. a component that is a file, not a folder
            if exc.errno == errno.ENOTDIR:  # nothing can exist below a file
                break
            raise StoreError(f"cannot check {str(here)!r} for {_short(relpath)}: {exc}") from None
        if stat.S_ISLNK(mode):
            raise _refuse(relpath, f"{str(here)!r} is a symbolic link")
    # With no link below dest, a lexical check is exact; resolve() would lstat every
    # component from / again. It repeats clean_relpath's refusal of "..", in case a
    # future change to the cleaning lets one through.
    root = os.path.abspath(dest)
    if not os.path.normpath(os.path.join(root, clean)).startswith(root.rstrip("/") + "/"):
        raise _refuse(relpath, f"it leads outside {root!r}")
    return dest / clean


def path_key(relpath: str) -> str:
    """Key under which two destination paths count as the same file.

    Parameters
    ----------
    relpath : str
        A destination path relative to the destination folder.

    Returns
    -------
    str
        ``relpath`` case-folded and NFC-normalised (canonical caseless form), so names
        differing only in case or Unicode normalisation collide, as they do on macOS
        and Windows.
    """
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", relpath).casefold())


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
        if rest:
            validate_url(url)
            path = clean_relpath(rest)
        else:
            path = url_to_path(url, layout=layout)
    except UrlError as exc:
        if not line:
            raise
        raise type(exc)(f"line {line}: {exc.message}") from None
    return Entry(line=line, url=url, path=path)


class _DigestTable:
    """Nonzero 64-bit digests mapped to line numbers, in flat arrays: 12 bytes a slot.

    Open addressing with linear probing, at most 80 % full (so 12 to 30 bytes an
    entry: 1.5 MB for 100 000 entries). A dict of Python ints costs about 130 bytes an
    entry: 13 MB for a 100 000-line list, which a run holds to its end.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._keys = array("Q", [0]) * capacity
        self._lines = array("I", [0]) * capacity
        self._mask = capacity - 1
        self._used = 0

    def _slot(self, key: int) -> int:
        keys, mask = self._keys, self._mask
        index = key & mask
        while keys[index] and keys[index] != key:
            index = (index + 1) & mask
        return index

    def get(self, key: int) -> int | None:
        """The line stored for ``key``, or None."""
        index = self._slot(key)
        return self._lines[index] if self._keys[index] else None

    def setdefault(self, key: int, line: int) -> None:
        """Store ``line`` for ``key`` unless it has one."""
        index = self._slot(key)
        if self._keys[index]:
            return
        self._keys[index], self._lines[index] = key, line
        self._used += 1
        if 5 * self._used > 4 * len(self._keys):
            self._grow()

    def _grow(self) -> None:
        old = zip(self._keys, self._lines, strict=True)
        capacity = 2 * len(self._keys)
        self._keys = array("Q", [0]) * capacity
        self._lines = array("I", [0]) * capacity
        self._mask = capacity - 1
        for key, line in old:
            if key:
                index = self._slot(key)
                self._keys[index], self._lines[index] = key, line


class _Claims:
    """Which destination paths (files) and their folders earlier entries have taken.

    Keys are 64-bit BLAKE2b digests of ``path_key`` values (0 read as 1), mapped to
    the first line that took them; a false clash needs a 64-bit collision.
    """

    def __init__(self) -> None:
        self.files = _DigestTable()
        self.folders = _DigestTable()
        self._last_folder = ""  # the folder of the last entry claimed ("" for none)

    @staticmethod
    def _digest(relpath: str) -> int:
        raw = hashlib.blake2b(path_key(relpath).encode("utf-8"), digest_size=8).digest()
        return int.from_bytes(raw, "big") or 1

    def claim(self, entry: Entry) -> UnsafePathError | None:
        """Record ``entry``'s path, or return the error if an earlier entry clashes with it."""
        key = self._digest(entry.path)
        first = self.files.get(key)
        if first is not None:
            return UnsafePathError(
                f"line {entry.line}: path {_short(entry.path)} is already used by line {first}"
                " (names differing only in case or Unicode form count as the same)"
            )
        first = self.folders.get(key)
        if first is not None:
            return UnsafePathError(
                f"line {entry.line}: path {_short(entry.path)} is a folder of line {first}'s file"
            )
        names = entry.path.split("/")
        if len(names) > 1 and entry.path.rpartition("/")[0] == self._last_folder:
            names = names[-1:]  # same folder as the entry before: its folders are claimed
        folders = ["/".join(names[:i]) for i in range(1, len(names))]
        folder_keys = [self._digest(folder) for folder in folders]
        for folder, folder_key in zip(folders, folder_keys, strict=True):
            first = self.files.get(folder_key)
            if first is not None:
                return UnsafePathError(
                    f"line {entry.line}: path {_short(entry.path)} needs folder"
                    f" {_short(folder)}, which is line {first}'s file"
                )
        self.files.setdefault(key, entry.line)
        for folder_key in folder_keys:
            self.folders.setdefault(folder_key, entry.line)
        self._last_folder = entry.path.rpartition("/")[0]
        return None


def read_entries(lines: Iterable[str], *, layout: str = "host/path") -> Iterator[Entry | BadLine]:
    """Read a URL list one line at a time, yielding an entry or a bad line for each used line.

    Parameters
    ----------
    lines : iterable of str
        The list's lines, with or without ``\\n`` / ``\\r\\n`` endings (an open text
        file, ``sys.stdin``, a generator); consumed lazily, never held whole.
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


def _read_entries(lines: Iterable[str], layout: str) -> Iterator[Entry | BadLine]:
    claims = _Claims()
    for number, raw in enumerate(lines, start=1):
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
        clash = claims.claim(entry)
        yield entry if clash is None else BadLine(line=number, text=text[:_TEXT_CAP], error=clash)
