"""Time 1000 small images through a 2-worker Dask LocalCluster against the default thread pool."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import distributed
from conftest import encode, gradient_rgb
from origin import Origin
from PIL import ImageDraw

from fetcher.config import Config
from fetcher.mirror import sync

N = 1000


def picture(i: int) -> bytes:
    img = gradient_rgb(64, 48)
    ImageDraw.Draw(img).rectangle((i % 50, 4, i % 50 + 8, 16), fill=(i % 256, 0, 0))
    return encode(img, "PNG")


def timed(lines: list[str], dest: Path, executor: object = None) -> float:
    started = time.perf_counter()
    report = sync(lines, dest, Config(), executor=executor)  # type: ignore[arg-type]
    elapsed = time.perf_counter() - started
    assert report.counts.get("new") == len(lines), report.counts
    return elapsed


def main() -> None:
    with Origin() as origin, tempfile.TemporaryDirectory() as tmp:
        lines = []
        for i in range(N):
            origin.publish(f"/b/{i}.png", picture(i))
            lines.append(origin.url(f"/b/{i}.png"))
        threads = timed(lines, Path(tmp) / "threads")
        with (
            distributed.LocalCluster(
                n_workers=2,
                processes=True,
                threads_per_worker=2,
                dashboard_address=None,
                host="127.0.0.1",
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            executor = client.get_executor()
            client.submit(int).result()  # workers up before timing
            dask = timed(lines, Path(tmp) / "dask", executor)
        print(
            f"{N} images: thread pool {threads:.2f} s, 2-worker LocalCluster {dask:.2f} s "
            f"({dask / threads:.2f}x)"
        )


if __name__ == "__main__":
    main()
