"""Chaos: 2 000 URLs from an origin that fails 30 % of requests; repeated runs converge, flat."""

from __future__ import annotations

import contextlib
import json
import os
import random
import select
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import encode
from origin import Origin, RequestRecord, _Fault, _Published
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
URLS = 2000
FAILING = 0.30

#: One long-lived child process that runs ``sync()`` once per "run" line on stdin and
#: answers with one JSON line: every result, and its own RSS, peak RSS, fds and threads.
DRIVER = """
import gc, json, os, sys, threading
from fetcher.config import load_config
from fetcher.mirror import sync
# fetcher loads the array stack on the first download that needs it; load it up front so
# the memory compared across runs is the runs' own, not a one-time import
import fetcher.comparison, fetcher.decode, fetcher.similarity

dest, urls, config = sys.argv[1:4]

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)

for command in sys.stdin:
    if command.strip() != "run":
        break
    results = []
    with open(urls, encoding="utf-8") as lines:
        report = sync(lines, dest, load_config(config), on_result=results.append)
    gc.collect()  # sockets in reference cycles (exceptions' tracebacks) are garbage, not leaks
    answer = {
        "exit": report.exit_code,
        "results": [[r.url, r.outcome, r.reason] for r in results],
        "rss_kib": status("VmRSS"),
        "hwm_kib": status("VmHWM"),
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
    }
    print(json.dumps(answer), flush=True)
"""


class ChaosOrigin(Origin):
    """The loopback origin, failing a random share of requests when ``chaos`` is on.

    Faults drawn per request: connection reset, 503, a body cut in half (with the full
    Content-Length), or a short stall before a normal answer.
    """

    KINDS: tuple[tuple[str, dict[str, Any]], ...] = (
        ("reset", {}),
        ("status", {"code": 503}),
        ("truncate", {}),
        ("stall", {"seconds": 0.05}),
    )

    def __init__(self, seed: int) -> None:
        super().__init__()
        self.chaos = True
        self._dice = random.Random(seed)
        self._dice_lock = threading.Lock()
        self.faults_served = 0

    def start(self) -> ChaosOrigin:
        super().start()
        assert self._server is not None
        self._server.handle_error = lambda request, client_address: None  # type: ignore[method-assign]
        return self

    def _begin(
        self, record: RequestRecord, sock: socket.socket
    ) -> tuple[_Published | None, _Fault | None]:
        pub, flt = super()._begin(record, sock)
        if flt is None and self.chaos:
            with self._dice_lock:
                roll = self._dice.random()
                kind, opts = self.KINDS[self._dice.randrange(len(self.KINDS))]
            if roll < FAILING:
                flt = _Fault(kind, dict(opts), None)
                record.fault = kind
                self.faults_served += 1
        return pub, flt


def tiny_png(i: int) -> bytes:
    pixels = np.random.default_rng(i).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    return encode(Image.fromarray(pixels, "RGB"), "PNG")


@pytest.fixture
def chaos() -> Iterator[ChaosOrigin]:
    served = ChaosOrigin(seed=30)
    with served:
        yield served


