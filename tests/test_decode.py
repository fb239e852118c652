"""Tests for fetcher.decode: mode normalisation, orientation, animations, caps and errors."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import tracemalloc
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import encode, gradient_rgb, photo
from PIL import Image, ImageFile

from fetcher import probe
from fetcher.decode import (
    Decoded,
    box_reduce,
    decode,
    decode_image,
    decode_path,
    harmonise,
    read_header,
)
from fetcher.errors import DecodeError, StoreError, TooManyPixelsError
from fetcher.probe import verify

RNG = np.random.default_rng(20261125)

H, W = 24, 32  # non-square, so a wrong rotation cannot pass


def grey_ramp() -> np.ndarray:
    return ((np.arange(H * W) * 7) % 256).astype(np.uint8).reshape(H, W)


def rgb_array() -> np.ndarray:
    return np.asarray(gradient_rgb(W, H))


def rgba_array() -> np.ndarray:
    alpha = ((np.arange(H * W) * 3) % 256).astype(np.uint8).reshape(H, W, 1)
    return np.concatenate([rgb_array(), alpha], axis=2)


PALETTE = RNG.integers(0, 256, size=(16, 3), dtype=np.uint8)
INDICES = (np.arange(H * W) % 16).astype(np.uint8).reshape(H, W)


def palette_image() -> Image.Image:
    img = Image.frombytes("P", (W, H), INDICES.tobytes())
    img.putpalette(PALETTE.tobytes())
    return img


def key_alpha(arr: np.ndarray, key: Any) -> np.ndarray:
    """Alpha 0 where every band equals the key, 255 elsewhere (independent of the module)."""
    mask = np.all(arr.reshape(H, W, -1) == np.asarray(key).reshape(1, 1, -1), axis=2)
    return np.where(mask, 0, 255).astype(np.uint8)[:, :, None]


# --------------------------------------------------------------------------- modes


def _case_1() -> tuple[bytes, str, np.ndarray]:
    bits = grey_ramp() > 127
    return encode(Image.fromarray(bits)), "L", (bits * 255).astype(np.uint8)[:, :, None]


def _case_l() -> tuple[bytes, str, np.ndarray]:
    return encode(Image.fromarray(grey_ramp())), "L", grey_ramp()[:, :, None]


def _case_l_trns() -> tuple[bytes, str, np.ndarray]:
    g = grey_ramp()
    expected = np.concatenate([g[:, :, None], key_alpha(g, 14)], axis=2)
    assert expected[:, :, 1].min() == 0  # the key colour occurs
    return encode(Image.fromarray(g), transparency=14), "LA", expected


def _case_la() -> tuple[bytes, str, np.ndarray]:
    la = rgba_array()[:, :, [0, 3]].copy()
    return encode(Image.fromarray(la, "LA")), "LA", la


def _case_p() -> tuple[bytes, str, np.ndarray]:
    return encode(palette_image()), "RGB", PALETTE[INDICES]


def _case_p_trns() -> tuple[bytes, str, np.ndarray]:
    alpha = np.where(INDICES == 3, 0, 255).astype(np.uint8)[:, :, None]
    expected = np.concatenate([PALETTE[INDICES], alpha], axis=2)
    return encode(palette_image(), transparency=3), "RGBA", expected


def _case_gif_p() -> tuple[bytes, str, np.ndarray]:
    return encode(palette_image(), "GIF"), "RGB", PALETTE[INDICES]


def _case_rgb() -> tuple[bytes, str, np.ndarray]:
    return encode(Image.fromarray(rgb_array())), "RGB", rgb_array()


def _case_rgba() -> tuple[bytes, str, np.ndarray]:
    return encode(Image.fromarray(rgba_array())), "RGBA", rgba_array()


def _case_rgb_trns() -> tuple[bytes, str, np.ndarray]:
    rgb = rgb_array()
    key = tuple(int(v) for v in rgb[5, 7])
    expected = np.concatenate([rgb, key_alpha(rgb, key)], axis=2)
    return encode(Image.fromarray(rgb), transparency=key), "RGBA", expected


def _case_webp_lossless_rgba() -> tuple[bytes, str, np.ndarray]:
    rgba = rgba_array()
    rgba[rgba[:, :, 3] == 0, :3] = 0  # WebP may drop colour under alpha 0
    return encode(Image.fromarray(rgba), "WEBP", lossless=True, exact=True), "RGBA", rgba


def _case_i16() -> tuple[bytes, str, np.ndarray]:
    values = RNG.integers(0, 65536, size=(H, W), dtype=np.uint16)
    values[0, 0], values[0, 1] = 0, 65535
    return encode(Image.fromarray(values)), "I;16", values[:, :, None]


def _case_i16_trns() -> tuple[bytes, str, np.ndarray]:
    values = (grey_ramp().astype(np.uint16) * 257 + 100).astype(np.uint16)
    key = int(values[3, 3])
    grey = np.round(values.astype(np.float64) * 255 / 65535).astype(np.uint8)[:, :, None]
    expected = np.concatenate([grey, key_alpha(values, key)], axis=2)
    return encode(Image.fromarray(values), transparency=key), "LA", expected


def _case_i16b_tiff() -> tuple[bytes, str, np.ndarray]:
    values = RNG.integers(0, 65536, size=(H, W), dtype=np.uint16)
    img = Image.fromarray(values.astype(">u2"))
    assert img.mode == "I;16B"
    return encode(img, "TIFF"), "I;16", values[:, :, None]


def _case_i32_tiff() -> tuple[bytes, str, np.ndarray]:
    values = RNG.integers(-70000, 140000, size=(H, W)).astype(np.int32)
    img = Image.fromarray(values)
    assert img.mode == "I"
    return encode(img, "TIFF"), "I;16", np.clip(values, 0, 65535).astype(np.uint16)[:, :, None]


def _case_float_unit_tiff() -> tuple[bytes, str, np.ndarray]:
    values = RNG.random((H, W)).astype(np.float32)
    expected = np.round(values.astype(np.float64) * 65535).astype(np.uint16)[:, :, None]
    return encode(Image.fromarray(values), "TIFF"), "I;16", expected


def _case_float_wide_tiff() -> tuple[bytes, str, np.ndarray]:
    values = (RNG.random((H, W)) * 80000 - 5000).astype(np.float32)
    values[0, 0] = np.nan
    expected = np.clip(np.round(values.astype(np.float64)), 0, 65535)
    expected[0, 0] = 0
    return encode(Image.fromarray(values), "TIFF"), "I;16", expected.astype(np.uint16)[:, :, None]


MODE_CASES = {
    "1": _case_1,
    "L": _case_l,
    "L+tRNS": _case_l_trns,
    "LA": _case_la,
    "P": _case_p,
    "P+transparency": _case_p_trns,
    "P GIF": _case_gif_p,
    "RGB": _case_rgb,
    "RGBA": _case_rgba,
    "RGB+tRNS": _case_rgb_trns,
    "RGBA WebP lossless": _case_webp_lossless_rgba,
    "I;16 PNG": _case_i16,
    "I;16+tRNS PNG": _case_i16_trns,
    "I;16B TIFF": _case_i16b_tiff,
    "I TIFF": _case_i32_tiff,
    "F TIFF in [0, 1]": _case_float_unit_tiff,
    "F TIFF wide": _case_float_wide_tiff,
}


def check_invariants(d: Decoded) -> None:
    assert d.frames, "at least one frame"
    assert len(d.durations) == d.n_frames == len(d.frames)
    bands = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "I;16": 1}[d.mode]
    dtype = np.uint16 if d.mode == "I;16" else np.uint8
    assert d.data_range == np.iinfo(dtype).max
    for frame in d.frames:
        assert frame.ndim == 3 and frame.shape == (d.size[1], d.size[0], bands)
        assert frame.dtype == dtype
        assert frame.flags.c_contiguous and not frame.flags.writeable


@pytest.mark.parametrize("case", MODE_CASES, ids=list(MODE_CASES))
def test_mode_is_normalised_exactly(case: str) -> None:
    data, mode, expected = MODE_CASES[case]()
    d = decode(data)
    check_invariants(d)
    assert d.mode == mode
    assert d.size == (W, H) and d.n_frames == 1
    np.testing.assert_array_equal(d.frames[0], expected)


@pytest.mark.parametrize(
    ("source_mode", "fmt"),
    [("CMYK", "JPEG"), ("YCbCr", "TIFF"), ("LAB", "TIFF"), ("CMYK", "TIFF"), ("HSV", None)],
)
def test_other_colour_spaces_become_rgb(source_mode: str, fmt: str | None) -> None:
    rgb = rgb_array()
    img = Image.fromarray(rgb).convert(source_mode)
    if fmt is None:
        d = decode_image(img)
        assert d.format is None
    else:
        data = encode(img, fmt, quality=95) if fmt == "JPEG" else encode(img, fmt)
        assert Image.open(io.BytesIO(data)).mode == source_mode
        d = decode(data)
        assert d.format == fmt
    check_invariants(d)
    assert d.mode == "RGB"
    error = np.abs(d.frames[0].astype(int) - rgb.astype(int))
    # colour-space round trips (and JPEG) are close, never a different picture
    assert error.mean() < 4 and np.percentile(error, 99) < 20


def test_in_memory_rgba_premultiplied_and_padded_modes() -> None:
    rgba = rgba_array()
    d = decode_image(Image.fromarray(rgb_array()).convert("RGBX"))
    assert d.mode == "RGB"
    np.testing.assert_array_equal(d.frames[0], rgb_array())
    d = decode_image(Image.fromarray(rgba).convert("RGBa"))
    assert d.mode == "RGBA"
    np.testing.assert_array_equal(d.frames[0][:, :, 3], rgba[:, :, 3])


def test_sixteen_bit_png_keeps_values_not_multiples_of_257() -> None:
    values = np.arange(H * W, dtype=np.uint16).reshape(H, W) * 61 + 3
    d = decode(encode(Image.fromarray(values)))
    assert d.frames[0].dtype == np.uint16 and d.data_range == 65535
    np.testing.assert_array_equal(d.frames[0][:, :, 0], values)


# --------------------------------------------------------------------------- EXIF orientation

# stored pixels = INVERSE[orientation](displayed); the tag tells a viewer how to undo it
INVERSE = {
    1: None,
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def stored_with_orientation(displayed: Image.Image, orientation: int) -> Image.Image:
    method = INVERSE[orientation]
    return displayed if method is None else displayed.transpose(method)


def exif_with(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_png_exact(orientation: int) -> None:
    displayed = Image.fromarray(rgb_array())
    stored = stored_with_orientation(displayed, orientation)
    d = decode(encode(stored, "PNG", exif=exif_with(orientation)))
    assert d.size == (W, H)
    check_invariants(d)
    np.testing.assert_array_equal(d.frames[0], rgb_array())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_jpeg_matches_prerotated(orientation: int) -> None:
    displayed = gradient_rgb(64, 48)
    stored = stored_with_orientation(displayed, orientation)
    tagged = decode(encode(stored, "JPEG", quality=95, exif=exif_with(orientation)))
    upright = decode(encode(displayed, "JPEG", quality=95))
    assert tagged.size == upright.size == (64, 48)
    diff = np.abs(tagged.frames[0].astype(int) - upright.frames[0].astype(int))
    assert diff.mean() < 3, f"orientation {orientation} displayed wrongly"


def test_unreadable_exif_is_ignored() -> None:
    data = encode(Image.fromarray(rgb_array()), "PNG", exif=b"Exif\x00\x00garbage-not-tiff")
    d = decode(data)
    np.testing.assert_array_equal(d.frames[0], rgb_array())


# --------------------------------------------------------------------------- animations


def animation_frames(n: int) -> list[np.ndarray]:
    """Frames that differ a lot and in a sub-rectangle only (exercises GIF disposal)."""
    base = PALETTE[INDICES]
    frames = []
    for i in range(n):
        frame = base.copy()
        frame[2 + i : 10 + i, 4 + 2 * i : 12 + 2 * i] = PALETTE[(i + 5) % 16]
        frames.append(frame)
    return frames


def save_animation(frames: list[Image.Image], fmt: str, **params: Any) -> bytes:
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], **params)


@pytest.mark.parametrize(
    ("fmt", "params"),
    [
        ("GIF", {"loop": 0}),
        ("WEBP", {"lossless": True}),
        ("PNG", {}),
    ],
)
@pytest.mark.parametrize("n", [2, 5])
def test_animation_every_frame(fmt: str, params: dict[str, Any], n: int) -> None:
    frames = animation_frames(n)
    durations = [40 + 20 * i for i in range(n)]
    data = save_animation([Image.fromarray(f) for f in frames], fmt, duration=durations, **params)
    d = decode(data)
    check_invariants(d)
    assert d.n_frames == n and d.format == fmt
    # Pillow's animated WebP writer always sets the alpha flag: RGBA, fully opaque
    assert d.mode == ("RGBA" if fmt == "WEBP" else "RGB")
    for got, want in zip(d.frames, frames, strict=True):
        np.testing.assert_array_equal(got[:, :, :3], want)
        assert (got[:, :, 3:] == 255).all()
    assert d.durations == tuple(durations)
    assert read_header(data, max_pixels=10**6) == (fmt, (W, H), n)


def test_gif_frames_change_mode_and_transparency_makes_all_rgba() -> None:
    def indexed(indices: np.ndarray) -> Image.Image:
        img = Image.frombytes("P", (W, H), indices.astype(np.uint8).tobytes())
        img.putpalette(PALETTE.tobytes())
        return img

    # index 15 is transparent; only the second frame uses it (a hole in the corner)
    first = INDICES % 15
    second = first.copy()
    second[0:4, 0:4] = 15
    third = (first + 1) % 15
    frames = [indexed(i) for i in (first, second, third)]
    data = save_animation(frames, "GIF", transparency=15, disposal=2, optimize=False)
    with Image.open(io.BytesIO(data)) as img:  # Pillow: first frame P, later ones RGBA
        img.seek(1)
        assert img.mode != "P"
    d = decode(data)
    check_invariants(d)
    assert d.mode == "RGBA" and d.n_frames == 3
    for got, indices in zip(d.frames, (first, second, third), strict=True):
        opaque = indices != 15
        np.testing.assert_array_equal(got[opaque][:, :3], PALETTE[indices[opaque]])
        np.testing.assert_array_equal(got[:, :, 3], np.where(opaque, 255, 0))


def test_multipage_tiff_and_mismatched_page_sizes() -> None:
    pages = [Image.fromarray(f) for f in animation_frames(3)]
    d = decode(save_animation(pages, "TIFF"))
    assert d.n_frames == 3
    np.testing.assert_array_equal(d.frames[2], animation_frames(3)[2])
    odd = [*pages[:2], Image.fromarray(rgb_array()[:10, :10])]
    with pytest.raises(DecodeError, match="frame 2 is 10x10"):
        decode(save_animation(odd, "TIFF"))


def test_mpo_counts_its_primary_picture_only() -> None:
    first, second = Image.fromarray(rgb_array()), Image.fromarray(rgb_array()[:, ::-1].copy())
    data = save_animation([first, second], "MPO", quality=95)
    d = decode(data)
    assert d.format == "MPO" and d.n_frames == 1
    assert np.abs(d.frames[0].astype(int) - rgb_array().astype(int)).mean() < 4


def test_decode_image_leaves_caller_image_on_its_frame() -> None:
    data = save_animation([Image.fromarray(f) for f in animation_frames(4)], "GIF")
    with Image.open(io.BytesIO(data)) as img:
        img.seek(2)
        d = decode_image(img)
        assert img.tell() == 2
    assert d.n_frames == 4


# --------------------------------------------------------------------------- caps


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` RGB pixels, with no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body) & 0xFFFFFFFF
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize("call", ["decode", "read_header"])
def test_pixel_cap_refuses_from_header(call: str) -> None:
    blob = png_header_only(100_000, 90_000)  # 9e9 pixels, 27 GB if decoded
    assert len(blob) < 100
    tracemalloc.start()
    with pytest.raises(TooManyPixelsError, match="too many pixels") as info:
        if call == "decode":
            decode(blob, max_pixels=1_000_000)
        else:
            read_header(blob, max_pixels=1_000_000)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert info.value.reason == "too-many-pixels"
    assert peak < 5_000_000  # refused from the header: nothing decoded


def test_pixel_cap_just_at_the_limit_passes() -> None:
    data = encode(Image.fromarray(rgb_array()))
    assert decode(data, max_pixels=W * H).size == (W, H)
    with pytest.raises(TooManyPixelsError):
        decode(data, max_pixels=W * H - 1)


def test_pillow_bomb_limit_maps_to_our_error_without_a_warning() -> None:
    # 10000 x 20000 is over twice Pillow's MAX_IMAGE_PIXELS: Pillow refuses it on open
    blob = png_header_only(10_000, 20_000)
    with pytest.raises(TooManyPixelsError, match="Pillow"):
        read_header(blob, max_pixels=10**12)
    # 10000 x 10000 only warns in Pillow; the warning must not print
    code = (
        "import sys; from fetcher.decode import read_header; "
        "print(read_header(sys.stdin.buffer.read(), max_pixels=10**12))"
    )
    run = subprocess.run(
        [sys.executable, "-W", "default", "-c", code],
        input=png_header_only(10_000, 10_000),
        capture_output=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert run.stdout.strip() == b"('PNG', (10000, 10000), 1)"
    assert run.stderr == b""


def test_frame_cap_and_total_pixels_over_frames() -> None:
    data = save_animation([Image.fromarray(f) for f in animation_frames(4)], "GIF")
    assert decode(data, max_pixels=4 * W * H, max_frames=4).n_frames == 4
    with pytest.raises(DecodeError, match="too many frames") as info:
        decode(data, max_frames=3)
    assert not isinstance(info.value, TooManyPixelsError)
    with pytest.raises(TooManyPixelsError, match="4 frames"):
        decode(data, max_pixels=4 * W * H - 1)


# --------------------------------------------------------------------------- bad input


def jpeg_bytes() -> bytes:
    return encode(gradient_rgb(64, 48), "JPEG", quality=90)


def png_bytes() -> bytes:
    return encode(Image.fromarray(rgb_array()))


BAD_INPUTS: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "empty input"),
    "zero bytes": (b"\x00" * 512, "not an image"),
    "html": (
        b"<!DOCTYPE html>\n<html><head><title>404</title></head></html>",
        "not an image \\(starts with '<!DOCTYPE html",
    ),
    "random": (RNG.bytes(2048), "not an image"),
    "truncated jpeg": (jpeg_bytes()[: len(jpeg_bytes()) // 2], "truncated"),
    "truncated png": (png_bytes()[: len(png_bytes()) // 2], "truncated"),
    "png header only": (png_bytes()[:30], "truncated PNG header"),
    "jpeg header only": (jpeg_bytes()[:4], "JPEG"),
}


@pytest.mark.parametrize("name", BAD_INPUTS, ids=list(BAD_INPUTS))
def test_bad_input_is_a_decode_error_naming_the_cause(name: str) -> None:
    data, pattern = BAD_INPUTS[name]
    with pytest.raises(DecodeError, match=pattern) as info:
        decode(data)
    assert info.value.reason == "not-an-image"
    assert "Traceback" not in str(info.value)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


@pytest.mark.parametrize("make", [jpeg_bytes, png_bytes, lambda: encode(palette_image(), "GIF")])
def test_fuzzed_bytes_only_raise_decode_error(make: Any) -> None:
    fuzz = np.random.default_rng(7)
    original = np.frombuffer(make(), dtype=np.uint8)
    outcomes = {"decoded": 0, "refused": 0}
    for _ in range(100):
        data = original.copy()
        kind = fuzz.integers(3)
        if kind == 0:  # flip a few bytes anywhere
            where = fuzz.integers(0, len(data), size=fuzz.integers(1, 8))
            data[where] = fuzz.integers(0, 256, size=len(where))
        elif kind == 1:  # cut the tail
            data = data[: fuzz.integers(1, len(data))]
        else:  # overwrite a run near the header
            start = fuzz.integers(0, min(len(data), 200))
            data[start : start + 16] = fuzz.integers(0, 256, size=len(data[start : start + 16]))
        try:
            d = decode(data.tobytes(), max_pixels=4_000_000, max_frames=50)
        except DecodeError:
            outcomes["refused"] += 1
        else:
            check_invariants(d)
            outcomes["decoded"] += 1
    assert outcomes["refused"] > 0  # the mutations do break things
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_decode_path_reads_and_names_missing_files(tmp_path: Path) -> None:
    good = tmp_path / "ok.png"
    good.write_bytes(png_bytes())
    np.testing.assert_array_equal(decode_path(good).frames[0], rgb_array())
    missing = tmp_path / "nope.png"
    with pytest.raises(StoreError, match=r"nope\.png") as info:
        decode_path(missing)
    assert info.value.reason == "io-error"
    (tmp_path / "page.png").write_bytes(b"<html></html>")
    with pytest.raises(DecodeError):
        decode_path(tmp_path / "page.png")


# --------------------------------------------------------------------------- harmonise


def decoded(arr: np.ndarray, frames: int = 1) -> Decoded:
    """A Decoded built by hand, so harmonise is tested apart from decoding."""
    arr = arr if arr.ndim == 3 else arr[:, :, None]
    modes = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}
    mode = "I;16" if arr.dtype == np.uint16 else modes[arr.shape[2]]
    return Decoded(
        frames=(arr,) * frames,
        mode=mode,
        size=(arr.shape[1], arr.shape[0]),
        data_range=65535 if arr.dtype == np.uint16 else 255,
        format=None,
        durations=(0,) * frames,
    )


def test_harmonise_identical_layout_returns_same_objects() -> None:
    a, b = decoded(rgb_array()), decoded(rgb_array()[::-1].copy())
    out_a, out_b = harmonise(a, b)
    assert out_a is a and out_b is b


def test_harmonise_grey_against_rgb_replicates_grey() -> None:
    grey, rgb = decoded(grey_ramp()), decoded(rgb_array())
    out_grey, out_rgb = harmonise(grey, rgb)
    assert out_rgb is rgb
    assert out_grey.mode == "RGB" and out_grey.data_range == 255
    for band in range(3):
        np.testing.assert_array_equal(out_grey.frames[0][:, :, band], grey_ramp())


def test_harmonise_adds_opaque_alpha_and_goes_colour() -> None:
    la = decoded(rgba_array()[:, :, [0, 3]].copy())
    rgb = decoded(rgb_array())
    out_la, out_rgb = harmonise(la, rgb)
    assert out_la.mode == out_rgb.mode == "RGBA"
    np.testing.assert_array_equal(out_rgb.frames[0][:, :, :3], rgb_array())
    assert (out_rgb.frames[0][:, :, 3] == 255).all()
    np.testing.assert_array_equal(out_la.frames[0][:, :, 3], rgba_array()[:, :, 3])
    np.testing.assert_array_equal(out_la.frames[0][:, :, 2], rgba_array()[:, :, 0])


def test_harmonise_sixteen_against_eight_rounds() -> None:
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    wide, narrow = decoded(values), decoded(np.zeros((256, 256), np.uint8))
    out_wide, out_narrow = harmonise(wide, narrow)
    assert out_narrow is narrow
    assert out_wide.mode == "L" and out_wide.data_range == 255
    reference = np.floor(values.astype(np.float64) * 255 / 65535 + 0.5)
    np.testing.assert_array_equal(out_wide.frames[0][:, :, 0], reference.astype(np.uint8))
    # and both sides 16-bit stay 16-bit
    both = harmonise(wide, decoded(values[::-1].copy()))
    assert both[0] is wide and both[1].mode == "I;16"


def test_harmonise_every_frame_and_sixteen_bit_against_rgba() -> None:
    values = grey_ramp().astype(np.uint16) * 257
    out_grey, out_rgba = harmonise(decoded(values, frames=3), decoded(rgba_array(), frames=3))
    assert out_grey.n_frames == 3 and out_grey.mode == "RGBA"
    for frame in out_grey.frames:
        np.testing.assert_array_equal(frame[:, :, 1], grey_ramp())
        assert (frame[:, :, 3] == 255).all()
    assert out_rgba.mode == "RGBA"


def test_decode_then_harmonise_palette_gif_equals_rgb_png() -> None:
    gif = decode(encode(palette_image(), "GIF"))
    png = decode(encode(Image.fromarray(PALETTE[INDICES]).convert("RGBA")))
    a, b = harmonise(gif, png)
    assert a.mode == b.mode == "RGBA"
    np.testing.assert_array_equal(a.frames[0], b.frames[0])


# --------------------------------------------------------------------------- verify (rung 2)


def _animated_gif() -> bytes:
    frames = [gradient_rgb(W, H).rotate(90 * i) for i in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buf.getvalue()


VERIFY_SAMPLES = {
    "jpeg": lambda: encode(photo_rgb(), "JPEG", quality=90),
    "progressive jpeg": lambda: encode(photo_rgb(), "JPEG", quality=90, progressive=True),
    "png": lambda: encode(photo_rgb(), "PNG"),
    "webp": lambda: encode(photo_rgb(), "WEBP", quality=80),
    "gif animation": _animated_gif,
}


def photo_rgb() -> Image.Image:
    return photo("astronaut").resize((256, 256))


@pytest.mark.parametrize("kind", sorted(VERIFY_SAMPLES))
def test_verify_agrees_with_decode_on_whole_cut_and_damaged_files(kind: str) -> None:
    """verify() refuses exactly what decode() refuses: cut short, or damaged in the middle."""
    data = VERIFY_SAMPLES[kind]()
    assert verify(data) == decode(data).format
    refused = 0
    for cut in (4, 20, 100, len(data) // 3, len(data) // 2, len(data) - 40, len(data) - 2):
        part = data[:cut]
        try:
            decode(part)
        except DecodeError:
            with pytest.raises(DecodeError):
                verify(part)
            refused += 1
        else:
            verify(part)  # what decodes must also verify
    assert refused >= 5  # the early cuts at least are not images
    for start in (len(data) // 3, len(data) // 2, 2 * len(data) // 3):
        for damage in (b"\x00" * 200, bytes(range(200))):
            spoiled = data[:start] + damage + data[start + 200 :]
            try:
                decode(spoiled)
            except DecodeError:
                with pytest.raises(DecodeError):
                    verify(spoiled)
            else:
                verify(spoiled)


def test_verify_names_the_cause_and_checks_the_caps() -> None:
    with pytest.raises(DecodeError, match="not an image"):
        verify(b"<!DOCTYPE html><html></html>")
    with pytest.raises(DecodeError, match="truncated"):
        verify(encode(photo_rgb(), "JPEG", quality=90)[:-3000])
    with pytest.raises(TooManyPixelsError):
        verify(encode(photo_rgb(), "JPEG"), max_pixels=256 * 255)
    with pytest.raises(DecodeError, match="too many frames"):
        verify(_animated_gif(), max_frames=2)


def test_verify_decodes_a_jpeg_at_reduced_scale_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The JPEG check asks libjpeg for its 1/8 DCT scale: a fraction of the pixels."""
    seen: list[tuple[int, int]] = []
    real_open = probe.open_image

    def spy(data: bytes, **caps: int) -> Image.Image:
        img = real_open(data, **caps)
        original = img.load

        def load() -> Any:
            out = original()
            seen.append(img.size)
            return out

        img.load = load  # type: ignore[method-assign]
        return img

    monkeypatch.setattr(probe, "open_image", spy)
    probe.verify(encode(photo_rgb(), "JPEG", quality=90))
    probe.verify(encode(photo_rgb(), "PNG"))
    assert seen == [(32, 32), (256, 256)]


