"""Needless writes: how many mere re-encodes of one picture fetcher.compare judges changed.

An origin that re-encodes its images (a CDN changing quality or format, a resizer
rebuilt) sends the same picture as new bytes. fetcher should keep the file on disk; a
re-encode judged *changed* costs a needless write (never a stale file, the worse error,
which ``benchmarks/adversarial.py`` measures). This builds 708 pairs that are all
re-encodes of the same picture, at qualities from ordinary to aggressive, and counts how
many are judged changed, and by which score of ``fetcher.comparison.METRICS``.

Every picture is built here, deterministically (seeded numpy generators, no download):

* photographs bundled with ``skimage.data`` (astronaut, coffee, chelsea, rocket,
  motorcycle up to 2000x1500, Hubble deep field, retina, immunohistochemistry, coins,
  camera, gravel, grass, brick, moon, text), resized-cropped with LANCZOS;
* the same photographs with seeded sensor noise (sigma 8-12 levels, "high ISO");
* UI screenshots (400x300 to 1920x1080: 10-14 px text, buttons, inputs, tables, pills);
  line charts (aliased, and anti-aliased by drawing at 2x) and a bar chart;
* line art with hatching, grey text scans (blur, noise, uneven light, a 0.4 degree
  tilt) and skimage's page upscaled, sheets of QR-like codes (2-8 px modules), pixel art
  (1x-10x nearest-neighbour), dithered images (1-bit Floyd-Steinberg and Bayer, 16 colours,
  the web palette);
* 16-bit grey PNGs against 8-bit JPEGs of them (rounded and truncated to 8 bits).

The old file is the picture as PNG; the new one its re-encode: JPEG q60, q70, q75 (and
q85 for screenshots, charts and scans; q75 4:4:4 for noisy photos), WebP q60-q75, AVIF
q50-q60, a JPEG q90 -> q80 -> q70 chain (also against the q90 file as the old one), a
q90 -> q75 chain for scans, and GIF round trips back to PNG (256 colours with and without
dithering, the 216-colour web palette).

Each pair is compared once, with every threshold at 0.0 (``threads=1``), for its raw
scores; the verdict is then taken here: a pair is the same picture if it has identical
bytes or pixels, or every score is missing or at least its threshold (those of
``fetcher.CompareConfig()``, of the same names, unless overridden). So one run can
decide under several thresholds.

    python benchmarks/reencodes.py [--jobs N] [--threshold NAME=VALUE]...
                                   [--sweep NAME=V1,V2,...]

``--jobs`` sets the worker processes that build and compare the pairs (default: one per
core); ``--threshold local_structure=0.85`` decides with that threshold instead of the
default (repeat for several scores); ``--sweep local_structure=0.80,0.84,0.868`` also
decides under each of those values of one threshold (the others as set).

It prints the thresholds; a table by encoder (and old file): pairs, judged changed, and
judged changed by each score alone (every other score passing); the total; every pair
judged changed with its scores (``*`` marks a score below its threshold); the lowest
value of each score among the pairs judged same; with ``--sweep``, for each value, the
pairs judged changed in all and by that score alone; and the time taken.

Exit status 0 always (a measurement, not a test).
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fetcher import CompareConfig, compare
from fetcher.comparison import METRICS

Encoder = Callable[[Image.Image], bytes]
# One pair of a case: encoder name, old file's name, old bytes, new bytes.
PairBytes = tuple[str, str, bytes, bytes]

DEFAULTS: dict[str, float] = {m: getattr(CompareConfig(), m) for m in METRICS}
IDENTICAL = ("identical-bytes", "identical-pixels")
NOT_SCORED = ("dimensions", "frames", "disk-unreadable")  # verdicts without scores: changed


# ----------------------------------------------------------------------------- helpers
def font(px: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=px)


def save(img: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def load(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def rgb_or_l(im: Image.Image) -> Image.Image:
    return im if im.mode in ("RGB", "L") else im.convert("RGB")


def fit(img: Image.Image, w: int, h: int) -> Image.Image:
    """Resize (LANCZOS) and centre-crop to exactly w x h."""
    sw, sh = img.size
    s = max(w / sw, h / sh)
    img = img.resize((max(w, round(sw * s)), max(h, round(sh * s))), Image.LANCZOS)
    x0, y0 = (img.width - w) // 2, (img.height - h) // 2
    return img.crop((x0, y0, x0 + w, y0 + h))


def arr2img(a: np.ndarray, mode: str | None = None) -> Image.Image:
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), mode)


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


_VOCABULARY = (
    "the quick brown fox jumps over lazy dog settings account profile invoice total "
    "download upload status error warning success pending review approve cancel save "
    "delete edit share export report monthly weekly revenue users sessions bounce rate "
    "server latency region europe asia update version build deploy 2024 13.7% 42 1,024 "
    "$19.99 Q3 id:7781 owner admin readme license config"
)
WORDS = _VOCABULARY.split()


def words(r: np.random.Generator, n: int) -> str:
    return " ".join(r.choice(WORDS) for _ in range(n))


# ----------------------------------------------------------------------------- sources
FILES = {
    "immunohistochemistry": "ihc.png",
    "rocket": "rocket.jpg",
    "retina": "retina.jpg",
    "hubble_deep_field": "hubble_deep_field.jpg",
}


def photo(name: str) -> Image.Image:
    """A picture bundled with skimage.data, read straight from its file (no download)."""
    from skimage import data

    im = Image.open(Path(data.__file__).parent / FILES.get(name, name + ".png"))
    im.load()
    return im.convert("RGB") if im.mode not in ("L", "RGB") else im


def ui_screenshot(w: int, h: int, seed: int) -> Image.Image:
    """A console page: title bar, menu, sidebar, then text, buttons, inputs, tables, pills."""
    r = rng(seed)
    img = Image.new("RGB", (w, h), (250, 250, 251))
    d = ImageDraw.Draw(img)
    d.rectangle([0, 0, w, 34], fill=(36, 41, 51))
    d.text((12, 10), "Acme Console - " + words(r, 3), font=font(14), fill=(235, 235, 240))
    for i, t in enumerate(("File", "Edit", "View", "Help")):
        d.text((w - 220 + 52 * i, 11), t, font=font(12), fill=(180, 190, 205))
    side = min(200, w // 4)
    d.rectangle([0, 35, side, h], fill=(238, 241, 245))
    d.line([side, 35, side, h], fill=(205, 210, 218))
    y = 48
    while y < h - 20:
        sel = r.random() < 0.1
        if sel:
            d.rectangle([4, y - 3, side - 4, y + 15], fill=(220, 230, 250))
        d.text(
            (14, y),
            words(r, 2),
            font=font(int(r.choice([11, 12, 13]))),
            fill=(30, 90, 200) if sel else (70, 75, 85),
        )
        y += 24
    colours = [
        (20, 20, 25),
        (60, 64, 72),
        (0, 102, 204),
        (200, 30, 40),
        (20, 140, 60),
        (210, 110, 0),
        (128, 0, 160),
        (120, 120, 130),
    ]
    buttons = [(0, 102, 204), (40, 167, 69), (220, 53, 69), (108, 117, 125), (255, 193, 7)]
    pills = [
        ((255, 235, 238), (198, 40, 40)),
        ((232, 245, 233), (46, 125, 50)),
        ((227, 242, 253), (21, 101, 192)),
        ((255, 243, 224), (230, 81, 0)),
    ]
    y, x0 = 50, side + 16
    while y < h - 24:
        kind = r.random()
        if kind < 0.45:  # a line of text, 10-14 px, coloured
            sz = int(r.integers(10, 15))
            c = colours[int(r.integers(len(colours)))]
            d.text((x0, y), words(r, int(r.integers(4, 14))), font=font(sz), fill=c)
            y += sz + 8
        elif kind < 0.6:  # buttons
            x = x0
            for _ in range(int(r.integers(2, 5))):
                bw = int(r.integers(70, 120))
                fill = buttons[int(r.integers(5))]
                d.rounded_rectangle([x, y, x + bw, y + 26], radius=4, fill=fill)
                label = (20, 20, 20) if fill == (255, 193, 7) else (255, 255, 255)
                d.text((x + 10, y + 7), words(r, 1)[:10], font=font(12), fill=label)
                x += bw + 10
            y += 36
        elif kind < 0.75:  # an input box with a 1 px border and a small grey label
            d.text((x0, y), words(r, 2) + ":", font=font(11), fill=(90, 95, 105))
            d.rectangle(
                [x0 + 120, y - 3, min(w - 20, x0 + 420), y + 17],
                outline=(190, 195, 205),
                fill=(255, 255, 255),
            )
            d.text((x0 + 126, y + 1), words(r, 3), font=font(12), fill=(40, 40, 40))
            y += 28
        elif kind < 0.9:  # a table with thin grid lines
            rows, cols = int(r.integers(3, 6)), 4
            cw = max(60, (w - x0 - 30) // cols)
            for i in range(rows + 1):
                d.line([x0, y + 20 * i, x0 + cw * cols, y + 20 * i], fill=(215, 218, 224))
                if i < rows:
                    if i == 0:
                        d.rectangle(
                            [x0 + 1, y + 1, x0 + cw * cols - 1, y + 19], fill=(244, 246, 249)
                        )
                    for j in range(cols):
                        if r.random() < 0.1:
                            c = (200, 30, 40)
                        elif r.random() < 0.1:
                            c = (20, 140, 60)
                        else:
                            c = (50, 50, 55)
                        d.text(
                            (x0 + cw * j + 6, y + 20 * i + 4),
                            words(r, 1)[:12],
                            font=font(11 if i else 12),
                            fill=c,
                        )
            for j in range(cols + 1):
                d.line([x0 + cw * j, y, x0 + cw * j, y + 20 * rows], fill=(215, 218, 224))
            y += 20 * rows + 14
        else:  # badges: coloured pills of text on colour
            x = x0
            for _ in range(int(r.integers(2, 6))):
                bg, fg = pills[int(r.integers(4))]
                t = words(r, 1)[:9]
                d.rounded_rectangle([x, y, x + 8 * len(t) + 12, y + 18], radius=9, fill=bg)
                d.text((x + 6, y + 3), t, font=font(10), fill=fg)
                x += 8 * len(t) + 22
            y += 28
    return img


def chart(w: int, h: int, seed: int, aa: bool = False) -> Image.Image:
    """Five random-walk series on a grid with labels; ``aa``: drawn at 2x and reduced."""
    s = 2 if aa else 1
    W, H = w * s, h * s
    r = rng(seed)
    img = Image.new("RGB", (W, H), (255, 255, 255))
    d = ImageDraw.Draw(img)
    L, R, T, B = 60 * s, W - 20 * s, 30 * s, H - 40 * s
    d.text((L, 8 * s), "Requests per minute by region", font=font(13 * s), fill=(30, 30, 30))
    for i in range(11):
        y = T + (B - T) * i // 10
        d.line([L, y, R, y], fill=(225, 225, 225), width=1)
        d.text((8 * s, y - 6 * s), f"{(10 - i) * 100}", font=font(10 * s), fill=(90, 90, 90))
    for i in range(13):
        x = L + (R - L) * i // 12
        d.line([x, T, x, B], fill=(235, 235, 235), width=1)
        d.text((x - 8 * s, B + 6 * s), f"{i * 2:02d}h", font=font(10 * s), fill=(90, 90, 90))
    d.line([L, T, L, B], fill=(0, 0, 0), width=s)
    d.line([L, B, R, B], fill=(0, 0, 0), width=s)
    cols = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]
    n = 200
    for k, c in enumerate(cols):
        v = np.cumsum(r.normal(0, 1, n)) + 5 * k
        v = (v - v.min()) / (np.ptp(v) + 1e-9)
        pts = [(L + (R - L) * i / (n - 1), B - (B - T) * (0.1 + 0.8 * v[i])) for i in range(n)]
        d.line(pts, fill=c, width=s)
        ky = T + (10 + 16 * k) * s
        d.line([R - 130 * s, ky, R - 110 * s, ky], fill=c, width=2 * s)
        d.text(
            (R - 104 * s, T + (4 + 16 * k) * s), f"region-{k}", font=font(11 * s), fill=(40, 40, 40)
        )
    if aa:
        img = img.resize((w, h), Image.LANCZOS)
    return img


def bar_chart(w: int, h: int, seed: int) -> Image.Image:
    r = rng(seed)
    img = Image.new("RGB", (w, h), (255, 255, 255))
    d = ImageDraw.Draw(img)
    L, B = 50, h - 30
    n = 24
    bw = (w - L - 20) / n
    for i in range(n):
        v = r.uniform(0.1, 0.9) * (B - 20)
        d.rectangle([L + i * bw + 2, B - v, L + (i + 1) * bw - 2, B], fill=(70, 130, 180))
        d.text((L + i * bw + 2, B - v - 12), f"{int(v)}", font=font(10), fill=(60, 60, 60))
        d.text((L + i * bw + 2, B + 4), f"{i}", font=font(10), fill=(60, 60, 60))
    d.line([L, 10, L, B], fill=(0, 0, 0))
    d.line([L, B, w - 10, B], fill=(0, 0, 0))
    return img


def line_art(w: int, h: int, seed: int, hatch: int = 3) -> Image.Image:
    """1 px circles and lines, hatched boxes (engraving-like) and small labels, black on white."""
    r = rng(seed)
    img = Image.new("L", (w, h), 255)
    d = ImageDraw.Draw(img)
    for _ in range(40):
        x, y = r.integers(0, w), r.integers(0, h)
        rad = int(r.integers(10, 80))
        d.ellipse([x - rad, y - rad, x + rad, y + rad], outline=0, width=1)
    for _ in range(60):
        d.line([tuple(r.integers(0, (w, h))), tuple(r.integers(0, (w, h)))], fill=0, width=1)
    for _ in range(6):
        x0, y0 = int(r.integers(0, w - 120)), int(r.integers(0, h - 90))
        bw, bh = int(r.integers(60, 120)), int(r.integers(40, 90))
        for k in range(-bh, bw, hatch):
            d.line([x0 + k, y0 + bh, x0 + k + bh, y0], fill=0)
        d.rectangle([x0, y0, x0 + bw, y0 + bh], outline=0)
    for _ in range(15):
        d.text(tuple(r.integers(0, (w - 80, h - 14))), words(r, 2), font=font(11), fill=0)
    return img.convert("RGB")


def scan(
    w: int, h: int, seed: int, size: int = 12, dark: int = 40, paper: int = 232
) -> Image.Image:
    """A grey page of text: ink ``dark`` on ``paper``, uneven light, noise, blur, a slight tilt."""
    r = rng(seed)
    img = Image.new("L", (w, h), 255)
    d = ImageDraw.Draw(img)
    y = 30
    while y < h - 30:
        d.text((40, y), words(r, max(3, (w - 80) // (size * 3))), font=font(size), fill=0)
        y += int(size * 1.6)
    a = np.asarray(img, np.float32) / 255.0
    ink = dark + (paper - dark) * a
    yy, xx = np.mgrid[0:h, 0:w]
    ink += 8 * (xx / w) - 5 * (yy / h)  # uneven illumination
    ink += r.normal(0, 3, (h, w))  # paper and sensor noise
    img = arr2img(ink, "L").filter(ImageFilter.GaussianBlur(0.6))
    return img.rotate(0.4, resample=Image.BICUBIC, fillcolor=paper)


def qr_sheet(w: int, h: int, seed: int, module: int) -> Image.Image:
    """A sheet of random 33x33 QR-like codes (with finder patterns), ``module`` px a module."""
    r = rng(seed)
    img = Image.new("L", (w, h), 255)
    n = 33
    side = n * module
    pad = 4 * module
    for oy in range(pad, h - side - pad + 1, side + 2 * pad):
        for ox in range(pad, w - side - pad + 1, side + 2 * pad):
            g = r.random((n, n)) < 0.5
            for fx, fy in ((0, 0), (n - 7, 0), (0, n - 7)):
                g[fy : fy + 7, fx : fx + 7] = True
                g[fy + 1 : fy + 6, fx + 1 : fx + 6] = False
                g[fy + 2 : fy + 5, fx + 2 : fx + 5] = True
            m = np.where(np.kron(g, np.ones((module, module), bool)), 0, 255).astype(np.uint8)
            img.paste(Image.fromarray(m), (ox, oy))
    return img.convert("RGB")


def pixel_art(w: int, h: int, seed: int, scale: int) -> Image.Image:
    """Blobby smoothed noise in 16 random colours plus single-pixel detail, scaled up NEAREST."""
    r = rng(seed)
    pal = r.integers(0, 256, (16, 3))
    sw, sh = max(1, w // scale), max(1, h // scale)
    z = r.random((sh // 4 + 2, sw // 4 + 2))
    z8 = Image.fromarray((z * 255).astype(np.uint8)).resize((sw, sh), Image.BICUBIC)
    idx = np.clip((np.asarray(z8, np.float32) / 256 * 16).astype(int), 0, 15)
    idx[r.random((sh, sw)) < 0.08] = r.integers(0, 16)  # sprinkle single-pixel detail
    small = Image.fromarray(pal[idx].astype(np.uint8), "RGB")
    if scale == 1:
        return small
    return small.resize((sw * scale, sh * scale), Image.NEAREST).crop((0, 0, w, h))


BAYER4 = np.array([[0, 8, 2, 10], [12, 4, 14, 6], [3, 11, 1, 9], [15, 7, 13, 5]]) / 16 * 255 + 8


def dithered(base: Image.Image, kind: str) -> Image.Image:
    if kind == "fs1":  # 1-bit Floyd-Steinberg
        return base.convert("L").convert("1", dither=Image.Dither.FLOYDSTEINBERG).convert("RGB")
    if kind == "bayer1":  # 1-bit ordered (4x4 Bayer)
        a = np.asarray(base.convert("L"), np.float32)
        t = np.tile(BAYER4, (a.shape[0] // 4 + 1, a.shape[1] // 4 + 1))[: a.shape[0], : a.shape[1]]
        return Image.fromarray(np.where(a > t, 255, 0).astype(np.uint8)).convert("RGB")
    if kind == "fs16":  # 16 colours, Floyd-Steinberg
        return base.convert("RGB").quantize(16, dither=Image.Dither.FLOYDSTEINBERG).convert("RGB")
    if kind == "web":  # the 216-colour web palette, Floyd-Steinberg
        return base.convert("RGB").convert("P", dither=Image.Dither.FLOYDSTEINBERG).convert("RGB")
    raise ValueError(kind)


def noisy(base: Image.Image, sigma: float, seed: int) -> Image.Image:
    a = np.asarray(base, np.float32)
    return arr2img(a + rng(seed).normal(0, sigma, a.shape), base.mode)


def sixteen(base_l: Image.Image, w: int, h: int) -> np.ndarray:
    """A 16-bit grey picture: the photo resized in float, times a smooth vignette."""
    im = fit(base_l.convert("F"), w, h)
    a = np.asarray(im, np.float64)
    yy, xx = np.mgrid[0:h, 0:w]
    a = a * (0.8 + 0.2 * np.cos((xx / w - 0.5) * 2) * np.cos((yy / h - 0.5) * 2))
    return np.clip(np.rint(a * 257), 0, 65535).astype(np.uint16)


# ----------------------------------------------------------------------------- encoders
def jpeg(q: int, sub: int = 2) -> Encoder:
    """JPEG at quality ``q``; ``sub``: Pillow's chroma subsampling (2 is 4:2:0, 0 is 4:4:4)."""

    def enc(im: Image.Image) -> bytes:
        im = rgb_or_l(im)
        if im.mode == "RGB":
            return save(im, "JPEG", quality=q, subsampling=sub)
        return save(im, "JPEG", quality=q)

    return enc


