"""Tests of sync() on a real Dask LocalCluster: same results and bytes as the thread pool."""

from __future__ import annotations

import io
import os
import signal
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import encode, gradient_rgb
from origin import Origin
from PIL import Image, ImageDraw

from fetcher.config import Config, load_config
from fetcher.mirror import sync
from fetcher.report import Result

distributed = pytest.importorskip(
    "distributed", reason='Dask distributed is not installed (pip install ".[dask]")'
)

FAST: dict[str, dict[str, Any]] = {
    "sync": {"workers": 4, "per_host": 3},
    "http": {
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
        "deadline": 10.0,
        "retries": 2,
        "backoff": 0.02,
        "backoff_max": 0.1,
    },
}


def _cluster() -> Any:
    return distributed.LocalCluster(
        n_workers=2,
        processes=True,
        threads_per_worker=2,
        dashboard_address=None,
        host="127.0.0.1",
    )


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    with _cluster() as cluster, distributed.Client(cluster) as dask_client:
        yield dask_client


@pytest.fixture
def origin() -> Iterator[Origin]:
    with Origin() as served:
        yield served


def picture(i: int) -> bytes:
    """A distinct small PNG per ``i``: a gradient with a box at a place of its own."""
    img = gradient_rgb(64 + i % 7, 48)
    ImageDraw.Draw(img).rectangle((i % 40, 5, i % 40 + 10, 20), fill=(i * 37 % 256, 0, 90))
    return encode(img, "PNG")


def reencoded(png: bytes) -> bytes:
    """The same pixels saved again with other PNG settings (different bytes, same picture)."""
    with Image.open(io.BytesIO(png)) as img:
        return encode(img.convert("RGB"), "PNG", compress_level=1)


def edited(png: bytes) -> bytes:
    with Image.open(io.BytesIO(png)) as img:
        out = img.convert("RGB")
    ImageDraw.Draw(out).rectangle((0, 0, out.width // 2, out.height // 2), fill=(255, 255, 0))
    return encode(out, "PNG")


def files(dest: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(dest)): p.read_bytes()
        for p in dest.rglob("*")
        if p.is_file() and ".fetcher" not in p.parts
    }


def decisions(results: list[Result]) -> dict[str, tuple[str, str]]:
    return {r.url: (r.outcome, r.reason) for r in results}


def run(lines: list[str], dest: Path, config: Config, executor: Any = None) -> list[Result]:
    results: list[Result] = []
    sync(lines, dest, config, executor=executor, on_result=results.append)
    return results


def test_mirror_cycle_on_the_cluster_matches_the_thread_pool(
    client: Any, origin: Origin, tmp_path: Path
) -> None:
    config = load_config(None, **FAST)
    n = 40
    paths = [f"/img/{i}.png" for i in range(n)]
    for i, path in enumerate(paths):
        origin.publish(path, picture(i))
    lines = [origin.url(p) for p in paths]
    by_threads, by_dask = tmp_path / "threads", tmp_path / "dask"
    executor = client.get_executor()

    first_threads = run(lines, by_threads, config)
    origin.clear_log()
    first_dask = run(lines, by_dask, config, executor)
    assert decisions(first_dask) == decisions(first_threads)
    assert {o for o, _ in decisions(first_dask).values()} == {"new"}
    assert files(by_dask) == files(by_threads)
    assert len(files(by_dask)) == n
    # one host: never more requests at once than per_host, across both workers
    assert origin.peak_concurrency <= FAST["sync"]["per_host"]

    # the origin changes: re-encoded, edited, removed, the rest as they were
    for i in range(0, 10):
        origin.publish(paths[i], reencoded(picture(i)))
    for i in range(10, 15):
        origin.publish(paths[i], edited(picture(i)))
    origin.remove(paths[15])
    second_threads = run(lines, by_threads, config)
    origin.clear_log()
    second_dask = run(lines, by_dask, config, executor)
    got = decisions(second_dask)
    assert got == decisions(second_threads)
    assert {got[lines[i]][0] for i in range(10)} == {"unchanged"}
    assert {got[lines[i]][0] for i in range(10, 15)} == {"changed"}
    assert got[lines[15]] == ("failed", "http-404")
    assert {got[lines[i]] for i in range(16, n)} == {("unchanged", "not-modified")}
    # the state the caller kept sent validators: the untouched ones were conditional GETs
    assert all(r.headers.get("If-None-Match") for p in paths[16:] for r in origin.requests_for(p))
    assert files(by_dask) == files(by_threads)
    assert files(by_dask)["127.0.0.1_" + str(origin.port) + "/img/12.png"] == edited(picture(12))


@pytest.mark.slow
def test_killing_a_worker_mid_run_still_converges(origin: Origin, tmp_path: Path) -> None:
    config = load_config(None, **FAST)
    paths = [f"/slow/{i}.png" for i in range(60)]
    for i, path in enumerate(paths):
        origin.publish(path, picture(i))
        origin.fault(path, "stall", seconds=0.15, times=1)  # each first fetch is slow
    lines = [origin.url(p) for p in paths]
    dest = tmp_path / "mirror"
    with _cluster() as cluster, distributed.Client(cluster) as dask_client:
        pids = list(dask_client.run(os.getpid).values())
        killed = threading.Event()

        def kill_once(result: Result) -> None:
            if not killed.is_set():
                killed.set()
                os.kill(pids[0], signal.SIGKILL)

        results: list[Result] = []

        def seen(result: Result) -> None:
            results.append(result)
            if len(results) == 8:
                kill_once(result)

        sync(lines, dest, config, executor=dask_client.get_executor(), on_result=seen)
        assert killed.is_set()
        for _ in range(3):  # anything a lost batch could not finish is picked up again
            if len(files(dest)) == len(paths):
                break
            sync(lines, dest, config, executor=dask_client.get_executor())
    on_disk = files(dest)
    prefix = f"127.0.0.1_{origin.port}"
    assert on_disk == {f"{prefix}{p}": picture(i) for i, p in enumerate(paths)}
    assert not list(dest.rglob(".fetcher-tmp-*"))  # no torn temporaries left behind


def test_scheduler_local_starts_no_dashboard() -> None:
    """``--scheduler local``: the scheduler's HTTP server (distributed always starts one) is
    on a random loopback port and serves no page (before: 127.0.0.1:8787, cluster pages)."""
    from fetcher.runner import cluster_executor

    with cluster_executor("local"):
        link = urllib.parse.urlsplit(distributed.default_client().dashboard_link)
        assert link.hostname == "127.0.0.1" and link.port != 8787
        for page in ("/status", "/health", "/info/main/workers.html", "/metrics"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(f"http://127.0.0.1:{link.port}{page}", timeout=30)
            assert refused.value.code == 404, page
