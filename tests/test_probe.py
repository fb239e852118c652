"""Tests for fetcher.probe: every GIF frame's size is checked before Pillow allocates it."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import encode
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from fetcher.decode import decode, decode_image
from fetcher.errors import DecodeError, TooManyPixelsError
from fetcher.probe import GifFrames, frame_count, gif_frames, open_image, read_header, verify

REPO = Path(__file__).resolve().parents[1]


def _descriptor_of(data: bytes, index: int) -> int:
    """Offset of the ``index``-th image descriptor of an 8x8 GIF Pillow wrote."""
    found = [
        i
        for i in range(len(data) - 9)
        if data[i] == 0x2C and data[i + 5 : i + 9] == b"\x08\x00\x08\x00"
    ]
    return found[index]


def frame_bomb_gif(disposal: int = 2, transparency: bool = False, side: int = 13000) -> bytes:
    """Two 8x8 frames; the second frame's descriptor then claims ``side`` x ``side``."""
    first = Image.new("P", (8, 8), 0)
    first.putpixel((1, 1), 1)
    second = Image.new("P", (8, 8), 1)
    second.putpixel((2, 2), 0)
    extra = {"transparency": 0} if transparency else {}
    data = bytearray(
        encode(first, "GIF", save_all=True, append_images=[second], disposal=disposal, **extra)
    )
    at = _descriptor_of(bytes(data), 1)
    data[at + 5 : at + 9] = struct.pack("<HH", side, side)
    return bytes(data)


def canvas_bomb_gif(side: int = 10000) -> bytes:
    """One 8x8 frame (disposal 2) whose screen and descriptor claim ``side`` x ``side``."""
    frame = Image.new("P", (8, 8), 0)
    frame.putpixel((1, 1), 1)
    data = bytearray(encode(frame, "GIF", disposal=2))
    data[6:10] = struct.pack("<HH", side, side)
    at = _descriptor_of(bytes(data), 0)
    data[at + 5 : at + 9] = struct.pack("<HH", side, side)
    return bytes(data)


def animation(offsets: bool = True) -> bytes:
    """A real 3-frame animation; Pillow stores later frames cropped to what changed."""
    frames = [Image.new("RGB", (40, 30), (10, 20, 30)) for _ in range(3)]
    for i, frame in enumerate(frames):
        frame.paste((200, 50 * i, 0), (5 + 10 * i, 5, 15 + 10 * i, 15))
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], optimize=offsets)


@pytest.mark.parametrize("disposal", [0, 1, 2, 3])
@pytest.mark.parametrize("transparency", [False, True])
def test_a_later_frame_outside_the_canvas_is_refused_before_any_seek(
    disposal: int, transparency: bool
) -> None:
    bomb = frame_bomb_gif(disposal, transparency)
    assert len(bomb) < 100
    for call in (
        lambda: verify(bomb, max_pixels=1_000_000),
        lambda: decode(bomb, max_pixels=1_000_000),
        lambda: read_header(bomb, max_pixels=1_000_000),
    ):
        with pytest.raises(DecodeError, match=r"frame 1 is 13000x13000 at \(0, 0\), outside"):
            call()


def test_an_image_opened_by_the_caller_is_checked_before_its_frames_are_seeked() -> None:
    img = Image.open(io.BytesIO(frame_bomb_gif()))
    with pytest.raises(DecodeError, match="frame 1 is 13000x13000"):
        frame_count(img)
    with pytest.raises(DecodeError, match="frame 1 is 13000x13000"):
        decode_image(img, max_pixels=1_000_000)
    assert img.tell() == 0 and img.size == (8, 8)  # never seeked, never grown


def test_a_canvas_over_the_cap_is_refused_before_image_open() -> None:
    with pytest.raises(TooManyPixelsError, match="10000x10000 = 100,000,000 over the cap"):
        open_image(canvas_bomb_gif(), max_pixels=1_000_000)
    with pytest.raises(TooManyPixelsError):
        decode(canvas_bomb_gif(), max_pixels=1_000_000)


