"""Similarity of two decoded images: SSIM, NRMSE-similarity and a worst-tile local score."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "WINDOW",
    "BandScore",
    "Similarity",
    "local_diff_score",
    "local_score",
    "local_shift_score",
    "nrmse_similarity",
    "similarity",
    "ssim",
    "ssim_map",
]

Array = np.ndarray[Any, Any]

#: Side of the Gaussian window (sigma 1.5, truncated at 3.5 sigma: radius 5).
WINDOW: int = 11
SIGMA = 1.5
K1 = 0.01
K2 = 0.03
RADIUS = WINDOW // 2

#: Strips of output rows: about this many elements per working plane, 16 to 32 rows.
#: Measured on a 4000x3000 photo: 16-32 rows are fastest (fewer rows repeat the
#: 10-row overlap too often; more rows spill the planes out of cache); the
#: strip height also bounds how far the per-strip centring has to reach.
_STRIP_ELEMENTS = 100_000
#: Filtered quantities per strip: x, y, x*x + y*y, x*y.
_PLANES = 4
_MIN_STRIP_ROWS = 16
_MAX_STRIP_ROWS = 32
#: Below this many output pixels one thread is faster than handing out strips.
_MIN_PARALLEL_PIXELS = 250_000
#: Rows per chunk when summing squared differences in float64.
_DIFF_CHUNK_ELEMENTS = 262_144


def _gaussian_weights() -> Array:
    """The 11 normalised taps of the 1-D Gaussian (sigma 1.5), as scipy.ndimage builds them."""
    offsets = np.arange(-RADIUS, RADIUS + 1, dtype=np.float64)
    weights = np.exp(-0.5 * (offsets / SIGMA) ** 2)
    weights /= weights.sum()
    return weights


_W64 = _gaussian_weights()
_W32 = _W64.astype(np.float32)


@dataclass(frozen=True)
class BandScore:
    """Scores of one band (R, G, B, alpha or grey).

    Attributes
    ----------
    ssim : float or None
        Mean SSIM over the valid region; ``None`` when a side is below :data:`WINDOW`.
    nrmse : float
        NRMSE-similarity ``1 - RMSE / (max - min)``.
    local : float
        Worst tile mean of the SSIM map, or :func:`local_diff_score` when ``ssim`` is None.
    local_shift : float
        :func:`local_shift_score`: 1 minus the worst tile's mean difference over the span.
    """

    ssim: float | None
    nrmse: float
    local: float
    local_shift: float


@dataclass(frozen=True)
class Similarity:
    """Scores of two images: per band, and the minimum over bands (plain floats only).

    Attributes
    ----------
    bands : tuple of BandScore
        One entry per band, in band order.
    ssim : float or None
        Minimum mean SSIM over bands; ``None`` when the image is smaller than the window.
    nrmse : float
        Minimum NRMSE-similarity over bands.
    local : float
        Minimum local score over bands.
    local_kind : str
        ``"ssim"`` (worst tile of the SSIM map) or ``"diff"`` (worst tile of raw differences).
    worst_band : int
        Index of the band with the minimum local score (lowest index on a tie).
    local_shift : float
        Minimum :func:`local_shift_score` over bands.
    """

    bands: tuple[BandScore, ...]
    ssim: float | None
    nrmse: float
    local: float
    local_kind: str
    worst_band: int
    local_shift: float


def _check_pair(x: Array, y: Array, *, ndim: tuple[int, ...] = (2,)) -> None:
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


def _check_window(x: Array) -> None:
    if min(x.shape[:2]) < WINDOW:
        raise ValueError(
            f"SSIM needs both sides at least {WINDOW} pixels; this image is "
            f"{x.shape[1]}x{x.shape[0]}."
        )


def _check_range(data_range: float) -> None:
    if not (math.isfinite(data_range) and data_range > 0):
        raise ValueError(f"data_range must be a positive number, got {data_range!r}.")


def _is_8_bit(a: Array) -> bool:
    return bool(np.issubdtype(a.dtype, np.integer) and a.dtype.itemsize == 1)


def _tile_starts(n: int, tile: int) -> Array:
    """Start indices of tiles of ``tile`` along a side of ``n``; a last tile narrower than
    ``tile / 2`` is merged into its neighbour; a side shorter than a tile is one tile."""
    if tile < 1:
        raise ValueError(f"tile must be a positive number of pixels, got {tile}.")
    starts = np.arange(0, n, tile, dtype=np.intp)
    if len(starts) > 1 and 2 * (n - starts[-1]) < tile:
        starts = starts[:-1]
    return starts


def _tile_means(sums: Array, row_starts: Array, col_starts: Array, shape: tuple[int, int]) -> Array:
    """Mean per tile from per-tile sums and the tile grid."""
    heights = np.diff(np.append(row_starts, shape[0]))
    widths = np.diff(np.append(col_starts, shape[1]))
    return sums / np.outer(heights, widths)  # type: ignore[no-any-return]


class _Strips:
    """Valid-region SSIM of one band, computed strip by strip of output rows.

    Each strip of ``rows`` output rows reads ``rows + 10`` input rows, centres them
    on ``data_range / 2`` and then on the strip's own level (a whole number, so
    integer pixels stay exact), in float32 for 8-bit pixels and float64 otherwise:
    the squares then carry the local contrast rather than the brightness and keep
    their precision; the means get the centre back. It then filters four
    quantities x, y, x*x + y*y, x*y with the separable Gaussian as shifted-slice
    multiply-adds using the kernel's symmetry (SSIM needs sigma1_sq and sigma2_sq
    only as their sum, so four planes suffice), and evaluates SSIM.
    Per strip it keeps only per-row sums within each column tile (float64), so
    the mean and the tile means come out without a full-size map.
    """

    def __init__(
        self,
        x: Array,
        y: Array,
        *,
        data_range: float,
        tile: int,
        out_map: Array | None,
        combine_min: bool,
    ) -> None:
        self.x, self.y = x, y
        self.out_map, self.combine_min = out_map, combine_min
        self.centre = float(data_range) / 2.0
        #: 8-bit pixels: float32 holds their centred squares exactly and is twice as fast;
        #: deeper or float pixels need float64 to agree with the float64 reference to 1e-6.
        self.work_dtype = np.float32 if _is_8_bit(x) and _is_8_bit(y) else np.float64
        self.C1 = (K1 * float(data_range)) ** 2
        self.C2 = (K2 * float(data_range)) ** 2
        self.height = x.shape[0] - 2 * RADIUS
        self.width = x.shape[1] - 2 * RADIUS
        self.rows = int(
            np.clip(_STRIP_ELEMENTS // x.shape[1] - 2 * RADIUS, _MIN_STRIP_ROWS, _MAX_STRIP_ROWS)
        )
        self.rows = min(self.rows, self.height)
        self.col_starts = _tile_starts(self.width, tile)
        self.row_starts = _tile_starts(self.height, tile)
        #: per output row, the sum of SSIM over each column tile
        self.row_sums = np.zeros((self.height, len(self.col_starts)), dtype=np.float64)
        #: per strip (indexed by its first row): raw sum of squared differences and extremes
        self.sum_sq = np.zeros(self.height, dtype=np.float64)
        self.low = np.full(self.height, np.inf, dtype=np.float64)
        self.high = np.full(self.height, -np.inf, dtype=np.float64)

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
        self._raw_stats(r0, r1, q)  # uses q[2] as scratch before it holds x*x
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
        self.row_sums[r0:r1] = np.add.reduceat(ssim_rows, self.col_starts, axis=1, dtype=np.float64)
        if self.out_map is not None:
            if self.combine_min:
                np.minimum(self.out_map[r0:r1], ssim_rows, out=self.out_map[r0:r1])
            else:
                self.out_map[r0:r1] = ssim_rows

    def _raw_stats(self, r0: int, r1: int, q: Array) -> None:
        """Squared differences and extremes of the input rows this strip owns."""
        owned = r1 - r0 + (2 * RADIUS if r1 == self.height else 0)
        x_rows, y_rows, d = q[0, :owned], q[1, :owned], q[2, :owned]
        np.subtract(x_rows, y_rows, out=d)  # exact for integer pixels
        d *= d
        self.sum_sq[r0] = d.sum(dtype=np.float64)
        self.low[r0] = min(x_rows.min(), y_rows.min())
        self.high[r0] = max(x_rows.max(), y_rows.max())

    def nrmse(self) -> float:
        span = float(self.high.max()) - float(self.low.min())
        return _nrmse_from(float(self.sum_sq.sum()), self.x.size, span)

    def mean(self) -> float:
        return float(self.row_sums.sum() / (self.height * self.width))

    def worst_tile(self) -> float:
        sums = np.add.reduceat(self.row_sums, self.row_starts, axis=0)
        return float(
            _tile_means(sums, self.row_starts, self.col_starts, (self.height, self.width)).min()
        )


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


def ssim_map(x: Array, y: Array, *, data_range: float, threads: int = 1) -> Array:
    """SSIM map of two single-band images over the valid region (Wang et al. 2004).

    .. math::

        SSIM(x, y) = \\frac{(2\\mu_1\\mu_2 + C_1)(2\\sigma_{12} + C_2)}
                          {(\\mu_1^2 + \\mu_2^2 + C_1)(\\sigma_1^2 + \\sigma_2^2 + C_2)}

    with the local statistics ``mu1, mu2, sigma1_sq, sigma2_sq, sigma12`` weighted by
    an 11x11 Gaussian window (sigma 1.5), ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``.

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
        float32 array of shape ``(H - 10, W - 10)``: the SSIM at every window
        position lying fully inside the image.

    Raises
    ------
    ValueError
        Shapes differ, the arrays are not 2-D, a side is below 11, or ``data_range <= 0``.

    References
    ----------
    Z. Wang, A. C. Bovik, H. R. Sheikh and E. P. Simoncelli, "Image quality
    assessment: from error visibility to structural similarity", IEEE Transactions
    on Image Processing 13(4), 600-612, 2004.
    """
    _check_pair(x, y)
    _check_window(x)
    _check_range(data_range)
    out = np.empty((x.shape[0] - 2 * RADIUS, x.shape[1] - 2 * RADIUS), dtype=np.float32)
    _run_strips(
        _Strips(x, y, data_range=data_range, tile=max(out.shape), out_map=out, combine_min=False),
        threads,
    )
    return out


def ssim(x: Array, y: Array, *, data_range: float, threads: int = 1) -> float:
    """Mean SSIM of two single-band images over the valid region (Wang et al. 2004).

    Equals ``skimage.metrics.structural_similarity(x, y, gaussian_weights=True,
    sigma=1.5, use_sample_covariance=False, data_range=data_range)``; see
    :func:`ssim_map` for the formula.

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
    _check_pair(x, y)
    _check_window(x)
    _check_range(data_range)
    strips = _Strips(
        x, y, data_range=data_range, tile=max(x.shape), out_map=None, combine_min=False
    )
    _run_strips(strips, threads)
    return strips.mean()


