"""Tests of fetcher.http (the policy): responses-based unit tests of the requests engine, and
real-loopback fault tests run with both engines (libcurl, and a caller's requests.Session)."""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import http.server
import io
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import responses
from origin import Origin, closed_port
from responses import matchers
from responses.registries import OrderedRegistry

from fetcher.config import HttpConfig
from fetcher.errors import (
    FetchConnectionError,
    FetchError,
    FetchTimeoutError,
    HTTPStatusError,
    TooLargeError,
    UrlError,
)
from fetcher.http import Fetcher, Validators, parse_retry_after

URL = "http://images.example/a.png"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4


class FakeTime:
    """A monotonic clock that only moves when someone sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


def make(fake: FakeTime, **http: object) -> Fetcher:
    """A fetcher on a requests.Session (what ``responses`` intercepts) with a fake clock."""
    cfg = HttpConfig(**{"retries": 3, "backoff": 0.5, "backoff_max": 30.0, **http})  # type: ignore[arg-type]
    return Fetcher(cfg, session=requests.Session(), sleep=fake.sleep, clock=fake.clock)


# -- conditional requests ----------------------------------------------------------------------


@responses.activate
def test_conditional_headers_sent_verbatim_and_304(fake: FakeTime) -> None:
    etag = 'W/"abc-123"'
    lm = "Wed, 21 Oct 2015 07:28:00 GMT"
    responses.get(
        URL,
        status=304,
        headers={"ETag": etag},
        match=[matchers.header_matcher({"If-None-Match": etag, "If-Modified-Since": lm})],
    )
    with make(fake) as f:
        r = f.fetch(URL, Validators(etag=etag, last_modified=lm))
    assert r.not_modified and r.status == 304 and r.body is None
    assert r.etag == etag
    assert r.last_modified == lm  # absent from the 304: the one sent is kept
    assert r.attempts == 1 and not fake.sleeps


@responses.activate
def test_unconditional_request_has_no_validators_and_returns_body(fake: FakeTime) -> None:
    responses.get(
        URL,
        body=PNG,
        content_type="image/png",
        headers={"ETag": '"e1"', "Last-Modified": "Tue, 20 Oct 2015 07:28:00 GMT"},
    )
    with make(fake) as f:
        r = f.fetch(URL)
    sent = responses.calls[0].request.headers
    assert "If-None-Match" not in sent and "If-Modified-Since" not in sent
    assert r.status == 200 and r.body == PNG and not r.not_modified
    assert (r.etag, r.last_modified, r.content_type) == (
        '"e1"',
        "Tue, 20 Oct 2015 07:28:00 GMT",
        "image/png",
    )
    assert r.url == URL


@responses.activate
def test_200_to_a_conditional_request_is_a_normal_answer(fake: FakeTime) -> None:
    responses.get(URL, body=PNG, headers={"ETag": '"new"'})
    with make(fake) as f:
        r = f.fetch(URL, Validators(etag='"old"'))
    assert r.status == 200 and r.body == PNG and r.etag == '"new"'


@responses.activate
def test_gzip_body_is_decoded(fake: FakeTime) -> None:
    responses.get(URL, body=gzip.compress(PNG), headers={"Content-Encoding": "gzip"})
    with make(fake) as f:
        assert f.fetch(URL).body == PNG


# -- retries -----------------------------------------------------------------------------------


@responses.activate(registry=OrderedRegistry)
def test_retry_on_503_twice_then_200(fake: FakeTime) -> None:
    responses.get(URL, status=503)
    responses.get(URL, status=503)
    responses.get(URL, body=PNG)
    with make(fake, backoff=0.5, backoff_max=30.0) as f:
        r = f.fetch(URL)
    assert r.attempts == 3 and r.body == PNG
    assert len(responses.calls) == 3
    # full-jitter exponential backoff: n-th wait in [0, backoff * 2**(n-1)]
    assert len(fake.sleeps) <= 2
    for n, s in enumerate(fake.sleeps, start=1):
        assert 0 < s <= 0.5 * 2 ** (n - 1)
    assert r.elapsed == pytest.approx(sum(fake.sleeps))


@responses.activate(registry=OrderedRegistry)
def test_backoff_is_capped_by_backoff_max(fake: FakeTime) -> None:
    for _ in range(5):
        responses.get(URL, status=500)
    with make(fake, retries=4, backoff=10.0, backoff_max=1.0) as f, pytest.raises(HTTPStatusError):
        f.fetch(URL)
    assert len(responses.calls) == 5
    assert all(0 <= s <= 1.0 for s in fake.sleeps)


@pytest.mark.parametrize("status", [408, 429, 500, 502, 504])
@responses.activate(registry=OrderedRegistry)
def test_retryable_statuses(fake: FakeTime, status: int) -> None:
    responses.get(URL, status=status)
    responses.get(URL, body=PNG)
    with make(fake) as f:
        assert f.fetch(URL).attempts == 2


@pytest.mark.parametrize(
    ("status", "phrase"), [(404, "Not Found"), (403, "Forbidden"), (410, "Gone")]
)
@responses.activate
def test_no_retry_on_other_4xx(fake: FakeTime, status: int, phrase: str) -> None:
    responses.get(URL, status=status)
    with make(fake) as f, pytest.raises(HTTPStatusError) as info:
        f.fetch(URL)
    assert len(responses.calls) == 1 and not fake.sleeps
    err = info.value
    assert err.status == status and err.reason == f"http-{status}" and err.url == URL
    assert str(err) == f"GET {URL}: {status} {phrase}"


@responses.activate
def test_status_error_after_retries_says_how_many(fake: FakeTime) -> None:
    responses.get(URL, status=503)
    with make(fake, retries=2) as f, pytest.raises(HTTPStatusError) as info:
        f.fetch(URL)
    assert len(responses.calls) == 3
    assert info.value.status == 503 and info.value.reason == "http-503"
    assert str(info.value) == f"GET {URL}: 503 Service Unavailable (after 3 attempts)"


@responses.activate
def test_connection_error_after_retries(fake: FakeTime) -> None:
    responses.get(URL, body=requests.exceptions.ConnectionError("refused"))
    with make(fake, retries=2) as f, pytest.raises(FetchConnectionError) as info:
        f.fetch(URL)
    assert len(responses.calls) == 3 and len(fake.sleeps) <= 2
    assert info.value.reason == "connection" and info.value.url == URL
    assert str(info.value).startswith(f"GET {URL}: ")
    assert "\n" not in str(info.value)


@responses.activate
def test_read_timeout_is_retried_then_timeout(fake: FakeTime) -> None:
    responses.get(URL, body=requests.exceptions.ReadTimeout("slow"))
    with make(fake, retries=1, read_timeout=7.0) as f, pytest.raises(FetchTimeoutError) as info:
        f.fetch(URL)
    assert len(responses.calls) == 2
    assert info.value.reason == "timeout"
    assert "no data within 7 s (read timeout)" in str(info.value)
    assert isinstance(info.value, TimeoutError)


# -- Retry-After -------------------------------------------------------------------------------


@responses.activate(registry=OrderedRegistry)
def test_retry_after_seconds_honoured(fake: FakeTime) -> None:
    responses.get(URL, status=429, headers={"Retry-After": "7"})
    responses.get(URL, body=PNG)
    with make(fake, backoff=0.5) as f:
        r = f.fetch(URL)
    assert r.attempts == 2
    assert fake.sleeps == [pytest.approx(7.0)]  # the server's wait replaces the backoff


@responses.activate(registry=OrderedRegistry)
def test_retry_after_http_date_honoured(fake: FakeTime) -> None:
    when = datetime.now(UTC) + timedelta(seconds=20)
    responses.get(
        URL, status=503, headers={"Retry-After": email.utils.format_datetime(when, usegmt=True)}
    )
    responses.get(URL, body=PNG)
    with make(fake) as f:
        assert f.fetch(URL).attempts == 2
    assert len(fake.sleeps) == 1
    assert 18.0 <= fake.sleeps[0] <= 20.5  # the date has one-second resolution


@responses.activate
def test_retry_after_over_cap_fails_at_once(fake: FakeTime) -> None:
    responses.get(URL, status=429, headers={"Retry-After": "3600"})
    with make(fake, retry_after_max=60.0) as f, pytest.raises(HTTPStatusError) as info:
        f.fetch(URL)
    assert len(responses.calls) == 1 and not fake.sleeps
    assert info.value.status == 429
    assert "cap" in str(info.value)


def test_parse_retry_after_forms() -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after(" 0 ", now=now) == 0.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:29:30 GMT", now=now) == 90.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now=now) == 0.0  # past
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after("-5", now=now) is None
    assert parse_retry_after("\u00b2", now=now) is None  # "²".isdigit() is True
    assert parse_retry_after("\u0661\u0662", now=now) is None  # Arabic-Indic digits
    assert parse_retry_after("1e3", now=now) is None
    assert parse_retry_after(None) is None


# -- byte cap ----------------------------------------------------------------------------------


class _CountingRaw(io.RawIOBase):
    """A body that records how much of it was read."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: bytearray) -> int:  # type: ignore[override]
        n = min(len(b), len(self.data) - self.pos)
        b[:n] = self.data[self.pos : self.pos + n]
        self.pos += n
        return n


