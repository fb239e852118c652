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
    "Comparison",
    "ImageSource",
    "compare",
    "compare_decoded",
    "load_source",
    "render_diff_map",
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


@dataclass(frozen=True)
class Comparison:
    """The verdict on two images, with the numbers behind it.

    Attributes
    ----------
    same : bool
        True when the new image is the same picture as the old one.
    reason : str
        The rung that decided: ``identical-bytes``, ``dimensions``, ``frames``,
        ``identical-pixels``, ``similar``, ``dissimilar`` or ``disk-unreadable``.
    ssim, nrmse, local_ssim : float or None
        Minimum over bands (and frames) of mean SSIM, NRMSE-similarity and the
        worst tile's SSIM. ``None`` when the ladder stopped before similarity;
        ``ssim`` is also ``None`` for images smaller than the 11-pixel window,
        where ``local_ssim`` holds the worst tile's raw-difference score instead.
    local_shift : float or None
        ``1 -`` the worst tile's mean difference over the band's span (minimum
        over bands and frames): the local check that catches small edits.
    bands : tuple of BandScore
        Per-band scores of the worst frame (empty before the similarity rung).
    decided_by : str or None
        For ``dissimilar`` the metric that fell short of its threshold
        (``ssim``, ``nrmse``, ``local_shift`` or ``local_ssim``); for ``similar``
        the metric with the
        smallest margin above its threshold.
    detail : str
        One human sentence explaining the verdict.
    """

    same: bool
    reason: str
    ssim: float | None = None
    nrmse: float | None = None
    local_ssim: float | None = None
    local_shift: float | None = None
    bands: tuple[BandScore, ...] = ()
    decided_by: str | None = None
    detail: str = ""
    size: tuple[int, int] | None = None
    frames: int | None = None
    local_kind: str | None = None
    ssim_map: np.ndarray[Any, Any] | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (without the SSIM map)."""
        out = {
            f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "ssim_map"
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


def _decode(source: bytes | Image.Image, config: CompareConfig) -> Decoded:
    from PIL import Image

    from .decode import decode, decode_image

    if isinstance(source, Image.Image):
        return decode_image(source, max_pixels=config.max_pixels, max_frames=config.max_frames)
    return decode(source, max_pixels=config.max_pixels, max_frames=config.max_frames)


def _compare_config(config: Config | CompareConfig | None) -> CompareConfig:
    if config is None:
        return CompareConfig()
    if isinstance(config, Config):
        return config.compare
    return config


def compare(
    old: ImageSource,
    new: ImageSource,
    config: Config | CompareConfig | None = None,
    *,
    threads: int | None = None,
    keep_map: bool = False,
) -> Comparison:
    """Decide whether ``new`` is the same picture as ``old``.

    Runs rungs 3-7 of the ladder, cheapest first: identical bytes, then both
    decoded and normalised (displayed size and frame count must match), then
    identical pixels, then similarity against the thresholds of ``[compare]``.

    Parameters
    ----------
    old, new : path, bytes or PIL.Image.Image
        The image on disk and the candidate replacing it.
    config : Config or CompareConfig, optional
        Thresholds and decoding limits; the defaults when omitted.
    threads : int, optional
        Threads for the similarity rung (default: one per core).
    keep_map : bool
        Keep the SSIM map (minimum over bands) in ``Comparison.ssim_map``.

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
    new_d = _decode(new_src, cfg)
    try:
        old_d = _decode(old_src, cfg)
    except DecodeError as exc:
        return Comparison(
            same=False, reason="disk-unreadable", detail=f"the old image does not decode: {exc}"
        )
    return compare_decoded(old_d, new_d, cfg, threads=threads, keep_map=keep_map)


