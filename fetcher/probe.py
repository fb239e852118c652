"""Open images with Pillow within the pixel and frame caps, and check that they decode.

Everything here needs Pillow only (no numpy), so a run that only has to prove a new
download is an image (rung 2) never imports the array stack; :mod:`fetcher.decode`
builds the normalised pixels on top of it.

Limits, checked from the header before any pixel is decoded: each frame at most
``max_pixels`` pixels, at most ``max_frames`` frames, and at most ``max_pixels`` pixels
over all frames together. Pillow's own decompression-bomb limit
(``Image.MAX_IMAGE_PIXELS``, left alone) also applies and is reported the same way, as
``TooManyPixelsError``; its warning is silenced once, at import, for that class only.

A GIF's frames each carry their own size, and Pillow allocates a frame's canvas (and
its disposal buffer) as it seeks to it, before any check of ours could run on the
result: a 96-byte GIF whose second frame claims 13000x13000 made it allocate 644 MiB.
So every frame's descriptor is read from the bytes first (:func:`gif_frames`, no
decoding): the canvas (the logical screen, grown by the first frame as Pillow grows
it) must be within ``max_pixels`` before ``Image.open`` even runs, and every later
frame must lie within that canvas before the first seek.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from PIL import Image, UnidentifiedImageError

from .errors import DecodeError, TooManyPixelsError

__all__ = [
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_MAX_PIXELS",
    "PIL_ERRORS",
    "GifFrames",
    "bomb_error",
    "check_limits",
    "frame_count",
    "gif_frames",
    "load_frame",
    "open_image",
    "pillow_call",
    "read_header",
    "verify",
]


_T = TypeVar("_T")

DEFAULT_MAX_PIXELS = 120_000_000
DEFAULT_MAX_FRAMES = 1000

# Our own cap is checked before load(); Pillow's warning about big images is noise.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# What Pillow raises for bad data (its own Image.open catches the same kinds while it
# tries plugins). Only Pillow calls are wrapped, so bugs in this module still surface.
PIL_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    zlib.error,
    IndexError,
    KeyError,
    TypeError,
)


_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)


# --------------------------------------------------------------------------- errors


def _start_of(data: bytes) -> str:
    """The first bytes, as text when they are text (an HTML page, a JSON error)."""
    head = data[:24].lstrip(b"\xef\xbb\xbf \t\r\n")[:16]
    try:
        text = head.decode("ascii")
    except UnicodeDecodeError:
        return repr(head)
    if text.translate(str.maketrans("", "", "\t\r\n")).isprintable():
        return repr(text)
    return repr(head)


def _not_an_image(data: bytes) -> str:
    if not data:
        return "not an image (empty input, 0 bytes)"
    for magic, fmt in _MAGIC:
        if data.startswith(magic):
            return f"corrupt or truncated {fmt} header ({len(data)} bytes)"
    if data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return f"corrupt or truncated WEBP header ({len(data)} bytes)"
    return f"not an image (starts with {_start_of(data)})"


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, EOFError) or "truncated" in text.lower():
        return f"truncated image: {text}"
    return f"corrupt image: {text}"


def bomb_error(exc: BaseException) -> TooManyPixelsError:
    """Pillow's decompression-bomb refusal, as our error."""
    return TooManyPixelsError(f"too many pixels: refused by Pillow's limit ({exc})")


def pillow_call(call: Callable[[], _T]) -> _T:
    """Run one Pillow call, turning what Pillow raises for bad data into DecodeError."""
    try:
        return call()
    except Image.DecompressionBombError as exc:
        raise bomb_error(exc) from None
    except PIL_ERRORS as exc:
        raise DecodeError(_describe(exc)) from None


# --------------------------------------------------------------------------- GIF frames


