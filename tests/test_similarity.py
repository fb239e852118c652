"""Tests for fetcher.similarity: SSIM against scikit-image, NRMSE, local scores, edge cases."""

from __future__ import annotations

import io
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import encode, photo
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from skimage.metrics import structural_similarity

from fetcher.similarity import (
    WINDOW,
    BandScore,
    Similarity,
    local_diff_score,
    local_score,
    nrmse_similarity,
    similarity,
    ssim,
    ssim_map,
)

RNG = np.random.default_rng(20041)
ROOT = Path(__file__).resolve().parent.parent


def skimage_ssim(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """The reference: scikit-image's Gaussian SSIM with Wang et al.'s settings."""
    return float(
        structural_similarity(
            x,
            y,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=data_range,
        )
    )


def skimage_map(x: np.ndarray, y: np.ndarray, data_range: float) -> np.ndarray:
    _, full = structural_similarity(
        x,
        y,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=data_range,
        full=True,
    )
    return np.asarray(full)[5:-5, 5:-5]


def jpeg(img: Image.Image, quality: int) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(encode(img, "JPEG", quality=quality))))


def noisy(x: np.ndarray, sigma: float, top: int = 255) -> np.ndarray:
    n = x.astype(np.float64) + RNG.normal(0.0, sigma, x.shape)
    return np.clip(np.rint(n), 0, top).astype(x.dtype)


# --- SSIM: known properties -------------------------------------------------------------


def test_ssim_of_an_image_with_itself_is_one() -> None:
    x = np.asarray(photo("astronaut"))[:, :, 1]
    assert ssim(x, x, data_range=255) == 1.0
    assert np.all(ssim_map(x, x, data_range=255) == 1.0)


def test_ssim_is_bounded_and_falls_with_noise() -> None:
    x = np.asarray(photo("camera"))
    scores = [ssim(x, noisy(x, s), data_range=255) for s in (2, 10, 40)]
    assert all(-1.0 <= s <= 1.0 for s in scores)
    assert scores[0] > scores[1] > scores[2]
    pure = RNG.integers(0, 256, x.shape).astype(np.uint8)
    assert abs(ssim(x, pure, data_range=255)) < 0.1  # unrelated images


def test_ssim_is_symmetric() -> None:
    x = np.asarray(photo("camera"))
    y = noisy(x, 8)
    assert ssim(x, y, data_range=255) == pytest.approx(ssim(y, x, data_range=255), abs=1e-12)


# --- SSIM: agreement with scikit-image --------------------------------------------------


def _photo_pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    pairs = []
    for name in ("astronaut", "chelsea", "coffee", "camera"):
        img = photo(name)
        x = np.asarray(img)
        pairs.append((f"{name}-jpeg90", x, jpeg(img, 90)))
        pairs.append((f"{name}-noise", x, noisy(x, 6)))
    return pairs


