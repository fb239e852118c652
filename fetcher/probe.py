"""Open images with Pillow within the pixel and frame caps, and check that they decode.

Everything here needs Pillow only (no numpy), so a run that only has to prove a new
download is an image (rung 2) never imports the array stack; :mod:`fetcher.decode`
builds the normalised pixels on top of it.

Limits, checked from the header before any pixel is decoded: each frame at most
``max_pixels`` pixels, at most ``max_frames`` frames, and at most ``max_pixels`` pixels
over all frames together. Pillow's own decompression-bomb limit
(``Image.MAX_IMAGE_PIXELS``, left alone) also applies and is reported the same way, as
``TooManyPixelsError``; its warning is silenced once, at import, for that class only.
"""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from collections.abc import Callable
from functools import partial
from typing import TypeVar

from PIL import Image, UnidentifiedImageError

from .errors import DecodeError, TooManyPixelsError

__all__ = [
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_MAX_PIXELS",
    "PIL_ERRORS",
    "bomb_error",
    "check_limits",
    "frame_count",
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


# --------------------------------------------------------------------------- opening


def open_image(data: bytes) -> Image.Image:
    """``Image.open`` on bytes (the header only); DecodeError saying what they are if not."""
    if not data:
        raise DecodeError(_not_an_image(data))
    try:
        return Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:
        raise bomb_error(exc) from None
    except UnidentifiedImageError:
        raise DecodeError(_not_an_image(data)) from None
    except PIL_ERRORS as exc:
        raise DecodeError(_describe(exc)) from None


def frame_count(img: Image.Image) -> int:
    """Frames to decode: ``n_frames``, or 1 for an MPO (its primary picture)."""
    if img.format == "MPO":
        return 1  # the primary picture; the others are previews or depth maps
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
    img = open_image(data)
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
    with open_image(bytes(data)) as img:
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
