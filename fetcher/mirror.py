"""The public entry points: :func:`sync` mirrors a whole list, :func:`sync_one` one URL."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .config import Config
from .errors import FetcherError, ListError, StoreError
from .history import History
from .http import Fetcher
from .ladder import Job, _failed, _internal, run_job
from .paths import STATE_DIR
from .report import Progress, Report, ReportWriter, Result
from .runner import cluster_executor, run
from .stale import Listing, delete_unlisted
from .state import STATE_FILE, State
from .store import Destination, DestinationLock
from .urllist import BadLine, Entry, read_entries, validate_url

if TYPE_CHECKING:
    import requests

__all__ = ["sync", "sync_one"]


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
    started = time.monotonic()
    config = config or Config()
    job = Job(url=str(url), path=str(path), dest="", dry_run=dry_run)
    try:
        target = Path(path).absolute()
        job = Job(url=url, path=target.name, dest=str(target.parent), dry_run=dry_run)
        validate_url(url)
        if not dry_run:
            _make_folder(target.parent)
        with Fetcher(config.http, session=session, per_host=1) as fetcher:
            return run_job(job, config, fetcher).result
    except FetcherError as exc:
        return _failed(job, exc, started).result
    except Exception as exc:  # one URL: its failure is a result, never an exception
        return _internal(job, exc, started).result


def _make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(f"cannot create folder {str(folder)!r}: {exc.strerror or exc}") from None


#: What ``sync`` takes as one item of a list.
ListItem = str | bytes | Entry | tuple[str, str | None]
#: What ``sync`` takes as the list: a path to a list file, or the items themselves.
UrlList = str | bytes | os.PathLike[str] | os.PathLike[bytes] | Iterable[ListItem]


def _as_line(item: ListItem) -> str | bytes:
    if isinstance(item, (str, bytes)):
        return item
    if isinstance(item, Entry):
        return f"{item.url} {item.path}"
    url, rel = item
    return f"{url} {rel}" if rel else url


def _entries(urls: Iterable[ListItem], layout: str) -> Iterator[Entry | BadLine]:
    """Every item as a list line through the one parser (numbering, checks, duplicates)."""
    return read_entries((_as_line(item) for item in urls), layout=layout)


def _open_list(urls: UrlList, stack: contextlib.ExitStack) -> Iterable[ListItem]:
    """The list's items: a ``str``, ``bytes`` or path-like is a list file, opened here.

    The file is read in binary, one line at a time, each line decoded as UTF-8 on its
    own (a line that is not UTF-8 is a failed line naming the byte).

    Raises
    ------
    ListError
        The file cannot be opened (missing, a folder, not readable).
    """
    if not isinstance(urls, (str, bytes, os.PathLike)):
        return urls
    try:
        return stack.enter_context(open(urls, "rb"))
    except OSError as exc:
        name = os.fsdecode(urls)
        hint = ""
        if isinstance(urls, str) and "://" in urls:
            hint = f"; to mirror one URL, pass a list: sync([{urls!r}], ...)"
        raise ListError(f"cannot read URL list {name!r}: {exc.strerror or exc}{hint}") from None


def _while_in_place(
    entries: Iterator[Entry | BadLine], root: Destination
) -> Iterator[Entry | BadLine]:
    """The entries, as long as the destination is still where the run locked it.

    If the destination (or a folder above it) is removed or moved mid-run, the lock at
    its path keeps nobody out any more: a new run could lock a new folder there. The
    run stops before its next URL (``StoreError``, exit 2); writes already under way go
    through the held descriptor, so none re-creates the old path.
    """
    for entry in entries:
        root.check()
        yield entry


def sync(
    urls: UrlList,
    dest: str | os.PathLike[str],
    config: Config | None = None,
    *,
    session: requests.Session | None = None,
    executor: cf.Executor | None = None,
    dry_run: bool = False,
    force: bool = False,
    writer: ReportWriter | None = None,
    on_result: Callable[[Result], None] | None = None,
    progress: bool | Progress = False,
    thumbnails: int = 0,
    delete: bool = False,
) -> Report:
    """Mirror a URL list into ``dest``, writing only what changed.

    Parameters
    ----------
    urls : path-like or iterable
        The rule: a ``str``, ``bytes`` or ``os.PathLike`` is the **path of a list
        file** (never iterated as text; to pass one line, pass ``[line]``). Anything
        else is iterated for the list's items: lines (``URL [PATH]``, comments and
        blanks allowed; ``str``, or ``bytes`` that must be UTF-8; e.g. an open file),
        :class:`~fetcher.urllist.Entry` objects, or ``(url, path)`` pairs. Consumed
        lazily: a list of a million lines is never held whole.
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
        Decide everything, create and change nothing on disk: no destination, no
        ``DEST/.fetcher``, no state update (the state is read as last checkpointed), no
        sweep of temporary files, no pid in the lock file. If a lock file exists it is
        taken (a real run cannot start meanwhile); if none does, no run ever wrote here.
    force : bool
        Ignore the stored validators: fetch every URL in full.
    writer : ReportWriter, optional
        Gets every result as it arrives (the JSON-lines report).
    on_result : callable, optional
        Called with every result in the coordinating thread.
    progress : bool or Progress
        Show a progress bar on stderr; or the bar to update (e.g. one with a total).
    thumbnails : int
        The first this many ``new`` and as many ``changed`` results carry their pictures
        (``Result.visual``: thumbnails of the old and new image and the diff map, made
        when the decision is made), e.g. for :class:`fetcher.htmlreport.HtmlReport`.
    delete : bool
        After the run, delete the files fetcher wrote for URLs the list no longer
        names (see :mod:`fetcher.stale`); with ``dry_run``, only report them.

    Returns
    -------
    Report
        Counts per outcome and reason, the failures, bytes, time and exit status.

    Raises
    ------
    ValueError
        Both a session and an executor were given.
    ListError
        ``urls`` names a list file that cannot be read.
    LockError
        Another run holds the destination's lock.
    StoreError, StateError
        The destination or its state cannot be used.
    """
    config = config or Config()
    dest_path = Path(dest).absolute()
    if executor is not None and session is not None:
        raise ValueError("a session cannot travel to an executor's workers: pass one or the other")
    outcome_report = Report(dry_run=dry_run)
    with contextlib.ExitStack() as stack:
        items = _open_list(urls, stack)
        lock = stack.enter_context(DestinationLock(dest_path, create=not dry_run))
        assert lock.destination is not None
        root = lock.destination
        if executor is None and config.sync.scheduler:
            executor = stack.enter_context(cluster_executor(config.sync.scheduler))
        if not dry_run:
            root.sweep()
        state_path = (
            Path(config.sync.state) if config.sync.state else dest_path / STATE_DIR / STATE_FILE
        )
        timeout = config.sync.state_timeout
        with State.open(state_path, timeout=timeout, readonly=dry_run) as state:
            if writer is not None:
                writer.start()  # the report is touched only now, the lock held
            entries = _while_in_place(_entries(items, config.sync.layout), root)
            listing = Listing(state) if delete else None
            run(
                entries if listing is None else listing.track(entries),
                root,
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
                thumbnails=thumbnails,
            )
            if listing is not None:
                _delete(root, state, listing, outcome_report, config, dry_run, writer, on_result)
            _measure_history(root, config, outcome_report, dry_run=dry_run)
    return outcome_report.finish()


def _delete(
    root: Destination,
    state: State,
    listing: Listing,
    report: Report,
    config: Config,
    dry_run: bool,
    writer: ReportWriter | None,
    on_result: Callable[[Result], None] | None,
) -> None:
    """``--delete`` after the run: the files of URLs no longer listed, if that is safe."""
    report.not_deleted = listing.refusal(report)
    if report.not_deleted is not None:
        return

    def record(result: Result) -> None:
        report.add(result)
        if writer is not None:
            writer.write(result)
        if on_result is not None:
            on_result(result)

    try:
        delete_unlisted(root, state, keep=config.sync.keep, dry_run=dry_run, record=record)
    except KeyboardInterrupt:
        report.interrupted = True  # what was deleted is recorded; the rest waits for next run


def _measure_history(root: Destination, config: Config, report: Report, *, dry_run: bool) -> None:
    """The history's size for the summary; versions beyond ``[sync] keep`` are pruned first."""
    keep = config.sync.keep
    usage = History(root, keep).usage(prune=keep > 0 and not dry_run)
    if keep > 0 or usage.files:
        report.history = (usage.files, usage.bytes)