@dataclass(frozen=True)
class GifFrames:
    """Where a GIF's frames lie, from their descriptors (nothing decoded).

    ``screen`` is the logical screen ``(width, height)``; ``extents`` has one
    ``(x0, y0, x1, y1)`` per frame, in order, as the descriptors claim them.
    """

    screen: tuple[int, int]
    extents: tuple[tuple[int, int, int, int], ...]

    @property
    def canvas(self) -> tuple[int, int]:
        """The size Pillow gives the image: the screen, grown to hold the first frame."""
        width, height = self.screen
        if self.extents:
            width = max(width, self.extents[0][2])
            height = max(height, self.extents[0][3])
        return width, height

    def check(self, *, max_pixels: int) -> None:
        """Raise unless the canvas is within ``max_pixels`` and every frame within the canvas.

        Raises
        ------
        TooManyPixelsError
            The canvas is over ``max_pixels``.
        DecodeError
            A frame after the first reaches outside the canvas (Pillow would grow the
            canvas to it; the frames would not all have one size anyway).
        """
        width, height = self.canvas
        check_limits(width, height, 1, max_pixels=max_pixels, max_frames=1)
        for index, (x0, y0, x1, y1) in enumerate(self.extents[1:], start=1):
            if x1 > width or y1 > height:
                raise DecodeError(
                    f"frame {index} is {x1 - x0}x{y1 - y0} at ({x0}, {y0}), outside the "
                    f"first frame's {width}x{height}"
                )


def _skip_sub_blocks(data: bytes, pos: int) -> int:
    """The position after a chain of GIF data sub-blocks (ended by a zero length)."""
    while pos < len(data):
        size = data[pos]
        pos += 1 + size
        if not size:
            break
    return pos


def gif_frames(data: bytes) -> GifFrames:
    """Read every frame descriptor of the GIF ``data``, decoding nothing.

    The walk follows the blocks as Pillow's reader does (extensions and image data
    skipped by their sub-blocks, stray bytes skipped one at a time, the trailer ``;``
    or the end of the data ends it), so it sees every frame Pillow would seek to.

    Raises
    ------
    DecodeError
        ``data`` is shorter than a GIF header.
    """
    if len(data) < 13:
        raise DecodeError(f"corrupt or truncated GIF header ({len(data)} bytes)")
    screen = struct.unpack_from("<HH", data, 6)
    flags = data[10]
    pos = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # global colour table
    extents = []
    while pos < len(data):
        block = data[pos]
        if block == 0x3B:  # trailer
            break
        if block == 0x21:  # extension: label, then sub-blocks
            pos = _skip_sub_blocks(data, pos + 2)
        elif block == 0x2C and pos + 10 <= len(data):  # image descriptor
            x0, y0, width, height = struct.unpack_from("<HHHH", data, pos + 1)
            local = data[pos + 9]
            pos += 10 + (3 << ((local & 7) + 1) if local & 0x80 else 0)
            pos = _skip_sub_blocks(data, pos + 1)  # after the LZW minimum code size
            extents.append((x0, y0, x0 + width, y0 + height))
        else:
            pos += 1
    return GifFrames(screen=(screen[0], screen[1]), extents=tuple(extents))


def _raw_bytes(img: Image.Image) -> bytes | None:
    """The whole encoded file behind ``img``, or None if it is not at hand."""
    fp = getattr(img, "fp", None)
    if fp is None:
        return None
    try:
        where = fp.tell()
        fp.seek(0)
        try:
            return bytes(fp.read())
        finally:
            fp.seek(where)
    except (OSError, ValueError, AttributeError):
        return None


# --------------------------------------------------------------------------- opening