@responses.activate
def test_content_length_over_cap_is_refused_without_reading(fake: FakeTime) -> None:
    raw = _CountingRaw(bytes(5000))
    responses.get(URL, body=io.BufferedReader(raw), headers={"Content-Length": "5000"})
    with make(fake, max_bytes=4096) as f, pytest.raises(TooLargeError) as info:
        f.fetch(URL)
    assert raw.pos == 0
    assert len(responses.calls) == 1
    assert info.value.reason == "too-large"
    assert str(info.value) == f"GET {URL}: body over 4 KiB cap (Content-Length 5000)"


@responses.activate
def test_streamed_body_over_cap_without_length(fake: FakeTime) -> None:
    responses.get(URL, body=bytes(10_000))
    with make(fake, max_bytes=4096) as f, pytest.raises(TooLargeError):
        f.fetch(URL)
    answer = responses.calls[0].response
    assert isinstance(answer, requests.Response)
    assert "Content-Length" not in answer.headers
    assert len(responses.calls) == 1  # not retried


@responses.activate
def test_cap_counts_decoded_bytes(fake: FakeTime) -> None:
    packed = gzip.compress(bytes(100_000))
    assert len(packed) < 4096
    responses.get(
        URL,
        body=packed,
        headers={"Content-Encoding": "gzip", "Content-Length": str(len(packed))},
    )
    with make(fake, max_bytes=4096) as f, pytest.raises(TooLargeError):
        f.fetch(URL)


