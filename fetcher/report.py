"""Results and reports: per-URL Result, counts and exit status, JSON lines, summary, progress."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import stat
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from .errors import StoreError

if TYPE_CHECKING:
    from .visual import Visual

__all__ = [
    "OUTCOMES",
    "PathSpool",
    "Progress",
    "Report",
    "ReportFile",
    "ReportWriter",
    "Result",
    "format_bytes",
]

OUTCOMES = ("new", "changed", "unchanged", "failed", "deleted")
#: Outcomes the summary names even when none occurred (``deleted`` only with ``--delete``).
_ALWAYS_SHOWN = OUTCOMES[:4]

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
    "local_structure",
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
        ``new``, ``changed``, ``unchanged`` or ``failed``; ``deleted`` for a file that
        ``--delete`` removed (its URL is no longer listed: reason ``not-listed``).
    reason : str
        The rung that decided (``not-modified``, ``identical-bytes``, ``similar``,
        ``dissimilar``, ``http-404``, ``not-an-image``, ...).
    http_status : int or None
        Status of the final response (None when no response arrived).
    bytes : int
        Body bytes received (0 for a 304).
    ssim, nrmse, local_edit, local_structure : float or None
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
    visual : Visual or None
        Thumbnails of a ``new`` or ``changed`` image, when the run was asked for them
        (``sync(..., thumbnails=N)``, the HTML report); not in the JSON report.
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
    local_structure: float | None = None
    elapsed: float = 0.0
    error: str | None = None
    detail: str | None = None
    line: int = 0
    traceback: str | None = field(default=None, repr=False, compare=False)
    visual: Visual | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, not {self.outcome!r}")

    @property
    def ok(self) -> bool:
        """True unless the URL failed."""
        return self.outcome != "failed"

    def to_dict(self) -> dict[str, Any]:
        """The report record: every field of DESIGN.md's report format."""
        out = {key: getattr(self, key) for key in REPORT_FIELDS}
        out["elapsed"] = round(self.elapsed, 4)
        return out


class PathSpool:
    """The paths of one outcome, in the order they came, in bounded memory.

    The first ``FIRST`` stay in a list (for the summary table); all of them go, one
    JSON string a line, to a ``SpooledTemporaryFile`` that lives in memory up to
    ``MAX_MEMORY`` bytes and then moves to a temporary file on disk (deleted when the
    report is). A million changed paths thus cost about 256 KiB of memory, not 60 MB.
    """

    FIRST = 10
    MAX_MEMORY = 256 * 1024

    def __init__(self) -> None:
        self.first: list[str] = []
        self.count = 0
        self._file: IO[str] | None = None

    def add(self, path: str) -> None:
        if len(self.first) < self.FIRST:
            self.first.append(path)
        if self._file is None:
            self._file = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (lives with the report)
                max_size=self.MAX_MEMORY, mode="w+", encoding="utf-8"
            )
        self._file.write(json.dumps(path, ensure_ascii=False) + "\n")
        self.count += 1

    def __iter__(self) -> Iterator[str]:
        """Every path, in order (reads the spool from its start; adding may go on after)."""
        if self._file is None:
            return
        self._file.flush()
        self._file.seek(0)
        try:
            for line in self._file:
                yield json.loads(line)
        finally:
            self._file.seek(0, os.SEEK_END)


