"""Smoke test of benchmarks/bench_sync.py: runs end to end on five images, prints its table."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_sync.py"
SMALL = ["-n", "5", "--size", "160x120", "--rss-lines", "40", "--rss-base", "10"]


def _run(*extra: str) -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH), *SMALL, *extra],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.skipif(shutil.which("wget") is None, reason="wget is not installed")
def test_bench_sync_against_wget() -> None:
    out = _run()
    for label in ("(a) first sync", "(b) refresh", "(c) all re-encoded", "(d) 10 % edited"):
        rows = [line for line in out.splitlines() if line.startswith(label)]
        assert any(" fetcher " in row for row in rows), out
        assert any(" wget " in row for row in rows) == (label[:3] in ("(a)", "(b)")), out
    assert "fetcher/wget <= 1.0x" in out and "fetcher/wget <= 0.5x" in out
    assert "CHECK FAILED" not in out
    assert out.count("PASS") + out.count("MISS") == 5  # (a), (b), (c), RSS twice


def test_bench_sync_without_wget() -> None:
    out = _run("--wget", "/nonexistent/wget")
    assert "not found" in out and "installs nothing" in out
    assert not [line for line in out.splitlines() if " wget " in line and "MiB" in line]
    assert out.count("skipped (no wget)") == 2
    assert out.count("PASS") + out.count("MISS") == 3