def compare_decoded(
    old: Decoded,
    new: Decoded,
    config: CompareConfig | None = None,
    *,
    threads: int | None = None,
    keep_map: bool = False,
) -> Comparison:
    """Rungs 4-7 on two decoded images (see :func:`compare`)."""
    import numpy as np

    from .decode import harmonise
    from .similarity import similarity

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
    a, b = harmonise(old, new)
    if all(np.array_equal(fa, fb) for fa, fb in zip(a.frames, b.frames, strict=True)):
        return Comparison(
            same=True,
            reason="identical-pixels",
            detail="the decoded pixels are identical",
            ssim=1.0,
            nrmse=1.0,
            local_ssim=1.0,
            local_shift=1.0,
            size=new.size,
            frames=new.n_frames,
        )
    worst = None
    worst_map = None
    for fa, fb in zip(a.frames, b.frames, strict=True):
        score, smap = similarity(
            fa, fb, data_range=a.data_range, tile=cfg.tile, threads=threads, want_map=keep_map
        )
        if worst is None or _key(score) < _key(worst):
            worst, worst_map = score, smap
    assert worst is not None  # at least one frame: decode guarantees it
    checks = _checks(worst, cfg)
    short = [name for name, (value, limit) in checks.items() if value < limit]
    same = not short
    decided_by = short[0] if short else min(checks, key=lambda n: checks[n][0] - checks[n][1])
    value, limit = checks[decided_by]
    if same:
        detail = (
            f"similar: every score at or above its threshold "
            f"(closest: {decided_by} {value:.4f} >= {limit:.4f})"
        )
    else:
        detail = f"{decided_by} {value:.4f} below threshold {limit:.4f}"
    return Comparison(
        same=same,
        reason="similar" if same else "dissimilar",
        ssim=worst.ssim,
        nrmse=worst.nrmse,
        local_ssim=worst.local,
        local_shift=worst.local_shift,
        bands=worst.bands,
        decided_by=decided_by,
        detail=detail,
        size=new.size,
        frames=new.n_frames,
        local_kind=worst.local_kind,
        ssim_map=worst_map,
    )


def _key(score: Similarity) -> tuple[float, float, float]:
    ssim = 1.0 if score.ssim is None else score.ssim
    return (min(score.local_shift, score.local, ssim), ssim, score.nrmse)


def _checks(score: Similarity, cfg: CompareConfig) -> dict[str, tuple[float, float]]:
    """Each metric's value and threshold, in the order they are reported."""
    checks: dict[str, tuple[float, float]] = {}
    if score.ssim is not None:
        checks["ssim"] = (score.ssim, cfg.ssim)
    checks["nrmse"] = (score.nrmse, cfg.nrmse)
    checks["local_shift"] = (score.local_shift, cfg.local_shift)
    # Without SSIM (a side under 11 px) the local score is a raw-difference
    # score on the NRMSE scale, so it is held to the NRMSE threshold.
    checks["local_ssim"] = (
        score.local,
        cfg.local_ssim if score.local_kind == "ssim" else cfg.nrmse,
    )
    return checks


def render_diff_map(
    ssim_map: np.ndarray[Any, Any], *, size: tuple[int, int] | None = None
) -> Image.Image:
    """Picture where two images differ: a heat map of ``1 - SSIM``.

    Black where the images agree, through red to yellow and white where they
    differ most. The map covers the valid region (5 pixels in from each edge);
    with ``size`` it is padded by edge replication back to the image's
    ``(width, height)`` so the picture lines up with the image.
    """
    import numpy as np
    from PIL import Image

    dissimilarity = np.clip(1.0 - np.asarray(ssim_map, dtype=np.float32), 0.0, 1.0)
    if size is not None:
        pad_y = max(size[1] - dissimilarity.shape[0], 0)
        pad_x = max(size[0] - dissimilarity.shape[1], 0)
        dissimilarity = np.pad(
            dissimilarity,
            ((pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2)),
            mode="edge",
        )
    v = np.sqrt(dissimilarity) * 3.0  # sqrt: make faint differences visible
    rgb = np.stack([np.clip(v, 0, 1), np.clip(v - 1, 0, 1), np.clip(v - 2, 0, 1)], axis=-1)
    return Image.fromarray((rgb * 255 + 0.5).astype(np.uint8), "RGB")