class Driver:
    """The child process running sync() on command."""

    def __init__(self, tmp: Path, dest: Path, urls: Path, config: Path) -> None:
        path = os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
        env = {**os.environ, "PYTHONPATH": path}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", DRIVER, str(dest), str(urls), str(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=(tmp / "driver.err").open("wb"),
            env=env,
            text=True,
        )

    def run(self) -> dict[str, Any]:
        """One sync() in the child; its answer plus ``peak_fds``, sampled during the run."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        done = threading.Event()
        peak = [0]

        def sample() -> None:
            while not done.wait(0.01):
                with contextlib.suppress(OSError):  # the child may be gone
                    peak[0] = max(peak[0], len(os.listdir(f"/proc/{self.proc.pid}/fd")))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        ready, _, _ = select.select([self.proc.stdout], [], [], 180)
        line = self.proc.stdout.readline() if ready else ""
        done.set()
        sampler.join()
        if not line:
            self.proc.kill()
            raise AssertionError("the driver died or hung; see driver.err")
        answer: dict[str, Any] = json.loads(line)
        answer["peak_fds"] = peak[0]
        return answer

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.mark.slow
def test_runs_converge_to_a_complete_mirror_without_duplicate_work_in_flat_memory(
    chaos: ChaosOrigin, tmp_path: Path
) -> None:
    bodies = {f"/c/{i // 100:02d}/{i:04d}.png": tiny_png(i) for i in range(URLS)}
    for path, body in bodies.items():
        chaos.publish(path, body)
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(f"{chaos.url(p)} {p[1:]}\n" for p in bodies), encoding="utf-8")
    config = tmp_path / "chaos.toml"
    config.write_text(
        "[sync]\nworkers = 8\nper_host = 8\n"
        "[http]\nconnect_timeout = 2.0\nread_timeout = 2.0\ndeadline = 5.0\n"
        "retries = 3\nbackoff = 0.005\nbackoff_max = 0.02\n",
        encoding="utf-8",
    )
    dest = tmp_path / "dest"
    driver = Driver(tmp_path, dest, urls, config)
    runs: list[dict[str, Any]] = []
    mirrored: set[str] = set()  # URLs whose file fetcher has written
    try:
        while len(mirrored) < URLS and len(runs) < 6:
            had = set(mirrored)
            chaos.clear_log()
            run = driver.run()
            runs.append(run)
            assert len(run["results"]) == URLS  # every URL accounted for, every run
            for url, outcome, reason in run["results"]:
                if url in had:
                    # no duplicate work: a mirrored URL is only ever a 304 (or a failure)
                    assert (outcome, reason) in {("unchanged", "not-modified"), ("failed", reason)}
                elif outcome == "new":
                    mirrored.add(url)
                else:
                    assert outcome == "failed", (url, outcome, reason)
            # later runs only ask "changed since?" for what they have
            asked = [r for r in chaos.requests if chaos.base_url + r.path in had]
            assert all("If-None-Match" in r.headers for r in asked)
        assert len(mirrored) == URLS, [len(r["results"]) for r in runs]
        assert chaos.faults_served > 0.2 * URLS  # the chaos was real
        first_failed = sum(1 for _, outcome, _ in runs[0]["results"] if outcome == "failed")
        assert runs[0]["exit"] == (1 if first_failed else 0)

        # complete and correct, byte for byte; nothing else in the destination
        on_disk = {
            "/" + str(p.relative_to(dest)): p.read_bytes()
            for p in dest.rglob("*")
            if p.is_file() and p.relative_to(dest).parts[0] != ".fetcher"
        }
        assert on_disk.keys() == bodies.keys()
        wrong = [p for p, body in bodies.items() if on_disk[p] != body]
        assert wrong == []

        # the origin heals: one clean run is all 304, exit 0, and rewrites nothing
        inodes = {p: (dest / p[1:]).stat().st_ino for p in bodies}
        chaos.chaos = False
        chaos.clear_log()
        calm = driver.run()
        runs.append(calm)
        assert calm["exit"] == 0
        assert {(o, r) for _, o, r in calm["results"]} == {("unchanged", "not-modified")}
        assert {r.status for r in chaos.requests} == {304}
        assert {p: (dest / p[1:]).stat().st_ino for p in bodies} == inodes
    finally:
        driver.close()

    # flat: open descriptors and threads come back to the same level after every run and
    # stay bounded during it; memory does not grow with the number of runs
    peak_fds = [run["peak_fds"] for run in runs]
    assert max(peak_fds) <= 64, peak_fds
    fds = [run["fds"] for run in runs]
    threads = [run["threads"] for run in runs]
    rss = [run["rss_kib"] for run in runs]
    assert max(fds) - min(fds) <= 2, fds
    assert max(threads) - min(threads) <= 1, threads
    assert max(rss[1:]) - rss[0] < 8 * 1024, rss  # KiB
    assert runs[-1]["hwm_kib"] < 150 * 1024, runs[-1]["hwm_kib"]
    print(f"chaos: {len(runs)} runs, peak fds {peak_fds}, fds {fds}, rss KiB {rss}")