@responses.activate
def test_body_exactly_at_cap_is_accepted(fake: FakeTime) -> None:
    responses.get(URL, body=bytes(4096))
    with make(fake, max_bytes=4096) as f:
        assert len(f.fetch(URL).body or b"") == 4096


# -- URLs and redirects ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["ftp://images.example/a.png", "file:///etc/passwd", "a.png", "http://", "http://h:99999/"],
)
@responses.activate
def test_bad_url_is_refused(fake: FakeTime, url: str) -> None:
    with make(fake) as f, pytest.raises(UrlError) as info:
        f.fetch(url)
    assert info.value.reason == "bad-url"
    assert not responses.calls


@responses.activate(registry=OrderedRegistry)
def test_redirect_followed_and_final_url_reported(fake: FakeTime) -> None:
    responses.get(URL, status=301, headers={"Location": "/b.png"})
    responses.get("http://images.example/b.png", body=PNG)
    with make(fake) as f:
        r = f.fetch(URL)
    assert r.url == "http://images.example/b.png" and r.body == PNG and r.attempts == 1


@responses.activate
def test_redirect_to_file_scheme_is_refused(fake: FakeTime) -> None:
    responses.get(URL, status=302, headers={"Location": "file:///etc/passwd"})
    with make(fake) as f, pytest.raises(FetchError) as info:
        f.fetch(URL)
    assert info.value.reason == "redirect"
    assert len(responses.calls) == 1


