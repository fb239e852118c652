"""The SSIM kernel: exact Gaussian-window SSIM of two bands, computed in strips of rows.

.. math::

    SSIM(x, y) = \\frac{(2\\mu_1\\mu_2 + C_1)(2\\sigma_{12} + C_2)}
                      {(\\mu_1^2 + \\mu_2^2 + C_1)(\\sigma_1^2 + \\sigma_2^2 + C_2)}

with the local statistics ``mu1, mu2, sigma1_sq, sigma2_sq, sigma12`` weighted by an
11x11 Gaussian window (sigma 1.5), ``C1 = (K1 L)^2``, ``C2 = (K2 L)^2``, K = (0.01, 0.03),
``L`` the data range, and the mean taken over the valid region (every window position
lying fully inside the image). This equals ``skimage.metrics.structural_similarity(x, y,
gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=L)`` within
1e-6 (``tests/test_ssim.py``).

This module computes SSIM at whatever scale it is given; :mod:`fetcher.similarity`
decides the scale (Wang's reduction) and combines the scores.

References
----------
Z. Wang, A. C. Bovik, H. R. Sheikh and E. P. Simoncelli, "Image quality assessment:
from error visibility to structural similarity", IEEE Transactions on Image Processing
13(4), 600-612, 2004.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["K1", "K2", "SIGMA", "WINDOW", "mean_ssim", "ssim_map"]

Array = np.ndarray[Any, Any]

#: Side of the Gaussian window (sigma 1.5, truncated at 3.5 sigma: radius 5).
WINDOW: int = 11
SIGMA = 1.5
K1 = 0.01
K2 = 0.03
RADIUS = WINDOW // 2

#: Strips of output rows: about this many elements per working plane, 16 to 64 rows.
#: Measured: 16-32 rows are fastest at 4000 px wide, 48-64 at 320 px (fewer rows repeat the
#: 10-row overlap too often; more rows spill the planes out of cache).
_STRIP_ELEMENTS = 100_000
#: Filtered quantities per strip: x, y, x*x + y*y, x*y.
_PLANES = 4
_MIN_STRIP_ROWS = 16
_MAX_STRIP_ROWS = 64
#: Below this many output pixels one thread is faster than handing out strips.
_MIN_PARALLEL_PIXELS = 250_000


def _gaussian_weights() -> Array:
    """The 11 normalised taps of the 1-D Gaussian (sigma 1.5), as scipy.ndimage builds them."""
    offsets = np.arange(-RADIUS, RADIUS + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (offsets / SIGMA) ** 2)
    weights /= weights.sum()
    return weights


_W64 = _gaussian_weights()
_W32 = _W64.astype(np.float32)


def check_pair(x: Array, y: Array, *, ndim: tuple[int, ...] = (2,)) -> None:
    """Raise ValueError unless ``x`` and ``y`` are non-empty numeric arrays of one shape."""
    if x.shape != y.shape:
        raise ValueError(f"The images have different shapes: {x.shape} and {y.shape}.")
    if x.ndim not in ndim:
        raise ValueError(
            f"Expected an array of {' or '.join(map(str, ndim))} dimensions, got shape {x.shape}."
        )
    if x.size == 0:
        raise ValueError(f"The images are empty: shape {x.shape}.")
    for arr in (x, y):
        if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
            raise ValueError(f"Expected integer or floating-point pixels, got {arr.dtype}.")


def check_range(data_range: float) -> None:
    """Raise ValueError unless ``data_range`` is a positive finite number."""
    if not (math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a positive number, got {data_range!r}.")


def _check_window(x: Array) -> None:
    if min(x.shape[:2]) < WINDOW:
        raise ValueError(
            f"SSIM needs both sides at least {WINDOW} pixels; this image is "
            f"{x.shape[1]}x{x.shape[0]}."
        )


def _float32_is_enough(x: Array, y: Array, data_range: float) -> bool:
    """float32 work keeps 1e-6 for data of at most 8 bits' range (integers or their means).

    The strips centre every value on the strip's level, so the squares carry the local
    contrast (at most 255**2, exact or nearly so in float32); deeper data needs float64.
    """
    small = data_range <= 255
    return small and all(
        a.dtype.itemsize <= 4 or np.issubdtype(a.dtype, np.integer) for a in (x, y)
    )


class _Strips:
    """Valid-region SSIM of one band, computed strip by strip of output rows.

    Each strip of ``rows`` output rows reads ``rows + 10`` input rows, centres them
    on ``data_range / 2`` and then on the strip's own level (a whole number), in
    float32 for data of 8 bits' range and float64 otherwise: the squares then carry
    the local contrast rather than the brightness and keep their precision; the means
    get the centre back. It filters four quantities x, y, x*x + y*y, x*y with the
    separable Gaussian as shifted-slice multiply-adds using the kernel's symmetry (SSIM
    needs sigma1_sq and sigma2_sq only as their sum, so four planes suffice), and
    evaluates SSIM. Per strip it keeps only per-row sums (float64), so the mean comes
    out without a full-size map.
    """

    def __init__(self, x: Array, y: Array, *, data_range: float, out_map: Array | None) -> None:
        self.x, self.y = x, y
        self.out_map = out_map
        self.centre = float(data_range) / 2.0
        self.work_dtype = np.float32 if _float32_is_enough(x, y, data_range) else np.float64
        self.C1 = (K1 * float(data_range)) ** 2
        self.C2 = (K2 * float(data_range)) ** 2
        self.height = x.shape[0] - 2 * RADIUS
        self.width = x.shape[1] - 2 * RADIUS
        rows = int(
            np.clip(_STRIP_ELEMENTS // x.shape[1] - 2 * RADIUS, _MIN_STRIP_ROWS, _MAX_STRIP_ROWS)
        )
        self.rows = min(rows, self.height)
        #: per output row, the sum of SSIM over the row
        self.row_sums = np.zeros(self.height, dtype=np.float64)

    def strip_starts(self) -> list[int]:
        return list(range(0, self.height, self.rows))

    def run(self, starts: list[int]) -> None:
        """Process the strips beginning at ``starts`` with this thread's own buffers."""
        size = _PLANES * (self.rows + 2 * RADIUS) * self.x.shape[1]
        buffers = [np.empty(size, dtype=self.work_dtype) for _ in range(4)]
        for r0 in starts:
            self._strip(r0, min(r0 + self.rows, self.height), *buffers)

    def _strip(self, r0: int, r1: int, *buffers: Array) -> None:
        h, full_width, w = r1 - r0, self.x.shape[1], self.width
        # Contiguous views on the front of the flat buffers, whatever the strip height.
        q, v, s, f = (
            buf[: _PLANES * rows * full_width].reshape(_PLANES, rows, full_width)
            for buf, rows in zip(buffers, (h + 2 * RADIUS, h, h, h), strict=True)
        )
        np.subtract(
            self.x[r0 : r1 + 2 * RADIUS], self.centre, out=q[0], dtype=q.dtype, casting="unsafe"
        )
        np.subtract(
            self.y[r0 : r1 + 2 * RADIUS], self.centre, out=q[1], dtype=q.dtype, casting="unsafe"
        )
        # Re-centre on this strip's level (a whole number, so integer pixels stay exact):
        # the squares then carry the local contrast, not the brightness.
        shift = round((float(q[0].sum()) + float(q[1].sum())) / (2 * q[0].size))
        if shift:
            q[:2] -= shift
        centre = self.centre + shift
        np.multiply(q[0], q[0], out=q[2])
        np.multiply(q[1], q[1], out=q[3])
        q[2] += q[3]  # x*x + y*y
        np.multiply(q[0], q[1], out=q[3])  # x*y
        weights = _W32 if q.dtype == np.float32 else _W64
        # Vertical pass on the stacked planes.
        _gaussian_taps(lambda k: q[:, k : k + h], v, s, weights)
        # Horizontal pass along the flattened planes: one long contiguous run per
        # operation, much faster than row by row. The last 10 outputs of each row
        # mix in the next row; they are never read as results.
        flat = v.reshape(-1)
        n = flat.size - 2 * RADIUS
        _gaussian_taps(lambda k: flat[k : k + n], f.reshape(-1)[:n], s.reshape(-1)[:n], weights)
        # SSIM over the same flat runs; every value read was written by the filter.
        length = h * full_width - 2 * RADIUS
        # Centred local means, then raw second moments E[x^2 + y^2] and E[x y].
        mu1, mu2, sigma_sq_sum, sigma12 = (plane.reshape(-1)[:length] for plane in f)
        mu1_mu2, diff_sq = (plane.reshape(-1)[:length] for plane in s[:2])
        np.multiply(mu1, mu2, out=mu1_mu2)
        sigma12 -= mu1_mu2  # sigma12 = E[x y] - mu1 mu2 (unchanged by centring)
        np.subtract(mu1, mu2, out=diff_sq)
        diff_sq *= diff_sq  # (mu1 - mu2)^2, unchanged by centring
        # sigma1_sq + sigma2_sq = E[x^2 + y^2] - (mu1^2 + mu2^2)
        #                       = E[x^2 + y^2] - (mu1 - mu2)^2 - 2 mu1 mu2
        sigma_sq_sum -= diff_sq
        mu1_mu2 *= 2.0
        sigma_sq_sum -= mu1_mu2
        mu1 += centre
        mu2 += centre
        numerator = mu1  # A1 = 2 mu1 mu2 + C1 (true, uncentred means)
        numerator *= mu2
        numerator *= 2.0
        numerator += self.C1
        denominator = diff_sq  # B1 = mu1^2 + mu2^2 + C1 = (mu1 - mu2)^2 + A1
        denominator += numerator
        sigma12 *= 2.0  # A2 = 2 sigma12 + C2
        sigma12 += self.C2
        sigma_sq_sum += self.C2  # B2 = sigma1^2 + sigma2^2 + C2
        numerator *= sigma12
        denominator *= sigma_sq_sum
        numerator /= denominator
        ssim_rows = f[0][:, :w]  # the SSIM values, valid columns only
        self.row_sums[r0:r1] = ssim_rows.sum(axis=1, dtype=np.float64)
        if self.out_map is not None:
            self.out_map[r0:r1] = ssim_rows

    def mean(self) -> float:
        return float(self.row_sums.sum() / (self.height * self.width))


