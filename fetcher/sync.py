"""The per-URL ladder and the run: sync_one() takes one URL down it, sync() runs a whole list."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import dataclasses
import hashlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

import requests

from .config import CompareConfig, Config
from .errors import ConfigError, FetcherError, StoreError, UrlError
from .http import Fetcher, Validators
from .report import Progress, Report, ReportWriter, Result
from .state import Record, State
from .store import (
    STATE_DIR,
    DestinationLock,
    FileInfo,
    atomic_write,
    clean_stale_temporaries,
    file_info,
    parse_http_date,
    read_file,
)
from .urls import BadLine, Entry, read_entries, safe_join, validate_url

if TYPE_CHECKING:  # numpy, scipy and Pillow are imported only when a download needs them
    from .compare import Comparison

__all__ = ["Job", "Outcome", "cluster_executor", "run_batch", "run_job", "sync", "sync_one"]

STATE_FILE = "state.sqlite3"

#: Jobs per task sent to an outside executor (a Dask cluster): enough that the per-task
#: overhead (milliseconds) stays small next to the downloads, few enough to spread the work.
BATCH = 16


@dataclass(frozen=True)
class Job:
    """One URL to take down the ladder: plain values only, so a job can travel to a worker.

    ``record`` is what the state knew of the URL. Where the job runs, its validators
    are sent and its digest settles rung 3 (without reading the file) only if the file
    on disk is still the one fetcher left (same path, size and mtime) and ``force`` is
    off; the path checks and that ``stat`` happen there too, in parallel, not in the
    thread that reads the list.
    """

    url: str
    path: str
    dest: str
    line: int = 0
    record: Record | None = None
    force: bool = False
    dry_run: bool = False


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


def run_job(
    job: Job,
    config: Config,
    fetcher: Fetcher,
    *,
    compare_slots: threading.Semaphore | None = None,
    processes: CpuPool | None = None,
) -> Outcome:
    """Take one URL down the ladder (rungs 1-7 of DESIGN.md) and write the file if needed.

    Rungs 4-7 (decoding both images and the similarity) run in ``processes`` when
    given, else in this thread under ``compare_slots``; the decode check of a new
    file (``pillow.verify``, a few milliseconds with the GIL released) always runs
    here under ``compare_slots``. Every
    :class:`~fetcher.errors.FetcherError` becomes a ``failed`` outcome with its reason;
    anything else is a bug and propagates.
    """
    started = time.monotonic()
    status: int | None = None
    try:
        target = safe_join(Path(job.dest), job.path)
        known = job.record
        if known is not None and (
            job.force or not known.describes(file_info(target), path=job.path)
        ):
            known = None
    except FetcherError as exc:  # the path is refused: what the state knows stays as it is
        return dataclasses.replace(_failed(job, exc, started), remember=False)
    try:
        validators = None
        if known is not None and (known.etag or known.last_modified):
            validators = Validators(etag=known.etag, last_modified=known.last_modified)
        response = fetcher.fetch(job.url, validators)
        status = response.status
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

        if response.not_modified:
            return done(dataclasses.replace(base, reason="not-modified"))
        body = response.body or b""
        base = dataclasses.replace(base, bytes=len(body))
        if known is not None and known.sha256 and hashlib.sha256(body).hexdigest() == known.sha256:
            # Rung 3 settled by the digest recorded for the file on disk: no read needed.
            return done(dataclasses.replace(base, reason="identical-bytes"))
        old = read_file(target)
        cfg = config.compare
        if old is None:
            # Rung 2: a new file must be a decodable image before it is written. The
            # check is cheap (a JPEG is decoded at 1/8 scale) and Pillow releases the
            # GIL while decoding, so it runs here rather than in a compare process.
            with compare_slots or contextlib.nullcontext():
                _decodes(body, cfg)
            result = dataclasses.replace(base, outcome="new", reason="new")
        elif old == body:
            result = dataclasses.replace(base, reason="identical-bytes")
        else:
            if processes is not None:
                verdict = processes.run(_compare, old, body, cfg)
            else:
                with compare_slots or contextlib.nullcontext():
                    verdict = _compare(old, body, cfg)
            result = dataclasses.replace(
                base,
                outcome="unchanged" if verdict.same else "changed",
                reason=verdict.reason,
                ssim=verdict.ssim,
                nrmse=verdict.nrmse,
                local_ssim=verdict.local_ssim,
                local_shift=verdict.local_shift,
                detail=verdict.detail,
            )
        if result.outcome == "unchanged":
            stat = file_info(target)
            info = None if stat is None else FileInfo(stat.size, stat.mtime_ns, _digest(old))
            return done(result, info)
        if job.dry_run:
            return done(result)
        mtime = None
        if config.sync.remote_time and response.last_modified:
            mtime = parse_http_date(response.last_modified)
        return done(result, atomic_write(target, body, mtime=mtime), wrote=True)
    except FetcherError as exc:
        return _failed(job, exc, started, status)


def _decodes(body: bytes, cfg: CompareConfig) -> None:
    """Rung 2: raise DecodeError unless every frame of ``body`` decodes."""
    from .pillow import verify

    verify(body, max_pixels=cfg.max_pixels, max_frames=cfg.max_frames)


def _compare(old: bytes, new: bytes, cfg: CompareConfig) -> Comparison:
    from .compare import compare

    return compare(old, new, cfg, threads=1)


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


def _digest(data: bytes | None) -> str:
    return "" if data is None else hashlib.sha256(data).hexdigest()


def sync_one(
    url: str,
    path: str | os.PathLike[str],
    config: Config | None = None,
    *,
    session: requests.Session | None = None,
    dry_run: bool = False,
) -> Result:
    """Bring one file in step with one URL; no state, no lock.

    Parameters
    ----------
    url : str
        An http(s) URL of an image.
    path : path-like
        The file to keep in step (its folder is created if missing).
    config : Config, optional
        Defaults when omitted.
    session : requests.Session, optional
        Your own session (cookies, auth, proxies, adapters); used as is and not closed.
    dry_run : bool
        Decide, but write nothing.

    Returns
    -------
    Result
        ``new``, ``changed``, ``unchanged`` or ``failed`` with its reason; failures
        are results, not exceptions.
    """
    config = config or Config()
    target = Path(path).absolute()
    job = Job(url=url, path=target.name, dest=str(target.parent), dry_run=dry_run)
    with Fetcher(config.http, session=session, pool_size=1, per_host=1) as fetcher:
        try:
            validate_url(url)
        except UrlError as exc:
            return _failed(job, exc, time.monotonic()).result
        return run_job(job, config, fetcher).result


def _as_line(item: str | Entry | tuple[str, str | None]) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, Entry):
        return f"{item.url} {item.path}"
    url, rel = item
    return f"{url} {rel}" if rel else url


def _entries(
    urls: Iterable[str | Entry | tuple[str, str | None]], layout: str
) -> Iterator[Entry | BadLine]:
    """Every item as a list line through the one parser (numbering, checks, duplicates)."""
    return read_entries((_as_line(item) for item in urls), layout=layout)


def sync(
    urls: Iterable[str | Entry | tuple[str, str | None]],
    dest: str | os.PathLike[str],
    config: Config | None = None,
    *,
    session: requests.Session | None = None,
    executor: cf.Executor | None = None,
    dry_run: bool = False,
    force: bool = False,
    writer: ReportWriter | None = None,
    on_result: Callable[[Result], None] | None = None,
    progress: bool = False,
) -> Report:
    """Mirror a URL list into ``dest``, writing only what changed.

    Parameters
    ----------
    urls : iterable
        List lines (``URL [PATH]``, comments and blanks allowed; e.g. an open
        file), :class:`~fetcher.urls.Entry` objects, or ``(url, path)`` pairs.
        Consumed lazily: a list of a million lines is never held whole.
    dest : path-like
        The destination folder (created if missing).
    config : Config, optional
        Defaults when omitted.
    session : requests.Session, optional
        Your own session, used by every worker and not closed.
    executor : concurrent.futures.Executor, optional
        Where jobs run; a thread pool of ``sync.workers`` by default, or a Dask
        cluster when ``sync.scheduler`` is set. Given one (e.g. a ``distributed``
        client's ``get_executor()``), jobs go to it in batches of one host through
        :func:`run_batch`, which must pickle to where it runs; the destination must
        be a path every worker shares. This call keeps the lock and the state.
    dry_run : bool
        Decide everything, write nothing (the state is not updated either).
    force : bool
        Ignore the stored validators: fetch every URL in full.
    writer : ReportWriter, optional
        Gets every result as it arrives (the JSON-lines report).
    on_result : callable, optional
        Called with every result in the coordinating thread.
    progress : bool
        Show a progress bar on stderr.

    Returns
    -------
    Report
        Counts per outcome and reason, the failures, bytes, time and exit status.

    Raises
    ------
    ValueError
        Both a session and an executor were given.
    LockError
        Another run holds the destination's lock.
    StoreError, StateError
        The destination or its state cannot be used.
    """
    config = config or Config()
    dest_path = Path(dest).absolute()
    try:
        dest_path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create destination {dest_path}: {exc.strerror or exc}") from None
    if executor is not None and session is not None:
        raise ValueError("a session cannot travel to an executor's workers: pass one or the other")
    outcome_report = Report(dry_run=dry_run)
    with contextlib.ExitStack() as stack:
        stack.enter_context(DestinationLock(dest_path))
        if executor is None and config.sync.scheduler:
            executor = stack.enter_context(cluster_executor(config.sync.scheduler))
        clean_stale_temporaries(dest_path)
        state_path = (
            Path(config.sync.state) if config.sync.state else dest_path / STATE_DIR / STATE_FILE
        )
        with State.open(state_path) as state:
            _run(
                urls,
                dest_path,
                config,
                state,
                outcome_report,
                session=session,
                executor=executor,
                dry_run=dry_run,
                force=force,
                writer=writer,
                on_result=on_result,
                progress=progress,
            )
    return outcome_report.finish()


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


def _run(
    urls: Iterable[str | Entry | tuple[str, str | None]],
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
        for item in _entries(urls, config.sync.layout):
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
    """Update the URL's record after a job (the coordinating thread only).

    A failure keeps what was known of the file and its validators; an ``unchanged``
    that did not look at the disk (304, or a digest match) keeps the recorded file
    and takes any new validators; everything else records the file as it is now.
    """
    result = outcome.result
    now = time.time()
    previous = job.record
    etag, last_modified = outcome.etag, outcome.last_modified
    info = outcome.file
    if result.outcome == "failed" or info is None:
        if previous is not None and previous.path == job.path:
            info = (
                FileInfo(previous.size, previous.mtime_ns, previous.sha256 or "")
                if previous.size is not None and previous.mtime_ns is not None
                else None
            )
            if result.outcome == "failed":
                etag, last_modified = previous.etag, previous.last_modified
            else:
                etag = etag or previous.etag
                last_modified = last_modified or previous.last_modified
        elif result.outcome == "failed":
            etag = last_modified = None
    changed = now if outcome.wrote else (previous.changed if previous else None)
    state.put(
        Record(
            url=job.url,
            path=job.path,
            etag=etag,
            last_modified=last_modified,
            size=info.size if info else None,
            mtime_ns=info.mtime_ns if info else None,
            sha256=(info.sha256 or None) if info else None,
            outcome=result.outcome,
            reason=result.reason,
            checked=now,
            changed=changed,
        )
    )
