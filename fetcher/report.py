"""Results and reports: per-URL Result, counts and exit status, JSON lines, summary, progress."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

__all__ = [
    "OUTCOMES",
    "Progress",
    "Report",
    "ReportWriter",
    "Result",
    "format_bytes",
]

OUTCOMES = ("new", "changed", "unchanged", "failed")

#: Report fields, in the order DESIGN.md lists them, written for every URL.
REPORT_FIELDS = (
    "url",
    "path",
    "outcome",
    "reason",
    "http_status",
    "bytes",
    "ssim",
    "nrmse",
    "local_edit",
    "elapsed",
    "error",
    "detail",
    "line",
)


@dataclass(frozen=True)
class Result:
    """How one URL ended.

    Attributes
    ----------
    url : str
        The URL as listed.
    path : str
        Destination relative to the destination folder ('' when none could be derived).
    outcome : str
        ``new``, ``changed``, ``unchanged`` or ``failed``.
    reason : str
        The rung that decided (``not-modified``, ``identical-bytes``, ``similar``,
        ``dissimilar``, ``http-404``, ``not-an-image``, ...).
    http_status : int or None
        Status of the final response (None when no response arrived).
    bytes : int
        Body bytes received (0 for a 304).
    ssim, nrmse, local_edit : float or None
        Similarity scores when the similarity rung ran (see :mod:`fetcher.similarity`).
    elapsed : float
        Seconds spent on this URL.
    error : str or None
        One line naming the cause of a failure.
    detail : str or None
        Why the comparison decided as it did (e.g. the metric that fell short).
    line : int
        Line of the URL list (0 when not from a list).
    traceback : str or None
        For reason ``internal`` only: the traceback (printed by ``-v``; not in the report).
    """

    url: str
    path: str
    outcome: str
    reason: str
    http_status: int | None = None
    bytes: int = 0
    ssim: float | None = None
    nrmse: float | None = None
    local_edit: float | None = None
    elapsed: float = 0.0
    error: str | None = None
    detail: str | None = None
    line: int = 0
    traceback: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, not {self.outcome!r}")

    @property
    def ok(self) -> bool:
        """True unless the URL failed."""
        return self.outcome != "failed"

    def to_dict(self) -> dict[str, Any]:
        """The report record: every field of DESIGN.md's report format."""
        out = dataclasses.asdict(self)
        out["elapsed"] = round(self.elapsed, 4)
        return {key: out[key] for key in REPORT_FIELDS}


@dataclass
class Report:
    """Counts of a run; a failed result list; the exit status.

    Memory stays bounded by the number of failures, not the length of the list:
    every result is counted, only failures are kept.
    """

    counts: Counter[str] = field(default_factory=Counter)
    reasons: dict[str, Counter[str]] = field(default_factory=dict)
    failures: list[Result] = field(default_factory=list)
    bytes: int = 0
    elapsed: float = 0.0
    interrupted: bool = False
    dry_run: bool = False
    _started: float = field(default_factory=time.monotonic, repr=False)

    def add(self, result: Result) -> None:
        """Count one result."""
        self.counts[result.outcome] += 1
        self.reasons.setdefault(result.outcome, Counter())[result.reason] += 1
        self.bytes += result.bytes
        if not result.ok:
            self.failures.append(result)

    def finish(self) -> Report:
        """Stop the clock."""
        self.elapsed = time.monotonic() - self._started
        return self

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def exit_code(self) -> int:
        """0 every URL ended new/changed/unchanged, 1 at least one failed, 130 interrupted."""
        if self.interrupted:
            return 130
        return 1 if self.counts["failed"] else 0

    def summary_line(self) -> str:
        """One line for cron: ``new 3, changed 1, unchanged 120 (not-modified 118, ...) ...``."""
        parts = []
        for outcome in OUTCOMES:
            text = f"{outcome} {self.counts[outcome]}"
            reasons = self.reasons.get(outcome)
            if reasons and outcome in ("unchanged", "failed"):
                text += " (" + ", ".join(f"{r} {n}" for r, n in reasons.most_common()) + ")"
            parts.append(text)
        line = ", ".join(parts) + f", {format_bytes(self.bytes)} in {self.elapsed:.1f} s"
        if self.dry_run:
            line += " (dry run: nothing written)"
        if self.interrupted:
            line += " (interrupted)"
        return line

    def summary_table(self) -> str:
        """A small table for a terminal: outcome, count, reasons."""
        rows = [("outcome", "count", "reasons")]
        for outcome in OUTCOMES:
            reasons = self.reasons.get(outcome, Counter())
            rows.append(
                (
                    outcome,
                    str(self.counts[outcome]),
                    ", ".join(f"{r} {n}" for r, n in reasons.most_common()),
                )
            )
        width0 = max(len(r[0]) for r in rows)
        width1 = max(len(r[1]) for r in rows)
        lines = [f"{a:<{width0}}  {b:>{width1}}  {c}".rstrip() for a, b, c in rows]
        tail = f"{self.total} URLs, {format_bytes(self.bytes)} in {self.elapsed:.1f} s"
        if self.dry_run:
            tail += " (dry run: nothing written)"
        if self.interrupted:
            tail += " (interrupted)"
        return "\n".join([*lines, tail])


def format_bytes(n: float) -> str:
    """``4.1 MB`` style (decimal units, as the summary line shows)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


class ReportWriter:
    """Writes one JSON object per result per line, flushed as it goes."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def write(self, result: Result) -> None:
        self.stream.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        self.stream.flush()

    def write_all(self, results: Iterable[Result]) -> None:
        for result in results:
            self.write(result)


class Progress:
    """A tqdm progress bar with counts per outcome (only when asked for: on a terminal)."""

    def __init__(self, *, enabled: bool, stream: IO[str] | None = None) -> None:
        self._bar: Any = None
        self._counts: Counter[str] = Counter()
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(unit="url", file=stream or sys.stderr, dynamic_ncols=True, leave=False)

    def update(self, result: Result) -> None:
        if self._bar is None:
            return
        self._counts[result.outcome] += 1
        self._bar.set_postfix_str(
            " ".join(f"{o} {self._counts[o]}" for o in OUTCOMES if self._counts[o]), refresh=False
        )
        self._bar.update(1)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
