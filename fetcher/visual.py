"""Pictures of a decision: small thumbnails of the old and new image and the diff map.

Made where the decision is made, while the old image is still in memory (the write
replaces it), and small and plain (bytes) so that they travel back from a compare
worker process and cost little to keep: about 320 px on the long side, JPEG at
quality 80 (WebP where the image has transparency). :mod:`fetcher.htmlreport` lays
them out as the visual change report.
"""

from __future__ import annotations

import base64
import io
import threading
from dataclasses import dataclass
from struct import error as struct_error
from typing import TYPE_CHECKING

from .config import CompareConfig
from .errors import DecodeError

if TYPE_CHECKING:  # Pillow and numpy load only when a picture is made
    from PIL import Image

    from .comparison import Comparison

__all__ = [
    "THUMB_SIDE",
    "Budget",
    "Thumbnail",
    "Visual",
    "change_visual",
    "new_visual",
    "thumbnail",
]

#: Long side of a thumbnail, in pixels.
THUMB_SIDE = 320

#: Quality of a thumbnail (JPEG, or WebP for an image with transparency).
THUMB_QUALITY = 80


@dataclass(frozen=True)
class Thumbnail:
    """One small encoded picture: ``data`` in ``mime`` (image/jpeg or image/webp), ``size`` px."""

    data: bytes
    mime: str
    size: tuple[int, int]

    def data_uri(self) -> str:
        """The picture as a ``data:`` URI, to embed in a page."""
        return f"data:{self.mime};base64," + base64.b64encode(self.data).decode("ascii")


@dataclass(frozen=True)
class Visual:
    """The pictures of one decision (a ``new`` or ``changed`` image).

    Attributes
    ----------
    new : Thumbnail or None
        The new image.
    old : Thumbnail or None
        The image it replaces (``changed`` only).
    diff : Thumbnail or None
        The diff map (:func:`fetcher.diffmap.render_diff_map`), when the decision
        reached the similarity rung.
    decided_by : str or None
        The score that decided, when the similarity rung ran.
    notes : tuple of str
        Why a picture is missing (e.g. the old file does not decode).
    """

    new: Thumbnail | None = None
    old: Thumbnail | None = None
    diff: Thumbnail | None = None
    decided_by: str | None = None
    notes: tuple[str, ...] = ()


class Budget:
    """How many more results of each outcome may carry pictures; taken from any thread.

    ``new`` and ``changed`` have a budget each, so that the new images of a run never
    take the room of its changes.
    """

    def __init__(self, count: int) -> None:
        self._left = {"new": count, "changed": count}
        self._lock = threading.Lock()

    def take(self, outcome: str) -> bool:
        """Take one picture slot for a result of ``outcome``: False once they are spent."""
        with self._lock:
            if self._left.get(outcome, 0) <= 0:
                return False
            self._left[outcome] -= 1
            return True


def _encode(img: Image.Image) -> Thumbnail:
    """JPEG for an opaque picture, WebP (with its alpha) for one with transparency."""
    if img.mode == "RGBA" and img.getchannel("A").getextrema()[0] == 255:
        img = img.convert("RGB")
    buf = io.BytesIO()
    if img.mode == "RGBA":
        img.save(buf, format="WEBP", quality=THUMB_QUALITY, method=2)
        mime = "image/webp"
    else:
        img.save(buf, format="JPEG", quality=THUMB_QUALITY)
        mime = "image/jpeg"
    return Thumbnail(buf.getvalue(), mime, img.size)