@dataclass
class Report:
    """Counts of a run; the new and changed paths; a failed result list; the exit status.

    Memory does not grow with the length of the list: every result is counted; the
    paths of ``new`` and ``changed`` results are kept in :class:`PathSpool` files
    (iterate :meth:`new_paths`, :meth:`changed_paths`); failures are kept whole.
    """

    counts: Counter[str] = field(default_factory=Counter)
    reasons: dict[str, Counter[str]] = field(default_factory=dict)
    failures: list[Result] = field(default_factory=list)
    bytes: int = 0
    elapsed: float = 0.0
    interrupted: bool = False
    dry_run: bool = False
    #: Files and bytes kept in ``DEST/.fetcher/history`` after the run (None: no history).
    history: tuple[int, int] | None = None
    #: With ``--delete``: why nothing was deleted this run (None: deleting went ahead).
    not_deleted: str | None = None
    _started: float = field(default_factory=time.monotonic, repr=False)
    _paths: dict[str, PathSpool] = field(
        default_factory=lambda: {"new": PathSpool(), "changed": PathSpool()},
        repr=False,
        compare=False,
    )

    def add(self, result: Result) -> None:
        """Count one result."""
        self.counts[result.outcome] += 1
        self.reasons.setdefault(result.outcome, Counter())[result.reason] += 1
        self.bytes += result.bytes
        if not result.ok:
            self.failures.append(result)
        elif result.outcome in self._paths:
            self._paths[result.outcome].add(result.path)

    def new_paths(self) -> Iterator[str]:
        """The path of every ``new`` result, in the order they finished."""
        return iter(self._paths["new"])

    def changed_paths(self) -> Iterator[str]:
        """The path of every ``changed`` result, in the order they finished."""
        return iter(self._paths["changed"])

    def finish(self) -> Report:
        """Stop the clock."""
        self.elapsed = time.monotonic() - self._started
        return self

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def exit_code(self) -> int:
        """0 every URL ended new/changed/unchanged (or deleted), 1 one failed, 130 interrupted."""
        if self.interrupted:
            return 130
        return 1 if self.counts["failed"] else 0

    def summary_line(self) -> str:
        """One line for cron: ``new 3, changed 1, unchanged 120 (not-modified 118, ...) ...``."""
        parts = []
        for outcome in self.shown_outcomes():
            text = f"{outcome} {self.counts[outcome]}"
            reasons = self.reasons.get(outcome)
            if reasons and outcome in ("unchanged", "failed"):
                text += " (" + ", ".join(f"{r} {n}" for r, n in reasons.most_common()) + ")"
            parts.append(text)
        line = ", ".join(parts) + f", {format_bytes(self.bytes)} in {self.elapsed:.1f} s"
        line += self._history_text()
        if self.dry_run:
            line += " (dry run: nothing written)"
        if self.interrupted:
            line += " (interrupted)"
        return line

    def summary_table(self) -> str:
        """A small table for a terminal: outcome, count, reasons."""
        rows = [("outcome", "count", "reasons")]
        for outcome in self.shown_outcomes():
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
        tail += self._history_text()
        if self.dry_run:
            tail += " (dry run: nothing written)"
        if self.interrupted:
            tail += " (interrupted)"
        return "\n".join([*lines, tail, *self._listing()])

    def _listing(self, show: int = 5) -> list[str]:
        """Which files changed and which are new: the first ``show`` of each, then a count."""
        lines = []
        for outcome in ("changed", "new"):
            spool = self._paths[outcome]
            if spool.count:
                lines.append(f"{outcome}:")
                lines += [f"  {path}" for path in spool.first[:show]]
                if spool.count > show:
                    lines.append(f"  … and {spool.count - show} more")
        return lines

    def shown_outcomes(self) -> tuple[str, ...]:
        """The outcomes a summary names: all but ``deleted``, and that one when it occurred."""
        return tuple(o for o in OUTCOMES if o in _ALWAYS_SHOWN or self.counts[o])

    def _history_text(self) -> str:
        if self.history is None:
            return ""
        files, size = self.history
        return f", history {files} file{'' if files == 1 else 's'} {format_bytes(size)}"


def format_bytes(n: float) -> str:
    """``4.1 MB`` style (decimal units, as the summary line shows)."""
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")  # pragma: no cover


class TextSink(Protocol):
    """What a report is written to: ``write`` and ``flush``, as a text stream has."""

    def write(self, text: str, /) -> int: ...

    def flush(self) -> None: ...