def webp(q: int) -> Encoder:
    return lambda im: save(rgb_or_l(im), "WEBP", quality=q)


def avif(q: int) -> Encoder:
    return lambda im: save(rgb_or_l(im), "AVIF", quality=q)


def chain(*qs: int) -> Encoder:
    """JPEG at each quality in turn, each decoding the one before."""

    def enc(im: Image.Image) -> bytes:
        data = b""
        for q in qs:
            data = jpeg(q)(im)
            im = load(data)
        return data

    return enc


def gif_roundtrip(dither: Image.Dither) -> Encoder:
    """A 256-colour GIF (median-cut palette) decoded and saved back as PNG."""

    def enc(im: Image.Image) -> bytes:
        rgb = rgb_or_l(im).convert("RGB")
        pal = rgb.quantize(256)  # Pillow ignores dither without a palette
        p = rgb.quantize(palette=pal, dither=dither)
        return save(load(save(p, "GIF")).convert("RGB"), "PNG")

    return enc


def gif_web(im: Image.Image) -> bytes:
    """A GIF in the 216-colour web palette (Floyd-Steinberg) decoded and saved back as PNG."""
    p = rgb_or_l(im).convert("RGB").convert("P", dither=Image.Dither.FLOYDSTEINBERG)
    return save(load(save(p, "GIF")).convert("RGB"), "PNG")


