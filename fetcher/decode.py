"""Decode image bytes into normalised numpy frames, refusing oversized images before decoding.

Normalisation (rung 4 of the ladder in DESIGN.md), applied to every frame; stored mode
on the left, decoded mode on the right:

- ``1`` (bilevel) -> ``L`` with values 0 and 255.
- ``L`` -> ``L``; with a tRNS colour key -> ``LA`` (grey stays grey, alpha 0 on the key).
- ``LA``, ``La`` -> ``LA``.
- ``P``, ``PA`` (palette) -> ``RGB``; ``RGBA`` if the palette has any transparency.
- ``RGB``, ``RGBX`` -> ``RGB``; with a tRNS colour key -> ``RGBA``.
- ``RGBA``, ``RGBa`` -> ``RGBA``.
- ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` and other colour modes -> ``RGB`` (Pillow's conversion).
- ``I;16``, ``I;16B``, ``I;16L``, ``I;16N`` -> ``I;16``: uint16, data range 65535.
- ``I`` (32-bit int, e.g. TIFF) -> ``I;16``, values clipped to 0..65535.
- ``F`` (float, e.g. TIFF) -> ``I;16``: if every value lies in [0, 1] it is scaled by 65535,
  otherwise taken as is; then rounded and clipped to 0..65535, NaN -> 0.
- 16-bit grey with a tRNS key -> ``LA`` at 8 bits, grey rounded as ``(v + 128) // 257``.

So 16 bits survive only for plain grey; there is no 16-bit mode with alpha (Pillow
itself reads 16-bit RGB(A) and grey+alpha PNGs at 8 bits). EXIF orientation (all
eight values) is applied to every frame; an unreadable EXIF block counts as no
orientation, as browsers do. Every frame of an animation (GIF, WebP, APNG, multi-page
TIFF) is decoded (GIF frames after disposal) and all frames share one mode: ``RGBA`` if
any frame has transparency, grey only if every frame is grey, 16-bit only if every frame
is. An MPO (a camera JPEG carrying extra pictures) counts as its primary picture only.

The caps (pixels per frame, frames, pixels over all frames: the cap bounds memory, and
an animation holds all its frames) are checked from the header before any pixel is
decoded, by :mod:`fetcher.probe`, which also holds the cheap decodability check.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike
from PIL import Image

from .errors import DecodeError, StoreError
from .probe import (
    DEFAULT_MAX_FRAMES,
    DEFAULT_MAX_PIXELS,
    PIL_ERRORS,
    bomb_error,
    check_limits,
    frame_count,
    load_frame,
    open_image,
    pillow_call,
    read_header,
)

__all__ = [
    "DEFAULT_MAX_FRAMES",
    "DEFAULT_MAX_PIXELS",
    "Decoded",
    "box_reduce",
    "can_halve",
    "decode",
    "decode_image",
    "decode_path",
    "harmonise",
    "read_header",
]

_MODE_OF_BANDS_8 = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}


@dataclass(frozen=True, eq=False)
class Decoded:
    """A decoded, normalised image: one read-only ``(H, W, C)`` array per frame.

    Attributes
    ----------
    frames : tuple of numpy.ndarray
        Each ``(H, W, C)``, C-contiguous, read-only; ``C`` is 1 (grey), 2 (grey and
        alpha), 3 (RGB) or 4 (RGBA). dtype uint8, or uint16 for 16-bit grey.
    mode : str
        ``"L"``, ``"LA"``, ``"RGB"``, ``"RGBA"`` or ``"I;16"`` (16-bit grey, one band).
    size : tuple of int
        Displayed ``(width, height)``, after EXIF orientation.
    data_range : int
        255 for uint8 frames, 65535 for uint16 frames.
    format : str or None
        Pillow's format name (``"JPEG"``, ``"PNG"``, ...); None for an image made in memory.
    durations : tuple of int
        Display time of each frame in milliseconds, 0 when the file gives none.
    scale : int
        1, or 2 when decoded at half size: the frames are then ``ceil(H / 2) x ceil(W / 2)``
        (2 x 2 means; for a JPEG, libjpeg's DCT scaling) while ``size`` stays the full size.
    reduced : tuple of numpy.ndarray or None
        With ``reduction`` > 1, every frame reduced by that factor from full size
        (``f x f`` means, as ``Image.reduce``), in the same band layout.
    reduction : int
        The factor of ``reduced`` (1 when there is none).
    halved : tuple of numpy.ndarray or None
        With ``halve_again``: every frame halved once more (``2 x 2`` means of ``frames``,
        as ``Image.reduce`` computes them), for the chroma of the local edit.
    """

    frames: tuple[np.ndarray, ...]
    mode: str
    size: tuple[int, int]
    data_range: int
    format: str | None
    durations: tuple[int, ...]
    scale: int = 1
    reduced: tuple[np.ndarray, ...] | None = None
    reduction: int = 1
    halved: tuple[np.ndarray, ...] | None = None

    @property
    def n_frames(self) -> int:
        """Number of frames (1 for a still image)."""
        return len(self.frames)


# --------------------------------------------------------------------------- normalising


def _bands(arr: np.ndarray) -> np.ndarray:
    return arr[:, :, np.newaxis] if arr.ndim == 2 else arr


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    """16-bit to 8-bit, rounded: ``v * 255 / 65535`` to nearest, i.e. ``(v + 128) // 257``."""
    return ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _to_uint16(arr: np.ndarray) -> np.ndarray:
    """32-bit int or float grey to uint16 (see the module docstring for the rule)."""
    if arr.dtype.kind == "f":
        arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=65535.0, neginf=0.0)
        if arr.size and arr.min() >= 0.0 and arr.max() <= 1.0:
            arr = arr * 65535.0
        arr = np.rint(arr)
    out: np.ndarray = np.clip(arr, 0, 65535).astype(np.uint16)
    return out


