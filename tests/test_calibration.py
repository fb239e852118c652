"""The calibrated [compare] defaults decide every labelled pair right, held-out half included.

The labelled set (``tests/pairs.py``) is scored once per test session by the code
``benchmarks/calibrate.py`` uses (every pair taken down to rung 7 with all thresholds at
0, so each score is known), in worker processes; the decisions under any thresholds
follow from the scores.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from pairs import SAME, all_pairs

from fetcher.comparison import METRICS
from fetcher.config import CompareConfig

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import calibrate

DEFAULTS = CompareConfig()


@pytest.fixture(scope="module")
def rows() -> list[calibrate.Row]:
    scored: list[calibrate.Row] = calibrate.score_all(all_pairs(), os.cpu_count() or 1)
    return scored  # the set is built once


def wrong(rows: list[calibrate.Row], cfg: CompareConfig) -> list[str]:
    return [
        f"{r.label} pair {r.name}: {r.reason} {r.scores}"
        for r in rows
        if r.same_under(cfg) != (r.label == SAME)
    ]


@pytest.mark.slow
def test_the_set_has_both_labels_in_both_halves(rows: list[calibrate.Row]) -> None:
    for half in calibrate.HALVES:
        labels = [r.label for r in rows if r.half == half]
        assert labels.count(SAME) >= 50 and len(labels) - labels.count(SAME) >= 80, half


@pytest.mark.slow
@pytest.mark.parametrize("half", calibrate.HALVES)
def test_the_defaults_decide_every_pair_right(rows: list[calibrate.Row], half: str) -> None:
    mistakes = wrong([r for r in rows if r.half == half], DEFAULTS)
    assert not mistakes, "\n".join(mistakes)


@pytest.mark.slow
def test_thresholds_derived_from_one_half_decide_the_other(rows: list[calibrate.Row]) -> None:
    """No fitting to the photographs: thresholds from the calibrate half alone hold out."""
    derived, _ = calibrate.derive([r for r in rows if r.half == "calibrate"])
    mistakes = wrong([r for r in rows if r.half == "holdout"], CompareConfig(**derived))
    assert not mistakes, "\n".join(mistakes)


@pytest.mark.slow
def test_the_defaults_are_the_calibrated_thresholds(rows: list[calibrate.Row]) -> None:
    derived, _ = calibrate.derive([r for r in rows if r.half == "calibrate"])
    for metric in METRICS:
        assert getattr(DEFAULTS, metric) == pytest.approx(derived[metric], abs=1e-3), metric


@pytest.mark.slow
def test_the_report_prints_margins_and_no_errors(
    rows: list[calibrate.Row], capsys: pytest.CaptureFixture[str]
) -> None:
    assert calibrate.report(rows, DEFAULTS, show_rows=False) == 0
    out = capsys.readouterr().out
    assert "0 wrong" in out and "WRONG" not in out
    for half in calibrate.HALVES:
        assert f"== {half} half" in out
    assert "margin" in out