@responses.activate
def test_too_many_redirects(fake: FakeTime) -> None:
    for i in range(4):
        responses.get(f"http://images.example/{i}", status=302, headers={"Location": f"/{i + 1}"})
    with make(fake, max_redirects=2) as f, pytest.raises(FetchError) as info:
        f.fetch("http://images.example/0")
    assert info.value.reason == "redirects"
    assert len(responses.calls) == 3  # the first request and two redirects followed


# -- sessions ----------------------------------------------------------------------------------


@responses.activate
def test_callers_session_is_used_and_not_closed(
    fake: FakeTime, monkeypatch: pytest.MonkeyPatch
) -> None:
    responses.get(URL, body=PNG)
    session = requests.Session()
    session.headers["X-Caller"] = "yes"
    closed: list[bool] = []
    monkeypatch.setattr(session, "close", lambda: closed.append(True))
    cfg = HttpConfig(user_agent="fetcher-test/9", headers={"X-Extra": "1"})
    with Fetcher(cfg, session=session, sleep=fake.sleep, clock=fake.clock) as f:
        assert f.session is session
        f.fetch(URL)
    sent = responses.calls[0].request.headers
    assert sent["X-Caller"] == "yes"  # the caller's session did the request
    assert sent["User-Agent"] == "fetcher-test/9" and sent["X-Extra"] == "1"  # ours applied too
    assert not closed


# -- real loopback, both engines -------------------------------------------------------------


@pytest.fixture
def origin() -> Iterator[Origin]:
    with Origin() as o:
        yield o


@pytest.fixture(params=["libcurl", "requests"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def real(engine: str, *, per_host: int = 4, session: Any = None, **http: object) -> Fetcher:
    """A fetcher with small backoff: libcurl, or a (given or fresh) requests.Session."""
    base: dict[str, object] = {"retries": 2, "backoff": 0.01, "backoff_max": 0.05}
    config = HttpConfig(**{**base, **http})  # type: ignore[arg-type]
    if engine == "requests" and session is None:
        session = requests.Session()
    return Fetcher(config, session=session if engine == "requests" else None, per_host=per_host)


def test_loopback_roundtrip_and_304(origin: Origin, engine: str) -> None:
    origin.publish("/a.png", PNG)
    with real(engine) as f:
        first = f.fetch(origin.url("/a.png"))
        second = f.fetch(origin.url("/a.png"), Validators(first.etag, first.last_modified))
    assert first.body == PNG and second.not_modified
    log = origin.requests_for("/a.png")
    assert log[1].headers["If-None-Match"] == first.etag
    assert log[1].headers["If-Modified-Since"] == first.last_modified
    assert [r.status for r in log] == [200, 304]


def test_trickle_is_cut_at_deadline(origin: Origin, engine: str) -> None:
    origin.publish("/slow.png", PNG[:200])
    origin.fault("/slow.png", "trickle", interval=0.05)  # 200 bytes: 10 s in all
    with (
        real(engine, deadline=1.5, read_timeout=30.0) as f,
        pytest.raises(FetchTimeoutError) as info,
    ):
        f.fetch(origin.url("/slow.png"))
    assert info.value.reason == "deadline"
    assert len(origin.requests_for("/slow.png")) == 1  # a deadline hit is not retried


def test_a_header_trickle_is_cut_at_the_deadline(origin: Origin) -> None:
    """174 s under a 5 s deadline before: the deadline now covers the headers (libcurl)."""
    origin.publish("/h.png", PNG)
    origin.fault("/h.png", "header-trickle", interval=0.1)  # about 8 s of headers
    started = time.monotonic()
    with real("libcurl", deadline=1.0) as f, pytest.raises(FetchTimeoutError) as info:
        f.fetch(origin.url("/h.png"))
    assert info.value.reason == "deadline"
    assert time.monotonic() - started < 6  # generous; the headers alone take 8 s


def test_stall_is_a_read_timeout_and_retried(origin: Origin, engine: str) -> None:
    origin.publish("/stall.png", PNG)
    origin.fault("/stall.png", "stall", seconds=4.0)
    with real(engine, read_timeout=1.0, retries=1) as f, pytest.raises(FetchTimeoutError) as info:
        f.fetch(origin.url("/stall.png"))
    assert info.value.reason == "timeout"
    assert len(origin.requests_for("/stall.png")) == 2


def test_gzip_bomb_is_too_large(origin: Origin, engine: str) -> None:
    origin.fault("/bomb.png", "gzip-bomb", size=64 << 20)
    with real(engine, max_bytes=1 << 20) as f, pytest.raises(TooLargeError) as info:
        f.fetch(origin.url("/bomb.png"))
    assert "1 MiB cap" in str(info.value)
    assert len(origin.requests_for("/bomb.png")) == 1


def test_huge_content_length_is_too_large(origin: Origin, engine: str) -> None:
    origin.fault("/huge.png", "huge-length")
    with real(engine) as f, pytest.raises(TooLargeError):
        f.fetch(origin.url("/huge.png"))
    assert len(origin.requests_for("/huge.png")) == 1


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("reset", "connection dropped"),
        ("truncate", f"truncated ({len(PNG) // 2} of {len(PNG)} bytes"),
        ("negative-chunk", "GET "),
    ],
)
def test_broken_connection_every_time(origin: Origin, engine: str, kind: str, words: str) -> None:
    origin.publish("/r.png", PNG)
    origin.fault("/r.png", kind)
    with real(engine, retries=2) as f, pytest.raises(FetchConnectionError) as info:
        f.fetch(origin.url("/r.png"))
    assert info.value.reason == "connection"
    assert words in str(info.value) and str(info.value).endswith("(after 3 attempts)")
    assert len(origin.requests_for("/r.png")) == 3