def open_image(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """``Image.open`` on bytes (the header only); DecodeError saying what they are if not.

    A GIF's canvas and frames are checked from their descriptors first
    (:meth:`GifFrames.check`), since ``Image.open`` already allocates for the first
    frame.
    """
    if not data:
        raise DecodeError(_not_an_image(data))
    if data[:6] in (b"GIF87a", b"GIF89a"):
        gif_frames(data).check(max_pixels=max_pixels)
    try:
        return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise bomb_error(exc) from None
    except UnidentifiedImageError:
        raise DecodeError(_not_an_image(data)) from None
    except PIL_ERRORS as exc:
        raise DecodeError(_describe(exc)) from None


def frame_count(img: Image.Image) -> int:
    """Frames to decode: ``n_frames``, or 1 for an MPO (its primary picture).

    For a GIF, every frame is first checked to lie within the first frame's canvas,
    from the descriptors in the file (Pillow allocates a frame's canvas when it seeks
    to it): call this before seeking to any frame.

    Raises
    ------
    DecodeError
        A GIF frame reaches outside the canvas, or the frames cannot be counted.
    """
    if img.format == "MPO":
        return 1  # the primary picture; the others are previews or depth maps
    if img.format == "GIF":
        raw = _raw_bytes(img)
        if raw is not None:
            frames = gif_frames(raw)
            frames.check(max_pixels=max(1, frames.canvas[0] * frames.canvas[1]))
    return int(pillow_call(lambda: getattr(img, "n_frames", 1)))


def check_limits(
    width: int, height: int, n_frames: int, *, max_pixels: int, max_frames: int
) -> None:
    """Raise unless the header's size and frame count are within the caps."""
    if width * height > max_pixels:
        raise TooManyPixelsError(
            f"too many pixels: {width}x{height} = {width * height:,} over the cap of {max_pixels:,}"
        )
    if n_frames > max_frames:
        raise DecodeError(f"too many frames: {n_frames:,} over the cap of {max_frames:,}")
    if width * height * n_frames > max_pixels:
        raise TooManyPixelsError(
            f"too many pixels: {n_frames:,} frames of {width}x{height} = "
            f"{width * height * n_frames:,} over the cap of {max_pixels:,}"
        )


def read_header(data: bytes, *, max_pixels: int) -> tuple[str | None, tuple[int, int], int]:
    """Read only the header: format, stored size and frame count, within the pixel cap.

    Parameters
    ----------
    data : bytes
        The encoded image.
    max_pixels : int
        Most pixels allowed in one frame and over all frames together.

    Returns
    -------
    format : str or None
        Pillow's format name.
    size : tuple of int
        ``(width, height)`` as stored, before EXIF orientation.
    n_frames : int
        Number of frames (1 for a still image and for an MPO).

    Raises
    ------
    DecodeError
        The header cannot be read: empty, not an image, truncated or corrupt.
    TooManyPixelsError
        The header claims more pixels than ``max_pixels``.
    """
    img = open_image(data, max_pixels=max_pixels)
    with img:
        n_frames = frame_count(img)
        width, height = img.size
        check_limits(width, height, n_frames, max_pixels=max_pixels, max_frames=n_frames)
        return img.format, (width, height), n_frames


# --------------------------------------------------------------------------- verifying


def verify(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_frames: int = DEFAULT_MAX_FRAMES,
) -> str | None:
    """Prove that ``data`` decodes, every frame, without keeping or converting pixels.

    The check behind rung 2 (a new file is written only if it is an image). Every
    frame is decoded by Pillow, so a truncated or corrupt stream fails as it would in
    :func:`fetcher.decode.decode`; a still JPEG is decoded at its smallest DCT scale
    (libjpeg's ``draft``: every coefficient is still entropy-decoded, so truncation and
    broken Huffman data are caught, but the inverse DCT and colour conversion run on an
    eighth of the size), several times cheaper than a full decode. Pillow releases the
    GIL while it decodes, so threads can run checks side by side.

    Parameters
    ----------
    data : bytes
        The encoded image.
    max_pixels, max_frames : int
        The caps, as for :func:`fetcher.decode.decode`.

    Returns
    -------
    str or None
        Pillow's format name.

    Raises
    ------
    TooManyPixelsError
        Over the pixel cap, from the header, before any pixel is decoded.
    DecodeError
        Empty, not an image, truncated or corrupt, over the frame cap, or frames of
        different sizes.
    """
    with open_image(bytes(data), max_pixels=max_pixels) as img:
        n_frames = frame_count(img)
        width, height = img.size
        check_limits(width, height, n_frames, max_pixels=max_pixels, max_frames=max_frames)
        if img.format == "JPEG" or (img.format == "MPO" and n_frames == 1):
            pillow_call(partial(img.draft, img.mode, (max(1, width // 8), max(1, height // 8))))
        for index in range(n_frames):
            load_frame(img, index, n_frames, img.size if index == 0 else (width, height))
        return img.format


def load_frame(img: Image.Image, index: int, n_frames: int, size: tuple[int, int]) -> None:
    """Seek to frame ``index`` of ``n_frames`` and decode it; DecodeError unless it is ``size``."""
    if n_frames > 1:
        pillow_call(partial(img.seek, index))
    if img.size != size:
        raise DecodeError(
            f"frame {index} is {img.size[0]}x{img.size[1]}, "
            f"unlike the first frame's {size[0]}x{size[1]}"
        )
    pillow_call(img.load)
