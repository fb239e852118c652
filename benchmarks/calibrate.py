"""Calibrate the [compare] thresholds on the labelled set, and check them on held-out photographs.

The labelled set (``tests/pairs.py``) is split by source photograph into two halves.
The thresholds are derived from the *calibrate* half only: for each score, the distance
from identity ``d = 1 - score``; a score's threshold sits at the geometric mean between
the farthest *same* pair and the closest *changed* pair that this score is the one to
catch (each changed pair is assigned to the score that sees it best, relative to how
far the same pairs reach on that score). The *holdout* half is then decided with the
thresholds in use (the defaults, or ``--config``), separately, so a threshold that only
fits the photographs it was derived from shows up as errors there.

For every score the margin is printed as the ratio between the closest changed pair it
catches and the farthest same pair, in distance: ``d(changed) / d(same)``; 2x or more
means the two classes sit a factor of two apart on that score.

    python benchmarks/calibrate.py [--config FILE] [--rows] [--jobs N]

Exit status 1 when any pair, in either half, is decided wrongly by the thresholds in use.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from pairs import SAME, Pair, build_pairs  # noqa: E402

from fetcher.comparison import METRICS, compare  # noqa: E402
from fetcher.config import CompareConfig, load_config  # noqa: E402

HALVES = ("calibrate", "holdout")


@dataclass(frozen=True)
class Row:
    """One pair's scores (distances from identity) and label."""

    name: str
    category: str
    half: str
    label: str
    reason: str
    scores: dict[str, float | None]

    def distance(self, metric: str) -> float | None:
        value = self.scores[metric]
        return None if value is None else 1.0 - value

    def same_under(self, cfg: CompareConfig) -> bool:
        if self.reason in ("identical-bytes", "identical-pixels"):
            return True
        if self.reason in ("dimensions", "frames", "disk-unreadable"):
            return False
        return all(
            value >= getattr(cfg, metric)
            for metric, value in self.scores.items()
            if value is not None
        )


def _score(pair: Pair) -> Row:
    nothing = CompareConfig(**dict.fromkeys(METRICS, 0.0))  # every score, no verdict
    c = compare(pair.old, pair.new, nothing, threads=1)
    from pairs import split_of

    return Row(
        name=pair.name,
        category=pair.category,
        half=split_of(pair.source),
        label=pair.label,
        reason=c.reason,
        scores={m: getattr(c, m) for m in METRICS},
    )


def score_all(pairs: Iterable[Pair], jobs: int) -> list[Row]:
    """Scores of every pair (thresholds do not matter here: all are taken down to rung 7)."""
    if jobs <= 1:
        return [_score(p) for p in pairs]
    with ProcessPoolExecutor(jobs) as pool:
        return list(pool.map(_score, pairs, chunksize=4))


def _scored(rows: Iterable[Row]) -> list[Row]:
    return [r for r in rows if r.reason in ("similar", "dissimilar")]


def derive(rows: list[Row]) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Thresholds from labelled rows, and per metric (farthest same, closest assigned changed)."""
    scored = _scored(rows)
    reach: dict[str, float] = {}
    for metric in METRICS:
        same = [r.distance(metric) for r in scored if r.label == SAME]
        reach[metric] = max((d for d in same if d is not None), default=0.0) or 1e-9
    assigned: dict[str, list[float]] = defaultdict(list)
    for row in scored:
        if row.label == SAME:
            continue
        ratios = {
            m: (row.distance(m) or 0.0) / reach[m] for m in METRICS if row.distance(m) is not None
        }
        best = max(ratios, key=lambda m: ratios[m])
        assigned[best].append(row.distance(best) or 0.0)
    thresholds: dict[str, float] = {}
    bounds: dict[str, tuple[float, float]] = {}
    for metric in METRICS:
        closest = min(assigned[metric], default=math.inf)
        bounds[metric] = (reach[metric], closest)
        if math.isfinite(closest) and closest > reach[metric]:
            thresholds[metric] = 1.0 - math.sqrt(reach[metric] * closest)
        else:  # catches nothing on its own (or cannot): only keep same pairs same
            thresholds[metric] = 1.0 - 2.0 * reach[metric]
    return thresholds, bounds


def margins(rows: list[Row], cfg: CompareConfig) -> dict[str, tuple[float, float, int]]:
    """Per metric under ``cfg``: farthest same distance, closest caught changed, pairs caught."""
    scored = _scored(rows)
    out = {}
    for metric in METRICS:
        limit = 1.0 - getattr(cfg, metric)
        same = [r.distance(metric) or 0.0 for r in scored if r.label == SAME]
        caught = [
            d
            for r in scored
            if r.label != SAME and (d := r.distance(metric)) is not None and d > limit
        ]
        out[metric] = (max(same, default=0.0), min(caught, default=math.inf), len(caught))
    return out


def _deciding(row: Row, cfg: CompareConfig) -> str:
    """The score that caught a changed pair (furthest past its threshold, relatively)."""
    if row.reason not in ("similar", "dissimilar"):
        return row.reason
    best, best_ratio = "-", 0.0
    for metric in METRICS:
        d = row.distance(metric)
        limit = 1.0 - getattr(cfg, metric)
        if d is not None and limit > 0 and d / limit > best_ratio:
            best, best_ratio = metric, d / limit
    return best


def _margin(changed: list[Row], reach: dict[str, float]) -> float:
    """The category's weakest pair, on the score that sees it best: d / farthest same d."""
    worst = math.inf
    for row in _scored(changed):
        best = max(
            ((row.distance(m) or 0.0) / reach[m] if reach[m] > 0 else math.inf) for m in METRICS
        )
        worst = min(worst, best)
    return worst


