"""Rungs 3-7 of the ladder: decide whether two images are the same picture."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from .config import CompareConfig, Config
from .errors import DecodeError, StoreError

if TYPE_CHECKING:  # numpy, scipy and Pillow load on the first comparison, not on import
    import numpy as np
    from PIL import Image

    from .decode import Decoded
    from .similarity import BandScore, Similarity

__all__ = [
    "METRICS",
    "Comparison",
    "ImageSource",
    "compare",
    "compare_decoded",
    "load_source",
]

ImageSource: TypeAlias = "str | os.PathLike[str] | bytes | bytearray | memoryview | Image.Image"
"""What :func:`compare` accepts for each side: a path, the encoded bytes, or a PIL image."""

#: Reasons a comparison can give, in ladder order.
REASONS = (
    "identical-bytes",
    "dimensions",
    "frames",
    "identical-pixels",
    "similar",
    "dissimilar",
    "disk-unreadable",
)

#: The similarity scores, each held to the ``[compare]`` threshold of the same name.
METRICS = ("ssim", "nrmse", "local_edit", "local_structure")


@dataclass(frozen=True)
class Comparison:
    """The verdict on two images, with the numbers behind it.

    ``bool(comparison)`` raises TypeError: whether a comparison is "true" is ambiguous
    (``cmp`` says 1 for different), so ask ``comparison.same``.

    Attributes
    ----------
    same : bool
        True when the new image is the same picture as the old one.
    reason : str
        The rung that decided: ``identical-bytes``, ``dimensions``, ``frames``,
        ``identical-pixels``, ``similar``, ``dissimilar`` or ``disk-unreadable``.
    ssim, nrmse, local_edit, local_structure : float or None
        The scores of :mod:`fetcher.similarity`, each the minimum over bands and over
        frames (``local_structure`` is of the luma only). ``None`` when the ladder stopped
        before similarity; ``ssim`` is also ``None`` for an image too small for the SSIM
        window at Wang's scale.
    bands : tuple of BandScore
        Per band (``Y``, ``Cb``, ``Cr``, ``A``), the minimum over frames of each score;
        the top-level scores are the minimum of these. Empty before the similarity rung.
    decided_by : str or None
        For ``dissimilar``, the score that fell furthest short of its threshold; for
        ``similar``, the score with the smallest margin above its threshold.
    detail : str
        One human sentence explaining the verdict.
    size : (width, height) or None
        The displayed size of the new image.
    frames : int or None
        Its number of frames.
    edit_map : ndarray or None
        With ``keep_map``: the local-edit field of the frame with the lowest
        ``local_edit`` (per pixel, the worst band's mean blurred difference in a
        8 px window, in pixel units), at the scale the score was taken.
    edit_limit : float or None
        The field's value at the ``local_edit`` threshold, ``(1 - threshold) * L``.
    luma : ndarray or None
        With ``keep_map``: the new image's luma at the map's scale (uint8), for
        :func:`fetcher.diffmap.render_diff_map`.
    """

    same: bool
    reason: str
    ssim: float | None = None
    nrmse: float | None = None
    local_edit: float | None = None
    local_structure: float | None = None
    bands: tuple[BandScore, ...] = ()
    decided_by: str | None = None
    detail: str = ""
    size: tuple[int, int] | None = None
    frames: int | None = None
    edit_map: np.ndarray[Any, Any] | None = field(default=None, repr=False, compare=False)
    edit_limit: float | None = field(default=None, repr=False, compare=False)
    structure_map: np.ndarray[Any, Any] | None = field(default=None, repr=False, compare=False)
    structure_limit: float | None = field(default=None, repr=False, compare=False)
    luma: np.ndarray[Any, Any] | None = field(default=None, repr=False, compare=False)

    def __bool__(self) -> bool:
        raise TypeError(
            "the truth value of a Comparison is ambiguous: use comparison.same "
            "(True when the images are the same picture)"
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: the verdict, the scores and the per-band scores (no arrays)."""
        out = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("edit_map", "edit_limit", "luma", "structure_map", "structure_limit")
        }
        out["bands"] = [dataclasses.asdict(b) for b in self.bands]
        out["size"] = list(self.size) if self.size is not None else None
        return out


