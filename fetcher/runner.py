"""Many URLs: the local runner (threads, forked compare workers) and the cluster runner."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from .config import Config
from .errors import ConfigError
from .http import Fetcher
from .ladder import Job, Outcome, _internal, run_job
from .report import Progress, Report, ReportWriter, Result
from .state import State, next_record
from .store import Destination
from .urllist import BadLine, Entry
from .visual import Budget

if TYPE_CHECKING:
    import requests

__all__ = ["BATCH", "CompareCrashed", "CpuPool", "cluster_executor", "run", "run_batch"]

#: Jobs per task sent to an outside executor (a Dask cluster): enough that the per-task
#: overhead (milliseconds) stays small next to the downloads, few enough to spread the work.
BATCH = 16

_T = TypeVar("_T")


def _worker_start() -> None:
    """In a compare worker: ignore Ctrl-C and SIGTERM, and exit once the run's process is gone.

    A run killed with SIGKILL cannot stop its workers, and they would wait on their
    task queue forever (each holds a copy of its write end): orphans that pile up. The
    parent is the run (fork) or the forkserver, which ends with the run.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the run decides when its workers stop
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.25)
        os._exit(1)

    threading.Thread(target=watch, name="fetcher-orphan-watch", daemon=True).start()


#: How worker processes are started once the run has threads (fork is unsafe then).
_RESTART_METHOD = (
    "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
)


class CpuPool:
    """Worker processes for the CPU-bound rungs (decoding and similarity).

    Those hold the GIL for much of their time, so threads give them little more than
    one core; processes give one compare per core. The workers are forked when the pool
    is made, before the run starts any thread of its own (``fork`` rather than
    ``spawn``: no re-import of the caller's ``__main__``, and a worker starts in
    milliseconds); they ignore SIGINT and SIGTERM (Ctrl-C reaches the whole process
    group, and an interrupted run still finishes its in-flight compares), and as
    children of this process their CPU time counts in its
    ``getrusage(RUSAGE_CHILDREN)``. A worker whose run has died (SIGKILL) exits by
    itself within a quarter of a second.

    A worker that dies (a decoder crash, the OOM killer) breaks the pool: it is rebuilt
    (from a forkserver, since the run has threads by then) and each compare that was in
    flight is tried once more, in a process of its own; a compare whose worker dies
    there too raises :class:`CompareCrashed` (its URL fails as ``internal``).
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._generation = 0
        self._closed = False
        self._pool = self._start("fork")

    def _start(self, method: str) -> cf.ProcessPoolExecutor:
        context = multiprocessing.get_context(method)
        pool = cf.ProcessPoolExecutor(self._size, mp_context=context, initializer=_worker_start)
        pool.submit(int).result()  # the first submit starts every worker
        return pool

    def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` in a worker process; its exception (e.g. DecodeError) is raised here."""
        with self._lock:
            pool, generation = self._pool, self._generation
        try:
            return pool.submit(fn, *args).result()
        except cf.process.BrokenProcessPool:
            self._rebuild(generation)
        # A worker died while this compare was in flight: its own, or another one's. Try it
        # once more in a process of its own, so that an image that kills its worker again
        # takes no other compare with it.
        context = multiprocessing.get_context(_RESTART_METHOD)
        with cf.ProcessPoolExecutor(1, mp_context=context, initializer=_worker_start) as alone:
            try:
                return alone.submit(fn, *args).result()
            except cf.process.BrokenProcessPool:
                raise CompareCrashed(
                    "the compare worker process died twice on this image (a decoder crash or"
                    " the OOM killer); the pool was rebuilt"
                ) from None

    def _rebuild(self, generation: int) -> None:
        with self._lock:
            if self._generation != generation or self._closed:
                return  # another thread rebuilt it already (or the run is ending)
            broken = self._pool
            self._pool = self._start(_RESTART_METHOD)
            self._generation += 1
        broken.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Stop the worker processes and wait for them."""
        with self._lock:
            self._closed = True
            pool = self._pool
        pool.shutdown(wait=True, cancel_futures=True)


_FETCHERS: dict[str, Fetcher] = {}
_FETCHERS_LOCK = threading.Lock()


def _worker_fetcher(config: Config) -> Fetcher:
    """This process's Fetcher for ``config``, made once (connections are reused across tasks)."""
    key = repr(config)
    with _FETCHERS_LOCK:
        fetcher = _FETCHERS.get(key)
        if fetcher is None:
            fetcher = Fetcher(config.http, per_host=config.sync.per_host)
            _FETCHERS[key] = fetcher
        return fetcher


