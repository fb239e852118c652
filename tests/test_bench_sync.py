"""Smoke test of benchmarks/bench_sync.py: runs end to end on a few images, prints its table."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_sync.py"
SMALL = ["-n", "5", "--size", "160x120", "--refresh-lines", "20"]


def _run(*extra: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH), *SMALL, *extra],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _rows(out: str, label: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(label)]


@pytest.mark.skipif(shutil.which("wget") is None, reason="wget is not installed")
def test_bench_sync_against_wget_and_curl() -> None:
    out = _run()
    for label in ("(a) first sync", "(b) refresh", "(r) refresh", "(c) all re-encoded"):
        rows = _rows(out, label)
        assert any(" fetcher " in row for row in rows), out
        assert any(" wget " in row for row in rows) == (label[:3] != "(c)"), out
        assert all(" ms " in row for row in rows), out  # CPU per URL
    assert "fetcher/wget <= 3.0x" in out and "fetcher/wget <= 1.0x" in out
    assert "origin: " in out
    assert "CHECK FAILED" not in out
    assert out.count("PASS") + out.count("MISS") == 3  # (a), (r), (c)


def test_bench_sync_without_wget_or_curl_on_the_python_origin() -> None:
    out = _run("--wget", "/nonexistent/wget", "--curl", "/nonexistent/curl", "--origin", "python")
    assert out.count("not found") == 2 and "installs nothing" in out
    assert "nginx not used" in out
    assert not [line for line in out.splitlines() if " wget " in line and "MiB" in line]
    assert out.count("skipped (no wget)") == 2
    assert out.count("PASS") + out.count("MISS") == 1


def test_bench_sync_with_a_round_trip_compares_with_curl() -> None:
    out = _run("--rtt", "20", "--origin", "python", "--wget", "/nonexistent/wget")
    assert "20 ms round trip" in out
    assert _rows(out, "(a) first sync") and _rows(out, "(b) refresh")
    assert not _rows(out, "(c)") and not _rows(out, "(r)")
    if shutil.which("curl"):
        assert "fetcher/curl <= 1.1x" in out and len(_rows(out, "(b) refresh")) == 2
    else:
        assert out.count("skipped (no curl)") == 2
    assert "CHECK FAILED" not in out