PEAK = """
import io, json, resource, sys
from PIL import Image
import numpy
from fetcher import compare, decode, probe
bombs = {name: bytes.fromhex(text) for name, text in json.loads(sys.argv[1]).items()}
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
refused = []
for name, bomb in bombs.items():
    for call in (
        lambda: probe.verify(bomb, max_pixels=1_000_000),
        lambda: decode.decode(bomb, max_pixels=1_000_000),
        lambda: probe.read_header(bomb, max_pixels=1_000_000),
        # an image the caller opened (Image.open itself allocates the first frame's
        # canvas, so only the frame bombs go this way)
        lambda: decode.decode_image(Image.open(io.BytesIO(bomb)), max_pixels=1_000_000)
        if name.startswith("frame")
        else probe.open_image(bomb, max_pixels=1_000_000),
    ):
        try:
            call()
        except ValueError as exc:  # DecodeError, TooManyPixelsError
            refused.append(type(exc).__name__)
grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
print(json.dumps({"grown_kib": grown, "refused": len(refused)}))
"""


def test_peak_memory_of_gif_bombs_stays_flat() -> None:
    """Measured in a child process: its peak RSS, before and after every bomb is refused.

    Before the frame check, ``verify`` of the 96-byte frame bomb (disposal 2) peaked
    644 MiB higher and the one-frame canvas bomb 95 MiB higher (``max_pixels`` 1 000 000).
    """
    bombs = {
        f"frame-d{d}{'t' if t else ''}": frame_bomb_gif(d, t).hex()
        for d in (2, 3)
        for t in (False, True)
    }
    bombs["canvas"] = canvas_bomb_gif().hex()
    run = subprocess.run(
        [sys.executable, "-c", PEAK, json.dumps(bombs)],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
        check=True,
    )
    measured = json.loads(run.stdout)
    assert measured["refused"] == 4 * len(bombs)
    assert measured["grown_kib"] < 16 * 1024, measured  # a 1000x1000 RGBA frame is 4 MiB


def test_real_animations_with_offset_frames_still_decode() -> None:
    data = animation()
    frames = gif_frames(data)
    assert len(frames.extents) == 3 and frames.canvas == (40, 30)
    assert any(extent != (0, 0, 40, 30) for extent in frames.extents[1:])  # cropped frames
    assert verify(data) == "GIF"
    decoded = decode(data)
    assert len(decoded.frames) == 3 and decoded.size == (40, 30)


def test_a_first_frame_larger_than_the_screen_grows_the_canvas_as_pillow_does() -> None:
    frame = Image.new("P", (8, 8), 0)
    data = bytearray(encode(frame, "GIF"))
    data[6:10] = struct.pack("<HH", 4, 4)  # a screen smaller than the frame
    frames = gif_frames(bytes(data))
    assert frames.screen == (4, 4) and frames.canvas == (8, 8)
    with Image.open(io.BytesIO(bytes(data))) as img:
        assert img.size == frames.canvas
    assert verify(bytes(data)) == "GIF"


def test_gif_frames_counts_what_pillow_counts() -> None:
    for data in (animation(), animation(offsets=False), frame_bomb_gif(side=8)):
        with Image.open(io.BytesIO(data)) as img:
            assert len(gif_frames(data).extents) == getattr(img, "n_frames", 1)


def test_frames_check_names_the_frame_and_the_canvas() -> None:
    frames = GifFrames(screen=(10, 10), extents=((0, 0, 10, 10), (5, 5, 11, 10)))
    with pytest.raises(
        DecodeError, match=r"frame 1 is 6x5 at \(5, 5\), outside the first frame's 10x10"
    ):
        frames.check(max_pixels=100)
    with pytest.raises(TooManyPixelsError):
        GifFrames(screen=(10, 10), extents=()).check(max_pixels=99)


@settings(max_examples=300, deadline=None)
@given(tail=st.binary(max_size=200), head=st.sampled_from([b"GIF89a", b"GIF87a"]))
def test_any_bytes_after_a_gif_header_end_in_a_decode_error_or_an_image(
    head: bytes, tail: bytes
) -> None:
    data = head + tail
    try:
        gif_frames(data)
        verify(data, max_pixels=1_000_000)
    except DecodeError:
        pass
