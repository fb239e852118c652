"""Similarity scores of two decoded images: SSIM at Wang's scale, NRMSE, local edit and structure.

Every score is computed per band and the **minimum over bands** is kept; a higher score
means more alike, 1.0 is identical. The bands are those of JPEG's own colour space,
full-range BT.601 Y'CbCr (luma ``Y``, chroma ``Cb`` and ``Cr``; grey images have ``Y``
only), plus ``A`` for alpha; colour is premultiplied by alpha, so what is fully
transparent in both images does not count. Luma and chroma separate the two kinds of
error a re-encode makes (luma noise; chroma smeared by 4:2:0 subsampling) from each
other and from an edit.

**ssim** -- SSIM as Wang's ``ssim.m`` (2009) computes it: the image is first reduced by
``f = max(1, round(min(H, W) / 256))`` (an ``f x f`` box average, then every ``f``-th
pixel), then the Gaussian-window SSIM of :mod:`fetcher.ssim` is taken on the reduced
bands. At that scale a viewer's impression of the whole picture is measured and
compression noise is averaged away; it costs about 1/f**2 of full resolution.

**nrmse** -- ``1 - RMSE / max(max - min, L / 4)`` on the same reduced bands, with
``max`` and ``min`` over both images. The floor of a quarter of the data range ``L``
keeps a low-contrast band (a picture spanning 20 levels) from turning one level of
compression noise into a 5 % error.

**local_edit** -- the local-edit score, at full resolution (see below for the halving),
per band::

    E(x, y) = max over w x w windows W of  mean_{p in W} | (G_sigma * (x - y))(p) |
    local_edit = 1 - E / L

``G_sigma`` is a Gaussian blur of the signed difference, sigma 1.5 px for luma and
alpha, 6 px for chroma; the window is ``w = 8`` px, placed at every pixel (a sliding
window, never a fixed grid that could cut an edit in half). Both were chosen on the
calibrate half of ``tests/pairs.py`` (``benchmarks/calibrate.py``): an 8 px window is
filled by the strokes of a digit swapped at 16-24 px, where 16 px dilutes them to the
level of JPEG's ringing around the text of a re-encoded screenshot. Compression noise is
scattered and zero-mean: the blur averages it away before the absolute value is taken.
A real edit -- a digit swapped, a sticker, a line, a moved object -- is dense and local:
its difference survives the blur, and the window gathers it wherever it is. Unlike a
tile's signed mean it does not cancel when one glyph replaces another with the same
ink (the absolute value is taken after a blur narrower than a stroke), and unlike the
worst SSIM tile it does not punish fine texture that compression smoothed away (the
blur removes exactly those frequencies). Chroma gets the wider blur because 4:2:0
subsampling smears colour by a pixel or two at every sharp edge.

**local_structure** -- the worst window's agreement of local structure, on luma at half
resolution::

    cs(W) = (2 cov(x, y) + C) / (var(x) + var(y) + C)     over every 4 x 4 window W
    local_structure = max(0, min over W of cs(W)),   C = (0.05 L)^2

``cs`` is SSIM's contrast-structure term, with a stabiliser 25 times SSIM's own
(``(0.01 L)^2`` there): where both windows are flat or carry only noise of a few levels,
``C`` dominates and the term stays near 1; where either holds a real edge, it measures
whether the two hold the *same* edge. It sees what the local edit's absolute threshold
cannot: one digit swapped at 14-16 px with moderate contrast (dark text 60-130 levels from
a photograph behind it), whose blurred difference is no larger than JPEG's ringing around
the text of a re-encoded screenshot, but whose strokes no longer line up, and faint text
(15-20 levels) added to a flat region. A re-encode keeps every edge in place, so its
windows agree; at half resolution grain and blocking average away first. Chosen on the
labelled set of ``tests/pairs.py`` and an adversarial set of 336 more pairs (a window of
4 against 3 to 5, Gaussian windows, quarter resolution and stabilisers of 0.03 to 0.12 L).

The local edit is taken at half resolution when Wang's ``f`` is at least 2 (the shorter
side at least 384 px), with sigma and window halved: the blur passes less than 6 % of
any detail finer than the half-resolution grid (``exp(-2 pi^2 sigma^2 / 16)`` at its
Nyquist frequency), so the score barely moves, and it costs a quarter. For two JPEGs
the halving is libjpeg's DCT scaling at decode time (:func:`fetcher.decode.decode`);
otherwise a 2 x 2 box average.

References
----------
Z. Wang, A. C. Bovik, H. R. Sheikh and E. P. Simoncelli, "Image quality assessment: from
error visibility to structural similarity", IEEE Trans. Image Processing 13(4), 2004,
and the authors' reference implementation ``ssim.m`` (2009), for the reduction.
V. Agafonkin, pixelmatch (mapbox), its ``windowSize`` option (count what differs inside a
sliding window, not over the whole image), for the idea of the local window.
ITU-T T.871 (JFIF), the Y'CbCr transform.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .ssim import WINDOW, check_pair, check_range, ssim_map
from .ssim import mean_ssim as ssim

__all__ = [
    "CHROMA_SIGMA",
    "EDIT_WINDOW",
    "LUMA_SIGMA",
    "STRUCTURE_K",
    "STRUCTURE_WINDOW",
    "WINDOW",
    "BandScore",
    "Similarity",
    "edit_map",
    "edit_maps",
    "fields_to_map",
    "local_structure",
    "nrmse_similarity",
    "scores",
    "ssim",
    "ssim_map",
    "structure_field",
    "wang_factor",
]

Array = np.ndarray[Any, Any]

#: Wang's ``ssim.m``: reduce so that the shorter side is about this many pixels.
WANG_SIDE = 256
#: Side of the local-edit window, in pixels at full resolution.
EDIT_WINDOW = 8
#: Gaussian sigma of the difference blur, in pixels at full resolution.
LUMA_SIGMA = 1.5
CHROMA_SIGMA = 6.0
#: Half-size images of at least this many pixels take their local edit in a second
#: thread when threads are allowed (below it the thread costs more than it saves).
_PARALLEL_EDIT_PIXELS = 1_000_000
#: The local-structure window (pixels at half resolution) and its stabiliser, C = (K L)^2.
STRUCTURE_WINDOW = 4
STRUCTURE_K = 0.05
#: NRMSE's span never counts as less than this fraction of the data range.
NRMSE_SPAN_FLOOR = 0.25

#: Full-range BT.601 (JFIF) luma weights: Y' = KR R' + KG G' + KB B';
#: Cb = (B' - Y') / (2 (1 - KB)), Cr = (R' - Y') / (2 (1 - KR)) (ITU-T T.871).
KR, KG, KB = 0.299, 0.587, 0.114


@dataclass(frozen=True)
class BandScore:
    """Scores of one band.

    Attributes
    ----------
    band : str
        ``"Y"``, ``"Cb"``, ``"Cr"`` or ``"A"``.
    ssim : float or None
        Mean SSIM at Wang's scale; ``None`` when the reduced image is under 11 px.
    nrmse : float
        NRMSE-similarity at Wang's scale.
    local_edit : float
        The local-edit score.
    local_structure : float or None
        The local-structure score (luma only: ``None`` for the other bands).
    """

    band: str
    ssim: float | None
    nrmse: float
    local_edit: float
    local_structure: float | None = None


@dataclass(frozen=True)
class Similarity:
    """Scores of two images: per band, and the minimum over bands (plain floats only).

    Attributes
    ----------
    bands : tuple of BandScore
        One entry per band.
    ssim : float or None
        Minimum over bands of the mean SSIM; ``None`` when the image is too small.
    nrmse : float
        Minimum over bands of the NRMSE-similarity.
    local_edit : float
        Minimum over bands of the local-edit score.
    reduction : int
        Wang's ``f``: the SSIM and NRMSE bands are ``f`` times smaller than the image.
    local_structure : float
        The local-structure score of the luma.
    """

    bands: tuple[BandScore, ...]
    ssim: float | None
    nrmse: float
    local_edit: float
    reduction: int
    local_structure: float = 1.0


def wang_factor(height: int, width: int) -> int:
    """Wang's reduction ``f = max(1, round(min(H, W) / 256))`` (halves round up, as MATLAB)."""
    return max(1, math.floor(min(height, width) / WANG_SIDE + 0.5))


