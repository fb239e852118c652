"""The labelled set: pairs of encoded real photographs, each labelled same or changed.

Used by ``tests/test_calibration.py`` (every pair must be classified correctly
by the default thresholds) and by ``benchmarks/calibrate.py`` (prints the table
and the margins). Photographs come from ``skimage.data``, which ships them.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

SAME = "same"
CHANGED = "changed"


@dataclass(frozen=True)
class Pair:
    name: str
    label: str  # SAME or CHANGED
    old: bytes
    new: bytes


def encode(img: Image.Image, fmt: str = "PNG", **params: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def load(name: str) -> Image.Image:
    from skimage import data

    arr = getattr(data, name)()
    if arr.ndim == 2:
        return Image.fromarray(arr, "L")
    return Image.fromarray(arr, "RGBA" if arr.shape[2] == 4 else "RGB")


def _jpeg_roundtrip(img: Image.Image, quality: int) -> Image.Image:
    return Image.open(io.BytesIO(encode(img, "JPEG", quality=quality)))


def _shift(img: Image.Image, delta: int) -> Image.Image:
    arr = np.asarray(img).astype(np.int16) + delta
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), img.mode)


def _scale_channel(img: Image.Image, channel: int, factor: float) -> Image.Image:
    arr = np.asarray(img).astype(np.float32)
    arr[..., channel] *= factor
    return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), img.mode)


def _box(img: Image.Image, fraction: float, where: tuple[float, float], fill: Any) -> Image.Image:
    out = img.copy()
    w, h = out.size
    side = round((fraction * w * h) ** 0.5)
    x0, y0 = int(where[0] * (w - side)), int(where[1] * (h - side))
    ImageDraw.Draw(out).rectangle([x0, y0, x0 + side - 1, y0 + side - 1], fill=fill)
    return out


def _watermark(img: Image.Image, text: str, size: int, fill: Any) -> Image.Image:
    out = img.copy()
    font = ImageFont.load_default(size=size)
    w, h = out.size
    ImageDraw.Draw(out).text((w * 0.55, h * 0.85), text, font=font, fill=fill)
    return out


def _erase_word(page: Image.Image) -> Image.Image:
    """Paint over one word of the document scan with the local paper colour."""
    arr = np.asarray(page).copy()
    # A word on the third text line of skimage.data.page(); the paper colour
    # is taken from the region's bright pixels so the patch looks erased.
    region = arr[62:80, 120:175]
    region[...] = np.percentile(region, 90)
    return Image.fromarray(arr, "L")


def _with_exif(img: Image.Image) -> bytes:
    exif = Image.Exif()
    exif[0x010F] = "fetcher test camera"  # Make
    exif[0x0131] = "calibration"  # Software
    return encode(img, "JPEG", quality=95, exif=exif.tobytes())


def _replace(img: Image.Image, other: str) -> Image.Image:
    return load(other).convert(img.mode).resize(img.size, Image.Resampling.LANCZOS)


def _crop_back(img: Image.Image, fraction: float) -> Image.Image:
    w, h = img.size
    dx, dy = int(w * fraction), int(h * fraction)
    return img.crop((dx, dy, w - dx, h - dy)).resize(img.size, Image.Resampling.LANCZOS)


def build_pairs() -> Iterator[Pair]:
    """Yield every labelled pair, same pairs first."""
    photos = ["astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "camera", "coins"]
    for name in photos:
        img = load(name)
        png = encode(img, "PNG")
        for q in (85, 90, 95):
            yield Pair(f"{name}: PNG -> JPEG q{q}", SAME, png, encode(img, "JPEG", quality=q))
        q95 = encode(img, "JPEG", quality=95)
        yield Pair(
            f"{name}: JPEG q95 -> re-saved q85",
            SAME,
            q95,
            encode(Image.open(io.BytesIO(q95)), "JPEG", quality=85),
        )
        yield Pair(
            f"{name}: JPEG q90 -> progressive q90",
            SAME,
            encode(img, "JPEG", quality=90),
            encode(img, "JPEG", quality=90, progressive=True),
        )
        yield Pair(
            f"{name}: JPEG -> PNG of it", SAME, q95, encode(Image.open(io.BytesIO(q95)), "PNG")
        )
        yield Pair(
            f"{name}: PNG level 1 -> level 9",
            SAME,
            encode(img, "PNG", compress_level=1),
            encode(img, "PNG", compress_level=9),
        )
        yield Pair(f"{name}: PNG -> WebP lossless", SAME, png, encode(img, "WEBP", lossless=True))
        yield Pair(f"{name}: PNG -> WebP q95", SAME, png, encode(img, "WEBP", quality=95))
        yield Pair(f"{name}: JPEG q95 -> + EXIF", SAME, q95, _with_exif(img))
    pal = load("chelsea").quantize(colors=256).convert("RGB")
    yield Pair(
        "chelsea: palette PNG -> RGB PNG, same colours",
        SAME,
        encode(pal.quantize(colors=256), "PNG"),
        encode(pal, "PNG"),
    )
    page = load("page")
    yield Pair("page: PNG -> JPEG q90", SAME, encode(page, "PNG"), encode(page, "JPEG", quality=90))
    logo = load("logo")
    yield Pair(
        "logo: RGBA PNG -> WebP lossless", SAME, encode(logo), encode(logo, "WEBP", lossless=True)
    )

    changes: list[tuple[str, Callable[[Image.Image], Image.Image]]] = [
        ("brighter +12", lambda im: _shift(im, 12)),
        ("darker -12", lambda im: _shift(im, -12)),
        ("flipped left-right", lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)),
        ("flipped top-bottom", lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM)),
        ("cropped 5% and scaled back", lambda im: _crop_back(im, 0.05)),
        ("blurred radius 2", lambda im: im.filter(ImageFilter.GaussianBlur(2))),
        ("box over 1% (centre)", lambda im: _box(im, 0.01, (0.5, 0.5), "black")),
        ("box over 1% (corner)", lambda im: _box(im, 0.01, (1.0, 1.0), "white")),
        ("grey box over 0.5%", lambda im: _box(im, 0.005, (0.3, 0.6), "grey")),
        ("watermark text", lambda im: _watermark(im, "(c) example", 20, "white")),
    ]
    for name in photos:
        img = load(name)
        png = encode(img, "PNG")
        for label, change in changes:
            yield Pair(f"{name}: {label}", CHANGED, png, encode(change(img), "PNG"))
        # a visible edit that is then JPEG-compressed as a CMS would
        yield Pair(
            f"{name}: box over 1%, saved as JPEG q90",
            CHANGED,
            png,
            encode(_box(img, 0.01, (0.7, 0.3), "black"), "JPEG", quality=90),
        )
        other = "coffee" if name != "coffee" else "chelsea"
        yield Pair(f"{name}: replaced by {other}", CHANGED, png, encode(_replace(img, other)))
        if img.mode == "RGB":
            yield Pair(
                f"{name}: channels swapped RGB->BGR",
                CHANGED,
                png,
                encode(Image.fromarray(np.asarray(img)[..., ::-1].copy(), "RGB")),
            )
            yield Pair(
                f"{name}: red reduced 12%", CHANGED, png, encode(_scale_channel(img, 0, 0.88))
            )
    yield Pair("page: a word erased", CHANGED, encode(page), encode(_erase_word(page)))
    yield Pair(
        "page: a word erased, saved as JPEG q90",
        CHANGED,
        encode(page),
        encode(_erase_word(page), "JPEG", quality=90),
    )
    alpha = np.asarray(logo).copy()
    alpha[..., 3] = (alpha[..., 3].astype(np.uint16) * 6 // 10).astype(np.uint8)
    yield Pair(
        "logo: alpha faded to 60%", CHANGED, encode(logo), encode(Image.fromarray(alpha, "RGBA"))
    )
    hole = np.asarray(logo).copy()
    hole[200:260, 200:260, 3] = 0
    yield Pair(
        "logo: transparent hole", CHANGED, encode(logo), encode(Image.fromarray(hole, "RGBA"))
    )
