"""Benchmark: fetcher's compare() from bytes against Pillow decoding both images in full.

The similarity rung should cost about what decoding both images costs (the physical
floor): the target is ``compare() / decode <= 1.5`` at 1280x960 and at 4000x3000, for a
JPEG q95 vs q88 pair and a PNG vs JPEG q90 pair of the same photograph.

Times are this thread's CPU time (``time.thread_time``), which a loaded machine disturbs
far less than the wall clock: the decode and ``compare(threads=1)`` both run in this one
thread. ``compare()`` with its default of one thread per core is timed on the wall clock
(its CPU is spread over threads), so that column moves with the machine's load.

The photograph is scikit-image's astronaut resized with Lanczos and given seeded film
grain (sigma 3; an upscaled photo is smoother than a web photo, and smooth images decode
faster). Each round times, side by side in this process: Pillow opening and loading both
byte strings (``Image.open(...).load()``, one thread, no conversion), ``compare()`` with one
thread (what each of a sync's compare workers does), and ``compare()`` with its default
of one thread per core. The ratio is taken per round; the median and the spread over the
rounds are printed.

    python benchmarks/bench_compare.py [--rounds N] [--sizes 1280x960,4000x3000]

Exit status 0 always (a benchmark reports; the machine may be loaded): read the table.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fetcher.comparison import compare

TARGET = 1.5


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        try:
            width, height = (int(v) for v in part.lower().split("x"))
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"sizes look like 1280x960,4000x3000: {text!r}"
            ) from None
        sizes.append((width, height))
    return sizes


def photograph(size: tuple[int, int]) -> Image.Image:
    from skimage import data

    img = Image.fromarray(data.astronaut()).resize(size, Image.Resampling.LANCZOS)
    grain = np.random.default_rng(2026).normal(0.0, 3.0, (size[1], size[0], 1))
    return Image.fromarray(np.clip(np.asarray(img) + grain, 0, 255).astype(np.uint8))


def encoded(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def decode_both(a: bytes, b: bytes) -> None:
    for data in (a, b):
        with Image.open(io.BytesIO(data)) as img:
            img.load()


def cpu(fn: Callable[[], Any]) -> float:
    start = time.thread_time()
    fn()
    return time.thread_time() - start


def wall(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7, help="rounds per pair (default 7)")
    parser.add_argument(
        "--sizes", type=parse_sizes, default=parse_sizes("1280x960,4000x3000"), help="WxH,..."
    )
    args = parser.parse_args(argv)
    print(f"compare() vs Pillow decoding both images; {args.rounds} rounds each, median [min-max]")
    header = (
        f"{'pair':30} {'decode CPU ms':>13} {'compare CPU ms':>14} {'ratio':>20} "
        f"{'all cores (wall)':>22}"
    )
    print(header)
    print("-" * len(header))
    verdicts = []
    for size in args.sizes:
        img = photograph(size)
        pairs = {
            "JPEG q95 vs q88": (encoded(img, "JPEG", quality=95), encoded(img, "JPEG", quality=88)),
            "PNG vs JPEG q90": (encoded(img, "PNG"), encoded(img, "JPEG", quality=90)),
        }
        for name, (old, new) in pairs.items():
            verdict = compare(old, new, threads=1)  # warm up, and what it decided
            decode, one, many = [], [], []
            for _ in range(args.rounds):
                decode.append(cpu(lambda o=old, n=new: decode_both(o, n)))
                one.append(cpu(lambda o=old, n=new: compare(o, n, threads=1)))
                many.append(wall(lambda o=old, n=new: compare(o, n)))
            r1 = [c / d for c, d in zip(one, decode, strict=True)]
            rn = [c / d for c, d in zip(many, decode, strict=True)]
            label = f"{size[0]}x{size[1]} {name}"
            verdicts.append((label, statistics.median(r1), statistics.median(rn)))
            print(
                f"{label:30} {1000 * statistics.median(decode):13.1f} "
                f"{1000 * statistics.median(one):14.1f} "
                f"{statistics.median(r1):7.2f}x [{min(r1):.2f}-{max(r1):.2f}] "
                f"{statistics.median(rn):7.2f}x [{min(rn):.2f}-{max(rn):.2f}]   {verdict.reason}"
            )
    print(f"\ntargets: compare()/decode <= {TARGET}x (median of rounds)")
    for label, r1, rn in verdicts:
        print(
            f"  {label:30} 1 thread {r1:5.2f}x {'PASS' if r1 <= TARGET else 'MISS'}   "
            f"all cores {rn:5.2f}x {'PASS' if rn <= TARGET else 'MISS'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
