"""Tests for fetcher.comparison: every rung and reason, inputs, frames, the map, thresholds."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import encode, gradient_rgb, photo
from PIL import Image, ImageDraw, ImageFilter, ImageFont
from skimage.metrics import structural_similarity

import fetcher.decode
from fetcher import CompareConfig, Config
from fetcher.comparison import METRICS, Comparison, compare, compare_decoded
from fetcher.decode import decode
from fetcher.errors import DecodeError, StoreError, TooManyPixelsError
from fetcher.similarity import wang_factor

RNG = np.random.default_rng(20261126)
DEFAULTS = CompareConfig()


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


def sk_ssim(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """scikit-image's Gaussian SSIM with Wang et al.'s settings (the reference)."""
    return float(
        structural_similarity(
            a,
            b,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=data_range,
        )
    )


def block_means(a: np.ndarray, f: int) -> np.ndarray:
    h, w = a.shape[0] // f * f, a.shape[1] // f * f
    a = a[:h, :w].astype(np.float64)
    means: np.ndarray = a.reshape(h // f, f, w // f, f, *a.shape[2:]).mean(axis=(1, 3))
    return means


def luma(rgb: np.ndarray) -> np.ndarray:
    weighted: np.ndarray = rgb.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
    return weighted


def grey16(arr: np.ndarray) -> bytes:
    return encode(Image.fromarray(arr.astype(np.uint16)), "PNG")  # mode I;16


def big_photo(size: tuple[int, int] = (1024, 768), name: str = "astronaut") -> Image.Image:
    """A photograph upscaled to ``size`` with seeded grain (web photos are not smooth)."""
    img = photo(name).convert("RGB").resize(size, Image.Resampling.LANCZOS)
    grain = np.random.default_rng(3).normal(0, 3, (size[1], size[0], 1))
    return Image.fromarray(np.clip(np.asarray(img) + grain, 0, 255).astype(np.uint8))


def with_text(img: Image.Image, text: str, size: int, where: tuple[int, int]) -> Image.Image:
    out = img.copy()
    ImageDraw.Draw(out).text(where, text, font=ImageFont.load_default(size=size), fill="white")
    return out


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
    assert (result.ssim, result.nrmse, result.local_edit) == (1, 1, 1)
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


@pytest.mark.parametrize(
    "variant",
    ["palette", "grey-as-rgb", "16-bit", "rgba-opaque", "webp-lossless"],
)
def test_identical_pixels_at_sizes_compared_at_half(variant: str) -> None:
    """Above 384 px both sides are halved first; equal pictures stored differently are
    still identical-pixels (decided in full), never similar."""
    base = big_photo((640, 480))
    grey = base.convert("L")
    pairs = {
        "palette": (base.quantize(colors=200).convert("RGB"), base.quantize(colors=200)),
        "grey-as-rgb": (grey, grey.convert("RGB")),
        "16-bit": (grey, Image.fromarray(np.asarray(grey).astype(np.uint16) * 257)),
        "rgba-opaque": (base, base.convert("RGBA")),
        "webp-lossless": (base, None),
    }
    old, new = pairs[variant]
    old_bytes = encode(old, "PNG")
    new_bytes = encode(old, "WEBP", lossless=True) if new is None else encode(new, "PNG")
    result = compare(old_bytes, new_bytes)
    assert result.same and result.reason == "identical-pixels", result.detail


def test_pixels_that_differ_by_one_level_are_not_identical() -> None:
    base = np.asarray(big_photo((640, 480))).copy()
    other = base.copy()
    other[100, 100, 1] ^= 1  # one level, one pixel: equal at half size too, maybe
    result = compare(encode(Image.fromarray(base)), encode(Image.fromarray(other)))
    assert result.reason == "similar" and result.same


# --------------------------------------------------------------------------- rung 6-7: similarity


def test_similar_jpeg_q90(chelsea_png: bytes, chelsea_q90: bytes) -> None:
    result = compare(chelsea_png, chelsea_q90)
    assert result.same and result.reason == "similar"
    for metric in METRICS:
        value = getattr(result, metric)
        assert value is not None and getattr(DEFAULTS, metric) <= value < 1.0, metric
    assert result.decided_by in METRICS and result.decided_by in result.detail
    assert [b.band for b in result.bands] == ["Y", "Cb", "Cr"]
    for metric in METRICS:
        values = [getattr(b, metric) for b in result.bands if getattr(b, metric) is not None]
        assert getattr(result, metric) == min(values), metric


def test_ssim_is_skimage_on_the_reduced_luma(chelsea_png: bytes, chelsea_q90: bytes) -> None:
    """chelsea is 451x300: Wang's f = 1, so SSIM is taken on the luma at full size."""
    a = np.asarray(Image.open(io.BytesIO(chelsea_png)))
    b = np.asarray(Image.open(io.BytesIO(chelsea_q90)))
    result = compare(chelsea_png, chelsea_q90)
    assert result.bands[0].band == "Y"
    assert result.bands[0].ssim == pytest.approx(sk_ssim(luma(a), luma(b), 255), abs=1e-6)