LOSSY: dict[str, Encoder] = {
    "jpeg60": jpeg(60),
    "jpeg70": jpeg(70),
    "jpeg75": jpeg(75),
    "webp60": webp(60),
    "webp65": webp(65),
    "webp70": webp(70),
    "webp75": webp(75),
    "avif50": avif(50),
    "avif55": avif(55),
    "avif60": avif(60),
    "chain90-80-70": chain(90, 80, 70),
}
GIFS: dict[str, Encoder] = {
    "gif256_fs>png": gif_roundtrip(Image.Dither.FLOYDSTEINBERG),
    "gif256_nodither>png": gif_roundtrip(Image.Dither.NONE),
    "gifweb_fs>png": gif_web,
}
ALL = {**LOSSY, **GIFS}
SHOTS = {**LOSSY, **GIFS, "jpeg85": jpeg(85)}  # screenshots and charts
SCANS = {**LOSSY, "jpeg85": jpeg(85), "jpeg90>jpeg75": chain(90, 75)}
NOISY = {"jpeg75": jpeg(75), "webp75": webp(75), "avif60": avif(60), "jpeg75_444": jpeg(75, 0)}


# ----------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """A picture and its re-encodes; ``pairs()`` builds them (in a worker process)."""

    name: str
    family: str
    size: tuple[int, int]
    pairs: Callable[[], list[PairBytes]]


