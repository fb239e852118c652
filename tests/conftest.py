"""Shared test builders: generated images and real photographs from scikit-image."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import strategies as st
from origin import Origin
from PIL import Image

RNG = np.random.default_rng(20261125)

# A shell without job control starts a background command (`pytest ... &`) with SIGINT
# ignored, and Python keeps it ignored; the Ctrl-C tests (here and in the children they
# start, which inherit it) would then see no interrupt at all. Tests run as in a foreground.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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


@contextlib.contextmanager
def swapping_for_a_link(folder: Path, outside: Path) -> Iterator[list[int]]:
    """While the block runs, a thread swaps ``folder`` for a link to ``outside`` and back.

    Each round renames the folder aside (beside it), puts a symbolic link in its place
    for 5 ms, then puts the folder back; a step that fails (the folder is busy or was
    re-made meanwhile) is skipped. Yields a one-item list: the number of swaps so far.
    """
    stop = threading.Event()
    swaps = [0]
    aside = folder.with_name(folder.name + "-aside")

    def swapper() -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                os.rename(folder, aside)
                with contextlib.suppress(OSError):
                    os.symlink(outside, folder)
                    swaps[0] += 1
                    time.sleep(0.005)  # the link stays in place while writes go on
                    os.unlink(folder)
                os.rename(aside, folder)

    thread = threading.Thread(target=swapper, name="link-swapper")
    thread.start()
    try:
        yield swaps
    finally:
        stop.set()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the swapper thread did not stop"


@pytest.fixture
def origin() -> Iterator[Origin]:
    """A loopback origin (``tests/origin.py``) serving for the test's duration."""
    with Origin() as served:
        yield served


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


# -- hypothesis strategies for hostile URLs and paths -----------------------------------------
#: Strings shaped like URLs: schemes, hosts, ports, dot segments, escapes, non-ASCII.
URLISH = st.from_regex(
    r"(https?|HTTP|ftp)://([a-zA-Z0-9.-]{0,12}|\[[0-9a-f:]{0,8}\])(:[0-9]{0,6})?"
    r"(/([A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2}|\.\.|[^\x00-\x7f]){0,12}){0,6}"
    r"(\?[^# ]{0,10})?(#.{0,5})?",
    fullmatch=True,
)

#: One path segment: any text, or a name with a meaning (dots, devices, fetcher's own).
SEGMENT = st.text(
    st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=0, max_size=40
) | st.sampled_from([".", "..", "%2e%2e", "CON", ".fetcher", ".fetcher-tmp-1", "é" * 200])

#: http URLs built from hostile hosts and segments.
BUILT_URL = st.builds(
    lambda host, segs, q: "http://" + host + "/" + "/".join(segs) + q,
    st.sampled_from(["h", "a.example", "127.0.0.1:81", "[::1]", ".fetcher", "con"]),
    st.lists(SEGMENT, max_size=8),
    st.sampled_from(["", "?", "?a=1", "?a=%00"]),
)