def test_truncated_body_is_retried(origin: Origin, engine: str) -> None:
    origin.publish("/t.png", PNG)
    origin.fault("/t.png", "truncate", times=1)
    with real(engine) as f:
        r = f.fetch(origin.url("/t.png"))
    assert r.body == PNG and r.attempts == 2


def test_redirect_loop(origin: Origin, engine: str) -> None:
    origin.fault("/loop", "redirect", location="/loop2")
    origin.fault("/loop2", "redirect", location="/loop")
    with real(engine) as f, pytest.raises(FetchError) as info:
        f.fetch(origin.url("/loop"))
    assert info.value.reason == "redirects" and "loop" in str(info.value)
    assert len(origin.requests) <= 6


@pytest.mark.parametrize(
    "location",
    [
        "file:///etc/passwd",
        "http://127.0.0.1:99999/x.png",  # ValueError: Port out of range, before
        "http://[::1",  # ValueError: Invalid IPv6 URL, before
        "http://a..b/x.png",  # LocationParseError, before
        "http://" + "a" * 64 + ".example/x.png",
        "http://127.0.0.1:0/x.png",
        "gopher://127.0.0.1/x",
    ],
)
def test_an_unusable_location_fails_as_redirect(origin: Origin, engine: str, location: str) -> None:
    origin.fault("/evil", "redirect", location=location)
    with real(engine) as f, pytest.raises(FetchError) as info:
        f.fetch(origin.url("/evil"))
    assert info.value.reason == "redirect"
    assert len(origin.requests) == 1


def test_a_raw_utf8_location_is_followed_as_utf8(origin: Origin, engine: str) -> None:
    """Read as Latin-1 before (a 404); requests and libcurl follow it as UTF-8."""
    origin.publish("/caf%C3%A9/%E7%8C%AB.png", PNG)
    origin.fault("/moved", "raw-location", location="/caf\u00e9/\u732b.png")
    with real(engine) as f:
        r = f.fetch(origin.url("/moved"))
    assert r.status == 200 and r.body == PNG
    assert r.url == origin.url("/caf%C3%A9/%E7%8C%AB.png")


def _localhost(url: str) -> str:
    return url.replace("//127.0.0.1:", "//localhost:")


SECRETS = {
    "Authorization": "Bearer SECRET-TOKEN",
    "Proxy-Authorization": "Basic cHJveHk6c2VjcmV0",
    "Cookie": "session=SECRET",
}