def run_batch(jobs: Sequence[Job], config: Config) -> list[Outcome]:
    """Run ``jobs`` one after another in this process: the task an outside executor runs.

    Module-level and given only plain values, so it pickles to a Dask worker; the
    worker builds its own :class:`~fetcher.http.Fetcher` (kept per process and config)
    and never touches the state. The jobs of one batch share a host and run one at a
    time, so each batch in flight is one connection to that host.

    Parameters
    ----------
    jobs : sequence of Job
        The jobs, each with the state's record of its URL.
    config : Config
        The run's configuration.

    Returns
    -------
    list of Outcome
        One outcome per job, in order.
    """
    fetcher = _worker_fetcher(config)
    return [run_job(job, config, fetcher) for job in jobs]


#: For a LocalCluster: its scheduler and workers serve no HTTP page (no dashboard).
_NO_HTTP_PAGES: dict[str, list[str]] = {
    "distributed.scheduler.http.routes": [],
    "distributed.worker.http.routes": [],
}


@contextlib.contextmanager
def cluster_executor(scheduler: str) -> Iterator[cf.Executor]:
    """An executor on a Dask cluster: ``"local"`` starts one here, else a scheduler address.

    Parameters
    ----------
    scheduler : str
        ``"local"`` for a LocalCluster sized to this machine (worker processes,
        dashboard off, 127.0.0.1 only), or an address such as ``tcp://HOST:PORT``.

    Yields
    ------
    concurrent.futures.Executor
        The client's executor; the client (and a local cluster) close on exit.

    Raises
    ------
    ConfigError
        ``distributed`` is not installed, the address is not one, or the scheduler
        cannot be reached.
    """
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError(
            'a scheduler needs Dask distributed: pip install "distributed>=2023.1"'
        ) from None
    if scheduler != "local" and "://" not in scheduler:
        raise ConfigError(
            f'scheduler must be "local" or an address like tcp://HOST:PORT, got {scheduler!r}'
        )
    with contextlib.ExitStack() as stack:
        if scheduler == "local":
            stack.enter_context(dask.config.set(_NO_HTTP_PAGES))
            cluster = stack.enter_context(
                LocalCluster(  # type: ignore[no-untyped-call]
                    processes=True,
                    host="127.0.0.1",
                    # distributed always starts the scheduler's HTTP server (on 8787 by
                    # default, with cluster pages): a random loopback port, no dashboard,
                    # and no routes, so it serves nothing
                    dashboard_address="127.0.0.1:0",
                    scheduler_kwargs={"dashboard": False},
                )
            )
            address: Any = cluster
        else:
            address = scheduler
        try:
            client = stack.enter_context(
                Client(address, timeout="10s")  # type: ignore[no-untyped-call]
            )
        except OSError as exc:
            raise ConfigError(f"cannot reach Dask scheduler {scheduler}: {exc}") from None
        yield client.get_executor()


