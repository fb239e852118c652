"""Many URLs: the local runner (threads, forked compare workers) and the cluster runner."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests

from .config import Config
from .errors import ConfigError
from .http import Fetcher
from .ladder import Job, Outcome, run_job
from .report import Progress, Report, ReportWriter, Result
from .state import State, next_record
from .urllist import BadLine, Entry

__all__ = ["BATCH", "CpuPool", "cluster_executor", "run", "run_batch"]

#: Jobs per task sent to an outside executor (a Dask cluster): enough that the per-task
#: overhead (milliseconds) stays small next to the downloads, few enough to spread the work.
BATCH = 16

_T = TypeVar("_T")


def _worker_start(parent: int) -> None:
    """In a compare worker: ignore Ctrl-C, and exit as soon as the run's process is gone.

    A run killed with SIGKILL cannot stop its workers, and they would wait on their
    task queue forever (each holds a copy of its write end): orphans that pile up.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.25)
        os._exit(1)

    threading.Thread(target=watch, name="fetcher-orphan-watch", daemon=True).start()


class CpuPool:
    """Worker processes for the CPU-bound rungs (decoding and similarity).

    Those hold the GIL for much of their time, so threads give them little more than
    one core; processes give one compare per core. The workers are forked when the pool
    is made, before the run starts any thread of its own (``fork`` rather than
    ``spawn``: no re-import of the caller's ``__main__``, and a worker starts in
    milliseconds); they ignore SIGINT (Ctrl-C reaches the whole process group, and an
    interrupted run still finishes its in-flight compares), and as children of this
    process their CPU time counts in its ``getrusage(RUSAGE_CHILDREN)``. A worker whose
    run has died (SIGKILL) exits by itself within a quarter of a second.
    """

    def __init__(self, size: int) -> None:
        context = multiprocessing.get_context("fork")
        self._pool = cf.ProcessPoolExecutor(
            size, mp_context=context, initializer=_worker_start, initargs=(os.getpid(),)
        )
        self._pool.submit(int).result()  # with fork, the first submit starts every worker

    def run(self, fn: Callable[..., _T], *args: Any) -> _T:
        """``fn(*args)`` in a worker process; its exception (e.g. DecodeError) is raised here."""
        return self._pool.submit(fn, *args).result()

    def close(self) -> None:
        """Stop the worker processes and wait for them."""
        self._pool.shutdown(wait=True, cancel_futures=True)


_FETCHERS: dict[str, Fetcher] = {}
_FETCHERS_LOCK = threading.Lock()


def _worker_fetcher(config: Config) -> Fetcher:
    """This process's Fetcher for ``config``, made once (connections are reused across tasks)."""
    key = repr(config)
    with _FETCHERS_LOCK:
        fetcher = _FETCHERS.get(key)
        if fetcher is None:
            fetcher = Fetcher(
                config.http, pool_size=config.sync.workers, per_host=config.sync.per_host
            )
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
        from distributed import Client, LocalCluster
    except ImportError:
        raise ConfigError(
            'a scheduler needs Dask distributed: pip install "fetcher[dask]"'
        ) from None
    if scheduler != "local" and "://" not in scheduler:
        raise ConfigError(
            f'scheduler must be "local" or an address like tcp://HOST:PORT, got {scheduler!r}'
        )
    with contextlib.ExitStack() as stack:
        if scheduler == "local":
            cluster = stack.enter_context(
                LocalCluster(  # type: ignore[no-untyped-call]
                    processes=True, dashboard_address=None, host="127.0.0.1"
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


def run(
    entries: Iterable[Entry | BadLine],
    dest: Path,
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
    progress: bool,
) -> None:
    workers = config.sync.workers
    cpus = config.sync.compare_workers or os.cpu_count() or 1
    compare_slots = threading.BoundedSemaphore(cpus)
    own_pool = executor is None
    # With our own thread pool (downloads), compares go to processes, forked first,
    # before this run starts any thread.
    can_fork = "fork" in multiprocessing.get_all_start_methods()
    use_processes = config.sync.processes and own_pool and cpus > 1 and can_fork
    processes = CpuPool(cpus) if use_processes else None
    bar = Progress(enabled=progress)
    pool = executor or cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fetcher")
    # With an outside executor (a Dask cluster) jobs travel in batches of one host to
    # run_batch, which builds its own Fetcher where it runs; this one is then unused.
    fetcher = Fetcher(
        config.http, session=session, pool_size=workers, per_host=config.sync.per_host
    )
    pending: set[cf.Future[Any]] = set()
    jobs: dict[cf.Future[Any], list[Job]] = {}
    limit = workers * 2
    batches = _Batches(config.sync.per_host, size=BATCH)

    held = _HeldInterrupts()
    dest_text = str(dest)

    def finish(result: Result, job: Job | None, outcome: Outcome | None) -> None:
        with held.hold():
            report.add(result)
            if writer is not None:
                writer.write(result)
            bar.update(result)
            if on_result is not None:
                on_result(result)
            if job is not None and outcome is not None and outcome.remember and not dry_run:
                _remember(state, job, outcome)

    def drain(block: bool) -> None:
        if not pending:
            return
        done, _ = cf.wait(pending, timeout=None if block else 0, return_when=cf.FIRST_COMPLETED)
        with held.hold():  # every finished job is recorded before an interrupt is raised
            for future in done:
                pending.discard(future)
                batch = jobs.pop(future)
                outcomes = future.result()  # a bug in a worker propagates here
                if own_pool:
                    outcomes = [outcomes]
                else:
                    batches.done(batch)
                for job, outcome in zip(batch, outcomes, strict=True):
                    finish(outcome.result, job, outcome)

    def submit_batches(*, partial: bool) -> None:
        for batch in batches.ready(partial=partial):
            future = pool.submit(run_batch, batch, config)
            pending.add(future)
            jobs[future] = batch

    held.install()
    try:
        for item in entries:
            if isinstance(item, BadLine):
                finish(
                    Result(
                        url=(item.text.split() or [""])[0],  # what the line has for a URL
                        path="",
                        outcome="failed",
                        reason=item.error.reason,
                        error=str(item.error),
                        line=item.line,
                    ),
                    None,
                    None,
                )
                continue
            job = _job(item, dest_text, state, force=force, dry_run=dry_run)
            if not own_pool:
                batches.add(job)
                submit_batches(partial=False)
                while len(pending) >= limit or batches.held > limit * BATCH:
                    if not pending:  # many hosts, none with a full batch
                        submit_batches(partial=True)
                        continue
                    drain(block=True)
                    submit_batches(partial=False)
                continue
            future = pool.submit(
                run_job, job, config, fetcher, compare_slots=compare_slots, processes=processes
            )
            pending.add(future)
            jobs[future] = [job]
            while len(pending) >= limit:
                drain(block=True)
        submit_batches(partial=True)
        while pending:
            drain(block=True)
            submit_batches(partial=True)
    except KeyboardInterrupt:
        report.interrupted = True
        for future in pending:
            future.cancel()
        # in-flight jobs finish their atomic writes; record what they did
        for future in list(pending):
            if future.cancelled():
                pending.discard(future)
                jobs.pop(future, None)
        with contextlib.suppress(KeyboardInterrupt):
            while pending:
                drain(block=True)
    finally:
        held.uninstall()
        bar.close()
        state.flush()
        fetcher.close()
        if own_pool:
            pool.shutdown(wait=True, cancel_futures=True)
        if processes is not None:
            processes.close()


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
        record=state.get(entry.url),
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
