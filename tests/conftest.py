"""Shared test builders: generated images and real photographs from scikit-image."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
from PIL import Image

RNG = np.random.default_rng(20261125)


def encode(img: Image.Image, fmt: str = "PNG", **params: Any) -> bytes:
    """Encode a PIL image to bytes in ``fmt`` with Pillow's save ``params``."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def gradient_rgb(width: int = 96, height: int = 64) -> Image.Image:
    """A smooth colour gradient with some texture, deterministic."""
    y, x = np.mgrid[0:height, 0:width]
    r = (x * 255 // max(width - 1, 1)).astype(np.uint8)
    g = (y * 255 // max(height - 1, 1)).astype(np.uint8)
    b = ((x + y) * 7 % 256).astype(np.uint8)
    return Image.fromarray(np.dstack([r, g, b]), "RGB")


def photo(name: str = "astronaut") -> Image.Image:
    """A real photograph shipped by scikit-image (offline)."""
    from skimage import data

    arr = getattr(data, name)()
    if arr.ndim == 2:
        return Image.fromarray(arr, "L")
    if arr.shape[2] == 4:
        return Image.fromarray(arr, "RGBA")
    return Image.fromarray(arr, "RGB")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
