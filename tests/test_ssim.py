"""Tests for fetcher.ssim: the exact Gaussian-window SSIM kernel against scikit-image."""

from __future__ import annotations

import io

import numpy as np
import pytest
from conftest import encode, photo
from PIL import Image
from skimage.metrics import structural_similarity

from fetcher.ssim import WINDOW, ssim_map
from fetcher.ssim import mean_ssim as ssim

RNG = np.random.default_rng(20041)


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


def _photo_pairs() -> list[tuple[str, np.ndarray, np.ndarray]]:
    pairs = []
    for name in ("astronaut", "coffee", "camera"):
        img = photo(name)
        x = np.asarray(img)
        x, y = (x, jpeg(img, 90)) if x.ndim == 2 else (x[..., 0], jpeg(img, 90)[..., 0])
        pairs.append((f"{name}-jpeg90", x, y))
        pairs.append((f"{name}-noise", x, noisy(x, 6)))
    return pairs


@pytest.mark.parametrize(
    ("label", "x", "y"), _photo_pairs(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_agrees_with_skimage_on_photographs(label: str, x: np.ndarray, y: np.ndarray) -> None:
    assert ssim(x, y, data_range=255) == pytest.approx(skimage_ssim(x, y, 255), abs=1e-6), label
    assert ssim(x, y, data_range=255, threads=2) == ssim(x, y, data_range=255)


def test_float32_work_keeps_a_margin_below_the_tolerance() -> None:
    """Data of 8 bits' range is filtered in float32; re-centring each strip keeps the error
    of the mean far below 1e-6, for integers and for the float means of a reduction."""
    gen = np.random.default_rng(7)
    x = np.asarray(photo("astronaut"))
    y = np.clip(x + np.rint(gen.normal(0, 3, x.shape)), 0, 255).astype(np.uint8)
    errors = [
        abs(ssim(xb, yb, data_range=255) - skimage_ssim(xb, yb, 255))
        for xb, yb in zip(np.moveaxis(x, 2, 0), np.moveaxis(y, 2, 0), strict=True)
    ]
    means_x = x[:, :, 0].reshape(128, 4, 128, 4).mean(axis=(1, 3)).astype(np.float32)
    means_y = y[:, :, 0].reshape(128, 4, 128, 4).mean(axis=(1, 3)).astype(np.float32)
    assert max(errors) < 2.5e-7
    error = abs(ssim(means_x, means_y, data_range=255) - skimage_ssim(means_x, means_y, 255))
    assert error < 5e-7


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


@pytest.mark.parametrize("shape", [(WINDOW - 1, 40), (40, WINDOW - 1), (WINDOW - 1, WINDOW - 1)])
def test_side_below_window_is_a_value_error(shape: tuple[int, int]) -> None:
    x = np.zeros(shape, np.uint8)
    with pytest.raises(ValueError, match="at least 11"):
        ssim(x, x, data_range=255)
    with pytest.raises(ValueError, match="at least 11"):
        ssim_map(x, x, data_range=255)


def test_shape_mismatch_and_bad_range_are_value_errors() -> None:
    x, y = np.zeros((20, 30), np.uint8), np.zeros((30, 20), np.uint8)
    with pytest.raises(ValueError, match="different shapes"):
        ssim(x, y, data_range=255)
    with pytest.raises(ValueError, match="different shapes"):
        ssim_map(x, y, data_range=255)
    with pytest.raises(ValueError, match="data_range"):
        ssim(x, x, data_range=0)


def test_constant_unequal_bands_follow_the_formula() -> None:
    x, y = np.full((30, 40), 100, np.uint8), np.full((30, 40), 200, np.uint8)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    luminance = (2 * 100 * 200 + c1) / (100**2 + 200**2 + c1)
    expected = luminance * (0 + c2) / (0 + c2)
    assert ssim(x, y, data_range=255) == pytest.approx(expected, rel=1e-6)


def test_uint16_extremes_do_not_overflow() -> None:
    x = np.zeros((32, 32), np.uint16)
    y = np.full((32, 32), 65535, np.uint16)
    c1 = (0.01 * 65535) ** 2
    assert ssim(x, y, data_range=65535) == pytest.approx(c1 / (65535**2 + c1), rel=1e-4)


def test_threads_give_identical_results() -> None:
    img = np.asarray(photo("astronaut"))[:, :, 0]
    x = np.concatenate([img, img[::-1]], axis=1)  # 512 x 1024: large enough to split
    y = noisy(x, 5)
    one = ssim_map(x, y, data_range=255, threads=1)
    two = ssim_map(x, y, data_range=255, threads=2)
    np.testing.assert_array_equal(one, two)
    assert ssim(x, y, data_range=255, threads=3) == ssim(x, y, data_range=255)
