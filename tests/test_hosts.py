"""Tests of fetcher.hosts: slots, cooldowns and the circuit breaker, on a fake clock."""

from __future__ import annotations

import threading

import pytest

from fetcher.errors import FetchError, HostDownError
from fetcher.hosts import Hosts, host_key


class Clock:
    """A monotonic clock that moves only when someone waits."""

    def __init__(self) -> None:
        self.now = 100.0
        self.waits: list[float] = []
        self.cancelled = False

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        if seconds > 0:
            self.waits.append(seconds)
            self.now += seconds
        return self.cancelled


@pytest.mark.parametrize(
    ("url", "key"),
    [
        ("http://Example.COM/a", "example.com:80"),
        ("https://example.com/a", "example.com:443"),
        ("http://example.com:8080/a", "example.com:8080"),
        ("http://[::1]:81/a", "[::1]:81"),
    ],
)
def test_host_key(url: str, key: str) -> None:
    assert host_key(url) == key


def test_a_slot_waits_for_the_cooldown_then_holds() -> None:
    clock = Clock()
    hosts = Hosts(2, 3, clock=clock, wait=clock.wait)
    hosts.cool_down("h:80", 5.0)
    hosts.cool_down("h:80", 2.0)  # a shorter one does not shorten it
    with hosts.slot("h:80", "http://h/"):
        assert clock.waits == [5.0]
    with hosts.slot("other:80", "http://other/"):
        assert clock.waits == [5.0]  # another host is not held


def test_slots_bound_requests_in_flight_per_host() -> None:
    clock = Clock()
    hosts = Hosts(2, 0, clock=clock, wait=clock.wait)
    entered = threading.Semaphore(0)
    release = threading.Event()
    inside = 0
    peak = 0
    lock = threading.Lock()

    def worker() -> None:
        nonlocal inside, peak
        with hosts.slot("h:80", "http://h/"):
            with lock:
                inside += 1
                peak = max(peak, inside)
            entered.release()
            release.wait(10)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=worker) for _ in range(5)]
    for t in threads:
        t.start()
    assert entered.acquire(timeout=10) and entered.acquire(timeout=10)
    assert not entered.acquire(timeout=0.3)  # a third never got in while two are inside
    release.set()
    for t in threads:
        t.join(10)
    assert peak == 2


def test_the_breaker_opens_after_n_failures_in_a_row_and_an_answer_closes_it() -> None:
    clock = Clock()
    hosts = Hosts(4, 3, clock=clock, wait=clock.wait)
    hosts.failed("h:80")
    hosts.failed("h:80")
    hosts.answered("h:80")  # a 503 is an answer: the count starts again
    hosts.failed("h:80")
    hosts.failed("h:80")
    hosts.check("h:80", "http://h/a")
    hosts.failed("h:80")
    with pytest.raises(HostDownError) as info:
        hosts.check("h:80", "http://h/a")
    assert info.value.reason == "host-down"
    assert str(info.value) == (
        "host h:80 is down: 3 connection failures or timeouts in a row;"
        " its remaining URLs fail as host-down"
    )
    with pytest.raises(HostDownError), hosts.slot("h:80", "http://h/b"):
        pytest.fail("a slot of a host that is down was given")
    hosts.check("other:80", "http://other/")  # only that host
    hosts.answered("h:80")
    with hosts.slot("h:80", "http://h/b"):
        pass


def test_threshold_zero_never_opens() -> None:
    clock = Clock()
    hosts = Hosts(1, 0, clock=clock, wait=clock.wait)
    for _ in range(100):
        hosts.failed("h:80")
    hosts.check("h:80", "http://h/")


def test_an_interrupt_ends_a_cooldown_wait() -> None:
    clock = Clock()
    clock.cancelled = True
    hosts = Hosts(1, 0, clock=clock, wait=clock.wait)
    hosts.cool_down("h:80", 60.0)
    with pytest.raises(FetchError) as info, hosts.slot("h:80", "http://h/x"):
        pytest.fail("entered after an interrupt")
    assert info.value.reason == "interrupted"


def test_per_host_must_be_positive() -> None:
    with pytest.raises(ValueError, match="per_host"):
        Hosts(0, 1, wait=lambda s: False)
