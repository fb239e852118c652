"""HTTP fetching: conditional GET with retries, timeouts, a whole-download deadline and a byte cap.

One :class:`Fetcher` per run, shared by every worker thread. ``fetch(url, validators)``
either returns a completed :class:`Response` (2xx with the decoded body, or 304) or
raises a :class:`~fetcher.errors.FetchError` subclass; no ``requests`` or ``urllib3``
exception escapes.

Decisions
---------
- Retried (tenacity, full-jitter exponential backoff ``backoff * 2**n`` capped at
  ``backoff_max``; ``retries`` retries after the first attempt): connection errors,
  connect and read timeouts, a truncated or undecodable body, 408, 429 and 5xx.
  Never retried: other 4xx, redirect problems, the byte cap, TLS errors, and the
  whole-download ``deadline`` (it bounds a worker's time on one download; retrying
  would double it).
- A truncated body (fewer bytes than Content-Length, a broken chunked stream) ends as
  :class:`~fetcher.errors.FetchConnectionError` with reason ``"connection"`` (DESIGN's
  reason list); the message says "truncated".
- Retry-After (on 429 and 503, delta-seconds or HTTP-date) sets a per-host "not before"
  time that every worker waits for before sending to that host, and replaces the
  backoff for that retry. A Retry-After longer than ``retry_after_max`` is not slept:
  the fetch fails at once with the status error (the host said it is away for longer
  than we are willing to hold a worker).
- Redirects are followed here, one hop at a time (so the per-host limit, the cooldown
  and the scheme check apply to every hop, also with a caller's session): at most
  ``max_redirects`` hops (more, or a loop: reason ``"redirects"``); a Location that is
  not http(s) is refused (reason ``"redirect"``).
- The deadline runs from the start of each attempt (its first hop) to its last byte. A
  watchdog shuts the socket down when it expires, which wakes a blocked read (one alarm
  thread per process serves every watchdog, not a timer thread per request); the
  connect and first read of each hop are also given at most the time left. A server
  that trickles its *headers* is bounded only by the per-read timeout until the headers
  are complete (the socket is not reachable through ``requests`` before that).
- The environment is read once per host per :class:`Fetcher`, not per request: on the
  session it builds itself (``trust_env`` turned off), the fetcher passes explicitly what
  ``requests`` would otherwise re-read on every request (see :func:`_read_environment`).
  A caller's session is used as is.
"""

from __future__ import annotations

import contextlib
import email.utils
import heapq
import http.client
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
import requests.adapters
import tenacity
import urllib3.exceptions

from .config import HttpConfig
from .errors import (
    FetchConnectionError,
    FetchError,
    FetchTimeoutError,
    HTTPStatusError,
    TooLargeError,
    UrlError,
)

__all__ = ["Fetcher", "Response", "Validators", "make_session", "parse_retry_after"]

_SCHEMES = ("http", "https")
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CHUNK = 64 * 1024


@dataclass(frozen=True)
class Validators:
    """What a previous response said about its body, sent back to ask "changed since?"."""

    etag: str | None = None
    last_modified: str | None = None  # sent verbatim as received, in If-Modified-Since

    @property
    def conditional(self) -> bool:
        """True if there is anything to send."""
        return bool(self.etag or self.last_modified)


@dataclass(frozen=True)
class Response:
    """A completed fetch: a 2xx with its decoded body, or a 304 without one."""

    url: str  # final URL after redirects
    status: int
    body: bytes | None  # None on 304; gzip/deflate undone otherwise
    etag: str | None
    last_modified: str | None
    content_type: str | None
    attempts: int  # tries made, 1 = no retry
    elapsed: float  # seconds, including waits between tries

    @property
    def not_modified(self) -> bool:
        """True if the origin answered 304 Not Modified."""
        return self.status == 304


def make_session(config: HttpConfig, *, pool_size: int = 10) -> requests.Session:
    """Build the run's session: User-Agent, extra headers, a pool sized to the workers.

    Parameters
    ----------
    config : HttpConfig
        ``user_agent``, ``headers`` and ``max_redirects`` are used.
    pool_size : int, optional
        Connections kept per host (the number of workers is a good value).

    Returns
    -------
    requests.Session
        With ``max_retries=0`` adapters for http and https (retries are done by
        :class:`Fetcher`).
    """
    session = requests.Session()
    session.headers["User-Agent"] = config.user_agent
    session.headers.update(config.headers)
    session.max_redirects = config.max_redirects
    adapter = requests.adapters.HTTPAdapter(
        pool_connections=max(10, pool_size), pool_maxsize=pool_size, max_retries=0
    )
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