def _fmt(value: float | None) -> str:
    return "   -   " if value is None else f"{value:7.5f}"


def report(rows: list[Row], cfg: CompareConfig, *, show_rows: bool) -> int:
    """Print the decisions per half and category; return the number of wrong decisions."""
    wrong_total = 0
    for half in HALVES:
        part = [r for r in rows if r.half == half]
        wrong = [r for r in part if r.same_under(cfg) != (r.label == SAME)]
        wrong_total += len(wrong)
        n_same = sum(r.label == SAME for r in part)
        print(
            f"\n== {half} half: {len(part)} pairs ({n_same} same, {len(part) - n_same} changed), "
            f"{len(part) - len(wrong)} right, {len(wrong)} wrong"
        )
        by_category: dict[str, list[Row]] = defaultdict(list)
        for row in part:
            by_category[row.category].append(row)
        reach = {m: same for m, (same, _, _) in margins(part, cfg).items()}
        print(f"  {'label':7} {'pairs':>5} {'wrong':>5} {'margin':>7}  {'decided by':18} category")
        for category, members in sorted(
            by_category.items(), key=lambda kv: (kv[1][0].label, kv[0])
        ):
            bad = sum(r.same_under(cfg) != (r.label == SAME) for r in members)
            deciders = sorted({_deciding(r, cfg) for r in members if r.label != SAME}) or ["-"]
            margin = "" if members[0].label == SAME else f"{_margin(members, reach):6.1f}x"
            print(
                f"  {members[0].label:7} {len(members):5d} {bad:5d} {margin:>7}  "
                f"{','.join(deciders):18} {category}"
            )
        for row in wrong if not show_rows else part:
            verdict = "same" if row.same_under(cfg) else "changed"
            mark = "" if verdict == row.label else "   <-- WRONG"
            print(
                f"    {row.label:7} -> {verdict:7} {row.reason:16} "
                + " ".join(f"{m} {_fmt(row.scores[m])}" for m in METRICS)
                + f"  {row.name}{mark}"
            )
    return wrong_total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--config", help="TOML config whose [compare] thresholds to check")
    parser.add_argument("--rows", action="store_true", help="print every pair, not only errors")
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: cores)"
    )
    args = parser.parse_args(argv)
    cfg = load_config(args.config).compare
    started = time.perf_counter()
    rows = score_all(build_pairs(), args.jobs)
    elapsed = time.perf_counter() - started

    derived, bounds = derive([r for r in rows if r.half == "calibrate"])
    print(f"{len(rows)} pairs scored in {elapsed:.1f} s ({args.jobs} processes)")
    print("\nthresholds derived from the calibrate half (distance d = 1 - score):")
    for metric in METRICS:
        reach, closest = bounds[metric]
        ratio = closest / reach if reach > 0 else math.inf
        print(
            f"  {metric:10} farthest same d {reach:.5f}, closest changed it must catch "
            f"d {closest:.5f} ({ratio:.1f}x) -> threshold {derived[metric]:.4f}"
            f"   (in use: {getattr(cfg, metric)})"
        )
    print("\nmargins of the thresholds in use, per half (closest caught changed / farthest same):")
    for half in HALVES:
        part = [r for r in rows if r.half == half]
        for metric, (same, caught, n) in margins(part, cfg).items():
            ratio = caught / same if same > 0 else math.inf
            print(
                f"  {half:9} {metric:10} same reaches d {same:.5f}; catches {n:3d} changed, "
                f"closest d {caught:.5f}: {ratio:5.1f}x"
            )
    wrong = report(rows, cfg, show_rows=args.rows)
    print(f"\n{len(rows)} pairs, {len(rows) - wrong} right, {wrong} wrong")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
