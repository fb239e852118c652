"""Adversarial benchmark of fetcher.compare: labelled pairs made to break the similarity rung.

The thresholds of ``[compare]`` are calibrated on ``tests/pairs.py``. This builds 336
labelled pairs that calibration never saw, chosen to sit where the similarity rung
is weakest:

* other photographs (scikit-image's horse, microaneurysms, phantom, brick, gravel,
  grass, Hubble deep field, immunohistochemistry, retina, colour wheel, motorcycle,
  text, page, logo), cropped to web sizes with mild seeded grain;
* *changed* pairs: one digit of a caption swapped, 14-24 px, at 30-130 levels of
  contrast to the background (minimal-ink digits: 3/8, 0/6, 0/9); faint text added 15-30
  levels from the background; text on busy texture; stickers and label patches of
  1-2 %; small logos mirrored; 2 px lines, one of them iso-luminant with the sky;
  64x64 areas blurred; small brightness changes (+6 to +8 levels on a fifth of the
  picture); a small object moved 3 px; gamma 1.15; a 1 % crop rescaled;
* *same* pairs: re-encodes of each old file (JPEG quality and subsampling, WebP, PNG,
  AVIF, progressive, chains), EXIF and ICC added or stripped: these must stay same.

Every picture is built here, deterministically (seeded numpy generators): a source from
``skimage.data`` (offline) is cropped to the target aspect at a focus point, upscaled
with LANCZOS, given seeded grain (luma sigma ~2 levels, clumped over 2 px, chroma ~0.8)
and saved as JPEG q90 4:2:0, the *old* file. A *same* pair's new file is a re-encode or
metadata change of the old file; a *changed* pair's new file is the old one decoded,
edited as a person editing the published picture would, and saved as JPEG q85, WebP q80
or JPEG q90 (text swaps draw the old text on the old side too, so only a glyph differs).
Cases marked ``(extra)`` go beyond the list the benchmark was written to (boundary sweeps
below it); they are totalled separately.

    python benchmarks/adversarial.py [--only SUBSTR] [--csv FILE] [--jobs N] [--strict]
                                      [--threshold NAME=VALUE]

``--only`` keeps the cases whose name contains SUBSTR; ``--csv`` also writes one row per
case to FILE; ``--jobs`` sets the worker processes that build and compare the pairs
(default: one per core; each compares with ``threads=1``); ``--threshold
local_structure=0.85`` decides with that threshold instead of ``[compare]``'s default (to
weigh a threshold's missed changes here against its needless writes in
``benchmarks/reencodes.py``).

It prints one line per case: ok or WRONG, the expected and the given verdict, the
reason, the score that decided, then for each score of ``fetcher.comparison.METRICS``
its value and its margin ``(score - threshold) / (1 - threshold)`` (the thresholds of
``fetcher.CompareConfig()``, of the same names; negative is below the threshold, so
changed), then the case and the edit measured before encoding (max luma difference,
pixels moved by more than 4 levels, the luma of the background and the ink). Then a
summary: right and wrong in all, on the cases not marked extra and on the extra ones;
every wrong case again; per score, the same case closest to its threshold and the
changed case it catches closest to its threshold.

Exit status 0 always (a measurement, not a test); with ``--strict``, 1 when any case
is decided wrongly.
"""

from __future__ import annotations

import argparse
import csv
import io
import math
import os
import struct
import sys
import time
import zlib
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageDraw, ImageFilter, ImageFont, ImageOps

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fetcher import CompareConfig, compare
from fetcher.comparison import METRICS

SAME, CHANGED = "same", "changed"


def rng_for(*parts: object) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32("|".join(map(str, parts)).encode()))


# ----------------------------------------------------------------------------- sources


def _colourise(grey: np.ndarray, lo: tuple, hi: tuple) -> np.ndarray:
    g = grey.astype(np.float32)[..., None] / 255.0
    return (
        (np.array(lo, np.float32) * (1 - g) + np.array(hi, np.float32) * g)
        .clip(0, 255)
        .astype(np.uint8)
    )


def _horse_scene(shift: int = 0) -> np.ndarray:
    """data.horse (binary silhouette) as a dark-brown horse on a colourised grass field
    under a sky gradient: a composite scene not in the calibration."""
    from skimage import data

    horse = data.horse()  # True = background
    h, w = horse.shape
    grass = np.asarray(Image.fromarray(data.grass()).resize((w, h), Image.Resampling.LANCZOS))
    field = _colourise(grass, (40, 70, 20), (150, 190, 90)).astype(np.float32)
    yy = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    sky = (
        np.array([110, 160, 225], np.float32) * (1 - yy)
        + np.array([200, 220, 240], np.float32) * yy
    )
    sky = np.broadcast_to(sky, (h, w, 3))
    horizon = (np.arange(h)[:, None] > h * 0.55)[..., None]
    scene = np.where(horizon, field, sky)
    body = np.roll(~horse, shift, axis=1)
    soft = (
        np.asarray(
            Image.fromarray((body * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.8)),
            np.float32,
        )[..., None]
        / 255
    )
    shade = np.array([70, 45, 28], np.float32) + 15 * np.roll(
        rng_for("horse").standard_normal((h, w, 1)).astype(np.float32), shift, axis=1
    )
    return (scene * (1 - soft) + shade * soft).clip(0, 255).astype(np.uint8)


def _source(name: str) -> np.ndarray:
    from skimage import data

    name = name.split("@")[0]
    if name == "horse-scene":
        return _horse_scene()
    if name == "microaneurysms":
        return data.microaneurysms()
    if name == "phantom":
        return (data.shepp_logan_phantom() * 255).clip(0, 255).astype(np.uint8)
    if name == "brick-red":
        return _colourise(data.brick(), (70, 25, 15), (225, 140, 110))
    if name == "gravel-warm":
        return _colourise(data.gravel(), (45, 38, 30), (235, 220, 195))
    if name == "grass-green":
        return _colourise(data.grass(), (25, 45, 10), (170, 205, 95))
    if name == "motorcycle":
        return data.stereo_motorcycle()[0]
    if name == "logo-flat":  # the RGBA logo flattened on white
        a = data.logo().astype(np.float32)
        al = a[..., 3:4] / 255
        return (a[..., :3] * al + 255 * (1 - al)).astype(np.uint8)
    return getattr(data, name)()