def _gaussian_taps(
    shifted: Callable[[int], Array], out: Array, scratch: Array, weights: Array
) -> None:
    """Valid 11-tap symmetric filter: ``out = w5*a[5] + sum_k w_k*(a[k] + a[10-k])``.

    ``shifted(k)`` is the input view starting at tap ``k``, shaped like ``out``.
    """
    np.multiply(shifted(RADIUS), weights[RADIUS], out=out)
    for k in range(RADIUS):
        np.add(shifted(k), shifted(WINDOW - 1 - k), out=scratch)
        scratch *= weights[k]
        out += scratch


def _run_strips(strips: _Strips, threads: int) -> None:
    starts = strips.strip_starts()
    threads = max(1, min(threads, len(starts)))
    if threads == 1 or strips.height * strips.width < _MIN_PARALLEL_PIXELS:
        strips.run(starts)
        return
    # Contiguous runs of strips per thread: each writes only its own rows.
    chunks = [
        starts[i * len(starts) // threads : (i + 1) * len(starts) // threads]
        for i in range(threads)
    ]
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(strips.run, chunks))


def _checked(x: Array, y: Array, data_range: float) -> None:
    check_pair(x, y)
    _check_window(x)
    check_range(data_range)


def ssim_map(x: Array, y: Array, *, data_range: float, threads: int = 1) -> Array:
    """SSIM map of two single-band images over the valid region (Wang et al. 2004).

    See the module docstring for the formula.

    Parameters
    ----------
    x, y : ndarray
        Two 2-D arrays of the same shape, any integer or floating dtype, both sides >= 11.
    data_range : float
        ``L``, the dynamic range of the pixel values (255 for 8-bit, 65535 for 16-bit).
    threads : int
        Number of threads working on strips of rows.

    Returns
    -------
    ndarray
        float32 (float64 for data of more than 8 bits' range) array of shape
        ``(H - 10, W - 10)``: the SSIM at every window position lying fully inside.

    Raises
    ------
    ValueError
        Shapes differ, the arrays are not 2-D, a side is below 11, or ``data_range <= 0``.
    """
    _checked(x, y, data_range)
    dtype = np.float32 if _float32_is_enough(x, y, data_range) else np.float64
    out = np.empty((x.shape[0] - 2 * RADIUS, x.shape[1] - 2 * RADIUS), dtype=dtype)
    _run_strips(_Strips(x, y, data_range=data_range, out_map=out), threads)
    return out


def mean_ssim(x: Array, y: Array, *, data_range: float, threads: int = 1) -> float:
    """Mean SSIM of two single-band images over the valid region (Wang et al. 2004).

    Exact at the scale it is given (no reduction): equals
    ``skimage.metrics.structural_similarity(x, y, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=data_range)`` within 1e-6.

    Parameters
    ----------
    x, y : ndarray
        Two 2-D arrays of the same shape, any integer or floating dtype, both sides >= 11.
    data_range : float
        Dynamic range of the pixel values.
    threads : int
        Number of threads working on strips of rows.

    Returns
    -------
    float
        The mean of the SSIM map, accumulated in float64; 1.0 for identical images.

    Raises
    ------
    ValueError
        Shapes differ, the arrays are not 2-D, a side is below 11, or ``data_range <= 0``.
    """
    _checked(x, y, data_range)
    strips = _Strips(x, y, data_range=data_range, out_map=None)
    _run_strips(strips, threads)
    return strips.mean()