def _displayable(img: Image.Image) -> Image.Image:
    """The first frame in a mode a thumbnail keeps: L, RGB or RGBA (16-bit grey scaled down)."""
    from PIL import Image

    mode = img.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        import numpy as np  # only here: a run of 8-bit images never imports it for a picture

        arr = np.asarray(img, dtype=np.float64)
        top = 1.0 if mode == "F" and arr.size and arr.max() <= 1.0 else 65535.0
        grey = np.clip(np.nan_to_num(arr) * (255.0 / top) + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L")
    alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info
    if alpha:
        return img.convert("RGBA")
    return img.convert("L" if mode in ("L", "1") else "RGB")


def _upright(img: Image.Image) -> Image.Image:
    """``img`` loaded and turned as its EXIF orientation says (as stored if that is unreadable)."""
    from PIL import ImageOps

    try:
        turned = ImageOps.exif_transpose(img)
        return turned if turned is not None else img
    except (SyntaxError, ValueError, KeyError, TypeError, struct_error):
        img.load()
        return img


def thumbnail(
    source: bytes | Image.Image,
    *,
    side: int = THUMB_SIDE,
    max_pixels: int | None = None,
) -> Thumbnail:
    """A thumbnail of ``source`` (its first frame, upright), at most ``side`` px on each side.

    A JPEG is decoded at the smallest DCT scale that still covers the thumbnail
    (libjpeg's ``draft``); smaller images are not enlarged.

    Raises
    ------
    DecodeError
        ``source`` does not decode (or is over ``max_pixels``).
    """
    from PIL import Image

    from .probe import DEFAULT_MAX_PIXELS, PIL_ERRORS, open_image

    if isinstance(source, Image.Image):
        img = source
    else:
        img = open_image(bytes(source), max_pixels=max_pixels or DEFAULT_MAX_PIXELS)
    try:
        width, height = img.size
        if width * height > (max_pixels or DEFAULT_MAX_PIXELS):
            raise DecodeError(f"too many pixels for a thumbnail: {width}x{height}")
        scale = side / max(width, height, 1)
        if img.format in ("JPEG", "MPO") and scale < 1:
            img.draft(img.mode, (max(1, round(width * scale)), max(1, round(height * scale))))
        picture = _displayable(_upright(img))
        picture.thumbnail((side, side), Image.Resampling.LANCZOS, reducing_gap=2.0)
        return _encode(picture)
    except PIL_ERRORS as exc:
        raise DecodeError(f"cannot make a thumbnail: {exc}") from None
    finally:
        if img is not source:
            img.close()


def new_visual(body: bytes, config: CompareConfig | None = None) -> Visual:
    """The pictures of a ``new`` image: its thumbnail."""
    cfg = config or CompareConfig()
    try:
        return Visual(new=thumbnail(body, max_pixels=cfg.max_pixels))
    except DecodeError as exc:
        return Visual(notes=(f"no thumbnail: {exc}",))


def change_visual(
    old: bytes | Image.Image,
    new: bytes | Image.Image,
    config: CompareConfig | None = None,
    comparison: Comparison | None = None,
) -> Visual:
    """The pictures of a decision between ``old`` and ``new``: both thumbnails and the diff map.

    Parameters
    ----------
    old, new : bytes or PIL.Image.Image
        The image on disk and the one that replaces it.
    config : CompareConfig, optional
        Thresholds and decoding limits.
    comparison : Comparison, optional
        The verdict, if at hand; with its map (``keep_map=True``) the map is drawn from
        it. Without a map, and when the decision reached the similarity rung (or no
        verdict is given), the pair is compared again with ``keep_map``.
    """
    from .comparison import compare
    from .diffmap import render_diff_map

    cfg = config or CompareConfig()
    notes: list[str] = []
    pictures: dict[str, Thumbnail | None] = {}
    for name, source in (("old", old), ("new", new)):
        try:
            pictures[name] = thumbnail(source, max_pixels=cfg.max_pixels)
        except DecodeError as exc:
            pictures[name] = None
            notes.append(f"no thumbnail of the {name} image: {exc}")
    if comparison is None or (
        comparison.edit_map is None and comparison.reason in ("similar", "dissimilar")
    ):
        comparison = compare(old, new, cfg, threads=1, keep_map=True)
    diff = None
    if comparison.edit_map is not None:
        diff = _encode(render_diff_map(comparison, legend=False, max_side=THUMB_SIDE))
    elif comparison.reason not in ("identical-bytes", "identical-pixels"):
        notes.append(f"no diff map: {comparison.detail}")
    return Visual(
        new=pictures["new"],
        old=pictures["old"],
        diff=diff,
        decided_by=comparison.decided_by,
        notes=tuple(notes),
    )