def load_source(source: ImageSource) -> bytes | Image.Image:
    """Read a path into bytes; pass bytes and PIL images through.

    Raises
    ------
    StoreError
        The path cannot be read; the message names it.
    """
    from PIL import Image

    if isinstance(source, Image.Image):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise StoreError(f"cannot read {os.fspath(source)}: {exc.strerror or exc}") from None


def _decode(
    source: bytes | Image.Image, config: CompareConfig, *, plan: tuple[bool, int, bool]
) -> Decoded:
    from PIL import Image

    from .decode import decode, decode_image

    half, reduction, dct = plan
    if isinstance(source, Image.Image):
        return decode_image(
            source,
            max_pixels=config.max_pixels,
            max_frames=config.max_frames,
            half=half,
            reduction=reduction,
            dct=False,
            halve_again=half,  # the chroma of the local edit takes the half's half
        )
    return decode(
        source,
        max_pixels=config.max_pixels,
        max_frames=config.max_frames,
        half=half,
        reduction=reduction,
        dct=dct,
        halve_again=half,
    )


def _compare_config(config: Config | CompareConfig | None) -> CompareConfig:
    if config is None:
        return CompareConfig()
    if isinstance(config, Config):
        return config.compare
    return config


def _plan(old: bytes | Image.Image, new: bytes | Image.Image) -> tuple[bool, int, bool]:
    """How to decode both sides: (at half size, Wang's reduction, libjpeg may halve).

    Both at half size once Wang's ``f`` is 2 or more (the local edit is taken there),
    and also reduced by ``f`` (the SSIM bands; Pillow's ``reduce``, from the half when
    ``f`` is even). libjpeg's DCT scaling does the halving only when both sides are
    JPEGs, so that both are halved the same way.
    """
    from PIL import Image

    from .probe import open_image
    from .similarity import wang_factor

    if isinstance(new, Image.Image):
        width, height = new.size
    else:
        try:
            with open_image(new) as img:
                width, height = img.size
        except DecodeError:
            return False, 1, False  # the full decode says what is wrong
    f = wang_factor(height, width)
    jpegs = all(isinstance(s, bytes) and s.startswith(b"\xff\xd8\xff") for s in (old, new))
    return f >= 2, f, jpegs


def compare(
    old: ImageSource,
    new: ImageSource,
    config: Config | CompareConfig | None = None,
    *,
    threads: int | None = None,
    keep_map: bool = False,
) -> Comparison:
    """Decide whether ``new`` is the same picture as ``old``.

    Runs rungs 3-7 of the ladder, cheapest first: identical bytes, then both decoded
    and normalised (displayed size and frame count must match), then identical
    pixels, then the similarity scores against the thresholds of ``[compare]``.

    Parameters
    ----------
    old, new : path, bytes or PIL.Image.Image
        The image on disk and the candidate replacing it.
    config : Config or CompareConfig, optional
        Thresholds and decoding limits; the defaults when omitted.
    threads : int, optional
        Threads for the similarity rung (default: one per core).
    keep_map : bool
        Keep the local-edit field and the new image's luma in the result, for
        :func:`fetcher.diffmap.render_diff_map`.

    Returns
    -------
    Comparison

    Raises
    ------
    DecodeError
        ``new`` is not a decodable image, or is over the pixel or frame cap.
        (An ``old`` that does not decode is a verdict, ``disk-unreadable``.)
    StoreError
        A path cannot be read.
    """
    cfg = _compare_config(config)
    old_src, new_src = load_source(old), load_source(new)
    if isinstance(old_src, bytes) and isinstance(new_src, bytes) and old_src == new_src:
        return Comparison(same=True, reason="identical-bytes", detail="the bytes are identical")
    plan = _plan(old_src, new_src)
    new_d = _decode(new_src, cfg, plan=plan)
    try:
        old_d = _decode(old_src, cfg, plan=plan)
    except DecodeError as exc:
        return Comparison(
            same=False, reason="disk-unreadable", detail=f"the old image does not decode: {exc}"
        )
    if new_d.scale == 2 and _same_pixels(old_d, new_d):
        # Equal at half size: only full size can say whether they are equal.
        full = (False, 1, False)
        new_d, old_d = _decode(new_src, cfg, plan=full), _decode(old_src, cfg, plan=full)
    return compare_decoded(old_d, new_d, cfg, threads=threads, keep_map=keep_map)