@dataclass(frozen=True)
class _HostEnv:
    """What a ``trust_env`` session would take from the environment for one host."""

    proxies: dict[str, str] | None  # None: ask the session (a caller's session)
    verify: str | None  # a CA bundle path; None: the session's own ``verify``
    auth: tuple[str, str] | None  # .netrc login and password


_AS_IS = _HostEnv(None, None, None)  # a caller's session reads the environment itself


def _read_environment(url: str) -> _HostEnv:
    """Read the environment as ``requests`` does for each request of a trust_env session.

    The same calls as ``Session.merge_environment_settings`` (proxies from
    ``get_environ_proxies``: HTTP_PROXY, HTTPS_PROXY, ALL_PROXY and NO_PROXY in either
    case; ``verify`` from REQUESTS_CA_BUNDLE, then CURL_CA_BUNDLE) and
    ``Session.prepare_request`` (``get_netrc_auth``: NETRC, ~/.netrc). The answer depends
    only on the URL's scheme, host and port, which is what :class:`Fetcher` caches it by.
    """
    return _HostEnv(
        proxies=requests.utils.get_environ_proxies(url),
        verify=os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or None,
        auth=requests.utils.get_netrc_auth(url),
    )


class _Retry(Exception):
    """Internal: an attempt failed in a way worth another try."""

    def __init__(self, error: FetchError, *, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class _Alarm:
    """One daemon thread per process that fires watchdogs when their deadlines pass.

    A heap of ``(deadline, seq, watchdog)`` under a Condition. Cancelling is lazy: the
    entry stays in the heap, marked, and is dropped when it reaches the top; when more
    than half of the heap is cancelled entries it is rebuilt, so the heap holds at most
    about twice the downloads in flight however many requests a run makes. The thread
    starts with the first schedule. After ``os.fork`` the child gets a fresh alarm
    (:func:`_alarm_after_fork`): the thread does not survive a fork, and the lock may
    have been held by another thread at that moment.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, _Watchdog]] = []
        self._seq = itertools.count()
        self._cancelled = 0  # entries in the heap whose watchdog has finished
        self._thread: threading.Thread | None = None
        self._closed = False

    def __len__(self) -> int:
        """Entries in the heap, cancelled ones included."""
        with self._cond:
            return len(self._heap)

    def schedule(self, watchdog: _Watchdog, seconds: float) -> None:
        """Fire ``watchdog`` in ``seconds`` unless it is cancelled first."""
        at = time.monotonic() + max(seconds, 0.0)
        with self._cond:
            heapq.heappush(self._heap, (at, next(self._seq), watchdog))
            watchdog.pending = True
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="fetcher-deadline-alarm", daemon=True
                )
                self._thread.start()
            elif self._heap[0][2] is watchdog:
                self._cond.notify()  # earlier than what the thread is waiting for

    def cancel(self, watchdog: _Watchdog) -> None:
        """Forget ``watchdog`` (no effect if it already fired or was cancelled)."""
        with self._cond:
            if not watchdog.pending:
                return
            watchdog.pending = False
            self._cancelled += 1
            if 2 * self._cancelled > len(self._heap):
                self._heap = [entry for entry in self._heap if entry[2].pending]
                heapq.heapify(self._heap)
                self._cancelled = 0

    def close(self) -> None:
        """Stop the thread (for tests; the process-wide alarm is never closed)."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(5)

    def _next_due(self) -> _Watchdog | None:
        """Wait (holding the condition) until an entry is due; None once closed."""
        while not self._closed:
            heap = self._heap  # cancel() may have rebuilt it
            if heap and not heap[0][2].pending:
                heapq.heappop(heap)
                self._cancelled -= 1
                continue
            if not heap:
                self._cond.wait()
                continue
            left = heap[0][0] - time.monotonic()
            if left <= 0:
                watchdog = heapq.heappop(heap)[2]
                watchdog.pending = False
                return watchdog
            self._cond.wait(left)
        return None

    def _run(self) -> None:
        while True:
            with self._cond:
                watchdog = self._next_due()
            if watchdog is None:
                return
            with contextlib.suppress(Exception):  # one must not stop every later deadline
                watchdog.fire()


_alarm = _Alarm()


def _alarm_after_fork() -> None:
    """In a forked child: a fresh alarm (the parent's thread and lock state do not carry)."""
    global _alarm
    _alarm = _Alarm()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_alarm_after_fork)