# --- half size and reductions ------------------------------------------------------------


@pytest.mark.parametrize("mode", ["L", "RGB"])
@pytest.mark.parametrize(("shape", "f"), [((40, 50), 2), ((41, 53), 2), ((37, 29), 3), ((9, 7), 4)])
def test_box_reduce_is_pillows_reduce(mode: str, shape: tuple[int, int], f: int) -> None:
    """The numpy reduction (for frames Pillow does not reduce) rounds exactly as Pillow
    does for the modes Pillow reduces (L and RGB; with alpha Pillow weights by alpha)."""
    bands = len(mode)
    arr = np.random.default_rng(f).integers(0, 256, (*shape, bands), dtype=np.uint8)
    img = Image.fromarray(arr[:, :, 0] if bands == 1 else arr, mode)
    ours = box_reduce(arr, f)
    theirs = np.asarray(img.reduce(f))
    np.testing.assert_array_equal(ours[:, :, 0] if bands == 1 else ours, theirs)


def test_half_size_decodes_agree_across_modes() -> None:
    """A palette PNG (normalised in numpy) and the same picture as RGB (reduced by
    Pillow) give the same half-size and reduced frames."""
    rgb = photo_rgb().resize((420, 390)).quantize(colors=64).convert("RGB")
    a = decode(encode(rgb.quantize(colors=256), "PNG"), half=True, reduction=3)
    b = decode(encode(rgb, "PNG"), half=True, reduction=3)
    assert a.scale == b.scale == 2 and a.size == b.size == (420, 390)
    assert a.frames[0].shape == (195, 210, 3)
    np.testing.assert_array_equal(a.frames[0], b.frames[0])
    assert a.reduced is not None and b.reduced is not None and a.reduction == 3
    assert a.reduced[0].shape == (130, 140, 3)
    np.testing.assert_array_equal(a.reduced[0], b.reduced[0])


def test_a_jpeg_is_halved_by_libjpeg_only_when_allowed() -> None:
    data = encode(photo_rgb().resize((401, 300)), "JPEG", quality=90)
    dct = decode(data, half=True)
    box = decode(data, half=True, dct=False)
    assert dct.scale == box.scale == 2 and dct.size == box.size == (401, 300)
    assert dct.frames[0].shape == box.frames[0].shape == (150, 201, 3)
    assert not np.array_equal(dct.frames[0], box.frames[0])  # two different halvings
    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (200, 150))
        np.testing.assert_array_equal(dct.frames[0], np.asarray(im))
    full = decode(data, half=True, reduction=3)  # an odd reduction from full size: no DCT
    np.testing.assert_array_equal(full.frames[0], box.frames[0])


def test_half_size_keeps_the_displayed_size_of_a_turned_image() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 clockwise to display
    data = encode(photo_rgb().resize((400, 300)), "JPEG", quality=90, exif=exif.tobytes())
    decoded = decode(data, half=True)
    assert decoded.size == (300, 400)
    assert decoded.frames[0].shape == (200, 150, 3)
