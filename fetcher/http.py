"""The HTTP policy: conditional GET, retries, redirects hop by hop, Retry-After, the breaker.

One :class:`Fetcher` per run, shared by every worker thread. ``fetch(url, validators)``
either returns a completed :class:`Response` (2xx with the decoded body, or 304) or
raises a :class:`~fetcher.errors.FetchError` subclass. The exchanges themselves are the
engine's (:mod:`fetcher.transport`: libcurl by default, a caller's requests.Session when
given); per-host slots, cooldowns and the circuit breaker are :mod:`fetcher.hosts`'.

Decisions
---------
- Retried (tenacity, imported on the first retry only; full-jitter exponential backoff
  ``backoff * 2**n`` capped at ``backoff_max``; ``retries`` retries after the first
  attempt): what the engine marks transient (connection refused, reset or dropped, a
  truncated or undecodable body, connect and read timeouts), 408, 429 and 5xx. Never
  retried: other 4xx, redirect problems, the byte cap, TLS errors, the deadline.
- Retry-After (on 429 and 503; delta-seconds in ASCII digits, or an HTTP-date) cools the
  host down for every worker and replaces the backoff for that retry. Longer than
  ``retry_after_max``: the fetch fails at once with the status error.
- The whole-download deadline starts when the first hop is sent, after its host slot
  and cooldown, and covers every hop's connect, headers and body.
- Redirects are followed here, one hop at a time, so that every hop gets the same
  treatment with either engine: at most ``max_redirects`` hops (more, or a loop:
  reason ``redirects``); the Location is read as UTF-8, percent-encoded, resolved and
  then validated like a list URL (http or https, a well-formed host, a port in range;
  else reason ``redirect``); each hop takes its host's slot; and from the first hop to
  another origin (scheme, host or port) on, the ``Authorization``,
  ``Proxy-Authorization`` and ``Cookie`` headers are not sent, nor a session's auth.
"""

from __future__ import annotations

import email.utils
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import quote, urljoin, urlsplit

from .config import HttpConfig
from .errors import FetchError, HTTPStatusError, UrlError
from .hosts import Hosts, host_key
from .transport import (
    CREDENTIALS,
    CurlEngine,
    Engine,
    Exchange,
    Reply,
    RequestsEngine,
    deadline_error,
    interrupted,
)
from .urllist import validate_url

if TYPE_CHECKING:
    import requests

