"""One URL down the ladder: a :class:`Job` in, an :class:`Outcome` out, every failure isolated."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import threading
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .config import CompareConfig, Config
from .errors import FetcherError
from .history import History
from .http import Fetcher, Validators
from .report import Result
from .state import Record
from .store import Destination, FileInfo, parse_http_date

if TYPE_CHECKING:  # numpy, scipy and Pillow are imported only when a download needs them
    from collections.abc import Callable

    from .comparison import Comparison
    from .visual import Budget, Visual

__all__ = ["CompareRunner", "Job", "Outcome", "run_job"]

_T = TypeVar("_T")


class CompareRunner(Protocol):
    """Where rungs 4-7 run: e.g. :class:`fetcher.runner.CpuPool` (worker processes)."""

    def run(self, fn: Callable[..., _T], *args: Any) -> _T: ...


@dataclass(frozen=True)
class Job:
    """One URL to take down the ladder: plain values only, so a job can travel to a worker.

    ``record`` is what the state knew of the URL. Where the job runs, its validators
    are sent and its digest settles rung 3 (without reading the file) only if the file
    on disk is still the one fetcher left (same path, size and mtime) and ``force`` is
    off; the path checks and that ``stat`` happen there too, in parallel, not in the
    thread that reads the list. ``thumbnails``: a ``new`` or ``changed`` result carries
    its pictures (:class:`~fetcher.visual.Visual`), made before the write, while the
    run's picture budget lasts.
    """

    url: str
    path: str
    dest: str
    line: int = 0
    record: Record | None = None
    force: bool = False
    dry_run: bool = False
    thumbnails: bool = False


@dataclass(frozen=True)
class Outcome:
    """What a worker sends back: the result, and what the state should remember."""

    result: Result
    etag: str | None = None
    last_modified: str | None = None
    file: FileInfo | None = None  # the file on disk after this job (None: none, or unknown)
    wrote: bool = False
    remember: bool = True  # False: refused before any request (its path); state untouched


def _failed(job: Job, exc: FetcherError, started: float, status: int | None = None) -> Outcome:
    return Outcome(
        Result(
            url=job.url,
            path=job.path,
            outcome="failed",
            reason=exc.reason,
            http_status=getattr(exc, "status", None) or status,
            elapsed=time.monotonic() - started,
            error=str(exc),
            line=job.line,
        )
    )


def _internal(job: Job, exc: Exception, started: float) -> Outcome:
    """A failure nobody planned for (a bug, a library error): reason ``internal``."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return Outcome(
        Result(
            url=job.url,
            path=job.path,
            outcome="failed",
            reason="internal",
            elapsed=time.monotonic() - started,
            error=f"{type(exc).__name__}: {message}" if message else type(exc).__name__,
            line=job.line,
            traceback="".join(traceback.format_exception(exc)),
        ),
        remember=False,  # nothing is known: the state keeps what it had
    )


def run_job(
    job: Job,
    config: Config,
    fetcher: Fetcher,
    *,
    root: Destination | None = None,
    compare_slots: threading.Semaphore | None = None,
    processes: CompareRunner | None = None,
    budget: Budget | None = None,
) -> Outcome:
    """Take one URL down the ladder (rungs 1-7 of DESIGN.md) and write the file if needed.

    Every access to the file goes through ``root``, the destination held open by the
    run (:class:`~fetcher.store.Destination`); without one (a job on a cluster
    worker, ``sync_one``) the job opens ``job.dest`` itself, never creating it.
    Rungs 4-7 (decoding both images and the similarity) run in ``processes`` when
    given, else in this thread under ``compare_slots``; the decode check of a new
    file (``probe.verify``, a few milliseconds with the GIL released) always runs
    here under ``compare_slots``. Never raises (but for KeyboardInterrupt and the like):
    every :class:`~fetcher.errors.FetcherError` becomes a ``failed`` outcome with its
    reason, and any other exception a ``failed`` outcome with reason ``internal``
    (its type and message in ``error``, its traceback in ``Result.traceback``).
    With ``job.thumbnails``, a new or changed image gets its pictures made (where its
    compare ran) if ``budget`` (shared by the run's jobs) has one left.
    """
    started = time.monotonic()
    pool = _Pool(compare_slots, processes, budget)
    try:
        return _run_job(job, config, fetcher, root, pool, started)
    except Exception as exc:  # one URL never stops a run
        return _internal(job, exc, started)


def _run_job(
    job: Job,
    config: Config,
    fetcher: Fetcher,
    root: Destination | None,
    pool: _Pool,
    started: float,
) -> Outcome:
    opened: Destination | None = None
    try:
        try:
            if root is None:
                root = opened = Destination.open(job.dest, missing_ok=job.dry_run)
            known = job.record
            if known is not None and (
                job.force or not known.describes(root.stat(job.path), path=job.path)
            ):
                known = None
        except FetcherError as exc:  # the path is refused: what the state knows stays as it is
            return dataclasses.replace(_failed(job, exc, started), remember=False)
        return _descend(job, config, fetcher, root, known, started, pool)
    finally:
        if opened is not None:
            opened.close()