def nrmse_similarity(x: Array, y: Array, *, span_floor: float = 0.0) -> float:
    """NRMSE-similarity ``1 - RMSE(x, y) / max(max - min, span_floor)``.

    Parameters
    ----------
    x, y : ndarray
        Two arrays of the same shape (one band), any integer or floating dtype.
    span_floor : float
        The least the span ``max - min`` (over both arrays) counts for; 0 for the plain
        definition. :func:`similarity` uses a quarter of the data range.

    Returns
    -------
    float
        1.0 for equal arrays (also when both are the same constant); lower as they differ.

    Raises
    ------
    ValueError
        Shapes differ or the arrays are empty.
    """
    check_pair(x, y, ndim=(1, 2, 3))
    d = np.subtract(x, y, dtype=np.float64)
    sum_sq = float(np.square(d, out=d).sum())
    span = max(float(max(x.max(), y.max())) - float(min(x.min(), y.min())), span_floor)
    if span == 0.0:
        return 1.0
    return 1.0 - math.sqrt(sum_sq / x.size) / span


# --------------------------------------------------------------------------- planes


def _ycc(rgb: Array) -> tuple[Array, Array, Array]:
    """``(H, W, 3)`` float32 R'G'B' -> contiguous Y', Cb, Cr planes without any offset.

    Elementwise on planes (``Cb = (B - Y) / 1.772``, ``Cr = (R - Y) / 1.402``), not a matrix
    product: BLAS would start threads for it, which a busy compare worker cannot use.
    """
    r, g, b = np.moveaxis(rgb, 2, 0).copy()
    y = r * np.float32(KR)
    y += g * np.float32(KG)
    y += b * np.float32(KB)
    b -= y
    b *= np.float32(0.5 / (1.0 - KB))
    r -= y
    r *= np.float32(0.5 / (1.0 - KR))
    return y, b, r