class ReportWriter:
    """Writes one JSON object per result per line to a stream, flushed as it goes.

    :func:`fetcher.sync` calls :meth:`start` once it holds the destination's lock,
    before the first :meth:`write`; the caller calls :meth:`close` after the run. For a
    stream both do nothing but flush: the stream stays the caller's.
    """

    def __init__(self, stream: TextSink) -> None:
        self.stream: TextSink = stream

    def start(self) -> None:
        """Get ready to write (the run holds the lock now)."""

    def write(self, result: Result) -> None:
        self.stream.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
        self.stream.flush()

    def write_all(self, results: Iterable[Result]) -> None:
        for result in results:
            self.write(result)

    def close(self) -> None:
        """Flush what was written."""
        self.stream.flush()


class ReportFile(ReportWriter):
    """A report file, written beside its final name and renamed into place at the end.

    Nothing touches ``path`` before :meth:`start`, which :func:`fetcher.sync` calls only
    once the destination is locked: a run locked out by another never opens, truncates
    or creates it. The lines go to a new file ``.NAME.XXXXXXXX.part`` in the same
    folder, flushed as they go (a killed run leaves whole lines there); :meth:`close`
    fsyncs it and renames it over ``path``, so a reader of ``path`` sees the whole
    previous report or the whole new one. A file already at ``path`` lends its
    permission bits to the new one.

    Parameters
    ----------
    path : path-like
        The report's final name.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._temp: Path | None = None

    @property
    def started(self) -> bool:
        return self._temp is not None

    def start(self) -> None:
        """Create the temporary file beside ``path``.

        Raises
        ------
        StoreError
            It cannot be created (a missing or read-only folder...), naming ``path``.
        """
        if self._temp is not None:
            return
        temp = self.path.with_name(f".{self.path.name}.{secrets.token_hex(4)}.part")
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            with contextlib.suppress(FileNotFoundError):
                os.fchmod(fd, stat.S_IMODE(os.stat(self.path).st_mode))
        except OSError as exc:
            raise StoreError(f"cannot write report {str(self.path)!r}: {exc.strerror}") from None
        self._file = open(fd, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())
        self.stream = self._file
        self._temp = temp

    def write(self, result: Result) -> None:
        if self._temp is None:
            self.start()
        super().write(result)

    def discard(self) -> None:
        """Remove what was written (if started); ``path`` is left as it was."""
        temp, self._temp = self._temp, None
        if temp is not None:
            self._file.close()
            with contextlib.suppress(OSError):
                os.unlink(temp)

    def close(self) -> None:
        """Put the report in place: fsync it and rename it over ``path`` (if started).

        Raises
        ------
        StoreError
            The report cannot be synced or renamed; the temporary file is removed and
            ``path`` is left as it was.
        """
        temp, self._temp = self._temp, None
        if temp is None:
            return
        try:
            try:
                self._file.flush()
                os.fsync(self._file.fileno())
            finally:
                self._file.close()
            os.replace(temp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise StoreError(f"cannot write report {str(self.path)!r}: {exc.strerror}") from None


class Progress:
    """A tqdm progress bar with counts per outcome (only when asked for: on a terminal).

    With ``total`` (the number of URLs, known when the list is a regular file) the bar
    shows how far the run is and when it should end. While the bar is shown, every
    other line must be printed through :func:`tqdm.tqdm.write` (which clears the bar,
    prints, and draws it again), or the line lands inside the bar's.
    """

    def __init__(
        self, *, enabled: bool, stream: IO[str] | None = None, total: int | None = None
    ) -> None:
        self._bar: Any = None
        self._counts: Counter[str] = Counter()
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(
                unit="url",
                file=stream or sys.stderr,
                dynamic_ncols=True,
                leave=False,
                total=total,
            )

    @property
    def enabled(self) -> bool:
        return self._bar is not None

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
