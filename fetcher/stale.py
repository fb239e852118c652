"""``--delete``: remove the files fetcher wrote for URLs that the list no longer names.

While the list is read, every usable entry's (URL, path) and its path's key
(:func:`~fetcher.paths.path_key`) are noted in the state's temporary tables
(:class:`Listing`; nothing of it is written to the state file, and a list of a million
lines is not held in memory). After the run, every state record the list did not name
is examined (:func:`delete_unlisted`), and its file deleted only if all of these hold:

- the run read the whole list, was not interrupted, refused no line of it, and the
  list named at least one URL (:meth:`Listing.refusal`): a list cut short, garbled or
  empty never deletes anything;
- no listed entry uses the record's path (compared case-folded and NFC-normalised, as
  the list reader compares paths), whatever its URL;
- the state says fetcher wrote the file (``Record.written``): not a file fetcher found
  on disk and judged unchanged, nor one put back by ``fetcher restore``;
- the file's size, mtime and SHA-256, read through one descriptor, are still those
  recorded (:meth:`~fetcher.store.Destination.remove` checks again, atomically, that the
  file it removes is the file it read).

With ``[sync] keep`` the deleted file is kept in the history (``fetcher restore``
brings it back). A deleted file is reported with outcome ``deleted`` (reason
``not-listed``); with ``--dry-run`` the same files are listed and nothing is deleted.
Records of URLs no longer listed are then dropped from the state (except where deleting
failed), so each is examined once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from .errors import FetcherError
from .history import History
from .paths import STATE_DIR, path_key
from .report import Report, Result
from .state import Record, State
from .store import Destination, FileInfo
from .urllist import BadLine, Entry

__all__ = ["Listing", "delete_unlisted"]

REASON = "not-listed"


class Listing:
    """What the list names, noted in the state as the list is read.

    Parameters
    ----------
    state : State
        The run's state (its temporary tables hold the list's entries).
    """

    def __init__(self, state: State) -> None:
        self.state = state
        self.entries = 0
        self.refused = 0
        state.begin_listing()

    def track(self, items: Iterable[Entry | BadLine]) -> Iterator[Entry | BadLine]:
        """Pass ``items`` through, noting each entry (and counting refused lines)."""
        for item in items:
            if isinstance(item, Entry):
                self.state.listed(item.url, item.path, path_key(item.path))
                self.entries += 1
            else:
                self.refused += 1
            yield item

    def refusal(self, report: Report) -> str | None:
        """Why nothing may be deleted after this run, or None if deleting may go ahead."""
        if report.interrupted:
            return "the run was interrupted before the end of the list"
        if self.refused:
            return f"{self.refused} line(s) of the list were refused; fix them first"
        if not self.entries:
            return "the list names no URL"
        return None


def delete_unlisted(
    root: Destination,
    state: State,
    *,
    keep: int,
    dry_run: bool,
    record: Callable[[Result], None],
) -> None:
    """Delete the files of the records the list did not name, where they are still fetcher's.

    Call it after the run, with :meth:`Listing.refusal` None. Every file deleted (or,
    with ``dry_run``, that would be) is passed to ``record`` as a ``deleted`` result; a
    deletion that fails is a ``failed`` result and its record stays for the next run.
    """
    history = History(root, keep)
    try:
        for found, path_listed in state.unlisted():
            result = None if path_listed else _delete(found, root, history, dry_run=dry_run)
            if result is not None:
                record(result)
            if not dry_run and (result is None or result.ok):
                state.forget(found.url, found.path)
    finally:
        if not dry_run:
            state.forget_now()


def _delete(found: Record, root: Destination, history: History, *, dry_run: bool) -> Result | None:
    """Delete one record's file if it is still what fetcher wrote; None if nothing to do."""
    if not found.written or found.size is None or found.mtime_ns is None or not found.sha256:
        return None
    expect = FileInfo(found.size, found.mtime_ns, found.sha256)
    deleted = Result(url=found.url, path=found.path, outcome="deleted", reason=REASON)
    try:
        on_disk = root.stat(found.path)
        if on_disk is None or (on_disk.size, on_disk.mtime_ns) != (expect.size, expect.mtime_ns):
            return None  # gone, or changed since fetcher wrote it: not fetcher's to delete
        if dry_run:
            snapshot = root.read(found.path)
            return deleted if snapshot is not None and snapshot.info == expect else None
        kept = history.delete(found.path, expect)
    except FetcherError as exc:
        return Result(
            url=found.url,
            path=found.path,
            outcome="failed",
            reason=exc.reason,
            error=f"cannot delete {found.path!r}: {exc}",
        )
    if kept is None:
        return None
    if kept:
        return Result(
            url=found.url,
            path=found.path,
            outcome="deleted",
            reason=REASON,
            detail=f"kept as {STATE_DIR}/{kept}",
        )
    return deleted
