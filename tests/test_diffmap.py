"""Tests for fetcher.diffmap: the picture of where two images differ."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import encode, photo
from PIL import Image, ImageDraw, ImageFont

from fetcher import CompareConfig
from fetcher.comparison import compare
from fetcher.diffmap import render_diff_map

DEFAULTS = CompareConfig()


def big_photo(size: tuple[int, int] = (800, 600)) -> Image.Image:
    img = photo("astronaut").convert("RGB").resize(size, Image.Resampling.LANCZOS)
    grain = np.random.default_rng(3).normal(0, 3, (size[1], size[0], 1))
    return Image.fromarray(np.clip(np.asarray(img) + grain, 0, 255).astype(np.uint8))


def with_text(img: Image.Image, text: str, size: int, where: tuple[int, int]) -> Image.Image:
    out = img.copy()
    ImageDraw.Draw(out).text(where, text, font=ImageFont.load_default(size=size), fill="white")
    return out


def coloured(picture: Image.Image) -> np.ndarray:
    """Where the map paints colour over the dimmed grey image."""
    rgb = np.asarray(picture.convert("RGB")).astype(np.int16)
    painted: np.ndarray = (
        np.abs(rgb[..., 0] - rgb[..., 1]) + np.abs(rgb[..., 1] - rgb[..., 2])
    ) > 40
    return painted


def test_diff_map_is_calm_for_a_re_encode_and_lights_up_where_an_edit_is() -> None:
    base = big_photo((800, 600))
    old = encode(base, "JPEG", quality=95)
    calm = compare(old, encode(base, "JPEG", quality=80, subsampling=2), keep_map=True)
    assert calm.same
    calm_map = render_diff_map(calm)
    assert calm_map.size[0] == 800 and calm_map.size[1] > 600  # the legend strip below
    assert coloured(calm_map.crop((0, 0, 800, 600))).mean() < 0.01
    edited = with_text(base, "SOLD OUT", 24, (500, 400))
    loud = compare(old, encode(edited, "JPEG", quality=90), keep_map=True)
    assert not loud.same
    picture = render_diff_map(loud, legend=False)
    assert picture.size == (800, 600)
    lit = coloured(picture)
    ys, xs = np.nonzero(lit)
    assert lit.mean() > 0.002
    assert 380 <= np.median(ys) <= 440 and 490 <= np.median(xs) <= 640  # around the text
    assert loud.edit_limit == pytest.approx((1 - DEFAULTS.local_edit) * 255)


def test_diff_map_needs_a_kept_map() -> None:
    png = encode(photo("chelsea"), "PNG")
    q90 = encode(photo("chelsea"), "JPEG", quality=90)
    with pytest.raises(ValueError, match="keep_map"):
        render_diff_map(compare(png, q90))
    with pytest.raises(ValueError, match="identical-bytes"):
        render_diff_map(compare(png, png, keep_map=True))


@pytest.mark.parametrize("width", [320, 512, 800, 1600])
def test_the_legends_labels_never_overlap(width: int) -> None:
    """The threshold's label stands alone on its row: the caption never runs into it."""
    base = big_photo((width, width * 3 // 4))
    comparison = compare(
        encode(base, "JPEG", quality=95), encode(base, "JPEG", quality=80), keep_map=True
    )
    picture = render_diff_map(comparison)
    strip = np.asarray(picture.convert("L"))[width * 3 // 4 :].astype(np.int16)
    size = max(10, min(16, width // 40))
    font = ImageFont.load_default(size=size)
    label = f"threshold (local_edit): {comparison.edit_limit:.1f} levels"
    label_width = ImageDraw.Draw(Image.new("L", (1, 1))).textlength(label, font=font)
    text_columns = np.nonzero((strip[: size + 3] > 90).any(axis=0))[0]
    mark = 10 + round((width - 21) / 3)  # the scale's top is 3x the threshold
    # the run of text columns around the mark (gaps under 8 px are spaces between words)
    left = right = int(text_columns[np.argmin(np.abs(text_columns - mark))])
    for x in text_columns:
        if right < x <= right + 8:
            right = int(x)
    for x in text_columns[::-1]:
        if left - 8 <= x < left:
            left = int(x)
    assert right - left <= label_width + 2, "something runs into the threshold's label"
    captions = (strip > 90).any(axis=1).sum()
    assert captions > 2 * size, "the caption is drawn somewhere"


def test_a_change_only_the_local_structure_sees_is_boxed_where_it_is() -> None:
    """A digit swapped in 14 px text of moderate contrast barely colours the map (its
    blurred difference stays under the local edit's threshold), but it is boxed in red
    where it is; the same caption merely re-encoded gets no box."""
    base = photo("coffee").convert("RGB").resize((1200, 800), Image.Resampling.LANCZOS)
    behind = int(np.asarray(base.convert("L"))[40:60, 700:800].mean())

    def caption(text: str) -> Image.Image:
        ink = (behind - 100,) * 3
        return with_ink(base, text, 14, (700, 40), ink)

    swap = compare(
        encode(caption("Lot 1040 sold"), "JPEG", quality=90),
        encode(caption("Lot 1046 sold"), "JPEG", quality=85),
        keep_map=True,
    )
    assert swap.decided_by == "local_structure"
    assert swap.local_edit is not None and swap.local_edit >= DEFAULTS.local_edit
    boxed_red = np.all(np.asarray(render_diff_map(swap, legend=False)) == (255, 40, 40), axis=-1)
    ys, xs = np.nonzero(boxed_red)
    assert len(ys) > 40  # a box is drawn ...
    assert 700 <= np.median(xs) <= 820 and 0 <= np.median(ys) <= 90  # ... around the caption
    calm = compare(
        encode(caption("Lot 1040 sold"), "JPEG", quality=95),
        encode(caption("Lot 1040 sold"), "JPEG", quality=80),
        keep_map=True,
    )
    assert calm.same
    picture = np.asarray(render_diff_map(calm, legend=False))
    assert not np.all(picture == (255, 40, 40), axis=-1).any()


def with_ink(
    img: Image.Image, text: str, size: int, where: tuple[int, int], ink: tuple[int, ...]
) -> Image.Image:
    out = img.copy()
    ImageDraw.Draw(out).text(where, text, font=ImageFont.load_default(size=size), fill=ink)
    return out