# source -> (size, focus in source px or None for centre)
PHOTOS: dict[str, tuple[tuple[int, int], tuple[float, float] | None]] = {
    "horse-scene": ((1920, 1080), None),
    "microaneurysms": ((1200, 800), None),
    "phantom": ((1080, 1080), None),
    "brick-red": ((1200, 800), None),
    "gravel-warm": ((1920, 1080), None),
    "grass-green": ((1200, 800), None),
    "hubble_deep_field": ((1920, 1080), (500, 400)),
    "immunohistochemistry": ((1200, 800), None),
    "retina": ((1920, 1080), (705, 705)),
    "colorwheel": ((1200, 800), None),
    "motorcycle": ((1920, 1080), None),
    "text": ((1920, 1080), None),
    "page": ((1200, 800), None),
    "logo-flat": ((1080, 1080), None),
    "grass-green@grain2": ((1200, 800), None),  # (extra) twice the grain
    "hubble_deep_field@grain2": ((1920, 1080), (500, 400)),
}


def render(
    name: str, size: tuple[int, int], grain: float = 1.0, arr: np.ndarray | None = None
) -> Image.Image:
    arr = _source(name) if arr is None else arr
    sh, sw = arr.shape[:2]
    w, h = size
    focus = PHOTOS.get(name, (None, None))[1] or (sw / 2, sh / 2)
    if sw / sh > w / h:
        cw, ch = sh * w / h, float(sh)
    else:
        cw, ch = float(sw), sw * h / w
    x0 = min(max(focus[0] - cw / 2, 0.0), sw - cw)
    y0 = min(max(focus[1] - ch / 2, 0.0), sh - ch)
    mode = "L" if arr.ndim == 2 else "RGB"
    img = Image.fromarray(arr, mode).resize(
        size, Image.Resampling.LANCZOS, box=(x0, y0, x0 + cw, y0 + ch)
    )
    if not grain:
        return img
    r = rng_for("grain", name, w, h)
    n = r.standard_normal((h + 1, w + 1), dtype=np.float32)
    luma = (n[:-1, :-1] + n[1:, :-1] + n[:-1, 1:] + n[1:, 1:]) * 0.5  # clumped, sigma 1
    f = np.asarray(img, np.float32)
    v = (f if f.ndim == 2 else f.mean(axis=2)) / 255
    weight = 0.6 + 1.6 * v * (1 - v)
    if f.ndim == 2:
        f = f + luma * 2.0 * grain * weight
    else:
        chroma = r.standard_normal((h, w, 3), dtype=np.float32) * 0.8 * grain
        f = f + (luma * 2.0 * grain * weight)[..., None] + chroma * weight[..., None]
    return Image.fromarray(np.clip(np.rint(f), 0, 255).astype(np.uint8), mode)


# ----------------------------------------------------------------------------- encoders


def save(img: Image.Image, fmt: str, **kw) -> bytes:
    b = io.BytesIO()
    img.save(b, format=fmt, **kw)
    return b.getvalue()


def dec(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im.convert("RGB") if im.mode not in ("RGB", "L") else im.copy()


def jpeg(img: Image.Image, q: int, sub: int | None = 2, **kw) -> bytes:
    if sub is not None:
        kw["subsampling"] = sub
    return save(img, "JPEG", quality=q, **kw)


def webp(img: Image.Image, q: int) -> bytes:
    return save(img, "WEBP", quality=q)


def png(img: Image.Image) -> bytes:
    return save(img, "PNG", compress_level=6)


def avif(img: Image.Image, q: int) -> bytes:
    return save(img, "AVIF", quality=q)


def srgb_icc() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def splice_exif(jpg: bytes) -> bytes:
    """Insert an EXIF APP1 (Make/Model/Orientation=1/DateTime) after SOI, no re-encode."""
    ex = Image.Exif()
    ex[0x010F] = "ProbeCam"
    ex[0x0110] = "Model 7"
    ex[0x0112] = 1
    ex[0x0132] = "2025:06:01 12:00:00"
    payload = b"Exif\x00\x00" + ex.tobytes()
    seg = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpg[:2] + seg + jpg[2:]


def strip_app(jpg: bytes) -> bytes:
    """Remove every APPn (n>=1) and COM segment: the entropy data is untouched."""
    out, i = bytearray(jpg[:2]), 2
    while i < len(jpg):
        assert jpg[i] == 0xFF
        marker = jpg[i + 1]
        if marker == 0xDA:  # start of scan: the rest verbatim
            out += jpg[i:]
            break
        ln = struct.unpack(">H", jpg[i + 2 : i + 4])[0]
        if not (0xE1 <= marker <= 0xEF or marker == 0xFE):
            out += jpg[i : i + 2 + ln]
        i += 2 + ln
    return bytes(out)


# ----------------------------------------------------------------------------- edits


_FONTS: dict[int, ImageFont.FreeTypeFont] = {}


def font(px: int):
    if px not in _FONTS:
        _FONTS[px] = ImageFont.load_default(size=px)
    return _FONTS[px]


def ink(img: Image.Image, rgb):
    if img.mode == "L":
        return round(0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])
    return tuple(rgb)


def local_mean(img: Image.Image, box) -> tuple[int, int, int]:
    a = np.asarray(img.convert("RGB").crop(box), np.float32).reshape(-1, 3).mean(axis=0)
    return tuple(int(round(v)) for v in a)  # noqa: RUF046


def draw_text(
    img: Image.Image, xy, text: str, px: int, style: str, reserve: str = ""
) -> Image.Image:
    """styles: white / dark (no shadow), shadow (white + soft dark shadow),
    panel (white 88 % panel, dark text, sized for ``reserve`` too),
    lowc+N / lowc-N (grey N levels lighter/darker than the local background)."""
    out = img.convert("RGBA")
    ov = Image.new("RGBA", img.size, (0, 0, 0, 0))
    d = ImageDraw.Draw(ov)
    f = font(px)
    x, y = xy
    if style == "panel":
        wmax = max(d.textlength(t, font=f) for t in (text, reserve or text))
        pad = round(px * 0.5)
        d.rounded_rectangle(
            [x - pad, y - pad, x + wmax + pad, y + px + pad], radius=4, fill=(255, 255, 255, 225)
        )
        d.text((x, y), text, font=f, fill=(25, 25, 30, 255))
    elif style == "shadow":
        d.text((x + 1, y + 1), text, font=f, fill=(0, 0, 0, 140))
        d.text((x, y), text, font=f, fill=(255, 255, 255, 255))
    elif style == "white":
        d.text((x, y), text, font=f, fill=(255, 255, 255, 255))
    elif style == "dark":
        d.text((x, y), text, font=f, fill=(20, 20, 20, 255))
    elif style.startswith("lowc"):
        delta = int(style[4:])
        wbox = round(d.textlength(reserve or text, font=f))
        m = local_mean(img, (x, y, x + wbox, y + px))
        col = tuple(int(np.clip(c + delta, 0, 255)) for c in m)
        d.text((x, y), text, font=f, fill=(*col, 255))
    else:
        raise ValueError(style)
    res = Image.alpha_composite(out, ov)
    return res.convert(img.mode)