class _HeldInterrupts:
    """Defers Ctrl-C and SIGTERM while finished jobs are recorded (report line and state).

    A KeyboardInterrupt raised between a result's report line and its state record, or
    between taking a finished job off the pending set and recording it, would lose a
    write from the state or the report. Inside ``hold()`` a signal whose handler is a
    Python function is only noted; it is delivered when the outermost ``hold()`` ends.
    Only the main thread can install handlers; elsewhere this does nothing.
    """

    def __init__(self) -> None:
        self._saved: dict[int, Any] = {}
        self._depth = 0
        self._caught: tuple[int, FrameType | None] | None = None

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(signum)
            if callable(previous):
                self._saved[signum] = previous
                signal.signal(signum, self._handler)

    def uninstall(self) -> None:
        for signum, previous in self._saved.items():
            signal.signal(signum, previous)
        self._saved.clear()

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        if self._depth:
            self._caught = (signum, frame)
        else:
            self._saved[signum](signum, frame)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._caught is not None:
                (signum, frame), self._caught = self._caught, None
                self._saved[signum](signum, frame)  # e.g. raises KeyboardInterrupt


class CompareCrashed(RuntimeError):
    """A compare worker process died on the same image twice (a decoder crash, the OOM killer)."""


class _Recorder:
    """Records finished URLs in the report, the report file, the bar and the state.

    Ctrl-C and SIGTERM are held while one URL is recorded (see :class:`_HeldInterrupts`),
    so a URL is in both the report and the state, or in neither.
    """

    def __init__(
        self,
        state: State,
        report: Report,
        writer: ReportWriter | None,
        on_result: Callable[[Result], None] | None,
        *,
        progress: bool | Progress,
        dry_run: bool,
        thumbnails: int = 0,
    ) -> None:
        self.state = state
        self.report = report
        self.writer = writer
        self.on_result = on_result
        self.dry_run = dry_run
        self.bar = progress if isinstance(progress, Progress) else Progress(enabled=progress)
        self.held = _HeldInterrupts()
        # per outcome, how many more results may carry pictures
        self.pictures_left = {"new": thumbnails, "changed": thumbnails}

    def wants_pictures(self) -> bool:
        return any(left > 0 for left in self.pictures_left.values())

    def outcome(self, job: Job, outcome: Outcome) -> None:
        if outcome.result.reason == "interrupted":
            return  # cut short by the interrupt: neither decided nor recorded
        with self.held.hold():
            self.result(outcome.result)
            if outcome.remember and not self.dry_run:
                _remember(self.state, job, outcome)

    def result(self, result: Result) -> None:
        if result.visual is not None:  # the cap holds however many were made in flight
            if self.pictures_left.get(result.outcome, 0) > 0:
                self.pictures_left[result.outcome] -= 1
            else:
                result = dataclasses.replace(result, visual=None)
        with self.held.hold():
            self.report.add(result)
            if self.writer is not None:
                self.writer.write(result)
            self.bar.update(result)
            if self.on_result is not None:
                self.on_result(result)

    def bad_line(self, item: BadLine) -> None:
        self.result(
            Result(
                url=(item.text.split() or [""])[0],  # what the line has for a URL
                path="",
                outcome="failed",
                reason=item.error.reason,
                error=str(item.error),
                line=item.line,
            )
        )


def run(
    entries: Iterable[Entry | BadLine],
    dest: Destination,
    config: Config,
    state: State,
    report: Report,
    *,
    session: requests.Session | None,
    executor: cf.Executor | None,
    dry_run: bool,
    force: bool,
    writer: ReportWriter | None,
    on_result: Callable[[Result], None] | None,
    progress: bool | Progress,
    thumbnails: int = 0,
) -> None:
    """Take every entry down the ladder: locally (threads), or on ``executor`` in batches.

    The first ``thumbnails`` new and the first ``thumbnails`` changed results carry their pictures
    (``Result.visual``); locally no more are made, on a cluster a few in flight may be
    made and dropped.

    An interrupt (Ctrl-C, or SIGTERM turned into one by the CLI) marks the report
    interrupted; what finished is recorded in the report and the state before it returns.
    """
    recorder = _Recorder(
        state,
        report,
        writer,
        on_result,
        progress=progress,
        dry_run=dry_run,
        thumbnails=thumbnails,
    )
    recorder.held.install()
    try:
        jobs = _jobs(entries, str(dest.path), state, recorder, force=force, dry_run=dry_run)
        if executor is None:
            budget = Budget(thumbnails) if thumbnails > 0 else None
            _run_local(jobs, config, recorder, dest, session=session, budget=budget)
        else:
            _run_cluster(jobs, config, recorder, executor)
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        recorder.held.uninstall()
        recorder.bar.close()
        state.flush()


