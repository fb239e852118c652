"""Tests of fetcher.runner and fetcher.ladder: one URL never stops a run; interrupts; the pools."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import encode, gradient_rgb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from origin import Origin, closed_port
from PIL import Image

import fetcher.ladder
from fetcher.cli import main
from fetcher.config import Config, load_config
from fetcher.mirror import sync, sync_one
from fetcher.report import Result
from fetcher.runner import CompareCrashed, CpuPool
from fetcher.state import State
from fetcher.store import Destination

REPO = Path(__file__).resolve().parents[1]
FAST: dict[str, dict[str, Any]] = {
    "sync": {"workers": 4, "per_host": 4},
    "http": {"retries": 1, "backoff": 0.01, "backoff_max": 0.05, "deadline": 20.0},
}


def png(seed: int) -> bytes:
    return encode(gradient_rgb(40 + seed, 30), "PNG")


@pytest.fixture
def origin() -> Iterator[Origin]:
    with Origin() as served:
        yield served


def config(**sections: dict[str, Any]) -> Config:
    merged = {name: dict(keys) for name, keys in FAST.items()}
    for name, keys in sections.items():
        merged.setdefault(name, {}).update(keys)
    return load_config(None, **merged)


def outcomes(results: list[Result]) -> dict[str, tuple[str, str]]:
    return {r.url: (r.outcome, r.reason) for r in results}


def run(lines: list[str], dest: Path, cfg: Config) -> tuple[Any, list[Result]]:
    seen: list[Result] = []
    report = sync(lines, dest, cfg, on_result=seen.append)
    return report, seen


# -- one URL never stops a run -----------------------------------------------------------------


def test_a_malformed_host_in_the_list_fails_alone(origin: Origin, tmp_path: Path) -> None:
    """``http://a..b/x.png`` ended the run with a LocationParseError traceback before."""
    origin.publish("/a.png", png(1))
    origin.publish("/b.png", png(2))
    bad = ["http://a..b/x.png", "http://" + "a" * 64 + ".example/x.png"]
    lines = [origin.url("/a.png"), *bad, origin.url("/b.png")]
    report, seen = run(lines, tmp_path / "d", config())
    got = outcomes(seen)
    assert got[origin.url("/a.png")] == ("new", "new")
    assert got[origin.url("/b.png")] == ("new", "new")
    assert {got[u] for u in bad} == {("failed", "bad-url")}
    assert report.exit_code == 1


@pytest.mark.parametrize(
    ("fault", "opts", "reason"),
    [
        ("redirect", {"location": "http://127.0.0.1:99999/x.png"}, "redirect"),
        ("redirect", {"location": "http://[::1"}, "redirect"),
        ("redirect", {"location": "http://a..b/x.png"}, "redirect"),
        ("negative-chunk", {}, "connection"),
    ],
)
def test_a_hostile_answer_fails_its_url_and_the_run_goes_on(
    origin: Origin, tmp_path: Path, fault: str, opts: dict[str, Any], reason: str
) -> None:
    for name in ("/a.png", "/b.png", "/c.png"):
        origin.publish(name, png(len(name)))
    origin.fault("/b.png", fault, **opts)
    lines = [origin.url(p) for p in ("/a.png", "/b.png", "/c.png")]
    dest = tmp_path / "d"
    for engine_session in (None, "requests"):
        session = None
        if engine_session:
            import requests

            session = requests.Session()
        seen: list[Result] = []
        report = sync(lines, dest, config(), session=session, on_result=seen.append)
        got = outcomes(seen)
        assert got[origin.url("/b.png")] == ("failed", reason), got
        assert {got[origin.url("/a.png")], got[origin.url("/c.png")]} <= {
            ("new", "new"),
            ("unchanged", "not-modified"),
            ("unchanged", "identical-bytes"),
        }
        assert report.total == 3
    with State.open(dest / ".fetcher" / "state.sqlite3") as state:
        c_path = next(r.path for r in seen if r.url == origin.url("/c.png"))
        assert state.get(origin.url("/c.png"), c_path) is not None  # results after it recorded


