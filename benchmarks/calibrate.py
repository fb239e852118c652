"""Calibration of the [compare] thresholds on the labelled set of real-photograph pairs.

Prints one row per pair (label, scores, decision) and, per metric, the
margins: how far the closest *same* pair sits above the threshold, and which
changed pairs the metric catches. Exits 1 if any pair is misclassified.

    python benchmarks/calibrate.py [--config FILE] [--only-errors]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from pairs import SAME, build_pairs  # noqa: E402

from fetcher.compare import Comparison, compare  # noqa: E402
from fetcher.config import load_config  # noqa: E402

METRICS = ("ssim", "nrmse", "local_shift", "local_ssim")


def _fmt(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.4f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="TOML config whose [compare] thresholds to check")
    parser.add_argument("--only-errors", action="store_true", help="print misclassified rows only")
    args = parser.parse_args(argv)
    cfg = load_config(args.config).compare
    start = time.perf_counter()
    rows: list[tuple[str, str, Comparison]] = []
    for pair in build_pairs():
        rows.append((pair.name, pair.label, compare(pair.old, pair.new, cfg)))
    elapsed = time.perf_counter() - start

    print(
        f"thresholds: ssim {cfg.ssim}, nrmse {cfg.nrmse}, local_shift {cfg.local_shift}, "
        f"local_ssim {cfg.local_ssim} (tile {cfg.tile})"
    )
    print(
        f"{'label':8} {'ssim':>6} {'nrmse':>6} {'shift':>6} {'l-ssim':>6}  {'decision':9} "
        f"{'reason':16} {'by':11} pair"
    )
    wrong = 0
    for name, label, c in rows:
        decision = "same" if c.same else "changed"
        ok = decision == label
        wrong += not ok
        if args.only_errors and ok:
            continue
        print(
            f"{label:8} {_fmt(c.ssim)} {_fmt(c.nrmse)} {_fmt(c.local_shift)} "
            f"{_fmt(c.local_ssim)}  {decision:9} {c.reason:16} {c.decided_by or '':11} "
            f"{name}{'' if ok else '   <-- WRONG'}"
        )

    print("\nmargins (threshold vs the labelled set):")
    scored = [(n, lab, c) for n, lab, c in rows if c.reason in ("similar", "dissimilar")]
    for metric in METRICS:
        limit = getattr(cfg, metric)
        same_vals = [
            (getattr(c, metric), n)
            for n, lab, c in scored
            if lab == SAME and getattr(c, metric) is not None
        ]
        caught = [
            n
            for n, lab, c in scored
            if lab != SAME and getattr(c, metric) is not None and getattr(c, metric) < limit
        ]
        lowest, who = min(same_vals)
        print(
            f"  {metric:11} threshold {limit:.4f}: lowest same pair {lowest:.4f} "
            f"(margin {lowest - limit:+.4f}, {who}); catches {len(caught)} changed pair(s)"
        )
    changed = [(n, c) for n, lab, c in scored if lab != SAME]
    closest = min(
        changed,
        key=lambda nc: max(
            getattr(cfg, m) - getattr(nc[1], m) for m in METRICS if getattr(nc[1], m) is not None
        ),
    )
    gap = max(
        getattr(cfg, m) - getattr(closest[1], m)
        for m in METRICS
        if getattr(closest[1], m) is not None
    )
    print(
        f"  closest changed pair: {closest[0]} (falls {gap:.4f} below its best-failing threshold)"
    )
    same_n = sum(lab == SAME for _, lab, _ in rows)
    print(
        f"\n{len(rows)} pairs ({same_n} same, {len(rows) - same_n} changed), "
        f"{len(rows) - wrong} correct, {wrong} wrong; {elapsed:.1f} s"
    )
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