def _peak(dtype: DTypeLike) -> int:
    """Largest value of the frame dtypes used here: 65535 for uint16, else 255."""
    return 65535 if np.dtype(dtype) == np.uint16 else 255


def _opaque(arr: np.ndarray) -> np.ndarray:
    """An alpha band, fully opaque, matching ``arr``'s height, width and dtype."""
    return np.full((arr.shape[0], arr.shape[1], 1), _peak(arr.dtype), dtype=arr.dtype)


def _with_key_alpha(arr: np.ndarray, key: object) -> np.ndarray | None:
    """Grey or RGB ``(H, W, C)`` plus an alpha band from a tRNS colour key; None if unusable."""
    channels = arr.shape[2]
    key_values = (key,) * channels if isinstance(key, int) else key
    if not isinstance(key_values, tuple) or len(key_values) != channels:
        return None
    if not all(isinstance(v, int) for v in key_values):
        return None
    transparent = np.all(arr == np.asarray(key_values, dtype=np.int64), axis=2)
    alpha = np.where(transparent, 0, _peak(arr.dtype)).astype(arr.dtype)
    return np.concatenate([arr, alpha[:, :, np.newaxis]], axis=2)


def _frame_array(frame: Image.Image) -> np.ndarray:
    """One loaded Pillow frame -> ``(H, W, C)`` uint8 or uint16 grey, by the table above."""
    mode = frame.mode
    key = frame.info.get("transparency")
    if mode in ("P", "PA"):
        palette_alpha = frame.palette is not None and frame.palette.mode == "RGBA"
        target = "RGBA" if key is not None or mode == "PA" or palette_alpha else "RGB"
        return np.asarray(pillow_call(lambda: frame.convert(target)))
    if mode in ("L", "LA", "RGB", "RGBA"):
        arr = _bands(np.asarray(frame))
    elif mode == "1":
        arr = _bands(np.asarray(pillow_call(lambda: frame.convert("L"))))
        if isinstance(key, int):
            key = 255 if key else 0
    elif mode.startswith("I;16"):
        arr = _bands(np.asarray(frame).astype(np.uint16))
    elif mode in ("I", "F"):
        arr = _bands(_to_uint16(np.asarray(frame)))
    elif mode == "La":
        arr = np.asarray(pillow_call(lambda: frame.convert("LA")))
    elif mode == "RGBa":
        arr = np.asarray(pillow_call(lambda: frame.convert("RGBA")))
    else:  # RGBX, CMYK, YCbCr, LAB, HSV and anything else Pillow can turn into RGB
        arr = np.asarray(pillow_call(lambda: frame.convert("RGB")))
        key = None
    if key is not None and arr.shape[2] in (1, 3):
        keyed = _with_key_alpha(arr, key)
        if keyed is not None:
            arr = _to_uint8(keyed) if keyed.dtype == np.uint16 else keyed
    return arr


