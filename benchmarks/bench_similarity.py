"""Benchmark fetcher's similarity step against scikit-image's SSIM and plain FFT convolution.

Usage::

    python benchmarks/bench_similarity.py [--size 4000x3000] [--repeat N] [--threads N]

Builds an RGB photograph of the requested size (scikit-image's astronaut resized with
Pillow's LANCZOS filter) and its JPEG quality-90 re-encode, then times, in one run:

* fetcher's ``similarity()`` (SSIM + NRMSE + local score, all bands);
* ``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255)`` per band, summed;
* the plain ``scipy.signal.fftconvolve`` approach (five Gaussian-filtered quantities
  per band, 'valid' mode), summed;
* Pillow decoding the PNG and the JPEG byte strings (what ``compare()`` must also do).

Each time is the best of ``--repeat`` runs. Exits 1 when fetcher's mean SSIM differs
from scikit-image's by more than 1e-6 on any band.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from scipy.signal import fftconvolve
from skimage import data
from skimage.metrics import structural_similarity

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fetcher.compare import compare
from fetcher.similarity import similarity

TOLERANCE = 1e-6
DATA_RANGE = 255.0


def parse_size(text: str) -> tuple[int, int]:
    """``"4000x3000"`` -> ``(4000, 3000)`` (width, height)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 4000x3000, got {text!r}") from None
    if width < 11 or height < 11:
        raise argparse.ArgumentTypeError("both sides must be at least 11 pixels")
    return width, height


def build_pair(size: tuple[int, int]) -> tuple[bytes, bytes]:
    """PNG bytes of the resized photograph and JPEG q=90 bytes of its re-encode."""
    image = Image.fromarray(data.astronaut()).resize(size, Image.Resampling.LANCZOS)
    png, jpeg = io.BytesIO(), io.BytesIO()
    image.save(png, format="PNG", compress_level=1)
    image.save(jpeg, format="JPEG", quality=90)
    return png.getvalue(), jpeg.getvalue()


def decode(blob: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(blob)) as image:
        return np.asarray(image.convert("RGB"))


def best_time(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def skimage_bands(x: np.ndarray, y: np.ndarray) -> list[float]:
    return [
        float(
            structural_similarity(
                x[:, :, c],
                y[:, :, c],
                gaussian_weights=True,
                sigma=1.5,
                use_sample_covariance=False,
                data_range=DATA_RANGE,
            )
        )
        for c in range(x.shape[2])
    ]


def fft_bands(x: np.ndarray, y: np.ndarray) -> list[float]:
    """Textbook SSIM: five Gaussian-filtered quantities by FFT convolution, 'valid' mode."""
    offsets = np.arange(-5, 6, dtype=np.float64)
    g = np.exp(-0.5 * (offsets / 1.5) ** 2)
    g /= g.sum()
    window = np.outer(g, g)
    C1, C2 = (0.01 * DATA_RANGE) ** 2, (0.03 * DATA_RANGE) ** 2
    scores = []
    for c in range(x.shape[2]):
        a, b = x[:, :, c].astype(np.float64), y[:, :, c].astype(np.float64)
        mu1, mu2 = fftconvolve(a, window, mode="valid"), fftconvolve(b, window, mode="valid")
        sigma1_sq = fftconvolve(a * a, window, mode="valid") - mu1 * mu1
        sigma2_sq = fftconvolve(b * b, window, mode="valid") - mu2 * mu2
        sigma12 = fftconvolve(a * b, window, mode="valid") - mu1 * mu2
        ssim_map = ((2 * mu1 * mu2 + C1) * (2 * sigma12 + C2)) / (
            (mu1 * mu1 + mu2 * mu2 + C1) * (sigma1_sq + sigma2_sq + C2)
        )
        scores.append(float(ssim_map.mean()))
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--size", type=parse_size, default=(4000, 3000), help="WIDTHxHEIGHT")
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="fetcher threads (default: CPUs)")
    args = parser.parse_args(argv)
    repeat = max(1, args.repeat)

    png, jpeg = build_pair(args.size)
    t_decode, (x, y) = best_time(lambda: (decode(png), decode(jpeg)), repeat)
    t_fetcher, (score, _) = best_time(
        lambda: similarity(x, y, data_range=DATA_RANGE, threads=args.threads), repeat
    )
    t_compare, verdict = best_time(lambda: compare(png, jpeg, threads=args.threads), repeat)
    t_skimage, reference = best_time(lambda: skimage_bands(x, y), repeat)
    t_fft, fft_scores = best_time(lambda: fft_bands(x, y), repeat)

    ours = [band.ssim for band in score.bands]
    diff = max(abs(a - b) for a, b in zip(ours, reference, strict=True))
    fft_diff = max(abs(a - b) for a, b in zip(fft_scores, reference, strict=True))
    width, height = args.size
    print(f"image {width}x{height} RGB, JPEG q=90 re-encode; best of {repeat}")
    print(f"  fetcher similarity (SSIM+NRMSE+local, 3 bands): {t_fetcher:8.3f} s")
    print(f"  skimage SSIM, 3 bands summed:                   {t_skimage:8.3f} s")
    print(f"  scipy fftconvolve SSIM, 3 bands summed:         {t_fft:8.3f} s")
    print(f"  Pillow decode PNG + JPEG:                       {t_decode:8.3f} s")
    print(
        f"  fetcher compare() from the two byte strings:    {t_compare:8.3f} s  ({verdict.reason})"
    )
    print(f"  skimage/fetcher     = {t_skimage / t_fetcher:6.2f}x")
    print(f"  fftconvolve/fetcher = {t_fft / t_fetcher:6.2f}x")
    print(f"  fetcher/decode      = {t_fetcher / t_decode:6.2f}x")
    print(f"  compare()/decode    = {t_compare / t_decode:6.2f}x  (target <= 4x)")
    print(
        "  per-band SSIM fetcher / skimage: "
        + ", ".join(f"{a:.9f}/{b:.9f}" for a, b in zip(ours, reference, strict=True))
    )
    print(f"  max |difference| from skimage: fetcher {diff:.2e}, fftconvolve {fft_diff:.2e}")
    print(
        f"  fetcher nrmse {score.nrmse:.6f}, local_ssim {score.local:.6f}, "
        f"local_shift {score.local_shift:.6f}"
    )
    if diff > TOLERANCE:
        print(
            f"FAIL: fetcher differs from skimage by {diff:.2e} > {TOLERANCE:.0e}", file=sys.stderr
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
