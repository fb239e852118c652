"""The labelled set: pairs of encoded images, each labelled same or changed.

Every pair is built in code from real photographs shipped by scikit-image (offline),
or from graphics drawn here (UI screenshots, charts, document scans), so nothing is
committed and everything is deterministic (seeded ``numpy.random.default_rng``).

* **same**: the two files show the same picture; one is a re-encode, a format
  conversion, a metadata or container change of the other, as a CMS or a script does.
* **changed**: the new side was edited (pixels changed *before* encoding it), often
  also re-encoded or converted; each edit is visible to a careful person at 100 % zoom.

Upscaled photos are smoother than web photos, so every photograph gets seeded film
grain after upscaling. Sizes run from 800x600 to 3000x2000 (most at 800x600 to
1280x960); text is drawn with ``PIL.ImageFont.load_default(size=N)``.

Categories named ``"unnamed: ..."`` are kinds the issue's list does not name: dense local
changes that keep the same ink and colour balance, and textures and noise that
compression smooths away. They guard against a score that only learned the named list.

The set is split by source photograph (:func:`split_of`): calibrate on one half and
report the other. ``FETCHER_PAIRS_CACHE=DIR`` keeps built pairs on disk (optional).

Used by ``tests/test_calibration.py``, ``tests/test_pairs.py`` and
``benchmarks/calibrate.py``. Deliberately independent of fetcher's own code.
"""

from __future__ import annotations

import functools
import hashlib
import io
import math
import os
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL
from numpy.typing import NDArray
from PIL import (
    Image,
    ImageCms,
    ImageDraw,
    ImageEnhance,
    ImageFilter,
    ImageFont,
    ImageOps,
    ImageSequence,
)

__all__ = [
    "CHANGED",
    "SAME",
    "SOURCES",
    "VERSION",
    "Pair",
    "Recipe",
    "all_pairs",
    "build_pairs",
    "recipes",
    "split_of",
]

SAME = "same"
CHANGED = "changed"
#: Bump whenever any pair's bytes change. It keys the optional on-disk cache, together
#: with Pillow's version and a hash of this file (so an edit cannot reuse stale pairs).
VERSION = "pairs-3"
CACHE_ENV = "FETCHER_PAIRS_CACHE"


@dataclass(frozen=True)
class Pair:
    name: str  # unique, human readable: "<source> <WxH>: <what>"
    label: str  # SAME or CHANGED
    category: str  # e.g. "jpeg q95 444 -> q80 420", "unnamed: texture patch swapped"
    source: str  # the source photograph (or drawn graphic); the split is by this
    old: bytes
    new: bytes


Frames = tuple[Image.Image, ...]  # one picture: a still (one frame) or an animation
Size = tuple[int, int]
Box = tuple[int, int, int, int]
FloatArray = NDArray[np.float32]
EncodeOld = Callable[[Frames], bytes]
EncodeNew = Callable[[Frames, bytes], bytes]  # (pictures, old bytes) -> new bytes


@dataclass(frozen=True)
class Recipe:
    """How to build one pair: the pictures before encoding, and the two encoders.

    ``scene()`` returns the old and the new picture *before* encoding (for a same
    pair both are the same picture); ``encode_old`` encodes the old one, and
    ``encode_new`` the new one (it also gets the old bytes, for re-encodes of them).
    """

    name: str
    label: str
    category: str
    source: str
    size: Size  # displayed width x height
    frames: int
    scene: Callable[[], tuple[Frames, Frames]]
    encode_old: EncodeOld
    encode_new: EncodeNew

    def build(self) -> Pair:
        old_pic, new_pic = self.scene()
        old = self.encode_old(old_pic)
        new = self.encode_new(new_pic, old)
        return Pair(self.name, self.label, self.category, self.source, old, new)


# --------------------------------------------------------------------------- sources

#: Every source and its half. Fixed by hand so that every category with sources on
#: both sides has at least two in each half (tests/test_pairs.py checks it).
SOURCES: dict[str, str] = {
    # colour photographs
    "astronaut": "calibrate",
    "coffee": "calibrate",
    "hubble_deep_field": "calibrate",
    "immunohistochemistry": "calibrate",
    "chelsea": "holdout",
    "rocket": "holdout",
    "retina": "holdout",
    "colorwheel": "holdout",
    "stereo_motorcycle": "holdout",
    # grey photographs and scans
    "camera": "calibrate",
    "clock": "calibrate",
    "brick": "calibrate",
    "gravel": "calibrate",
    "page": "calibrate",
    "moon": "holdout",
    "cell": "holdout",
    "coins": "holdout",
    "grass": "holdout",
    "text": "holdout",
    # RGBA
    "logo": "calibrate",
    # graphics drawn here
    "ui-shop": "calibrate",
    "ui-dashboard": "calibrate",
    "ui-settings": "holdout",
    "ui-login": "holdout",
    "chart-sales": "calibrate",
    "chart-traffic": "calibrate",
    "chart-energy": "holdout",
    "chart-survey": "holdout",
    "doc-invoice": "calibrate",
    "doc-letter": "holdout",
}


def split_of(source: str) -> str:
    """The half a source belongs to: ``"calibrate"`` or ``"holdout"`` (fixed)."""
    if source in SOURCES:
        return SOURCES[source]
    return ("calibrate", "holdout")[zlib.crc32(source.encode()) % 2]


def _seed(*parts: object) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


def _rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(_seed(*parts))


@functools.cache
def _source_array(name: str) -> NDArray[np.uint8]:
    from skimage import data

    loader: Callable[[], Any] = getattr(data, name.removesuffix("_right"))
    arr = loader()
    if name.startswith("stereo_motorcycle"):  # (left, right, disparity)
        arr = arr[1 if name.endswith("_right") else 0]
    if name == "logo":  # the round logo on a transparent background (it ships opaque)
        yy, xx = np.mgrid[0 : arr.shape[0], 0 : arr.shape[1]]
        r = np.hypot(xx - 250.5, yy - 249.5)
        arr = arr.copy()
        arr[..., 3] = np.clip((243.5 - r) * 255, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr, dtype=np.uint8)


# Crop centre (source pixels) when a source is cropped to the target aspect ratio.
_FOCUS: dict[str, tuple[float, float]] = {
    "astronaut": (256, 200),
    "camera": (256, 220),
    "moon": (256, 200),
    "chelsea": (230, 150),
}

# Points of interest, in source pixels (x0, y0, x1, y1).
_POI: dict[tuple[str, str], tuple[float, float, float, float]] = {
    ("astronaut", "face"): (166, 58, 264, 182),
    ("camera", "face"): (196, 92, 262, 188),
    ("chelsea", "face"): (130, 62, 360, 280),
    ("coins", "face"): (245, 94, 298, 144),
    ("hubble_deep_field", "object"): (700, 442, 760, 502),
    ("camera", "object"): (314, 221, 349, 247),
    ("coffee", "object"): (401, 62, 427, 97),
    ("moon", "object"): (92, 56, 152, 110),
    ("rocket", "object"): (431, 118, 465, 330),
    ("stereo_motorcycle", "object"): (397, 50, 425, 95),
    ("page", "us"): (29, 50, 51, 65),
    ("page", "as"): (107, 86, 129, 101),
    ("page", "either"): (129, 84, 178, 103),
    ("page", "object"): (178, 84, 227, 103),
    ("text", "t"): (168, 141, 232, 170),
    ("text", "n"): (233, 141, 297, 170),
}
# Where to clone the background from, as an offset in source pixels.
_CLONE_FROM: dict[str, tuple[float, float]] = {
    "hubble_deep_field": (-90, 0),
    "camera": (45, 4),
    "coffee": (34, 0),
    "moon": (300, 0),
    "rocket": (-60, 0),
    "stereo_motorcycle": (-30, 0),
}


def _crop_box(source: str, size: Size) -> tuple[float, float, float, float]:
    arr = _source_array(source)
    sh, sw = arr.shape[:2]
    w, h = size
    fx, fy = _FOCUS.get(source, (sw / 2, sh / 2))
    if sw / sh > w / h:
        cw, ch = sh * w / h, float(sh)
    else:
        cw, ch = float(sw), sw * h / w
    x0 = min(max(fx - cw / 2, 0.0), sw - cw)
    y0 = min(max(fy - ch / 2, 0.0), sh - ch)
    return (x0, y0, x0 + cw, y0 + ch)


def _map_box(source: str, size: Size, box: tuple[float, float, float, float]) -> Box:
    """A box in source pixels -> the same box in the rendered picture's pixels."""
    x0, y0, x1, y1 = _crop_box(source, size)
    sx, sy = size[0] / (x1 - x0), size[1] / (y1 - y0)
    return (
        round((box[0] - x0) * sx),
        round((box[1] - y0) * sy),
        round((box[2] - x0) * sx),
        round((box[3] - y0) * sy),
    )


def _poi(source: str, size: Size, what: str) -> Box:
    return _map_box(source, size, _POI[source, what])


_MARGIN = 32  # grain is sliced with this margin, so shifted renders see the same grain
_FIELD = (2200, 3200)  # rows, columns: covers 3000x2000 (and 2000x3000 is not used)


@functools.cache
def _grain_field() -> FloatArray:
    """One seeded field of clumped grain (sigma 1); every picture takes its own window."""
    rng = np.random.default_rng(_seed("grain-field", VERSION))
    n = rng.standard_normal((_FIELD[0] + 1, _FIELD[1] + 1), dtype=np.float32)
    field = n[:-1, :-1] + n[1:, :-1]
    field += n[:-1, 1:]
    field += n[1:, 1:]
    field *= np.float32(0.5)
    return field


def _grain(key: str, size: Size, dx: int = 0, dy: int = 0) -> FloatArray:
    """A window of the grain field chosen by ``key`` and ``size``, moved by (dx, dy)."""
    w, h = size
    m = _MARGIN
    rng = _rng("grain", key, w, h)
    oy = int(rng.integers(0, _FIELD[0] - h - 2 * m + 1))
    ox = int(rng.integers(0, _FIELD[1] - w - 2 * m + 1))
    return _grain_field()[oy + m + dy : oy + m + dy + h, ox + m + dx : ox + m + dx + w]


def _apply_grain(arr: FloatArray, key: str, amount: float, dx: int = 0, dy: int = 0) -> FloatArray:
    """Add film grain to a float picture: luma sigma 3 levels at amount 1 (strongest in
    the mid-tones), clumped over about 2 px, and fainter independent chroma grain."""
    h, w = arr.shape[:2]
    if arr.ndim == 2:
        v = arr * np.float32(1 / 255)
        weight = np.float32(0.6) + np.float32(1.6) * v * (1 - v)
        return arr + _grain(key, (w, h), dx, dy) * np.float32(3.0 * amount) * weight
    out = arr.copy()
    v = out[..., :3].mean(axis=2) * np.float32(1 / 255)
    weight = np.float32(0.6) + np.float32(1.6) * v * (1 - v)
    luma = _grain(key, (w, h), dx, dy) * (np.float32(3.0 * amount) * weight)
    for c in range(3):
        chroma = _grain(f"{key}/chroma{c}", (w, h), dx, dy) * (np.float32(1.2 * amount) * weight)
        out[..., c] += luma + chroma
    return out


def _to_image(arr: NDArray[Any], mode: str | None = None) -> Image.Image:
    out = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    if mode is None:
        mode = "L" if out.ndim == 2 else {3: "RGB", 4: "RGBA"}[out.shape[2]]
    return Image.fromarray(out, mode)


def _f32(img: Image.Image) -> FloatArray:
    return np.asarray(img, dtype=np.float32)


@functools.lru_cache(maxsize=40)
def _render_cached(source: str, w: int, h: int, grain: float, dx: int, dy: int) -> Image.Image:
    arr = _source_array(source)
    mode = "L" if arr.ndim == 2 else ("RGBA" if arr.shape[2] == 4 else "RGB")
    img = Image.fromarray(arr, mode)
    x0, y0, x1, y1 = _crop_box(source, (w, h))
    sx, sy = (x1 - x0) / w, (y1 - y0) / h
    box = (x0 + dx * sx, y0 + dy * sy, x1 + dx * sx, y1 + dy * sy)
    sh, sw = arr.shape[:2]
    assert box[0] >= -1e-6 and box[1] >= -1e-6, (source, box)
    assert box[2] <= sw + 1e-6 and box[3] <= sh + 1e-6, (source, box)
    out = img.resize((w, h), Image.Resampling.LANCZOS, box=box)
    if grain:
        out = _to_image(_apply_grain(_f32(out), source, grain, dx, dy), mode)
    return out


def _render(
    source: str, size: Size, grain: float = 1.0, shift: tuple[int, int] = (0, 0)
) -> Image.Image:
    """The source photograph cropped to the aspect of ``size``, upscaled, with film grain."""
    return _render_cached(source, size[0], size[1], grain, shift[0], shift[1]).copy()


def _pan_axis(source: str, size: Size) -> tuple[int, int]:
    """The direction with room to move the crop (the cropped dimension)."""
    arr = _source_array(source)
    x0, _, x1, _ = _crop_box(source, size)
    return (1, 0) if (x1 - x0) < arr.shape[1] - 1 else (0, 1)