@pytest.mark.parametrize(
    ("label", "x", "y"), _photo_pairs(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_agrees_with_skimage_on_photographs(label: str, x: np.ndarray, y: np.ndarray) -> None:
    x3 = x[:, :, None] if x.ndim == 2 else x
    y3 = y[:, :, None] if y.ndim == 2 else y
    result, _ = similarity(x, y, data_range=255, threads=2)
    for band in range(x3.shape[2]):
        reference = skimage_ssim(x3[:, :, band], y3[:, :, band], 255)
        assert result.bands[band].ssim == pytest.approx(reference, abs=1e-6), label
        assert ssim(x3[:, :, band], y3[:, :, band], data_range=255) == pytest.approx(
            reference, abs=1e-6
        )


def test_float32_work_keeps_a_margin_below_the_tolerance() -> None:
    """8-bit pixels are filtered in float32; re-centring each strip keeps the error of
    the mean far below 1e-6 even on a smooth photograph with faint noise."""
    gen = np.random.default_rng(7)
    x = np.asarray(photo("astronaut"))
    y = np.clip(x + np.rint(gen.normal(0, 3, x.shape)), 0, 255).astype(np.uint8)
    errors = [
        abs(ssim(xb, yb, data_range=255) - skimage_ssim(xb, yb, 255))
        for xb, yb in zip(np.moveaxis(x, 2, 0), np.moveaxis(y, 2, 0), strict=True)
    ]
    assert max(errors) < 2.5e-7


def test_map_agrees_with_skimage_full_map_cropped() -> None:
    img = photo("coffee")
    x, y = np.asarray(img)[:, :, 0], jpeg(img, 85)[:, :, 0]
    ours = ssim_map(x, y, data_range=255)
    reference = skimage_map(x, y, 255)
    assert ours.shape == (x.shape[0] - 10, x.shape[1] - 10) == reference.shape
    error = np.abs(ours - reference)
    assert error.max() < 5e-4  # float32 work, per pixel
    assert error.mean() < 1e-5


def test_agrees_with_skimage_on_16_bit() -> None:
    x8 = np.asarray(photo("astronaut"))[:, :, 0]
    x = (x8.astype(np.uint16) * 257 + RNG.integers(0, 257, x8.shape)).astype(np.uint16)
    y = noisy(x, 600, top=65535)
    assert ssim(x, y, data_range=65535) == pytest.approx(skimage_ssim(x, y, 65535), abs=1e-6)
    # bright 16-bit data far from the centre of the range keeps its precision
    bright = (65535 - x8.astype(np.uint16) * 8).astype(np.uint16)
    bright_y = noisy(bright, 50, top=65535)
    assert ssim(bright, bright_y, data_range=65535) == pytest.approx(
        skimage_ssim(bright, bright_y, 65535), abs=1e-6
    )


def test_agrees_with_skimage_on_float_input() -> None:
    x = np.asarray(photo("camera")).astype(np.float64) / 255.0
    y = np.clip(x + RNG.normal(0, 0.02, x.shape), 0.0, 1.0)
    assert ssim(x, y, data_range=1.0) == pytest.approx(skimage_ssim(x, y, 1.0), abs=1e-6)


def test_smallest_image_with_ssim_is_one_window() -> None:
    x = np.asarray(photo("camera"))[100:111, 200:230]
    y = noisy(x, 10)
    assert ssim_map(x, y, data_range=255).shape == (1, 20)
    assert ssim(x, y, data_range=255) == pytest.approx(skimage_ssim(x, y, 255), abs=1e-6)


def test_similarity_on_16_bit_rgb_agrees_per_band() -> None:
    x8 = np.asarray(photo("coffee"))[:200, :300]
    x = (x8.astype(np.uint16) * 257).astype(np.uint16)
    y = noisy(x, 300, top=65535)
    result, _ = similarity(x, y, data_range=65535, threads=2)
    for band in range(3):
        xb, yb = x[:, :, band], y[:, :, band]
        assert result.bands[band].ssim == pytest.approx(skimage_ssim(xb, yb, 65535), abs=1e-6)
        assert result.bands[band].nrmse == nrmse_similarity(xb, yb)  # both exact sums


def test_side_10_has_no_ssim_and_side_11_has() -> None:
    img = np.asarray(photo("astronaut"))
    for rows, kind in ((10, "diff"), (11, "ssim")):
        x = img[100 : 100 + rows, 100:150]
        y = noisy(x, 5)
        result, smap = similarity(x, y, data_range=255, want_map=True)
        assert result.local_kind == kind
        if rows == 10:
            assert result.ssim is None and smap is None
            assert all(b.ssim is None for b in result.bands)
            assert result.local == min(
                local_diff_score(x[:, :, c], y[:, :, c], tile=64) for c in range(3)
            )
        else:
            assert result.ssim is not None and smap is not None and smap.shape == (1, 40)
            assert result.ssim == pytest.approx(
                min(skimage_ssim(x[:, :, c], y[:, :, c], 255) for c in range(3)), abs=1e-6
            )


@pytest.mark.parametrize("shape", [(WINDOW - 1, 40), (40, WINDOW - 1), (WINDOW - 1, WINDOW - 1)])
def test_side_below_window_is_a_value_error(shape: tuple[int, int]) -> None:
    x = np.zeros(shape, np.uint8)
    with pytest.raises(ValueError, match="at least 11"):
        ssim(x, x, data_range=255)
    with pytest.raises(ValueError, match="at least 11"):
        ssim_map(x, x, data_range=255)


def test_shape_mismatch_is_a_value_error() -> None:
    x, y = np.zeros((20, 30), np.uint8), np.zeros((30, 20), np.uint8)
    for call in (
        lambda: ssim(x, y, data_range=255),
        lambda: ssim_map(x, y, data_range=255),
        lambda: nrmse_similarity(x, y),
        lambda: local_diff_score(x, y, tile=8),
        lambda: similarity(x, y, data_range=255),
    ):
        with pytest.raises(ValueError, match="different shapes"):
            call()


def test_bad_data_range_and_tile_are_value_errors() -> None:
    x = np.zeros((20, 20), np.uint8)
    with pytest.raises(ValueError, match="data_range"):
        ssim(x, x, data_range=0)
    with pytest.raises(ValueError, match="tile"):
        similarity(x, x, data_range=255, tile=0)


# --- constant bands, tiny images, extremes ------------------------------------------------


def test_constant_equal_bands_score_one() -> None:
    x = np.full((30, 40, 3), 77, np.uint8)
    result, smap = similarity(x, x.copy(), data_range=255, want_map=True)
    assert (result.ssim, result.nrmse, result.local) == (1.0, 1.0, 1.0)
    assert smap is not None and np.all(smap == 1.0)


def test_constant_unequal_bands_follow_the_formula() -> None:
    x, y = np.full((30, 40), 100, np.uint8), np.full((30, 40), 200, np.uint8)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    luminance = (2 * 100 * 200 + c1) / (100**2 + 200**2 + c1)
    expected = luminance * (0 + c2) / (0 + c2)
    assert ssim(x, y, data_range=255) == pytest.approx(expected, rel=1e-6)
    assert nrmse_similarity(x, y) == 0.0  # RMSE 100 over a span of 100


def test_one_pixel_images() -> None:
    same = np.array([[[10, 20, 30]]], np.uint8)
    result, smap = similarity(same, same.copy(), data_range=255, want_map=True)
    assert smap is None
    assert result.ssim is None and result.local_kind == "diff"
    assert (result.nrmse, result.local) == (1.0, 1.0)
    a, b = np.array([[0]], np.uint16), np.array([[65535]], np.uint16)
    result, _ = similarity(a, b, data_range=65535)
    assert (result.nrmse, result.local) == (0.0, 0.0)
    assert result.bands == (BandScore(ssim=None, nrmse=0.0, local=0.0, local_shift=0.0),)


def test_uint16_extremes_do_not_overflow() -> None:
    x = np.zeros((32, 32), np.uint16)
    y = np.full((32, 32), 65535, np.uint16)
    assert nrmse_similarity(x, y) == 0.0
    c1 = (0.01 * 65535) ** 2
    assert ssim(x, y, data_range=65535) == pytest.approx(c1 / (65535**2 + c1), rel=1e-4)
    # differences that wrap around in uint16 arithmetic must not
    a = np.array([[0, 65535], [65535, 0]], np.uint16)
    assert nrmse_similarity(a, a[::-1].copy()) == 0.0
    result, _ = similarity(x, y, data_range=65535)
    assert result.nrmse == 0.0 and math.isfinite(result.local) and result.ssim is not None


def test_nrmse_matches_its_definition() -> None:
    x = np.asarray(photo("chelsea"))[:, :, 2]
    y = noisy(x, 12)
    d = x.astype(np.float64) - y.astype(np.float64)
    span = max(x.max(), y.max()) - float(min(x.min(), y.min()))
    expected = 1.0 - np.sqrt(np.mean(d * d)) / span
    assert nrmse_similarity(x, y) == pytest.approx(expected, abs=1e-12)
    result, _ = similarity(x, y, data_range=255)
    assert result.nrmse == pytest.approx(expected, abs=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 12),
    st.integers(1, 12),
    st.integers(0, 2**32 - 1),
)
def test_nrmse_is_between_zero_and_one(h: int, w: int, seed: int) -> None:
    gen = np.random.default_rng(seed)
    x = gen.integers(0, 65536, (h, w)).astype(np.uint16)
    y = gen.integers(0, 65536, (h, w)).astype(np.uint16)
    value = nrmse_similarity(x, y)
    assert 0.0 <= value <= 1.0
    assert nrmse_similarity(x, x) == 1.0
    assert 0.0 <= local_diff_score(x, y, tile=4) <= value + 1e-12  # worst tile <= whole


# --- local scores ---------------------------------------------------------------------------


def test_local_score_catches_a_small_box_that_mean_ssim_misses() -> None:
    img = photo("camera")
    x = np.asarray(img)
    box = x.copy()
    side = round(math.sqrt(0.01 * x.size))  # 1 % of the area
    box[200 : 200 + side, 300 : 300 + side] = 128
    reencoded = jpeg(img, 95)
    edited, _ = similarity(x, box, data_range=255)
    harmless, _ = similarity(x, reencoded, data_range=255)
    assert edited.ssim is not None and harmless.ssim is not None
    assert edited.ssim >= harmless.ssim - 0.002  # mean SSIM cannot tell them apart
    assert edited.local < harmless.local - 0.15  # the worst tile can


def test_local_score_is_the_worst_tile_mean() -> None:
    smap = np.ones((100, 100))
    smap[99, 99] = 0.0  # last row and column: in the 36x36 corner tile [64:100, 64:100]
    assert local_score(smap, tile=64) == pytest.approx(1 - 1 / 36**2)
    smap = np.ones((70, 70))
    smap[69, 69] = 0.0  # a 6-pixel remainder merges: one 70x70 tile
    assert local_score(smap, tile=64) == pytest.approx(1 - 1 / 70**2)
    smap = np.ones((5, 7))
    smap[0, 0] = -1.0  # smaller than a tile: the whole map
    assert local_score(smap, tile=64) == pytest.approx(np.mean(smap))


def test_tiles_cover_the_last_rows_and_columns() -> None:
    x = np.asarray(photo("camera"))[:300, :400]
    # 300 x 400 image -> 290 x 390 map: 64-pixel tiles with 34- and 6-pixel remainders
    for edit in (np.s_[-6:, 100:150], np.s_[100:150, -6:]):
        y = x.copy()
        y[edit] = 255 - y[edit]
        result, _ = similarity(x, y, data_range=255, tile=64)
        assert result.ssim is not None
        # an edge tile holds the edit: the worst tile drops far more than the mean
        assert 1.0 - result.local > 8 * (1.0 - result.ssim) > 0.0


def test_local_diff_score_matches_tile_loop() -> None:
    x = RNG.integers(0, 256, (8, 150)).astype(np.uint8)
    y = x.copy()
    y[2:6, 140:150] = 0
    tile = 32
    span = float(max(x.max(), y.max())) - float(min(x.min(), y.min()))
    worst = 0.0
    # 150 = 4 * 32 + 22 and 22 >= 16, so five column tiles; 8 rows < 32: one row of tiles
    for c0, c1 in ((0, 32), (32, 64), (64, 96), (96, 128), (128, 150)):
        d = x[:, c0:c1].astype(np.float64) - y[:, c0:c1]
        worst = max(worst, math.sqrt(np.mean(d * d)) / span)
    assert local_diff_score(x, y, tile=tile) == pytest.approx(1.0 - worst, abs=1e-12)
    assert local_diff_score(x, x, tile=tile) == 1.0
    constant = np.full((5, 5), 9, np.uint8)
    assert local_diff_score(constant, constant.copy(), tile=tile) == 1.0


# --- similarity(): bands, map, threads ------------------------------------------------------


def test_similarity_takes_minimum_over_bands_and_names_worst_band() -> None:
    x = np.asarray(photo("astronaut"))
    y = x.copy()
    y[100:140, 100:140, 2] = 0  # only blue edited
    result, smap = similarity(x, y, data_range=255, want_map=True)
    assert isinstance(result, Similarity)
    assert result.worst_band == 2 and result.local_kind == "ssim"
    assert result.local == min(b.local for b in result.bands) == result.bands[2].local
    assert result.ssim == min(b.ssim for b in result.bands if b.ssim is not None)
    assert result.nrmse == min(b.nrmse for b in result.bands)
    per_band = [ssim_map(x[:, :, c], y[:, :, c], data_range=255) for c in range(3)]
    assert smap is not None and smap.shape == (502, 502)
    np.testing.assert_array_equal(smap, np.minimum.reduce(per_band))
    for band, band_map in zip(result.bands, per_band, strict=True):
        assert band.local == pytest.approx(local_score(band_map, tile=64), abs=1e-9)
    tie, _ = similarity(x, x.copy(), data_range=255)
    assert tie.worst_band == 0


def test_similarity_is_plain_python_values() -> None:
    x = np.asarray(photo("chelsea"))[:64, :64]
    result, _ = similarity(x, noisy(x, 4), data_range=255)
    for value in (result.ssim, result.nrmse, result.local, *(b.local for b in result.bands)):
        assert type(value) is float
    assert type(result.worst_band) is int


def test_threads_give_identical_results() -> None:
    img = np.asarray(photo("astronaut"))
    x = np.concatenate([img, img[::-1]], axis=1)  # 512 x 1024: large enough to split
    y = jpeg(Image.fromarray(x), 90)
    one = similarity(x, y, data_range=255, threads=1, want_map=True)
    two = similarity(x, y, data_range=255, threads=2, want_map=True)
    assert one[0] == two[0]
    assert one[1] is not None and two[1] is not None
    np.testing.assert_array_equal(one[1], two[1])
    assert ssim(x[:, :, 0], y[:, :, 0], data_range=255, threads=3) == one[0].bands[0].ssim


def test_benchmark_script_smoke_run() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_similarity.py"),
            "--size",
            "300x200",
            "--repeat",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "skimage/fetcher" in proc.stdout
    assert "max |difference|" in proc.stdout
