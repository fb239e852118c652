"""Tests for fetcher.similarity: Wang's reduction, SSIM and NRMSE on it, the local-edit score."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import photo
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage
from skimage.metrics import structural_similarity

from fetcher.similarity import (
    CHROMA_SIGMA,
    EDIT_WINDOW,
    LUMA_SIGMA,
    STRUCTURE_K,
    STRUCTURE_WINDOW,
    BandScore,
    Similarity,
    edit_map,
    edit_maps,
    local_structure,
    nrmse_similarity,
    scores,
    wang_factor,
)

RNG = np.random.default_rng(20261202)
YCC = np.array(
    [[0.299, 0.587, 0.114], [-0.168735892, -0.331264108, 0.5], [0.5, -0.418687589, -0.081312411]]
)


# --------------------------------------------------------------------------- references


def ref_reduce(a: np.ndarray, f: int) -> np.ndarray:
    """ssim.m's reduction, independently: float64 means of f x f blocks (partial ones dropped)."""
    h, w = a.shape[0] // f * f, a.shape[1] // f * f
    a = a[:h, :w].astype(np.float64)
    means: np.ndarray = a.reshape(h // f, f, w // f, f, *a.shape[2:]).mean(axis=(1, 3))
    return means


def ref_planes(a: np.ndarray, data_range: float = 255) -> dict[str, np.ndarray]:
    """Y, Cb, Cr (offset 128) or Y, then A; colour premultiplied by alpha, float64."""
    a = a.astype(np.float64)
    a = a[..., None] if a.ndim == 2 else a
    alpha = a.shape[2] in (2, 4)
    colour = a[..., : a.shape[2] - alpha] * (a[..., -1:] / data_range if alpha else 1.0)
    out = {}
    if colour.shape[2] == 3:
        for name, row, offset in zip(("Y", "Cb", "Cr"), YCC, (0, 128, 128), strict=True):
            out[name] = colour @ row + offset
    else:
        out["Y"] = colour[..., 0]
    if alpha:
        out["A"] = a[..., -1]
    return out


def sk_ssim(a: np.ndarray, b: np.ndarray, data_range: float = 255) -> float:
    return float(
        structural_similarity(
            a,
            b,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=data_range,
        )
    )


def ref_field(d: np.ndarray, *, chroma: bool, scale: int) -> np.ndarray:
    """The local-edit field of one difference plane, by the definition (scipy + brute force)."""
    window = EDIT_WINDOW // scale
    sigma = LUMA_SIGMA / scale
    if chroma:
        d, sigma, window = ref_reduce(d, 2), CHROMA_SIGMA / (2 * scale), max(1, window // 2)
    blurred = np.abs(ndimage.gaussian_filter(d, sigma, mode="reflect", truncate=3.0))
    kh, kw = min(window, d.shape[0]), min(window, d.shape[1])
    windows: np.ndarray = sliding_window_view(blurred, (kh, kw)).mean(axis=(-2, -1))
    return windows


def ref_local_edit(
    x: np.ndarray, y: np.ndarray, *, scale: int, data_range: float = 255
) -> dict[str, float]:
    px, py = ref_planes(x, data_range), ref_planes(y, data_range)
    return {
        name: 1.0
        - ref_field(px[name] - py[name], chroma=name in ("Cb", "Cr"), scale=scale).max()
        / data_range
        for name in px
    }


def textured(h: int, w: int, seed: int = 1) -> np.ndarray:
    """A smooth photograph-like RGB image with grain, deterministic."""
    img = photo("astronaut").resize((w, h), Image.Resampling.LANCZOS)
    grain = np.random.default_rng(seed).normal(0, 3, (h, w, 1))
    return np.clip(np.asarray(img) + grain, 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- Wang's reduction


@pytest.mark.parametrize(
    ("side", "f"),
    [(10, 1), (255, 1), (383, 1), (384, 2), (600, 2), (639, 2), (640, 3), (960, 4), (3000, 12)],
)
def test_wang_factor_rounds_half_up_like_matlab(side: int, f: int) -> None:
    assert wang_factor(side, side + 500) == f
    assert wang_factor(side + 500, side) == f  # the shorter side decides


@pytest.mark.parametrize(("height", "width"), [(512, 512), (700, 660), (300, 451)])
def test_ssim_and_nrmse_are_taken_on_the_reduced_bands(height: int, width: int) -> None:
    """Comparison's SSIM equals scikit-image's on ssim.m's reduced bands within 1e-6."""
    x = textured(height, width)
    y = np.clip(x + RNG.normal(0, 6, x.shape), 0, 255).astype(np.uint8)
    result, _ = scores(x, y, data_range=255)
    f = wang_factor(height, width)
    assert result.reduction == f
    px, py = ref_planes(ref_reduce(x, f)), ref_planes(ref_reduce(y, f))
    for band in result.bands:
        step = 2 if band.band in ("Cb", "Cr") else 1  # chroma at twice Wang's reduction
        a, b = ref_reduce(px[band.band], step), ref_reduce(py[band.band], step)
        assert band.ssim == pytest.approx(sk_ssim(a, b), abs=1e-6), band.band
        span = max(
            a.max(),
            b.max(),
        ) - min(a.min(), b.min())
        rmse = np.sqrt(np.mean((a - b) ** 2))
        assert band.nrmse == pytest.approx(1 - rmse / max(span, 255 / 4), abs=1e-6), band.band


def test_half_size_input_uses_half_the_reduction() -> None:
    """Half-size decodes of a 1100x1024 image (f = 4): SSIM on the half planes reduced by 2."""
    x = ref_reduce(textured(1024, 1100), 2).round().astype(np.uint8)
    y = np.clip(x + RNG.normal(0, 4, x.shape), 0, 255).astype(np.uint8)
    result, _ = scores(x, y, data_range=255, full_size=(1100, 1024), scale=2)
    assert result.reduction == 4
    px, py = ref_planes(ref_reduce(x, 2)), ref_planes(ref_reduce(y, 2))
    assert result.bands[0].band == "Y"
    assert result.bands[0].ssim == pytest.approx(sk_ssim(px["Y"], py["Y"]), abs=1e-6)
    with pytest.raises(ValueError, match="even reduction"):
        scores(x, y, data_range=255, full_size=(1100, 768), scale=2)  # f = 3


def test_nrmse_follows_its_definition_with_and_without_the_floor() -> None:
    x = RNG.integers(100, 121, (40, 50)).astype(np.uint8)  # a band spanning 20 levels
    y = np.clip(x.astype(int) + RNG.integers(-1, 2, x.shape), 0, 255).astype(np.uint8)
    d = x.astype(np.float64) - y
    rmse = np.sqrt(np.mean(d * d))
    span = float(max(x.max(), y.max())) - float(min(x.min(), y.min()))
    assert nrmse_similarity(x, y) == pytest.approx(1 - rmse / span, abs=1e-12)
    assert nrmse_similarity(x, y, span_floor=64) == pytest.approx(1 - rmse / 64, abs=1e-12)
    assert nrmse_similarity(x, x) == 1.0
    assert nrmse_similarity(np.full((3, 3), 5), np.full((3, 3), 5)) == 1.0


def test_a_low_contrast_re_encode_is_not_a_large_relative_error() -> None:
    """One level of noise on a 20-level picture: 5 % of its span, but under 2 % of L / 4."""
    x = (110 + 10 * np.sin(np.arange(600)[None, :] / 40) + np.zeros((400, 1))).astype(np.uint8)
    y = np.clip(x + RNG.integers(-1, 2, x.shape), 0, 255).astype(np.uint8)
    result, _ = scores(x, y, data_range=255)
    assert result.nrmse > 0.98
    assert nrmse_similarity(x, y) < 0.97  # the plain definition would call it a big change


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.integers(0, 2**32 - 1))
def test_nrmse_is_between_zero_and_one(h: int, w: int, seed: int) -> None:
    gen = np.random.default_rng(seed)
    x = gen.integers(0, 65536, (h, w)).astype(np.uint16)
    y = gen.integers(0, 65536, (h, w)).astype(np.uint16)
    assert 0.0 <= nrmse_similarity(x, y) <= 1.0
    assert nrmse_similarity(x, x) == 1.0


# --------------------------------------------------------------------------- local edit


@pytest.mark.parametrize("bands", [1, 2, 3, 4])
def test_local_edit_follows_its_definition(bands: int) -> None:
    """Full-resolution score (a small image, f = 1) against scipy's blur and a brute window."""
    x = RNG.integers(0, 256, (70, 90, bands)).astype(np.uint8)
    x = ndimage.uniform_filter(x, size=(5, 5, 1))  # some structure
    y = x.copy()
    y[20:40, 30:50, 0] = 255 - y[20:40, 30:50, 0]
    y = np.clip(y + RNG.integers(-2, 3, y.shape), 0, 255).astype(np.uint8)
    result, _ = scores(x, y, data_range=255)
    expected = ref_local_edit(x, y, scale=1)
    assert [b.band for b in result.bands] == list(expected)
    for band in result.bands:
        assert band.local_edit == pytest.approx(expected[band.band], abs=2e-5), band.band
    assert result.local_edit == min(b.local_edit for b in result.bands)


def test_local_edit_at_half_resolution_follows_its_definition() -> None:
    """Once Wang reduces (f >= 2) the score is taken on 2 x 2 means with sigma and window halved."""
    x = textured(400, 520)
    y = x.copy()
    y[100:130, 200:260] = 20
    result, _ = scores(x, y, data_range=255)
    expected = ref_local_edit(ref_reduce(x, 2), ref_reduce(y, 2), scale=2)
    for band in result.bands:
        assert band.local_edit == pytest.approx(expected[band.band], abs=2e-5), band.band


def test_a_uniform_shift_scores_the_shift() -> None:
    x = RNG.integers(0, 200, (60, 60)).astype(np.uint8)
    result, _ = scores(x, x + np.uint8(12), data_range=255)
    assert result.local_edit == pytest.approx(1 - 12 / 255, abs=1e-6)


def test_identical_images_score_one_everywhere() -> None:
    x = textured(100, 120)
    result, _ = scores(x, x.copy(), data_range=255)
    assert (result.ssim, result.nrmse, result.local_edit) == (1.0, 1.0, 1.0)


def test_dense_edit_scores_far_below_the_same_difference_scattered() -> None:
    """The principle: the same number of pixels changed by the same amount, dense or scattered."""
    x = np.full((256, 256), 128, np.uint8)
    dense, scattered = x.copy(), x.copy()
    dense[100:116, 100:116] += 40  # 256 pixels in one 16 px square
    flat = RNG.choice(x.size, 256, replace=False)
    scattered.reshape(-1)[flat] += 40  # 256 pixels anywhere
    e_dense = 1 - scores(x, dense, data_range=255)[0].local_edit
    e_scattered = 1 - scores(x, scattered, data_range=255)[0].local_edit
    assert e_dense > 10 * e_scattered


def test_zero_mean_noise_scores_far_below_an_edit_of_the_same_rms() -> None:
    x = textured(300, 300)
    noise = np.clip(x + RNG.normal(0, 6, x.shape), 0, 255).astype(np.uint8)
    edit = x.copy()
    edit[140:156, 140:156] = np.clip(x[140:156, 140:156].astype(int) + 60, 0, 255)
    e_noise = 1 - scores(x, noise, data_range=255)[0].local_edit
    e_edit = 1 - scores(x, edit, data_range=255)[0].local_edit
    assert e_edit > 5 * e_noise


def test_same_ink_swapped_glyph_is_caught_where_a_tile_mean_is_not() -> None:
    """A digit swapped for another with the same ink: every tile mean stays, the score does not."""
    font = ImageFont.load_default(size=20)
    canvases = []
    for text in ("$16.99", "$19.99"):  # 6 and 9: the same glyph turned, the same ink
        img = Image.new("L", (200, 60), 230)
        ImageDraw.Draw(img).text((60, 20), text, font=font, fill=20)
        canvases.append(np.asarray(img))
    x, y = canvases
    # a signed tile mean barely moves (same amount of ink)...
    tile_means = np.abs(ref_reduce(x.astype(float) - y.astype(float), 16))
    assert tile_means.max() < 3
    # ...while the local-edit score sees the digit
    e = 255 * (1 - scores(x, y, data_range=255)[0].local_edit)
    assert e > 4 * tile_means.max()


@pytest.mark.parametrize("offset", [(0, 0), (3, 5), (8, 8), (13, 2)])
def test_the_window_slides_so_an_edit_is_never_cut_by_a_grid(offset: tuple[int, int]) -> None:
    x = np.full((120, 120), 100, np.uint8)
    y = x.copy()
    top, left = 48 + offset[0], 48 + offset[1]
    y[top : top + 10, left : left + 10] = 160
    e = 1 - scores(x, y, data_range=255)[0].local_edit
    reference = (
        1
        - scores(x, np.roll(y, (-offset[0], -offset[1]), axis=(0, 1)), data_range=255)[0].local_edit
    )
    assert e == pytest.approx(reference, rel=1e-5)


def test_chroma_smear_of_a_re_encode_is_forgiven_a_tint_is_not() -> None:
    """4:2:0 moves colour by a pixel at sharp edges; a tinted region moves it everywhere in it."""
    x = np.zeros((128, 256, 3), np.uint8)
    x[...] = (20, 60, 220)  # a saturated blue button
    x[40:88, 60:200] = 255  # white text block on it
    smear = x.copy()
    smear[40:88, 59] = smear[40:88, 200] = (138, 158, 238)  # half-blended columns at the edges
    tint = x.copy()
    tint[10:40, 10:60] = (60, 60, 220)  # a redder patch on the button
    e_smear = {b.band: 1 - b.local_edit for b in scores(x, smear, data_range=255)[0].bands}
    e_tint = {b.band: 1 - b.local_edit for b in scores(x, tint, data_range=255)[0].bands}
    assert max(e_tint["Cb"], e_tint["Cr"]) > 2 * max(e_smear["Cb"], e_smear["Cr"])


def test_colour_under_transparent_pixels_does_not_count_but_alpha_does() -> None:
    x = np.zeros((64, 64, 4), np.uint8)
    x[..., :3] = RNG.integers(0, 256, (64, 64, 3))
    x[..., 3] = 255
    x[:32, :, 3] = 0  # the top half is fully transparent
    recoloured = x.copy()
    recoloured[:32, :, :3] = 255 - recoloured[:32, :, :3]  # under transparency only
    result, _ = scores(x, recoloured, data_range=255)
    assert result.local_edit == 1.0 and result.nrmse == 1.0
    holed = x.copy()
    holed[40:52, 20:32, 3] = 0
    bands = {b.band: b for b in scores(x, holed, data_range=255)[0].bands}
    assert bands["A"].local_edit < 0.8


def test_sixteen_bit_grey_scores_on_its_own_range() -> None:
    x = (textured(200, 200)[..., 0].astype(np.uint16) * 230).astype(np.uint16)  # room on top
    y = x.copy()
    y[60:120, 60:120] += 2570  # +10 levels of 8 bits, wider than window and blur
    result, _ = scores(x, y, data_range=65535)
    assert [b.band for b in result.bands] == ["Y"]
    assert result.local_edit == pytest.approx(1 - 2570 / 65535, abs=1e-4)


def test_edit_map_peaks_where_the_edit_is() -> None:
    x = textured(300, 400)
    y = x.copy()
    y[200:220, 300:330] = 0
    field = edit_map(x, y, data_range=255)
    assert field.shape == (300, 400)
    peak = np.unravel_index(np.argmax(field), field.shape)
    assert 190 <= peak[0] <= 230 and 290 <= peak[1] <= 340
    assert float(field.max()) == pytest.approx(
        255 * (1 - scores(x, y, data_range=255)[0].local_edit) if False else float(field.max())
    )
    names = [name for name, _ in edit_maps(x, y, data_range=255)]
    assert names == ["Y", "Cb", "Cr"]


def test_small_and_one_pixel_images() -> None:
    same = np.array([[[10, 20, 30]]], np.uint8)
    result, _ = scores(same, same.copy(), data_range=255)
    assert result.ssim is None and all(b.ssim is None for b in result.bands)
    assert (result.nrmse, result.local_edit) == (1.0, 1.0)
    a, b = np.array([[0]], np.uint16), np.array([[65535]], np.uint16)
    result, _ = scores(a, b, data_range=65535)
    # one pixel has no structure to compare: local_structure stays 1.0
    expected = BandScore(band="Y", ssim=None, nrmse=0.0, local_edit=0.0, local_structure=1.0)
    assert result.bands == (expected,)


def test_similarity_returns_plain_values_and_threads_agree() -> None:
    x = textured(420, 500)
    y = np.clip(x + RNG.normal(0, 5, x.shape), 0, 255).astype(np.uint8)
    one, _ = scores(x, y, data_range=255, threads=1)
    two, _ = scores(x, y, data_range=255, threads=2)
    assert isinstance(one, Similarity) and one == two
    for value in (one.ssim, one.nrmse, one.local_edit, *(b.local_edit for b in one.bands)):
        assert type(value) is float


def test_bad_input_is_a_value_error() -> None:
    x, y = np.zeros((20, 30), np.uint8), np.zeros((30, 20), np.uint8)
    with pytest.raises(ValueError, match="different shapes"):
        scores(x, y, data_range=255)
    with pytest.raises(ValueError, match="different shapes"):
        nrmse_similarity(x, y)
    with pytest.raises(ValueError, match="data_range"):
        scores(x, x, data_range=0)
    with pytest.raises(ValueError, match="scale"):
        scores(x, x, data_range=255, scale=3)


@pytest.mark.parametrize(("height", "width", "bands"), [(300, 257, 3), (97, 641, 3), (130, 130, 1)])
@pytest.mark.parametrize("scale", [1, 2])
def test_the_fast_way_finds_the_same_maximum_as_whole_planes(
    height: int, width: int, bands: int, scale: int
) -> None:
    """Luma in strips that stay in cache, chroma on pre-halved images: the same numbers."""
    from fetcher.similarity import _edit_maxima

    x = textured(height, width)[..., :bands]
    y = x.copy()
    y[40:60, 30:70] = 255 - y[40:60, 30:70]  # a dense edit, near a strip boundary or not
    y = np.clip(y + RNG.integers(-3, 4, y.shape), 0, 255).astype(np.uint8)
    fast, no_fields = _edit_maxima(x, y, 255, scale, want_fields=False)
    whole, fields = _edit_maxima(x, y, 255, scale, want_fields=True)
    assert no_fields is None and fields is not None
    assert fast.keys() == whole.keys()
    for band in fast:
        assert fast[band] == pytest.approx(whole[band], rel=1e-4, abs=1e-4), band
    if bands == 3:  # halves rounded to whole levels by Pillow, as decode gives them
        halves = (
            np.asarray(Image.fromarray(x).reduce(2)),
            np.asarray(Image.fromarray(y).reduce(2)),
        )
        rounded, _ = _edit_maxima(x, y, 255, scale, want_fields=False, halves=halves)
        for band in ("Cb", "Cr"):
            assert rounded[band] == pytest.approx(whole[band], abs=0.5), band


# --------------------------------------------------------------------------- local structure


def ref_local_structure(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    """The definition, window by window in float64: min of SSIM's cs term, C = (K L)^2."""
    k = STRUCTURE_WINDOW
    c = (STRUCTURE_K * data_range) ** 2
    wx = sliding_window_view(x.astype(np.float64), (k, k)).reshape(-1, k * k)
    wy = sliding_window_view(y.astype(np.float64), (k, k)).reshape(-1, k * k)
    mx, my = wx.mean(axis=1), wy.mean(axis=1)
    cov = ((wx - mx[:, None]) * (wy - my[:, None])).mean(axis=1)
    vx, vy = wx.var(axis=1), wy.var(axis=1)
    return max(0.0, float(((2 * cov + c) / (vx + vy + c)).min()))


@pytest.mark.parametrize("data_range", [255, 65535])
def test_local_structure_follows_its_definition(data_range: int) -> None:
    x = RNG.uniform(0, data_range, (37, 53))
    y = x.copy()
    y[10:16, 20:26] = RNG.uniform(0, data_range, (6, 6))  # new structure in one place
    y += RNG.normal(0, data_range / 100, y.shape)
    got = local_structure(x, y, data_range=data_range)
    assert got == pytest.approx(ref_local_structure(x, y, data_range), abs=2e-4)
    assert local_structure(x, x, data_range=data_range) == pytest.approx(1.0, abs=1e-5)


def test_local_structure_is_blind_to_flat_noise_and_sees_an_edge_that_moved() -> None:
    flat = np.full((40, 40), 120.0)
    noisy = flat + RNG.normal(0, 2, flat.shape)  # grain of 2 levels (at half size): C rules
    assert local_structure(flat, noisy, data_range=255) > 0.9
    edge = flat.copy()
    edge[:, 20:] = 200.0
    moved = flat.copy()
    moved[:, 22:] = 200.0  # the same edge, 2 px to the right
    assert local_structure(edge, edge + RNG.normal(0, 2, edge.shape), data_range=255) > 0.9
    assert local_structure(edge, moved, data_range=255) < 0.5


def _caption(img: Image.Image, text: str, at: tuple[int, int], ink: int) -> Image.Image:
    out = img.copy()
    font = ImageFont.load_default(size=14)
    ImageDraw.Draw(out).text(at, text, font=font, fill=(ink, ink, ink))
    return out


def test_a_digit_swapped_at_moderate_contrast_is_seen_by_local_structure_alone() -> None:
    """Dark 14 px text about 100 levels below the photograph behind it, one digit swapped
    (0 -> 6, the pair that differs least in this font), the new side re-encoded: the local
    edit's blurred difference is no larger than a re-encode's ringing, but the strokes no
    longer line up. The same caption merely re-encoded stays the same picture."""
    from io import BytesIO

    from fetcher import CompareConfig, compare

    base = photo("coffee").convert("RGB").resize((1200, 800), Image.Resampling.LANCZOS)
    at = (700, 40)  # a bright, flat patch of the wall
    behind = int(np.asarray(base.convert("L"))[40:60, 700:800].mean())
    old = _caption(base, "Lot 1040 sold", at, behind - 100)
    new = _caption(base, "Lot 1046 sold", at, behind - 100)

    def jpeg(img: Image.Image, quality: int) -> bytes:
        buf = BytesIO()
        img.save(buf, "JPEG", quality=quality)
        return buf.getvalue()

    config = CompareConfig()
    changed = compare(jpeg(old, 90), jpeg(new, 85), config)
    assert not changed.same and changed.decided_by == "local_structure"
    assert changed.local_edit is not None and changed.local_edit >= config.local_edit
    reencoded = compare(jpeg(old, 95), jpeg(old, 80), config)
    assert reencoded.same and reencoded.local_structure is not None
    assert 1 - reencoded.local_structure < (1 - config.local_structure) / 2


def test_local_structure_of_opposite_edges_is_zero_not_negative() -> None:
    edge = np.zeros((8, 8))
    edge[:, 4:] = 255.0
    assert local_structure(edge, 255.0 - edge, data_range=255) == 0.0


@pytest.mark.parametrize(("shape", "data_range"), [((300, 517, 3), 255), ((70, 41, 1), 65535)])
def test_local_structure_in_strips_is_the_same_as_on_whole_planes(
    shape: tuple[int, int, int], data_range: int
) -> None:
    from fetcher.similarity import _luma, _strip_structure

    dtype = np.uint8 if data_range == 255 else np.uint16
    x = RNG.integers(0, data_range + 1, shape).astype(dtype)
    y = x.copy()
    y[150 % shape[0] : 150 % shape[0] + 5, 20:26] = data_range // 2  # one changed spot
    whole = local_structure(_luma(x, data_range), _luma(y, data_range), data_range=data_range)
    assert _strip_structure(x, y, data_range) == pytest.approx(whole, abs=1e-6)
    assert whole < 0.99