def test_an_unexpected_exception_fails_its_url_as_internal(
    origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("/a.png", "/b.png", "/c.png"):
        origin.publish(name, png(len(name)))
    real_write = Destination.write

    def write(root: Destination, relpath: str, body: bytes, **kw: Any) -> Any:
        if relpath.endswith("/b.png"):
            raise RuntimeError("boom\nsecond line")
        return real_write(root, relpath, body, **kw)

    monkeypatch.setattr(Destination, "write", write)
    lines = [origin.url(p) for p in ("/a.png", "/b.png", "/c.png")]
    report, seen = run(lines, tmp_path / "d", config())
    by = {r.url: r for r in seen}
    b = by[origin.url("/b.png")]
    assert (b.outcome, b.reason, b.error) == ("failed", "internal", "RuntimeError: boom")
    assert b.traceback is not None and "RuntimeError: boom" in b.traceback
    assert "traceback" not in b.to_dict()
    assert by[origin.url("/c.png")].outcome == "new"
    assert report.exit_code == 1


def test_the_cli_prints_one_line_for_an_internal_failure_and_the_traceback_with_v(
    origin: Origin,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    origin.publish("/a.png", png(1))
    monkeypatch.setattr(Destination, "write", lambda *a, **k: (_ for _ in ()).throw(KeyError("k")))
    urls = tmp_path / "urls.txt"
    urls.write_text(origin.url("/a.png") + "\n")
    assert main(["sync", str(urls), "--dest", str(tmp_path / "d"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "KeyError" in err
    assert "Traceback" not in err
    assert main(["sync", str(urls), "--dest", str(tmp_path / "e"), "--no-progress", "-v"]) == 1
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_the_cli_turns_any_escaping_exception_into_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise AttributeError("a bug somewhere")

    monkeypatch.setattr("fetcher.mirror.sync", broken)
    urls = tmp_path / "urls.txt"
    urls.write_text("http://127.0.0.1:9/x.png\n")
    assert main(["sync", str(urls), "--dest", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err == "fetcher: internal error: AttributeError: a bug somewhere\n"


@pytest.mark.parametrize(
    "url", ["http://a..b/x.png", "not a url", "http://127.0.0.1:0/x.png", None, 5]
)
def test_sync_one_returns_a_failed_result_and_never_raises(tmp_path: Path, url: Any) -> None:
    result = sync_one(url, tmp_path / "x.png")
    assert result.outcome == "failed" and result.reason in ("bad-url", "internal")


def test_sync_one_fails_a_hostile_redirect_as_a_result(origin: Origin, tmp_path: Path) -> None:
    origin.fault("/x.png", "redirect", location="http://127.0.0.1:99999/x.png")
    result = sync_one(origin.url("/x.png"), tmp_path / "x.png")
    assert (result.outcome, result.reason) == ("failed", "redirect")


# -- a dead host -------------------------------------------------------------------------------


def test_a_dead_origin_fails_fast_as_host_down_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """200 URLs on a dead origin took 45 s and printed 200 lines before."""
    dead = f"http://127.0.0.1:{closed_port()}"
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(f"{dead}/{i}.png\n" for i in range(200)))
    report = tmp_path / "r.jsonl"
    code = main(["sync", str(urls), "--dest", str(tmp_path / "d"), "--report", str(report)])
    assert code == 1
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    reasons = [row["reason"] for row in rows]
    assert len(rows) == 200 and set(reasons) <= {"connection", "host-down"}
    assert "host-down" in reasons
    # at most the URLs in flight when the breaker opened fail on their own
    assert reasons.count("connection") <= 10 + 8
    err = capsys.readouterr().err.splitlines()
    host = dead.removeprefix("http://")
    down = [line for line in err if "host-down" in line]
    assert down == [
        f"fetcher: host {host} is down: 10 connection failures or timeouts in a row;"
        " its remaining URLs fail as host-down"
    ]
    assert len(err) <= 1 + reasons.count("connection") + 1


# -- interrupts --------------------------------------------------------------------------------


CHILD = "import sys\nfrom fetcher.cli import main\nsys.exit(main(sys.argv[1:]))\n"


@pytest.mark.parametrize("fault", ["header-trickle", "trickle"])
def test_sigterm_stops_transfers_in_flight_at_once(
    origin: Origin, tmp_path: Path, fault: str
) -> None:
    """A header trickle held a run for 174 s and two SIGTERMs for over 100 s before."""
    origin.publish("/a.png", png(1))
    origin.publish("/slow.png", png(2) * 3)
    origin.fault("/slow.png", fault, interval=0.5)
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{origin.url('/a.png')}\n{origin.url('/slow.png')}\n")
    report = tmp_path / "r.jsonl"
    cfg = tmp_path / "c.toml"
    cfg.write_text("[http]\ndeadline = 300.0\nread_timeout = 60.0\n")
    argv = ["sync", str(urls), "--dest", str(tmp_path / "d"), "--report", str(report)]
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, *argv, "--config", str(cfg)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        # the report grows beside its name (.r.jsonl.XXXX.part) until the run ends
        while not any(p.read_text().count("\n") >= 1 for p in tmp_path.glob(".r.jsonl.*")):
            assert time.monotonic() < deadline, "the fast URL never finished"
            time.sleep(0.05)
        while not origin.requests_for("/slow.png"):  # the slow one is in flight now
            assert time.monotonic() < deadline, "the slow URL was never requested"
            time.sleep(0.05)
        assert child.poll() is None
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=60)  # the trickle alone would take minutes
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err
    rows = [json.loads(line) for line in report.read_text().splitlines()]
    assert [row["url"] for row in rows] == [origin.url("/a.png")]  # the cut one: no verdict


def test_an_interrupted_run_records_no_verdict_for_cut_transfers(
    origin: Origin, tmp_path: Path
) -> None:
    origin.publish("/a.png", png(1))
    origin.publish("/slow.png", png(2))
    origin.fault("/slow.png", "trickle", interval=0.2)
    seen: list[Result] = []

    def interrupt_after_first(result: Result) -> None:
        seen.append(result)
        deadline = time.monotonic() + 30
        while not origin.requests_for("/slow.png"):  # the slow one is in flight now
            assert time.monotonic() < deadline, "the slow URL was never requested"
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGINT)

    lines = [origin.url("/a.png"), origin.url("/slow.png")]
    report = sync(lines, tmp_path / "d", config(), on_result=interrupt_after_first)
    assert report.interrupted and report.exit_code == 130
    assert [r.url for r in seen] == [origin.url("/a.png")]


# -- the compare pool --------------------------------------------------------------------------


def test_a_compare_worker_that_dies_twice_fails_its_image_and_the_pool_is_rebuilt() -> None:
    pool = CpuPool(2)
    try:
        with pytest.raises(CompareCrashed, match="died twice"):
            pool.run(os._exit, 3)
        assert pool.run(int, "42") == 42  # a fresh pool took over
        with pytest.raises(ValueError):  # an ordinary exception still comes back as itself
            pool.run(int, "x")
    finally:
        pool.close()


_MARK = b"CRASH-THE-DECODER"


def _compare_or_die(old: bytes, new: bytes, cfg: Any) -> Any:
    """Stands in for fetcher.ladder._compare in the forked workers: dies on a marked image."""
    if new.endswith(_MARK):
        os.kill(os.getpid(), signal.SIGKILL)
    from fetcher.comparison import compare

    return compare(old, new, cfg, threads=1)


def test_a_dead_compare_worker_fails_only_its_url(
    origin: Origin, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"/{i}.png" for i in range(6)]
    for i, name in enumerate(names):
        origin.publish(name, png(i))
    lines = [origin.url(p) for p in names]
    cfg = config(sync={"compare_workers": 2, "processes": True, "workers": 2})
    report, _ = run(lines, tmp_path / "d", cfg)
    assert report.counts["new"] == 6
    for i, name in enumerate(names):  # every image changes: all go to the compare pool
        img = Image.open(io.BytesIO(png(i))).convert("RGB").rotate(90, expand=True)
        origin.publish(name, encode(img, "PNG") + (_MARK if i == 2 else b""))
    monkeypatch.setattr(fetcher.ladder, "_compare", _compare_or_die)
    report, seen = run(lines, tmp_path / "d", cfg)
    got = {r.url: r for r in seen}
    crashed = got[origin.url(names[2])]
    assert (crashed.outcome, crashed.reason) == ("failed", "internal")
    assert "died twice" in str(crashed.error)
    assert all(got[origin.url(n)].outcome == "changed" for n in names if n != names[2])


# -- hostile input never makes an exception escape ---------------------------------------------


@pytest.fixture(scope="module")
def shared_origin() -> Iterator[Origin]:
    with Origin() as served:
        served.publish("/ok.png", png(3))
        yield served


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)
_HEADER = st.binary(max_size=40).filter(lambda b: b"\r" not in b and b"\n" not in b)


def _loopback_only(text: str, base: str) -> list[str]:
    """Hostile forms that can only ever reach 127.0.0.1 (no DNS, no other address)."""
    return [
        base + "/" + text.lstrip("/"),  # any path
        "http://127.0.0.1:" + text.replace("/", "").replace("@", ""),  # any port text
    ]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=_TEXT, form=st.integers(0, 1))
def test_any_location_ends_as_a_result(
    shared_origin: Origin, tmp_path_factory: Any, text: str, form: int
) -> None:
    location = _loopback_only(text, shared_origin.base_url)[form]
    shared_origin.fault("/moved", "raw-location", location=location)
    dest = tmp_path_factory.mktemp("loc")
    report, seen = run([shared_origin.url("/moved")], dest, config(http={"retries": 0}))
    assert report.total == 1 and len(seen) == 1


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(["ETag", "Last-Modified", "Content-Type", "Retry-After", "Location"]),
    value=_HEADER,
)
def test_any_header_value_ends_as_a_result(
    shared_origin: Origin, tmp_path_factory: Any, name: str, value: bytes
) -> None:
    shared_origin.fault("/odd.png", "raw-headers", headers=[(name, value)], body=png(4))
    dest = tmp_path_factory.mktemp("hdr")
    for _ in range(2):  # the second run sends back what the first stored
        report, seen = run([shared_origin.url("/odd.png")], dest, config(http={"retries": 0}))
        assert report.total == 1 and len(seen) == 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(_TEXT, max_size=3))
def test_any_list_line_ends_as_a_result(
    shared_origin: Origin, tmp_path_factory: Any, texts: list[str]
) -> None:
    dest = tmp_path_factory.mktemp("lines")
    hostile = [line for t in texts for line in _loopback_only(t, shared_origin.base_url)]
    hostile += [t for t in texts if "://" not in t]  # raw lines: never a usable URL elsewhere
    listing = [shared_origin.url("/ok.png") + " ok.png", *hostile]
    report, seen = run(listing, dest, config(http={"retries": 0, "connect_timeout": 1.0}))
    assert report.total == len(seen) >= 1
    assert any(r.url == shared_origin.url("/ok.png") and r.ok for r in seen)
