"""The picture of where two images differ: the local-edit field over the new image."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

    from .comparison import Comparison

__all__ = ["SCALE_TOP", "render_diff_map", "scale_colours"]


def render_diff_map(
    comparison: Comparison, *, legend: bool = True, max_side: int | None = None
) -> Image.Image:
    """Picture where two images differ: the local-edit field over the new image.

    The new image in dimmed grey; over it, in colour on an **absolute** scale, the
    local-edit field (mean blurred difference in an 8 px window, the quantity behind
    ``local_edit``): transparent where it is far below the threshold, blue to yellow up
    to the threshold, orange to red above it, and every region over the threshold boxed
    in red, as is every region where the local structure falls below its threshold (a
    digit swapped in faint text may barely colour the map, but it is boxed). A re-encode
    stays calm; an edit lights up where it is. Below the picture, a
    legend strip shows the scale in pixel levels with the threshold marked. The picture
    has the new image's displayed size.

    Parameters
    ----------
    comparison : Comparison
        From ``compare(..., keep_map=True)`` that reached the similarity rung.
    legend : bool
        Add the legend strip under the picture.
    max_side : int, optional
        Draw the picture at most this many pixels on its long side (a thumbnail): the
        field is shrunk by its maximum over each block, so that a small edit stays lit.

    Raises
    ------
    ValueError
        The comparison holds no map (``keep_map`` was off, or it ended before rung 6).
    """
    import numpy as np
    from PIL import Image

    if comparison.edit_map is None or comparison.luma is None or comparison.edit_limit is None:
        raise ValueError(
            f"no diff map: the comparison ended as {comparison.reason} before the similarity "
            "rung, or keep_map was off"
        )
    limit = max(comparison.edit_limit, 1e-9)
    ratio = comparison.edit_map / limit  # 1.0 at the threshold
    # where the local structure falls short, the map counts it as over the threshold too
    # (boxed in red: a digit swap that the blurred difference barely shows)
    structure = comparison.structure_map
    short = None
    if structure is not None and comparison.structure_limit is not None:
        short = (structure < comparison.structure_limit).astype(np.float32)
    luma = comparison.luma
    size = comparison.size or (luma.shape[1], luma.shape[0])
    if max_side is not None and max(size) > max_side:
        shrink = max_side / max(size)
        size = (max(1, round(size[0] * shrink)), max(1, round(size[1] * shrink)))
        if ratio.shape[0] > size[1] or ratio.shape[1] > size[0]:
            cells = (min(size[1], ratio.shape[0]), min(size[0], ratio.shape[1]))
            ratio = _block_max(ratio, cells)
            short = None if short is None else _block_max(short, cells)
            shape = (ratio.shape[1], ratio.shape[0])
            luma = np.asarray(Image.fromarray(luma).resize(shape, Image.Resampling.BOX))
    colour = _colour_scale(ratio)  # (H, W, 4) float in [0, 1]
    grey = (luma.astype(np.float32) * 0.45 + 40.0)[..., None] / 255.0
    alpha = colour[..., 3:4]
    rgb = grey * (1.0 - alpha) + colour[..., :3] * alpha
    picture = Image.fromarray((rgb * 255.0 + 0.5).astype(np.uint8), "RGB")
    if picture.size != size:
        picture = picture.resize(size, Image.Resampling.NEAREST)
    _ring_edits(picture, ratio if short is None else np.maximum(ratio, short))
    if not legend:
        return picture
    return _with_legend(picture, limit)


def _block_max(field: Any, shape: tuple[int, int]) -> Any:
    """``field`` shrunk to ``shape`` (rows, columns), each cell the maximum of its block."""
    import numpy as np

    rows = np.linspace(0, field.shape[0], shape[0] + 1).astype(np.intp)[:-1]
    cols = np.linspace(0, field.shape[1], shape[1] + 1).astype(np.intp)[:-1]
    return np.maximum.reduceat(np.maximum.reduceat(field, rows, axis=0), cols, axis=1)


def _ring_edits(picture: Image.Image, ratio: Any) -> None:
    """Draw a box around every region over the threshold, so a small edit is seen at once."""
    import numpy as np
    from PIL import ImageDraw
    from scipy import ndimage

    regions, count = ndimage.label(np.asarray(ratio) >= 1.0)
    if not count:
        return
    sy = picture.size[1] / ratio.shape[0]
    sx = picture.size[0] / ratio.shape[1]
    draw = ImageDraw.Draw(picture)
    width = max(2, round(min(picture.size) / 300))
    pad = 6 * width
    for rows, cols in ndimage.find_objects(regions):
        box = (
            max(0, cols.start * sx - pad),
            max(0, rows.start * sy - pad),
            min(picture.size[0] - 1, cols.stop * sx + pad),
            min(picture.size[1] - 1, rows.stop * sy + pad),
        )
        draw.rectangle(box, outline=(255, 40, 40), width=width)


#: Legend and colour scale run from 0 to this many times the threshold.
SCALE_TOP = 3.0
_SCALE_TOP = SCALE_TOP


def scale_colours(steps: int = 13) -> list[tuple[float, tuple[int, int, int]]]:
    """The legend's colours: ``(field / threshold, (r, g, b))`` from 0 to :data:`SCALE_TOP`.

    Each colour is drawn over the dark grey under the legend strip (level 40), as the
    strip shows it; a page can rebuild the legend from these stops.
    """
    import numpy as np

    ratios = np.linspace(0.0, SCALE_TOP, steps, dtype=np.float32)
    colours = _colour_scale(ratios)
    grey = 40.0 / 255.0
    rgb = grey * (1.0 - colours[:, 3:4]) + colours[:, :3] * colours[:, 3:4]
    return [
        (float(r), (int(c[0] * 255 + 0.5), int(c[1] * 255 + 0.5), int(c[2] * 255 + 0.5)))
        for r, c in zip(ratios, rgb, strict=True)
    ]


def _colour_scale(ratio: Any) -> Any:
    """Field / threshold -> RGBA in [0, 1]: fades in from 0.25, blue-yellow below 1, red above."""
    import numpy as np

    r = np.clip(np.asarray(ratio, dtype=np.float32), 0.0, _SCALE_TOP)
    below = np.clip(r, 0.0, 1.0)
    above = np.clip((r - 1.0) / (_SCALE_TOP - 1.0), 0.0, 1.0)
    red = np.where(r < 1.0, below, 1.0)
    green = np.where(r < 1.0, 0.3 + 0.6 * below, 0.55 * (1.0 - above))
    blue = np.where(r < 1.0, 1.0 - below, 0.0)
    alpha = np.clip((r - 0.25) / 0.5, 0.0, 1.0) * np.where(r < 1.0, 0.75, 0.9)
    return np.stack([red, green, blue, alpha], axis=-1)


def _with_legend(picture: Image.Image, limit: float) -> Image.Image:
    """Add a strip under ``picture``: the colour scale, ticks in pixel levels, the threshold."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    from .similarity import EDIT_WINDOW

    width = picture.size[0]
    size = max(10, min(16, width // 40))
    font = ImageFont.load_default(size=size)
    bar_h, text_h = max(8, size), size + 6
    span = width - 20  # the bar, 10 px in from each side
    mark = 10 + round((span - 1) / _SCALE_TOP)  # the threshold's place on the bar
    threshold = f"threshold (local_edit): {limit:.1f} levels"
    caption = f"mean blurred difference in a window of {EDIT_WINDOW} px"
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    # The caption shares the top row with the threshold's label where both fit; on a
    # narrow picture it gets a row of its own under the ticks, never over the label.
    beside = mark + measure.textlength(threshold, font=font) / 2 + 12 <= (
        width - 10 - measure.textlength(caption, font=font)
    )
    rows = 2 if beside else 3
    strip = Image.new("RGB", (width, bar_h + rows * text_h + 6), (24, 24, 24))
    ratios = np.linspace(0.0, _SCALE_TOP, max(width - 20, 2), dtype=np.float32)
    colours = _colour_scale(ratios)
    grey = 40.0 / 255.0
    bar = grey * (1.0 - colours[:, 3:4]) + colours[:, :3] * colours[:, 3:4]
    bar_img = Image.fromarray((np.repeat(bar[None], bar_h, axis=0) * 255 + 0.5).astype(np.uint8))
    strip.paste(bar_img, (10, text_h))
    draw = ImageDraw.Draw(strip)
    for fraction, anchor in (
        (0.0, "la"),
        (1 / _SCALE_TOP, "ma"),
        (2 / _SCALE_TOP, "ma"),
        (1.0, "ra"),
    ):
        x = 10 + round(fraction * (span - 1))
        draw.line([(x, text_h + bar_h), (x, text_h + bar_h + 3)], fill=(200, 200, 200))
        label = f"{fraction * _SCALE_TOP * limit:.1f}"
        draw.text((x, text_h + bar_h + 4), label, font=font, fill=(200, 200, 200), anchor=anchor)
    draw.line([(mark, text_h - 2), (mark, text_h + bar_h)], fill=(255, 255, 255), width=2)
    draw.text((mark, text_h - 3), threshold, font=font, fill=(255, 255, 255), anchor="ms")
    if beside:
        draw.text((width - 10, 2), caption, font=font, fill=(160, 160, 160), anchor="ra")
    else:
        draw.text((10, 2 * text_h + bar_h + 4), caption, font=font, fill=(160, 160, 160))
    out = Image.new("RGB", (width, picture.size[1] + strip.size[1]))
    out.paste(picture, (0, 0))
    out.paste(strip, (0, picture.size[1]))
    return out
