"""Tests of fetcher.http: responses-based unit tests and real-loopback fault tests."""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import http.server
import io
import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
import responses
from origin import Origin
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
from fetcher.http import Fetcher, Validators, _Alarm, _Watchdog, make_session, parse_retry_after

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
    cfg = HttpConfig(**{"retries": 3, "backoff": 0.5, "backoff_max": 30.0, **http})  # type: ignore[arg-type]
    return Fetcher(cfg, sleep=fake.sleep, clock=fake.clock)


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
    assert "no answer within 7 s (read timeout)" in str(info.value)
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


def test_own_session_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    f = Fetcher(HttpConfig())
    closed: list[bool] = []
    monkeypatch.setattr(f.session, "close", lambda: closed.append(True))
    with f:
        pass
    assert closed == [True]


def test_make_session_settings() -> None:
    cfg = HttpConfig(user_agent="ua/1", headers={"X-A": "b"}, max_redirects=3)
    with make_session(cfg, pool_size=7) as s:
        assert s.headers["User-Agent"] == "ua/1" and s.headers["X-A"] == "b"
        assert s.max_redirects == 3
        adapter = s.get_adapter("https://x/")
        assert adapter._pool_maxsize == 7  # type: ignore[attr-defined]
        assert adapter.max_retries.total == 0  # type: ignore[attr-defined]


# -- real loopback -----------------------------------------------------------------------------


@pytest.fixture
def origin() -> Iterator[Origin]:
    with Origin() as o:
        yield o


def real(**http: object) -> Fetcher:
    base: dict[str, object] = {"retries": 2, "backoff": 0.01, "backoff_max": 0.05}
    return Fetcher(HttpConfig(**{**base, **http}), per_host=4)  # type: ignore[arg-type]


def test_loopback_roundtrip_and_304(origin: Origin) -> None:
    origin.publish("/a.png", PNG)
    with real() as f:
        first = f.fetch(origin.url("/a.png"))
        second = f.fetch(origin.url("/a.png"), Validators(first.etag, first.last_modified))
    assert first.body == PNG and second.not_modified
    log = origin.requests_for("/a.png")
    assert log[1].headers["If-None-Match"] == first.etag
    assert log[1].headers["If-Modified-Since"] == first.last_modified
    assert [r.status for r in log] == [200, 304]


def test_trickle_is_cut_at_deadline(origin: Origin) -> None:
    origin.publish("/slow.png", PNG[:200])
    origin.fault("/slow.png", "trickle", interval=0.05)  # 200 bytes: 10 s in all
    t0 = time.monotonic()
    with real(deadline=1.5, read_timeout=30.0) as f, pytest.raises(FetchTimeoutError) as info:
        f.fetch(origin.url("/slow.png"))
    elapsed = time.monotonic() - t0
    assert info.value.reason == "deadline"
    assert 1.4 <= elapsed < 4.0
    assert len(origin.requests_for("/slow.png")) == 1  # a deadline hit is not retried


def test_stall_is_a_read_timeout_and_retried(origin: Origin) -> None:
    origin.publish("/stall.png", PNG)
    origin.fault("/stall.png", "stall", seconds=3.0)
    with real(read_timeout=0.3, retries=1) as f, pytest.raises(FetchTimeoutError) as info:
        f.fetch(origin.url("/stall.png"))
    assert info.value.reason == "timeout"
    assert len(origin.requests_for("/stall.png")) == 2


def test_gzip_bomb_is_too_large(origin: Origin) -> None:
    origin.fault("/bomb.png", "gzip-bomb", size=64 << 20)
    t0 = time.monotonic()
    with real(max_bytes=1 << 20) as f, pytest.raises(TooLargeError) as info:
        f.fetch(origin.url("/bomb.png"))
    assert "1 MiB cap" in str(info.value)
    assert time.monotonic() - t0 < 10


def test_huge_content_length_is_too_large(origin: Origin) -> None:
    origin.fault("/huge.png", "huge-length")
    with real() as f, pytest.raises(TooLargeError):
        f.fetch(origin.url("/huge.png"))
    assert len(origin.requests_for("/huge.png")) == 1


@pytest.mark.parametrize(
    ("kind", "words"),
    [
        ("reset", "connection dropped"),
        ("truncate", f"truncated ({len(PNG) // 2} of {len(PNG)} bytes"),
    ],
)
def test_broken_connection_every_time(origin: Origin, kind: str, words: str) -> None:
    origin.publish("/r.png", PNG)
    origin.fault("/r.png", kind)
    with real(retries=2) as f, pytest.raises(FetchConnectionError) as info:
        f.fetch(origin.url("/r.png"))
    assert info.value.reason == "connection"
    assert words in str(info.value) and str(info.value).endswith("(after 3 attempts)")
    assert len(origin.requests_for("/r.png")) == 3


def test_truncated_body_is_retried(origin: Origin) -> None:
    origin.publish("/t.png", PNG)
    origin.fault("/t.png", "truncate", times=1)
    with real() as f:
        r = f.fetch(origin.url("/t.png"))
    assert r.body == PNG and r.attempts == 2


def test_redirect_loop(origin: Origin) -> None:
    origin.fault("/loop", "redirect", location="/loop2")
    origin.fault("/loop2", "redirect", location="/loop")
    with real() as f, pytest.raises(FetchError) as info:
        f.fetch(origin.url("/loop"))
    assert info.value.reason == "redirects"
    assert len(origin.requests) <= 6


def test_redirect_to_file_scheme_on_loopback(origin: Origin) -> None:
    origin.fault("/evil", "redirect", location="file:///etc/passwd")
    with real() as f, pytest.raises(FetchError) as info:
        f.fetch(origin.url("/evil"))
    assert info.value.reason == "redirect" and "file:///etc/passwd" in str(info.value)


def test_retry_after_cools_down_the_host_for_every_worker(origin: Origin) -> None:
    origin.publish("/a.png", PNG)
    origin.publish("/b.png", PNG)
    origin.fault("/a.png", "retry-after", code=429, value="1", times=1)
    with real(retries=1) as f:
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


@pytest.mark.parametrize("per_host", [2, 4])
def test_per_host_concurrency_limit(origin: Origin, per_host: int) -> None:
    paths = [f"/p{i}.png" for i in range(8)]
    for p in paths:
        origin.publish(p, PNG)
        origin.fault(p, "stall", seconds=0.25)  # hold each request a while, then serve
    cfg = HttpConfig(retries=0)
    with Fetcher(cfg, per_host=per_host, pool_size=8) as f:
        threads = [threading.Thread(target=f.fetch, args=(origin.url(p),)) for p in paths]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert len(origin.requests) == 8
    assert all(r.status == 200 for r in origin.requests)
    assert origin.peak_concurrency == per_host


# -- cost per request: kept-alive connections, one alarm thread, environment read once --------


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
    ("path", "validators"), [("/304", Validators(etag='"v1"')), ("/200", None)]
)
def test_one_connection_serves_many_fetches(
    keepalive: _KeepAliveServer, path: str, validators: Validators | None
) -> None:
    with Fetcher(HttpConfig(retries=0), per_host=1, pool_size=1) as f:
        statuses = {f.fetch(_base(keepalive) + path, validators).status for _ in range(20)}
    assert statuses == ({304} if validators else {200})
    assert len(keepalive.request_lines) == 20
    assert keepalive.connections == 1


def test_a_304_with_an_endless_body_is_not_read_on(keepalive: _KeepAliveServer) -> None:
    """Reading a 304 to its end (for keep-alive) must not follow a body that never ends."""
    config = HttpConfig(retries=0, max_bytes=1 << 20, deadline=20)
    with Fetcher(config, per_host=1, pool_size=1) as f:
        started = time.monotonic()
        response = f.fetch(_base(keepalive) + "/304-with-body", Validators(etag='"v1"'))
        assert response.not_modified and time.monotonic() - started < 5
        assert f.fetch(_base(keepalive) + "/200").status == 200
    assert keepalive.connections == 2  # the broken connection was dropped, not reused
    assert keepalive.body_bytes_sent < 64 << 20  # the client stopped reading early


def test_no_thread_per_request(
    keepalive: _KeepAliveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    me = threading.current_thread()
    started_here: list[str] = []
    real_start = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        if threading.current_thread() is me:  # not the server's per-connection threads
            started_here.append(thread.name)
        real_start(thread)

    with Fetcher(HttpConfig(retries=0), per_host=1, pool_size=1) as f:
        url = _base(keepalive) + "/304"
        f.fetch(url, Validators(etag='"v1"'))  # the server's connection thread exists now
        baseline = threading.active_count()
        monkeypatch.setattr(threading.Thread, "start", start)
        for _ in range(50):
            assert f.fetch(url, Validators(etag='"v1"')).not_modified
        assert threading.active_count() <= baseline + 1
    assert len(started_here) <= 1  # at most the process's alarm thread, once


def test_alarm_purges_cancelled_entries() -> None:
    alarm = _Alarm()
    try:
        dogs = [_Watchdog(3600.0, alarm=alarm) for _ in range(1000)]
        assert len(alarm) == 1000
        live = dogs[::100]  # 10 downloads still in flight
        for dog in dogs:
            if dog not in live:
                assert dog.finish() is False
        assert len(alarm) <= 2 * len(live) + 1
        for dog in live:
            dog.finish()
        assert len(alarm) == 0
    finally:
        alarm.close()


def test_alarm_fires_an_earlier_deadline_scheduled_later() -> None:
    alarm = _Alarm()
    try:
        late = _Watchdog(3600.0, alarm=alarm)
        t0 = time.monotonic()
        soon = _Watchdog(0.2, alarm=alarm)  # the thread is already waiting for `late`
        while not soon.fired and time.monotonic() - t0 < 5:
            time.sleep(0.01)
        assert soon.fired and 0.15 <= time.monotonic() - t0 < 2.0
        assert not late.fired
        assert soon.finish() is True and late.finish() is False
    finally:
        alarm.close()


def test_deadline_still_works_in_a_forked_child(origin: Origin) -> None:
    origin.publish("/a.png", PNG)
    origin.publish("/slow.png", PNG[:200])
    origin.fault("/slow.png", "trickle", interval=0.1)  # 20 s in all
    with real() as f:
        f.fetch(origin.url("/a.png"))  # the parent's alarm thread is running
    pid = os.fork()
    if pid == 0:  # child: only this thread survives the fork
        code = 3
        try:
            t0 = time.monotonic()
            with real(deadline=1.0, read_timeout=30.0) as f:
                f.fetch(origin.url("/slow.png"))
            code = 2  # finished: the deadline never fired
        except FetchTimeoutError as exc:
            code = 0 if exc.reason == "deadline" and time.monotonic() - t0 < 5 else 1
        finally:
            os._exit(code)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 10:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child's fetch was not cut at its deadline")
    assert os.waitstatus_to_exitcode(status) == 0


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


def test_http_proxy_from_environment_is_used(
    keepalive: _KeepAliveServer, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("HTTP_PROXY", _base(keepalive))
    with Fetcher(HttpConfig(retries=0)) as f:
        r = f.fetch("http://example.invalid/x.png")
    assert r.body == PNG
    assert keepalive.request_lines == ["GET http://example.invalid/x.png HTTP/1.1"]


def test_no_proxy_covering_the_host_bypasses_the_proxy(
    keepalive: _KeepAliveServer, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("HTTP_PROXY", _base(keepalive))
    clean_env.setenv("NO_PROXY", "localhost,.invalid")
    with Fetcher(HttpConfig(retries=0)) as f, pytest.raises(FetchConnectionError):
        f.fetch("http://example.invalid/x.png")  # straight to a name that does not resolve
    assert keepalive.request_lines == []


def test_environment_is_read_once_per_host(
    keepalive: _KeepAliveServer, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("HTTP_PROXY", _base(keepalive))
    reads: list[str] = []
    for module in (requests.utils, requests.sessions):  # ours, and requests' own per request
        for name in ("get_environ_proxies", "get_netrc_auth"):
            real_read = getattr(requests.utils, name)

            def counted(url: str, *args: Any, _real: Any = real_read, **kw: Any) -> Any:
                reads.append(url)
                return _real(url, *args, **kw)

            clean_env.setattr(module, name, counted)
    hosts = ["http://example.invalid", "http://other.invalid"]
    with Fetcher(HttpConfig(retries=0)) as f:
        for i in range(20):
            assert f.fetch(f"{hosts[i % 2]}/{i}.png").body == PNG
    assert len(keepalive.request_lines) == 20
    assert len(reads) == 2 * len(hosts)  # proxies and netrc, once for each host


def _sent_to_adapter(monkeypatch: pytest.MonkeyPatch, fetch: Any) -> tuple[Any, ...]:
    """What reaches HTTPAdapter.send (proxies, verify, Authorization) for one request."""
    seen: list[tuple[Any, ...]] = []

    def send(self: Any, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        auth = request.headers.get("Authorization")
        seen.append((dict(kwargs.get("proxies") or {}), kwargs.get("verify"), auth))
        raise requests.exceptions.ConnectionError("recorded, not sent")

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    with contextlib.suppress(requests.exceptions.ConnectionError, FetchConnectionError):
        fetch()
    assert len(seen) == 1
    return seen[0]


@pytest.mark.parametrize(
    "env",
    [
        {"HTTP_PROXY": "http://proxy.invalid:3128"},
        {"http_proxy": "http://p1.invalid:1", "HTTPS_PROXY": "http://p2.invalid:2"},
        {"ALL_PROXY": "http://all.invalid:8"},
        {"HTTP_PROXY": "http://proxy.invalid:3128", "NO_PROXY": "example.invalid"},
        {"HTTP_PROXY": "http://proxy.invalid:3128", "no_proxy": "other.invalid:8080"},
        {"HTTP_PROXY": "http://proxy.invalid:3128", "NO_PROXY": "example.invalid:8080"},
        {"REQUESTS_CA_BUNDLE": "/etc/ca-a.pem", "CURL_CA_BUNDLE": "/etc/ca-b.pem"},
        {"CURL_CA_BUNDLE": "/etc/ca-b.pem"},
        {"NETRC": "{netrc}"},
        {},
    ],
)
@pytest.mark.parametrize(
    "url", ["http://example.invalid:8080/a.png", "https://other.invalid/a.png"]
)
def test_environment_settings_are_those_requests_would_use(
    clean_env: pytest.MonkeyPatch, tmp_path: Any, env: dict[str, str], url: str
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine example.invalid login ann password s3cret\n")
    for name, value in env.items():
        clean_env.setenv(name, value.format(netrc=netrc))
    with requests.Session() as plain:  # requests reading the environment per request
        expected = _sent_to_adapter(clean_env, lambda: plain.get(url))
    with Fetcher(HttpConfig(retries=0)) as f:
        got = _sent_to_adapter(clean_env, lambda: f.fetch(url))
        again = _sent_to_adapter(clean_env, lambda: f.fetch(url))  # from the cache
    assert got == expected and again == expected


def test_callers_session_reads_the_environment_itself(
    keepalive: _KeepAliveServer, clean_env: pytest.MonkeyPatch
) -> None:
    clean_env.setenv("HTTP_PROXY", _base(keepalive))
    with requests.Session() as session, Fetcher(HttpConfig(retries=0), session=session) as f:
        assert f.fetch("http://example.invalid/x.png").body == PNG
        assert session.trust_env is True
    assert keepalive.request_lines == ["GET http://example.invalid/x.png HTTP/1.1"]
