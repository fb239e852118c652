"""Map a URL to a safe relative destination path, check explicit paths, claim paths.

Nothing here touches the disk: the safe walk under the destination is
:class:`fetcher.store.Destination`.

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

:class:`Claims` keeps which paths earlier entries took (for ``read_entries``): an
entry whose path is already used, compared by ``path_key`` (case-folded, NFC), or
whose path is a folder of an earlier entry's file or the reverse, is refused. For that
it keeps a 64-bit digest and a line number per distinct file and folder.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from array import array
from urllib.parse import unquote, urlsplit

from .errors import UnsafePathError, UrlError

__all__ = [
    "LAYOUTS",
    "STATE_DIR",
    "TEMP_PREFIX",
    "Claims",
    "clean_relpath",
    "path_key",
    "url_to_path",
]

#: fetcher's own folder at the top of the destination (lock, state).
STATE_DIR = ".fetcher"
#: Prefix of the temporary files a write creates beside its target.
TEMP_PREFIX = ".fetcher-tmp-"
TMP_PREFIX = TEMP_PREFIX

LAYOUTS = ("host/path", "path")
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 1024
INDEX_NAME = "index"
_DEFAULT_PORTS = {"http": 80, "https": 443}
_WINDOWS_FORBIDDEN = '<>:"/\\|?*'
_CONTROL = "\x00-\x1f\x7f-\x9f\ud800-\udfff"  # Unicode categories Cc and Cs
_CONTROL_RE = re.compile(f"[{_CONTROL}]")
_UNPORTABLE_RE = re.compile(f"[{re.escape(_WINDOWS_FORBIDDEN)}{_CONTROL}]")
_FORBIDDEN_RE = re.compile(f"[{re.escape(_WINDOWS_FORBIDDEN)}]")
_DEVICE_NAMES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{dev}{n}" for dev in ("COM", "LPT") for n in [*"0123456789", "¹", "²", "³"]]
)
_EXT = re.compile(r"\.[A-Za-z0-9]{1,15}")


def _short(text: str, limit: int = 100) -> str:
    """``repr`` of ``text``, cut to about ``limit`` characters for a message."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _hash8(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


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
        ``url`` cannot be split into scheme, host, port and path. Pass URLs that
        :func:`fetcher.urllist.validate_url` accepted: this does not check them again.
    ValueError
        ``layout`` is not one of the two layouts.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, not {layout!r}")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UrlError(f"URL {_short(url)} is malformed: {exc}") from None
    segments = _url_segments(parts.path)
    if parts.query:
        segments[-1] = _with_query(segments[-1], parts.query)
    if layout == "host/path":
        host = parts.hostname or ""
        if port is not None and port != _DEFAULT_PORTS.get(parts.scheme.lower()):
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


class Claims:
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

    def claim(self, line: int, path: str) -> UnsafePathError | None:
        """Record the path of list line ``line``, or return the error if an earlier one clashes."""
        key = self._digest(path)
        first = self.files.get(key)
        if first is not None:
            return UnsafePathError(
                f"line {line}: path {_short(path)} is already used by line {first}"
                " (names differing only in case or Unicode form count as the same)"
            )
        first = self.folders.get(key)
        if first is not None:
            return UnsafePathError(
                f"line {line}: path {_short(path)} is a folder of line {first}'s file"
            )
        names = path.split("/")
        if len(names) > 1 and path.rpartition("/")[0] == self._last_folder:
            names = names[-1:]  # same folder as the entry before: its folders are claimed
        folders = ["/".join(names[:i]) for i in range(1, len(names))]
        folder_keys = [self._digest(folder) for folder in folders]
        for folder, folder_key in zip(folders, folder_keys, strict=True):
            first = self.files.get(folder_key)
            if first is not None:
                return UnsafePathError(
                    f"line {line}: path {_short(path)} needs folder"
                    f" {_short(folder)}, which is line {first}'s file"
                )
        self.files.setdefault(key, line)
        for folder_key in folder_keys:
            self.folders.setdefault(folder_key, line)
        self._last_folder = path.rpartition("/")[0]
        return None