def _same_pixels(old: Decoded, new: Decoded) -> bool:
    import numpy as np

    from .decode import harmonise

    if old.size != new.size or old.n_frames != new.n_frames or old.scale != new.scale:
        return False
    a, b = harmonise(old, new)
    return all(np.array_equal(fa, fb) for fa, fb in zip(a.frames, b.frames, strict=True))


def compare_decoded(
    old: Decoded,
    new: Decoded,
    config: CompareConfig | None = None,
    *,
    threads: int | None = None,
    keep_map: bool = False,
) -> Comparison:
    """Rungs 4-7 on two decoded images (see :func:`compare`); both at one ``scale``.

    Images decoded at half size that are equal there go on to the similarity rung (all
    scores 1.0): only :func:`compare`, which can decode them again, says
    ``identical-pixels`` for them.
    """
    from .decode import harmonise

    cfg = config or CompareConfig()
    if old.size != new.size:
        return Comparison(
            same=False,
            reason="dimensions",
            detail=f"size {old.size[0]}x{old.size[1]} became {new.size[0]}x{new.size[1]}",
            size=new.size,
        )
    if old.n_frames != new.n_frames:
        return Comparison(
            same=False,
            reason="frames",
            detail=f"{old.n_frames} frame(s) became {new.n_frames}",
            size=new.size,
            frames=new.n_frames,
        )
    if old.scale != new.scale:
        raise ValueError(f"decoded at different scales: {old.scale} and {new.scale}")
    if old.scale == 1 and _same_pixels(old, new):
        return Comparison(
            same=True,
            reason="identical-pixels",
            detail="the decoded pixels are identical",
            ssim=1.0,
            nrmse=1.0,
            local_edit=1.0,
            local_structure=1.0,
            size=new.size,
            frames=new.n_frames,
        )
    a, b = harmonise(old, new)
    return _judge(a, b, cfg, threads=threads or os.cpu_count() or 1, keep_map=keep_map)


def _judge(
    a: Decoded, b: Decoded, cfg: CompareConfig, *, threads: int, keep_map: bool
) -> Comparison:
    """Rungs 6-7: every frame scored, each score's minimum over frames held to its threshold."""
    from .similarity import scores as score_pair

    per_frame: list[Similarity] = []
    fields = None
    for index, (fa, fb) in enumerate(zip(a.frames, b.frames, strict=True)):
        reduced = halves = None
        if a.reduced is not None and b.reduced is not None:
            reduced = (a.reduced[index], b.reduced[index])
        if a.halved is not None and b.halved is not None:
            halves = (a.halved[index], b.halved[index])
        score, frame_fields = score_pair(
            fa,
            fb,
            data_range=a.data_range,
            full_size=a.size,
            scale=a.scale,
            reduced=reduced,
            halves=halves,
            threads=threads,
            want_fields=keep_map,
        )
        if not per_frame or score.local_edit < min(s.local_edit for s in per_frame):
            fields = frame_fields
        per_frame.append(score)
    worst = _minimum_over_frames(per_frame)
    checks = {
        name: (value, getattr(cfg, name)) for name, value in worst.items() if value is not None
    }
    short = [name for name, (value, limit) in checks.items() if value < limit]
    same = not short
    # The score furthest below (or nearest above) its threshold, relative to the room the
    # threshold leaves below 1.0: that is what decided.
    decided_by = min(
        checks, key=lambda n: (checks[n][0] - checks[n][1]) / (1.0 - checks[n][1] or 1.0)
    )
    value, limit = checks[decided_by]
    if same:
        detail = (
            f"every score at or above its threshold "
            f"(closest: {decided_by} {value:.4f} >= {limit:.4f})"
        )
    else:
        detail = f"{decided_by} {value:.4f} below its threshold {limit:.4f}"
    extras: dict[str, Any] = {}
    if keep_map and fields is not None:
        extras = _map_parts(a, b, fields, per_frame, cfg)
    return Comparison(
        same=same,
        reason="similar" if same else "dissimilar",
        ssim=worst["ssim"],
        nrmse=worst["nrmse"],
        local_edit=worst["local_edit"],
        local_structure=worst["local_structure"],
        bands=_bands_over_frames(per_frame),
        decided_by=decided_by,
        detail=detail,
        size=b.size,
        frames=b.n_frames,
        **extras,
    )