class _Watchdog:
    """Shuts a response's socket down when the deadline passes, waking a blocked read."""

    def __init__(self, seconds: float, *, alarm: _Alarm | None = None) -> None:
        self._lock = threading.Lock()
        self._response: requests.Response | None = None
        self._done = False
        self.fired = False
        self.pending = False  # in the alarm's heap; guarded by the alarm's lock
        self._alarm = alarm if alarm is not None else _alarm
        self._alarm.schedule(self, seconds)

    def watch(self, response: requests.Response) -> None:
        """Shut ``response`` down when the deadline passes (at once if it has)."""
        with self._lock:
            self._response = response
            fired = self.fired
        if fired:
            _shutdown(response)

    def fire(self) -> None:
        """The deadline has passed (called by the alarm thread)."""
        with self._lock:
            if self._done:
                return
            self.fired = True
            response = self._response
        if response is not None:
            _shutdown(response)

    def finish(self) -> bool:
        """Cancel the alarm and let go of the response; True if it had already fired."""
        with self._lock:
            self._done = True
            self._response = None  # a cancelled entry may wait in the heap: hold no socket
            fired = self.fired
        self._alarm.cancel(self)
        return fired


def _shutdown(response: requests.Response) -> None:
    """Shut the response's socket down (both ways) so a read blocked on it returns."""
    raw: Any = response.raw
    sock: Any = getattr(getattr(raw, "connection", None), "sock", None)
    if sock is None:  # released connection: reach the socket through http.client's file
        fp = getattr(getattr(getattr(raw, "_fp", None), "fp", None), "raw", None)
        sock = getattr(fp, "_sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _host_key(url: str) -> str:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{parts.hostname}:{port}"


def _check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a bad port
    except ValueError as exc:
        raise UrlError(f"GET {url}: malformed URL ({exc})") from None
    if parts.scheme.lower() not in _SCHEMES:
        raise UrlError(f"GET {url}: not an http(s) URL")
    if not parts.hostname:
        raise UrlError(f"GET {url}: no host in URL")


def _size(n: float) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            value = n / scale
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{n:.0f} bytes"


def _seconds(s: float) -> str:
    return f"{s:g} s"


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
        for arg in e.args:
            if isinstance(arg, BaseException):
                stack.append(arg)
        for nxt in (e.__cause__, e.__context__, getattr(e, "reason", None)):
            if isinstance(nxt, BaseException):
                stack.append(nxt)
    return found or type(exc).__name__


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or an HTTP-date).

    Parameters
    ----------
    value : str or None
        The header's value.
    now : datetime, optional
        The current UTC time (for HTTP-dates); defaults to the wall clock.

    Returns
    -------
    float or None
        Seconds (0 for a date in the past), or None if absent or unparseable.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