def test_two_jpegs_are_compared_at_half_size_as_decoded_by_libjpeg(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two JPEGs whose f is even: libjpeg halves them at decode (DCT scaling) and the SSIM
    is scikit-image's on those halves reduced by f / 2 (Pillow's reduce). Otherwise both
    are halved by 2 x 2 means and reduced by f from full size."""
    seen: list[tuple[int, int, bool]] = []
    real = fetcher.decode.decode

    def spy(data: bytes, **kwargs: Any) -> Any:
        out = real(data, **kwargs)
        seen.append((out.scale, out.reduction, kwargs["dct"]))
        return out

    monkeypatch.setattr(fetcher.decode, "decode", spy)
    img4 = big_photo((1100, 1024))  # f = 4: even
    old, new = encode(img4, "JPEG", quality=95), encode(img4, "JPEG", quality=85)
    result = compare(old, new)
    assert seen == [(2, 4, True), (2, 4, True)] and result.reason == "similar"
    reduced = []
    for data in (old, new):
        with Image.open(io.BytesIO(data)) as im:
            im.draft("RGB", (550, 512))
            assert im.size == (550, 512)
            reduced.append(luma(np.asarray(im.reduce(2))))
    assert result.bands[0].ssim == pytest.approx(sk_ssim(reduced[0], reduced[1], 255), abs=1e-6)
    seen.clear()
    compare(encode(img4, "PNG"), new)  # not two JPEGs: no DCT halving
    assert seen == [(2, 4, False), (2, 4, False)]
    seen.clear()
    img3 = big_photo((1024, 768))  # f = 3: odd, reduced from full size
    compare(encode(img3, "JPEG", quality=95), encode(img3, "JPEG", quality=85))
    assert [s[:2] for s in seen] == [(2, 3), (2, 3)]


def test_jpegs_equal_at_half_size_are_checked_in_full() -> None:
    """A lossless rewrite (optimised, progressive) has the same pixels: decided in full."""
    img = big_photo((1100, 1024))
    plain = encode(img, "JPEG", quality=90)
    rewritten = encode(img, "JPEG", quality=90, optimize=True, progressive=True)
    assert plain != rewritten
    result = compare(plain, rewritten)
    assert result.same and result.reason == "identical-pixels"


@pytest.mark.parametrize(
    ("change", "failing"),
    [
        pytest.param(lambda im: shifted(im, 30), {"nrmse", "local_edit"}, id="brighter+30"),
        pytest.param(lambda im: im.filter(ImageFilter.GaussianBlur(3)), {"ssim"}, id="blur"),
        pytest.param(lambda im: boxed(im, 0.01), {"local_edit"}, id="box1%"),
    ],
)
def test_dissimilar_names_the_metric(
    chelsea: Image.Image, chelsea_png: bytes, change: Any, failing: set[str]
) -> None:
    result = compare(chelsea_png, encode(change(chelsea), "PNG"))
    assert not result.same and result.reason == "dissimilar"
    below = {m for m in METRICS if getattr(result, m) < getattr(DEFAULTS, m)}
    assert failing <= below
    assert result.decided_by in below
    assert f"{result.decided_by} " in result.detail and "below its threshold" in result.detail


def test_small_box_keeps_mean_ssim_high_but_is_caught(
    chelsea: Image.Image, chelsea_png: bytes
) -> None:
    # The point of the local check: mean SSIM barely moves for a 1 % box.
    result = compare(chelsea_png, encode(boxed(chelsea, 0.01)))
    assert result.ssim is not None and result.ssim > 0.95
    assert not result.same and result.decided_by == "local_edit"


def test_a_price_digit_swapped_at_20px_is_caught_also_when_re_encoded() -> None:
    base = big_photo((1024, 768))
    old = with_text(base, "$19.99", 20, (700, 80))
    new = with_text(base, "$29.99", 20, (700, 80))
    for new_bytes in (encode(new, "PNG"), encode(new, "WEBP", quality=85)):
        result = compare(encode(old, "JPEG", quality=95), new_bytes)
        assert not result.same, result.detail
        # both local scores see it (the local structure by more: it decides)
        assert result.local_edit is not None and result.local_edit < DEFAULTS.local_edit
        assert result.decided_by == "local_structure", result.detail
    assert compare(encode(old, "JPEG", quality=95), encode(old, "WEBP", quality=85)).same


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
    f = wang_factor(*camera16.shape)
    reduced = block_means(camera16, f), block_means(noisy, f)
    assert result.ssim == pytest.approx(sk_ssim(*reduced, 65535), abs=1e-6)


def test_16_bit_dissimilar(camera16: np.ndarray) -> None:
    edited = camera16.copy()
    edited[150:202, 200:252] = 0  # about 1 % of the area
    result = compare(grey16(camera16), grey16(edited))
    assert not result.same and result.reason == "dissimilar"
    assert result.decided_by == "local_edit"


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
    assert result.ssim is None
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
    assert result.decided_by in ("nrmse", "local_edit", "local_structure")
    assert result.nrmse == pytest.approx(1 - math.sqrt(255**2 / 25) / 255)
    assert result.local_edit is not None and result.local_edit < DEFAULTS.local_edit


def test_tiny_one_pixel_images() -> None:
    result = compare(tiny(np.array([[7]])), tiny(np.array([[200]])))
    assert not result.same and result.ssim is None
    assert result.nrmse == 0.0 and result.local_edit == pytest.approx(1 - 193 / 255, abs=1e-6)
    assert compare(tiny(np.array([[7]])), tiny(np.array([[7]]))).reason == "identical-bytes"


# --------------------------------------------------------------------------- result object


def test_to_dict_is_json_serialisable_and_names_agree(
    chelsea: Image.Image, chelsea_png: bytes
) -> None:
    result = compare(chelsea_png, encode(boxed(chelsea)), keep_map=True)
    back = json.loads(json.dumps(result.to_dict()))
    assert not {"edit_map", "edit_limit", "luma"} & set(back)
    for key in ("same", "reason", *METRICS, "decided_by"):
        assert back[key] == getattr(result, key), key
    assert back["size"] == list(chelsea.size)
    assert [band["band"] for band in back["bands"]] == ["Y", "Cb", "Cr"]
    for band in back["bands"]:
        assert set(METRICS) <= set(band)  # the same names per band as at the top
    for metric in METRICS:  # local_structure is the luma's alone (None for other bands)
        assert back[metric] == min(b[metric] for b in back["bands"] if b[metric] is not None)
    assert [b["local_structure"] is None for b in back["bands"]] == [False, True, True]


@pytest.mark.parametrize(
    "result",
    [
        Comparison(same=True, reason="identical-bytes"),
        Comparison(same=False, reason="dimensions", size=(3, 4)),
    ],
)
def test_to_dict_before_similarity(result: Comparison) -> None:
    back = json.loads(json.dumps(result.to_dict()))
    assert back["bands"] == [] and back["ssim"] is None and back["local_edit"] is None


def test_comparison_is_frozen_and_has_no_truth_value() -> None:
    result = Comparison(same=True, reason="identical-bytes")
    with pytest.raises(AttributeError):
        result.same = False  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"use comparison\.same"):
        bool(result)
    with pytest.raises(TypeError):
        if Comparison(same=False, reason="dissimilar"):
            pass


# --------------------------------------------------------------------------- frames


def test_each_score_is_its_own_minimum_over_frames() -> None:
    """A frame failing one check cannot hide behind a frame with a lower value of another.

    Frame 0 carries a small dense edit (low local_edit, SSIM intact); frame 1 carries
    noise (lower SSIM, local_edit intact). With the SSIM threshold loose, only frame 0's
    local_edit fails: the animation is changed."""
    base = np.asarray(photo("camera"))[:128, :128]
    second = np.asarray(photo("camera"))[128:256, :128]
    edited = base.copy()
    edited[40:56, 40:56] = 255
    noisy = np.clip(second + RNG.normal(0, 10, second.shape), 0, 255).astype(np.uint8)
    cfg = CompareConfig(ssim=0.3, nrmse=0.5, local_edit=DEFAULTS.local_edit)
    per_frame = [
        compare(encode(Image.fromarray(a)), encode(Image.fromarray(b)), cfg)
        for a, b in ((base, edited), (second, noisy))
    ]
    assert per_frame[0].local_edit is not None and per_frame[1].ssim is not None
    assert per_frame[1].local_edit is not None
    assert per_frame[0].local_edit < cfg.local_edit and per_frame[1].local_edit >= cfg.local_edit
    assert per_frame[1].ssim < per_frame[0].local_edit  # the raw minimum is frame 1's SSIM
    old = encode(Image.fromarray(base), "PNG")
    frames_old = [Image.fromarray(base), Image.fromarray(second)]
    frames_new = [Image.fromarray(edited), Image.fromarray(noisy)]
    old = encode(frames_old[0], "WEBP", lossless=True, save_all=True, append_images=frames_old[1:])
    new = encode(frames_new[0], "WEBP", lossless=True, save_all=True, append_images=frames_new[1:])
    result = compare(old, new, cfg)
    assert result.frames == 2
    assert not result.same and result.decided_by == "local_edit"
    for metric in METRICS:
        assert getattr(result, metric) == pytest.approx(
            min(getattr(c, metric) for c in per_frame), abs=1e-6
        ), metric


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


def test_thresholds_can_accept_a_change(chelsea: Image.Image, chelsea_png: bytes) -> None:
    new = encode(shifted(chelsea, 12))
    assert not compare(chelsea_png, new).same
    assert compare(chelsea_png, new, CompareConfig(ssim=0.0, nrmse=0.0, local_edit=0.0)).same
    only = CompareConfig(ssim=0.0, nrmse=0.0, local_edit=0.99)
    assert compare(chelsea_png, new, only).decided_by == "local_edit"


@pytest.mark.parametrize("orientation", [3, 6, 8])
@pytest.mark.parametrize("size", [(1024, 768), (1101, 1025)])  # f = 3; f = 4 with odd sides
def test_pixels_stored_turned_with_an_orientation_tag_line_up_with_upright(
    orientation: int, size: tuple[int, int]
) -> None:
    """Turned upright before any reduction: the blocks of both sides cover the same pixels."""
    upright = big_photo(size)
    undo = {
        3: Image.Transpose.ROTATE_180,
        6: Image.Transpose.ROTATE_90,
        8: Image.Transpose.ROTATE_270,
    }
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored = upright.transpose(undo[orientation])
    old = encode(upright, "JPEG", quality=92)
    new = encode(stored, "JPEG", quality=92, exif=exif.tobytes())
    reference = compare(old, encode(upright, "JPEG", quality=91))
    result = compare(old, new)
    assert result.same and result.size == size
    assert result.ssim is not None and reference.ssim is not None
    assert result.ssim > 0.99 and abs(result.ssim - reference.ssim) < 0.01