@pytest.mark.parametrize("hop", ["same-origin", "other-host"])
def test_credentials_from_the_config_never_cross_origins(
    origin: Origin, engine: str, hop: str
) -> None:
    origin.publish("/b.png", PNG)
    target = origin.url("/b.png") if hop == "same-origin" else _localhost(origin.url("/b.png"))
    origin.fault("/a.png", "redirect", location=target)
    with real(engine, headers=SECRETS) as f:
        assert f.fetch(origin.url("/a.png")).body == PNG
    first, second = origin.requests_for("/a.png")[0], origin.requests_for("/b.png")[0]
    assert {k: first.headers.get(k) for k in SECRETS} == SECRETS
    sent = {k: second.headers.get(k) for k in SECRETS}
    assert sent == (SECRETS if hop == "same-origin" else dict.fromkeys(SECRETS))


def test_a_sessions_auth_never_crosses_origins(origin: Origin) -> None:
    origin.publish("/b.png", PNG)
    origin.fault("/a.png", "redirect", location=_localhost(origin.url("/b.png")))
    session = requests.Session()
    session.auth = ("ann", "s3cret")
    session.headers["Authorization"] = "Bearer FROM-SESSION-HEADERS"
    with real("requests", session=session) as f:
        assert f.fetch(origin.url("/a.png")).body == PNG
    assert origin.requests_for("/a.png")[0].headers.get("Authorization", "").startswith("Basic ")
    assert "Authorization" not in origin.requests_for("/b.png")[0].headers
    assert session.auth == ("ann", "s3cret")  # the caller's session is left as it was


def test_retry_after_cools_down_the_host_for_every_worker(origin: Origin, engine: str) -> None:
    origin.publish("/a.png", PNG)
    origin.publish("/b.png", PNG)
    origin.fault("/a.png", "retry-after", code=429, value="1", times=1)
    with real(engine, retries=1) as f:
        got: dict[str, int] = {}

        def worker(path: str) -> None:
            got[path] = f.fetch(origin.url(path)).status

        a = threading.Thread(target=worker, args=("/a.png",))
        a.start()
        deadline = time.monotonic() + 5
        while not any(r.status == 429 for r in origin.requests_for("/a.png")):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.1)  # the 429 is logged when sent; let the client read it and cool down
        b = threading.Thread(target=worker, args=("/b.png",))
        b.start()
        a.join(5)
        b.join(5)
    assert got == {"/a.png": 200, "/b.png": 200}
    told = origin.requests_for("/a.png")[0].at
    assert origin.requests_for("/b.png")[0].at - told >= 0.9  # b waited for a's cooldown
    assert origin.requests_for("/a.png")[1].at - told >= 0.9


def test_a_retry_after_longer_than_the_deadline_is_still_waited_for(
    origin: Origin, engine: str
) -> None:
    """The deadline starts after the host's cooldown: it failed as deadline before."""
    origin.publish("/a.png", PNG)
    origin.fault("/a.png", "retry-after", code=503, value="2", times=1)
    with real(engine, retries=3, deadline=1.5) as f:
        r = f.fetch(origin.url("/a.png"))
    assert (r.status, r.attempts) == (200, 2)


def test_the_deadline_starts_after_the_host_slot(origin: Origin, engine: str) -> None:
    """per_host 1, deadline 1 s, two 0.7 s downloads: the second failed as deadline before."""
    body = PNG[:14]
    for name in ("/a.png", "/b.png"):
        origin.publish(name, body)
        origin.fault(name, "trickle", interval=0.05)  # 14 bytes: 0.7 s each
    results: dict[str, object] = {}
    with real(engine, per_host=1, deadline=1.0, retries=0) as f:

        def worker(path: str) -> None:
            try:
                results[path] = f.fetch(origin.url(path)).body
            except FetchError as exc:
                results[path] = exc

        threads = [threading.Thread(target=worker, args=(p,)) for p in ("/a.png", "/b.png")]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
    assert results == {"/a.png": body, "/b.png": body}