def _render16(source: str, size: Size) -> Image.Image:
    """A grey photograph upscaled in float and stored with 16 bits (mode I;16)."""
    arr = _source_array(source)
    grey = arr if arr.ndim == 2 else np.asarray(Image.fromarray(arr).convert("L"))
    img = Image.fromarray(grey.astype(np.float32), "F")
    out = img.resize(size, Image.Resampling.LANCZOS, box=_crop_box(source, size))
    val = _apply_grain(np.asarray(out, dtype=np.float32), source + "/16", 1.0) * 257.0
    return Image.fromarray(np.clip(np.rint(val), 0, 65535).astype(np.uint16))


# --------------------------------------------------------------------------- encoding


def _save(img: Image.Image, fmt: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def _decode(data: bytes) -> Frames:
    """Every frame, as Pillow composes it, converted to RGB, RGBA, L or I;16."""
    im = Image.open(io.BytesIO(data))
    frames = []
    for frame in ImageSequence.Iterator(im):
        mode = frame.mode
        if mode == "P" or mode == "PA":
            mode = "RGBA" if "transparency" in frame.info or mode == "PA" else "RGB"
        elif mode not in ("RGB", "RGBA", "L", "I;16"):
            mode = "RGB"
        frames.append(frame.convert(mode) if mode != frame.mode else frame.copy())
    return tuple(frames)


def _sequence(frames: Frames, fmt: str, **params: Any) -> bytes:
    if len(frames) == 1:
        return _save(frames[0], fmt, **params)
    return _save(
        frames[0],
        fmt,
        save_all=True,
        append_images=list(frames[1:]),
        duration=120,
        loop=0,
        **params,
    )


def jpeg(q: int, sub: int = 2, **params: Any) -> EncodeOld:
    """JPEG at quality ``q``; ``sub`` 0 = 4:4:4, 2 = 4:2:0 (Pillow's default)."""

    def enc(frames: Frames) -> bytes:
        img = frames[0]
        if img.mode not in ("RGB", "L"):
            img = img.convert("RGB")
        return _save(img, "JPEG", quality=q, subsampling=sub, **params)

    return enc


def webp(q: int | None = None, lossless: bool = False) -> EncodeOld:
    def enc(frames: Frames) -> bytes:
        if lossless:
            return _sequence(frames, "WEBP", lossless=True, quality=20, method=2)
        return _sequence(frames, "WEBP", quality=q)

    return enc


def avif(q: int) -> EncodeOld:
    return lambda frames: _save(frames[0], "AVIF", quality=q)


def png(level: int = 6) -> EncodeOld:
    return lambda frames: _sequence(frames, "PNG", compress_level=level)


def _quantize(img: Image.Image) -> Image.Image:
    return img.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE)


def gif() -> EncodeOld:
    return lambda frames: _sequence(tuple(_quantize(f) for f in frames), "GIF")


def fresh(enc: EncodeOld) -> EncodeNew:
    """The new side encoded from its own pictures."""
    return lambda frames, old: enc(frames)


def from_old(*chain: EncodeOld) -> EncodeNew:
    """The new side: the old file decoded and re-encoded by each encoder in turn."""

    def enc(frames: Frames, old: bytes) -> bytes:
        data = old
        for step in chain:
            data = step(_decode(data))
        return data

    return enc


@functools.cache
def _srgb_icc() -> bytes:
    prof = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    prof[24:36] = bytes([0x07, 0xE8, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0])  # fixed creation date
    return bytes(prof)


@dataclass(frozen=True)
class _Variant:
    """How the two sides of a changed pair are encoded."""

    text: str
    old: EncodeOld
    new: EncodeOld


PLAIN = _Variant("JPEG q90 both", jpeg(90), jpeg(90))
Q95_Q85 = _Variant("old JPEG q95, new JPEG q85", jpeg(95), jpeg(85))
TO_WEBP = _Variant("old JPEG q90, new WebP q85", jpeg(90), webp(85))
TO_AVIF = _Variant("old JPEG q90, new AVIF q70", jpeg(90), avif(70))
PNG_BOTH = _Variant("PNG both", png(), png())
PNG_JPEG = _Variant("old PNG, new JPEG q90", png(), jpeg(90))
PNG_WEBP = _Variant("old PNG, new WebP q85", png(), webp(85))
REENCODED = (Q95_Q85, TO_WEBP, TO_AVIF)


# --------------------------------------------------------------------------- drawing


@functools.cache
def _font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=px)


def _composite(img: Image.Image, overlay: Image.Image) -> Image.Image:
    """Alpha-composite an RGBA overlay onto a picture of any mode, keeping its mode."""
    mode = img.mode
    out = Image.alpha_composite(img.convert("RGBA"), overlay)
    return out if mode == "RGBA" else out.convert(mode)


def _ink(img: Image.Image, rgb: tuple[int, int, int]) -> Any:
    """A colour for ImageDraw in the picture's mode."""
    if img.mode == "L":
        return round(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])
    return rgb


_STYLES: dict[str, tuple[tuple[int, int, int, int] | None, tuple[int, int, int, int]]] = {
    "light": ((255, 255, 255, 225), (25, 25, 30, 255)),
    "dark": ((10, 12, 20, 160), (255, 255, 255, 255)),
    "brand": ((200, 24, 48, 240), (255, 255, 255, 255)),
    "blue": ((20, 90, 220, 240), (255, 255, 255, 255)),
    "bare": (None, (255, 255, 255, 255)),
}


