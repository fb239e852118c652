"""Tests of the labelled set itself (``tests/pairs.py``), independent of fetcher's scores.

Most tests look at the recipes (cheap: nothing is encoded) or build a handful of pairs.
The ones marked ``slow`` decode the whole set, built once per session by
``pairs.all_pairs()``.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import math
import re
from collections.abc import Iterator

import numpy as np
import pairs
import pytest
from numpy.typing import NDArray
from pairs import CHANGED, SAME, Pair, Recipe
from PIL import Image, ImageOps, ImageSequence

RECIPES = pairs.recipes()
CATEGORIES: dict[str, list[Recipe]] = collections.defaultdict(list)
for _r in RECIPES:
    CATEGORIES[_r.category].append(_r)

# What issue 10 asks for, by the category that covers it.
NAMED_SAME = [
    "pillow re-save q100 of origin jpeg",
    "jpeg q95 444 -> q80 420",
    "jpeg -> webp q85",
    "jpeg -> avif q70",
    "jpeg chain q95 -> q90 -> q85",
    "jpeg progressive/optimised rewrite",
    "icc profile attached or stripped",
    "exif orientation vs rotated pixels",
    "16-bit vs 8-bit grey png",
    "rgb vs opaque rgba",
    "grey vs grey stored as rgb",
    "gif re-saved",
    "ui screenshot re-encoded",
    "chart re-encoded",
    "low-contrast re-encoded",
    "animation re-encoded",
]
TEXT = [
    "text digit 16-24px",
    "text digit 40+px",
    "text word 16-24px",
    "text word 40+px",
    "scan word replaced",
]
NAMED_CHANGED = [
    *TEXT,
    "qr pattern changed, same mean grey",
    "corner logo mirrored",
    "face blurred",
    "object patched out",
    "sticker ~2%",
    "shift 3px",
    "rotation 1 deg",
    "gamma 1.2",
    "contrast +10%",
    "saturation -20%",
    "unsharp mask",
    "line 2px",
    "chart bar 10% taller",
    "animation frame edited",
    "alpha hole (rgba)",
    "stereo left vs right view",
    "watermark 30% opacity",
    "border 5px",
    "tinted region",
]
# Dense local edits that keep the same ink and colour balance: no local mean moves.
SAME_INK = [
    "qr pattern changed, same mean grey",
    "unnamed: two words swapped",
    "unnamed: glyph replaced by one of equal ink",
    "unnamed: digits transposed",
    "unnamed: texture patch swapped",
    "unnamed: small pattern rotated 90 deg",
]
TEXT_LIKE = [*TEXT, *(c for c in SAME_INK if "word" in c or "glyph" in c or "digit" in c)]
# scikit-image ships one stereo pair, so that category cannot be split by source.
SINGLE_SOURCE = {"stereo left vs right view": "stereo_motorcycle"}
BOTH_SIDES_AS_ORIGIN = ("JPEG q90 both", "PNG both")


def _area(size: tuple[int, int]) -> int:
    return size[0] * size[1]


def _unique_scenes(categories: list[str]) -> Iterator[Recipe]:
    """One recipe per edit (the same edit is often encoded two ways)."""
    seen = set()
    for r in RECIPES:
        key = r.name.split(";")[0]
        if r.category in categories and key not in seen:
            seen.add(key)
            yield r


def _diff(a: Image.Image, b: Image.Image) -> NDArray[np.float32]:
    """|a - b| per pixel, the maximum over channels."""
    d = np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32))
    return d if d.ndim == 2 else d.max(axis=2)


# --------------------------------------------------------------------------- the interface


def test_pair_has_the_agreed_fields() -> None:
    fields = [f.name for f in dataclasses.fields(Pair)]
    assert fields == ["name", "label", "category", "source", "old", "new"]
    pair = Pair("a 800x600: b", SAME, "c", "a", b"1", b"2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        pair.label = CHANGED  # type: ignore[misc]


def test_names_are_unique_and_say_source_and_size() -> None:
    names = [r.name for r in RECIPES]
    dups = [n for n, c in collections.Counter(names).items() if c > 1]
    assert not dups
    for r in RECIPES:
        m = re.fullmatch(r"(\S+) (\d+)x(\d+): (.+)", r.name)
        assert m, r.name
        assert m.group(1) == r.source, r.name
        assert (int(m.group(2)), int(m.group(3))) == r.size, r.name


def test_totals_and_both_labels_well_represented() -> None:
    labels = collections.Counter(r.label for r in RECIPES)
    assert set(labels) == {SAME, CHANGED}
    assert 250 <= len(RECIPES) <= 400
    assert labels[SAME] >= 120
    assert labels[CHANGED] >= 120


def test_every_category_the_issue_names_is_there_with_its_label() -> None:
    for cat in NAMED_SAME:
        assert {r.label for r in CATEGORIES[cat]} == {SAME}, cat
    for cat in NAMED_CHANGED:
        assert {r.label for r in CATEGORIES[cat]} == {CHANGED}, cat


def test_every_category_has_one_label_several_pairs_and_sources() -> None:
    for cat, recipes in CATEGORIES.items():
        assert len({r.label for r in recipes}) == 1, cat
        if cat in SINGLE_SOURCE:
            assert {r.source for r in recipes} == {SINGLE_SOURCE[cat]}
            assert len(recipes) >= 3, cat
        else:
            assert len(recipes) >= 4, cat
            assert len({r.source for r in recipes}) >= 4, cat


def test_unnamed_categories_cover_both_kinds() -> None:
    unnamed = {c: rs[0].label for c, rs in CATEGORIES.items() if c.startswith("unnamed: ")}
    assert sum(label == CHANGED for label in unnamed.values()) >= 4
    assert sum(label == SAME for label in unnamed.values()) >= 3
    assert {c for c in SAME_INK if c.startswith("unnamed: ")} <= set(unnamed)
    named = set(NAMED_SAME) | set(NAMED_CHANGED)
    assert set(CATEGORIES) == named | set(unnamed), "a category neither named nor unnamed"


def test_edits_also_arrive_reencoded() -> None:
    """Each text edit and each unnamed edit is also met with the new side re-encoded or
    converted (old q95 -> new q85, new as WebP or AVIF, ...)."""
    for cat in [*TEXT, *(c for c in CATEGORIES if c.startswith("unnamed: "))]:
        if CATEGORIES[cat][0].label != CHANGED:
            continue
        reencoded = [r for r in CATEGORIES[cat] if not r.name.endswith(BOTH_SIDES_AS_ORIGIN)]
        assert reencoded, cat
    for cat in TEXT:
        for source in {r.source for r in CATEGORIES[cat]}:
            names = [r.name for r in CATEGORIES[cat] if r.source == source]
            assert any(n.endswith(BOTH_SIDES_AS_ORIGIN) for n in names), (cat, source)
            assert any(not n.endswith(BOTH_SIDES_AS_ORIGIN) for n in names), (cat, source)


def test_sizes_span_800x600_to_3000x2000_mostly_small() -> None:
    for r in RECIPES:
        w, h = r.size
        assert 800 <= max(w, h) <= 3000 and 600 <= min(w, h) <= 2000, r.name
    small = sum(_area(r.size) <= _area((1280, 960)) for r in RECIPES)
    assert small >= 0.75 * len(RECIPES)
    assert sum(_area(r.size) >= _area((2000, 1500)) for r in RECIPES) >= 15
    assert sum(r.size == (3000, 2000) for r in RECIPES) >= 5


def test_multi_frame_cases_on_both_sides() -> None:
    for cat, label in (("animation re-encoded", SAME), ("animation frame edited", CHANGED)):
        assert CATEGORIES[cat] and all(r.frames == 4 for r in CATEGORIES[cat])
        assert all(r.label == label for r in CATEGORIES[cat])
    assert all(r.frames == 1 for r in RECIPES if "animation" not in r.category)


# --------------------------------------------------------------------------- the split


def test_split_is_by_source_fixed_and_balanced() -> None:
    assert set(pairs.SOURCES.values()) == {"calibrate", "holdout"}
    for source, half in pairs.SOURCES.items():
        assert pairs.split_of(source) == half
    assert {r.source for r in RECIPES} <= set(pairs.SOURCES)
    assert pairs.split_of("not-a-source") == pairs.split_of("not-a-source")
    assert pairs.split_of("not-a-source") in ("calibrate", "holdout")
    cal, hold = pairs.recipes(half="calibrate"), pairs.recipes(half="holdout")
    assert len(cal) + len(hold) == len(RECIPES)
    assert {r.name for r in cal}.isdisjoint(r.name for r in hold)
    assert all(pairs.split_of(r.source) == "calibrate" for r in cal)
    for part in (cal, hold):
        assert len(part) >= 0.4 * len(RECIPES)
        assert sum(r.label == SAME for r in part) >= 50
        assert sum(r.label == CHANGED for r in part) >= 70
    for cat, recipes in CATEGORIES.items():
        if cat in SINGLE_SOURCE:
            continue
        for half in ("calibrate", "holdout"):
            sources = {r.source for r in recipes if pairs.split_of(r.source) == half}
            assert len(sources) >= 2, (cat, half, sources)


def test_build_pairs_half_filters_and_rejects_nonsense(monkeypatch: pytest.MonkeyPatch) -> None:
    def cheap(r: Recipe) -> Pair:
        return Pair(r.name, r.label, r.category, r.source, b"old", b"new")

    monkeypatch.setattr(pairs, "_cached_build", cheap)
    for half in ("calibrate", "holdout"):
        built = [p.name for p in pairs.build_pairs(half=half)]
        assert built == [r.name for r in pairs.recipes(half=half)]
    assert len(list(pairs.build_pairs())) == len(RECIPES)
    with pytest.raises(ValueError):
        list(pairs.build_pairs(half="train"))


# --------------------------------------------------------------------------- the edits


def test_text_edits_change_glyph_pixels_and_nothing_else() -> None:
    """A digit or word swap really changes glyph pixels (not only anti-aliasing), in one
    small place; the rest of the picture is untouched."""
    for r in _unique_scenes(TEXT_LIKE):
        (old,), (new,) = r.scene()
        d = _diff(old, new)
        ys, xs = np.nonzero(d > 2)
        assert len(xs), r.name
        assert int((d > 48).sum()) >= 15, r.name
        box = (xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1)
        assert box <= 0.06 * d.size, r.name


def test_same_ink_edits_keep_the_local_mean() -> None:
    """The unnamed dense edits (and the QR change) move pixels, not ink: the signed
    difference sums to almost nothing next to the absolute difference."""
    for r in _unique_scenes(SAME_INK):
        (old,), (new,) = r.scene()
        d = np.asarray(old, dtype=np.float64) - np.asarray(new, dtype=np.float64)
        d = d.reshape(d.shape[0], d.shape[1], -1)
        for c in range(d.shape[2]):
            moved = float(np.abs(d[..., c]).sum())
            assert moved > 0, r.name
            # texture patches are matched by mean and spread, glyphs and words exactly
            limit = 0.15 if "texture" in r.category else 0.02
            assert abs(float(d[..., c].sum())) <= limit * moved, (r.name, c)


def test_qr_changes_keep_the_count_of_dark_modules() -> None:
    for i in range(6):
        dark, data = pairs._qr_grid(pairs._seed("qr", "test", i))
        new = dark.copy()
        new[data] = pairs._rng("qr-new", "test", i).permutation(dark[data])
        assert new.sum() == dark.sum()
        assert (new != dark).sum() >= 0.3 * data.sum()
        assert np.array_equal(new[~data], dark[~data])  # finders and timing stay


@pytest.mark.slow
def test_every_edit_is_visible_before_encoding() -> None:
    """Local edits change at least a few dozen pixels by more than 32 levels; global
    ones (gamma, contrast, saturation, ...) change every pixel by 2 levels on average."""
    for r in _unique_scenes([c for c, rs in CATEGORIES.items() if rs[0].label == CHANGED]):
        old, new = r.scene()
        assert len(old) == len(new) == r.frames, r.name
        worst = 0.0
        for a, b in zip(old, new, strict=True):
            d = _diff(a, b)
            worst = max(worst, float(d.mean()) / 2.0, (d > 32).sum() / 15.0)
        assert worst >= 1.0, r.name


# --------------------------------------------------------------------------- building


def _small_mixed_subset() -> list[Recipe]:
    """One pair of each kind of encoding and drawing, small sizes only."""
    wanted = [
        "brick 800x600: JPEG q90 -> AVIF q70",
        "coffee 800x600: JPEG q90 -> WebP q85",
        "ui-shop 1280x800: PNG -> WebP q85",
        "chart-traffic 800x600: PNG -> WebP lossless",
        "coffee 800x600: GIF -> re-saved by Pillow (interlacing off, comment added)",
        "rocket 800x600: 4 frames: animated GIF -> re-saved (palette reordered)",
        "chelsea 800x600: 4 frames: animated WebP q90 -> re-encoded q80",
        "camera 800x600: 16-bit grey PNG -> 8-bit grey PNG (rounded)",
        "camera 600x800: pixels stored rotated with EXIF orientation 8 -> upright pixels, no tag",
        "hubble_deep_field 800x600: JPEG q90 with an sRGB ICC profile -> stripped, re-encoded q85",
        "doc-letter 850x1100",
        "astronaut 800x600: QR-like code",
        "retina 800x600: round",
    ]
    out = []
    for w in wanted:
        found = [r for r in RECIPES if r.name.startswith(w)]
        assert found, w
        out.append(found[0])
    return out


def _clear_caches() -> None:
    for fn in (pairs._render_cached, pairs._ui, pairs._chart, pairs._paper, pairs._grain_field):
        fn.cache_clear()


def test_building_is_deterministic() -> None:
    subset = _small_mixed_subset()
    first = [r.build() for r in subset]
    _clear_caches()
    second = [r.build() for r in subset]
    for a, b in zip(first, second, strict=True):
        assert (a.old, a.new) == (b.old, b.new), a.name
        assert a.old != a.new, a.name


def test_the_on_disk_cache(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = next(r for r in RECIPES if r.name.startswith("coffee 800x600: JPEG q90 -> WebP"))
    folder = str(tmp_path)
    monkeypatch.setenv(pairs.CACHE_ENV, folder)
    built = pairs._cached_build(recipe)
    path = pairs._cache_path(folder, recipe.name)
    assert path.exists() and not list(path.parent.glob("*.tmp"))

    def boom(frames: tuple[Image.Image, ...]) -> bytes:
        raise AssertionError("the cache was not used")

    cached = pairs._cached_build(dataclasses.replace(recipe, encode_old=boom))
    assert cached == built
    path.write_bytes(path.read_bytes()[:-10])  # damaged: rebuilt, not trusted
    assert pairs._cached_build(recipe) == built
    monkeypatch.setattr(pairs, "VERSION", "another")
    assert pairs._cache_path(folder, recipe.name) != path
    monkeypatch.delenv(pairs.CACHE_ENV)
    assert pairs._cached_build(recipe) == built


# --------------------------------------------------------------------------- the whole set


def _frames(data: bytes) -> list[NDArray[np.float32]]:
    """Every frame as displayed (EXIF orientation applied), float, H x W x C."""
    im = Image.open(io.BytesIO(data))
    out = []
    for frame in ImageSequence.Iterator(im):
        f = ImageOps.exif_transpose(frame) if getattr(im, "n_frames", 1) == 1 else frame
        if f.mode.startswith("I;16") or f.mode == "I":
            arr = np.asarray(f, dtype=np.float32)[..., None] / np.float32(257)
        else:
            alpha = "A" in f.mode or "transparency" in f.info
            mode = "RGBA" if alpha else ("L" if f.mode == "L" else "RGB")
            arr = np.asarray(f.convert(mode), dtype=np.float32)
            arr = arr if arr.ndim == 3 else arr[..., None]
        out.append(arr)
    return out


def _comparable(
    a: NDArray[np.float32], b: NDArray[np.float32]
) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
    """Same channel layout: grey next to colour becomes colour, opaque gains alpha."""

    def split(x: NDArray[np.float32]) -> tuple[NDArray[np.float32], NDArray[np.float32]]:
        if x.shape[2] == 4:
            return x[..., :3], x[..., 3:]
        return x, np.full((*x.shape[:2], 1), 255, np.float32)

    if a.shape == b.shape and a.shape[2] != 4:
        return a, b
    (ca, aa), (cb, ab) = split(a), split(b)
    if ca.shape[2] != cb.shape[2]:
        ca, cb = (x if x.shape[2] == 3 else np.repeat(x, 3, axis=2) for x in (ca, cb))
    return np.concatenate([ca * aa / 255, aa], 2), np.concatenate([cb * ab / 255, ab], 2)


@pytest.fixture(scope="module")
def whole_set() -> tuple[Pair, ...]:
    return pairs.all_pairs()


@pytest.mark.slow
def test_the_built_set_matches_its_recipes(whole_set: tuple[Pair, ...]) -> None:
    assert [p.name for p in whole_set] == [r.name for r in RECIPES]
    for p, r in zip(whole_set, RECIPES, strict=True):
        assert (p.label, p.category, p.source) == (r.label, r.category, r.source)
        assert p.old and p.new and p.old != p.new, p.name


def _worst_box_mean(d: NDArray[np.float32]) -> float:
    """The largest |mean| of ``d`` over 16 x 16 boxes placed every 8 px (per channel)."""
    h, w = d.shape[0] // 8 * 8, d.shape[1] // 8 * 8
    cells = d[:h, :w].reshape(h // 8, 8, w // 8, 8, d.shape[2]).mean(axis=(1, 3))
    boxes = cells[:-1, :-1] + cells[1:, :-1] + cells[:-1, 1:] + cells[1:, 1:]
    return float(np.abs(boxes).max()) / 4


@pytest.mark.slow
def test_every_pair_decodes_as_its_label_says(whole_set: tuple[Pair, ...]) -> None:
    """Both sides decode to the recipe's size and frame count; a changed pair is never
    pixel-identical; a same pair is a re-encode, not an edit: every region keeps its
    mean (no 16 px box moves by more than a few levels; more for saturated graphics
    under 4:2:0 chroma) and the whole picture stays close (PSNR)."""
    for p, r in zip(whole_set, RECIPES, strict=True):
        old, new = _frames(p.old), _frames(p.new)
        for frames in (old, new):
            assert len(frames) == r.frames, p.name
            assert frames[0].shape[1::-1] == r.size, p.name
        pixel_identical = True
        for a, b in zip(old, new, strict=True):
            a, b = _comparable(a, b)
            d = a - b
            pixel_identical &= not d.any()
            if p.label == SAME:
                mse = float(np.square(d, dtype=np.float64).mean())
                psnr = math.inf if mse == 0 else 10 * math.log10(255**2 / mse)
                assert psnr >= 28, (p.name, psnr)
                limit = 20 if p.source.startswith(("ui-", "chart-")) else 8
                assert _worst_box_mean(d) <= limit, (p.name, _worst_box_mean(d))
        assert p.label == SAME or not pixel_identical, p.name