@pytest.mark.parametrize("per_host", [2, 4])
def test_per_host_concurrency_limit(origin: Origin, engine: str, per_host: int) -> None:
    paths = [f"/p{i}.png" for i in range(8)]
    for p in paths:
        origin.publish(p, PNG)
        origin.fault(p, "stall", seconds=0.25)  # hold each request a while, then serve
    with real(engine, per_host=per_host, retries=0) as f:
        threads = [threading.Thread(target=f.fetch, args=(origin.url(p),)) for p in paths]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert len(origin.requests) == 8
    assert all(r.status == 200 for r in origin.requests)
    assert origin.peak_concurrency == per_host


def test_a_dead_host_opens_its_breaker_and_a_success_closes_it(engine: str) -> None:
    dead = f"http://127.0.0.1:{closed_port()}"
    with real(engine, retries=3, host_failures=5) as f:
        errors = []
        for i in range(5):
            with pytest.raises(FetchError) as info:
                f.fetch(f"{dead}/{i}.png")
            errors.append(info.value)
        # the first URL made 4 attempts, the second opened the breaker at its 5th failure
        assert [e.reason for e in errors[:2]] == ["connection", "host-down"]
        assert all(e.reason == "host-down" for e in errors[2:])
        assert "is down: 5 connection failures or timeouts in a row" in str(errors[-1])
        key = dead.removeprefix("http://")
        f.hosts.answered(key)  # e.g. a request in flight when it opened succeeded
        with pytest.raises(FetchConnectionError):
            f.fetch(f"{dead}/again.png")


def test_cancel_interrupts_waits_and_transfers(origin: Origin, engine: str) -> None:
    origin.publish("/slow.png", PNG[:200])
    origin.fault("/slow.png", "trickle", interval=0.1)  # 20 s
    origin.publish("/cool.png", PNG)
    origin.fault("/cool.png", "retry-after", code=503, value="60", times=1)
    errors: dict[str, BaseException] = {}
    with real(engine, retries=3, deadline=120.0) as f:

        def worker(path: str) -> None:
            try:
                f.fetch(origin.url(path))
            except BaseException as exc:
                errors[path] = exc

        threads = [threading.Thread(target=worker, args=(p,)) for p in ("/slow.png", "/cool.png")]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while len(origin.requests) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.3)
        cancelled = time.monotonic()
        f.cancel()
        for t in threads:
            t.join(10)
        assert time.monotonic() - cancelled < 2.0
    assert {p: getattr(e, "reason", None) for p, e in errors.items()} == {
        "/slow.png": "interrupted",
        "/cool.png": "interrupted",
    }


# -- connections and the environment -----------------------------------------------------------


class _KeepAliveServer(http.server.ThreadingHTTPServer):
    """Counts the connections it accepts (each is one TCP handshake by the client)."""

    daemon_threads = True
    block_on_close = False

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _KeepAliveHandler)
        self.connections = 0
        self.request_lines: list[str] = []
        self.body_bytes_sent = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections += 1  # called on the accepting thread, one at a time
        super().process_request(request, client_address)

    def handle_error(self, request: object, client_address: object) -> None:
        """Quiet: a pooled client hangs up on a kept-alive connection at the end."""