def contrast(img: Image.Image, xy, text: str, px: int, style: str) -> str:
    """Luma of the background box under the text, and of the text's ink."""
    w, h = text_wh(text, px)
    bg = float(luma(img.crop((xy[0], xy[1], xy[0] + w, xy[1] + h))).mean())
    ink_y = {"white": 255.0, "shadow": 255.0, "dark": 20.0, "panel": 25.0}.get(style)
    if ink_y is None:
        ink_y = bg + int(style[4:])
    return f"bgY={bg:.0f} inkY={ink_y:.0f}"


def sticker(img, at, frac, colour, label):
    w, h = img.size
    r = math.sqrt(frac * w * h / math.pi)
    cx, cy = at[0] * w, at[1] * h
    out = img.convert("RGB").copy()
    d = ImageDraw.Draw(out)
    d.ellipse(
        [cx - r, cy - r, cx + r, cy + r],
        fill=tuple(colour),
        outline=(255, 255, 255),
        width=max(2, round(r / 18)),
    )
    if label:
        d.text(
            (cx, cy), label, font=font(max(12, round(r * 0.5))), fill=(255, 255, 255), anchor="mm"
        )
    return out.convert(img.mode)


def flat_patch(img, box):
    """A rectangle filled with its own mean colour (texture erased, colour kept)."""
    out = img.copy()
    ImageDraw.Draw(out).rectangle(
        box, fill=ink(img, local_mean(img, box)) if img.mode == "L" else local_mean(img, box)
    )
    return out


def plausible_patch(img, box, delta):
    """A flat rectangle of the region's mean colour shifted by ``delta`` levels (a price
    tag / label in the picture's own palette), with a 1 px darker outline."""
    m = local_mean(img, box)
    col = tuple(int(np.clip(c + delta, 0, 255)) for c in m)
    out = img.convert("RGB").copy()
    ImageDraw.Draw(out).rectangle(box, fill=col, outline=tuple(max(0, c - 25) for c in col))
    return out.convert(img.mode)


def logo_rgba(px: int) -> Image.Image:
    from skimage import data

    a = data.logo().copy()
    yy, xx = np.mgrid[0 : a.shape[0], 0 : a.shape[1]]
    a[..., 3] = np.clip((243.5 - np.hypot(xx - 250.5, yy - 249.5)) * 255, 0, 255).astype(np.uint8)
    return Image.fromarray(a, "RGBA").resize((px, px), Image.Resampling.LANCZOS)


