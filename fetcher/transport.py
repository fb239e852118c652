"""One HTTP exchange, two engines: libcurl (pycurl, the default) and a caller's requests.Session.

An engine sends one GET (redirects are not followed here: :mod:`fetcher.http` follows
them hop by hop, so every hop is validated, counted, limited per host and stripped of
credentials the same way with either engine) and returns a :class:`Reply`, or raises a
:class:`~fetcher.errors.FetchError`. Nothing else escapes an engine.

Both engines
------------
- Take the time left until the download's deadline (``Exchange.timeout``) and cover
  connect, headers and body with it: libcurl with ``CURLOPT_TIMEOUT_MS``; requests with
  per-read timeouts no longer than the time left and a check after every read (a caller's
  session cannot be reached before its headers are complete, so with it a server that
  trickles its *headers* is bounded by ``read_timeout`` per byte; documented limitation).
- Read the body of a 2xx only (any other answer is read up to 64 KiB so the connection
  can be kept, or dropped), decoded (gzip, deflate, and with libcurl br and zstd), and
  count the byte cap on the decoded bytes: a gzip bomb stops at ``max_bytes``.
- Mark a failure worth another try with ``error.transient = True`` (connection refused,
  reset or dropped, a truncated or undecodable body, a connect or read timeout); the
  deadline, the byte cap and TLS errors are final.
- Stop at once when :meth:`cancel` is called (an interrupt): libcurl's sockets of the
  transfers in flight are shut down, which ends them within milliseconds; the requests
  engine shuts down the sockets of the responses it is reading.

Header values are decoded as UTF-8 where they are valid UTF-8, else as Latin-1 (so a
raw UTF-8 ``Location`` is read as the server meant it, as requests does).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import pycurl

from .config import HttpConfig
from .errors import (
    FetchConnectionError,
    FetcherError,
    FetchError,
    FetchTimeoutError,
    TooLargeError,
    UrlError,
)

if TYPE_CHECKING:
    import requests

__all__ = ["CurlEngine", "Engine", "Exchange", "Reply", "RequestsEngine", "ca_bundle"]

#: Bytes of a non-2xx answer's body read (and thrown away) so its connection can be kept.
DISCARD = 64 * 1024
_CHUNK = 64 * 1024
_DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII only: "²".isdigit() is True


@dataclass(frozen=True)
class Exchange:
    """One GET to send: the URL, every header, and the seconds left until the deadline."""

    url: str
    headers: Mapping[str, str]
    timeout: float
    foreign: bool = False  # a hop to another origin than the listed URL's: no caller auth


@dataclass(frozen=True)
class Reply:
    """An answer: status, headers (names in lower case) and, for a 2xx, the decoded body."""

    url: str
    status: int
    phrase: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None


class Engine(Protocol):
    """What :class:`fetcher.http.Fetcher` needs from an engine."""

    def send(self, exchange: Exchange) -> Reply: ...

    def cancel(self) -> None: ...

    def close(self) -> None: ...


def _transient(error: FetchError) -> FetchError:
    error.transient = True
    return error


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _size(n: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n:.0f} bytes"


def _seconds(s: float) -> str:
    return f"{s:g} s"


def too_large(url: str, cap: int, status: int, length: int | None = None) -> TooLargeError:
    """The byte-cap error, naming the cap (and the announced length, if that was it)."""
    extra = f" (Content-Length {length})" if length is not None else ""
    return TooLargeError(f"GET {url}: body over {_size(cap)} cap{extra}", url=url, status=status)


def deadline_error(url: str, config: HttpConfig) -> FetchTimeoutError:
    return FetchTimeoutError(
        f"GET {url}: download not finished within {_seconds(config.deadline)} (deadline)",
        reason="deadline",
        url=url,
    )


def read_timeout(url: str, config: HttpConfig) -> FetchError:
    return _transient(
        FetchTimeoutError(
            f"GET {url}: no data within {_seconds(config.read_timeout)} (read timeout)", url=url
        )
    )


def connect_timeout(url: str, config: HttpConfig) -> FetchError:
    return _transient(
        FetchTimeoutError(
            f"GET {url}: no connection within {_seconds(config.connect_timeout)} (connect timeout)",
            url=url,
        )
    )


def interrupted(url: str) -> FetchError:
    return FetchError(f"GET {url}: interrupted", reason="interrupted", url=url)


def parse_length(value: str | None) -> int | None:
    """A Content-Length value as an int, or None unless it is plain ASCII digits."""
    if value is None:
        return None
    value = value.strip()
    return int(value) if _DIGITS.fullmatch(value) else None


def ca_bundle() -> str | None:
    """The CA file libcurl should trust, or None for its built-in default.

    pycurl's wheels are built with a CA path of one Linux family
    (``/etc/pki/tls/certs/ca-bundle.crt``) that other systems lack. Taken in order:
    ``CURL_CA_BUNDLE``, ``SSL_CERT_FILE``, ``REQUESTS_CA_BUNDLE``, the system bundle of
    Debian/Ubuntu, RHEL/Fedora, Alpine/macOS, then certifi's (installed with requests).
    """
    for name in ("CURL_CA_BUNDLE", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        value = os.environ.get(name)
        if value:
            return value
    for path in (
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ):
        if os.path.exists(path):
            return path
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with requests
        return None
    return str(certifi.where())


# -- libcurl ------------------------------------------------------------------------------------

_TLS = frozenset(
    code
    for name in (
        "E_SSL_CONNECT_ERROR",
        "E_PEER_FAILED_VERIFICATION",
        "E_SSL_CERTPROBLEM",
        "E_SSL_CIPHER",
        "E_SSL_CACERT_BADFILE",
        "E_SSL_ISSUER_ERROR",
        "E_SSL_PINNEDPUBKEYNOTMATCH",
        "E_SSL_INVALIDCERTSTATUS",
        "E_SSL_CRL_BADFILE",
        "E_SSL_ENGINE_NOTFOUND",
        "E_SSL_ENGINE_SETFAILED",
        "E_SSL_SHUTDOWN_FAILED",
    )
    if (code := getattr(pycurl, name, None)) is not None
)
_NO_CONNECTION = frozenset({pycurl.E_COULDNT_CONNECT, pycurl.E_COULDNT_RESOLVE_HOST, 5})
_BAD_URL = frozenset({pycurl.E_URL_MALFORMAT, pycurl.E_UNSUPPORTED_PROTOCOL})


#: The answer's headers fetcher reads (libcurl parses the rest itself).
_WANTED = {
    name.encode(): name
    for name in (
        "etag",
        "last-modified",
        "location",
        "content-type",
        "content-length",
        "content-encoding",
        "retry-after",
    )
}


class _Handle:
    """One reusable easy handle (and its connection cache) per thread, with its buffers."""

    def __init__(self, config: HttpConfig, cainfo: str | None) -> None:
        c = self.curl = pycurl.Curl()
        self.busy = False
        self.sockets: deque[tuple[int, int]] = deque(maxlen=16)  # (fd, inode) it opened
        self.chunks: list[bytes] = []
        self.headers: dict[str, str] = {}
        self.status = 0
        self.phrase = ""
        self.received = 0
        self.cap = self.limit = config.max_bytes
        self.stop = ""  # why the write callback ended the transfer: "too-large", "discard"
        c.setopt(pycurl.NOSIGNAL, 1)
        c.setopt(pycurl.PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        c.setopt(pycurl.REDIR_PROTOCOLS, pycurl.PROTO_HTTP | pycurl.PROTO_HTTPS)
        c.setopt(pycurl.FOLLOWLOCATION, 0)
        c.setopt(pycurl.UNRESTRICTED_AUTH, 0)
        c.setopt(pycurl.ACCEPT_ENCODING, "")  # every decoding this libcurl has
        c.setopt(pycurl.MAXFILESIZE_LARGE, config.max_bytes)
        c.setopt(pycurl.LOW_SPEED_LIMIT, 1)  # a read timeout: no byte for this long
        c.setopt(pycurl.LOW_SPEED_TIME, max(1, math.ceil(config.read_timeout)))
        c.setopt(pycurl.MAXCONNECTS, 4)
        c.setopt(pycurl.TCP_NODELAY, 1)
        if cainfo:
            c.setopt(pycurl.CAINFO, cainfo)
        c.setopt(pycurl.HEADERFUNCTION, self._header)
        c.setopt(pycurl.WRITEFUNCTION, self._write)
        c.setopt(pycurl.SOCKOPTFUNCTION, self._sockopt)

    def reset(self, cap: int) -> None:
        self.chunks = []
        self.headers = {}
        self.status = 0
        self.phrase = ""
        self.received = 0
        self.cap = self.limit = cap
        self.stop = ""

    # libcurl callbacks: they must never raise (pycurl would print and abort)
    def _header(self, line: bytes) -> None:
        if line[:5] == b"HTTP/":
            parts = line.split(None, 2)
            self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            self.phrase = _decode(parts[2]).strip() if len(parts) > 2 else ""
            self.headers = {}  # a 1xx before the real answer
            self.limit = self.cap if 200 <= self.status < 300 else min(self.cap, DISCARD)
            return
        name, sep, value = line.partition(b":")
        name = name.strip().lower()
        if sep and name in _WANTED:
            self.headers[_WANTED[name]] = _decode(value.strip())

    def _write(self, data: bytes) -> int | None:
        self.received += len(data)
        if self.received > self.limit:
            self.stop = "too-large" if 200 <= self.status < 300 else "discard"
            return 0  # libcurl ends the transfer (CURLE_WRITE_ERROR)
        self.chunks.append(data)
        return None

    def _sockopt(self, fd: int, purpose: int) -> int:
        with contextlib.suppress(OSError):
            self.sockets.append((fd, os.fstat(fd).st_ino))
        return int(pycurl.SOCKOPT_OK)

    def shutdown(self) -> None:
        """Shut down the sockets this handle opened (if still open): its transfer ends."""
        for fd, inode in list(self.sockets):
            with contextlib.suppress(OSError):
                if os.fstat(fd).st_ino != inode:
                    continue  # closed, and the number reused: not ours
                sock = socket.socket(fileno=fd)
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                finally:
                    sock.detach()


class CurlEngine:
    """fetcher's own connections: one libcurl easy handle per thread, each reused.

    Each thread keeps its handle (and so its kept-alive connections) for the life of the
    engine; :class:`fetcher.hosts.Hosts` bounds how many requests one host has in flight.
    """

    def __init__(self, config: HttpConfig) -> None:
        self.config = config
        self._cainfo = ca_bundle()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._handles: list[_Handle] = []
        self._cancelled = False

    def _handle(self) -> _Handle:
        handle: _Handle | None = getattr(self._local, "handle", None)
        if handle is None:
            handle = _Handle(self.config, self._cainfo)
            self._local.handle = handle
            with self._lock:
                self._handles.append(handle)
        return handle

    def send(self, exchange: Exchange) -> Reply:
        url = exchange.url
        handle = self._handle()
        handle.reset(self.config.max_bytes)
        c = handle.curl
        c.setopt(pycurl.URL, url)
        c.setopt(pycurl.HTTPHEADER, [f"{k}: {v}" for k, v in exchange.headers.items()])
        left_ms = max(1, math.ceil(exchange.timeout * 1000))
        c.setopt(pycurl.TIMEOUT_MS, left_ms)
        c.setopt(
            pycurl.CONNECTTIMEOUT_MS, max(1, min(left_ms, int(self.config.connect_timeout * 1000)))
        )
        with self._lock:
            if self._cancelled:
                raise interrupted(url)
            handle.busy = True
        started = time.monotonic()
        try:
            c.perform()
        except pycurl.error as exc:
            code = int(exc.args[0]) if exc.args else -1
            long_error_page = handle.stop == "discard" or (
                code == pycurl.E_FILESIZE_EXCEEDED and not 200 <= handle.status < 300
            )
            if long_error_page and handle.status and not self._cancelled:
                return self._reply(url, handle)  # a non-2xx answer's status and headers do
            message = str(exc.args[1]) if len(exc.args) > 1 else ""
            took = time.monotonic() - started
            raise self._error(url, handle, code, message, took, exchange) from None
        finally:
            with self._lock:
                handle.busy = False
        return self._reply(url, handle)

    def _reply(self, url: str, handle: _Handle) -> Reply:
        status = handle.status or int(handle.curl.getinfo(pycurl.RESPONSE_CODE))
        body = b"".join(handle.chunks) if 200 <= status < 300 else None
        handle.chunks = []  # the handle outlives the request: it must not hold the body
        return Reply(url, status, handle.phrase, handle.headers, body)

    def _error(
        self, url: str, handle: _Handle, code: int, message: str, took: float, exchange: Exchange
    ) -> FetcherError:
        cfg = self.config
        if self._cancelled:
            return interrupted(url)
        if code == pycurl.E_WRITE_ERROR and handle.stop == "too-large":
            return too_large(url, cfg.max_bytes, handle.status)
        if code == pycurl.E_FILESIZE_EXCEEDED:
            length = parse_length(handle.headers.get("content-length"))
            return too_large(url, cfg.max_bytes, handle.status, length)
        if code == pycurl.E_OPERATION_TIMEDOUT:
            if took >= exchange.timeout - 0.05:
                return deadline_error(url, cfg)
            if "too slow" in message.lower():
                return read_timeout(url, cfg)
            return connect_timeout(url, cfg)
        if code in _TLS:
            return FetchConnectionError(f"GET {url}: TLS error ({message})", url=url)
        if code in _BAD_URL:
            return UrlError(f"GET {url}: malformed URL ({message})")
        if code in _NO_CONNECTION:
            return _transient(
                FetchConnectionError(f"GET {url}: cannot connect ({message})", url=url)
            )
        if code == pycurl.E_BAD_CONTENT_ENCODING:
            encoding = handle.headers.get("content-encoding")
            return _transient(
                FetchConnectionError(f"GET {url}: body could not be decoded ({encoding})", url=url)
            )
        if handle.status and code == pycurl.E_PARTIAL_FILE:
            length = parse_length(handle.headers.get("content-length"))
            of = f" of {length}" if length is not None else ""
            return _transient(
                FetchConnectionError(
                    f"GET {url}: body truncated ({handle.received}{of} bytes received: {message})",
                    url=url,
                )
            )
        if handle.status:
            return _transient(
                FetchConnectionError(
                    f"GET {url}: connection broken while reading the answer ({message})", url=url
                )
            )
        return _transient(
            FetchConnectionError(
                f"GET {url}: connection dropped before an answer ({message})", url=url
            )
        )

    def cancel(self) -> None:
        """End every transfer in flight (each raises reason "interrupted"), and any later one."""
        with self._lock:
            self._cancelled = True
            busy = [h for h in self._handles if h.busy]
        for handle in busy:
            handle.shutdown()

    def close(self) -> None:
        with self._lock:
            handles, self._handles = self._handles, []
        for handle in handles:
            if not handle.busy:
                handle.curl.close()


# -- a caller's requests.Session ----------------------------------------------------------------


class _NoAuth:
    """An ``auth`` that adds nothing: keeps a session's own auth off a foreign hop."""

    def __call__(self, request: Any) -> Any:
        return request