class _KeepAliveHandler(http.server.BaseHTTPRequestHandler):
    """/304: 304 to a matching If-None-Match; /404: 404 with a body; else 200 with PNG."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _KeepAliveServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.request_lines.append(self.requestline)
        if self.path.endswith("/304-with-body"):  # a broken server: a "body" without end
            self.send_response(304)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"%x\r\n%s\r\n" % (1 << 16, b"x" * (1 << 16))
            with contextlib.suppress(OSError):
                for _ in range(4096):  # 256 MiB if the client kept reading
                    self.wfile.write(chunk)
                    self.server.body_bytes_sent += 1 << 16
            return
        if self.path.endswith("/304") and self.headers.get("If-None-Match") == '"v1"':
            self.send_response(304)
            self.send_header("ETag", '"v1"')
            self.end_headers()
            return
        code, body = (404, b"no such image\n") if self.path.endswith("/404") else (200, PNG)
        self.send_response(code)
        self.send_header("ETag", '"v1"')
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def keepalive() -> Iterator[_KeepAliveServer]:
    server = _KeepAliveServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def _base(server: _KeepAliveServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


@pytest.mark.parametrize(
    ("path", "validators"), [("/304", Validators(etag='"v1"')), ("/200", None), ("/404", None)]
)
def test_one_connection_serves_many_fetches(
    keepalive: _KeepAliveServer, engine: str, path: str, validators: Validators | None
) -> None:
    with real(engine, retries=0, per_host=1) as f:
        statuses = set()
        for _ in range(20):
            try:
                statuses.add(f.fetch(_base(keepalive) + path, validators).status)
            except HTTPStatusError as exc:
                statuses.add(exc.status or 0)
    assert statuses == {304 if validators else (404 if path == "/404" else 200)}
    assert len(keepalive.request_lines) == 20
    assert keepalive.connections == 1


def test_a_304_with_an_endless_body_is_not_read_on(
    keepalive: _KeepAliveServer, engine: str
) -> None:
    # libcurl does not read a 304's body at all, and finds the connection broken when it
    # reads the next answer on it: that is a transient error, and the retry gets a new one
    with real(engine, retries=1, per_host=1, max_bytes=1 << 20, deadline=20) as f:
        response = f.fetch(_base(keepalive) + "/304-with-body", Validators(etag='"v1"'))
        assert response.not_modified
        assert f.fetch(_base(keepalive) + "/200").status == 200
    assert keepalive.body_bytes_sent < 64 << 20  # the client stopped reading early


_ENV_VARS = [
    *(f"{name}_proxy" for name in ("http", "https", "all", "no")),
    *(f"{name.upper()}_PROXY" for name in ("http", "https", "all", "no")),
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NETRC",
]


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> pytest.MonkeyPatch:
    """No proxy, CA bundle or netrc settings from the real environment; HOME is empty."""
    for name in _ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return monkeypatch


def test_libcurl_takes_the_proxy_from_the_environment(
    keepalive: _KeepAliveServer, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("http_proxy", _base(keepalive))
    with real("libcurl", retries=0) as f:
        assert f.fetch("http://example.invalid/x.png").body == PNG
    assert keepalive.request_lines == ["GET http://example.invalid/x.png HTTP/1.1"]


def test_no_proxy_covering_the_host_bypasses_the_proxy(
    keepalive: _KeepAliveServer, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("http_proxy", _base(keepalive))
    clean_env.setenv("NO_PROXY", "localhost,.invalid")
    with real("libcurl", retries=0) as f, pytest.raises(FetchConnectionError):
        f.fetch("http://example.invalid/x.png")  # straight to a name that does not resolve
    assert keepalive.request_lines == []


def test_callers_session_reads_the_environment_itself(
    keepalive: _KeepAliveServer, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("HTTP_PROXY", _base(keepalive))
    with requests.Session() as session, real("requests", session=session, retries=0) as f:
        assert f.fetch("http://example.invalid/x.png").body == PNG
        assert session.trust_env is True
    assert keepalive.request_lines == ["GET http://example.invalid/x.png HTTP/1.1"]


def test_an_all_304_run_imports_neither_requests_nor_tenacity(
    origin: Origin, tmp_path: Any
) -> None:
    from conftest import encode, gradient_rgb

    from fetcher.mirror import sync

    for name in ("/a.png", "/b.png"):
        origin.publish(name, encode(gradient_rgb(), "PNG"))
    lines = [origin.url("/a.png"), origin.url("/b.png")]
    dest = str(tmp_path / "d")
    assert sync(lines, dest).counts["new"] == 2
    code = (
        "import sys, fetcher\n"
        f"report = fetcher.sync({lines!r}, {dest!r})\n"
        "print(dict(report.reasons['unchanged']), sorted({m.split('.')[0] for m in sys.modules"
        " if m.split('.')[0] in ('requests', 'tenacity', 'urllib3')}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.splitlines() == ["{'not-modified': 2} []"]