def _minimum_over_frames(scores: list[Similarity]) -> dict[str, float | None]:
    """Each metric's minimum over frames, taken metric by metric (never one 'worst frame')."""
    out: dict[str, float | None] = {}
    for name in METRICS:
        values = [getattr(s, name) for s in scores if getattr(s, name) is not None]
        out[name] = min(values) if values else None
    return out


def _bands_over_frames(scores: list[Similarity]) -> tuple[BandScore, ...]:
    from .similarity import BandScore

    bands = []
    for i, first in enumerate(scores[0].bands):
        per_frame = [s.bands[i] for s in scores]
        ssims = [b.ssim for b in per_frame if b.ssim is not None]
        structures = [b.local_structure for b in per_frame if b.local_structure is not None]
        bands.append(
            BandScore(
                band=first.band,
                ssim=min(ssims) if ssims else None,
                nrmse=min(b.nrmse for b in per_frame),
                local_edit=min(b.local_edit for b in per_frame),
                local_structure=min(structures) if structures else None,
            )
        )
    return tuple(bands)


def _map_parts(
    a: Decoded,
    b: Decoded,
    fields: list[tuple[str, Any]],
    scores: list[Similarity],
    cfg: CompareConfig,
) -> dict[str, Any]:
    """The worst frame's local-edit field and the new image's luma at the field's scale."""
    import numpy as np

    from .similarity import KB, KG, KR, fields_to_map

    index = min(range(len(scores)), key=lambda i: scores[i].local_edit)
    frame = b.frames[index].astype(np.float32)
    if frame.shape[2] >= 3:
        luma = frame[..., 0] * KR + frame[..., 1] * KG + frame[..., 2] * KB
    else:
        luma = frame[..., 0]
    luma *= 255.0 / b.data_range
    step = 2 if (b.scale == 1 and scores[index].reduction >= 2) else 1  # as the edit field
    if step == 2:
        h, w = luma.shape[0] // 2 * 2, luma.shape[1] // 2 * 2
        luma = luma[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    return {
        "edit_map": fields_to_map(fields, luma.shape),
        "edit_limit": (1.0 - cfg.local_edit) * b.data_range,
        "luma": np.clip(luma + 0.5, 0, 255).astype(np.uint8),
        "structure_map": _structure_map(a, b, scores, luma.shape),
        "structure_limit": cfg.local_structure,
    }


def _structure_map(a: Decoded, b: Decoded, scores: list[Similarity], shape: Any) -> Any:
    """The worst frame's local-structure terms, one per pixel of a map of ``shape``.

    The terms are taken as the score takes them (luma at half size) and each window's
    term drawn over the pixels it covers (the smallest where windows overlap).
    """
    import numpy as np
    from numpy.lib.stride_tricks import sliding_window_view

    from .similarity import _box_pixels, structure_field

    index = min(range(len(scores)), key=lambda i: scores[i].local_structure)
    x, y = a.frames[index], b.frames[index]
    if b.scale == 1 and min(x.shape[:2]) >= 2:
        x, y = _box_pixels(x, 2), _box_pixels(y, 2)
    terms = structure_field(x, y, data_range=b.data_range)
    # each pixel gets the smallest term of the windows covering it: pixel p is covered by
    # the windows whose corner is p - k + 1 .. p, that is padded[p .. p + k - 1]
    kh, kw = x.shape[0] - terms.shape[0] + 1, x.shape[1] - terms.shape[1] + 1
    padded = np.pad(terms, ((kh - 1, kh - 1), (kw - 1, kw - 1)), mode="edge")
    covered = sliding_window_view(padded, kh, axis=0).min(axis=-1)
    covered = sliding_window_view(covered, kw, axis=1).min(axis=-1)
    if covered.shape[0] * 2 <= shape[0] + 1:  # the map is at full size: double it
        covered = covered.repeat(2, axis=0).repeat(2, axis=1)
    out = np.ones(shape, dtype=np.float32)
    h, w = min(shape[0], covered.shape[0]), min(shape[1], covered.shape[1])
    out[:h, :w] = covered[:h, :w]
    return out