#: Headers that carry credentials: never sent on a hop to another origin.
CREDENTIALS = ("Authorization", "Proxy-Authorization", "Cookie")


class RequestsEngine:
    """A caller's ``requests.Session``, used as is (adapters, proxies, cookies, auth).

    On a hop to another origin the session's ``auth`` and any credential header it
    carries are left off (its ``.netrc`` entry for the new host still applies, as with
    requests' own redirects); its cookie jar sends only cookies for the new host.
    """

    def __init__(self, session: requests.Session, config: HttpConfig) -> None:
        import requests  # only a caller's session needs it

        self._requests = requests
        self.session = session
        self.config = config
        self._lock = threading.Lock()
        self._reading: set[Any] = set()
        self._cancelled = False

    def send(self, exchange: Exchange) -> Reply:
        requests = self._requests
        cfg = self.config
        url = exchange.url
        if self._cancelled:
            raise interrupted(url)
        deadline_at = time.monotonic() + exchange.timeout
        headers: dict[str, Any] = dict(exchange.headers)
        auth: Any = None
        if exchange.foreign:
            headers.update(dict.fromkeys(CREDENTIALS))  # None drops the session's too
            netrc = requests.utils.get_netrc_auth(url) if self.session.trust_env else None
            auth = netrc or _NoAuth()
        read = min(cfg.read_timeout, exchange.timeout)
        answered: list[Any] = []  # requests works out the next hop even when not following
        try:
            resp = self.session.get(
                url,
                headers=headers,
                timeout=(min(cfg.connect_timeout, exchange.timeout), read),
                stream=True,
                allow_redirects=False,
                auth=auth,
                hooks={"response": [lambda r, **_: answered.append(r)]},
            )
        except requests.RequestException as exc:
            if self._cancelled:
                raise interrupted(url) from None
            if time.monotonic() >= deadline_at:
                raise deadline_error(url, cfg) from None
            raise self._map(url, exc) from None
        except ValueError as exc:  # a Location requests cannot parse, or a URL urllib3 cannot
            if not answered:
                raise UrlError(f"GET {url}: malformed URL ({type(exc).__name__}: {exc})") from None
            resp = answered[0]  # the redirect itself is fine: fetcher.http judges its Location
        with self._lock:
            self._reading.add(resp)
        try:
            return self._read(url, resp, deadline_at)
        finally:
            with self._lock:
                self._reading.discard(resp)
            resp.close()

    def _read(self, url: str, resp: Any, deadline_at: float) -> Reply:
        status = int(resp.status_code)
        headers = {k.lower(): _latin1_to_text(v) for k, v in resp.headers.items()}
        ok = 200 <= status < 300
        cap = self.config.max_bytes if ok else DISCARD
        length = parse_length(headers.get("content-length"))
        if ok and length is not None and length > cap:
            raise too_large(url, cap, status, length)
        chunks: list[bytes] = []
        total = 0
        try:
            for chunk in _chunks(resp.raw):
                total += len(chunk)
                if total > cap:
                    if not ok:
                        break  # enough of an error page: the connection is dropped
                    raise too_large(url, cap, status)
                chunks.append(chunk)
                if time.monotonic() > deadline_at:
                    raise deadline_error(url, self.config)
        except FetchError:
            raise
        except Exception as exc:  # urllib3, http.client and socket errors while reading
            if self._cancelled:
                raise interrupted(url) from None
            if time.monotonic() >= deadline_at:
                raise deadline_error(url, self.config) from None
            if not ok:
                return Reply(url, status, resp.reason or "", headers)
            raise self._broken(url, exc, resp, length) from None
        encoded = headers.get("content-encoding", "identity").lower() not in ("", "identity")
        if ok and length is not None and not encoded and total != length:
            raise _transient(
                FetchConnectionError(
                    f"GET {url}: body truncated ({total} of {length} bytes)", url=url
                )
            )
        return Reply(url, status, resp.reason or "", headers, b"".join(chunks) if ok else None)

    def _broken(self, url: str, exc: BaseException, resp: Any, length: int | None) -> FetchError:
        name = type(exc).__name__
        if "Timeout" in name or isinstance(exc, TimeoutError):
            return read_timeout(url, self.config)
        if "DecodeError" in name:
            encoding = resp.headers.get("Content-Encoding")
            return _transient(
                FetchConnectionError(f"GET {url}: body could not be decoded ({encoding})", url=url)
            )
        got = resp.raw.tell()
        of = f" of {length}" if length is not None else ""
        return _transient(
            FetchConnectionError(
                f"GET {url}: body truncated ({got}{of} bytes received: {_cause(exc)})", url=url
            )
        )

    def _map(self, url: str, exc: Exception) -> FetcherError:
        """A requests exception raised before the answer arrived, as ours."""
        errors = self._requests.exceptions
        cfg = self.config
        if isinstance(exc, errors.ConnectTimeout):
            return connect_timeout(url, cfg)
        if isinstance(exc, errors.ReadTimeout):
            return read_timeout(url, cfg)
        if isinstance(exc, errors.SSLError):
            return FetchConnectionError(f"GET {url}: TLS error ({_cause(exc)})", url=url)
        if isinstance(exc, errors.InvalidSchema | errors.InvalidURL | errors.MissingSchema):
            return UrlError(f"GET {url}: {exc}")
        if isinstance(exc, errors.ConnectionError):
            text = str(exc)
            if "Connection aborted" in text or "RemoteDisconnected" in text:
                words = f"connection dropped before an answer ({_cause(exc)})"
            else:
                words = f"cannot connect ({_cause(exc)})"
            return _transient(FetchConnectionError(f"GET {url}: {words}", url=url))
        return _transient(FetchConnectionError(f"GET {url}: {type(exc).__name__} ({exc})", url=url))

    def cancel(self) -> None:
        """End the reads in flight (a response still waiting for its headers cannot be reached)."""
        with self._lock:
            self._cancelled = True
            reading = list(self._reading)
        for resp in reading:
            _shutdown(resp)

    def close(self) -> None:
        """Nothing to do: the session is the caller's, and stays open."""