def _layout(arrays: list[np.ndarray] | tuple[np.ndarray, ...]) -> tuple[int, type[np.generic]]:
    """Common band count and dtype for arrays: grey only if all are, alpha if any has it."""
    grey = all(a.shape[2] <= 2 for a in arrays)
    alpha = any(a.shape[2] in (2, 4) for a in arrays)
    bands = (1 if grey else 3) + (1 if alpha else 0)
    sixteen = bands == 1 and all(a.dtype == np.uint16 for a in arrays)
    return bands, (np.uint16 if sixteen else np.uint8)


def _convert(arr: np.ndarray, bands: int, dtype: type[np.generic]) -> np.ndarray:
    """Bring ``(H, W, C)`` to ``bands`` bands of ``dtype``: replicate grey, add opaque alpha."""
    if arr.dtype != dtype:
        arr = _to_uint8(arr)  # _layout only keeps uint16 when every array is uint16
    colour = arr[:, :, : 1 if arr.shape[2] <= 2 else 3]
    alpha = arr[:, :, -1:] if arr.shape[2] in (2, 4) else None
    if bands >= 3 and colour.shape[2] == 1:
        colour = np.repeat(colour, 3, axis=2)
    if bands in (2, 4):
        parts = [colour, alpha if alpha is not None else _opaque(arr)]
        return np.concatenate(parts, axis=2)
    return colour


def _mode_of(bands: int, dtype: type[np.generic] | np.dtype[np.generic]) -> str:
    return "I;16" if np.dtype(dtype) == np.uint16 else _MODE_OF_BANDS_8[bands]


def _frozen(arr: np.ndarray) -> np.ndarray:
    out = np.ascontiguousarray(arr)
    out.flags.writeable = False
    return out


# EXIF orientation -> the array operation that displays the stored pixels upright
# (the same transposes as PIL.ImageOps.exif_transpose).
_ORIENT: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, k=-1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, k=1),
}


def _orientation(img: Image.Image) -> int:
    try:
        value = img.getexif().get(0x0112, 1)
    except Image.DecompressionBombError as exc:
        raise bomb_error(exc) from None
    except PIL_ERRORS:
        return 1  # an unreadable EXIF block: show the pixels as stored, as browsers do
    return value if isinstance(value, int) and value in _ORIENT else 1


# --------------------------------------------------------------------------- decoding


def can_halve(img: Image.Image) -> bool:
    """True when libjpeg can decode ``img`` at half size: an unloaded still JPEG in L or RGB."""
    still = img.format == "JPEG" or (img.format == "MPO" and frame_count(img) == 1)
    return still and img.mode in ("L", "RGB") and len(getattr(img, "tile", None) or ()) == 1


#: Modes Pillow reduces itself (in C, before any pixel reaches numpy) exactly as
#: :func:`box_reduce` does; with alpha it weights colour by alpha, so LA and RGBA do not.
_PILLOW_REDUCES = frozenset({"L", "RGB"})