class Fetcher:
    """Fetch URLs for many threads at once, with retries, limits and per-host politeness.

    Parameters
    ----------
    config : HttpConfig
        Timeouts, deadline, retries, backoff, byte cap, redirects, headers.
    session : requests.Session, optional
        Used as is and not closed by :meth:`close`; our headers and timeouts are still
        sent with every request. Without one, :func:`make_session` builds one, and the
        environment (proxies, NO_PROXY, CA bundle, .netrc) is read once per scheme,
        host and port for the life of this fetcher instead of on every request (so a
        change to it during a run is not seen); what is read is what ``requests``
        itself would use.
    pool_size : int, optional
        Connection pool size of the session we build.
    per_host : int, optional
        At most this many requests in flight to one host:port, across threads.
    sleep, clock : callable, optional
        Injected for tests: how to wait, and a monotonic clock in seconds.
    """

    def __init__(
        self,
        config: HttpConfig,
        *,
        session: requests.Session | None = None,
        pool_size: int = 10,
        per_host: int = 4,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if per_host < 1:
            raise ValueError("per_host must be at least 1")
        self.config = config
        self._own_session = session is None
        self.session = session if session is not None else make_session(config, pool_size=pool_size)
        self._environment: dict[tuple[str, str | None, int | None], _HostEnv] | None = None
        if self._own_session:
            self.session.trust_env = False  # read once per host by _env_for instead
            self._environment = {}
        self._per_host = per_host
        self._sleep = sleep
        self._clock = clock
        self._lock = threading.Lock()
        self._slots: dict[str, threading.BoundedSemaphore] = {}
        self._not_before: dict[str, float] = {}
        self._headers = {"User-Agent": config.user_agent, **dict(config.headers)}
        self._backoff = tenacity.wait_random_exponential(
            multiplier=config.backoff, max=config.backoff_max
        )

    # -- public ------------------------------------------------------------------------------
    def fetch(self, url: str, validators: Validators | None = None) -> Response:
        """GET ``url``, conditionally if ``validators`` are given.

        Parameters
        ----------
        url : str
            An http or https URL.
        validators : Validators, optional
            Sent as If-None-Match (ETag) and If-Modified-Since (Last-Modified, verbatim).

        Returns
        -------
        Response
            Status 2xx with the decoded body, or 304 with ``body=None``. On a 304 that
            carries no ETag/Last-Modified, the validators sent are returned.

        Raises
        ------
        UrlError
            Not an http(s) URL, or malformed (reason "bad-url").
        HTTPStatusError
            A non-success status (reason "http-NNN"), after retries where retryable.
        FetchTimeoutError
            Connect/read timeout after retries ("timeout"), or the whole-download
            deadline ("deadline").
        FetchConnectionError
            Connection refused/reset or a truncated body, after retries ("connection").
        TooLargeError
            Body (decoded) over ``max_bytes`` ("too-large").
        FetchError
            Redirect problems ("redirects": too many or a loop; "redirect": a Location
            that is not http(s)).
        """
        _check_url(url)
        validators = validators or Validators()
        started = self._clock()
        attempts = 0

        def attempt() -> Response:
            nonlocal attempts
            attempts += 1
            return self._attempt(url, validators, attempts, started)

        # One Retrying per call: building it costs ~5 us. tenacity 9 keeps a call's state
        # thread-local, but does not promise a shared Retrying is thread-safe.
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.config.retries + 1),
            wait=self._wait,
            retry=tenacity.retry_if_exception_type(_Retry),
            sleep=self._pause,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Retry as exc:
            err = exc.error
            if attempts > 1:
                err.args = (f"{err.message} (after {attempts} attempts)", *err.args[1:])
            raise err from None

    def close(self) -> None:
        """Close the session if this fetcher made it."""
        if self._own_session:
            self.session.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- retry plumbing ------------------------------------------------------------------------
    def _wait(self, state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome is not None else None
        if isinstance(exc, _Retry) and exc.retry_after is not None:
            return 0.0  # the host's cooldown is waited for before the next send
        return float(self._backoff(state))

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self._sleep(seconds)

    def _env_for(self, url: str) -> _HostEnv:
        """The environment's settings for ``url``'s host, read on first use."""
        if self._environment is None:
            return _AS_IS
        parts = urlsplit(url)
        key = (parts.scheme.lower(), parts.hostname, parts.port)
        env = self._environment.get(key)
        if env is None:
            env = self._environment[key] = _read_environment(url)
        return env

    def _slot(self, host: str) -> threading.BoundedSemaphore:
        with self._lock:
            slot = self._slots.get(host)
            if slot is None:
                slot = self._slots[host] = threading.BoundedSemaphore(self._per_host)
            return slot

    def _cool_down(self, host: str, seconds: float) -> None:
        with self._lock:
            until = self._clock() + seconds
            if until > self._not_before.get(host, float("-inf")):
                self._not_before[host] = until

    def _await_host(self, host: str) -> None:
        """Wait until the host's Retry-After cooldown (if any) has passed."""
        waited_for: float | None = None
        while True:
            with self._lock:
                until = self._not_before.get(host)
            if until is None or until == waited_for:
                return
            remaining = until - self._clock()
            if remaining <= 0:
                return
            self._sleep(remaining)
            waited_for = until

    # -- one attempt ---------------------------------------------------------------------------
    def _attempt(self, url: str, validators: Validators, number: int, started: float) -> Response:
        headers = dict(self._headers)
        if validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
        seen = {url}
        current = url
        hops = 0
        deadline_at = self._clock() + self.config.deadline
        while True:
            host = _host_key(current)
            with self._slot(host):
                self._await_host(host)
                result = self._request(current, headers, validators, deadline_at)
            if isinstance(result, Response):
                return Response(
                    url=current,
                    status=result.status,
                    body=result.body,
                    etag=result.etag,
                    last_modified=result.last_modified,
                    content_type=result.content_type,
                    attempts=number,
                    elapsed=self._clock() - started,
                )
            location = urljoin(current, result)
            hops += 1
            if location in seen or hops > self.config.max_redirects:
                what = "redirect loop" if location in seen else "too many redirects"
                raise FetchError(
                    f"GET {url}: {what} (max {self.config.max_redirects})",
                    reason="redirects",
                    url=url,
                )
            scheme = urlsplit(location).scheme.lower()
            if scheme not in _SCHEMES or not urlsplit(location).hostname:
                raise FetchError(
                    f"GET {url}: redirected to a non-HTTP location {location}",
                    reason="redirect",
                    url=url,
                )
            seen.add(location)
            current = location

    def _request(
        self, url: str, headers: dict[str, str], validators: Validators, deadline_at: float
    ) -> Response | str:
        """One request and its body: a Response, or the Location of a redirect."""
        cfg = self.config
        left = deadline_at - self._clock()
        if left <= 0:
            raise self._deadline(url)
        env = self._env_for(url)
        watchdog = _Watchdog(left)
        try:
            try:
                resp = self.session.get(
                    url,
                    headers=headers,
                    timeout=(min(cfg.connect_timeout, left), min(cfg.read_timeout, left)),
                    stream=True,
                    allow_redirects=False,
                    proxies=None if env.proxies is None else dict(env.proxies),
                    verify=env.verify,
                    auth=env.auth if self.session.auth is None else None,
                )
            except requests.RequestException as exc:
                if watchdog.finish():
                    raise self._deadline(url) from None
                raise self._map_request_error(url, exc) from None
            watchdog.watch(resp)
            try:
                return self._handle(url, resp, validators, watchdog, deadline_at)
            finally:
                resp.close()
        finally:
            watchdog.finish()

    def _handle(
        self,
        url: str,
        resp: requests.Response,
        validators: Validators,
        watchdog: _Watchdog,
        deadline_at: float,
    ) -> Response | str:
        status = resp.status_code
        if status in _REDIRECTS and resp.headers.get("Location"):
            return resp.headers["Location"]
        etag = resp.headers.get("ETag")
        last_modified = resp.headers.get("Last-Modified")
        content_type = resp.headers.get("Content-Type")
        if status == 304 and validators.conditional:
            # A 304 has no body. Read to its end (at most one chunk, in case a server
            # sends one anyway) so urllib3 puts the keep-alive connection back in the
            # pool; if more is left, closing the response below drops the connection.
            with contextlib.suppress(
                urllib3.exceptions.HTTPError, http.client.HTTPException, OSError
            ):
                resp.raw.read(_CHUNK, decode_content=False)
            return Response(
                url,
                304,
                None,
                etag or validators.etag,
                last_modified or validators.last_modified,
                content_type,
                0,
                0.0,
            )
        if not 200 <= status < 300:
            raise self._status_error(url, resp)
        body = self._read_body(url, resp, watchdog, deadline_at)
        return Response(url, status, body, etag, last_modified, content_type, 0, 0.0)

    def _status_error(self, url: str, resp: requests.Response) -> Exception:
        """The error for a non-success status: final, or wrapped in _Retry if retryable."""
        status = resp.status_code
        phrase = resp.reason or http.client.responses.get(status, "")
        err = HTTPStatusError(f"GET {url}: {status} {phrase}".rstrip(), status=status, url=url)
        retry_after = None
        if status in (429, 503):
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        if retry_after is not None:
            if retry_after > self.config.retry_after_max:
                err.args = (
                    f"{err.message} (Retry-After {retry_after:.0f} s is over the"
                    f" {_seconds(self.config.retry_after_max)} cap)",
                )
                return err
            self._cool_down(_host_key(url), retry_after)
            return _Retry(err, retry_after=retry_after)
        if status in (408, 429) or 500 <= status < 600:
            return _Retry(err)
        return err

    def _read_body(
        self, url: str, resp: requests.Response, watchdog: _Watchdog, deadline_at: float
    ) -> bytes:
        cfg = self.config
        cap = cfg.max_bytes
        length_header = resp.headers.get("Content-Length")
        length: int | None = None
        if length_header is not None and length_header.strip().isdigit():
            length = int(length_header)
            if length > cap:
                raise TooLargeError(
                    f"GET {url}: body over {_size(cap)} cap (Content-Length {length})",
                    url=url,
                    status=resp.status_code,
                )
        chunks: list[bytes] = []
        total = 0
        try:
            for chunk in resp.raw.stream(_CHUNK, decode_content=True):
                total += len(chunk)
                if total > cap:
                    raise TooLargeError(
                        f"GET {url}: body over {_size(cap)} cap", url=url, status=resp.status_code
                    )
                chunks.append(chunk)
                if self._clock() > deadline_at:
                    raise self._deadline(url)
        except FetchError:
            raise
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as exc:
            if watchdog.finish():
                raise self._deadline(url) from None
            if isinstance(exc, urllib3.exceptions.ReadTimeoutError | TimeoutError):
                raise _Retry(self._read_timeout(url)) from None
            if isinstance(exc, urllib3.exceptions.DecodeError):
                what = f"body could not be decoded ({resp.headers.get('Content-Encoding')})"
            else:
                got = resp.raw.tell()
                of = f" of {length}" if length is not None else ""
                what = f"body truncated ({got}{of} bytes received: {_cause(exc)})"
            raise _Retry(FetchConnectionError(f"GET {url}: {what}", url=url)) from None
        if watchdog.finish():
            raise self._deadline(url)
        encoded = resp.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
        if length is not None and not encoded and total != length:
            raise _Retry(
                FetchConnectionError(
                    f"GET {url}: body truncated ({total} of {length} bytes)", url=url
                )
            )
        return b"".join(chunks)

    # -- error mapping -------------------------------------------------------------------------
    def _deadline(self, url: str) -> FetchTimeoutError:
        return FetchTimeoutError(
            f"GET {url}: download not finished within {_seconds(self.config.deadline)} (deadline)",
            reason="deadline",
            url=url,
        )

    def _read_timeout(self, url: str) -> FetchTimeoutError:
        return FetchTimeoutError(
            f"GET {url}: no answer within {_seconds(self.config.read_timeout)} (read timeout)",
            url=url,
        )

    def _map_request_error(self, url: str, exc: requests.RequestException) -> Exception:
        """A requests exception raised before the response arrived, as ours (or a _Retry)."""
        if isinstance(exc, requests.exceptions.ConnectTimeout):
            return _Retry(
                FetchTimeoutError(
                    f"GET {url}: no connection within"
                    f" {_seconds(self.config.connect_timeout)} (connect timeout)",
                    url=url,
                )
            )
        if isinstance(exc, requests.exceptions.ReadTimeout):
            return _Retry(self._read_timeout(url))
        if isinstance(exc, requests.exceptions.SSLError):
            return FetchConnectionError(f"GET {url}: TLS error ({_cause(exc)})", url=url)
        if isinstance(
            exc,
            requests.exceptions.InvalidSchema
            | requests.exceptions.InvalidURL
            | requests.exceptions.MissingSchema,
        ):
            return UrlError(f"GET {url}: {exc}")
        if isinstance(exc, requests.exceptions.ConnectionError):
            return _Retry(FetchConnectionError(f"GET {url}: {_connection_words(exc)}", url=url))
        return FetchError(f"GET {url}: {type(exc).__name__} ({exc})", url=url)


def _connection_words(exc: BaseException) -> str:
    cause = _cause(exc)
    text = str(exc)
    if "Connection aborted" in text or "RemoteDisconnected" in text:
        return f"connection dropped before an answer ({cause})"
    return f"cannot connect ({cause})"