def reencoded(build: Callable[[], Image.Image], encoders: dict[str, Encoder]) -> list[PairBytes]:
    """The picture as PNG (the old file) against each re-encode of it."""
    img = build()
    png = save(img, "PNG")
    out = []
    for enc, fn in encoders.items():
        new = fn(img)
        out.append((enc, "png", png, new))
        if enc == "chain90-80-70":  # ... and against the q90 JPEG the chain started from
            out.append((enc, "jpeg90", jpeg(90)(img), new))
    return out


def sixteen_bit(name: str, w: int, h: int) -> list[PairBytes]:
    """A 16-bit grey PNG against 8-bit JPEGs of it (rounded to 8 bits, or truncated)."""
    a16 = sixteen(photo(name).convert("L"), w, h)
    old = save(Image.fromarray(a16), "PNG")  # I;16
    a8 = Image.fromarray(((a16.astype(np.uint32) + 128) // 257).astype(np.uint8), "L")
    a8t = Image.fromarray((a16 >> 8).astype(np.uint8), "L")  # a truncating converter
    return [
        ("jpeg90_8bit", "png16", old, save(a8, "JPEG", quality=90)),
        ("jpeg75_8bit", "png16", old, save(a8, "JPEG", quality=75)),
        ("jpeg85_8bit_trunc", "png16", old, save(a8t, "JPEG", quality=85)),
    ]


def _case(
    name: str, family: str, size: tuple[int, int], build: Callable[[], Image.Image], encs: dict
) -> Case:
    return Case(name, family, size, lambda: reencoded(build, encs))


def _cases() -> Iterator[Case]:
    # photographs, several sizes; every encoder (GIF too) for two of them
    for name, (w, h) in [
        ("astronaut", (512, 512)),
        ("coffee", (600, 400)),
        ("chelsea", (451, 300)),
        ("rocket", (640, 427)),
        ("motorcycle_left", (1200, 800)),
        ("hubble_deep_field", (1000, 750)),
        ("retina", (1600, 1200)),
        ("immunohistochemistry", (512, 512)),
        ("coins", (384, 303)),
        ("camera", (512, 512)),
        ("gravel", (512, 512)),
        ("grass", (512, 512)),
        ("brick", (512, 512)),
        ("moon", (512, 512)),
        ("text", (448, 300)),
        ("motorcycle_left", (2000, 1500)),
    ]:
        encs = ALL if name in ("astronaut", "coffee") else LOSSY
        yield _case(
            f"photo:{name}", "photo", (w, h), lambda n=name, w=w, h=h: fit(photo(n), w, h), encs
        )
    # noisy (high ISO) photographs, q75
    for name, (w, h), sig in [
        ("astronaut", (512, 512), 8),
        ("coffee", (600, 400), 10),
        ("chelsea", (451, 300), 12),
        ("motorcycle_left", (1200, 800), 10),
        ("camera", (512, 512), 10),
        ("retina", (1600, 1200), 12),
        ("hubble_deep_field", (1000, 750), 8),
    ]:
        yield _case(
            f"noisy{sig}:{name}",
            "noisy",
            (w, h),
            lambda n=name, w=w, h=h, sig=sig: noisy(fit(photo(n), w, h), sig, 7),
            NOISY,
        )
    # UI screenshots
    for (w, h), seed in [
        ((800, 600), 1),
        ((1280, 800), 2),
        ((1920, 1080), 3),
        ((400, 300), 4),
        ((1024, 768), 5),
    ]:
        yield _case(
            f"ui:{w}x{h}", "ui", (w, h), lambda w=w, h=h, s=seed: ui_screenshot(w, h, s), SHOTS
        )
    # charts
    for (w, h), seed, aa in [
        ((800, 500), 11, False),
        ((640, 400), 12, True),
        ((1600, 1000), 13, False),
        ((1200, 800), 14, True),
    ]:
        yield _case(
            f"chart{'_aa' if aa else ''}:{w}x{h}",
            "chart",
            (w, h),
            lambda w=w, h=h, s=seed, aa=aa: chart(w, h, s, aa),
            SHOTS,
        )
    yield _case("barchart:700x400", "chart", (700, 400), lambda: bar_chart(700, 400, 15), SHOTS)
    # line art
    for (w, h), seed, hatch in [((800, 600), 21, 3), ((600, 400), 22, 2), ((1200, 900), 23, 4)]:
        yield _case(
            f"lineart_hatch{hatch}:{w}x{h}",
            "lineart",
            (w, h),
            lambda w=w, h=h, s=seed, k=hatch: line_art(w, h, s, k),
            ALL,
        )
    # scans (grey)
    for (w, h), seed, sz, dark in [
        ((850, 1100), 31, 12, 40),
        ((1240, 1500), 32, 14, 30),
        ((600, 800), 33, 10, 60),
        ((800, 600), 34, 11, 90),
    ]:
        yield _case(
            f"scan{sz}px_ink{dark}:{w}x{h}",
            "scan",
            (w, h),
            lambda w=w, h=h, s=seed, sz=sz, dark=dark: scan(w, h, s, sz, dark),
            SCANS,
        )
    yield _case(
        "scan:skimage_page_x3",
        "scan",
        (1152, 573),
        lambda: photo("page").resize((1152, 573), Image.BICUBIC),
        SCANS,
    )
    # QR-like sheets
    for (w, h), mod in [((400, 400), 2), ((600, 400), 3), ((800, 600), 4), ((500, 500), 8)]:
        yield _case(
            f"qr_m{mod}:{w}x{h}",
            "qr",
            (w, h),
            lambda w=w, h=h, m=mod: qr_sheet(w, h, 41 + m, m),
            ALL,
        )
    # pixel art
    for (w, h), sc in [((320, 240), 10), ((640, 480), 4), ((400, 300), 1), ((960, 720), 3)]:
        yield _case(
            f"pixelart_x{sc}:{w}x{h}",
            "pixelart",
            (w, h),
            lambda w=w, h=h, sc=sc: pixel_art(w, h, 51 + sc, sc),
            ALL,
        )
    # dithered
    for kind, name, (w, h) in [
        ("fs1", "astronaut", (512, 512)),
        ("bayer1", "coffee", (600, 400)),
        ("fs16", "chelsea", (451, 300)),
        ("web", "rocket", (640, 427)),
        ("fs1", "camera", (800, 800)),
    ]:
        yield _case(
            f"dither_{kind}:{name}",
            "dither",
            (w, h),
            lambda k=kind, n=name, w=w, h=h: dithered(fit(photo(n), w, h), k),
            ALL,
        )
    # 16-bit PNGs against 8-bit JPEGs
    for name, (w, h) in [
        ("camera", (512, 512)),
        ("moon", (800, 600)),
        ("coins", (384, 303)),
        ("retina", (1200, 900)),
    ]:
        yield Case(f"png16:{name}", "16bit", (w, h), lambda n=name, w=w, h=h: sixteen_bit(n, w, h))


@cache
def cases() -> tuple[Case, ...]:
    return tuple(_cases())


# ----------------------------------------------------------------------------- comparing
@dataclass(frozen=True)
class Row:
    """One pair's raw scores (compared with every threshold at 0.0)."""

    case: str
    family: str
    size: str
    encoder: str
    old: str
    reason: str
    scores: dict[str, float | None]
    bytes_old: int
    bytes_new: int

    def below(self, thresholds: dict[str, float]) -> list[str]:
        """The scores under their thresholds: empty when the pair is judged same."""
        if self.reason in IDENTICAL:
            return []
        if self.reason in NOT_SCORED:
            return [self.reason]
        return [m for m, v in self.scores.items() if v is not None and v < thresholds[m]]

    def alone(self, thresholds: dict[str, float]) -> str | None:
        """The one score that judges the pair changed while every other passes, if any."""
        below = self.below(thresholds)
        return below[0] if len(below) == 1 and below[0] in METRICS else None


def _run_case(index: int) -> list[Row]:
    """Build case ``index`` and compare each of its pairs once; in a worker process."""
    case = cases()[index]
    raw = CompareConfig(**dict.fromkeys(METRICS, 0.0))  # every score, no verdict
    rows = []
    for enc, old_name, old, new in case.pairs():
        c = compare(old, new, raw, threads=1)
        rows.append(
            Row(
                case=case.name,
                family=case.family,
                size=f"{case.size[0]}x{case.size[1]}",
                encoder=enc,
                old=old_name,
                reason=c.reason,
                scores={m: getattr(c, m) for m in METRICS},
                bytes_old=len(old),
                bytes_new=len(new),
            )
        )
    return rows


def run(jobs: int) -> list[Row]:
    indices = range(len(cases()))
    if jobs <= 1:
        per_case = [_run_case(i) for i in indices]
    else:
        with ProcessPoolExecutor(jobs) as pool:
            per_case = list(pool.map(_run_case, indices))
    return [row for rows in per_case for row in rows]


# ----------------------------------------------------------------------------- report
def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def summary(rows: list[Row], thresholds: dict[str, float]) -> None:
    groups: dict[tuple[str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.encoder, r.old), []).append(r)
    head = "".join(f"{m:>16}" for m in METRICS)
    print(f"{'encoder':20} {'old':6} {'pairs':>5} {'changed':>8}   changed by one score alone:")
    print(f"{'':20} {'':6} {'':5} {'':8}{head}")

    def line(label: str, old: str, group: list[Row]) -> str:
        changed = sum(bool(r.below(thresholds)) for r in group)
        alone = [r.alone(thresholds) for r in group]
        counts = "".join(f"{alone.count(m):16}" for m in METRICS)
        return f"{label:20} {old:6} {len(group):5} {changed:8}{counts}"

    for (enc, old), group in groups.items():
        print(line(enc, old, group))
    print(line("all", "", rows))


def report(rows: list[Row], thresholds: dict[str, float]) -> None:
    print("thresholds: " + "  ".join(f"{m} {t}" for m, t in thresholds.items()))
    print()
    summary(rows, thresholds)
    changed = [r for r in rows if r.below(thresholds)]
    alone = [r.alone(thresholds) for r in rows]
    print(
        f"\n{len(rows)} pairs, {len(changed)} judged changed: "
        + ", ".join(f"{alone.count(m)} by {m} alone" for m in METRICS)
        + f", {sum(a is None for a in alone) - (len(rows) - len(changed))} by several"
    )

    print(f"\njudged changed ({len(changed)}; * below its threshold):")
    print(
        f"  {'case':30} {'size':>9} {'encoder':20} {'old':6}" + "".join(f"{m:>16}" for m in METRICS)
    )
    for r in changed:
        below = r.below(thresholds)
        scores = "".join(f"{_num(r.scores[m]) + ('*' if m in below else ' '):>16}" for m in METRICS)
        extra = "" if all(b in METRICS for b in below) else f"  ({r.reason})"
        print(f"  {r.case:30} {r.size:>9} {r.encoder:20} {r.old:6}{scores}{extra}")

    print("\nlowest score among pairs judged same:")
    same = [r for r in rows if not r.below(thresholds)]
    for m in METRICS:
        scored = [r for r in same if r.scores[m] is not None]
        if not scored:
            print(f"  {m:16} -")
            continue
        lo = min(scored, key=lambda r: r.scores[m] or 0.0)
        print(
            f"  {m:16} {_num(lo.scores[m])} (threshold {thresholds[m]})  "
            f"{lo.case}{'' if lo.size in lo.case else ' ' + lo.size} {lo.encoder} old {lo.old}"
        )


def sweep(
    rows: list[Row], thresholds: dict[str, float], name: str, values: list[tuple[str, float]]
) -> None:
    others = ", ".join(f"{m} {t}" for m, t in thresholds.items() if m != name)
    print(f"\nsweep of {name} ({len(rows)} pairs; {others}):")
    print(f"  {name:>16} {'changed':>8} {'by ' + name + ' alone':>24}")
    for text, value in values:
        t = {**thresholds, name: value}
        changed = sum(bool(r.below(t)) for r in rows)
        alone = sum(r.alone(t) == name for r in rows)
        print(f"  {text:>16} {changed:8} {alone:24}")


def _name_value(parser: argparse.ArgumentParser, option: str, item: str) -> tuple[str, str]:
    name, eq, value = item.partition("=")
    if not eq or name not in METRICS:
        parser.error(f"{option}: {item!r} is not NAME=VALUE with NAME one of {', '.join(METRICS)}")
    return name, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: cores)"
    )
    parser.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="decide with this threshold instead of the default (repeat for several)",
    )
    parser.add_argument(
        "--sweep",
        metavar="NAME=V1,V2,...",
        help="also count the pairs judged changed under each of these values of one threshold",
    )
    args = parser.parse_args(argv)
    thresholds = dict(DEFAULTS)
    try:
        for item in args.threshold:
            name, value = _name_value(parser, "--threshold", item)
            thresholds[name] = float(value)
        if args.sweep:
            sweep_name, text = _name_value(parser, "--sweep", args.sweep)
            sweep_values = [(v.strip(), float(v)) for v in text.split(",")]
    except ValueError as exc:
        parser.error(f"not a number: {exc}")

    started = time.perf_counter()
    rows = run(args.jobs)
    elapsed = time.perf_counter() - started

    report(rows, thresholds)
    if args.sweep:
        sweep(rows, thresholds, sweep_name, sweep_values)
    procs = f"{args.jobs} process" + ("es" if args.jobs > 1 else "")
    print(f"\n{len(rows)} pairs built and compared in {elapsed:.1f} s ({procs})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
