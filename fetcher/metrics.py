"""``--metrics FILE``: a run's figures in Prometheus' text format, for node_exporter.

node_exporter's textfile collector reads every ``*.prom`` file of one folder
(``--collector.textfile.directory``) on each scrape, so the file must never be seen
half-written: it is written beside its name (``.NAME.XXXXXXXX.tmp``, which the
collector ignores), fsynced and renamed over it, then the folder is fsynced.

Every sample carries the label ``dest`` (the destination's absolute path), so several
fetcher jobs can write their files into the one folder the collector reads without
their series colliding. The figures (all gauges, describing the last run):

==========================================  =============================================
``fetcher_urls{outcome, reason}``            URLs per outcome and reason (those that occurred)
``fetcher_outcome_urls{outcome}``            URLs per outcome, every outcome (0 included)
``fetcher_received_bytes``                   body bytes received
``fetcher_run_duration_seconds``             how long the command ran
``fetcher_exit_status``                      its exit status (0, 1, 2, 130, 141)
``fetcher_dry_run``                          1 for a ``--dry-run``
``fetcher_run_timestamp_seconds``            when the run ended
``fetcher_last_success_timestamp_seconds``   when the last run with exit status 0 ended
``fetcher_history_files``, ``_bytes``        what ``DEST/.fetcher/history`` holds (with
                                             ``[sync] keep`` or a history)
==========================================  =============================================

The time of the last success is carried across runs in the metrics file itself: a run
that does not end with status 0 (or is a dry run) reads it back from the file it is
about to replace and writes it again, so a failed run, even one that could not open the
state or was locked out, never erases it. It is absent until a run has succeeded (an
alert on ``time() - fetcher_last_success_timestamp_seconds`` then also fires on a job
that never succeeded: ``absent(...)``).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import secrets
import stat
import time
from pathlib import Path

from .errors import StoreError
from .report import OUTCOMES, Report

__all__ = ["read_last_success", "record_run", "render", "write_metrics"]

_LAST_SUCCESS = "fetcher_last_success_timestamp_seconds"


def _label(value: str) -> str:
    """A label value as the text format writes it: backslash, quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(value)


class _Text:
    """The exposition text, one metric family at a time (HELP, TYPE, samples)."""

    def __init__(self, dest: str) -> None:
        self.dest = f'dest="{_label(dest)}"'
        self.lines: list[str] = []

    def gauge(self, name: str, help_text: str, samples: list[tuple[dict[str, str], float]]) -> None:
        self.lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
        for labels, value in samples:
            pairs = [self.dest, *(f'{k}="{_label(v)}"' for k, v in labels.items())]
            self.lines.append(f"{name}{{{','.join(pairs)}}} {_number(value)}")

    def one(self, name: str, help_text: str, value: float) -> None:
        self.gauge(name, help_text, [({}, value)])


def render(
    dest: str,
    report: Report | None,
    *,
    exit_status: int,
    duration: float,
    ended: float,
    last_success: float | None,
    dry_run: bool = False,
) -> str:
    """The metrics file's text for one run.

    Parameters
    ----------
    dest : str
        The destination's absolute path (the ``dest`` label).
    report : Report or None
        The run's report; None when nothing could run (exit status 2 before any URL).
    exit_status : int
        The command's exit status.
    duration : float
        Seconds the command ran.
    ended : float
        POSIX time the run ended.
    last_success : float or None
        When the last successful run ended (this one's ``ended`` if it succeeded).
    dry_run : bool
        The run was a dry run.
    """
    text = _Text(dest)
    counts = report.counts if report is not None else {}
    reasons = report.reasons if report is not None else {}
    text.gauge(
        "fetcher_urls",
        "URLs of the last run, by outcome and reason.",
        [
            ({"outcome": outcome, "reason": reason}, n)
            for outcome in OUTCOMES
            for reason, n in sorted(reasons.get(outcome, {}).items())
        ],
    )
    text.gauge(
        "fetcher_outcome_urls",
        "URLs of the last run, by outcome (every outcome, 0 included).",
        [({"outcome": outcome}, counts.get(outcome, 0)) for outcome in OUTCOMES],
    )
    received = report.bytes if report is not None else 0
    text.one("fetcher_received_bytes", "Body bytes received in the last run.", received)
    text.one("fetcher_run_duration_seconds", "How long the last run took.", round(duration, 3))
    text.one("fetcher_exit_status", "Exit status of the last run (0: every URL fine).", exit_status)
    text.one("fetcher_dry_run", "1 if the last run was a dry run.", int(dry_run))
    text.one("fetcher_run_timestamp_seconds", "When the last run ended.", round(ended, 3))
    if last_success is not None:
        help_text = "When the last run that ended with exit status 0 ended."
        text.one(_LAST_SUCCESS, help_text, round(last_success, 3))
    if report is not None and report.history is not None:
        files, size = report.history
        text.one("fetcher_history_files", "Old versions kept in DEST/.fetcher/history.", files)
        text.one("fetcher_history_bytes", "Bytes of the old versions kept.", size)
    return "\n".join(text.lines) + "\n"


def read_last_success(path: str | os.PathLike[str], dest: str) -> float | None:
    """The last success time that the metrics file at ``path`` holds for ``dest``, or None.

    A missing or unreadable file, or one written for another destination, holds none.
    """
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            content = handle.read(1 << 20)
    except OSError:
        return None
    wanted = re.compile(rf'^{_LAST_SUCCESS}\{{dest="{re.escape(_label(dest))}"\}} (\S+)$', re.M)
    found = wanted.search(content)
    if found is None:
        return None
    try:
        value = float(found[1])
    except ValueError:
        return None
    return value if math.isfinite(value) and value > 0 else None


def write_metrics(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically: a temporary file beside it, fsync, rename.

    The file gets the permission bits of the file it replaces, or ``0o666`` less the
    umask (node_exporter runs as another user: the file must stay readable to it).

    Raises
    ------
    StoreError
        The file cannot be written (the folder is missing or read-only...); ``path``
        is then as it was and no temporary file is left.
    """
    target = Path(path)
    temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.fchmod(fd, stat.S_IMODE(os.stat(target).st_mode))
            data = text.encode("utf-8")
            while data:
                data = data[os.write(fd, data) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
        folder = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with contextlib.suppress(OSError):
                os.fsync(folder)
        finally:
            os.close(folder)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise StoreError(
            f"cannot write metrics file {str(target)!r}: {exc.strerror or exc}", reason="io-error"
        ) from None


def record_run(
    path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    report: Report | None,
    *,
    exit_status: int,
    duration: float,
    dry_run: bool = False,
) -> str:
    """Write the metrics file of a run that just ended; return its text.

    The last success time is now if the run ended with status 0 (and was not a dry
    run), else what the file held before (:func:`read_last_success`).
    """
    ended = time.time()
    where = os.path.abspath(dest)
    if exit_status == 0 and not dry_run:
        last_success: float | None = ended
    else:
        last_success = read_last_success(path, where)
    text = render(
        where,
        report,
        exit_status=exit_status,
        duration=duration,
        ended=ended,
        last_success=last_success,
        dry_run=dry_run,
    )
    write_metrics(path, text)
    return text