__all__ = ["Fetcher", "Response", "Validators", "parse_retry_after"]

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_DIGITS = re.compile(r"[0-9]{1,10}")  # ASCII only: "²".isdigit() is True
_CREDENTIALS = frozenset(name.lower() for name in CREDENTIALS)
_SAFE = "!#$%&'()*+,/:;=?@[]~"  # kept as they are when a Location is percent-encoded


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
    if _DIGITS.fullmatch(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


def _origin(url: str) -> tuple[str, str]:
    return urlsplit(url).scheme.lower(), host_key(url)


class _Retry(Exception):
    """Internal: an attempt failed in a way worth another try."""

    def __init__(self, error: FetchError, *, retry_after: float | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.retry_after = retry_after


class Fetcher:
    """Fetch URLs for many threads at once, with retries, limits and per-host politeness.

    Parameters
    ----------
    config : HttpConfig
        Timeouts, deadline, retries, backoff, byte cap, redirects, headers, breaker.
    session : requests.Session, optional
        Used as is, through :class:`~fetcher.transport.RequestsEngine`, and not closed by
        :meth:`close`; our headers and timeouts are still sent with every request.
        Without one, libcurl (:class:`~fetcher.transport.CurlEngine`).
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
        per_host: int = 4,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.session = session
        self.engine: Engine = (
            CurlEngine(config) if session is None else RequestsEngine(session, config)
        )
        self._cancel = threading.Event()
        self._sleep = sleep
        self._clock = clock
        self.hosts = Hosts(per_host, config.host_failures, clock=clock, wait=self._wait)
        self._headers = {"User-Agent": config.user_agent, **dict(config.headers)}

    # -- public ------------------------------------------------------------------------------
    def fetch(
        self, url: str, validators: Validators | None = None, *, checked: bool = False
    ) -> Response:
        """GET ``url``, conditionally if ``validators`` are given.

        Parameters
        ----------
        url : str
            An http or https URL.
        validators : Validators, optional
            Sent as If-None-Match (ETag) and If-Modified-Since (Last-Modified, verbatim).
        checked : bool, optional
            ``url`` passed :func:`fetcher.urllist.validate_url` already (a list entry).

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
        HostDownError
            The host's circuit breaker is open ("host-down").
        FetchError
            Redirect problems ("redirects": too many or a loop; "redirect": a Location
            that is not a usable http(s) URL), or "interrupted" after :meth:`cancel`.
        """
        if not checked:
            try:
                validate_url(url)
            except UrlError as exc:
                raise UrlError(f"GET {url}: {exc.message}") from None
        validators = validators or Validators()
        started = self._clock()
        try:
            return self._attempt(url, validators, 1, started)
        except _Retry as first:
            return self._retry(url, validators, started, first)

    def cancel(self) -> None:
        """Interrupt: transfers in flight end now, waits end, no new request is sent."""
        self._cancel.set()
        self.engine.cancel()

    def close(self) -> None:
        """Let go of the engine's connections (a caller's session stays open)."""
        self.engine.close()

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- retries -----------------------------------------------------------------------------
    def _retry(self, url: str, validators: Validators, started: float, first: _Retry) -> Response:
        """Attempts 2, 3, ... through tenacity (which sees the first attempt's failure too)."""
        import tenacity

        calls = 0

        def attempt() -> Response:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise first
            return self._attempt(url, validators, calls, started)

        backoff = tenacity.wait_random_exponential(
            multiplier=self.config.backoff, max=self.config.backoff_max
        )

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome is not None else None
            if isinstance(exc, _Retry) and exc.retry_after is not None:
                return 0.0  # the host's cooldown is waited for before the next send
            return float(backoff(state))

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(self.config.retries + 1),
            wait=wait,
            retry=tenacity.retry_if_exception_type(_Retry),
            sleep=self._pause,
            reraise=True,
        )
        try:
            return retrying(attempt)
        except _Retry as exc:
            err = exc.error
            if calls > 1:
                err.args = (f"{err.message} (after {calls} attempts)", *err.args[1:])
            raise err from None

    def _pause(self, seconds: float) -> None:
        self._wait(seconds)

    def _wait(self, seconds: float) -> bool:
        """Sleep ``seconds`` (cut short by :meth:`cancel`); True if cancelled."""
        if self._sleep is not None:
            if seconds > 0:
                self._sleep(seconds)
            return self._cancel.is_set()
        if seconds <= 0:
            return self._cancel.is_set()
        return self._cancel.wait(seconds)

    # -- one attempt: the hops of a redirect chain -------------------------------------------
    def _attempt(self, url: str, validators: Validators, number: int, started: float) -> Response:
        if self._cancel.is_set():
            raise interrupted(url)
        headers = dict(self._headers)
        if validators.etag:
            headers["If-None-Match"] = validators.etag
        if validators.last_modified:
            headers["If-Modified-Since"] = validators.last_modified
        key = host_key(url)
        origin: tuple[str, str] | None = None  # worked out on the first redirect
        foreign = False
        current = url
        seen = {url}
        deadline_at: float | None = None
        hops = 0
        while True:
            reply, deadline_at = self._exchange(current, key, headers, foreign, deadline_at)
            location = reply.headers.get("location") if reply.status in _REDIRECTS else None
            if not location:
                return self._complete(current, key, reply, validators, number, started)
            if hops == self.config.max_redirects:
                raise FetchError(
                    f"GET {url}: too many redirects (max {self.config.max_redirects})",
                    reason="redirects",
                    url=url,
                )
            target = _redirect_target(url, current, location)
            if target in seen:
                raise FetchError(
                    f"GET {url}: redirect loop at {target} (max {self.config.max_redirects})",
                    reason="redirects",
                    url=url,
                )
            origin = origin or _origin(url)
            if not foreign and _origin(target) != origin:
                foreign = True
                headers = {k: v for k, v in headers.items() if k.lower() not in _CREDENTIALS}
            seen.add(target)
            current = target
            key = host_key(target)
            hops += 1

    def _exchange(
        self,
        url: str,
        key: str,
        headers: dict[str, str],
        foreign: bool,
        deadline_at: float | None,
    ) -> tuple[Reply, float]:
        """One hop: wait for the host, start the clock (first hop), send, tell the breaker."""
        hosts = self.hosts
        host = hosts.acquire(key, url)
        try:
            now = self._clock()
            if deadline_at is None:
                deadline_at = now + self.config.deadline
            left = deadline_at - now
            if left <= 0:
                raise deadline_error(url, self.config)
            try:
                reply = self.engine.send(Exchange(url, headers, left, foreign))
            except FetchError as exc:
                if exc.transient or exc.reason == "deadline":
                    hosts.failed(key)
                if exc.transient:
                    raise _Retry(exc) from None
                raise
        finally:
            hosts.release(host)
        hosts.answered(key)
        return reply, deadline_at

    def _complete(
        self,
        url: str,
        key: str,
        reply: Reply,
        validators: Validators,
        number: int,
        started: float,
    ) -> Response:
        headers = reply.headers
        etag = headers.get("etag")
        last_modified = headers.get("last-modified")
        if reply.status == 304 and validators.conditional:
            etag = etag or validators.etag
            last_modified = last_modified or validators.last_modified
        elif not 200 <= reply.status < 300:
            raise self._status_error(url, key, reply)
        return Response(
            url=url,
            status=reply.status,
            body=None if reply.status == 304 else (reply.body or b""),
            etag=etag,
            last_modified=last_modified,
            content_type=headers.get("content-type"),
            attempts=number,
            elapsed=self._clock() - started,
        )

    def _status_error(self, url: str, key: str, reply: Reply) -> Exception:
        """The error for a non-success status: final, or wrapped in _Retry if retryable."""
        status = reply.status
        phrase = reply.phrase or _phrase(status)
        err = HTTPStatusError(f"GET {url}: {status} {phrase}".rstrip(), status=status, url=url)
        retry_after = None
        if status in (429, 503):
            retry_after = parse_retry_after(reply.headers.get("retry-after"))
        if retry_after is not None:
            if retry_after > self.config.retry_after_max:
                err.args = (
                    f"{err.message} (Retry-After {retry_after:.0f} s is over the"
                    f" {self.config.retry_after_max:g} s cap)",
                )
                return err
            self.hosts.cool_down(key, retry_after)
            return _Retry(err, retry_after=retry_after)
        if status in (408, 429) or 500 <= status < 600:
            return _Retry(err)
        return err


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _redirect_target(url: str, current: str, location: str) -> str:
    """The absolute URL a Location names, validated like a list URL (reason "redirect")."""
    try:
        target = urljoin(current, quote(location, safe=_SAFE))
        validate_url(target)
    except ValueError as exc:
        why = exc.message if isinstance(exc, UrlError) else f"{location!r}: {exc}"
        raise FetchError(
            f"GET {url}: redirected to an unusable location ({why})", reason="redirect", url=url
        ) from None
    return target