def box_reduce(arr: np.ndarray, f: int) -> np.ndarray:
    """``f x f`` block means of ``(H, W, C)`` pixels, as ``Image.reduce`` computes them.

    Same dtype; the blocks of the last row and column may be partial (the size rounds
    up). Each mean is Pillow's fixed-point division ``(sum + n // 2) * m >> 24`` with
    ``m = float32(2**32) / float32(256 n)`` truncated (exactly ``(sum + n // 2) // n``
    when ``n`` is a power of two). Used where Pillow does not reduce (alpha, 16-bit grey,
    frames normalised in numpy), so that both ways give the same pixels.
    """
    if f == 1:
        return arr
    h, w = arr.shape[:2]
    rows = np.add.reduceat(arr.astype(np.uint64), np.arange(0, h, f), axis=0)
    sums = np.add.reduceat(rows, np.arange(0, w, f), axis=1)
    counts = np.outer(
        np.diff(np.append(np.arange(0, h, f), h)), np.diff(np.append(np.arange(0, w, f), w))
    )[:, :, None].astype(np.uint64)
    if arr.dtype != np.uint8:  # Pillow does not reduce these: plain rounding
        plain: np.ndarray = ((sums + counts // 2) // counts).astype(arr.dtype)
        return plain
    multiplier = (np.float32(2**32) / (np.float32(256) * counts.astype(np.float32))).astype(
        np.uint64
    )
    out: np.ndarray = (((sums + counts // 2) * multiplier) >> 24).astype(arr.dtype)
    return out


#: EXIF orientation -> the Pillow transpose that displays the stored pixels upright.
_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _frame_arrays(
    img: Image.Image,
    *,
    halve: bool,
    reduction: int,
    orientation: int,
    drafted: bool = False,
    halve_again: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The current frame upright, at half size (or as is), and reduced by ``reduction``.

    ``drafted``: libjpeg already decoded the frame at half size, so the reduction by
    ``reduction`` from full size is one by ``reduction / 2`` from it. ``halve_again``:
    also the frame halved once more (a third array; else None).

    The frame is turned upright *before* it is reduced, so that the blocks of a
    reduction line up with those of the same picture stored upright (a partial block
    always ends up at the bottom and right). Common modes are turned and reduced by
    Pillow before becoming arrays (a full-size array of a 12 MP photograph costs as
    much as decoding it); the others are normalised in numpy and reduced there, the
    same way (:func:`box_reduce`).
    """
    if img.mode in _PILLOW_REDUCES and "transparency" not in img.info:
        upright = img.transpose(_TRANSPOSE[orientation]) if orientation in _TRANSPOSE else img
        work = pillow_call(partial(upright.reduce, 2)) if halve else upright
        small = None
        if reduction > 1:
            left = reduction // 2 if drafted else reduction
            if halve and reduction == 2:
                small = work
            else:
                small = upright if left == 1 else pillow_call(partial(upright.reduce, left))
        again = pillow_call(partial(work.reduce, 2)) if halve_again else None
        return (
            _bands(np.asarray(work)),
            None if small is None else _bands(np.asarray(small)),
            None if again is None else _bands(np.asarray(again)),
        )
    full = _frame_array(img)
    turn = _ORIENT.get(orientation)
    if turn is not None:
        full = np.ascontiguousarray(turn(full))
    work_arr = box_reduce(full, 2) if halve else full
    return (
        work_arr,
        box_reduce(full, reduction) if reduction > 1 else None,
        box_reduce(work_arr, 2) if halve_again else None,
    )


def decode_image(
    img: Image.Image,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    half: bool = False,
    reduction: int = 1,
    dct: bool = True,
    halve_again: bool = False,
) -> Decoded:
    """Normalise an opened Pillow image, every frame, after checking the caps.

    Parameters
    ----------
    img : PIL.Image.Image
        An image from ``Image.open`` (not yet loaded is best) or made in memory.
        A multi-frame image is left seeked to the frame it was on.
    max_pixels, max_frames : int
        The caps, as for :func:`decode`.
    half, reduction, dct, halve_again
        As for :func:`decode`.

    Returns
    -------
    Decoded

    Raises
    ------
    TooManyPixelsError, DecodeError
        As :func:`decode`.
    """
    n_frames = frame_count(img)
    width, height = img.size
    check_limits(width, height, n_frames, max_pixels=max_pixels, max_frames=max_frames)
    scale = 2 if half and min(width, height) >= 2 else 1
    # libjpeg halves a JPEG while decoding it, unless an odd reduction must start from the
    # full size, or a turn would move its partial last block (odd size) to the top or
    # left (a JPEG's EXIF is in its header: reading it loads no pixels).
    drafted = dct and scale == 2 and (reduction == 1 or reduction % 2 == 0) and can_halve(img)
    if drafted and (width % 2 or height % 2) and _orientation(img) != 1:
        drafted = False
    if drafted:
        pillow_call(partial(img.draft, img.mode, (width // 2, height // 2)))
    start = img.tell() if n_frames > 1 else 0
    arrays: list[np.ndarray] = []
    smalls: list[np.ndarray | None] = []
    agains: list[np.ndarray | None] = []
    durations: list[int] = []
    try:
        orientation = 1
        for index in range(n_frames):
            load_frame(img, index, n_frames, img.size if drafted else (width, height))
            if index == 0:  # after loading: a PNG may keep its EXIF behind the pixels
                orientation = _orientation(img)
            arr, small, again = _frame_arrays(
                img,
                halve=scale == 2 and not drafted,
                reduction=reduction,
                orientation=orientation,
                drafted=drafted,
                halve_again=halve_again,
            )
            arrays.append(arr)
            smalls.append(small)
            agains.append(again)
            duration = img.info.get("duration", 0)
            durations.append(round(duration) if isinstance(duration, (int, float)) else 0)
        if n_frames > 1:
            pillow_call(lambda: img.seek(0))
    finally:
        if n_frames > 1 and img.tell() != start:
            with contextlib.suppress(DecodeError):  # best effort; keep the first error
                pillow_call(lambda: img.seek(start))
    bands, dtype = _layout(arrays)

    def upright(arr: np.ndarray) -> np.ndarray:
        return _frozen(_convert(arr, bands, dtype))

    reduced = None
    if reduction > 1:
        reduced = tuple(upright(small) for small in smalls if small is not None)
    halved = tuple(upright(a) for a in agains if a is not None) if halve_again else None
    return Decoded(
        frames=tuple(upright(arr) for arr in arrays),
        mode=_mode_of(bands, dtype),
        size=(height, width) if orientation in (5, 6, 7, 8) else (width, height),
        data_range=_peak(dtype),
        format=img.format,
        durations=tuple(durations),
        scale=scale,
        reduced=reduced,
        reduction=reduction,
        halved=halved,
    )


def decode(
    data: bytes,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_frames: int = DEFAULT_MAX_FRAMES,
    half: bool = False,
    reduction: int = 1,
    dct: bool = True,
    halve_again: bool = False,
) -> Decoded:
    """Decode image bytes into normalised frames (see the module docstring).

    Parameters
    ----------
    data : bytes
        The encoded image, any format Pillow reads.
    max_pixels : int
        Most pixels allowed in one frame and over all frames together.
    max_frames : int
        Most frames allowed.
    half : bool
        Give the frames at half size (``scale`` 2): ``2 x 2`` means, or for a still JPEG
        libjpeg's DCT scaling at decode time (unless ``reduction`` is odd).
    reduction : int
        Also give every frame reduced by this factor from full size (``reduced``).
    dct : bool
        Let libjpeg halve a JPEG; False halves it by ``2 x 2`` means like any image (two
        images compared must be halved the same way).
    halve_again : bool
        Also give the frames halved once more (``halved``).

    Returns
    -------
    Decoded

    Raises
    ------
    TooManyPixelsError
        Over the pixel cap; raised from the header, before the pixels are decoded.
    DecodeError
        Empty, not an image, truncated or corrupt, or over the frame cap; the message
        names the cause.
    """
    with open_image(bytes(data), max_pixels=max_pixels) as img:
        return decode_image(
            img,
            max_pixels=max_pixels,
            max_frames=max_frames,
            half=half,
            reduction=reduction,
            dct=dct,
            halve_again=halve_again,
        )


def decode_path(
    path: str | os.PathLike[str],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_frames: int = DEFAULT_MAX_FRAMES,
) -> Decoded:
    """Read a file and decode it (see :func:`decode`).

    Parameters
    ----------
    path : str or os.PathLike
        The image file.
    max_pixels, max_frames : int
        The caps, as for :func:`decode`.

    Returns
    -------
    Decoded

    Raises
    ------
    StoreError
        The file cannot be read; the message names the path.
    DecodeError
        As :func:`decode`.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from None
    return decode(data, max_pixels=max_pixels, max_frames=max_frames)


def harmonise(a: Decoded, b: Decoded) -> tuple[Decoded, Decoded]:
    """Bring two decoded images to one band layout and dtype for a pixel-by-pixel comparison.

    Grey against colour makes both colour (grey replicated); alpha on one side only
    adds an opaque alpha band (the dtype's maximum) to the other; 16-bit against
    8-bit converts the 16-bit side with rounding, ``(v + 128) // 257``. An image
    already in the common layout is returned as is (the same object, no copy).

    Parameters
    ----------
    a, b : Decoded
        The two images. Sizes and frame counts are not checked here.

    Returns
    -------
    tuple of Decoded
        ``a`` and ``b`` in the common layout, in that order.
    """
    bands, dtype = _layout([a.frames[0], b.frames[0]])
    return _harmonised(a, bands, dtype), _harmonised(b, bands, dtype)


def _harmonised(image: Decoded, bands: int, dtype: type[np.generic]) -> Decoded:
    first = image.frames[0]
    if first.shape[2] == bands and first.dtype == dtype:
        return image
    return Decoded(
        frames=tuple(_frozen(_convert(f, bands, dtype)) for f in image.frames),
        mode=_mode_of(bands, dtype),
        size=image.size,
        data_range=_peak(dtype),
        format=image.format,
        durations=image.durations,
        scale=image.scale,
        reduced=None
        if image.reduced is None
        else tuple(_frozen(_convert(f, bands, dtype)) for f in image.reduced),
        reduction=image.reduction,
        halved=None
        if image.halved is None
        else tuple(_frozen(_convert(f, bands, dtype)) for f in image.halved),
    )
