"""Tests for fetcher.cli: the compare subcommand's exit codes, output, JSON and diff map."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import encode, gradient_rgb, photo
from PIL import Image, ImageDraw

from fetcher.cli import main

ROOT = Path(__file__).resolve().parent.parent
JSON_KEYS = {"same", "reason", "ssim", "nrmse", "local_edit", "decided_by", "bands"}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Files: a photo as PNG, its JPEG q90 re-encode, the photo with a box, and junk."""
    folder = tmp_path_factory.mktemp("cli")
    img = photo("chelsea")
    edited = img.copy()
    ImageDraw.Draw(edited).rectangle([150, 100, 199, 149], fill="black")
    files = {
        "png": encode(img, "PNG"),
        "jpeg": encode(img, "JPEG", quality=90),
        "edited": encode(edited, "PNG"),
        "small": encode(gradient_rgb(20, 10), "PNG"),
        "html": b"<!doctype html><title>404</title>",
    }
    paths = {}
    for name, data in files.items():
        paths[name] = folder / f"{name}.bin"
        paths[name].write_bytes(data)
    return paths


def run(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main(["compare", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("fetcher: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_compare_identical_file_exits_0(
    capsys: pytest.CaptureFixture[str], images: dict[str, Path]
) -> None:
    code, out, err = run(capsys, images["png"], images["png"])
    assert code == 0 and err == ""
    assert out.startswith("same (identical-bytes)")


def test_compare_similar_exits_0(
    capsys: pytest.CaptureFixture[str], images: dict[str, Path]
) -> None:
    code, out, err = run(capsys, images["png"], images["jpeg"])
    assert code == 0 and err == ""
    assert out.startswith("same (similar)") and "ssim" in out


def test_compare_changed_exits_1(
    capsys: pytest.CaptureFixture[str], images: dict[str, Path]
) -> None:
    code, out, err = run(capsys, images["png"], images["edited"])
    assert code == 1 and err == ""
    assert out.startswith("changed (dissimilar)")


def test_compare_dimensions_exits_1(
    capsys: pytest.CaptureFixture[str], images: dict[str, Path]
) -> None:
    code, out, _ = run(capsys, images["png"], images["small"])
    assert code == 1
    assert out.startswith("changed (dimensions)")


@pytest.mark.parametrize("side", ["old", "new"])
def test_compare_missing_file_exits_2(
    capsys: pytest.CaptureFixture[str], images: dict[str, Path], tmp_path: Path, side: str
) -> None:
    missing = tmp_path / "missing.png"
    args = (missing, images["png"]) if side == "old" else (images["png"], missing)
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert_one_line_error(err, "missing.png")


def test_compare_old_not_an_image_exits_2(
    capsys: pytest.CaptureFixture[str], images: dict[str, Path]
) -> None:
    code, out, err = run(capsys, images["html"], images["png"])
    assert code == 2 and out == ""
    assert_one_line_error(err, str(images["html"]))


def test_compare_new_not_an_image_exits_2(
    capsys: pytest.CaptureFixture[str], images: dict[str, Path]
) -> None:
    code, out, err = run(capsys, images["png"], images["html"])
    assert code == 2 and out == ""
    assert_one_line_error(err, str(images["html"]))  # which of the two files it is


def test_compare_bad_config_key_exits_2(
    capsys: pytest.CaptureFixture[str], images: dict[str, Path], tmp_path: Path
) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[compare]\nssim_threshold = 0.9\n")
    code, out, err = run(capsys, images["png"], images["jpeg"], "--config", cfg)
    assert code == 2 and out == ""
    assert_one_line_error(err, "compare.ssim_threshold")


def test_compare_bad_config_value_exits_2(
    capsys: pytest.CaptureFixture[str], images: dict[str, Path], tmp_path: Path
) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[compare]\nssim = 1.5\n")
    code, _, err = run(capsys, images["png"], images["jpeg"], "--config", cfg)
    assert code == 2
    assert_one_line_error(err, "compare.ssim")


def test_compare_config_thresholds_apply(
    capsys: pytest.CaptureFixture[str], images: dict[str, Path], tmp_path: Path
) -> None:
    strict = tmp_path / "strict.toml"
    strict.write_text("[compare]\nssim = 0.9999\n")
    code, out, _ = run(capsys, images["png"], images["jpeg"], "--config", strict, "--json")
    assert code == 1
    assert json.loads(out)["decided_by"] == "ssim"


def test_compare_json_keys(capsys: pytest.CaptureFixture[str], images: dict[str, Path]) -> None:
    code, out, err = run(capsys, images["png"], images["edited"], "--json")
    assert code == 1 and err == ""
    lines = out.strip().splitlines()
    assert len(lines) == 1
    verdict = json.loads(lines[0])
    assert set(verdict) >= JSON_KEYS
    assert verdict["same"] is False and verdict["reason"] == "dissimilar"
    assert verdict["decided_by"] in ("ssim", "nrmse", "local_edit")
    for key in ("ssim", "nrmse", "local_edit"):
        assert isinstance(verdict[key], float) and 0.0 <= verdict[key] <= 1.0


def test_compare_json_identical(
    capsys: pytest.CaptureFixture[str], images: dict[str, Path]
) -> None:
    code, out, _ = run(capsys, images["png"], images["png"], "--json")
    verdict = json.loads(out)
    assert code == 0 and set(verdict) >= JSON_KEYS
    assert verdict["same"] is True and verdict["reason"] == "identical-bytes"
    assert verdict["ssim"] is None and verdict["decided_by"] is None


def test_compare_diff_map(
    capsys: pytest.CaptureFixture[str], images: dict[str, Path], tmp_path: Path
) -> None:
    out_png = tmp_path / "diff.png"
    code, _, err = run(capsys, images["png"], images["edited"], "--diff-map", out_png)
    assert code == 1 and err == ""
    width, height = Image.open(images["png"]).size
    with Image.open(out_png) as heat:
        assert heat.format == "PNG"
        assert heat.size[0] == width and heat.size[1] > height  # the legend strip below
        rgb = np.asarray(heat.convert("RGB"))[:height].astype(np.int16)
    colour = np.abs(rgb[..., 0] - rgb[..., 1]) + np.abs(rgb[..., 1] - rgb[..., 2])
    # the box (150..199, 100..149) lights up in colour; the rest stays grey
    assert colour[95:155, 145:205].mean() > 5 * colour[:80, :].mean()
    assert colour[:80, :].mean() < 10


def test_compare_diff_map_not_written_without_similarity(
    capsys: pytest.CaptureFixture[str], images: dict[str, Path], tmp_path: Path
) -> None:
    out_png = tmp_path / "diff.png"
    code, _, err = run(capsys, images["png"], images["png"], "--diff-map", out_png)
    assert code == 0
    assert not out_png.exists()
    assert "no diff map" in err


def test_compare_diff_map_unwritable_exits_2(
    capsys: pytest.CaptureFixture[str], images: dict[str, Path], tmp_path: Path
) -> None:
    out_png = tmp_path / "no-such-folder" / "diff.png"
    code, _, err = run(capsys, images["png"], images["edited"], "--diff-map", out_png)
    assert code == 2
    assert_one_line_error(err, "diff.png")


def test_compare_python_m_fetcher(images: dict[str, Path]) -> None:
    def cli(*argv: object) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "fetcher", "compare", *map(str, argv)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )

    same = cli(images["png"], images["jpeg"], "--json")
    assert same.returncode == 0, same.stderr
    assert json.loads(same.stdout)["reason"] == "similar"
    changed = cli(images["png"], images["edited"])
    assert changed.returncode == 1 and changed.stdout.startswith("changed")
    trouble = cli(images["png"], images["html"])
    assert trouble.returncode == 2
    assert trouble.stdout == "" and "Traceback" not in trouble.stderr
    assert len(trouble.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("name", "fmt"), [("map.jpg", "JPEG"), ("map.webp", "WEBP"), ("map", "PNG")]
)
def test_compare_diff_map_is_written_in_the_format_its_name_asks_for(
    capsys: pytest.CaptureFixture[str], images: dict[str, Path], tmp_path: Path, name: str, fmt: str
) -> None:
    code, _, _ = run(capsys, images["png"], images["edited"], "--diff-map", tmp_path / name)
    assert code == 1
    with Image.open(tmp_path / name) as picture:
        assert picture.format == fmt