def _jobs(
    entries: Iterable[Entry | BadLine],
    dest: str,
    state: State,
    recorder: _Recorder,
    *,
    force: bool,
    dry_run: bool,
) -> Iterator[Job]:
    """The job of every usable entry; a bad line is recorded as failed on the way."""
    for item in entries:
        if isinstance(item, BadLine):
            recorder.bad_line(item)
        else:
            job = _job(item, dest, state, force=force, dry_run=dry_run)
            yield dataclasses.replace(job, thumbnails=True) if recorder.wants_pictures() else job


def _run_local(
    jobs: Iterator[Job],
    config: Config,
    recorder: _Recorder,
    root: Destination,
    *,
    session: requests.Session | None,
    budget: Budget | None = None,
) -> None:
    """Threads download (each its own libcurl handle), forked processes compare.

    Every job reads and writes through ``root``, the destination the run holds open.

    On an interrupt the fetcher is cancelled: transfers in flight end at once (their
    URLs are not recorded), writes and compares in flight finish and are recorded.
    """
    workers = config.sync.workers
    cpus = config.sync.compare_workers or os.cpu_count() or 1
    can_fork = "fork" in multiprocessing.get_all_start_methods()
    # forked first, before this run starts any thread of its own
    processes = CpuPool(cpus) if config.sync.processes and cpus > 1 and can_fork else None
    slots = threading.BoundedSemaphore(cpus)
    fetcher = Fetcher(config.http, session=session, per_host=config.sync.per_host)
    pool = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetcher")
    pending: dict[cf.Future[Outcome], Job] = {}
    try:
        try:
            for job in jobs:
                future = pool.submit(
                    run_job,
                    job,
                    config,
                    fetcher,
                    root=root,
                    compare_slots=slots,
                    processes=processes,
                    budget=budget,
                )
                pending[future] = job
                while len(pending) >= 2 * workers:
                    _drain(pending, recorder)
            while pending:
                _drain(pending, recorder)
        except KeyboardInterrupt:
            fetcher.cancel()
            for future in pending:
                future.cancel()
            with contextlib.suppress(KeyboardInterrupt):
                while pending:
                    _drain(pending, recorder)
            raise
    finally:
        fetcher.cancel()  # nothing is left to fetch; a lingering wait ends now
        pool.shutdown(wait=True, cancel_futures=True)
        fetcher.close()
        if processes is not None:
            processes.close()


def _drain(pending: dict[cf.Future[Outcome], Job], recorder: _Recorder) -> None:
    """Wait for at least one job to finish; record every finished one."""
    done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
    with recorder.held.hold():  # every finished job is recorded before an interrupt is raised
        for future in done:
            job = pending.pop(future)
            if future.cancelled():
                continue
            recorder.outcome(job, _outcome(future, job))


def _outcome(future: cf.Future[Outcome], job: Job) -> Outcome:
    try:
        return future.result()
    except Exception as exc:  # run_job isolates failures; this is a last line of defence
        return _internal(job, exc, time.monotonic())


