"""Tests for the calibrated [compare] defaults: every labelled pair is classified correctly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pairs import SAME, Pair, build_pairs

from fetcher.compare import compare
from fetcher.config import CompareConfig

ROOT = Path(__file__).resolve().parent.parent
PAIRS: dict[str, Pair] = {}
for _pair in build_pairs():
    assert _pair.name not in PAIRS, f"duplicate pair name {_pair.name!r}"
    PAIRS[_pair.name] = _pair


def test_the_labelled_set_has_both_labels_and_real_variety() -> None:
    labels = [p.label for p in PAIRS.values()]
    assert labels.count(SAME) >= 50
    assert len(labels) - labels.count(SAME) >= 50
    # no pair is a trivial byte copy: the similarity ladder has to decide
    assert all(p.old != p.new for p in PAIRS.values())


@pytest.mark.parametrize("name", list(PAIRS))
def test_default_thresholds_classify_pair(name: str) -> None:
    pair = PAIRS[name]
    result = compare(pair.old, pair.new, CompareConfig())
    decision = SAME if result.same else "changed"
    assert decision == pair.label, (
        f"{name}: labelled {pair.label}, decided {decision} ({result.reason}: {result.detail})"
    )


@pytest.mark.slow
def test_calibrate_script_reports_no_errors() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "calibrate.py"), "--only-errors"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert " 0 wrong" in proc.stdout
    assert "WRONG" not in proc.stdout