def _planes(a: Array, data_range: float) -> list[tuple[str, Array]]:
    """``(H, W, C)`` pixels -> named float32 planes: Y, Cb, Cr (colour) or Y (grey), then A.

    Colour is premultiplied by alpha; Cb and Cr carry JPEG's offset (128 for 8 bits).
    """
    bands = a.shape[2]
    has_alpha = bands in (2, 4)
    colour = bands - has_alpha
    f = a.astype(np.float32)
    if has_alpha:
        f[..., :colour] *= f[..., -1:] * np.float32(1.0 / data_range)
    out: list[tuple[str, Array]] = []
    if colour == 3:
        y, cb, cr = _ycc(f[..., :3])
        offset = np.float32(128.0 * data_range / 255.0)  # JPEG's: SSIM is not shift-free
        out += [("Y", y), ("Cb", cb + offset), ("Cr", cr + offset)]
    else:
        out.append(("Y", np.ascontiguousarray(f[..., 0])))
    if has_alpha:
        out.append(("A", np.ascontiguousarray(f[..., -1])))
    return out


def _box_pixels(a: Array, f: int) -> Array:
    """Means of ``f x f`` blocks of ``(H, W, C)`` pixels as float32, summed exactly in integers.

    This is ``ssim.m``'s reduction (an ``f x f`` box average, then every ``f``-th pixel,
    the box anchored at the kept pixel); partial blocks at the bottom and right are
    dropped.
    """
    h, w = (a.shape[0] // f) * f, (a.shape[1] // f) * f
    if np.issubdtype(a.dtype, np.integer) and a.dtype.itemsize <= 2:
        acc: type[np.generic] = np.uint16 if a.dtype.itemsize == 1 and f <= 16 else np.uint32
    else:
        acc = np.float64
    rows = np.add(a[0:h:f], a[1:h:f], dtype=acc) if f > 1 else a[:h].astype(acc)
    for i in range(2, f):
        rows += a[i:h:f]
    out = np.add(rows[:, 0:w:f], rows[:, 1:w:f]) if f > 1 else rows
    for j in range(2, f):
        out += rows[:, j:w:f]
    return np.multiply(out, 1.0 / (f * f), dtype=np.float32)


def _difference_planes(x: Array, y: Array, data_range: float) -> list[tuple[str, Array]]:
    """The planes of ``x - y`` (Y, Cb, Cr or Y, then A), float32: one colour transform for both.

    The transform is linear, so the planes of the difference are the difference of the
    planes; with alpha, colour is premultiplied before subtracting.
    """
    bands = x.shape[2]
    has_alpha = bands in (2, 4)
    colour = bands - has_alpha
    if has_alpha:
        fx, fy = x.astype(np.float32), y.astype(np.float32)
        fx[..., :colour] *= fx[..., -1:] * np.float32(1.0 / data_range)
        fy[..., :colour] *= fy[..., -1:] * np.float32(1.0 / data_range)
        d = np.subtract(fx, fy, out=fx)
    else:
        d = np.subtract(x, y, dtype=np.float32)
    out: list[tuple[str, Array]] = []
    if colour == 3:
        out += list(zip(("Y", "Cb", "Cr"), _ycc(d[..., :3]), strict=True))
    else:
        out.append(("Y", np.ascontiguousarray(d[..., 0])))
    if has_alpha:
        out.append(("A", np.ascontiguousarray(d[..., -1])))
    return out


def _reduce_plane(a: Array, f: int) -> Array:
    """Means of ``f x f`` blocks of a 2-D float plane (partial blocks dropped; never below 1 px)."""
    f = max(1, min(f, a.shape[0], a.shape[1]))
    if f == 1:
        return a
    h, w = (a.shape[0] // f) * f, (a.shape[1] // f) * f
    rows = a[0:h:f].copy()
    for i in range(1, f):
        rows += a[i:h:f]
    out = rows[:, 0:w:f].copy()
    for j in range(1, f):
        out += rows[:, j:w:f]
    out *= np.float32(1.0 / (f * f))
    return out


def _is_chroma(name: str) -> bool:
    return name in ("Cb", "Cr")


# --------------------------------------------------------------------------- local edit


def _taps(sigma: float) -> Array:
    """Normalised taps of a Gaussian, truncated at 3 sigma (at least one tap each side)."""
    radius = max(1, int(3.0 * sigma + 0.5))
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (offsets / sigma) ** 2)
    out: Array = (taps / taps.sum()).astype(np.float32)
    return out


def _symmetric_filter(src: Array, out: Array, scratch: Array, taps: Array, step: int) -> None:
    """``out = sum_k taps[k] * src[k*step : ...]``, a valid symmetric filter on flat runs."""
    r = len(taps) // 2
    n = out.size
    np.multiply(src[r * step : r * step + n], taps[r], out=out)
    for k in range(r):
        lo, hi = k * step, (2 * r - k) * step
        np.add(src[lo : lo + n], src[hi : hi + n], out=scratch)
        scratch *= taps[k]
        out += scratch


def _blur(a: Array, sigma: float) -> Array:
    """Separable Gaussian blur of a 2-D float32 plane, edges mirrored, same size.

    Both passes run on flat runs of the padded plane (one long operation per tap,
    much faster than per row); the values that mix two rows are never read.
    """
    taps = _taps(sigma)
    r = len(taps) // 2
    rows, cols = a.shape
    mode = "symmetric" if min(rows, cols) > r else "edge"
    padded = np.pad(a, r, mode=mode).reshape(-1)  # type: ignore[call-overload]
    width = cols + 2 * r
    vertical = np.empty(rows * width, dtype=np.float32)
    scratch = np.empty_like(vertical)
    _symmetric_filter(padded, vertical, scratch, taps, width)
    out = np.empty_like(vertical)
    n = vertical.size - 2 * r
    _symmetric_filter(vertical, out[:n], scratch[:n], taps, 1)
    return out.reshape(rows, width)[:, :cols]


def _window_means(a: Array, side: int) -> Array:
    """Mean of every ``side x side`` window lying inside ``a`` (a sliding window).

    Sums over a window of a power of two are built by doubling (a window of 8 is two
    overlapping windows of 4, and so on): three additions per axis for 8; other sides
    use cumulative sums. A plane shorter than the window along an axis has one window
    along it: its whole extent.
    """
    kh, kw = min(side, a.shape[0]), min(side, a.shape[1])
    out = _sliding_sums(_sliding_sums(a, kh, axis=0), kw, axis=1)
    means: Array = out * np.float32(1.0 / (kh * kw))
    return means


def _sliding_sums(a: Array, k: int, *, axis: int) -> Array:
    """Sums of every run of ``k`` consecutive values along ``axis``."""
    view = a if axis == 0 else a.T
    if k & (k - 1):
        c = np.zeros((view.shape[0] + 1, *view.shape[1:]), dtype=np.float64)
        np.cumsum(view, axis=0, out=c[1:])
        sums = (c[k:] - c[:-k]).astype(np.float32)
    else:
        sums, width = view, 1
        while width < k:
            sums = sums[:-width] + sums[width:]
            width *= 2
    return sums if axis == 0 else sums.T


def local_structure(x: Array, y: Array, *, data_range: float) -> float:
    """The local-structure score of two planes (see the module docstring): 1.0 is identical.

    Parameters
    ----------
    x, y : ndarray
        2-D planes of one shape (luma at half resolution), any real dtype.
    data_range : float
        ``L``, the largest pixel value.

    Every window lies inside the planes (none is padded); a plane smaller than the window
    along an axis has one window along it, its whole extent.
    """
    check_pair(x, y)
    check_range(data_range)
    to_8bit = np.float32(255.0 / data_range)  # sums of squares stay well within float32
    return _structure_min(x.astype(np.float32) * to_8bit, y.astype(np.float32) * to_8bit)


def _structure_min(a: Array, b: Array) -> float:
    """``max(0, min cs)`` over the windows of two float32 luma planes in 8-bit units."""
    # cs runs from -1 (one edge where the other has its opposite) to 1; as a score, 0 is
    # as unalike as it gets (as for the other scores)
    return max(0.0, float(_structure_terms(a, b).min()))


def structure_field(x: Array, y: Array, *, data_range: float) -> Array:
    """The local-structure term of every 4 x 4 window of two images' luma (for a map).

    Parameters
    ----------
    x, y : ndarray
        ``(H, W, C)`` pixels of one shape, at the scale the score is taken (half size).
    data_range : float
        ``L``, the largest pixel value.

    Returns
    -------
    ndarray
        float32 ``(H - 3, W - 3)``: the term of the window whose top-left corner is there
        (fewer rows or columns when the image is smaller than the window).
    """
    check_pair(x, y, ndim=(3,))
    to_8bit = np.float32(255.0 / data_range)
    return _structure_terms(_luma(x, data_range) * to_8bit, _luma(y, data_range) * to_8bit)


def _structure_terms(a: Array, b: Array) -> Array:
    """SSIM's cs term with ``C = (K L)^2`` for every window of two float32 luma planes.

    With ``s = a + b`` and ``d = a - b``: ``var a + var b = (var s + var d) / 2`` and
    ``2 cov = (var s - var d) / 2``, so four sliding sums (of ``s``, ``s^2``, ``d``,
    ``d^2``) give every window's term; the ``1 / n^2`` of the variances cancels.
    """
    kh, kw = min(STRUCTURE_WINDOW, a.shape[0]), min(STRUCTURE_WINDOW, a.shape[1])
    n = np.float32(kh * kw)

    def sums(z: Array) -> Array:
        return _sliding_sums(_sliding_sums(z, kh, axis=0), kw, axis=1)

    s = a + b
    d = a - b  # (a 1 x 1 window's sums are the planes themselves: nothing in place)
    ss, sd = sums(s), sums(d)
    var_s = n * sums(np.square(s)) - ss * ss  # n^2 var(s)
    var_d = n * sums(np.square(d)) - sd * sd
    c2 = np.float32(2 * (STRUCTURE_K * 255.0) ** 2) * n * n
    cs: Array = (var_s - var_d + c2) / (var_s + var_d + c2)
    return cs


def _strip_structure(x: Array, y: Array, data_range: float) -> float:
    """:func:`local_structure` of the luma of two ``(H, W, C)`` images, strip by strip.

    Each strip of window rows is computed from its own rows (and the window's margin), so
    that the intermediate planes stay in cache; the result is the same as on whole planes.
    """
    height, width = x.shape[:2]
    kh = min(STRUCTURE_WINDOW, height)
    out_rows = height - kh + 1
    step = max(16, _STRIP_PIXELS // max(width, 1))
    to_8bit = np.float32(255.0 / data_range)
    worst = 1.0
    for r0 in range(0, out_rows, step):
        rows = slice(r0, min(out_rows, r0 + step) + kh - 1)
        a = _luma(x[rows], data_range)
        b = _luma(y[rows], data_range)
        if data_range != 255:
            a *= to_8bit
            b *= to_8bit
        worst = min(worst, _structure_min(a, b))
    return worst


def _luma(a: Array, data_range: float) -> Array:
    """Y' of ``(H, W, C)`` pixels as float32, premultiplied by alpha (as :func:`_planes`)."""
    bands = a.shape[2]
    has_alpha = bands in (2, 4)
    f = a.astype(np.float32)
    if bands - has_alpha == 3:
        y = f[..., 0] * np.float32(KR)
        y += f[..., 1] * np.float32(KG)
        y += f[..., 2] * np.float32(KB)
    else:
        y = f[..., 0].copy()
    if has_alpha:
        y *= f[..., -1] * np.float32(1.0 / data_range)
    return y


def _halve(a: Array) -> Array:
    """2 x 2 block means of a 2-D plane (a last odd row or column dropped); thin planes kept."""
    if min(a.shape) < 2:
        return a
    return _reduce_plane(a, 2)


def _edit_field(name: str, dx: Array, scale: int) -> Array:
    """One band's local-edit field from its difference plane at ``scale``."""
    window = max(1, EDIT_WINDOW // scale)
    if _is_chroma(name):  # chroma: wider blur, so half the resolution is plenty
        dx, sigma, window = _halve(dx), CHROMA_SIGMA / (2 * scale), max(1, window // 2)
    else:
        sigma = LUMA_SIGMA / scale
    blurred = _blur(dx, sigma)
    np.abs(blurred, out=blurred)
    return _window_means(blurred, window)


#: Strips of the luma pipeline: about this many pixels per working plane (stays in cache).
_STRIP_PIXELS = 65_536
#: Planes narrower or shorter than this take the whole-plane path.
_STRIP_MIN_SIDE = 64


def _mirror_rows(lo: int, hi: int, height: int) -> Array:
    """Row indices ``lo .. hi - 1`` mirrored at the edges as ``np.pad(mode="symmetric")``."""
    rows = np.arange(lo, hi)
    rows = np.where(rows < 0, -rows - 1, rows)
    return np.where(rows >= height, 2 * height - rows - 1, rows)


def _luma_of(d: Array) -> list[tuple[str, Array]]:
    """The luma plane of a block of RGB (or grey) differences."""
    if d.shape[2] == 1:
        return [("Y", d[..., 0])]
    luma = d[..., 0] * np.float32(KR)
    luma += d[..., 1] * np.float32(KG)
    luma += d[..., 2] * np.float32(KB)
    return [("Y", luma)]


def _chroma_of(d: Array) -> list[tuple[str, Array]]:
    """The Cb and Cr planes of a block of RGB differences."""
    _, cb, cr = _ycc(d)
    return [("Cb", cb), ("Cr", cr)]


def _strip_maxima(
    x: Array,
    y: Array,
    planes: Callable[[Array], list[tuple[str, Array]]],
    *,
    sigma: float,
    window: int,
) -> dict[str, float]:
    """The largest local-edit value of each plane of ``x - y``, computed strip by strip.

    The same quantity as the maximum of :func:`_edit_field` (a test holds them equal),
    but each strip of output rows is computed from its own rows of the two images, with
    the blur's and the window's margins, so that every intermediate plane stays in
    cache: at 3 MP several times faster than whole planes going through memory.
    """
    height, width = x.shape[:2]
    kh, kw = min(window, height), min(window, width)
    taps = _taps(sigma)
    r = len(taps) // 2
    out_rows = height - kh + 1
    step = max(16, _STRIP_PIXELS // width)
    cols = width + 2 * r
    best: dict[str, float] = {}
    for r0 in range(0, out_rows, step):
        r1 = min(out_rows, r0 + step)
        rows = _mirror_rows(r0 - r, r1 + kh - 1 + r, height)
        d = np.subtract(x[rows], y[rows], dtype=np.float32)
        for name, plane in planes(d):
            padded = np.pad(plane, ((0, 0), (r, r)), mode="symmetric").reshape(-1)
            vertical = np.empty((plane.shape[0] - 2 * r) * cols, dtype=np.float32)
            scratch = np.empty_like(vertical)
            _symmetric_filter(padded, vertical, scratch, taps, cols)
            blurred = np.empty_like(vertical)
            n = vertical.size - 2 * r
            _symmetric_filter(vertical, blurred[:n], scratch[:n], taps, 1)
            field = blurred.reshape(-1, cols)[:, :width]
            np.abs(field, out=field)
            sums = _sliding_sums(_sliding_sums(field, kh, axis=0), kw, axis=1)
            best[name] = max(best.get(name, 0.0), float(sums.max()) / (kh * kw))
    return best


def _edit_maxima(
    x: Array,
    y: Array,
    data_range: float,
    scale: int,
    *,
    want_fields: bool,
    halves: tuple[Array, Array] | None = None,
) -> tuple[dict[str, float], list[tuple[str, Array]] | None]:
    """Each band's largest local-edit value, and the fields themselves when asked for.

    Opaque images of some size take the fast way, in strips that stay in cache: luma on
    ``x`` and ``y``, chroma on the images halved (``halves``, e.g. by Pillow's ``reduce``
    at decode; else their 2 x 2 means here: the same as halving the difference planes,
    the transform being linear). Alpha, small images and the fields for a picture take
    whole planes.
    """
    opaque = x.shape[2] in (1, 3)
    if want_fields or not opaque or min(x.shape[:2]) < _STRIP_MIN_SIDE:
        fields = _edit_fields(_difference_planes(x, y, data_range), scale)
        return {name: float(field.max()) for name, field in fields}, (
            fields if want_fields else None
        )
    window = max(1, EDIT_WINDOW // scale)
    maxima = _strip_maxima(x, y, _luma_of, sigma=LUMA_SIGMA / scale, window=window)
    if x.shape[2] == 3:
        hx, hy = halves if halves is not None else (_box_pixels(x, 2), _box_pixels(y, 2))
        chroma = _strip_maxima(
            hx, hy, _chroma_of, sigma=CHROMA_SIGMA / (2 * scale), window=max(1, window // 2)
        )
        maxima.update(chroma)
    return maxima, None


def edit_maps(x: Array, y: Array, *, data_range: float, scale: int = 1) -> list[tuple[str, Array]]:
    """The local-edit field of every band: per window position, mean |blurred difference|.

    Parameters
    ----------
    x, y : ndarray
        ``(H, W, C)`` arrays of one shape, C = 1 (grey), 2 (grey, alpha), 3 (RGB) or 4
        (RGBA); any integer or float dtype; already harmonised.
    data_range : float
        ``L``, the largest pixel value.
    scale : int
        How many full-resolution pixels one pixel of ``x`` stands for (1 or 2): sigma
        and window are divided by it.

    Returns
    -------
    list of (str, ndarray)
        ``(band, field)`` per band (``Y``, ``Cb``, ``Cr``, ``A``), float32, in the units
        of the pixels. Luma and alpha fields are at the scale of ``x``; chroma fields at
        half of it (the chroma blur is wide enough for that).
    """
    check_pair(x, y, ndim=(3,))
    return _edit_fields(_difference_planes(x, y, data_range), scale)


def _edit_fields(differences: list[tuple[str, Array]], scale: int) -> list[tuple[str, Array]]:
    return [(name, _edit_field(name, d, scale)) for name, d in differences]


def edit_map(x: Array, y: Array, *, data_range: float, scale: int = 1) -> Array:
    """The local-edit field as one picture: per pixel of ``x``, the worst band's field.

    Each band's field (see :func:`edit_maps`) is brought to the size of ``x`` (chroma
    doubled; a window's value drawn at its centre, edges extended) and the maximum
    over bands kept: float32 ``(H, W)`` in pixel units.
    """
    return fields_to_map(edit_maps(x, y, data_range=data_range, scale=scale), x.shape[:2])


def fields_to_map(fields: list[tuple[str, Array]], shape: tuple[int, ...]) -> Array:
    """Band fields (luma-scale and half-scale chroma) -> one ``shape`` map, max over bands."""
    h, w = shape[0], shape[1]
    out = np.zeros((h, w), dtype=np.float32)
    for name, field in fields:
        if _is_chroma(name):
            field = field.repeat(2, axis=0).repeat(2, axis=1)
        top, left = max(0, (h - field.shape[0]) // 2), max(0, (w - field.shape[1]) // 2)
        field = field[:h, :w]
        pad = ((top, h - top - field.shape[0]), (left, w - left - field.shape[1]))
        np.maximum(out, np.pad(field, pad, mode="edge"), out=out)
    return out


# --------------------------------------------------------------------------- all together


def _wang_scores(
    rx: Array, ry: Array, *, data_range: float
) -> list[tuple[str, float | None, float]]:
    """SSIM and NRMSE of every band of two images reduced to Wang's scale.

    Chroma is reduced by 2 more first (the eye, like JPEG's 4:2:0, resolves colour at half
    the detail of brightness). A band under the 11 px window has no SSIM (None).
    """
    rx = rx[:, :, np.newaxis] if rx.ndim == 2 else rx
    ry = ry[:, :, np.newaxis] if ry.ndim == 2 else ry
    check_pair(rx, ry, ndim=(3,))
    floor = NRMSE_SPAN_FLOOR * data_range
    out: list[tuple[str, float | None, float]] = []
    for (name, a), (_, b) in zip(_planes(rx, data_range), _planes(ry, data_range), strict=True):
        if _is_chroma(name):
            a, b = _reduce_plane(a, 2), _reduce_plane(b, 2)
        band_ssim = ssim(a, b, data_range=data_range) if min(a.shape) >= WINDOW else None
        out.append((name, band_ssim, nrmse_similarity(a, b, span_floor=floor)))
    return out


def scores(
    x: Array,
    y: Array,
    *,
    data_range: float,
    full_size: tuple[int, int] | None = None,
    scale: int = 1,
    reduced: tuple[Array, Array] | None = None,
    halves: tuple[Array, Array] | None = None,
    threads: int = 1,
    want_fields: bool = False,
) -> tuple[Similarity, list[tuple[str, Array]] | None]:
    """Scores of two images per band and the minimum over bands (see the module docstring).

    Parameters
    ----------
    x, y : ndarray
        ``(H, W)`` or ``(H, W, C)`` arrays of one shape (C = 1 to 4, the last band alpha
        when C is 2 or 4); uint8, uint16 or float; ``data_range`` their largest value.
    data_range : float
        ``L``: 255 for 8-bit, 65535 for 16-bit.
    full_size : (width, height), optional
        The image's size at full resolution, when ``x`` and ``y`` are reduced by
        ``scale`` (decoded by libjpeg at half size); default: their size times ``scale``.
    scale : int
        1, or 2 when ``x`` and ``y`` are at half resolution (2 x 2 means, or halved by
        libjpeg).
    reduced : (ndarray, ndarray), optional
        Both images already reduced by Wang's ``f`` from full size (e.g. by Pillow's
        ``reduce``); default: reduced here from ``x`` and ``y`` (then ``f`` must be a
        multiple of ``scale``).
    halves : (ndarray, ndarray), optional
        ``x`` and ``y`` halved once more (e.g. by Pillow at decode), for the chroma of
        the local edit; default: their 2 x 2 means taken here.
    threads : int
        With more than one, a large image's local edit runs in a second thread beside
        the SSIM.
    want_fields : bool
        Also return the local-edit field of every band (see :func:`edit_maps`).

    Returns
    -------
    Similarity
    list of (str, ndarray) or None
        The local-edit fields when ``want_fields``, at the edit scale.

    Raises
    ------
    ValueError
        Shapes differ, the arrays are not 2-D or 3-D or are empty, ``data_range <= 0``,
        ``scale`` is not 1 or 2, or Wang's reduction is odd for half-size images given
        without ``reduced``.
    """
    check_pair(x, y, ndim=(2, 3))
    check_range(data_range)
    if scale not in (1, 2):
        raise ValueError(f"scale must be 1 or 2, got {scale!r}.")
    x3 = x[:, :, np.newaxis] if x.ndim == 2 else x
    y3 = y[:, :, np.newaxis] if y.ndim == 2 else y
    width, height = full_size or (x.shape[1] * scale, x.shape[0] * scale)
    f = wang_factor(height, width)
    if reduced is None and f % scale:
        raise ValueError(f"a half-resolution image needs an even reduction, got f = {f}.")
    # The local edit at half resolution once Wang reduces at all (see the module docstring).
    edit_scale = 2 if f >= 2 else scale
    hx, hy = (x3, y3) if edit_scale == scale else (_box_pixels(x3, 2), _box_pixels(y3, 2))

    def edits() -> tuple[dict[str, float], list[tuple[str, Array]] | None]:
        again = halves if edit_scale == scale else None  # halves of the images given
        return _edit_maxima(hx, hy, data_range, edit_scale, want_fields=want_fields, halves=again)

    if reduced is None:
        reduced = (_box_pixels(x3, f // scale), _box_pixels(y3, f // scale))
    halve = edit_scale == 1 and min(hx.shape[:2]) >= 2  # the structure at half resolution
    sx, sy = (_box_pixels(hx, 2), _box_pixels(hy, 2)) if halve else (hx, hy)
    structure = _strip_structure(sx, sy, data_range)
    if threads > 1 and hx.shape[0] * hx.shape[1] >= _PARALLEL_EDIT_PIXELS:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=1) as pool:  # the edit beside the SSIM
            pending = pool.submit(edits)
            wang = _wang_scores(*reduced, data_range=data_range)
            maxima, fields = pending.result()
    else:
        maxima, fields = edits()
        wang = _wang_scores(*reduced, data_range=data_range)
    bands = tuple(
        BandScore(
            band=name,
            ssim=band_ssim,
            nrmse=band_nrmse,
            local_edit=1.0 - maxima[name] / data_range,
            local_structure=structure if name == "Y" else None,
        )
        for name, band_ssim, band_nrmse in wang
    )
    present = [b.ssim for b in bands if b.ssim is not None]
    result = Similarity(
        bands=bands,
        ssim=min(present) if present else None,
        nrmse=min(b.nrmse for b in bands),
        local_edit=min(b.local_edit for b in bands),
        reduction=f,
        local_structure=structure,
    )
    return result, fields