def _sum_sq_diff(x: Array, y: Array) -> float:
    """Sum of squared differences in float64, a bounded number of rows at a time.

    Pixels of at most 16-bit integers are differenced in float32 (exact below 2**24,
    and much faster to convert than to float64), then squared and summed in float64.
    """
    x2 = x.reshape(x.shape[0], -1)
    y2 = y.reshape(y.shape[0], -1)
    exact32 = all(np.issubdtype(a.dtype, np.integer) and a.dtype.itemsize <= 2 for a in (x, y))
    step = max(1, _DIFF_CHUNK_ELEMENTS // x2.shape[1])
    narrow = np.empty((step, x2.shape[1]), dtype=np.float32 if exact32 else np.float64)
    wide = np.empty((step, x2.shape[1]), dtype=np.float64)
    total = 0.0
    for r0 in range(0, x2.shape[0], step):
        n = min(step, x2.shape[0] - r0)
        d, d64 = narrow[:n], wide[:n]
        d[...] = x2[r0 : r0 + n]
        d -= y2[r0 : r0 + n]
        d64[...] = d
        flat = d64.ravel()
        total += float(np.dot(flat, flat))
    return total


def _value_span(x: Array, y: Array) -> float:
    """max - min over both images, in float64 (no integer overflow)."""
    high = max(float(x.max()), float(y.max()))
    low = min(float(x.min()), float(y.min()))
    return high - low


def _nrmse_from(sum_sq: float, count: int, span: float) -> float:
    if span == 0.0:
        return 1.0  # both images constant at the same value: equal
    return 1.0 - math.sqrt(sum_sq / count) / span


def nrmse_similarity(x: Array, y: Array) -> float:
    """NRMSE-similarity ``1 - RMSE(x, y) / (max - min)``, max and min over both images.

    Parameters
    ----------
    x, y : ndarray
        Two arrays of the same shape (one band), any integer or floating dtype.

    Returns
    -------
    float
        1.0 for equal images (also when both are constant), down to 0.0 when every
        pixel differs by the full span; lower still is impossible.

    Raises
    ------
    ValueError
        Shapes differ or the arrays are empty.
    """
    _check_pair(x, y, ndim=(1, 2, 3))
    return _nrmse_from(_sum_sq_diff(x, y), x.size, _value_span(x, y))


def local_score(ssim_map: Array, *, tile: int) -> float:
    """Worst tile mean of an SSIM map, so a small edit is not averaged away.

    The map is cut into a grid of ``tile`` x ``tile`` tiles covering it entirely; a
    remainder narrower than ``tile / 2`` at the bottom or right edge is merged into
    its neighbour, and a map smaller than one tile is a single tile.

    Parameters
    ----------
    ssim_map : ndarray
        2-D SSIM map, as returned by :func:`ssim_map`.
    tile : int
        Tile side in pixels.

    Returns
    -------
    float
        The minimum over tiles of the tile's mean SSIM.

    Raises
    ------
    ValueError
        The map is not 2-D or empty, or ``tile < 1``.
    """
    if ssim_map.ndim != 2 or ssim_map.size == 0:
        raise ValueError(f"Expected a non-empty 2-D map, got shape {ssim_map.shape}.")
    row_starts = _tile_starts(ssim_map.shape[0], tile)
    col_starts = _tile_starts(ssim_map.shape[1], tile)
    sums = np.add.reduceat(
        np.add.reduceat(ssim_map, col_starts, axis=1, dtype=np.float64), row_starts, axis=0
    )
    return float(_tile_means(sums, row_starts, col_starts, ssim_map.shape).min())


def local_diff_score(x: Array, y: Array, *, tile: int) -> float:
    """Worst-tile raw-difference score, for images too small for SSIM.

    ``1 - max over tiles of (tile RMSE / (max - min))``, max and min over both whole
    images, tiles as in :func:`local_score`; 1.0 when both images are the same constant.

    Parameters
    ----------
    x, y : ndarray
        Two 2-D arrays of the same shape, any integer or floating dtype.
    tile : int
        Tile side in pixels.

    Returns
    -------
    float
        Between 0.0 and 1.0; 1.0 for equal images.

    Raises
    ------
    ValueError
        Shapes differ, the arrays are not 2-D or empty, or ``tile < 1``.
    """
    _check_pair(x, y)
    span = _value_span(x, y)
    if span == 0.0:
        return 1.0
    d = np.subtract(x, y, dtype=np.float64)
    d *= d
    row_starts = _tile_starts(d.shape[0], tile)
    col_starts = _tile_starts(d.shape[1], tile)
    sums = np.add.reduceat(np.add.reduceat(d, col_starts, axis=1), row_starts, axis=0)
    mse = _tile_means(sums, row_starts, col_starts, (d.shape[0], d.shape[1]))
    return 1.0 - float(np.sqrt(mse.max())) / span


def _block_sums(a: Array, half: int, acc: type[np.generic]) -> Array:
    """Sums over ``half`` x ``half`` blocks (the last row and column of blocks may be short).

    Rows are summed first: adding whole rows together is vectorised and several times
    faster than summing short runs along a row.
    """
    h, w = a.shape
    h0 = (h // half) * half
    rows = a[:h0].reshape(h // half, half, w).sum(axis=1, dtype=acc)
    if h0 < h:
        rows = np.concatenate([rows, a[h0:].sum(axis=0, dtype=acc)[None]], axis=0)
    w0 = (w // half) * half
    blocks: Array = rows[:, :w0].reshape(rows.shape[0], w // half, half).sum(axis=2, dtype=acc)
    if w0 < w:
        blocks = np.concatenate([blocks, rows[:, w0:].sum(axis=1, dtype=acc)[:, None]], axis=1)
    return blocks


def local_shift_score(x: Array, y: Array, *, tile: int) -> float:
    """Worst-tile mean-difference score: catches a local edit that SSIM pooling would not.

    ``1 - max over tiles of |mean(x - y)| / (max - min)``, max and min over both
    whole images, over ``tile`` x ``tile`` windows placed every ``tile // 2``
    pixels (so an edit is never split between two tiles and halved); a window at
    the bottom or right edge may be shorter. 1.0 when both images are the same
    constant.

    Re-encoding (JPEG, WebP) moves pixels up and down around their value but
    keeps each region's mean almost exactly (the DC coefficient of every block is
    quantised finely), so the worst tile's mean difference stays within about
    1 % of the span even at quality 85; a box, a watermark, an erased word or a
    colour shift moves the mean of the tiles it covers by several per cent. The
    worst tile of the SSIM map cannot make this distinction: SSIM rates a JPEG
    that smooths away fine noise in a textured tile as low as a painted box (see
    ``benchmarks/calibrate.py``).

    Parameters
    ----------
    x, y : ndarray
        Two 2-D arrays of the same shape, any integer or floating dtype.
    tile : int
        Window side in pixels (at least 2).

    Returns
    -------
    float
        Between 0.0 and 1.0; 1.0 for equal images.

    Raises
    ------
    ValueError
        Shapes differ, the arrays are not 2-D or empty, or ``tile < 2``.
    """
    _check_pair(x, y)
    if tile < 2:
        raise ValueError(f"tile must be at least 2 pixels, got {tile}.")
    span = _value_span(x, y)
    if span == 0.0:
        return 1.0
    integer = all(np.issubdtype(a.dtype, np.integer) for a in (x, y))
    half = tile // 2
    # Block sums of each image, exact in integers (int32 holds a block of 16-bit
    # values for blocks up to 128 px), then their difference: no full-size temporary.
    acc = (np.int32 if half <= 128 else np.int64) if integer else np.float64
    blocks = _block_sums(x, half, acc) - _block_sums(y, half, acc)
    h, w = x.shape
    heights = np.full(blocks.shape[0], half)
    heights[-1] = h - (blocks.shape[0] - 1) * half
    widths = np.full(blocks.shape[1], half)
    widths[-1] = w - (blocks.shape[1] - 1) * half
    counts = np.outer(heights, widths)

    def pairs(a: Array) -> Array:
        # windows of 2 x 2 neighbouring blocks; a single block on an axis stays alone
        if a.shape[0] > 1:
            a = a[:-1] + a[1:]
        if a.shape[1] > 1:
            a = a[:, :-1] + a[:, 1:]
        return a

    means = pairs(blocks.astype(np.float64)) / pairs(counts.astype(np.float64))
    return 1.0 - float(np.abs(means).max()) / span


def similarity(
    x: Array,
    y: Array,
    *,
    data_range: float,
    tile: int = 64,
    threads: int | None = None,
    want_map: bool = False,
) -> tuple[Similarity, Array | None]:
    """Scores of two images per band and the minimum over bands.

    Per band: mean SSIM over the valid region (:func:`ssim`), NRMSE-similarity
    (:func:`nrmse_similarity`) and the local score (:func:`local_score` of the SSIM
    map, or :func:`local_diff_score` when a side is below :data:`WINDOW` and there is
    no SSIM). The SSIM map is never held in full unless ``want_map`` asks for it.

    Parameters
    ----------
    x, y : ndarray
        ``(H, W)`` or ``(H, W, C)`` arrays of the same shape; uint8, uint16 or float.
    data_range : float
        Dynamic range of the pixel values (255 for 8-bit, 65535 for 16-bit).
    tile : int
        Tile side in pixels for the local score.
    threads : int or None
        Threads working on strips of rows; None means one per CPU.
    want_map : bool
        Also return the per-pixel minimum over bands of the SSIM map.

    Returns
    -------
    Similarity
        Per-band scores and their minima (plain Python floats).
    ndarray or None
        float32 ``(H - 10, W - 10)`` map when ``want_map`` and the image has SSIM, else None.

    Raises
    ------
    ValueError
        Shapes differ, the arrays are not 2-D or 3-D or are empty, ``data_range <= 0``
        or ``tile < 1``.
    """
    _check_pair(x, y, ndim=(2, 3))
    _check_range(data_range)
    if tile < 1:
        raise ValueError(f"tile must be a positive number of pixels, got {tile}.")
    if threads is None:
        threads = os.cpu_count() or 1
    x3 = x[:, :, np.newaxis] if x.ndim == 2 else x
    y3 = y[:, :, np.newaxis] if y.ndim == 2 else y
    has_ssim = min(x.shape[:2]) >= WINDOW
    out_map: Array | None = None
    if want_map and has_ssim:
        out_map = np.empty((x.shape[0] - 2 * RADIUS, x.shape[1] - 2 * RADIUS), dtype=np.float32)
    bands: list[BandScore] = []
    for band in range(x3.shape[2]):
        xb, yb = x3[:, :, band], y3[:, :, band]
        if has_ssim:
            strips = _Strips(
                xb, yb, data_range=data_range, tile=tile, out_map=out_map, combine_min=band > 0
            )
            _run_strips(strips, threads)
            bands.append(
                BandScore(
                    ssim=strips.mean(),
                    nrmse=strips.nrmse(),
                    local=strips.worst_tile(),
                    local_shift=local_shift_score(xb, yb, tile=tile),
                )
            )
        else:
            bands.append(
                BandScore(
                    ssim=None,
                    nrmse=nrmse_similarity(xb, yb),
                    local=local_diff_score(xb, yb, tile=tile),
                    local_shift=local_shift_score(xb, yb, tile=tile),
                )
            )
    locals_ = [b.local for b in bands]
    ssims = [b.ssim for b in bands if b.ssim is not None]
    result = Similarity(
        bands=tuple(bands),
        ssim=min(ssims) if ssims else None,
        nrmse=min(b.nrmse for b in bands),
        local=min(locals_),
        local_kind="ssim" if has_ssim else "diff",
        worst_band=locals_.index(min(locals_)),
        local_shift=min(b.local_shift for b in bands),
    )
    return result, out_map
