"""Tests for fetcher.compare: every rung and reason, inputs, maps, thresholds; local_shift_score."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import encode, gradient_rgb, photo
from PIL import Image, ImageDraw, ImageFilter
from skimage.metrics import structural_similarity

from fetcher import CompareConfig, Config
from fetcher.compare import Comparison, compare, compare_decoded, render_diff_map
from fetcher.decode import decode
from fetcher.errors import DecodeError, StoreError, TooManyPixelsError
from fetcher.similarity import local_shift_score

RNG = np.random.default_rng(20261126)
DEFAULTS = CompareConfig()
METRICS = ("ssim", "nrmse", "local_shift", "local_ssim")


# --------------------------------------------------------------------------- builders


def shifted(img: Image.Image, delta: int) -> Image.Image:
    arr = np.clip(np.asarray(img).astype(np.int16) + delta, 0, 255).astype(np.uint8)
    return Image.fromarray(arr, img.mode)


def boxed(img: Image.Image, fraction: float = 0.01, fill: Any = "black") -> Image.Image:
    """A filled square over ``fraction`` of the area, a third of the way in."""
    out = img.copy()
    w, h = out.size
    side = round((fraction * w * h) ** 0.5)
    x0, y0 = w // 3, h // 3
    ImageDraw.Draw(out).rectangle([x0, y0, x0 + side - 1, y0 + side - 1], fill=fill)
    return out


def box_bounds(img: Image.Image, fraction: float = 0.01) -> tuple[int, int, int]:
    w, h = img.size
    return w // 3, h // 3, round((fraction * w * h) ** 0.5)


def gif(frames: list[np.ndarray]) -> bytes:
    images = [Image.fromarray(f, "L").convert("P") for f in frames]
    return encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=100)


def ref_nrmse(a: np.ndarray, b: np.ndarray) -> float:
    """Independent NRMSE-similarity of one band: 1 - RMSE / (max - min over both)."""
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    span = max(a64.max(), b64.max()) - min(a64.min(), b64.min())
    return 1 - math.sqrt(np.mean((a64 - b64) ** 2)) / span


def sk_ssim(a: np.ndarray, b: np.ndarray, data_range: float, *, full: bool = False) -> Any:
    """scikit-image's Gaussian SSIM with Wang et al.'s settings (the reference)."""
    return structural_similarity(
        a,
        b,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=data_range,
        full=full,
    )


def grey16(arr: np.ndarray) -> bytes:
    return encode(Image.fromarray(arr.astype(np.uint16)), "PNG")  # mode I;16


@pytest.fixture(scope="module")
def chelsea() -> Image.Image:
    return photo("chelsea")


@pytest.fixture(scope="module")
def chelsea_png(chelsea: Image.Image) -> bytes:
    return encode(chelsea, "PNG")


@pytest.fixture(scope="module")
def chelsea_q90(chelsea: Image.Image) -> bytes:
    return encode(chelsea, "JPEG", quality=90)


# --------------------------------------------------------------------------- rung 3: bytes


def test_identical_bytes_from_bytes() -> None:
    data = encode(gradient_rgb(), "PNG")
    result = compare(data, bytes(data))
    assert result.same and result.reason == "identical-bytes"
    assert result.ssim is None and result.nrmse is None and result.decided_by is None


def test_identical_bytes_from_paths(tmp_path: Path) -> None:
    data = encode(gradient_rgb(), "PNG")
    old, new = tmp_path / "old.png", tmp_path / "new.png"
    old.write_bytes(data)
    new.write_bytes(data)
    result = compare(old, str(new))
    assert result.same and result.reason == "identical-bytes"


def test_identical_bytes_does_not_decode() -> None:
    # Identical bytes decide before decoding, so even non-image bytes are "the same".
    junk = b"not an image at all"
    assert compare(junk, junk).reason == "identical-bytes"


def test_missing_path_is_a_store_error(tmp_path: Path) -> None:
    data = encode(gradient_rgb(), "PNG")
    with pytest.raises(StoreError, match=r"nope\.png"):
        compare(tmp_path / "nope.png", data)


# --------------------------------------------------------------------------- rung 4: shape


def test_dimensions() -> None:
    result = compare(encode(gradient_rgb(96, 64)), encode(gradient_rgb(64, 96)))
    assert not result.same and result.reason == "dimensions"
    assert result.size == (64, 96)
    assert result.ssim is None and result.decided_by is None
    assert "96x64" in result.detail and "64x96" in result.detail


def test_frames_animated_gif_two_vs_three() -> None:
    frames = [np.full((16, 16), v, dtype=np.uint8) for v in (0, 120, 240)]
    two, three = gif(frames[:2]), gif(frames)
    assert decode(two).n_frames == 2 and decode(three).n_frames == 3  # the fixture is right
    result = compare(two, three)
    assert not result.same and result.reason == "frames"
    assert result.frames == 3
    assert result.ssim is None


def test_animated_gif_one_changed_frame_is_dissimilar() -> None:
    base = RNG.integers(0, 256, (32, 32), dtype=np.uint8)
    frames = [base, 255 - base]
    edited = (255 - base).copy()
    edited[8:24, 8:24] = 0  # the second frame only
    changed = [base, edited]
    result = compare(gif(frames), gif(changed))
    assert not result.same and result.reason == "dissimilar"
    assert result.frames == 2


# --------------------------------------------------------------------------- rung 5: pixels


def test_identical_pixels_png_vs_webp_lossless(chelsea: Image.Image, chelsea_png: bytes) -> None:
    result = compare(chelsea_png, encode(chelsea, "WEBP", lossless=True))
    assert result.same and result.reason == "identical-pixels"
    assert (result.ssim, result.nrmse, result.local_ssim, result.local_shift) == (1, 1, 1, 1)
    assert result.size == chelsea.size


def test_identical_pixels_palette_vs_rgb(chelsea: Image.Image) -> None:
    rgb = chelsea.quantize(colors=64).convert("RGB")
    palette = rgb.quantize(colors=256)
    assert palette.mode == "P"
    result = compare(encode(palette, "PNG"), encode(rgb, "PNG"))
    assert result.same and result.reason == "identical-pixels"


def test_identical_pixels_grey_vs_same_grey_as_rgb() -> None:
    grey = Image.fromarray(RNG.integers(0, 256, (40, 50), dtype=np.uint8), "L")
    result = compare(encode(grey, "PNG"), encode(grey.convert("RGB"), "PNG"))
    assert result.same and result.reason == "identical-pixels"


def test_grey_vs_coloured_is_not_identical() -> None:
    grey = Image.fromarray(RNG.integers(0, 256, (40, 50), dtype=np.uint8), "L")
    colour = np.asarray(grey.convert("RGB")).copy()
    colour[..., 0] //= 2  # the red band no longer equals the grey
    result = compare(encode(grey), encode(Image.fromarray(colour, "RGB")))
    assert not result.same and result.reason == "dissimilar"


# --------------------------------------------------------------------------- rung 6-7: similarity


def test_similar_jpeg_q90(chelsea_png: bytes, chelsea_q90: bytes) -> None:
    result = compare(chelsea_png, chelsea_q90)
    assert result.same and result.reason == "similar"
    for metric in METRICS:
        value = getattr(result, metric)
        assert value is not None and getattr(DEFAULTS, metric) <= value < 1.0, metric
    # decided_by names the metric closest to its threshold
    margins = {m: getattr(result, m) - getattr(DEFAULTS, m) for m in METRICS}
    assert result.decided_by == min(margins, key=lambda m: margins[m])
    assert len(result.bands) == 3
    assert result.ssim == min(b.ssim for b in result.bands if b.ssim is not None)
    assert result.nrmse == min(b.nrmse for b in result.bands)
    assert result.local_kind == "ssim"


def test_similar_scores_agree_with_independent_computation(
    chelsea_png: bytes, chelsea_q90: bytes
) -> None:
    a = np.asarray(Image.open(io.BytesIO(chelsea_png)))
    b = np.asarray(Image.open(io.BytesIO(chelsea_q90)))
    result = compare(chelsea_png, chelsea_q90)
    ref_ssim = min(sk_ssim(a[..., k], b[..., k], 255) for k in range(3))
    assert result.ssim == pytest.approx(ref_ssim, abs=1e-6)
    assert result.nrmse == pytest.approx(
        min(ref_nrmse(a[..., k], b[..., k]) for k in range(3)), abs=1e-9
    )


@pytest.mark.parametrize(
    ("change", "metric"),
    [
        pytest.param(lambda im: shifted(im, 12), "local_shift", id="brighter+12->local_shift"),
        pytest.param(lambda im: shifted(im, 30), "nrmse", id="brighter+30->nrmse"),
        pytest.param(lambda im: im.filter(ImageFilter.GaussianBlur(2)), "ssim", id="blur->ssim"),
        pytest.param(lambda im: boxed(im, 0.01), "local_shift", id="box1%->local_shift"),
    ],
)
def test_dissimilar_names_the_metric(
    chelsea: Image.Image, chelsea_png: bytes, change: Any, metric: str
) -> None:
    result = compare(chelsea_png, encode(change(chelsea), "PNG"))
    assert not result.same and result.reason == "dissimilar"
    assert result.decided_by == metric
    assert getattr(result, metric) < getattr(DEFAULTS, metric)
    # the metrics reported before it in ladder order passed
    for earlier in METRICS[: METRICS.index(metric)]:
        assert getattr(result, earlier) >= getattr(DEFAULTS, earlier), earlier
    assert metric in result.detail


def test_brightness_shift_scores_match_the_shift(chelsea: Image.Image, chelsea_png: bytes) -> None:
    a, b = np.asarray(chelsea), np.asarray(shifted(chelsea, 30))
    result = compare(chelsea_png, encode(shifted(chelsea, 30)))
    expected = min(ref_nrmse(a[..., k], b[..., k]) for k in range(3))
    assert result.nrmse == pytest.approx(expected, abs=1e-9)
    assert expected < 1 - 25 / 255  # nearly the whole +30 survives the clipping


def test_small_box_keeps_mean_ssim_high_but_is_caught(
    chelsea: Image.Image, chelsea_png: bytes
) -> None:
    # The point of the local check: mean SSIM barely moves for a 1 % box.
    result = compare(chelsea_png, encode(boxed(chelsea, 0.01)))
    assert result.ssim is not None and result.ssim > 0.95
    assert not result.same


# --------------------------------------------------------------------------- unreadable / errors


def test_disk_unreadable_old_is_html(chelsea_q90: bytes) -> None:
    html = b"<!doctype html><html><body>Not found</body></html>"
    result = compare(html, chelsea_q90)
    assert not result.same and result.reason == "disk-unreadable"
    assert result.ssim is None and result.decided_by is None
    assert "does not decode" in result.detail


def test_new_not_an_image_raises(chelsea_png: bytes) -> None:
    with pytest.raises(DecodeError):
        compare(chelsea_png, b"<html>oops</html>")


def test_new_not_an_image_raises_even_if_old_is_broken() -> None:
    # new is decoded first: a broken candidate is an error, not a verdict
    with pytest.raises(DecodeError):
        compare(b"<html>old</html>", b"<html>new</html>")


def test_new_over_max_pixels_raises() -> None:
    small, big = encode(gradient_rgb(10, 10)), encode(gradient_rgb(40, 40))
    cfg = CompareConfig(max_pixels=1000)
    with pytest.raises(TooManyPixelsError):
        compare(small, big, cfg)
    # the cap comes from a whole Config as well
    with pytest.raises(TooManyPixelsError):
        compare(small, big, Config(compare=cfg))
    assert compare(small, big).reason == "dimensions"  # default cap: no error


def test_old_over_max_pixels_is_disk_unreadable() -> None:
    big_old = encode(gradient_rgb(40, 40))
    new = encode(gradient_rgb(20, 20))
    result = compare(big_old, new, CompareConfig(max_pixels=1000))
    assert result.reason == "disk-unreadable"


# --------------------------------------------------------------------------- input kinds


def as_kind(data: bytes, kind: str, tmp_path: Path, name: str) -> Any:
    if kind == "path":
        p = tmp_path / name
        p.write_bytes(data)
        return p
    if kind == "str":
        p = tmp_path / name
        p.write_bytes(data)
        return str(p)
    if kind == "bytes":
        return data
    if kind == "bytearray":
        return bytearray(data)
    if kind == "memoryview":
        return memoryview(data)
    return Image.open(io.BytesIO(data))  # "pil"


@pytest.mark.parametrize("kind", ["path", "str", "bytes", "bytearray", "memoryview", "pil"])
def test_input_kinds_give_the_same_verdict(
    kind: str, tmp_path: Path, chelsea_png: bytes, chelsea_q90: bytes
) -> None:
    reference = compare(chelsea_png, chelsea_q90)
    result = compare(
        as_kind(chelsea_png, kind, tmp_path, "old.png"),
        as_kind(chelsea_q90, kind, tmp_path, "new.jpg"),
    )
    assert result == reference


def test_pil_image_in_memory(chelsea: Image.Image, chelsea_png: bytes) -> None:
    result = compare(chelsea_png, chelsea.copy())
    assert result.same and result.reason == "identical-pixels"
    result = compare(chelsea, boxed(chelsea))
    assert not result.same and result.reason == "dissimilar"


def test_pil_image_identical_objects_still_decode(chelsea: Image.Image) -> None:
    # identical-bytes needs bytes; two PIL images go down to the pixel rung
    assert compare(chelsea, chelsea).reason == "identical-pixels"


# --------------------------------------------------------------------------- 16-bit grey


@pytest.fixture(scope="module")
def camera16() -> np.ndarray:
    return np.asarray(photo("camera")).astype(np.uint16) * 257


def test_16_bit_decodes_with_full_range(camera16: np.ndarray) -> None:
    decoded = decode(grey16(camera16))
    assert decoded.data_range == 65535
    assert decoded.frames[0].dtype == np.uint16


def test_16_bit_similar(camera16: np.ndarray) -> None:
    noisy = np.clip(camera16 + RNG.normal(0, 150, camera16.shape), 0, 65535).astype(np.uint16)
    result = compare(grey16(camera16), grey16(noisy))
    assert result.same and result.reason == "similar"
    assert result.ssim == pytest.approx(sk_ssim(camera16, noisy, 65535), abs=1e-6)
    assert result.nrmse == pytest.approx(ref_nrmse(camera16, noisy), abs=1e-9)


def test_16_bit_dissimilar(camera16: np.ndarray) -> None:
    edited = camera16.copy()
    edited[150:202, 200:252] = 0  # about 1 % of the area
    result = compare(grey16(camera16), grey16(edited))
    assert not result.same and result.reason == "dissimilar"
    assert result.decided_by == "local_shift"


def test_16_bit_identical_pixels_vs_8_bit_equivalent() -> None:
    # 16-bit v*257 rounds back exactly to the 8-bit v when harmonised
    arr8 = RNG.integers(0, 256, (20, 30), dtype=np.uint8)
    result = compare(grey16(arr8.astype(np.uint16) * 257), encode(Image.fromarray(arr8, "L")))
    assert result.same and result.reason == "identical-pixels"


# --------------------------------------------------------------------------- tiny images


def tiny(arr: np.ndarray) -> bytes:
    return encode(Image.fromarray(arr.astype(np.uint8), "L"), "PNG")


def test_tiny_similar_without_ssim() -> None:
    a = RNG.integers(10, 240, (5, 5))
    a[0, 0], a[4, 4] = 0, 255
    b = a.copy()
    b[2, 2] += 1
    result = compare(tiny(a), tiny(b))
    assert result.same and result.reason == "similar"
    assert result.ssim is None and result.local_kind == "diff"
    assert all(band.ssim is None for band in result.bands)
    assert result.nrmse == pytest.approx(1 - math.sqrt(1 / 25) / 255)
    assert result.decided_by != "ssim"


def test_tiny_dissimilar_decided_by_nrmse() -> None:
    a = np.full((5, 5), 100)
    a[0, 0] = 0
    b = a.copy()
    b[0, 0] = 255  # one pixel over the whole span
    result = compare(tiny(a), tiny(b))
    assert not result.same and result.ssim is None
    assert result.decided_by == "nrmse"
    assert result.nrmse == pytest.approx(1 - math.sqrt(255**2 / 25) / 255)


def test_tiny_dissimilar_decided_by_local_diff() -> None:
    # A strip below the window: zero-mean noise in one 32-column tile leaves the
    # NRMSE over the whole strip and every tile mean alone, but not the tile's RMSE.
    a = np.full((6, 96), 128)
    a[0, 0], a[0, 1] = 0, 255
    b = a.copy()
    checker = np.where((np.add.outer(np.arange(6), np.arange(32)) % 2) == 0, 20, -20)
    b[:, 32:64] += checker  # exactly the middle tile
    result = compare(tiny(a), tiny(b))
    assert result.ssim is None and result.local_kind == "diff"
    assert result.nrmse >= DEFAULTS.nrmse
    assert result.local_shift >= DEFAULTS.local_shift
    assert not result.same and result.decided_by == "local_ssim"
    assert result.local_ssim == pytest.approx(1 - 20 / 255)


def test_tiny_one_pixel_images() -> None:
    result = compare(tiny(np.array([[7]])), tiny(np.array([[200]])))
    assert not result.same and result.ssim is None
    assert result.nrmse == 0.0
    assert compare(tiny(np.array([[7]])), tiny(np.array([[7]]))).reason == "identical-bytes"


# --------------------------------------------------------------------------- result object


def test_to_dict_is_json_serialisable(chelsea: Image.Image, chelsea_png: bytes) -> None:
    result = compare(chelsea_png, encode(boxed(chelsea)), keep_map=True)
    d = result.to_dict()
    back = json.loads(json.dumps(d))
    assert "ssim_map" not in back
    for key in ("same", "reason", "ssim", "nrmse", "local_ssim", "local_shift", "decided_by"):
        assert back[key] == getattr(result, key), key
    assert back["size"] == list(chelsea.size)
    assert len(back["bands"]) == 3 and set(back["bands"][0]) >= {"ssim", "nrmse", "local"}


@pytest.mark.parametrize(
    "result",
    [
        Comparison(same=True, reason="identical-bytes"),
        Comparison(same=False, reason="dimensions", size=(3, 4)),
    ],
)
def test_to_dict_before_similarity(result: Comparison) -> None:
    back = json.loads(json.dumps(result.to_dict()))
    assert back["bands"] == [] and back["ssim"] is None


def test_comparison_is_frozen() -> None:
    result = Comparison(same=True, reason="identical-bytes")
    with pytest.raises(AttributeError):
        result.same = False  # type: ignore[misc]


def test_keep_map_shape(chelsea: Image.Image, chelsea_png: bytes, chelsea_q90: bytes) -> None:
    w, h = chelsea.size
    result = compare(chelsea_png, chelsea_q90, keep_map=True)
    assert result.ssim_map is not None
    assert result.ssim_map.shape == (h - 10, w - 10)
    assert compare(chelsea_png, chelsea_q90).ssim_map is None


def test_keep_map_is_minimum_over_bands() -> None:
    a = np.asarray(gradient_rgb(40, 30)).copy()
    b = a.copy()
    b[10:20, 10:20, 1] = 0  # green only
    result = compare(encode(Image.fromarray(a)), encode(Image.fromarray(b)), keep_map=True)
    assert result.ssim_map is not None
    ref = np.minimum.reduce([sk_ssim(a[..., k], b[..., k], 255, full=True)[1] for k in range(3)])[
        5:-5, 5:-5
    ]
    np.testing.assert_allclose(result.ssim_map, ref, atol=1e-5)


def test_render_diff_map(chelsea: Image.Image, chelsea_png: bytes) -> None:
    result = compare(chelsea_png, encode(boxed(chelsea)), keep_map=True)
    assert result.ssim_map is not None
    unpadded = render_diff_map(result.ssim_map)
    assert unpadded.size == (chelsea.size[0] - 10, chelsea.size[1] - 10)
    heat = render_diff_map(result.ssim_map, size=chelsea.size)
    assert heat.mode == "RGB" and heat.size == chelsea.size
    lum = np.asarray(heat.convert("L")).astype(np.float64)
    x0, y0, side = box_bounds(chelsea)
    inside = np.zeros(lum.shape, dtype=bool)
    inside[y0 - 3 : y0 + side + 3, x0 - 3 : x0 + side + 3] = True  # the box's edges
    assert lum[inside].mean() > 3 * lum[~inside].mean()
    assert lum[~inside].mean() < 128


def test_render_diff_map_identical_is_black() -> None:
    heat = render_diff_map(np.ones((20, 30), dtype=np.float32), size=(40, 30))
    assert heat.size == (40, 30)
    assert np.asarray(heat).max() == 0


def test_compare_decoded_matches_compare(chelsea_png: bytes, chelsea_q90: bytes) -> None:
    assert compare_decoded(decode(chelsea_png), decode(chelsea_q90)) == compare(
        chelsea_png, chelsea_q90
    )


# --------------------------------------------------------------------------- thresholds


@pytest.mark.parametrize("metric", METRICS)
def test_thresholds_change_the_verdict(metric: str, chelsea_png: bytes, chelsea_q90: bytes) -> None:
    base = compare(chelsea_png, chelsea_q90)
    assert base.same
    value = getattr(base, metric)
    strict = CompareConfig(**{metric: min(1.0, value + 1e-4)})
    result = compare(chelsea_png, chelsea_q90, strict)
    assert not result.same and result.reason == "dissimilar"
    assert result.decided_by == metric
    lenient = CompareConfig(**{metric: max(0.0, value - 1e-4)})
    assert compare(chelsea_png, chelsea_q90, Config(compare=lenient)).same


@pytest.mark.parametrize("metric", ["nrmse", "local_shift"])
def test_thresholds_can_accept_a_change(
    metric: str, chelsea: Image.Image, chelsea_png: bytes
) -> None:
    new = encode(shifted(chelsea, 12))
    default = compare(chelsea_png, new)
    assert not default.same
    cfg = CompareConfig(ssim=0.0, nrmse=0.0, local_shift=0.0, local_ssim=0.0)
    assert compare(chelsea_png, new, cfg).same
    only = CompareConfig(**{**{m: 0.0 for m in METRICS}, metric: 0.99})
    assert compare(chelsea_png, new, only).decided_by == metric


def test_tile_size_changes_the_local_scores(chelsea: Image.Image, chelsea_png: bytes) -> None:
    new = encode(boxed(chelsea, 0.002))
    small = compare(chelsea_png, new, CompareConfig(tile=16))
    large = compare(chelsea_png, new, CompareConfig(tile=128))
    assert small.local_shift is not None and large.local_shift is not None
    assert small.local_shift < large.local_shift  # a small box dilutes in a big tile
    assert small.ssim == pytest.approx(large.ssim)


# --------------------------------------------------------------------------- local_shift_score


def brute_shift(x: np.ndarray, y: np.ndarray, tile: int) -> float:
    """Independent reference: windows of 2*(tile//2) every tile//2, clipped at the edges,
    each starting where it is not wholly inside the previous one."""
    half = tile // 2
    span = max(float(x.max()), float(y.max())) - min(float(x.min()), float(y.min()))
    if span == 0:
        return 1.0
    d = x.astype(np.float64) - y.astype(np.float64)

    def starts(n: int) -> list[int]:
        return [s for s in range(0, n, half) if s == 0 or s + half < n]

    worst = 0.0
    for r in starts(d.shape[0]):
        for c in starts(d.shape[1]):
            window = d[r : r + 2 * half, c : c + 2 * half]
            worst = max(worst, abs(float(window.mean())))
    return 1.0 - worst / span


def test_local_shift_box_vs_jpeg_on_a_photo() -> None:
    cam = photo("camera")
    x = np.asarray(cam)
    box = np.asarray(boxed(cam, 0.01, fill=0))
    q85 = np.asarray(Image.open(io.BytesIO(encode(cam, "JPEG", quality=85))))
    assert local_shift_score(x, box, tile=32) < 0.975
    assert local_shift_score(x, q85, tile=32) > 0.975
    assert local_shift_score(x, x, tile=32) == 1.0


def test_local_shift_catches_a_box_straddling_tile_boundaries() -> None:
    # A box of one tile, placed half a tile off the tile grid: a non-overlapping
    # grid would split it into four quarters; an overlapping window holds it whole.
    tile, delta = 32, 40
    x = RNG.integers(60, 190, (128, 128)).astype(np.uint8)
    x[0, 0], x[0, 1] = 0, 255
    y = x.copy()
    y[16:48, 48:80] += delta
    span = 255.0
    assert local_shift_score(x, y, tile=tile) == pytest.approx(1 - delta / span)
    quarter_grid = 1 - delta / 4 / span
    assert local_shift_score(x, y, tile=tile) < quarter_grid - 0.05


def test_local_shift_constant_images() -> None:
    a = np.full((40, 40), 77, dtype=np.uint8)
    assert local_shift_score(a, a, tile=16) == 1.0
    b = np.full((40, 40), 97, dtype=np.uint8)
    assert local_shift_score(a, b, tile=16) == 0.0  # every mean differs by the whole span


def test_local_shift_one_pixel() -> None:
    one = np.array([[3]], dtype=np.uint8)
    assert local_shift_score(one, one, tile=32) == 1.0
    assert local_shift_score(one, np.array([[250]], dtype=np.uint8), tile=32) == 0.0


def test_local_shift_16_bit_no_overflow() -> None:
    x = np.zeros((64, 64), dtype=np.uint16)
    y = np.full((64, 64), 65535, dtype=np.uint16)
    assert local_shift_score(x, y, tile=32) == 0.0
    assert local_shift_score(y, y, tile=32) == 1.0


def test_local_shift_rejects_bad_input() -> None:
    a = np.zeros((8, 8), dtype=np.uint8)
    with pytest.raises(ValueError):
        local_shift_score(a, a, tile=1)
    with pytest.raises(ValueError):
        local_shift_score(a, np.zeros((8, 9), dtype=np.uint8), tile=4)


@pytest.mark.parametrize(
    ("shape", "tile"),
    [((37, 53), 8), ((37, 53), 10), ((16, 16), 32), ((33, 17), 6), ((5, 70), 32), ((40, 41), 7)],
)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float64])
def test_local_shift_matches_brute_force(shape: tuple[int, int], tile: int, dtype: Any) -> None:
    top = 255 if dtype == np.uint8 else 65535
    x = RNG.integers(0, top + 1, shape).astype(dtype)
    y = x.copy()
    # a local edit plus noise, so the worst window is somewhere specific
    noise = RNG.integers(-top // 20, top // 20 + 1, shape)
    y = np.clip(y.astype(np.float64) + noise, 0, top)
    r, c = RNG.integers(0, shape[0]), RNG.integers(0, shape[1])
    y[r : r + 4, c : c + 4] = 0
    y = y.astype(dtype)
    assert local_shift_score(x, y, tile=tile) == pytest.approx(brute_shift(x, y, tile), abs=1e-12)