def _caption(
    img: Image.Image,
    lines: Sequence[str],
    px: int,
    at: tuple[float, float],
    style: str,
    reserve: Sequence[str] = (),
) -> Image.Image:
    """Lines of text on a panel; the panel is sized for ``reserve`` too, so the edited
    and the original caption share one layout (only the glyphs differ)."""
    font = _font(px)
    overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    widest = max(draw.textlength(t, font=font) for t in [*lines, *reserve])
    pad, step = round(px * 0.6), round(px * 1.35)
    w, h = round(widest) + 2 * pad, step * len(lines) + 2 * pad - (step - px)
    x0 = round(at[0] * (img.width - w))
    y0 = round(at[1] * (img.height - h))
    panel, colour = _STYLES[style]
    if panel is not None:
        draw.rounded_rectangle([x0, y0, x0 + w, y0 + h], radius=max(3, px // 3), fill=panel)
    else:  # bare white text keeps a soft dark shadow for legibility
        for i, line in enumerate(lines):
            draw.text((x0 + pad + 1, y0 + pad + i * step + 1), line, font=font, fill=(0, 0, 0, 150))
    for i, line in enumerate(lines):
        draw.text((x0 + pad, y0 + pad + i * step), line, font=font, fill=colour)
    return _composite(img, overlay)


def _sticker(
    img: Image.Image, at: tuple[float, float], label: str, colour: tuple[int, int, int]
) -> Image.Image:
    """A round badge covering about 2 % of the picture."""
    w, h = img.size
    r = math.sqrt(0.02 * w * h / math.pi)
    cx, cy = at[0] * w, at[1] * h
    overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    edge = max(2, round(r / 18))
    draw.ellipse(
        [cx - r, cy - r, cx + r, cy + r],
        fill=(*colour, 255),
        outline=(255, 255, 255, 255),
        width=edge,
    )
    font = _font(max(12, round(r * 0.55)))
    draw.text((cx, cy), label, font=font, fill=(255, 255, 255, 255), anchor="mm")
    return _composite(img, overlay)


@functools.cache
def _logo_rgba(px: int) -> Image.Image:
    return Image.fromarray(_source_array("logo"), "RGBA").resize((px, px), Image.Resampling.LANCZOS)


def _text_logo(px: int) -> Image.Image:
    """A small wordmark: a coloured tile with a letter pair and an arrow."""
    out = Image.new("RGBA", (px * 2, px), (0, 0, 0, 0))
    draw = ImageDraw.Draw(out)
    draw.rounded_rectangle([0, 0, px * 2 - 1, px - 1], radius=px // 5, fill=(240, 120, 20, 255))
    draw.text(
        (px // 6, px // 2),
        "Nw",
        font=_font(round(px * 0.6)),
        fill=(255, 255, 255, 255),
        anchor="lm",
    )
    tip = px * 2 - px // 6
    draw.polygon(
        [(tip - px // 2, px // 4), (tip, px // 2), (tip - px // 2, px * 3 // 4)],
        fill=(255, 255, 255, 255),
    )
    return out


def _paste_logo(img: Image.Image, logo: Image.Image, corner: str) -> Image.Image:
    w, h = img.size
    m = round(0.03 * min(w, h))
    x = m if "l" in corner else w - logo.width - m
    y = m if "t" in corner else h - logo.height - m
    overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
    overlay.paste(logo, (x, y))
    return _composite(img, overlay)


def _qr_grid(seed: int, n: int = 25) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """A QR-like module grid (True = dark): three finder squares with their white
    separators, timing lines, random data. Returns the grid and the data-module mask."""
    rng = np.random.default_rng(seed)
    dark = rng.random((n, n)) < 0.5
    data = np.ones((n, n), dtype=bool)
    finder = np.zeros((7, 7), dtype=bool)
    finder[[0, 6], :] = True
    finder[:, [0, 6]] = True
    finder[2:5, 2:5] = True
    for y, x in ((0, 0), (0, n - 7), (n - 7, 0)):
        ys, xs = slice(max(y - 1, 0), y + 8), slice(max(x - 1, 0), x + 8)
        dark[ys, xs] = False  # the separator ring stays white
        data[ys, xs] = False
        dark[y : y + 7, x : x + 7] = finder
    dark[6, 8 : n - 8] = np.arange(8, n - 8) % 2 == 0
    dark[8 : n - 8, 6] = np.arange(8, n - 8) % 2 == 0
    data[6, :] = False
    data[:, 6] = False
    return dark, data


def _qr_image(dark: NDArray[np.bool_], module: int) -> Image.Image:
    quiet = 2
    grid = np.pad(~dark, quiet, constant_values=True)
    pix = np.kron(grid, np.ones((module, module), dtype=bool))
    return Image.fromarray(np.where(pix, 255, 16).astype(np.uint8), "L")


def _halftone(img: Image.Image, period: float) -> Image.Image:
    """An amplitude-modulated halftone screen (45 deg dots; per channel at 15/75/0 deg)."""
    arr = _f32(img) / 255.0
    h, w = arr.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)

    def screen(angle: float) -> FloatArray:
        a = math.radians(angle)
        u = (xx * math.cos(a) + yy * math.sin(a)) * (2 * math.pi / period)
        v = (-xx * math.sin(a) + yy * math.cos(a)) * (2 * math.pi / period)
        out: FloatArray = (np.cos(u) + np.cos(v)) * np.float32(0.25) + np.float32(0.5)
        return out

    if arr.ndim == 2:
        ink = (1 - arr) > screen(45)
        out = np.where(ink, 24.0, 246.0).astype(np.float32)
    else:
        out = np.empty_like(arr)
        for c, angle in enumerate((15.0, 75.0, 0.0)):
            out[..., c] = np.where((1 - arr[..., c]) > screen(angle), 70.0, 242.0)  # real inks
    soft = _to_image(out).filter(ImageFilter.GaussianBlur(0.5 if arr.ndim == 2 else 0.8))
    return soft


def _low_contrast(img: Image.Image, low: int, span: int = 20) -> Image.Image:
    """Squeeze the picture into ``span`` levels starting at ``low`` (fog, a faded scan)."""
    arr = _f32(img)
    lo, hi = np.percentile(arr, [0.5, 99.5])
    out = low + (arr - lo) * (span / max(hi - lo, 1.0))
    return _to_image(np.clip(out, low, low + span))


def _low_light(img: Image.Image, key: str) -> Image.Image:
    """A dim, high-ISO version: darkened, with strong luma and chroma noise."""
    arr = _f32(img) / 255.0
    dim = 255.0 * np.power(arr, 1.6) * 0.7
    rng = _rng("iso", key)
    noise = rng.standard_normal(dim.shape, dtype=np.float32) * 7.0
    if dim.ndim == 3:
        noise += rng.standard_normal(dim.shape[:2], dtype=np.float32)[..., None] * 4.0
    return _to_image(dim + noise)


def _cutout(img: Image.Image, source: str) -> Image.Image:
    """An RGBA product cut-out: the subject opaque, the background transparent."""
    w, h = img.size
    if source == "coins":
        grey = np.asarray(img.convert("L").filter(ImageFilter.GaussianBlur(3)), dtype=np.float32)
        alpha = np.clip((grey - 70) * 8, 0, 255)
        mask = _to_image(alpha).filter(ImageFilter.GaussianBlur(1.5))
    else:
        mask = Image.new("L", img.size, 0)
        ImageDraw.Draw(mask).ellipse([w * 0.12, h * 0.05, w * 0.88, h * 0.97], fill=255)
        mask = mask.filter(ImageFilter.GaussianBlur(max(2, w / 300)))
    out = img.convert("RGBA")
    out.putalpha(mask)
    return out


def _rotate_small(img: Image.Image, degrees: float) -> Image.Image:
    """Rotate about the centre and zoom just enough that no corner is empty."""
    w, h = img.size
    t = math.radians(degrees)
    s = math.cos(t) + math.sin(abs(t)) * max(w / h, h / w) + 0.002
    a, b = math.cos(t) / s, -math.sin(t) / s
    d, e = math.sin(t) / s, math.cos(t) / s
    cx, cy = w / 2, h / 2
    data = (a, b, cx - a * cx - b * cy, d, e, cy - d * cx - e * cy)
    return img.transform(img.size, Image.Transform.AFFINE, data, resample=Image.Resampling.BICUBIC)


def _gamma(img: Image.Image, g: float) -> Image.Image:
    lut = [round(255 * (i / 255) ** g) for i in range(256)]
    return img.point(lut * len(img.getbands()))


def _blur_region(img: Image.Image, box: Box) -> Image.Image:
    """Blur an elliptical region (a face) with a feathered edge, as privacy tools do."""
    radius = max(4.0, (box[2] - box[0]) / 9)
    blurred = img.filter(ImageFilter.GaussianBlur(radius))
    mask = Image.new("L", img.size, 0)
    ImageDraw.Draw(mask).ellipse(box, fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(radius / 3))
    return Image.composite(blurred, img, mask)


def _patch_out(img: Image.Image, box: Box, offset: tuple[int, int]) -> Image.Image:
    """Clone the background from ``offset`` away over ``box`` (feathered), as a stamp tool."""
    x0, y0, x1, y1 = box
    dx, dy = offset
    f = max(3, (x1 - x0) // 8)
    src = img.crop((x0 - f + dx, y0 - f + dy, x1 + f + dx, y1 + f + dy))
    mask = Image.new("L", src.size, 0)
    ImageDraw.Draw(mask).rectangle(
        [f // 2, f // 2, src.width - f // 2, src.height - f // 2], fill=255
    )
    mask = mask.filter(ImageFilter.GaussianBlur(f / 3))
    out = img.copy()
    out.paste(src, (x0 - f, y0 - f), mask)
    return out


def _transplant(out: Image.Image, img: Image.Image, src: Box, dst: Box) -> None:
    """Paste ``img``'s ``src`` box over ``dst`` in ``out`` as a careful retoucher does:
    the patch's paper and ink levels matched to the destination's, its edge feathered."""
    size = (dst[2] - dst[0], dst[3] - dst[1])
    patch = _f32(img.crop(src).resize(size, Image.Resampling.BICUBIC))
    target = _f32(img.crop(dst))
    (p_ink, p_paper), (t_ink, t_paper) = (
        np.percentile(a, [5, 80], axis=(0, 1)) for a in (patch, target)
    )
    gain = np.clip((t_paper - t_ink) / np.maximum(p_paper - p_ink, 1.0), 0.7, 1.4)
    patch = (patch - p_paper) * gain + t_paper
    f = max(2, min(size) // 8)
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).rectangle(
        [f // 2, f // 2, size[0] - 1 - f // 2, size[1] - 1 - f // 2], fill=255
    )
    out.paste(_to_image(patch, img.mode), dst[:2], mask.filter(ImageFilter.GaussianBlur(f / 3)))


def _copy_box(img: Image.Image, src: Box, dst: Box) -> Image.Image:
    out = img.copy()
    _transplant(out, img, src, dst)
    return out


def _swap_boxes(img: Image.Image, a: Box, b: Box) -> Image.Image:
    out = img.copy()
    _transplant(out, img, b, a)
    _transplant(out, img, a, b)
    return out


def _tint(img: Image.Image, box: Box, colour: tuple[int, int, int], strength: float) -> Image.Image:
    region = img.crop(box)
    tinted = Image.blend(region, Image.new(region.mode, region.size, colour), strength)
    out = img.copy()
    out.paste(tinted, box[:2])
    return out


def _frac_box(size: Size, fx0: float, fy0: float, fx1: float, fy1: float) -> Box:
    w, h = size
    return (round(fx0 * w), round(fy0 * h), round(fx1 * w), round(fy1 * h))


# --- UI screenshots and charts (drawn; no grain: screenshots are clean) -----------

_WORDS = " ".join(
    [
        "account orders invoice report search filter export settings profile billing team",
        "project status review archive update backup storage network privacy members notes",
        "calendar tasks inbox delivery payment refund product stock price summary weekly",
        "monthly region market target budget growth traffic visits source channel device",
    ]
).split()
_SATURATED = [
    (26, 115, 232),
    (217, 48, 37),
    (24, 128, 56),
    (123, 31, 162),
    (245, 124, 0),
    (0, 137, 123),
]


def _words(rng: np.random.Generator, n: int, cap: bool = True) -> str:
    text = " ".join(str(w) for w in rng.choice(_WORDS, n))
    return text.capitalize() if cap else text


def _icon(draw: ImageDraw.ImageDraw, kind: str, box: Box, colour: Any) -> None:
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    lw = max(2, w // 8)
    if kind == "arrow":
        draw.rectangle([x0 + w * 0.1, y0 + h * 0.42, x0 + w * 0.6, y0 + h * 0.58], fill=colour)
        draw.polygon(
            [
                (x0 + w * 0.55, y0 + h * 0.2),
                (x0 + w * 0.92, y0 + h * 0.5),
                (x0 + w * 0.55, y0 + h * 0.8),
            ],
            fill=colour,
        )
    elif kind == "play":
        draw.polygon(
            [
                (x0 + w * 0.25, y0 + h * 0.15),
                (x0 + w * 0.85, y0 + h * 0.5),
                (x0 + w * 0.25, y0 + h * 0.85),
            ],
            fill=colour,
        )
    elif kind == "corner":
        draw.rectangle([x0 + w * 0.15, y0 + h * 0.15, x0 + w * 0.35, y0 + h * 0.85], fill=colour)
        draw.rectangle([x0 + w * 0.15, y0 + h * 0.65, x0 + w * 0.85, y0 + h * 0.85], fill=colour)
    elif kind == "check":
        draw.line(
            [
                (x0 + w * 0.15, y0 + h * 0.55),
                (x0 + w * 0.4, y0 + h * 0.8),
                (x0 + w * 0.88, y0 + h * 0.22),
            ],
            fill=colour,
            width=lw,
        )
    elif kind == "star":
        pts = []
        for i in range(10):
            r = (w / 2) * (1.0 if i % 2 == 0 else 0.45)
            a = -math.pi / 2 + i * math.pi / 5
            pts.append((x0 + w / 2 + r * math.cos(a), y0 + h / 2 + r * math.sin(a)))
        draw.polygon(pts, fill=colour)
    elif kind == "bell":
        draw.pieslice(
            [x0 + w * 0.15, y0 + h * 0.1, x0 + w * 0.85, y0 + h * 0.9], 180, 360, fill=colour
        )
        draw.rectangle([x0 + w * 0.15, y0 + h * 0.5, x0 + w * 0.85, y0 + h * 0.72], fill=colour)
        draw.ellipse([x0 + w * 0.4, y0 + h * 0.74, x0 + w * 0.6, y0 + h * 0.94], fill=colour)
    else:  # "user"
        draw.ellipse([x0 + w * 0.3, y0 + h * 0.08, x0 + w * 0.7, y0 + h * 0.48], fill=colour)
        draw.pieslice(
            [x0 + w * 0.1, y0 + h * 0.55, x0 + w * 0.9, y0 + h * 1.35], 180, 360, fill=colour
        )


@dataclass(frozen=True)
class _Drawn:
    img: Image.Image
    icons: tuple[tuple[str, Box], ...] = ()  # rotatable icons on a plain background
    bars: tuple[Box, ...] = ()


@functools.lru_cache(maxsize=8)
def _ui(name: str, size: Size) -> _Drawn:
    """A web-app screenshot: top bar, sidebar, cards with saturated buttons (white
    text), small icons, a table, and a small chart with thin lines and a legend."""
    rng = _rng("ui", name)
    w, h = size
    s = w / 1280
    dark = name == "ui-login"
    bg = (32, 33, 36) if dark else (244, 245, 247)
    card_bg = (48, 49, 54) if dark else (255, 255, 255)
    fg = (232, 234, 237) if dark else (32, 33, 36)
    muted = (154, 160, 166) if dark else (95, 99, 104)
    accent = _SATURATED[int(rng.integers(len(_SATURATED)))]
    img = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(img)

    def px(v: float) -> int:
        return max(1, round(v * s))

    bar_h = px(56)
    draw.rectangle([0, 0, w, bar_h], fill=accent)
    draw.text(
        (px(24), bar_h // 2),
        name.split("-")[1].capitalize() + " - Northwind",
        font=_font(px(20)),
        fill="white",
        anchor="lm",
    )
    for i, kind in enumerate(("bell", "star", "user")):
        x = w - px(40) * (i + 1)
        _icon(draw, kind, (x, px(18), x + px(20), px(38)), "white")
    side_w = px(220)
    draw.rectangle([0, bar_h, side_w, h], fill=card_bg)
    icons: list[tuple[str, Box]] = []
    for i in range(9):
        y = bar_h + px(20) + i * px(42)
        if i == 2:
            draw.rectangle(
                [0, y - px(8), side_w, y + px(28)],
                fill=tuple(int(c * 0.15 + b * 0.85) for c, b in zip(accent, card_bg, strict=True)),
            )
        kind = ("arrow", "corner", "play", "check", "star", "bell", "user", "arrow", "corner")[i]
        box = (px(20), y, px(20) + px(20), y + px(20))
        _icon(draw, kind, box, accent)
        if kind in ("arrow", "corner", "play"):
            icons.append((kind, (box[0] - px(4), box[1] - px(4), box[2] + px(4), box[3] + px(4))))
        draw.text((px(52), y + px(10)), _words(rng, 1), font=_font(px(15)), fill=fg, anchor="lm")
    gap = px(24)
    cw = (w - side_w - 4 * gap) // 3
    ch = (h - bar_h - 3 * gap) // 2
    labels = ["Buy now", "Save", "Delete", "Upgrade", "Send", "Export"]
    for k in range(6):
        cx = side_w + gap + (k % 3) * (cw + gap)
        cy = bar_h + gap + (k // 3) * (ch + gap)
        draw.rounded_rectangle(
            [cx, cy, cx + cw, cy + ch],
            radius=px(8),
            fill=card_bg,
            outline=(70, 72, 77) if dark else (218, 220, 224),
        )
        draw.text((cx + px(16), cy + px(16)), _words(rng, 2), font=_font(px(18)), fill=fg)
        if k == 1:  # a table
            for r in range(6):
                ty = cy + px(52) + r * px(30)
                if ty + px(30) > cy + ch - px(60):
                    break
                draw.text((cx + px(16), ty), _words(rng, 1), font=_font(px(14)), fill=fg)
                draw.text(
                    (cx + cw - px(16), ty),
                    f"{int(rng.integers(10, 999))}.{int(rng.integers(10, 99))}",
                    font=_font(px(14)),
                    fill=fg,
                    anchor="ra",
                )
                draw.line(
                    [cx + px(12), ty + px(24), cx + cw - px(12), ty + px(24)],
                    fill=(70, 72, 77) if dark else (230, 232, 235),
                    width=1,
                )
        elif k == 4:  # a small chart: thin lines, a legend
            ox, oy = cx + px(40), cy + ch - px(50)
            draw.line([ox, cy + px(50), ox, oy, cx + cw - px(16), oy], fill=muted, width=1)
            n = 12
            for sidx, col in enumerate((_SATURATED[0], _SATURATED[1])):
                vals = np.cumsum(rng.normal(0, 1, n)) + 5 + sidx * 2
                vals = (vals - vals.min()) / max(float(np.ptp(vals)), 1e-6)
                pts = [
                    (ox + i * (cw - px(60)) / (n - 1), oy - px(10) - v * (oy - cy - px(70)))
                    for i, v in enumerate(vals)
                ]
                draw.line(pts, fill=col, width=1)
                lx = cx + px(16) + sidx * px(110)
                draw.rectangle([lx, cy + ch - px(28), lx + px(10), cy + ch - px(18)], fill=col)
                draw.text(
                    (lx + px(16), cy + ch - px(23)),
                    _words(rng, 1, cap=False),
                    font=_font(px(12)),
                    fill=muted,
                    anchor="lm",
                )
        else:
            for r in range(3):
                draw.text(
                    (cx + px(16), cy + px(52) + r * px(22)),
                    _words(rng, 4, cap=False),
                    font=_font(px(14)),
                    fill=muted,
                )
            colour = _SATURATED[(k + int(rng.integers(3))) % len(_SATURATED)]
            bx, by = cx + px(16), cy + ch - px(56)
            draw.rounded_rectangle([bx, by, bx + px(120), by + px(38)], radius=px(6), fill=colour)
            draw.text(
                (bx + px(60), by + px(19)), labels[k], font=_font(px(16)), fill="white", anchor="mm"
            )
            for i, kind in enumerate(("play", "arrow", "corner")):
                ix = cx + cw - px(36) * (i + 1)
                box = (ix, by + px(9), ix + px(20), by + px(29))
                _icon(draw, kind, box, muted)
                icons.append(
                    (kind, (box[0] - px(4), box[1] - px(4), box[2] + px(4), box[3] + px(4)))
                )
    return _Drawn(img, tuple(icons))


@functools.lru_cache(maxsize=8)
def _chart(name: str, size: Size, taller: int = -1) -> _Drawn:
    """A bar chart with a thin line series, gridlines, a title and a legend; bar
    ``taller`` is drawn 10 % taller (the axis stays)."""
    rng = _rng("chart", name)
    w, h = size
    s = min(w / 1200, h / 800)

    def px(v: float) -> int:
        return max(1, round(v * s))

    img = Image.new("RGB", size, (255, 255, 255))
    draw = ImageDraw.Draw(img)
    n = int(rng.integers(6, 10))
    values = rng.uniform(25, 80, n)
    line = np.clip(values * rng.uniform(0.7, 1.2, n), 5, 95)  # a second series, not edited
    if taller >= 0:
        values[taller] *= 1.10
    colour = _SATURATED[int(rng.integers(len(_SATURATED)))]
    line_colour = _SATURATED[(_SATURATED.index(colour) + 1) % len(_SATURATED)]
    left, right, top, bottom = px(90), w - px(40), px(90), h - px(80)
    draw.text(
        (left, px(30)), _words(rng, 3) + f" {2020 + n}", font=_font(px(26)), fill=(30, 30, 30)
    )
    for g in range(0, 101, 20):
        y = bottom - (bottom - top) * g / 100
        draw.line([left, y, right, y], fill=(225, 225, 225), width=1)
        draw.text((left - px(10), y), str(g), font=_font(px(14)), fill=(90, 90, 90), anchor="rm")
    draw.line([left, top, left, bottom, right, bottom], fill=(60, 60, 60), width=1)
    slot = (right - left) / n
    bars = []
    for i, v in enumerate(values):
        x0 = round(left + slot * (i + 0.2))
        x1 = round(left + slot * (i + 0.8))
        y0 = round(bottom - (bottom - top) * v / 100)
        draw.rectangle([x0, y0, x1, bottom - 1], fill=colour)
        bars.append((x0, y0, x1, bottom))
        draw.text(
            ((x0 + x1) / 2, bottom + px(8)),
            _words(rng, 1)[:3],
            font=_font(px(14)),
            fill=(90, 90, 90),
            anchor="ma",
        )
    pts = [(left + slot * (i + 0.5), bottom - (bottom - top) * v / 100) for i, v in enumerate(line)]
    draw.line(pts, fill=line_colour, width=max(1, px(2)))
    for x, y in pts:
        r = px(4)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=line_colour)
    lx = right - px(260)
    for j, (col, label) in enumerate(((colour, _words(rng, 1)), (line_colour, _words(rng, 1)))):
        y = px(36) + j * px(24)
        draw.rectangle([lx, y, lx + px(14), y + px(14)], fill=col)
        draw.text(
            (lx + px(22), y + px(7)), label, font=_font(px(15)), fill=(60, 60, 60), anchor="lm"
        )
    return _Drawn(img, bars=tuple(bars))


# --- document scans (drawn: paper, ink, scanner blur and noise) --------------------


def _doc_lines(name: str) -> list[str]:
    rng = _rng("doc", name)
    if name == "doc-invoice":
        lines = ["INVOICE 2025-0417", "", "Northwind Supplies, 14 Harbour Road"]
        for i in range(14):
            count, euros, cents = (int(rng.integers(a, b)) for a, b in ((1, 30), (2, 99), (10, 99)))
            lines.append(f"{i + 1:2d}  {_words(rng, 3):40s}  {count} x {euros}.{cents}")
        lines += [
            "",
            "Payment due within 30 days of the invoice date.",
            "Thank you for your order.",
        ]
        return lines
    lines = ["Dear Ms Holloway,", ""]
    for _ in range(22):
        lines.append(_words(rng, int(rng.integers(7, 10))) + ".")
    lines += ["", "Yours sincerely,", "J. Marsh"]
    return lines


@functools.lru_cache(maxsize=4)
def _paper(name: str, size: Size) -> FloatArray:
    w, h = size
    rng = _rng("paper", name)
    low = Image.fromarray(rng.normal(0, 1, (h // 32 + 2, w // 32 + 2)).astype(np.float32), "F")
    blotch = np.asarray(low.resize(size, Image.Resampling.BICUBIC), dtype=np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    paper: FloatArray = 236 - 10 * (xx / w) - 6 * (yy / h) + 2.5 * blotch
    return paper


def _doc(name: str, size: Size, lines: Sequence[str], px: int) -> Image.Image:
    """A scanned page: text on uneven paper, blurred by the optics, with sensor noise."""
    w, h = size
    ink = Image.new("L", size, 0)
    draw = ImageDraw.Draw(ink)
    y = round(h * 0.07)
    for i, line in enumerate(lines):
        size_i = round(px * 1.4) if i == 0 else px
        draw.text((round(w * 0.09), y), line, font=_font(size_i), fill=255)
        y += round(size_i * 1.55)
    mask = np.asarray(ink.filter(ImageFilter.GaussianBlur(0.6)), dtype=np.float32) / 255.0
    paper = _paper(name, size)
    arr = paper - mask * (paper - 38.0)
    return _to_image(_apply_grain(arr, "scan/" + name, 0.8))


def _doc_word_box(size: Size, lines: Sequence[str], px: int, line: int) -> Box:
    """Where line ``line`` of a :func:`_doc` page is (for tests)."""
    w, h = size
    y = round(h * 0.07)
    for i in range(line):
        y += round((round(px * 1.4) if i == 0 else px) * 1.55)
    return (round(w * 0.09), y, w, y + round(px * 1.3))


# --------------------------------------------------------------------------- recipes

S: Size = (800, 600)
M: Size = (1024, 768)
L: Size = (1280, 960)
X: Size = (2000, 1500)
XX: Size = (3000, 2000)


def _name(source: str, size: Size, what: str) -> str:
    return f"{source} {size[0]}x{size[1]}: {what}"


def _same(
    category: str,
    source: str,
    size: Size,
    what: str,
    picture: Callable[[], Image.Image | Frames],
    old: EncodeOld,
    new: EncodeNew,
) -> Recipe:
    def scene() -> tuple[Frames, Frames]:
        pic = picture()
        frames = pic if isinstance(pic, tuple) else (pic,)
        return frames, frames

    return Recipe(_name(source, size, what), SAME, category, source, size, 1, scene, old, new)


def _changed(
    category: str,
    source: str,
    size: Size,
    what: str,
    pictures: Callable[[], tuple[Image.Image, Image.Image]],
    variant: _Variant,
) -> Recipe:
    def scene() -> tuple[Frames, Frames]:
        a, b = pictures()
        return (a,), (b,)

    return Recipe(
        _name(source, size, f"{what}; {variant.text}"),
        CHANGED,
        category,
        source,
        size,
        1,
        scene,
        variant.old,
        fresh(variant.new),
    )


def _edit(
    source: str, size: Size, fn: Callable[[Image.Image], Image.Image], grain: float = 1.0
) -> Callable[[], tuple[Image.Image, Image.Image]]:
    def pictures() -> tuple[Image.Image, Image.Image]:
        base = _render(source, size, grain)
        return base, fn(base.copy())

    return pictures


def _photo(source: str, size: Size, grain: float = 1.0) -> Callable[[], Image.Image]:
    return lambda: _render(source, size, grain)


# --- same: re-encodes, conversions, metadata -----------------------------------------


def _resaved(frames: Frames, origin: EncodeOld, resave: EncodeOld) -> bytes:
    """The origin's file as a script that always re-saves through Pillow leaves it."""
    return resave(_decode(origin(frames)))


def _cat_resave_q100() -> Iterator[Recipe]:
    cat = "pillow re-save q100 of origin jpeg"
    table = [
        ("astronaut", S, 85, False),
        ("coffee", L, 75, True),
        ("camera", M, 90, False),
        ("brick", XX, 85, True),
        ("chelsea", S, 90, True),
        ("rocket", M, 85, False),
        ("moon", L, 80, False),
        ("stereo_motorcycle", X, 85, True),
        ("page", (1280, 640), 90, False),
        ("text", (1560, 600), 85, True),
    ]
    for source, size, q, reverse in table:
        origin = jpeg(q)
        resave = jpeg(100)
        if not reverse:
            yield _same(
                cat,
                source,
                size,
                f"old = Pillow re-save q100 of the origin's JPEG q{q}, new = origin",
                _photo(source, size),
                functools.partial(_resaved, origin=origin, resave=resave),
                fresh(origin),
            )
        else:
            yield _same(
                cat,
                source,
                size,
                f"old = origin JPEG q{q}, new = Pillow re-save q100 of it",
                _photo(source, size),
                origin,
                from_old(resave),
            )


def _cat_q95_444_q80_420() -> Iterator[Recipe]:
    cat = "jpeg q95 444 -> q80 420"
    for source, size in [
        ("astronaut", L),
        ("immunohistochemistry", M),
        ("gravel", S),
        ("hubble_deep_field", X),
        ("retina", S),
        ("colorwheel", M),
        ("grass", L),
        ("chelsea", XX),
    ]:
        yield _same(
            cat,
            source,
            size,
            "JPEG q95 4:4:4 -> re-encoded q80 4:2:0",
            _photo(source, size),
            jpeg(95, 0),
            from_old(jpeg(80, 2)),
        )


def _cat_to_webp() -> Iterator[Recipe]:
    cat = "jpeg -> webp q85"
    for source, size in [
        ("coffee", S),
        ("camera", L),
        ("page", (1280, 640)),
        ("immunohistochemistry", XX),
        ("rocket", M),
        ("clock", S),
        ("stereo_motorcycle", L),
        ("cell", X),
    ]:
        yield _same(
            cat,
            source,
            size,
            "JPEG q90 -> WebP q85",
            _photo(source, size),
            jpeg(90),
            from_old(webp(85)),
        )


def _cat_to_avif() -> Iterator[Recipe]:
    cat = "jpeg -> avif q70"
    for source, size in [
        ("astronaut", M),
        ("brick", S),
        ("hubble_deep_field", X),
        ("chelsea", L),
        ("moon", S),
        ("retina", M),
        ("coffee", S),
        ("grass", M),
    ]:
        yield _same(
            cat,
            source,
            size,
            "JPEG q90 -> AVIF q70",
            _photo(source, size),
            jpeg(90),
            from_old(avif(70)),
        )


def _cat_chain() -> Iterator[Recipe]:
    cat = "jpeg chain q95 -> q90 -> q85"
    for source, size in [
        ("coffee", M),
        ("gravel", L),
        ("camera", S),
        ("grass", S),
        ("stereo_motorcycle", M),
        ("rocket", XX),
        ("hubble_deep_field", S),
        ("cell", L),
    ]:
        yield _same(
            cat,
            source,
            size,
            "JPEG q95 -> re-encoded q90 -> re-encoded q85",
            _photo(source, size),
            jpeg(95),
            from_old(jpeg(90), jpeg(85)),
        )


def _cat_progressive() -> Iterator[Recipe]:
    cat = "jpeg progressive/optimised rewrite"
    for source, size, lossy in [
        ("astronaut", S, False),
        ("page", (1280, 640), True),
        ("immunohistochemistry", L, True),
        ("clock", M, False),
        ("retina", L, True),
        ("coins", S, True),
    ]:
        if lossy:
            yield _same(
                cat,
                source,
                size,
                "baseline JPEG q88 -> decoded, re-encoded progressive optimised q88",
                _photo(source, size),
                jpeg(88),
                from_old(jpeg(88, progressive=True, optimize=True)),
            )
        else:
            yield _same(
                cat,
                source,
                size,
                "baseline JPEG q90 -> progressive optimised q90 of the same pixels",
                _photo(source, size),
                jpeg(90),
                fresh(jpeg(90, progressive=True, optimize=True)),
            )


def _cat_icc() -> Iterator[Recipe]:
    cat = "icc profile attached or stripped"
    for source, size, how in [
        ("coffee", L, "strip"),
        ("hubble_deep_field", S, "strip+q85"),
        ("astronaut", X, "attach"),
        ("chelsea", M, "strip"),
        ("rocket", S, "strip+q85"),
        ("colorwheel", L, "attach"),
    ]:
        with_icc = jpeg(90, icc_profile=_srgb_icc())
        if how == "strip":
            yield _same(
                cat,
                source,
                size,
                "JPEG q90 with an sRGB ICC profile -> the same without it",
                _photo(source, size),
                with_icc,
                fresh(jpeg(90)),
            )
        elif how == "strip+q85":
            yield _same(
                cat,
                source,
                size,
                "JPEG q90 with an sRGB ICC profile -> stripped, re-encoded q85",
                _photo(source, size),
                with_icc,
                from_old(jpeg(85)),
            )
        else:
            yield _same(
                cat,
                source,
                size,
                "JPEG q90 without ICC -> re-saved q90 with an sRGB ICC profile",
                _photo(source, size),
                jpeg(90),
                from_old(jpeg(90, icc_profile=_srgb_icc())),
            )


# The stored pixels for an EXIF orientation: exif_transpose(stored) shows the picture.
_STORE_FOR_ORIENTATION = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}


def _with_orientation(q: int, orientation: int) -> EncodeOld:
    def enc(frames: Frames) -> bytes:
        exif = Image.Exif()
        exif[0x0112] = orientation
        exif[0x0131] = "fetcher pairs"
        stored = frames[0].transpose(_STORE_FOR_ORIENTATION[orientation])
        return _save(stored, "JPEG", quality=q, exif=exif.tobytes())

    return enc


def _cat_exif_orientation() -> Iterator[Recipe]:
    cat = "exif orientation vs rotated pixels"
    for source, size, o, reverse in [
        ("astronaut", M, 6, False),
        ("clock", S, 6, True),
        ("coins", M, 8, True),
        ("camera", (600, 800), 8, True),
        ("coffee", L, 3, False),
        ("chelsea", (600, 800), 6, True),
        ("moon", M, 3, False),
        ("stereo_motorcycle", L, 8, False),
    ]:
        tagged = _with_orientation(90, o)
        if reverse:
            yield _same(
                cat,
                source,
                size,
                f"pixels stored rotated with EXIF orientation {o} -> upright pixels, no tag",
                _photo(source, size),
                tagged,
                fresh(jpeg(90)),
            )
        else:
            yield _same(
                cat,
                source,
                size,
                f"upright pixels, no tag -> pixels stored rotated with EXIF orientation {o}",
                _photo(source, size),
                jpeg(90),
                fresh(tagged),
            )


def _to8(frames: Frames) -> bytes:
    arr = np.asarray(frames[0], dtype=np.uint32)
    return _save(Image.fromarray(((arr + 128) // 257).astype(np.uint8), "L"), "PNG")


def _cat_16bit() -> Iterator[Recipe]:
    cat = "16-bit vs 8-bit grey png"
    for source, size, reverse in [
        ("camera", S, False),
        ("brick", M, True),
        ("clock", L, False),
        ("moon", S, True),
        ("cell", M, False),
        ("grass", L, True),
    ]:
        pic: Callable[[], Image.Image] = functools.partial(_render16, source, size)
        if reverse:
            yield _same(
                cat,
                source,
                size,
                "8-bit grey PNG -> 16-bit grey PNG of the same scan",
                pic,
                _to8,
                fresh(png()),
            )
        else:
            yield _same(
                cat,
                source,
                size,
                "16-bit grey PNG -> 8-bit grey PNG (rounded)",
                pic,
                png(),
                fresh(_to8),
            )


def _as_rgba(enc: EncodeOld) -> EncodeOld:
    return lambda frames: enc(tuple(f.convert("RGBA") for f in frames))


def _cat_rgba_opaque() -> Iterator[Recipe]:
    cat = "rgb vs opaque rgba"
    for source, size, how in [
        ("astronaut", S, "png"),
        ("coffee", M, "jpeg->png"),
        ("immunohistochemistry", L, "rgba->jpeg"),
        ("rocket", S, "png"),
        ("retina", M, "jpeg->png"),
        ("chelsea", L, "rgba->jpeg"),
    ]:
        if how == "png":
            yield _same(
                cat,
                source,
                size,
                "RGB PNG -> RGBA PNG, alpha 255 everywhere",
                _photo(source, size),
                png(),
                fresh(_as_rgba(png())),
            )
        elif how == "jpeg->png":
            yield _same(
                cat,
                source,
                size,
                "RGB JPEG q90 -> decoded, saved as opaque RGBA PNG",
                _photo(source, size),
                jpeg(90),
                from_old(_as_rgba(png(3))),
            )
        else:
            yield _same(
                cat,
                source,
                size,
                "opaque RGBA PNG -> flattened to RGB JPEG q92",
                _photo(source, size),
                _as_rgba(png()),
                from_old(jpeg(92)),
            )


def _as_rgb(enc: EncodeOld) -> EncodeOld:
    return lambda frames: enc(tuple(f.convert("RGB") for f in frames))


def _as_grey(enc: EncodeOld) -> EncodeOld:
    return lambda frames: enc(tuple(f.convert("L") for f in frames))


def _cat_grey_rgb() -> Iterator[Recipe]:
    cat = "grey vs grey stored as rgb"
    for source, size, how in [
        ("camera", S, "png"),
        ("gravel", M, "jpeg"),
        ("page", (1280, 640), "rgb->grey"),
        ("moon", M, "png"),
        ("clock", S, "jpeg"),
        ("text", (1560, 600), "rgb->grey"),
    ]:
        if how == "png":
            yield _same(
                cat,
                source,
                size,
                "grey PNG -> the same grey stored as RGB PNG",
                _photo(source, size),
                png(),
                fresh(_as_rgb(png())),
            )
        elif how == "jpeg":
            yield _same(
                cat,
                source,
                size,
                "grey JPEG q90 -> decoded, saved as RGB JPEG q90",
                _photo(source, size),
                jpeg(90),
                from_old(_as_rgb(jpeg(90))),
            )
        else:
            yield _same(
                cat,
                source,
                size,
                "grey stored as RGB JPEG q90 -> grey JPEG q85",
                _photo(source, size),
                _as_rgb(jpeg(90)),
                from_old(_as_grey(jpeg(85))),
            )


def _gif_resave(how: str) -> EncodeNew:
    """Re-save a GIF as tools do: palette reordered, interlacing flipped, a comment."""

    def enc(frames: Frames, old: bytes) -> bytes:
        im = Image.open(io.BytesIO(old))
        out = []
        for i, frame in enumerate(ImageSequence.Iterator(im)):
            p = frame.copy()
            if p.mode != "P":
                p = _quantize(p)
            if how == "reorder":
                perm = list(range(256))
                rng = _rng("gif-perm", i)
                rng.shuffle(perm)
                p = p.remap_palette(perm)
            out.append(p)
        params: dict[str, Any] = {"interlace": how != "interlace", "comment": b"re-saved"}
        if how == "optimize":
            params["optimize"] = True
        return _sequence(tuple(out), "GIF", **params)

    return enc


def _cat_gif() -> Iterator[Recipe]:
    cat = "gif re-saved"
    table: list[tuple[str, Size, str, Callable[[], Image.Image]]] = [
        ("ui-shop", (1280, 800), "reorder", lambda: _ui("ui-shop", (1280, 800)).img),
        ("coffee", S, "interlace", _photo("coffee", S)),
        ("chart-sales", (1200, 800), "optimize", lambda: _chart("chart-sales", (1200, 800)).img),
        ("ui-settings", (1440, 900), "interlace", lambda: _ui("ui-settings", (1440, 900)).img),
        ("rocket", S, "reorder", _photo("rocket", S)),
        ("chart-energy", (800, 600), "optimize", lambda: _chart("chart-energy", (800, 600)).img),
    ]
    for source, size, how, pic in table:
        text = {
            "reorder": "palette reordered",
            "interlace": "interlacing off, comment added",
            "optimize": "optimised",
        }[how]
        yield _same(
            cat, source, size, f"GIF -> re-saved by Pillow ({text})", pic, gif(), _gif_resave(how)
        )


_UI_SIZES: dict[str, Size] = {
    "ui-shop": (1280, 800),
    "ui-dashboard": (1920, 1080),
    "ui-settings": (1440, 900),
    "ui-login": (2560, 1600),
}
_CHART_SIZES: dict[str, Size] = {
    "chart-sales": (1200, 800),
    "chart-traffic": (800, 600),
    "chart-energy": (1600, 1000),
    "chart-survey": (2400, 1600),
}


def _cat_ui_reencoded() -> Iterator[Recipe]:
    cat = "ui screenshot re-encoded"
    encs: list[tuple[str, EncodeNew]] = [
        ("PNG -> JPEG q85 4:2:0", from_old(jpeg(85, 2))),
        ("PNG -> WebP q85", from_old(webp(85))),
        ("PNG -> WebP lossless", from_old(webp(lossless=True))),
        ("PNG -> JPEG q90 4:2:0", from_old(jpeg(90, 2))),
        ("PNG level 6 -> PNG level 9", from_old(png(9))),
    ]
    k = 0
    for source, size in _UI_SIZES.items():
        for _ in range(2 if size[0] < 2000 else 1):
            text, new = encs[k % len(encs)]
            k += 1
            yield _same(
                cat,
                source,
                size,
                text,
                functools.partial(lambda s, z: _ui(s, z).img, source, size),
                png(),
                new,
            )
    yield _same(
        cat,
        "ui-settings",
        S,
        "PNG -> JPEG q85 4:2:0",
        lambda: _ui("ui-settings", S).img,
        png(),
        from_old(jpeg(85)),
    )


def _cat_chart_reencoded() -> Iterator[Recipe]:
    cat = "chart re-encoded"
    encs: list[tuple[str, EncodeNew]] = [
        ("PNG -> JPEG q85 4:2:0", from_old(jpeg(85, 2))),
        ("PNG -> WebP q85", from_old(webp(85))),
        ("PNG -> JPEG q90 4:2:0", from_old(jpeg(90, 2))),
        ("PNG -> WebP lossless", from_old(webp(lossless=True))),
    ]
    k = 0
    for source, size in _CHART_SIZES.items():
        for _ in range(2 if size[0] < 2000 else 1):
            text, new = encs[k % len(encs)]
            k += 1
            yield _same(
                cat,
                source,
                size,
                text,
                functools.partial(lambda s, z: _chart(s, z).img, source, size),
                png(),
                new,
            )


def _cat_low_contrast() -> Iterator[Recipe]:
    cat = "low-contrast re-encoded"
    table: list[tuple[str, Size, int, str, EncodeOld, EncodeNew]] = [
        ("camera", S, 118, "PNG -> JPEG q95", png(), from_old(jpeg(95))),
        ("coffee", M, 30, "PNG -> WebP q90", png(), from_old(webp(90))),
        ("brick", L, 200, "JPEG q95 -> re-encoded q90", jpeg(95), from_old(jpeg(90))),
        ("hubble_deep_field", S, 60, "PNG -> JPEG q95 4:4:4", png(), from_old(jpeg(95, 0))),
        ("moon", S, 100, "PNG -> JPEG q95", png(), from_old(jpeg(95))),
        ("chelsea", M, 140, "PNG -> WebP q90", png(), from_old(webp(90))),
        ("clock", L, 180, "JPEG q95 -> re-encoded q90", jpeg(95), from_old(jpeg(90))),
        ("retina", S, 20, "PNG -> JPEG q95 4:4:4", png(), from_old(jpeg(95, 0))),
    ]
    for source, size, low, text, old, new in table:
        pic = functools.partial(
            lambda s, z, lo: _low_contrast(_render(s, z), lo), source, size, low
        )
        yield _same(cat, source, size, f"band {low}-{low + 20}: {text}", pic, old, new)


def _pan_frames(source: str, size: Size, n: int = 4, step: int = 8) -> Frames:
    ax, ay = _pan_axis(source, size)
    return tuple(_render(source, size, shift=(ax * step * i, ay * step * i)) for i in range(n))


def _cat_animation_same() -> Iterator[Recipe]:
    cat = "animation re-encoded"
    table: list[tuple[str, str, EncodeOld, EncodeNew]] = [
        (
            "astronaut",
            "animated GIF -> animated WebP lossless",
            gif(),
            from_old(webp(lossless=True)),
        ),
        ("coffee", "animated PNG -> animated WebP q85", png(3), from_old(webp(85))),
        ("chelsea", "animated WebP q90 -> re-encoded q80", webp(90), from_old(webp(80))),
        ("rocket", "animated GIF -> re-saved (palette reordered)", gif(), _gif_resave("reorder")),
        ("astronaut", "animated GIF -> animated WebP q85", gif(), from_old(webp(85))),
        ("rocket", "animated PNG -> animated WebP lossless", png(3), from_old(webp(lossless=True))),
    ]
    for source, what, old, new in table:
        pic = functools.partial(_pan_frames, source, S)
        r = _same(cat, source, S, f"4 frames: {what}", pic, old, new)
        yield Recipe(
            r.name, r.label, r.category, r.source, r.size, 4, r.scene, r.encode_old, r.encode_new
        )


def _cat_texture_grain() -> Iterator[Recipe]:
    cat = "unnamed: strong-grain texture re-encoded"
    for source, size, text, old, new in [
        ("brick", M, "JPEG q95 -> q75 4:2:0", jpeg(95), from_old(jpeg(75, 2))),
        ("gravel", S, "JPEG q90 -> WebP q80", jpeg(90), from_old(webp(80))),
        ("immunohistochemistry", L, "PNG -> JPEG q78 4:2:0", png(), from_old(jpeg(78, 2))),
        ("grass", S, "JPEG q95 -> q75 4:2:0", jpeg(95), from_old(jpeg(75, 2))),
        ("moon", M, "JPEG q90 -> WebP q80", jpeg(90), from_old(webp(80))),
        ("chelsea", L, "PNG -> JPEG q80 4:2:0", png(), from_old(jpeg(80, 2))),
        ("gravel", X, "JPEG q92 -> q78 4:2:0", jpeg(92), from_old(jpeg(78, 2))),
        ("grass", XX, "JPEG q92 -> WebP q80", jpeg(92), from_old(webp(80))),
    ]:
        yield _same(
            cat, source, size, f"strong grain: {text}", _photo(source, size, grain=3.5), old, new
        )


def _cat_low_light() -> Iterator[Recipe]:
    cat = "unnamed: noisy low-light photo re-encoded"
    for source, size, text, old, new in [
        ("hubble_deep_field", L, "JPEG q92 -> q80 4:2:0", jpeg(92), from_old(jpeg(80, 2))),
        ("coffee", S, "JPEG q90 -> WebP q80", jpeg(90), from_old(webp(80))),
        ("astronaut", M, "JPEG q90 -> AVIF q70", jpeg(90), from_old(avif(70))),
        ("rocket", S, "JPEG q92 -> q80 4:2:0", jpeg(92), from_old(jpeg(80, 2))),
        ("moon", L, "JPEG q90 -> WebP q80", jpeg(90), from_old(webp(80))),
        ("stereo_motorcycle", M, "JPEG q90 -> AVIF q70", jpeg(90), from_old(avif(70))),
    ]:
        pic = functools.partial(lambda s, z: _low_light(_render(s, z), s), source, size)
        yield _same(cat, source, size, f"dim, high-ISO noise: {text}", pic, old, new)


def _cat_halftone() -> Iterator[Recipe]:
    cat = "unnamed: halftone pattern re-encoded"
    for source, size, period, text, old, new in [
        ("camera", S, 4.0, "PNG -> JPEG q85", png(), from_old(jpeg(85))),
        ("clock", M, 5.0, "PNG -> WebP q85", png(), from_old(webp(85))),
        ("coins", S, 4.0, "PNG -> WebP q85", png(), from_old(webp(85))),
        ("cell", M, 5.0, "PNG -> JPEG q85", png(), from_old(jpeg(85))),
        # Colour halftones at 4:4:4: 4:2:0 chroma visibly dulls coloured dots (and moves
        # local colour means by up to 7 levels), which is more than a re-encode.
        ("astronaut", L, 6.0, "PNG -> JPEG q90 4:4:4", png(), from_old(jpeg(90, 0))),
        ("chelsea", L, 6.0, "PNG -> JPEG q85 4:4:4", png(), from_old(jpeg(85, 0))),
    ]:
        pic = functools.partial(lambda s, z, p: _halftone(_render(s, z), p), source, size, period)
        yield _same(cat, source, size, f"halftone, {period:g} px screen: {text}", pic, old, new)


# --- changed ------------------------------------------------------------------------


def _text_cat(
    cat: str,
    table: Sequence[tuple[str, Size, int, str, tuple[float, float], Sequence[str], str, str]],
) -> Iterator[Recipe]:
    """Caption pairs: ``(source, size, px, style, at, static lines, old, new)``; each
    source once with both sides as the origin's JPEG q90, once re-encoded/converted."""
    for k, (source, size, px, style, at, static, old_text, new_text) in enumerate(table):

        def pictures(
            s: str = source,
            z: Size = size,
            p: int = px,
            st: str = style,
            a: tuple[float, float] = at,
            lines: Sequence[str] = static,
            o: str = old_text,
            n: str = new_text,
        ) -> tuple[Image.Image, Image.Image]:
            base = _render(s, z)
            reserve = [*lines, o, n]
            return (
                _caption(base, [*lines, o], p, a, st, reserve),
                _caption(base, [*lines, n], p, a, st, reserve),
            )

        what = f'"{old_text}" -> "{new_text}" at {px}px'
        yield _changed(cat, source, size, what, pictures, PLAIN)
        yield _changed(cat, source, size, what, pictures, REENCODED[k % len(REENCODED)])


def _cat_text_digit_small() -> Iterator[Recipe]:
    yield from _text_cat(
        "text digit 16-24px",
        [
            ("coffee", S, 20, "light", (0.06, 0.9), ["Espresso cup, 90 ml"], "$19.99", "$29.99"),
            (
                "astronaut",
                M,
                18,
                "dark",
                (0.95, 0.92),
                ["Space Expo, Hall 3"],
                "12-14 June 2025",
                "12-14 June 2026",
            ),
            (
                "immunohistochemistry",
                L,
                16,
                "light",
                (0.05, 0.06),
                ["Staining kit, 50 slides"],
                "Order no. 40-118",
                "Order no. 40-119",
            ),
            (
                "hubble_deep_field",
                XX,
                24,
                "dark",
                (0.5, 0.95),
                ["Deep Field print, 60 x 40 cm"],
                "$49.00",
                "$43.00",
            ),
            (
                "stereo_motorcycle",
                S,
                20,
                "brand",
                (0.95, 0.06),
                ["Yamaha XS400, 1983"],
                "$1,999",
                "$1,899",
            ),
            (
                "rocket",
                M,
                18,
                "dark",
                (0.05, 0.06),
                ["Launch window opens"],
                "3 March 2025",
                "3 March 2026",
            ),
            ("chelsea", L, 22, "light", (0.04, 0.94), ["Cat food, 12 cans"], "$19.99", "$29.99"),
            (
                "retina",
                X,
                16,
                "dark",
                (0.97, 0.97),
                ["Eye clinic, call"],
                "0161 496 0735",
                "0161 496 0785",
            ),
        ],
    )


def _cat_text_digit_large() -> Iterator[Recipe]:
    yield from _text_cat(
        "text digit 40+px",
        [
            ("camera", M, 44, "bare", (0.03, 0.95), ["Open house"], "2025", "2026"),
            ("coffee", L, 56, "brand", (0.95, 0.1), [], "$19.99", "$29.99"),
            ("moon", S, 44, "dark", (0.08, 0.9), ["Moon night"], "2025", "2026"),
            ("chelsea", X, 72, "light", (0.05, 0.92), [], "-25%", "-35%"),
        ],
    )


def _cat_text_word_small() -> Iterator[Recipe]:
    yield from _text_cat(
        "text word 16-24px",
        [
            (
                "astronaut",
                S,
                20,
                "dark",
                (0.95, 0.06),
                ["Public talk"],
                "on Monday at 7 pm",
                "on Friday at 7 pm",
            ),
            ("clock", M, 18, "light", (0.05, 0.92), ["Meeting moved to"], "Room Blue", "Room Gold"),
            (
                "grass",
                L,
                22,
                "light",
                (0.06, 0.08),
                [],
                "Please keep off the grass",
                "Please keep on the grass",
            ),
            ("retina", S, 16, "dark", (0.96, 0.95), ["Fundus photograph"], "left eye", "right eye"),
        ],
    )


def _cat_text_word_large() -> Iterator[Recipe]:
    yield from _text_cat(
        "text word 40+px",
        [
            ("hubble_deep_field", M, 48, "bare", (0.5, 0.08), [], "Deep Field", "Deep Space"),
            ("gravel", L, 40, "dark", (0.08, 0.1), [], "Path closed", "Path open"),
            ("rocket", S, 44, "bare", (0.5, 0.1), [], "Launch today", "Launch delayed"),
            ("cell", X, 64, "dark", (0.06, 0.94), [], "Mitosis", "Meiosis"),
        ],
    )


def _scan_word(
    source: str, size: Size, old: str, new: str
) -> Callable[[], tuple[Image.Image, Image.Image]]:
    """A real scan (page, text): one word or symbol replaced by one cut from the scan."""

    def pictures() -> tuple[Image.Image, Image.Image]:
        base = _render(source, size)
        return base, _copy_box(base, _poi(source, size, new), _poi(source, size, old))

    return pictures


def _doc_edit(
    name: str, size: Size, px: int, line: int, old: str, new: str, swap: str = ""
) -> Callable[[], tuple[Image.Image, Image.Image]]:
    def pictures() -> tuple[Image.Image, Image.Image]:
        lines = _doc_lines(name)
        edited = list(lines)
        if swap:
            edited[line] = edited[line].replace(old, "\0").replace(swap, old).replace("\0", swap)
        else:
            edited[line] = edited[line].replace(old, new, 1)
        assert edited[line] != lines[line], (name, line, old, new)
        return _doc(name, size, lines, px), _doc(name, size, edited, px)

    return pictures


def _doc_word(name: str, line: int) -> tuple[str, str]:
    """The first longish word on a line and a different word of the same length."""
    words = [
        w for w in _doc_lines(name)[line].replace(".", " ").split() if w.isalpha() and len(w) >= 5
    ]
    word = words[0]
    other = next(w for w in _WORDS if len(w) == len(word) and w != word.lower())
    return word, other.capitalize() if word[0].isupper() else other


def _cat_scan_word() -> Iterator[Recipe]:
    cat = "scan word replaced"
    page, text = (1280, 640), (1560, 600)
    inv, letter = (1240, 1754), (850, 1100)
    a, b = _doc_word("doc-invoice", 6)
    c, d = _doc_word("doc-letter", 9)
    rows: list[
        tuple[str, Size, str, Callable[[], tuple[Image.Image, Image.Image]], _Variant, _Variant]
    ] = [
        (
            "page",
            page,
            'word "us" replaced by "as" cut from the scan',
            _scan_word("page", page, "us", "as"),
            PLAIN,
            Q95_Q85,
        ),
        (
            "doc-invoice",
            inv,
            f'"{a}" -> "{b}" at 23px',
            _doc_edit("doc-invoice", inv, 23, 6, a, b),
            PLAIN,
            TO_WEBP,
        ),
        (
            "text",
            text,
            'handwritten "n" replaced by the "t" next to it',
            _scan_word("text", text, "n", "t"),
            PLAIN,
            TO_WEBP,
        ),
        (
            "doc-letter",
            letter,
            f'"{c}" -> "{d}" at 16px',
            _doc_edit("doc-letter", letter, 16, 9, c, d),
            PLAIN,
            Q95_Q85,
        ),
    ]
    for source, size, what, pictures, v1, v2 in rows:
        yield _changed(cat, source, size, what, pictures, v1)
        yield _changed(cat, source, size, what, pictures, v2)


def _cat_qr() -> Iterator[Recipe]:
    cat = "qr pattern changed, same mean grey"
    for k, (source, size, module, corner, variant) in enumerate(
        [
            ("astronaut", S, 4, "br", PLAIN),
            ("coffee", M, 3, "bl", TO_WEBP),
            ("camera", X, 6, "tr", Q95_Q85),
            ("chelsea", S, 5, "br", PLAIN),
            ("stereo_motorcycle", L, 3, "tl", Q95_Q85),
            ("moon", M, 4, "br", TO_WEBP),
        ]
    ):

        def pictures(
            s: str = source, z: Size = size, m: int = module, c: str = corner, i: int = k
        ) -> tuple[Image.Image, Image.Image]:
            dark, data = _qr_grid(_seed("qr", s, i))
            values = dark[data]
            changed = dark.copy()
            changed[data] = _rng("qr-new", s, i).permutation(values)  # same count of dark modules
            base = _render(s, z)
            return _paste_logo(base, _qr_image(dark, m).convert("RGBA"), c), _paste_logo(
                base, _qr_image(changed, m).convert("RGBA"), c
            )

        yield _changed(
            cat,
            source,
            size,
            f"QR-like code ({module} px modules) encodes another URL",
            pictures,
            variant,
        )


def _cat_logo_mirrored() -> Iterator[Recipe]:
    cat = "corner logo mirrored"
    for source, size, kind, corner, variant in [
        ("astronaut", S, "logo", "br", PLAIN),
        ("camera", M, "wordmark", "tl", TO_WEBP),
        ("coffee", L, "logo", "tr", PLAIN),
        ("chelsea", M, "logo", "bl", PLAIN),
        ("rocket", S, "wordmark", "br", Q95_Q85),
        ("moon", L, "logo", "tr", PLAIN),
    ]:

        def pictures(
            s: str = source, z: Size = size, kd: str = kind, c: str = corner
        ) -> tuple[Image.Image, Image.Image]:
            px = round(0.13 * min(z))
            mark = _logo_rgba(px) if kd == "logo" else _text_logo(px // 2)
            base = _render(s, z)
            return _paste_logo(base, mark, c), _paste_logo(base, ImageOps.mirror(mark), c)

        yield _changed(cat, source, size, f"corner {kind} mirrored", pictures, variant)


def _cat_face_blurred() -> Iterator[Recipe]:
    cat = "face blurred"
    for source, size, variant in [
        ("astronaut", M, PLAIN),
        ("camera", S, PLAIN),
        ("astronaut", X, TO_WEBP),
        ("chelsea", L, PLAIN),
        ("coins", S, PLAIN),
        ("chelsea", S, Q95_Q85),
    ]:
        yield _changed(
            cat,
            source,
            size,
            "face blurred",
            _edit(
                source,
                size,
                functools.partial(
                    lambda im, s, z: _blur_region(im, _poi(s, z, "face")), s=source, z=size
                ),
            ),
            variant,
        )


def _cat_patched_out() -> Iterator[Recipe]:
    cat = "object patched out"
    for source, size, variant in [
        ("hubble_deep_field", M, PLAIN),
        ("camera", L, PLAIN),
        ("coffee", S, TO_WEBP),
        ("moon", S, PLAIN),
        ("rocket", XX, PLAIN),
        ("stereo_motorcycle", M, Q95_Q85),
    ]:

        def fn(im: Image.Image, s: str = source, z: Size = size) -> Image.Image:
            box = _poi(s, z, "object")
            sx = z[0] / (_crop_box(s, z)[2] - _crop_box(s, z)[0])
            dx, dy = _CLONE_FROM[s]
            return _patch_out(im, box, (round(dx * sx), round(dy * sx)))

        yield _changed(
            cat,
            source,
            size,
            "object patched out with cloned background",
            _edit(source, size, fn),
            variant,
        )


def _cat_sticker() -> Iterator[Recipe]:
    cat = "sticker ~2%"
    for source, size, at, label, colour, variant in [
        ("coffee", S, (0.85, 0.2), "NEW", (220, 30, 40), PLAIN),
        ("immunohistochemistry", M, (0.2, 0.75), "-20%", (250, 180, 0), PLAIN),
        ("brick", XX, (0.7, 0.3), "SALE", (30, 140, 60), Q95_Q85),
        ("retina", S, (0.15, 0.15), "HOT", (220, 30, 40), PLAIN),
        ("clock", L, (0.8, 0.8), "NEW", (40, 90, 220), TO_WEBP),
        ("stereo_motorcycle", M, (0.3, 0.25), "SOLD", (220, 30, 40), PLAIN),
    ]:
        yield _changed(
            cat,
            source,
            size,
            f'round "{label}" sticker',
            _edit(source, size, functools.partial(_sticker, at=at, label=label, colour=colour)),
            variant,
        )


def _cat_shift() -> Iterator[Recipe]:
    cat = "shift 3px"
    for source, size, variant in [
        ("astronaut", S, PLAIN),
        ("gravel", M, PLAIN),
        ("page", (1280, 640), Q95_Q85),
        ("chelsea", L, PLAIN),
        ("cell", S, TO_WEBP),
        ("rocket", M, PLAIN),
    ]:

        def pictures(s: str = source, z: Size = size) -> tuple[Image.Image, Image.Image]:
            ax, ay = _pan_axis(s, z)
            return _render(s, z), _render(s, z, shift=(3 * ax, 3 * ay))

        direction = "sideways" if _pan_axis(source, size)[0] else "vertically"
        yield _changed(cat, source, size, f"re-cropped 3 px {direction}", pictures, variant)


def _cat_rotation() -> Iterator[Recipe]:
    cat = "rotation 1 deg"
    for source, size, deg, variant in [
        ("coffee", M, 1.0, PLAIN),
        ("camera", S, -1.0, PLAIN),
        ("brick", L, 1.0, TO_WEBP),
        ("rocket", X, -1.0, PLAIN),
        ("moon", S, 1.0, Q95_Q85),
        ("clock", M, 1.0, PLAIN),
    ]:
        yield _changed(
            cat,
            source,
            size,
            f"rotated {deg:+g} deg (straightened, zoomed to fill)",
            _edit(source, size, functools.partial(_rotate_small, degrees=deg)),
            variant,
        )


def _cat_gamma() -> Iterator[Recipe]:
    cat = "gamma 1.2"
    for source, size, g, variant in [
        ("astronaut", L, 1 / 1.2, PLAIN),
        ("hubble_deep_field", S, 1.2, PLAIN),
        ("camera", M, 1 / 1.2, Q95_Q85),
        ("chelsea", S, 1.2, PLAIN),
        ("cell", M, 1 / 1.2, TO_WEBP),
        ("retina", XX, 1 / 1.2, PLAIN),
    ]:
        text = "gamma 1.2 (brighter mid-tones)" if g < 1 else "gamma 1/1.2 (darker mid-tones)"
        yield _changed(
            cat, source, size, text, _edit(source, size, functools.partial(_gamma, g=g)), variant
        )


def _cat_contrast() -> Iterator[Recipe]:
    cat = "contrast +10%"
    for source, size, variant in [
        ("coffee", S, PLAIN),
        ("immunohistochemistry", M, PLAIN),
        ("gravel", L, Q95_Q85),
        ("stereo_motorcycle", S, PLAIN),
        ("coins", L, TO_WEBP),
        ("grass", M, PLAIN),
    ]:
        yield _changed(
            cat,
            source,
            size,
            "contrast +10%",
            _edit(source, size, lambda im: ImageEnhance.Contrast(im).enhance(1.10)),
            variant,
        )


def _cat_saturation() -> Iterator[Recipe]:
    cat = "saturation -20%"
    for source, size, variant in [
        ("astronaut", S, PLAIN),
        ("coffee", L, TO_WEBP),
        ("immunohistochemistry", M, PLAIN),
        ("chelsea", M, PLAIN),
        ("retina", L, Q95_Q85),
        ("colorwheel", S, PLAIN),
        ("stereo_motorcycle", X, PLAIN),
    ]:
        yield _changed(
            cat,
            source,
            size,
            "saturation -20%",
            _edit(source, size, lambda im: ImageEnhance.Color(im).enhance(0.80)),
            variant,
        )


def _unsharp(img: Image.Image, radius: float, percent: int) -> Image.Image:
    return img.filter(ImageFilter.UnsharpMask(radius, percent, 2))


def _cat_unsharp() -> Iterator[Recipe]:
    cat = "unsharp mask"
    for source, size, radius, percent, variant in [
        ("camera", S, 2.0, 120, PLAIN),
        ("brick", M, 2.5, 150, PLAIN),
        ("astronaut", L, 2.5, 90, TO_WEBP),
        ("clock", M, 3.0, 150, PLAIN),
        ("rocket", S, 1.5, 100, Q95_Q85),
        ("coins", L, 2.5, 90, PLAIN),
    ]:
        yield _changed(
            cat,
            source,
            size,
            f"unsharp mask radius {radius:g}, {percent} %",
            _edit(
                source,
                size,
                functools.partial(_unsharp, radius=radius, percent=percent),
            ),
            variant,
        )


def _line(
    img: Image.Image, p0: tuple[float, float], p1: tuple[float, float], colour: tuple[int, int, int]
) -> Image.Image:
    out = img.copy()
    w, h = out.size
    ImageDraw.Draw(out).line(
        [(p0[0] * w, p0[1] * h), (p1[0] * w, p1[1] * h)], fill=_ink(out, colour), width=2
    )
    return out


def _cat_line() -> Iterator[Recipe]:
    cat = "line 2px"
    for source, size, p0, p1, colour, variant in [
        ("hubble_deep_field", M, (0.2, 0.3), (0.5, 0.36), (255, 255, 255), PLAIN),
        ("page", (1280, 640), (0.1, 0.35), (0.45, 0.35), (20, 20, 20), PLAIN),
        ("coffee", S, (0.6, 0.7), (0.9, 0.5), (240, 30, 30), TO_WEBP),
        ("moon", L, (0.3, 0.6), (0.6, 0.62), (0, 0, 0), PLAIN),
        ("chelsea", S, (0.1, 0.8), (0.4, 0.85), (255, 255, 255), Q95_Q85),
        ("text", (1560, 600), (0.55, 0.15), (0.85, 0.2), (20, 20, 20), PLAIN),
    ]:
        yield _changed(
            cat,
            source,
            size,
            "a 2 px line drawn",
            _edit(source, size, functools.partial(_line, p0=p0, p1=p1, colour=colour)),
            variant,
        )


def _cat_chart_bar() -> Iterator[Recipe]:
    cat = "chart bar 10% taller"
    for source, bar, variant in [
        ("chart-sales", 2, PNG_BOTH),
        ("chart-traffic", 4, PNG_WEBP),
        ("chart-sales", 0, PNG_JPEG),
        ("chart-energy", 1, PNG_BOTH),
        ("chart-survey", 3, PNG_BOTH),
        ("chart-energy", 5, PNG_WEBP),
    ]:
        size = _CHART_SIZES[source]

        def pictures(
            s: str = source, z: Size = size, b: int = bar
        ) -> tuple[Image.Image, Image.Image]:
            return _chart(s, z).img, _chart(s, z, b).img

        yield _changed(cat, source, size, f"bar {bar + 1} drawn 10 % taller", pictures, variant)


def _cat_animation_changed() -> Iterator[Recipe]:
    cat = "animation frame edited"
    table: list[tuple[str, str, EncodeOld, EncodeOld]] = [
        ("astronaut", "GIF both", gif(), gif()),
        ("coffee", "animated WebP q85 both", webp(85), webp(85)),
        ("chelsea", "old animated GIF, new animated WebP q85", gif(), webp(85)),
        ("rocket", "animated PNG both", png(3), png(3)),
        ("coffee", "old animated WebP q90, new q80", webp(90), webp(80)),
    ]
    for k, (source, text, old, new) in enumerate(table):

        def scene(s: str = source, i: int = k) -> tuple[Frames, Frames]:
            frames = _pan_frames(s, S)
            edited = list(frames)
            if i % 2:  # frame 3 is the banner's price frame; its year changes
                a, b = ["Sale ends 2025"], ["Sale ends 2026"]
                edited[2] = _caption(frames[2], b, 22, (0.05, 0.9), "light", a)
                frames = (
                    *frames[:2],
                    _caption(frames[2], a, 22, (0.05, 0.9), "light", b),
                    frames[3],
                )
            else:
                edited[2] = _sticker(frames[2], (0.8, 0.25), "NEW", (220, 30, 40))
            return frames, tuple(edited)

        edit = "a caption's year changed" if k % 2 else "a sticker added"
        yield Recipe(
            _name(source, S, f"4 frames, frame 3 edited ({edit}); {text}"),
            CHANGED,
            cat,
            source,
            S,
            4,
            scene,
            old,
            fresh(new),
        )


def _cat_alpha_hole() -> Iterator[Recipe]:
    cat = "alpha hole (rgba)"
    table: list[tuple[str, Size, tuple[float, float], _Variant]] = [
        ("logo", (800, 800), (0.35, 0.6), PNG_BOTH),
        ("coffee", M, (0.5, 0.65), PNG_BOTH),
        (
            "logo",
            (1200, 1200),
            (0.7, 0.4),
            _Variant("old PNG, new WebP lossless", png(), webp(lossless=True)),
        ),
        ("chelsea", L, (0.45, 0.45), PNG_BOTH),
        (
            "coins",
            S,
            (0.5, 0.5),
            _Variant("old PNG, new WebP lossless", png(), webp(lossless=True)),
        ),
    ]
    for source, size, at, variant in table:

        def pictures(
            s: str = source, z: Size = size, a: tuple[float, float] = at
        ) -> tuple[Image.Image, Image.Image]:
            base = _render(s, z)
            rgba = base if base.mode == "RGBA" else _cutout(base, s)
            w, h = z
            r = math.sqrt(0.004 * w * h / math.pi)
            cx, cy = a[0] * w, a[1] * h
            if s == "coins":  # in the middle of a coin near (cx, cy)
                from scipy import ndimage

                inside = ndimage.distance_transform_edt(np.asarray(rgba.getchannel("A")) == 255)
                yy, xx = np.mgrid[0 : z[1], 0 : z[0]]
                j = int(np.argmax(inside - 0.1 * np.hypot(xx - cx, yy - cy)))
                cy, cx = divmod(j, z[0])
                r = min(r, 0.6 * float(inside.flat[j]))
            mask = Image.new("L", z, 0)
            ImageDraw.Draw(mask).ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
            holed = rgba.copy()
            holed.putalpha(Image.composite(Image.new("L", z, 0), rgba.getchannel("A"), mask))
            return rgba, holed

        yield _changed(cat, source, size, "a small transparent hole", pictures, variant)


def _cat_stereo() -> Iterator[Recipe]:
    cat = "stereo left vs right view"
    for size, variant in [(S, PLAIN), (L, TO_WEBP), (X, PLAIN)]:

        def pictures(z: Size = size) -> tuple[Image.Image, Image.Image]:
            return _render("stereo_motorcycle", z), _render("stereo_motorcycle_right", z)

        yield _changed(cat, "stereo_motorcycle", size, "left view -> right view", pictures, variant)


def _watermark(img: Image.Image, text: str, kind: str) -> Image.Image:
    w, h = img.size
    overlay = Image.new("RGBA", img.size, (0, 0, 0, 0))
    if kind == "text":
        draw = ImageDraw.Draw(overlay)
        draw.text(
            (w / 2, h / 2), text, font=_font(round(h * 0.09)), fill=(255, 255, 255, 77), anchor="mm"
        )
    else:
        logo = _logo_rgba(round(h * 0.4))
        alpha = np.asarray(logo.getchannel("A"), dtype=np.float32) * 0.3
        logo = logo.copy()
        logo.putalpha(_to_image(alpha, "L"))
        overlay.paste(logo, ((w - logo.width) // 2, (h - logo.height) // 2))
    return _composite(img, overlay)


def _cat_watermark() -> Iterator[Recipe]:
    cat = "watermark 30% opacity"
    for source, size, kind, variant in [
        ("astronaut", M, "text", PLAIN),
        ("coffee", S, "logo", PLAIN),
        ("brick", L, "text", TO_WEBP),
        ("rocket", L, "text", PLAIN),
        ("chelsea", S, "logo", Q95_Q85),
        ("grass", M, "text", PLAIN),
    ]:
        yield _changed(
            cat,
            source,
            size,
            f"30 % opacity {kind} watermark",
            _edit(
                source, size, functools.partial(_watermark, text="(c) Northwind Studio", kind=kind)
            ),
            variant,
        )


def _border(img: Image.Image, colour: tuple[int, int, int]) -> Image.Image:
    out = img.copy()
    ImageDraw.Draw(out).rectangle(
        [0, 0, out.width - 1, out.height - 1], outline=_ink(out, colour), width=5
    )
    return out


def _cat_border() -> Iterator[Recipe]:
    cat = "border 5px"
    for source, size, colour, variant in [
        ("camera", S, (255, 255, 255), PLAIN),
        ("immunohistochemistry", M, (0, 0, 0), PLAIN),
        ("coffee", X, (200, 30, 40), Q95_Q85),
        ("moon", M, (255, 255, 255), PLAIN),
        ("retina", S, (128, 128, 128), TO_WEBP),
        ("clock", L, (0, 0, 0), PLAIN),
    ]:
        yield _changed(
            cat,
            source,
            size,
            f"5 px border in {colour}",
            _edit(source, size, functools.partial(_border, colour=colour)),
            variant,
        )


def _tint_frac(
    img: Image.Image, frac: tuple[float, float, float, float], colour: tuple[int, int, int]
) -> Image.Image:
    return _tint(img, _frac_box(img.size, *frac), colour, 0.18)


def _cat_tint() -> Iterator[Recipe]:
    cat = "tinted region"
    for source, size, frac, colour, variant in [
        ("astronaut", S, (0.55, 0.1, 0.95, 0.5), (255, 140, 0), PLAIN),
        ("coffee", M, (0.0, 0.6, 1.0, 1.0), (0, 110, 255), PLAIN),
        ("hubble_deep_field", L, (0.1, 0.1, 0.5, 0.4), (255, 0, 140), TO_WEBP),
        ("chelsea", M, (0.0, 0.0, 0.45, 0.45), (0, 110, 255), PLAIN),
        ("rocket", S, (0.5, 0.0, 1.0, 0.35), (255, 140, 0), Q95_Q85),
        ("retina", L, (0.3, 0.3, 0.7, 0.7), (0, 200, 120), PLAIN),
    ]:
        yield _changed(
            cat,
            source,
            size,
            f"region tinted {colour}",
            _edit(
                source,
                size,
                functools.partial(_tint_frac, frac=frac, colour=colour),
            ),
            variant,
        )


# --- changed, unnamed: dense local edits with the same ink and colour balance -------


def _cat_words_swapped() -> Iterator[Recipe]:
    cat = "unnamed: two words swapped"
    yield from _text_cat(
        cat,
        [
            (
                "coffee",
                M,
                20,
                "light",
                (0.06, 0.9),
                ["Our house blend"],
                "milk, then coffee",
                "coffee, then milk",
            ),
            (
                "rocket",
                S,
                44,
                "bare",
                (0.5, 0.9),
                [],
                "Gate north, exit south",
                "Gate south, exit north",
            ),
        ],
    )
    page = (1280, 640)

    def page_swap() -> tuple[Image.Image, Image.Image]:
        base = _render("page", page)
        return base, _swap_boxes(base, _poi("page", page, "either"), _poi("page", page, "object"))

    yield _changed(cat, "page", page, '"either" and "object" swapped on the scan', page_swap, PLAIN)
    yield _changed(
        cat, "page", page, '"either" and "object" swapped on the scan', page_swap, TO_AVIF
    )
    text = (1560, 600)

    def text_swap() -> tuple[Image.Image, Image.Image]:
        base = _render("text", text)
        return base, _swap_boxes(base, _poi("text", text, "t"), _poi("text", text, "n"))

    yield _changed(cat, "text", text, 'handwritten "t" and "n" swapped', text_swap, Q95_Q85)
    letter = (850, 1100)
    line = _doc_lines("doc-letter")[5].rstrip(".").split()
    yield _changed(
        cat,
        "doc-letter",
        letter,
        f'"{line[1]}" and "{line[4]}" swapped at 16px',
        _doc_edit("doc-letter", letter, 16, 5, line[1], "", swap=line[4]),
        TO_WEBP,
    )


def _cat_equal_ink_glyph() -> Iterator[Recipe]:
    yield from _text_cat(
        "unnamed: glyph replaced by one of equal ink",
        [
            ("astronaut", L, 20, "dark", (0.06, 0.94), ["Boarding"], "Gate B6", "Gate B9"),
            ("camera", S, 48, "bare", (0.9, 0.1), [], "Room 16", "Room 19"),
            (
                "stereo_motorcycle",
                M,
                18,
                "brand",
                (0.95, 0.94),
                ["Service bay"],
                "Bay 6, lift b",
                "Bay 9, lift d",
            ),
            ("moon", L, 22, "dark", (0.05, 0.06), ["Landing site"], "Apollo 16", "Apollo 19"),
        ],
    )


def _cat_digits_transposed() -> Iterator[Recipe]:
    yield from _text_cat(
        "unnamed: digits transposed",
        [
            ("coffee", L, 18, "light", (0.94, 0.08), ["Cafe opens"], "at 12:45", "at 12:54"),
            ("brick", S, 22, "dark", (0.06, 0.92), ["Call us"], "555 0142", "555 0124"),
            ("rocket", M, 40, "bare", (0.08, 0.1), [], "T-minus 36 min", "T-minus 63 min"),
            ("cell", S, 16, "light", (0.95, 0.95), ["Sample"], "no. 4137", "no. 4173"),
        ],
    )


def _patch_swap(img: Image.Image, frac: float, at: tuple[float, float]) -> Image.Image:
    """A square patch replaced by another patch of the same texture from elsewhere,
    the one whose mean and spread (per channel) best match it: no local mean moves."""
    w, h = img.size
    side = round(frac * min(w, h))
    x, y = round(at[0] * (w - side)), round(at[1] * (h - side))
    arr = _f32(img)

    def stats(px: int, py: int) -> FloatArray:
        block = arr[py : py + side, px : px + side].reshape(side * side, -1)
        out: FloatArray = np.concatenate([block.mean(axis=0), 0.5 * block.std(axis=0)])
        return out

    want = stats(x, y)
    best: tuple[float, int, int] = (math.inf, 0, 0)
    step = max(4, side // 4)
    for sy in range(0, h - side, step):
        for sx in range(0, w - side, step):
            if abs(sx - x) < 1.5 * side and abs(sy - y) < 1.5 * side:
                continue
            cost = float(np.abs(stats(sx, sy) - want).sum())
            best = min(best, (cost, sx, sy))
    _, sx, sy = best
    patch = img.crop((sx, sy, sx + side, sy + side))
    mask = Image.new("L", (side, side), 0)
    f = max(2, side // 16)
    ImageDraw.Draw(mask).rectangle([f, f, side - f, side - f], fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(f / 2))
    out = img.copy()
    out.paste(patch, (x, y), mask)
    return out


def _cat_texture_patch() -> Iterator[Recipe]:
    cat = "unnamed: texture patch swapped"
    for source, size, frac, at, variant in [
        ("brick", S, 0.12, (0.4, 0.4), PLAIN),
        ("gravel", M, 0.08, (0.3, 0.6), TO_WEBP),
        ("immunohistochemistry", L, 0.1, (0.6, 0.3), PLAIN),
        ("grass", S, 0.1, (0.5, 0.5), Q95_Q85),
        ("chelsea", M, 0.08, (0.5, 0.02), PLAIN),  # the striped fur on the forehead
        ("gravel", X, 0.06, (0.5, 0.3), PLAIN),
        ("grass", L, 0.08, (0.25, 0.75), TO_WEBP),
    ]:
        yield _changed(
            cat,
            source,
            size,
            f"{frac:.0%} square patch replaced by another patch of the texture",
            _edit(source, size, functools.partial(_patch_swap, frac=frac, at=at)),
            variant,
        )


def _rotate_box(img: Image.Image, box: Box) -> Image.Image:
    out = img.copy()
    out.paste(img.crop(box).transpose(Image.Transpose.ROTATE_90), box[:2])
    return out


def _cat_pattern_rotated() -> Iterator[Recipe]:
    cat = "unnamed: small pattern rotated 90 deg"
    for source, index, variant in [
        ("ui-shop", 0, PNG_BOTH),
        ("ui-dashboard", 3, PNG_WEBP),
        ("ui-settings", 5, PNG_BOTH),
        ("ui-login", 2, PNG_JPEG),
    ]:
        size = _UI_SIZES[source]

        def pictures(
            s: str = source, z: Size = size, i: int = index
        ) -> tuple[Image.Image, Image.Image]:
            drawn = _ui(s, z)
            return drawn.img, _rotate_box(drawn.img, drawn.icons[i][1])

        yield _changed(cat, source, size, f"icon #{index + 1} rotated 90 deg", pictures, variant)
    for source, size, frac, at, variant in [
        ("brick", M, 0.1, (0.3, 0.5), PLAIN),
        ("grass", S, 0.1, (0.6, 0.4), TO_WEBP),
    ]:

        def texture(im: Image.Image, f: float = frac, a: tuple[float, float] = at) -> Image.Image:
            w, h = im.size
            side = round(f * min(w, h))
            x, y = round(a[0] * (w - side)), round(a[1] * (h - side))
            return _rotate_box(im, (x, y, x + side, y + side))

        yield _changed(
            cat,
            source,
            size,
            f"{frac:.0%} square of the texture rotated 90 deg",
            _edit(source, size, texture),
            variant,
        )


# --------------------------------------------------------------------------- the set

_CATEGORIES: tuple[Callable[[], Iterator[Recipe]], ...] = (
    _cat_resave_q100,
    _cat_q95_444_q80_420,
    _cat_to_webp,
    _cat_to_avif,
    _cat_chain,
    _cat_progressive,
    _cat_icc,
    _cat_exif_orientation,
    _cat_16bit,
    _cat_rgba_opaque,
    _cat_grey_rgb,
    _cat_gif,
    _cat_ui_reencoded,
    _cat_chart_reencoded,
    _cat_low_contrast,
    _cat_animation_same,
    _cat_texture_grain,
    _cat_low_light,
    _cat_halftone,
    _cat_text_digit_small,
    _cat_text_digit_large,
    _cat_text_word_small,
    _cat_text_word_large,
    _cat_scan_word,
    _cat_qr,
    _cat_logo_mirrored,
    _cat_face_blurred,
    _cat_patched_out,
    _cat_sticker,
    _cat_shift,
    _cat_rotation,
    _cat_gamma,
    _cat_contrast,
    _cat_saturation,
    _cat_unsharp,
    _cat_line,
    _cat_chart_bar,
    _cat_animation_changed,
    _cat_alpha_hole,
    _cat_stereo,
    _cat_watermark,
    _cat_border,
    _cat_tint,
    _cat_words_swapped,
    _cat_equal_ink_glyph,
    _cat_digits_transposed,
    _cat_texture_patch,
    _cat_pattern_rotated,
)


def recipes(*, half: str | None = None) -> list[Recipe]:
    """Every pair's recipe (cheap: nothing is rendered or encoded yet)."""
    if half not in (None, "calibrate", "holdout"):
        raise ValueError(f"half must be None, 'calibrate' or 'holdout', not {half!r}")
    out = [r for cat in _CATEGORIES for r in cat()]
    return [r for r in out if half is None or split_of(r.source) == half]


@functools.cache
def _source_hash() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()


def _cache_path(folder: str, name: str) -> Path:
    key = f"{VERSION}|{PIL.__version__}|{_source_hash()}|{name}"
    return Path(folder) / f"{hashlib.sha256(key.encode()).hexdigest()[:40]}.pair"


def _cached_build(recipe: Recipe) -> Pair:
    """Build a pair, or read it from ``$FETCHER_PAIRS_CACHE`` (a file per pair: magic,
    the old side's length, a SHA-256 of both sides, then the bytes; written atomically)."""
    folder = os.environ.get(CACHE_ENV)
    if not folder:
        return recipe.build()
    path = _cache_path(folder, recipe.name)
    try:
        blob = path.read_bytes()
    except OSError:
        blob = b""
    if blob[:4] == b"FPC2" and len(blob) >= 44:
        n = int.from_bytes(blob[4:12], "big")
        body = blob[44:]
        if n <= len(body) and hashlib.sha256(body).digest() == blob[12:44]:
            return Pair(
                recipe.name, recipe.label, recipe.category, recipe.source, body[:n], body[n:]
            )
    pair = recipe.build()
    body = pair.old + pair.new
    head = b"FPC2" + len(pair.old).to_bytes(8, "big") + hashlib.sha256(body).digest()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(head + body)
    os.replace(tmp, path)
    return pair


def build_pairs(*, half: str | None = None) -> Iterator[Pair]:
    """Yield every labelled pair (``half``: only pairs whose source is in that half)."""
    for recipe in recipes(half=half):
        yield _cached_build(recipe)


@functools.cache
def all_pairs() -> tuple[Pair, ...]:
    """Every pair, built once per process (for tests that look at the whole set)."""
    return tuple(build_pairs())