def _run_cluster(
    jobs: Iterator[Job], config: Config, recorder: _Recorder, executor: cf.Executor
) -> None:
    """Batches of one host go to ``executor`` (:func:`run_batch`); this process records.

    On an interrupt, batches not finished are cancelled and not waited for (a batch
    running on a worker finishes its atomic writes there; the next run sees its files).
    """
    limit = config.sync.workers * 2
    batches = _Batches(config.sync.per_host, size=BATCH)
    pending: dict[cf.Future[list[Outcome]], list[Job]] = {}

    def submit(*, partial: bool) -> None:
        for batch in batches.ready(partial=partial):
            pending[executor.submit(run_batch, batch, config)] = batch

    def drain(*, block: bool = True) -> None:
        done, _ = cf.wait(pending, timeout=None if block else 0, return_when=cf.FIRST_COMPLETED)
        with recorder.held.hold():
            for future in done:
                batch = pending.pop(future)
                batches.done(batch)
                if not future.cancelled():
                    for job, outcome in zip(batch, _outcomes(future, batch), strict=True):
                        recorder.outcome(job, outcome)

    try:
        for job in jobs:
            batches.add(job)
            submit(partial=False)
            while len(pending) >= limit or batches.held > limit * BATCH:
                if not pending:  # many hosts, none with a full batch
                    submit(partial=True)
                    continue
                drain()
                submit(partial=False)
        submit(partial=True)
        while pending:
            drain()
            submit(partial=True)
    except KeyboardInterrupt:
        with contextlib.suppress(KeyboardInterrupt):
            drain(block=False)  # what has finished already is recorded
        for future in pending:
            future.cancel()
        raise


def _outcomes(future: cf.Future[list[Outcome]], batch: list[Job]) -> list[Outcome]:
    try:
        return future.result()
    except Exception as exc:  # the task itself failed (e.g. its worker was lost for good)
        return [_internal(job, exc, time.monotonic()) for job in batch]


class _Batches:
    """Jobs waiting to go to an outside executor, grouped by host.

    A batch holds up to ``size`` jobs of one host and runs them one at a time, so a
    host never has more than ``per_host`` batches (connections) in flight, across all
    the cluster's workers.
    """

    def __init__(self, per_host: int, *, size: int) -> None:
        self._per_host = per_host
        self._size = size
        self._waiting: dict[str, list[Job]] = {}
        self._in_flight: dict[str, int] = {}
        self.held = 0

    def add(self, job: Job) -> None:
        self._waiting.setdefault(_host(job.url), []).append(job)
        self.held += 1

    def ready(self, *, partial: bool) -> Iterator[list[Job]]:
        """Take the batches that may start now (full ones only unless ``partial``)."""
        for host, waiting in list(self._waiting.items()):
            while waiting and self._in_flight.get(host, 0) < self._per_host:
                if len(waiting) < self._size and not partial:
                    break
                batch, waiting[:] = waiting[: self._size], waiting[self._size :]
                self._in_flight[host] = self._in_flight.get(host, 0) + 1
                self.held -= len(batch)
                yield batch
            if not waiting:
                del self._waiting[host]

    def done(self, batch: list[Job]) -> None:
        host = _host(batch[0].url)
        self._in_flight[host] -= 1
        if not self._in_flight[host]:
            del self._in_flight[host]


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


def _job(entry: Entry, dest: str, state: State, *, force: bool, dry_run: bool) -> Job:
    """The job for an entry, with what the state knows of its URL (one look-up)."""
    return Job(
        url=entry.url,
        path=entry.path,
        dest=dest,
        line=entry.line,
        record=state.get(entry.url, entry.path),
        force=force,
        dry_run=dry_run,
    )


def _remember(state: State, job: Job, outcome: Outcome) -> None:
    """Record what a finished job leaves on disk (the coordinating thread only)."""
    result = outcome.result
    state.put(
        next_record(
            job.record,
            url=job.url,
            path=job.path,
            outcome=result.outcome,
            reason=result.reason,
            etag=outcome.etag,
            last_modified=outcome.last_modified,
            file=outcome.file,
            wrote=outcome.wrote,
            now=time.time(),
        )
    )