def _chunks(raw: Any) -> Iterator[bytes]:
    """The decoded body as it arrives (one socket read at a time, so a trickle is seen)."""
    while True:
        chunk = raw.read1(_CHUNK, decode_content=True)
        if not chunk:
            return
        yield chunk


def _latin1_to_text(value: str) -> str:
    """http.client decodes header bytes as Latin-1: undo that, then decode like libcurl's."""
    try:
        return _decode(value.encode("latin-1"))
    except UnicodeEncodeError:
        return value


def _shutdown(resp: Any) -> None:
    """Shut the response's socket down (both ways) so a read blocked on it returns."""
    raw = resp.raw
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is None:  # released connection: reach the socket through http.client's file
        fp = getattr(getattr(getattr(raw, "_fp", None), "fp", None), "raw", None)
        sock = getattr(fp, "_sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _cause(exc: BaseException) -> str:
    """The innermost OS-level reason of a requests/urllib3 error, as a few words."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    found: str | None = None
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.strerror:
            found = e.strerror
        stack.extend(arg for arg in e.args if isinstance(arg, BaseException))
        for nxt in (e.__cause__, e.__context__, getattr(e, "reason", None)):
            if isinstance(nxt, BaseException):
                stack.append(nxt)
    return found or type(exc).__name__