def wordmark(px: int) -> Image.Image:
    out = Image.new("RGBA", (px * 2, px), (0, 0, 0, 0))
    d = ImageDraw.Draw(out)
    d.rounded_rectangle([0, 0, px * 2 - 1, px - 1], radius=px // 5, fill=(30, 110, 200, 255))
    d.text(
        (px // 6, px // 2), "Kf", font=font(round(px * 0.6)), fill=(255, 255, 255, 255), anchor="lm"
    )
    tip = px * 2 - px // 6
    d.polygon(
        [(tip - px // 2, px // 4), (tip, px // 2), (tip - px // 2, px * 3 // 4)],
        fill=(255, 255, 255, 255),
    )
    return out


def paste_mark(img, mark, xy):
    base = img.convert("RGBA")
    ov = Image.new("RGBA", img.size, (0, 0, 0, 0))
    ov.paste(mark, xy)
    return Image.alpha_composite(base, ov).convert(img.mode)


def line(img, p0, p1, colour, width=2):
    w, h = img.size
    out = img.copy()
    ImageDraw.Draw(out).line(
        [(p0[0] * w, p0[1] * h), (p1[0] * w, p1[1] * h)], fill=ink(img, colour), width=width
    )
    return out


def detail_box(img, side, pick="max"):
    """The side x side box with the most (pick='max') or the 60th-percentile local detail,
    on a coarse grid away from the borders."""
    g = np.asarray(img.convert("L"), np.float32)
    h, w = g.shape
    cands = []
    for y in range(side, h - 2 * side, side // 2):
        for x in range(side, w - 2 * side, side // 2):
            blk = g[y : y + side, x : x + side]
            lap = np.abs(np.diff(blk, axis=0)).mean() + np.abs(np.diff(blk, axis=1)).mean()
            cands.append((float(lap), x, y))
    cands.sort()
    c = cands[-1] if pick == "max" else cands[int(len(cands) * 0.6)]
    return (c[1], c[2], c[1] + side, c[2] + side)


def blur_box(img, box):
    side = box[2] - box[0]
    radius = max(4.0, side / 9)
    blurred = img.filter(ImageFilter.GaussianBlur(radius))
    mask = Image.new("L", img.size, 0)
    ImageDraw.Draw(mask).ellipse(box, fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(radius / 3))
    return Image.composite(blurred, img, mask)


def brighten_region(img, frac_box, levels):
    w, h = img.size
    x0, y0, x1, y1 = (
        round(frac_box[0] * w),
        round(frac_box[1] * h),
        round(frac_box[2] * w),
        round(frac_box[3] * h),
    )
    a = np.asarray(img, np.float32).copy()
    a[y0:y1, x0:x1] += levels
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), img.mode)


def move_object(img, box, dx, dy):
    """Cut a rectangle and paste it (dx, dy) px away (the uncovered strip keeps the old
    pixels, as a careless move does)."""
    out = img.copy()
    out.paste(img.crop(box), (box[0] + dx, box[1] + dy))
    return out


def gamma(img, g):
    lut = [round(255 * (i / 255) ** g) for i in range(256)]
    return img.point(lut * len(img.getbands()))


def crop_rescale(img, frac):
    w, h = img.size
    dx, dy = w * frac / 2, h * frac / 2
    return img.resize(img.size, Image.Resampling.LANCZOS, box=(dx, dy, w - dx, h - dy))


# ----------------------------------------------------------------------------- cases


@dataclass
class Case:
    name: str
    expected: str
    build: Callable[[], tuple[bytes, bytes]]
    extra: bool = False  # beyond the brief's list (reported separately)
    note: str = ""  # filled at build: the edit before encoding, in luma levels


CASES: list[Case] = []


def luma(img: Image.Image) -> np.ndarray:
    a = np.asarray(img, np.float32)
    return a if a.ndim == 2 else a[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)


def measure(a: Image.Image, b: Image.Image) -> str:
    """The edit before encoding: max |dY| and how many pixels moved by more than 4 levels."""
    d = np.abs(luma(a) - luma(b))
    return f"maxdY={d.max():.0f} n(dY>4)={int((d > 4).sum())}"


PlaceKey = tuple[str, tuple[int, int], tuple[int, int], tuple[float, float, float, float], int]
_PLACED: dict[PlaceKey, tuple[int, int]] = {}  # placements found, by their arguments
_PENDING: list[PlaceKey] | None = None  # while recording: the placements build_cases asks for


def place(
    src: str,
    wh: tuple[int, int],
    lum: tuple[int, int] = (0, 255),
    region: tuple[float, float, float, float] = (0, 0, 1, 1),
    delta: int = 0,
) -> tuple[int, int]:
    """:func:`_find_place`, remembered; while recording, only note what is asked for.

    The search is most of the time it takes to build the cases, so :func:`plan` runs the
    searches the cases ask for in the worker processes first (same function, same
    arguments, so the same places).
    """
    key: PlaceKey = (src, tuple(wh), tuple(lum), tuple(region), delta)  # type: ignore[assignment]
    if key in _PLACED:
        return _PLACED[key]
    if _PENDING is not None:
        _PENDING.append(key)
        return (0, 0)
    _PLACED[key] = xy = _find_place(*key)
    return xy


def _find_place(
    src: str, wh: tuple[int, int], lum=(0, 255), region=(0, 0, 1, 1), delta: int = 0
) -> tuple[int, int]:
    """The flattest box of size ``wh`` inside ``region`` whose mean luma is in ``lum``
    (and, with ``delta``, whose channel means stay in [0, 255] when shifted by it)."""
    img = base(src)
    y_ = luma(img)
    rgb = np.asarray(img.convert("RGB"), np.float32)
    W, H = img.size
    bw, bh = wh
    best = None
    for y in range(max(12, round(region[1] * H)), min(H - bh - 12, round(region[3] * H - bh)), 10):
        for x in range(
            max(12, round(region[0] * W)), min(W - bw - 12, round(region[2] * W - bw)), 10
        ):
            blk = y_[y : y + bh, x : x + bw]
            m = float(blk.mean())
            if not lum[0] <= m <= lum[1]:
                continue
            if delta:
                cm = rgb[y : y + bh, x : x + bw].reshape(-1, 3).mean(axis=0)
                if (cm + delta).min() < 3 or (cm + delta).max() > 252:
                    continue
            sd = float(blk.std())
            if best is None or sd < best[0]:
                best = (sd, x, y)
    assert best is not None, (src, wh, lum, region)
    return best[1], best[2]


def text_wh(text: str, px: int) -> tuple[int, int]:
    return round(font(px).getlength(text)) + 4, px + 4


_RENDER_CACHE: dict = {}
_OLD_CACHE: dict = {}


def base(src: str) -> Image.Image:
    if src not in _RENDER_CACHE:
        _RENDER_CACHE[src] = render(src, PHOTOS[src][0], 2.0 if src.endswith("@grain2") else 1.0)
    return _RENDER_CACHE[src].copy()


def old_jpeg(src: str) -> bytes:
    if src not in _OLD_CACHE:
        _OLD_CACHE[src] = jpeg(base(src), 90)
    return _OLD_CACHE[src]


NEW_ENC = {
    "q90": lambda im: jpeg(im, 90),
    "q85": lambda im: jpeg(im, 85),
    "webp80": lambda im: webp(im, 80),
}


def add_same(src: str, extra: bool = False) -> None:
    def mk(label: str, fn: Callable[[], tuple[bytes, bytes]], ex: bool = False) -> None:
        CASES.append(
            Case(f"{src} {PHOTOS[src][0][0]}x{PHOTOS[src][0][1]}: {label}", SAME, fn, ex or extra)
        )

    o = lambda: old_jpeg(src)  # noqa: E731
    mk(
        "q95 444 -> q80 420",
        lambda: (jpeg(base(src), 95, 0), jpeg(dec(jpeg(base(src), 95, 0)), 80, 2)),
    )
    mk("JPEG q90 -> WebP q80", lambda: (o(), webp(dec(o()), 80)))
    mk("JPEG q90 -> PNG", lambda: (o(), png(dec(o()))))
    mk("re-save q100 (Pillow default subsampling)", lambda: (o(), jpeg(dec(o()), 100, None)))
    mk("EXIF spliced in (no re-encode)", lambda: (o(), splice_exif(o())))
    mk("sRGB ICC added, re-encoded q90", lambda: (o(), jpeg(dec(o()), 90, icc_profile=srgb_icc())))
    mk(
        "ICC stripped (old has sRGB ICC+EXIF, new APPn removed)",
        lambda: (
            splice_exif(jpeg(base(src), 90, icc_profile=srgb_icc())),
            strip_app(jpeg(base(src), 90, icc_profile=srgb_icc())),
        ),
    )
    mk("progressive q90", lambda: (o(), jpeg(dec(o()), 90, progressive=True)))
    mk("chain q90 -> q85 -> q80", lambda: (o(), jpeg(dec(jpeg(dec(o()), 85)), 80)))
    mk("(extra) CMS re-encode q75 420", lambda: (o(), jpeg(dec(o()), 75)), True)
    mk("(extra) JPEG -> AVIF q60", lambda: (o(), avif(dec(o()), 60)), True)


def add_changed(
    src: str,
    label: str,
    edit: Callable[[Image.Image], Image.Image],
    enc: str = "q85",
    extra: bool = False,
) -> None:
    """Old: render -> JPEG q90. New: old file decoded, edited, saved with ``enc``."""

    def fn():
        o = old_jpeg(src)
        d = dec(o)
        e = edit(d)
        return o, NEW_ENC[enc](e), measure(d, e)

    w, h = PHOTOS[src][0]
    CASES.append(Case(f"{src} {w}x{h}: {label} [new {enc}]", CHANGED, fn, extra))


def add_text_swap(
    src: str, xy, px: int, style: str, old_t: str, new_t: str, enc: str, extra: bool = False
) -> None:
    """Text drawn on both renders (old: old_t, new: new_t); old JPEG q90, new ``enc``."""

    def fn():
        b = base(src)
        reserve = max(old_t, new_t, key=len)
        a, n = (
            draw_text(b, xy, old_t, px, style, reserve),
            draw_text(b, xy, new_t, px, style, reserve),
        )
        return jpeg(a, 90), NEW_ENC[enc](n), measure(a, n) + " " + contrast(b, xy, old_t, px, style)

    w, h = PHOTOS[src][0]
    CASES.append(
        Case(
            f'{src} {w}x{h}: "{old_t}"->"{new_t}" {px}px {style} at {xy} [new {enc}]',
            CHANGED,
            fn,
            extra,
        )
    )


def add_text_added(
    src: str, xy, px: int, style: str, text: str, enc: str, extra: bool = False
) -> None:
    def fn():
        o = old_jpeg(src)
        d = dec(o)
        n = draw_text(d, xy, text, px, style)
        return o, NEW_ENC[enc](n), measure(d, n) + " " + contrast(d, xy, text, px, style)

    w, h = PHOTOS[src][0]
    CASES.append(
        Case(
            f'{src} {w}x{h}: text "{text}" added {px}px {style} at {xy} [new {enc}]',
            CHANGED,
            fn,
            extra,
        )
    )


def build_cases() -> None:
    for src in PHOTOS:
        add_same(src, extra=src.endswith("@grain2"))

    # --- one digit swapped, 14/16/20/24 px, minimal-ink pairs (3<->8, 0<->6, 0<->9 differ least
    #     in this font); the text goes on the flattest box of the given luma range / region
    SKY, TOP, BOTTOM, ALL = (0, 0, 1, 0.45), (0, 0, 1, 0.25), (0, 0.75, 1, 1), (0, 0, 1, 1)
    swaps = [
        # src, px, style, old, new, enc, luma range of the background, region
        (
            "horse-scene",
            14,
            "dark",
            "Auction 12 June, lot 3",
            "Auction 12 June, lot 8",
            "q85",
            (120, 255),
            SKY,
        ),
        ("horse-scene", 16, "dark", "$1,350", "$1,850", "webp80", (120, 255), SKY),
        ("horse-scene", 16, "dark", "Room 140", "Room 146", "q85", (120, 255), SKY),
        ("horse-scene", 20, "white", "2025-06-16", "2025-06-18", "q85", (0, 255), (0, 0.65, 1, 1)),
        (
            "horse-scene",
            24,
            "shadow",
            "EUR 4,100",
            "EUR 4,700",
            "webp80",
            (0, 255),
            (0, 0.65, 1, 1),
        ),
        ("microaneurysms", 14, "white", "Exam 2024-03-10", "Exam 2024-03-18", "q85", (0, 255), ALL),
        ("microaneurysms", 16, "panel", "ID 55103", "ID 55108", "webp80", (0, 255), BOTTOM),
        ("microaneurysms", 16, "dark", "Dose 0.50 mg", "Dose 0.59 mg", "webp80", (0, 255), ALL),
        (
            "hubble_deep_field",
            14,
            "white",
            "Exposure 1,300 s",
            "Exposure 1,800 s",
            "q85",
            (0, 40),
            BOTTOM,
        ),
        ("hubble_deep_field", 20, "white", "z = 6.10", "z = 6.19", "webp80", (0, 40), TOP),
        ("immunohistochemistry", 14, "panel", "Lot 40-163", "Lot 40-168", "q85", (0, 255), BOTTOM),
        ("immunohistochemistry", 24, "dark", "$49.90", "$48.90", "webp80", (170, 255), ALL),
        ("retina", 16, "white", "OD 2019-11-03", "OD 2019-11-08", "q85", (0, 30), BOTTOM),
        ("retina", 24, "white", "Patient 7130", "Patient 7180", "webp80", (0, 30), TOP),
        (
            "retina",
            14,
            "white",
            "Lesion 0.30 mm",
            "Lesion 0.36 mm",
            "q85",
            (60, 200),
            (0.25, 0.25, 0.75, 0.75),
        ),
        ("colorwheel", 14, "white", "Swatch 1103", "Swatch 1108", "q85", (0, 30), BOTTOM),
        ("colorwheel", 20, "dark", "$13.99", "$18.99", "webp80", (170, 255), (0.3, 0.3, 0.7, 0.7)),
        ("motorcycle", 14, "white", "$12,390", "$12,890", "q85", (0, 255), BOTTOM),
        ("motorcycle", 20, "shadow", "Price $6,100", "Price $6,700", "q85", (0, 255), TOP),
        ("motorcycle", 24, "panel", "Sat 16 March", "Sat 18 March", "webp80", (0, 255), TOP),
        (
            "logo-flat",
            14,
            "dark",
            "(c) 2013 contributors",
            "(c) 2018 contributors",
            "q85",
            (200, 255),
            BOTTOM,
        ),
        ("phantom", 16, "white", "Slice 103", "Slice 108", "webp80", (0, 30), TOP),
        ("page", 14, "dark", "p. 103", "p. 108", "q85", (120, 255), ALL),
        ("text", 16, "dark", "Ref 3310", "Ref 3810", "q85", (100, 255), BOTTOM),
    ]
    for src, px, style, o_t, n_t, enc, lum, region in swaps:
        xy = place(src, text_wh(max(o_t, n_t, key=len), px), lum, region)
        add_text_swap(src, xy, px, style, o_t, n_t, enc)

    # --- text on busy texture (gravel, grass, brick, the horse's mottled coat): added, swapped
    add_text_added("gravel-warm", (800, 500), 16, "white", "Open 9-17", "q85")
    add_text_added("gravel-warm", (800, 500), 14, "dark", "Open 9-17", "webp80")
    add_text_added("grass-green", (500, 400), 16, "white", "Keep off the grass", "q85")
    add_text_added("brick-red", (450, 380), 20, "dark", "No 18", "webp80")
    add_text_swap("gravel-warm", (800, 500), 16, "white", "Path 3", "Path 8", "q85")
    add_text_swap("gravel-warm", (900, 700), 20, "shadow", "Lot 1,300 m2", "Lot 1,800 m2", "webp80")
    add_text_swap("grass-green", (500, 400), 14, "white", "Pitch 16", "Pitch 18", "q85")
    add_text_swap("grass-green", (300, 600), 16, "dark", "Row 30", "Row 36", "webp80")
    add_text_swap("brick-red", (450, 380), 24, "white", "No. 30", "No. 38", "webp80")
    add_text_swap("brick-red", (700, 600), 16, "dark", "1903", "1908", "q85")
    add_text_swap("horse-scene", (700, 560), 16, "white", "Lot 13", "Lot 18", "q85")  # on the coat

    # --- thin low-contrast text, luma 30 levels from the local background, added
    for src, px, delta, text, enc, region in [
        ("microaneurysms", 14, +30, "Confidential", "q85", ALL),
        ("microaneurysms", 14, -30, "Confidential", "webp80", ALL),
        ("horse-scene", 14, -30, "Photo: J. Marsh", "q85", SKY),
        ("hubble_deep_field", 16, +30, "NASA/ESA 2004", "webp80", ALL),
        ("retina", 14, -30, "Left eye", "q85", (0.25, 0.25, 0.75, 0.75)),
        ("immunohistochemistry", 14, -30, "x40 objective", "q85", ALL),
        ("colorwheel", 14, +30, "Draft - not for print", "q85", BOTTOM),
        ("page", 14, -30, "copy", "q85", ALL),
        ("phantom", 16, +30, "Sample data", "webp80", (0.3, 0.3, 0.7, 0.7)),
        ("motorcycle", 14, -30, "SOLD", "q85", TOP),
        ("text", 16, +30, "draft", "webp80", ALL),
    ]:
        xy = place(src, text_wh(text, px), (0, 255), region, delta)
        add_text_added(src, xy, px, f"lowc{delta:+d}", text, enc)
    add_text_added("gravel-warm", (1200, 300), 20, "lowc+30", "Quarry 7", "q85")  # on texture

    # --- (extra) boundary sweeps, below the brief's levels
    for src, region in [
        ("microaneurysms", ALL),
        ("horse-scene", SKY),
        ("retina", (0.25, 0.25, 0.75, 0.75)),
    ]:
        for delta in (-25, -20, -15):
            xy = place(src, text_wh("Confidential", 14), (0, 255), region, delta)
            add_text_added(src, xy, 14, f"lowc{delta:+d}", "Confidential", "q85", extra=True)
    # one minimal-ink digit swapped, dark text on the sky, contrast 30..130 levels, 14-24 px
    for px in (14, 16, 20, 24):
        for o_t, n_t in (
            ("Lot 3310", "Lot 3810"),
            ("Lot 1040", "Lot 1046"),
            ("Lot 1040", "Lot 1049"),
        ):
            for delta in (-30, -60, -90, -130):
                xy = place("horse-scene", text_wh(o_t, px), (0, 255), SKY, delta)
                add_text_swap("horse-scene", xy, px, f"lowc{delta:+d}", o_t, n_t, "q85", extra=True)
    for delta in (-30, -60, -90):
        xy = place("microaneurysms", text_wh("Lot 3310", 14), (0, 255), ALL, delta)
        add_text_swap(
            "microaneurysms", xy, 14, f"lowc{delta:+d}", "Lot 3310", "Lot 3810", "q85", extra=True
        )
    add_changed(
        "horse-scene",
        "(extra) 2 px orange line, same luma as the sky (230,130,60), (0.05,0.1)->(0.45,0.12)",
        lambda im: line(im, (0.05, 0.1), (0.45, 0.12), (230, 130, 60)),
        "q85",
        True,
    )

    # --- stickers 1-2 %, plausible colours
    add_changed(
        "horse-scene",
        'round "SOLD" sticker 1.5 % (180,40,40) at (0.8,0.3)',
        lambda im: sticker(im, (0.8, 0.3), 0.015, (180, 40, 40), "SOLD"),
        "q85",
    )
    add_changed(
        "immunohistochemistry",
        "round blank sticker 1 % tan (200,170,140) at (0.3,0.6)",
        lambda im: sticker(im, (0.3, 0.6), 0.01, (200, 170, 140), ""),
        "webp80",
    )
    add_changed(
        "gravel-warm",
        "label patch 1 % of local mean +20 levels at (900,400,1044,544)",
        lambda im: plausible_patch(im, (900, 400, 1044, 544), 20),
        "q85",
    )
    add_changed(
        "grass-green",
        "flat patch 1.5 % of local mean colour (texture erased) at (600,300,720,420)",
        lambda im: flat_patch(im, (600, 300, 720, 420)),
        "q85",
    )
    add_changed(
        "retina",
        "round blank sticker 1 % orange (200,90,30) at (0.5,0.5)",
        lambda im: sticker(im, (0.5, 0.5), 0.01, (200, 90, 30), ""),
        "webp80",
    )
    add_changed(
        "microaneurysms",
        "label patch 1 % of local mean +15 levels at (200,200,298,298)",
        lambda im: plausible_patch(im, (200, 200, 298, 298), 15),
        "q85",
    )

    # --- small logo / wordmark mirrored
    def mirrored(src, kind, px, xy, enc):
        mark = logo_rgba(px) if kind == "logo" else wordmark(px)

        def fn():
            b = base(src)
            a, n = paste_mark(b, mark, xy), paste_mark(b, ImageOps.mirror(mark), xy)
            return jpeg(a, 90), NEW_ENC[enc](n), measure(a, n)

        w, h = PHOTOS[src][0]
        CASES.append(
            Case(f"{src} {w}x{h}: {px}px {kind} at {xy} mirrored [new {enc}]", CHANGED, fn)
        )

    mirrored("horse-scene", "logo", 54, (1840, 1000), "q85")
    mirrored("motorcycle", "wordmark", 28, (20, 1030), "webp80")
    mirrored("colorwheel", "logo", 40, (1140, 740), "q85")
    mirrored("retina", "wordmark", 24, (1850, 20), "q85")

    # --- 2 px lines
    add_changed(
        "horse-scene",
        "2 px white line (0.1,0.2)->(0.6,0.25)",
        lambda im: line(im, (0.1, 0.2), (0.6, 0.25), (255, 255, 255)),
        "q85",
    )
    add_changed(
        "gravel-warm",
        "2 px dark line (0.2,0.5)->(0.8,0.55)",
        lambda im: line(im, (0.2, 0.5), (0.8, 0.55), (40, 35, 30)),
        "webp80",
    )
    add_changed(
        "hubble_deep_field",
        "2 px grey (90,90,90) line (0.3,0.3)->(0.7,0.3)",
        lambda im: line(im, (0.3, 0.3), (0.7, 0.3), (90, 90, 90)),
        "q85",
    )
    add_changed(
        "grass-green",
        "2 px grass-coloured (60,90,30) line (0.1,0.7)->(0.9,0.6)",
        lambda im: line(im, (0.1, 0.7), (0.9, 0.6), (60, 90, 30)),
        "q85",
    )
    add_changed(
        "microaneurysms",
        "2 px line 30 levels over bg (0.2,0.5)->(0.8,0.5)",
        lambda im: line(
            im,
            (0.2, 0.5),
            (0.8, 0.5),
            (min(255, local_mean(im, (240, 390, 960, 410))[0] + 30),) * 3,
        ),
        "q85",
    )

    # --- 64x64 region blurred (face-blur style)
    for src, pick, enc in [
        ("motorcycle", "max", "q85"),
        ("horse-scene", "max", "webp80"),
        ("retina", "max", "q85"),
        ("immunohistochemistry", "p60", "q85"),
        ("gravel-warm", "p60", "webp80"),
        ("text", "max", "q85"),
        ("hubble_deep_field", "max", "q85"),
    ]:

        def fn(im, p=pick):
            return blur_box(im, detail_box(im, 64, p))

        add_changed(
            src,
            f"64x64 ellipse blurred at the {pick}-detail box {detail_box(base(src), 64, pick)}",
            fn,
            enc,
        )

    # --- brightness +8 levels on 20 % of the picture
    for src, box, enc in [
        ("horse-scene", (0.05, 0.05, 0.5, 0.5), "q85"),  # sky
        ("motorcycle", (0.3, 0.3, 0.75, 0.75), "webp80"),
        ("microaneurysms", (0.5, 0.5, 0.95, 0.95), "q85"),
        ("gravel-warm", (0.1, 0.4, 0.55, 0.85), "q85"),
        ("colorwheel", (0.0, 0.0, 0.45, 0.45), "q85"),  # mostly white background: clipped
        ("immunohistochemistry", (0.25, 0.25, 0.7, 0.7), "q90"),
    ]:
        add_changed(
            src,
            f"brightness +8 on region {box} (20 %)",
            lambda im, b=box: brighten_region(im, b, 8),
            enc,
        )
    for src, box, lv in [
        ("motorcycle", (0.3, 0.3, 0.75, 0.75), 6),
        ("motorcycle", (0.3, 0.3, 0.75, 0.75), 7),
        ("horse-scene", (0.05, 0.05, 0.5, 0.5), 7),
        ("microaneurysms", (0.0, 0.0, 0.7, 0.7), 7),  # half the picture
        ("horse-scene", (0.0, 0.0, 1.0, 1.0), 7),  # whole picture
    ]:
        add_changed(
            src,
            f"(extra) brightness +{lv} on region {box}",
            lambda im, b=box, v=lv: brighten_region(im, b, v),
            "q85",
            True,
        )
    add_changed(
        "horse-scene",
        "(extra) brightness -8 on region (0.05,0.05,0.5,0.5)",
        lambda im: brighten_region(im, (0.05, 0.05, 0.5, 0.5), -8),
        "q85",
        True,
    )

    # --- 3 px shift of a small object
    for src, _box, d, enc in [
        ("hubble_deep_field", None, (3, 0), "q85"),
        ("text", None, (0, 3), "webp80"),
        ("immunohistochemistry", None, (3, 0), "q85"),
        ("motorcycle", None, (3, 0), "q85"),
        ("retina", None, (0, 3), "q85"),
    ]:

        def fn(im, dd=d):
            b = detail_box(im, 48, "max")
            return move_object(im, b, *dd)

        add_changed(
            src, f"48x48 max-detail object {detail_box(base(src), 48, 'max')} moved {d}", fn, enc
        )

    # horse moved 3 px: re-composited (clean, no seams)
    def horse_moved() -> tuple[bytes, bytes]:
        # the silhouette 1 source px right = 1080/328 = 3.3 output px; same grain, same field
        new = render("horse-scene", PHOTOS["horse-scene"][0], arr=_horse_scene(shift=1))
        return old_jpeg("horse-scene"), jpeg(new, 85), measure(base("horse-scene"), new)

    CASES.append(
        Case(
            "horse-scene 1920x1080: horse silhouette moved 1 src px (~3.3 px) right [new q85]",
            CHANGED,
            horse_moved,
        )
    )

    # --- gamma 1.15, whole image
    for src, g, enc in [
        ("horse-scene", 1.15, "q85"),
        ("hubble_deep_field", 1.15, "webp80"),
        ("microaneurysms", 1 / 1.15, "q85"),
        ("colorwheel", 1.15, "q85"),
        ("text", 1 / 1.15, "q85"),
        ("gravel-warm", 1.15, "webp80"),
    ]:
        add_changed(src, f"gamma {g:.3f} whole image", lambda im, gg=g: gamma(im, gg), enc)

    # --- crop 1 % and rescale to the same size
    for src, enc in [
        ("horse-scene", "q85"),
        ("microaneurysms", "q85"),
        ("hubble_deep_field", "webp80"),
        ("phantom", "q85"),
        ("colorwheel", "q85"),
        ("retina", "webp80"),
    ]:
        add_changed(
            src,
            "crop 1 % (0.5 % each side) and rescale to same size",
            lambda im: crop_rescale(im, 0.01),
            enc,
        )


# ----------------------------------------------------------------------------- run


@dataclass(frozen=True)
class Row:
    """One case's verdict and scores."""

    index: int
    case: str
    expected: str
    got: str
    extra: bool
    reason: str
    decided_by: str | None
    scores: dict[str, float | None]
    note: str

    @property
    def ok(self) -> bool:
        return self.got == self.expected


THRESHOLDS: dict[str, float] = {m: getattr(CompareConfig(), m) for m in METRICS}


def margin(metric: str, value: float | None) -> float | None:
    """How far ``value`` sits above the metric's threshold, in the room left below 1.0."""
    if value is None:
        return None
    limit = THRESHOLDS[metric]
    return (value - limit) / ((1.0 - limit) or 1.0)


def _build() -> None:
    CASES.clear()
    build_cases()


def _place_key(key: PlaceKey) -> tuple[int, int]:
    return _find_place(*key)


_BUILT = False  # in a worker: whether CASES holds the cases with their real placements


def _run_case(
    placed: dict[PlaceKey, tuple[int, int]], thresholds: dict[str, float], task: tuple[int, str]
) -> Row:
    """Build case ``task`` (index, name) and compare its pair; in a worker process."""
    global _BUILT
    if not _BUILT:
        _PLACED.update(placed)
        _build()
        _BUILT = True
    index, name = task
    case = CASES[index]
    assert case.name == name, (index, name, case.name)
    built = case.build()
    old, new = built[0], built[1]
    note = str(built[2]) if len(built) > 2 else ""  # type: ignore[misc]
    r = compare(old, new, CompareConfig(**thresholds), threads=1)
    return Row(
        index=index,
        case=case.name,
        expected=case.expected,
        got=SAME if r.same else CHANGED,
        extra=case.extra,
        reason=r.reason,
        decided_by=r.decided_by,
        scores={m: getattr(r, m) for m in METRICS},
        note=note,
    )


def plan(pool: ProcessPoolExecutor | None) -> None:
    """Fill CASES; with a pool, the placement searches run in it first."""
    global _PENDING
    if pool is not None:
        _PENDING = []
        try:
            _build()
            keys = list(dict.fromkeys(_PENDING))
        finally:
            _PENDING = None
        _PLACED.update(zip(keys, pool.map(_place_key, keys), strict=True))
    _build()


def run(args: argparse.Namespace) -> list[Row]:
    if args.jobs <= 1:
        plan(None)
        tasks = [(i, c.name) for i, c in enumerate(CASES) if args.only in c.name]
        return [_run_case(_PLACED, THRESHOLDS, t) for t in tasks]
    with ProcessPoolExecutor(args.jobs) as pool:
        plan(pool)
        tasks = [(i, c.name) for i, c in enumerate(CASES) if args.only in c.name]
        return list(pool.map(partial(_run_case, dict(_PLACED), dict(THRESHOLDS)), tasks))


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _scores(row: Row) -> str:
    return " ".join(
        f"{_num(row.scores[m], '.4f'):>7} {_num(margin(m, row.scores[m]), '+.3f'):>7}"
        for m in METRICS
    )


def _line(row: Row) -> str:
    mark = "ok" if row.ok else "WRONG"
    return (
        f"{mark:5} {row.expected:7} {row.got:7} {row.reason:16} {row.decided_by or '-':15} "
        f"{_scores(row)}  {row.case}" + (f"  ({row.note})" if row.note else "")
    )


def _tally(label: str, rows: list[Row]) -> str:
    wrong = sum(not r.ok for r in rows)
    return f"  {label:26} {len(rows) - wrong:4} right, {wrong:3} wrong of {len(rows)}"


def summary(rows: list[Row]) -> None:
    print("\nsummary")
    print(_tally("all cases:", rows))
    print(_tally("the list (not extra):", [r for r in rows if not r.extra]))
    print(_tally("extra cases:", [r for r in rows if r.extra]))
    wrong = [r for r in rows if not r.ok]
    print(f"\nwrong ({len(wrong)}):")
    for r in wrong:
        print(f"  expected {r.expected}, got {r.got} (decided by {r.decided_by}): {r.case}")
        scores = ", ".join(
            f"{m} {_num(r.scores[m], '.4f')} ({_num(margin(m, r.scores[m]), '+.3f')})"
            for m in METRICS
        )
        print(f"      {scores}" + (f"  ({r.note})" if r.note else ""))

    print("\nclosest calls per score (margin = (score - threshold) / (1 - threshold)):")
    for m in METRICS:
        same = [
            (mg, r)
            for r in rows
            if r.expected == SAME and (mg := margin(m, r.scores[m])) is not None
        ]
        caught = [
            (mg, r)
            for r in rows
            if r.expected == CHANGED and (mg := margin(m, r.scores[m])) is not None and mg < 0
        ]
        print(f"  {m} (threshold {THRESHOLDS[m]}):")
        if same:
            mg, r = min(same, key=lambda p: p[0])
            print(f"    lowest same:           {mg:+.3f}  {r.case}")
        if caught:
            mg, r = max(caught, key=lambda p: p[0])
            print(f"    closest caught change: {mg:+.3f}  {r.case}")
        else:
            print("    closest caught change: none (no changed case below this threshold)")


def write_csv(path: str, rows: list[Row]) -> None:
    fields = ["case", "expected", "got", "ok", "extra", "reason", "decided_by"]
    fields += list(METRICS) + [f"m_{m}" for m in METRICS] + ["note"]
    with open(path, "w", newline="") as fh:
        out = csv.DictWriter(fh, fieldnames=fields)
        out.writeheader()
        for r in rows:
            out.writerow(
                {
                    "case": r.case,
                    "expected": r.expected,
                    "got": r.got,
                    "ok": r.ok,
                    "extra": r.extra,
                    "reason": r.reason,
                    "decided_by": r.decided_by,
                    **r.scores,
                    **{f"m_{m}": margin(m, r.scores[m]) for m in METRICS},
                    "note": r.note,
                }
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--only", default="", metavar="SUBSTR", help="cases whose name has it")
    parser.add_argument("--csv", metavar="FILE", help="also write one row per case to FILE")
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: cores)"
    )
    parser.add_argument("--strict", action="store_true", help="exit 1 when any case is wrong")
    parser.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="decide with this threshold instead of the default (repeat for several)",
    )
    args = parser.parse_args(argv)
    for item in args.threshold:
        name, _, value = item.partition("=")
        if name not in THRESHOLDS:
            parser.error(f"--threshold: no score {name!r} (one of {', '.join(METRICS)})")
        THRESHOLDS[name] = float(value)

    started = time.perf_counter()
    rows = run(args)
    elapsed = time.perf_counter() - started

    print(
        "thresholds: "
        + "  ".join(f"{m} {t}" for m, t in THRESHOLDS.items())
        + ";  each score: value, margin = (score - threshold) / (1 - threshold)"
    )
    print(
        f"{'':5} {'expect':7} {'got':7} {'reason':16} {'decided_by':15} "
        + " ".join(f"{m:>15}" for m in METRICS)
        + "  case  (edit before encoding)"
    )
    for r in rows:
        print(_line(r))
    summary(rows)
    procs = f"{args.jobs} process" + ("es" if args.jobs > 1 else "")
    print(f"\n{len(rows)} cases built and compared in {elapsed:.1f} s ({procs})")
    if args.csv:
        write_csv(args.csv, rows)
    return 1 if args.strict and any(not r.ok for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