def _descend(
    job: Job,
    config: Config,
    fetcher: Fetcher,
    root: Destination,
    known: Record | None,
    started: float,
    pool: _Pool,
) -> Outcome:
    """Rungs 1-7 for a job whose path is safe; ``known`` is the record if it still applies."""
    status: int | None = None
    try:
        validators = None
        if known is not None and (known.etag or known.last_modified):
            validators = Validators(etag=known.etag, last_modified=known.last_modified)
        response = fetcher.fetch(job.url, validators, checked=True)
        status = response.status
        if response.not_modified:  # rung 1, the common case: built directly, it is cheap
            return Outcome(
                Result(
                    url=job.url,
                    path=job.path,
                    outcome="unchanged",
                    reason="not-modified",
                    http_status=status,
                    elapsed=time.monotonic() - started,
                    line=job.line,
                ),
                etag=response.etag,
                last_modified=response.last_modified,
            )
        base = Result(
            url=job.url,
            path=job.path,
            outcome="unchanged",
            reason="",
            http_status=status,
            line=job.line,
        )

        def done(result: Result, file: FileInfo | None = None, wrote: bool = False) -> Outcome:
            result = dataclasses.replace(result, elapsed=time.monotonic() - started)
            return Outcome(
                result,
                etag=response.etag,
                last_modified=response.last_modified,
                file=file,
                wrote=wrote,
            )

        body = response.body or b""
        base = dataclasses.replace(base, bytes=len(body))
        if known is not None and known.sha256 and hashlib.sha256(body).hexdigest() == known.sha256:
            # Rung 3 settled by the digest recorded for the file on disk: no read needed.
            return done(dataclasses.replace(base, reason="identical-bytes"))
        # The bytes compared and what the state will record of them come from one read.
        snapshot = root.read(job.path)
        old = None if snapshot is None else snapshot.data
        cfg = config.compare
        if old is None:
            # Rung 2: a new file must be a decodable image before it is written. The
            # check is cheap (a JPEG is decoded at 1/8 scale) and Pillow releases the
            # GIL while decoding, so it runs here rather than in a compare process.
            with pool.slot():
                _decodes(body, cfg)
            result = dataclasses.replace(base, outcome="new", reason="new")
            verdict = None
        elif old == body:
            result = dataclasses.replace(base, reason="identical-bytes")
        else:
            verdict = pool.run(_compare, old, body, cfg)
            result = dataclasses.replace(
                base,
                outcome="unchanged" if verdict.same else "changed",
                reason=verdict.reason,
                ssim=verdict.ssim,
                nrmse=verdict.nrmse,
                local_edit=verdict.local_edit,
                local_structure=verdict.local_structure,
                detail=verdict.detail,
            )
        if result.outcome == "unchanged":
            assert snapshot is not None
            return done(result, snapshot.info)
        if job.thumbnails and pool.may_picture(
            result.outcome
        ):  # now: the old image is gone after the write
            result = dataclasses.replace(result, visual=_pictures(pool, old, body, verdict, cfg))
        if job.dry_run:
            return done(result)
        mtime = None
        if config.sync.remote_time and response.last_modified:
            mtime = parse_http_date(response.last_modified)
        if config.sync.keep > 0 and old is not None:  # kept in DEST/.fetcher/history
            written = History(root, config.sync.keep).write(job.path, body, mtime=mtime)
        else:
            written = root.write(job.path, body, mtime=mtime)
        return done(result, written, wrote=True)
    except FetcherError as exc:
        return _failed(job, exc, started, status)


class _Pool:
    """Where a job's CPU-bound steps run: worker processes, or this thread under the slots."""

    def __init__(
        self,
        slots: threading.Semaphore | None,
        processes: CompareRunner | None,
        budget: Budget | None,
    ) -> None:
        self.slots = slots
        self.processes = processes
        self.budget = budget

    def slot(self) -> contextlib.AbstractContextManager[Any]:
        """Hold a compare slot in this thread (for work that stays here)."""
        return self.slots or contextlib.nullcontext()

    def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` in a worker process if there are any, else here under a slot."""
        if self.processes is not None:
            return self.processes.run(fn, *args)
        with self.slot():
            return fn(*args)

    def may_picture(self, outcome: str) -> bool:
        """Take one picture from the run's budget (always yes without one)."""
        return self.budget is None or self.budget.take(outcome)


def _pictures(
    pool: _Pool, old: bytes | None, new: bytes, verdict: Comparison | None, cfg: CompareConfig
) -> Visual:
    """The pictures of a new or changed image; never raises: the decision stands without them."""
    from .visual import Visual, change_visual, new_visual

    try:
        if old is None:
            with pool.slot():  # small, like the decode check: here, not in a process
                return new_visual(new, cfg)
        return pool.run(change_visual, old, new, cfg, verdict)
    except Exception as exc:
        return Visual(notes=(f"no pictures: {type(exc).__name__}: {exc}",))


def _decodes(body: bytes, cfg: CompareConfig) -> None:
    """Rung 2: raise DecodeError unless every frame of ``body`` decodes."""
    from .probe import verify

    verify(body, max_pixels=cfg.max_pixels, max_frames=cfg.max_frames)


def _compare(old: bytes, new: bytes, cfg: CompareConfig) -> Comparison:
    from .comparison import compare

    return compare(old, new, cfg, threads=1)
