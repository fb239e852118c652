"""A loopback HTTP origin for tests: published bodies with validators, 304s and fault routes."""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import http.server
import socket
import struct
import threading
import time
import zlib
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

__all__ = ["FAULT_KINDS", "Origin", "RequestRecord", "closed_port"]

FAULT_KINDS = frozenset(
    {
        "status",
        "retry-after",
        "truncate",
        "html200",
        "huge-length",
        "trickle",
        "header-trickle",
        "reset",
        "gzip-bomb",
        "redirect",
        "raw-location",
        "negative-chunk",
        "raw-headers",
        "ignore-conditional",
        "stall",
        "wait",
    }
)


def closed_port() -> int:
    """A loopback port with nothing listening on it (bound, then closed)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_HTML_ERROR = (
    b"<!DOCTYPE html><html><head><title>Error</title></head>"
    b"<body><h1>Something went wrong</h1><p>Please try again later.</p></body></html>"
)


@dataclass
class RequestRecord:
    """One request the origin received: what was asked and what status was sent."""

    method: str
    path: str
    headers: dict[str, str]
    status: int | None = None
    fault: str | None = None
    at: float = field(default_factory=time.monotonic)  # when the request line was read


@dataclass
class _Published:
    body: bytes
    content_type: str | None
    etag: str | None
    last_modified: str | None


@dataclass
class _Fault:
    kind: str
    opts: dict[str, Any]
    times: int | None  # None: every request
    served: int = 0


@dataclass
class _Counter:
    active: int = 0
    peak: int = 0
    by_path_active: dict[str, int] = field(default_factory=dict)
    by_path_peak: dict[str, int] = field(default_factory=dict)


def _gzip_bomb(size: int) -> bytes:
    """A gzip stream that decodes to ``size`` zero bytes (a few KiB per 64 MiB)."""
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    out = [comp.compress(block) for _ in range(size >> 20)]
    out.append(comp.compress(bytes(size & ((1 << 20) - 1))))
    out.append(comp.flush())
    return b"".join(out)


class Origin:
    """A threaded HTTP/1.1 server on 127.0.0.1 serving published bodies and faults.

    Use as a context manager (``with Origin() as origin:``) or call ``start()`` and
    ``stop()``. ``publish(path, body)`` serves ``body`` at ``path`` with an ETag and a
    Last-Modified (conditional requests get 304); ``fault(path, kind, **opts)`` makes the
    path misbehave (see ``FAULT_KINDS`` and :meth:`fault`). Every request is logged in
    ``requests``. ``peak_concurrency`` is the most requests ever in flight at once.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._published: dict[str, _Published] = {}
        self._faults: dict[str, _Fault] = {}
        self._last_modified_s: dict[str, int] = {}
        self._counter = _Counter()
        self._bombs: dict[int, bytes] = {}
        self._stopping = threading.Event()
        self._open: set[socket.socket] = set()
        self.requests: list[RequestRecord] = []
        self._server: http.server.ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Origin:
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        if self._server is not None:
            return self
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _make_handler(self))
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; trickling and stalled handlers end within about a second."""
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._open)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None

    def __enter__(self) -> Origin:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        if self._server is None:
            raise RuntimeError("origin is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("origin is not started")
        return int(self._server.server_address[1])

    def url(self, path: str) -> str:
        """The absolute URL of ``path`` on this origin."""
        return self.base_url + (path if path.startswith("/") else "/" + path)

    # -- content -----------------------------------------------------------------------------
    def publish(
        self,
        path: str,
        body: bytes,
        *,
        content_type: str | None = "image/png",
        etag: str | None = "auto",
        last_modified: str | None = "auto",
    ) -> None:
        """Serve ``body`` at ``path``.

        ``etag="auto"`` is the quoted SHA-1 of the body; ``last_modified="auto"`` is an
        HTTP-date of now, strictly later than the path's previous auto date (so each
        publish is a new date even within one second). ``None`` sends no such header.
        """
        path = _norm(path)
        with self._lock:
            if etag == "auto":
                etag = '"' + hashlib.sha1(body).hexdigest() + '"'
            if last_modified == "auto":
                now = int(time.time())
                secs = max(now, self._last_modified_s.get(path, 0) + 1)
                self._last_modified_s[path] = secs
                last_modified = email.utils.formatdate(secs, usegmt=True)
            self._published[path] = _Published(body, content_type, etag, last_modified)

    def remove(self, path: str) -> None:
        """Stop serving ``path`` (it answers 404) and drop its fault."""
        path = _norm(path)
        with self._lock:
            self._published.pop(path, None)
            self._faults.pop(path, None)

    def fault(self, path: str, kind: str, *, times: int | None = None, **opts: Any) -> None:
        """Make ``path`` misbehave for ``times`` requests (``None``: until cleared).

        Kinds and their options:

        - ``status``: ``code`` (default 503), with a short text body (or ``body``).
        - ``retry-after``: ``code`` 429 (default) or 503, ``value`` (default ``"2"``):
          delta-seconds or an HTTP-date, sent verbatim.
        - ``truncate``: half the body with the full Content-Length, then close.
        - ``html200``: an HTML error page with status 200.
        - ``huge-length``: Content-Length 10**10 (``length``), a few bytes, then close.
        - ``trickle``: the body one byte every ``interval`` s (default 1.0).
        - ``header-trickle``: the status line and headers one byte every ``interval`` s
          (default 1.0), then the body.
        - ``raw-location``: status ``code`` (302) with ``location`` (a str) written as raw
          UTF-8 bytes, as some servers do.
        - ``negative-chunk``: a chunked 200 whose first chunk size is ``-5``.
        - ``raw-headers``: status 200 and ``headers``, a list of ``(name, bytes)`` written
          as raw bytes, then ``body`` (default the published body); with
          ``continue_first`` a ``100 Continue`` answer comes first.
        - ``reset``: close the socket abruptly (SO_LINGER 0 sends RST).
        - ``gzip-bomb``: Content-Encoding gzip, ``size`` decoded bytes (default 64 MiB).
        - ``redirect``: ``location`` (default: the path itself, a loop), ``code`` (302).
        - ``ignore-conditional``: always 200 with the full body.
        - ``stall``: send nothing for ``seconds`` (default 5.0), then serve normally.
        - ``wait``: send nothing until ``event`` (a ``threading.Event``) is set (at most
          ``seconds``, default 60.0), then serve normally: a test decides when.

        After ``times`` requests the path serves normally again. A fault on an
        unpublished path serves ``body`` option or a small default body where it needs one.
        """
        if kind not in FAULT_KINDS:
            known = ", ".join(sorted(FAULT_KINDS))
            raise ValueError(f"unknown fault kind {kind!r} (known: {known})")
        with self._lock:
            self._faults[_norm(path)] = _Fault(kind, dict(opts), times)

    def clear_fault(self, path: str) -> None:
        with self._lock:
            self._faults.pop(_norm(path), None)

    # -- log ---------------------------------------------------------------------------------
    def requests_for(self, path: str) -> list[RequestRecord]:
        """Logged requests whose path (without query) is ``path``."""
        path = _norm(path)
        with self._lock:
            return [r for r in self.requests if urlsplit(r.path).path == path or r.path == path]

    def clear_log(self) -> None:
        """Forget logged requests and the concurrency peaks."""
        with self._lock:
            self.requests.clear()
            self._counter = _Counter()

    @property
    def peak_concurrency(self) -> int:
        """The most requests in flight at once since start or ``clear_log()``."""
        with self._lock:
            return self._counter.peak

    def peak_concurrency_for(self, path: str) -> int:
        with self._lock:
            return self._counter.by_path_peak.get(_norm(path), 0)

    # -- used by the handler -----------------------------------------------------------------
    def _begin(
        self, record: RequestRecord, sock: socket.socket
    ) -> tuple[_Published | None, _Fault | None]:
        key = urlsplit(record.path).path
        with self._lock:
            self.requests.append(record)
            self._open.add(sock)
            c = self._counter
            c.active += 1
            c.peak = max(c.peak, c.active)
            c.by_path_active[key] = c.by_path_active.get(key, 0) + 1
            c.by_path_peak[key] = max(c.by_path_peak.get(key, 0), c.by_path_active[key])
            pub = self._published.get(record.path) or self._published.get(key)
            flt = self._faults.get(record.path) or self._faults.get(key)
            if flt is not None:
                if flt.times is not None and flt.served >= flt.times:
                    flt = None
                else:
                    flt.served += 1
                    record.fault = flt.kind
            return pub, flt

    def _end(self, record: RequestRecord, sock: socket.socket) -> None:
        key = urlsplit(record.path).path
        with self._lock:
            self._open.discard(sock)
            c = self._counter
            c.active -= 1
            if key in c.by_path_active:
                c.by_path_active[key] -= 1

    def _bomb(self, size: int) -> bytes:
        with self._lock:
            if size not in self._bombs:
                self._bombs[size] = _gzip_bomb(size)
            return self._bombs[size]


def _norm(path: str) -> str:
    return path if path.startswith("/") else "/" + path


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 64

    def handle_error(self, request: object, client_address: object) -> None:
        """Stay quiet when a client hangs up on a kept-alive connection (pooled clients do)."""


def _make_handler(origin: Origin) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(_Handler):
        pass

    Handler.origin = origin
    return Handler


class _Handler(http.server.BaseHTTPRequestHandler):
    origin: Origin
    protocol_version = "HTTP/1.1"
    server_version = "TestOrigin/1"
    disable_nagle_algorithm = True  # as real servers do: no 40 ms delayed-ACK stall per answer
    _record: RequestRecord

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def send_response(self, code: int, message: str | None = None) -> None:
        self._record.status = code
        super().send_response(code, message)

    def do_HEAD(self) -> None:
        self._handle(head=True)

    def do_GET(self) -> None:
        self._handle(head=False)

    # -- dispatch ----------------------------------------------------------------------------
    def _handle(self, *, head: bool) -> None:
        record = RequestRecord(self.command, self.path, dict(self.headers.items()))
        self._record = record
        pub, flt = self.origin._begin(record, self.connection)
        try:
            if flt is not None and self._fault(flt, pub, head=head):
                return
            self._serve(pub, head=head, conditional=flt is None or flt.kind != "ignore-conditional")
        except (ConnectionError, BrokenPipeError, TimeoutError, OSError):
            self.close_connection = True
        finally:
            self.origin._end(record, self.connection)

    def _serve(self, pub: _Published | None, *, head: bool, conditional: bool) -> None:
        if pub is None:
            self._plain(404, b"404 Not Found\n", head=head)
            return
        if conditional and self._not_modified(pub):
            self.send_response(304)
            if pub.etag:
                self.send_header("ETag", pub.etag)
            if pub.last_modified:
                self.send_header("Last-Modified", pub.last_modified)
            self.end_headers()
            return
        self.send_response(200)
        self._entity_headers(pub)
        self.send_header("Content-Length", str(len(pub.body)))
        self.end_headers()
        if not head:
            self.wfile.write(pub.body)

    def _not_modified(self, pub: _Published) -> bool:
        inm = self.headers.get("If-None-Match")
        if inm is not None:
            if pub.etag is None:
                return False
            tags = [t.strip() for t in inm.split(",")]
            return "*" in tags or _weak(pub.etag) in {_weak(t) for t in tags}
        ims = self.headers.get("If-Modified-Since")
        if ims is not None and pub.last_modified is not None:
            try:
                since = email.utils.parsedate_to_datetime(ims)
                modified = email.utils.parsedate_to_datetime(pub.last_modified)
            except (TypeError, ValueError):
                return False
            return modified <= since
        return False

    def _entity_headers(self, pub: _Published) -> None:
        if pub.content_type:
            self.send_header("Content-Type", pub.content_type)
        if pub.etag:
            self.send_header("ETag", pub.etag)
        if pub.last_modified:
            self.send_header("Last-Modified", pub.last_modified)

    def _plain(self, code: int, body: bytes, *, head: bool = False, **headers: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless the origin is stopping; True if it is stopping."""
        return self.origin._stopping.wait(seconds)

    def _abort(self) -> None:
        """Close the connection with RST (SO_LINGER on, 0 s)."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()

    def _fault(self, flt: _Fault, pub: _Published | None, *, head: bool) -> bool:
        """Act out a fault; False means 'now serve normally'."""
        kind, opts = flt.kind, flt.opts
        body: bytes = opts.get("body", pub.body if pub is not None else b"x" * 64)
        if kind == "status":
            code = int(opts.get("code", 503))
            text = f"{code} {self.responses.get(code, ('',))[0]}\n".encode()
            self._plain(code, opts.get("body", text), head=head)
        elif kind == "retry-after":
            code = int(opts.get("code", 429))
            self._plain(code, b"slow down\n", head=head, Retry_After=str(opts.get("value", "2")))
        elif kind == "html200":
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(_HTML_ERROR)))
            self.end_headers()
            if not head:
                self.wfile.write(_HTML_ERROR)
        elif kind in ("truncate", "huge-length", "trickle"):
            self.send_response(200)
            if pub is not None:
                self._entity_headers(pub)
            length = int(opts.get("length", 10**10)) if kind == "huge-length" else len(body)
            self.send_header("Content-Length", str(length))
            self.send_header("Connection", "close")  # as servers do that close after
            self.end_headers()
            if head:
                return True
            if kind == "trickle":
                interval = float(opts.get("interval", 1.0))
                for i in range(len(body)):
                    self.wfile.write(body[i : i + 1])
                    self.wfile.flush()
                    if self._wait(interval):
                        break
            else:
                self.wfile.write(body[: len(body) // 2] if kind == "truncate" else body[:16])
                self.wfile.flush()
            self.close_connection = True
        elif kind in ("header-trickle", "raw-location", "negative-chunk", "raw-headers"):
            self._raw_fault(kind, opts, body, head=head)
        elif kind == "reset":
            self._abort()
        elif kind == "gzip-bomb":
            data = self.origin._bomb(int(opts.get("size", 64 << 20)))
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if not head:
                self.wfile.write(data)
        elif kind == "redirect":
            location = str(opts.get("location", self.path))
            self._plain(int(opts.get("code", 302)), b"moved\n", head=head, Location=location)
        elif kind == "ignore-conditional":
            return False
        elif kind == "stall":
            if self._wait(float(opts.get("seconds", 5.0))):
                self.close_connection = True
                return True
            return False
        elif kind == "wait":
            event: threading.Event = opts["event"]
            deadline = time.monotonic() + float(opts.get("seconds", 60.0))
            while not event.wait(0.05):
                if self.origin._stopping.is_set() or time.monotonic() > deadline:
                    self.close_connection = True
                    return True
            return False
        return True

    def _raw_fault(self, kind: str, opts: dict[str, Any], body: bytes, *, head: bool) -> None:
        """Faults written as raw bytes (http.server would encode headers as Latin-1).

        Each closes the connection after its answer and says so (``Connection: close``): a
        client that reused the connection for a redirect's next hop would otherwise race
        the close, and a loaded machine would lose that race (seen with requests).
        """
        self._record.status = int(opts.get("code", 302 if kind == "raw-location" else 200))
        self.close_connection = True
        if kind == "raw-location":
            location = str(opts.get("location", "/")).encode("utf-8")
            head_bytes = b"HTTP/1.1 %d Found\r\nLocation: %s\r\n" % (self._record.status, location)
            head_bytes += b"Content-Length: 0\r\nConnection: close\r\n\r\n"
            self.wfile.write(head_bytes)
            return
        if kind == "negative-chunk":
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nConnection: close\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n-5\r\nhello\r\n0\r\n\r\n"
            )
            return
        if kind == "raw-headers":
            lines = b"".join(
                name.encode("ascii") + b": " + value + b"\r\n" for name, value in opts["headers"]
            )
            if opts.get("continue_first"):
                self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            self.wfile.write(
                b"HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n"
                % (lines, len(body))
            )
            if not head:
                self.wfile.write(body)
            return
        head_bytes = (
            b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Padding: slow\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        )
        interval = float(opts.get("interval", 1.0))
        for i in range(len(head_bytes)):
            self.wfile.write(head_bytes[i : i + 1])
            self.wfile.flush()
            if self._wait(interval):
                return
        if not head:
            self.wfile.write(body)


def _weak(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag
