"""Tests of fetcher.transport: one suite run against both engines on a real loopback origin."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
import requests
from origin import Origin, closed_port

from fetcher.config import HttpConfig
from fetcher.errors import FetchConnectionError, FetchError, FetchTimeoutError, TooLargeError
from fetcher.transport import CurlEngine, Engine, Exchange, RequestsEngine, ca_bundle

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
ENGINES = ["libcurl", "requests"]


@pytest.fixture
def origin() -> Iterator[Origin]:
    with Origin() as o:
        yield o


def make(kind: str, **http: object) -> Engine:
    config = HttpConfig(**http)  # type: ignore[arg-type]
    if kind == "libcurl":
        return CurlEngine(config)
    return RequestsEngine(requests.Session(), config)


@pytest.fixture(params=ENGINES)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_a_200_comes_back_with_its_body_and_headers_in_lower_case(
    origin: Origin, kind: str
) -> None:
    origin.publish("/a.png", PNG)
    engine = make(kind)
    reply = engine.send(Exchange(origin.url("/a.png"), {"User-Agent": "t"}, 30.0))
    assert (reply.status, reply.body) == (200, PNG)
    assert reply.headers["content-type"] == "image/png" and reply.headers["etag"].startswith('"')
    again = engine.send(
        Exchange(origin.url("/a.png"), {"If-None-Match": reply.headers["etag"]}, 30.0)
    )
    assert (again.status, again.body) == (304, None)
    engine.close()


@pytest.mark.parametrize("size", [20, 4 << 20])
def test_an_error_page_is_not_kept_but_its_status_is(origin: Origin, kind: str, size: int) -> None:
    origin.fault("/gone.png", "status", code=410, body=b"y" * size)
    engine = make(kind, max_bytes=1 << 20)
    reply = engine.send(Exchange(origin.url("/gone.png"), {}, 30.0))
    assert (reply.status, reply.body) == (410, None)
    origin.publish("/a.png", PNG)
    assert engine.send(Exchange(origin.url("/a.png"), {}, 30.0)).body == PNG


def test_a_100_continue_before_the_answer_changes_nothing(origin: Origin, kind: str) -> None:
    body = bytes(range(256)) * 1024  # 256 KiB: more than an error page's allowance
    origin.fault("/c.png", "raw-headers", headers=[], body=body, continue_first=True)
    reply = make(kind).send(Exchange(origin.url("/c.png"), {}, 30.0))
    assert (reply.status, reply.body) == (200, body)


def test_a_negative_chunk_size_is_a_transient_connection_error(origin: Origin, kind: str) -> None:
    origin.fault("/neg.png", "negative-chunk")
    with pytest.raises(FetchConnectionError) as info:
        make(kind).send(Exchange(origin.url("/neg.png"), {}, 30.0))
    assert info.value.transient and info.value.reason == "connection"


def test_a_port_with_nothing_listening_cannot_connect(kind: str) -> None:
    url = f"http://127.0.0.1:{closed_port()}/x.png"
    with pytest.raises(FetchConnectionError) as info:
        make(kind).send(Exchange(url, {}, 30.0))
    assert info.value.transient and "cannot connect" in str(info.value)


@pytest.mark.parametrize(
    ("fault", "words"), [("reset", "connection dropped"), ("truncate", "truncated")]
)
def test_a_broken_connection_is_transient(
    origin: Origin, kind: str, fault: str, words: str
) -> None:
    origin.publish("/r.png", PNG)
    origin.fault("/r.png", fault)
    with pytest.raises(FetchConnectionError) as info:
        make(kind).send(Exchange(origin.url("/r.png"), {}, 30.0))
    assert info.value.transient and words in str(info.value), str(info.value)


def test_a_stall_is_a_transient_read_timeout(origin: Origin, kind: str) -> None:
    origin.publish("/stall.png", PNG)
    origin.fault("/stall.png", "stall", seconds=10.0)
    with pytest.raises(FetchTimeoutError) as info:
        make(kind, read_timeout=1.0).send(Exchange(origin.url("/stall.png"), {}, 30.0))
    assert info.value.transient and info.value.reason == "timeout"
    assert "read timeout" in str(info.value)


def test_a_body_trickle_ends_at_the_time_left_as_the_deadline(origin: Origin, kind: str) -> None:
    origin.publish("/slow.png", PNG[:200])
    origin.fault("/slow.png", "trickle", interval=0.05)  # 10 s in all
    started = time.monotonic()
    with pytest.raises(FetchTimeoutError) as info:
        make(kind).send(Exchange(origin.url("/slow.png"), {}, 1.0))
    assert info.value.reason == "deadline" and not info.value.transient
    assert time.monotonic() - started < 8  # generous: the trickle alone takes 10 s


def test_a_header_trickle_ends_at_the_deadline_with_libcurl(origin: Origin) -> None:
    """The deadline covers the headers too (a caller's session cannot be reached before them)."""
    origin.publish("/h.png", PNG)
    origin.fault("/h.png", "header-trickle", interval=0.05)  # about 4 s of headers
    with pytest.raises(FetchTimeoutError) as info:
        make("libcurl").send(Exchange(origin.url("/h.png"), {}, 1.0))
    assert info.value.reason == "deadline"
    assert len(origin.requests_for("/h.png")) == 1


def test_the_cap_counts_decoded_bytes_so_a_gzip_bomb_stops_there(origin: Origin, kind: str) -> None:
    origin.fault("/bomb.png", "gzip-bomb", size=64 << 20)
    with pytest.raises(TooLargeError) as info:
        make(kind, max_bytes=1 << 20).send(Exchange(origin.url("/bomb.png"), {}, 30.0))
    assert "1 MiB cap" in str(info.value) and not info.value.transient


def test_a_content_length_over_the_cap_is_refused(origin: Origin, kind: str) -> None:
    origin.fault("/huge.png", "huge-length")
    with pytest.raises(TooLargeError) as info:
        make(kind).send(Exchange(origin.url("/huge.png"), {}, 30.0))
    assert "Content-Length 10000000000" in str(info.value)


def test_raw_utf8_header_values_are_read_as_utf8(origin: Origin, kind: str) -> None:
    origin.fault("/u", "raw-location", location="/caf\u00e9/\u732b.png")
    reply = make(kind).send(Exchange(origin.url("/u"), {}, 30.0))
    assert reply.status == 302 and reply.headers["location"] == "/caf\u00e9/\u732b.png"


def test_cancel_ends_a_transfer_in_flight_at_once(origin: Origin, kind: str) -> None:
    origin.publish("/slow.png", PNG[:200])
    origin.fault("/slow.png", "trickle", interval=0.1)  # 20 s in all
    engine = make(kind)
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            engine.send(Exchange(origin.url("/slow.png"), {}, 60.0))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=fetch)
    thread.start()
    deadline = time.monotonic() + 10
    while not origin.requests_for("/slow.png"):
        assert time.monotonic() < deadline, "the request never arrived"
        time.sleep(0.01)
    time.sleep(0.3)  # into the body
    cancelled = time.monotonic()
    engine.cancel()
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - cancelled < 2.0
    assert len(errors) == 1 and isinstance(errors[0], FetchError)
    assert errors[0].reason == "interrupted"
    with pytest.raises(FetchError, match="interrupted"):  # and nothing new is sent
        engine.send(Exchange(origin.url("/slow.png"), {}, 60.0))


def test_libcurl_keeps_no_body_once_it_is_handed_over(origin: Origin) -> None:
    """Each worker thread keeps its handle for the run: it must not keep the last body too."""
    origin.publish("/a.png", PNG)
    engine = CurlEngine(HttpConfig())
    assert engine.send(Exchange(origin.url("/a.png"), {}, 30.0)).body == PNG
    assert [h.chunks for h in engine._handles] == [[]]
    engine.close()


def test_ca_bundle_prefers_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CURL_CA_BUNDLE", "/x/ca.pem")
    assert ca_bundle() == "/x/ca.pem"
    monkeypatch.delenv("CURL_CA_BUNDLE")
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    found = ca_bundle()
    assert found is not None and found != "/x/ca.pem"
