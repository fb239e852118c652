"""Per-host politeness: connection slots, Retry-After cooldowns, and a circuit breaker.

A host is ``host:port`` (the host in lower case, the scheme's default port filled in).
:meth:`Hosts.slot` is held around each exchange: it waits for one of the host's
``per_host`` slots, then for the host's cooldown (a Retry-After told to any worker),
then refuses at once if the host's breaker is open. Only after that does the caller
start the download's clock, so a wait here never eats into the deadline.

The breaker counts *consecutive* connection failures and timeouts per host (every
attempt counts, retries included; any HTTP answer, even a 503, resets the count). At
``threshold`` it opens: every later request to the host fails at once with
:class:`HostDownError` (reason ``host-down``). A success on that host, such as a
request already in flight when it opened, closes it again.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

from .errors import FetchError, HostDownError

__all__ = ["Hosts", "host_key"]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def host_key(url: str) -> str:
    """``host:port`` of an http(s) URL (the scheme's default port filled in)."""
    parts = urlsplit(url)
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0)
    host = parts.hostname or ""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Host:
    def __init__(self, key: str, per_host: int) -> None:
        self.key = key
        self.slots: queue.SimpleQueue[None] = queue.SimpleQueue()  # a token per free slot
        for _ in range(per_host):
            self.slots.put(None)
        self.not_before = float("-inf")
        self.failures = 0
        self.down = False


class Hosts:
    """Slots, cooldowns and breakers of every host a fetcher talks to (thread-safe).

    Parameters
    ----------
    per_host : int
        Requests in flight to one host at once.
    threshold : int
        Consecutive connection failures or timeouts that open a host's breaker (0: never).
    clock : callable
        Monotonic seconds.
    wait : callable
        ``wait(seconds)`` sleeps, and returns True if the run was interrupted meanwhile.
    """

    def __init__(
        self,
        per_host: int,
        threshold: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool],
    ) -> None:
        if per_host < 1:
            raise ValueError("per_host must be at least 1")
        self._per_host = per_host
        self._threshold = threshold
        self._clock = clock
        self._wait = wait
        self._lock = threading.Lock()
        self._hosts: dict[str, _Host] = {}

    def _get(self, key: str) -> _Host:
        host = self._hosts.get(key)  # a dict read needs no lock; adding one does
        if host is None:
            with self._lock:
                host = self._hosts.setdefault(key, _Host(key, self._per_host))
        return host

    def acquire(self, key: str, url: str) -> _Host:
        """Take one of ``key``'s slots once its cooldown is over (see :meth:`slot`)."""
        host = self._get(key)
        self._refuse_if_down(host, url)
        while True:
            try:
                host.slots.get(timeout=0.25)
                break
            except queue.Empty:
                if self._wait(0):
                    raise FetchError(
                        f"GET {url}: interrupted", reason="interrupted", url=url
                    ) from None
        try:
            if host.not_before > self._clock():
                self._cool_down_wait(host, url)
            self._refuse_if_down(host, url)
        except BaseException:
            host.slots.put(None)
            raise
        return host

    @staticmethod
    def release(host: _Host) -> None:
        """Give back the slot :meth:`acquire` took."""
        host.slots.put(None)

    @contextmanager
    def slot(self, key: str, url: str) -> Iterator[None]:
        """Hold one of ``key``'s slots once its cooldown is over; refuse a host that is down.

        Raises
        ------
        HostDownError
            The host's breaker is open (before or after waiting).
        FetchError
            Reason ``interrupted``: the run was interrupted while waiting.
        """
        host = self.acquire(key, url)
        try:
            yield
        finally:
            self.release(host)

    def _cool_down_wait(self, host: _Host, url: str) -> None:
        waited_for: float | None = None
        while True:
            with self._lock:
                until = host.not_before
            remaining = until - self._clock()
            if until == waited_for or remaining <= 0:
                return
            if self._wait(remaining):
                raise FetchError(f"GET {url}: interrupted", reason="interrupted", url=url)
            waited_for = until

    def check(self, key: str, url: str) -> None:
        """Raise HostDownError if ``key``'s breaker is open."""
        self._refuse_if_down(self._get(key), url)

    def _refuse_if_down(self, host: _Host, url: str) -> None:
        if host.down:
            raise HostDownError(
                f"host {host.key} is down: {self._threshold} connection failures or timeouts"
                " in a row; its remaining URLs fail as host-down",
                url=url,
            )

    def cool_down(self, key: str, seconds: float) -> None:
        """Hold every request to ``key`` for ``seconds`` from now (a Retry-After)."""
        host = self._get(key)
        with self._lock:
            host.not_before = max(host.not_before, self._clock() + seconds)

    def failed(self, key: str) -> None:
        """One more connection failure or timeout in a row on ``key``."""
        host = self._get(key)
        with self._lock:
            host.failures += 1
            if self._threshold and host.failures >= self._threshold:
                host.down = True

    def answered(self, key: str) -> None:
        """``key`` answered (any HTTP status): its count restarts, its breaker closes."""
        host = self._get(key)
        if host.failures or host.down:
            with self._lock:
                host.failures = 0
                host.down = False
