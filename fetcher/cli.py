"""Command line: parse arguments, call the library, print, return an exit status."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import stat
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

from . import __version__
from .comparison import METRICS
from .config import Config, load_config
from .errors import DecodeError, FetcherError
from .report import format_bytes

if TYPE_CHECKING:
    from .htmlreport import HtmlReport

__all__ = ["main"]

EXIT_OK = 0
EXIT_CHANGED = 1  # compare: the images differ; sync: at least one URL failed
EXIT_TROUBLE = 2
EXIT_INTERRUPTED = 130
EXIT_PIPE_CLOSED = 128 + signal.SIGPIPE  # what a shell reports for a tool killed by SIGPIPE


def _error(message: str) -> None:
    print(f"fetcher: {message}", file=sys.stderr)


def _silence(stream: IO[str]) -> None:
    """Point ``stream``'s descriptor at /dev/null: nothing more is written to a closed pipe.

    Python flushes stdout once more at exit; on a closed pipe that would print
    "Exception ignored ... BrokenPipeError" after all.
    """
    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)


class _Console:
    """Every line a run prints, on stdout or stderr; a closed pipe stops the run quietly.

    When the reader of either stream goes away (``fetcher sync ... | head -1``), the
    stream is silenced and, during a run, the run is stopped as by Ctrl-C (in-flight
    writes finish, state and report are flushed; SIGINT raised here is held until the
    result being recorded is recorded). Nothing more is printed; the exit status is
    that of a tool killed by SIGPIPE.
    """

    def __init__(self) -> None:
        self.closed = False
        self.running = False
        self.bar = False  # a progress bar is drawn: lines go through tqdm.write

    def line(self, text: str, stream: IO[str]) -> None:
        """Print one line and flush it (a closed pipe shows at once, not at exit).

        While a progress bar is drawn, the line goes through ``tqdm.write``: it clears
        the bar, prints the line and draws the bar again below it, so the bar stays
        whole and every line starts at the left margin.
        """
        if self.closed:
            return
        try:
            if self.bar:
                from tqdm import tqdm

                tqdm.write(text, file=stream)
            else:
                stream.write(text + "\n")
            stream.flush()
        except BrokenPipeError:
            self.pipe_closed(stream)

    def pipe_closed(self, stream: IO[str]) -> None:
        already, self.closed = self.closed, True
        _silence(stream)
        if already or not self.running:
            return
        if threading.current_thread() is threading.main_thread():
            signal.raise_signal(signal.SIGINT)  # stop the run the graceful way


class _ConsoleStream:
    """A stream for the JSON-lines report on stdout, with the console's closed-pipe rule."""

    def __init__(self, console: _Console, stream: IO[str]) -> None:
        self.console = console
        self.stream = stream

    def write(self, text: str) -> int:
        if not self.console.closed:
            try:
                self.stream.write(text)
            except BrokenPipeError:
                self.console.pipe_closed(self.stream)
        return len(text)

    def flush(self) -> None:
        if not self.console.closed:
            try:
                self.stream.flush()
            except BrokenPipeError:
                self.console.pipe_closed(self.stream)


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error as one line naming the flag (``fetcher: argument ...``)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_TROUBLE, f"fetcher: {message} (see '{self.prog} --help')\n")


def _positive_int(text: str) -> int:
    """An argparse type: an integer >= 1 (the error names the flag, not a config key)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {value}")
    return value


def _scheduler(text: str) -> str:
    if text != "local" and "://" not in text:
        raise argparse.ArgumentTypeError(
            f"must be 'local' or an address like tcp://HOST:PORT, not {text!r}"
        )
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="fetcher",
        description="Keep a folder of images in step with a list of image URLs, "
        "rewriting only the images that really changed.",
    )
    parser.add_argument("--version", action="version", version=f"fetcher {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cmp = sub.add_parser(
        "compare",
        help="decide whether two images are the same picture",
        description="Compare two images down the ladder (bytes, pixels, similarity). "
        "Exit status like cmp: 0 same, 1 changed, 2 trouble.",
    )
    cmp.add_argument("old", metavar="OLD", help="the image you have")
    cmp.add_argument("new", metavar="NEW", help="the candidate image")
    cmp.add_argument("--json", action="store_true", help="print the verdict as one JSON object")
    cmp.add_argument("--diff-map", metavar="OUT.png", help="write a heat map of where they differ")
    cmp.add_argument("--html", metavar="FILE", help="write a page with both images and the map")
    cmp.add_argument("--config", metavar="FILE", help="TOML config file ([compare] thresholds)")
    cmp.set_defaults(handler=_cmd_compare)

    syn = sub.add_parser(
        "sync",
        help="mirror a URL list into a folder, writing only what changed",
        description="Take every URL of the list down the ladder (304, bytes, pixels, "
        "similarity) and write the origin's bytes only for new and changed images. "
        "Exit status: 0 all fine, 1 some URL failed, 2 nothing could run, 130 interrupted.",
    )
    syn.add_argument(
        "urls", metavar="URLS", help="URL list file ('URL [PATH]' a line), or - for stdin"
    )
    syn.add_argument("--dest", required=True, metavar="DIR", help="destination folder")
    syn.add_argument("--config", metavar="FILE", help="TOML config file")
    syn.add_argument("--report", metavar="FILE", help="write a JSON-lines report (- for stdout)")
    syn.add_argument("--html", metavar="FILE", help="write the visual change report (HTML)")
    syn.add_argument("--workers", type=_positive_int, metavar="N", help="concurrent downloads")
    syn.add_argument("--dry-run", action="store_true", help="decide everything, write nothing")
    syn.add_argument("--force", action="store_true", help="ignore stored validators, fetch all")
    verbosity = syn.add_mutually_exclusive_group()
    verbosity.add_argument("-q", "--quiet", action="store_true", help="print only failures")
    verbosity.add_argument("-v", "--verbose", action="store_true", help="print every URL's result")
    syn.add_argument("--no-progress", action="store_true", help="no progress bar")
    syn.add_argument(
        "--keep",
        type=_count,
        metavar="N",
        help="keep the last N replaced versions of each file in DEST/.fetcher/history",
    )
    syn.add_argument(
        "--delete",
        action="store_true",
        help="delete the files fetcher wrote for URLs no longer in the list",
    )
    syn.add_argument(
        "--metrics",
        metavar="FILE",
        help="write the run's figures for node_exporter's textfile collector (FILE.prom)",
    )
    syn.add_argument(
        "--scheduler",
        type=_scheduler,
        metavar="ADDR",
        help="run on a Dask cluster: tcp://HOST:PORT, or 'local' for one on this machine",
    )
    syn.set_defaults(handler=_cmd_sync)

    rst = sub.add_parser(
        "restore",
        help="put a kept old version of a file back",
        description="Put back a version that [sync] keep / --keep kept in "
        "DEST/.fetcher/history, atomically, keeping the file it replaces as a version "
        "too, and record it in the state (the next run keeps it unless the origin "
        "publishes something new). Exit status: 0 done, 2 trouble.",
    )
    rst.add_argument(
        "path",
        metavar="PATH",
        help="the file: relative to --dest if given, else its path (DEST is the nearest "
        "folder above it holding .fetcher/)",
    )
    rst.add_argument(
        "--version",
        type=_positive,
        default=1,
        metavar="K",
        help="which version: 1 the most recently replaced (default), 2 the one before...",
    )
    rst.add_argument("--dest", metavar="DIR", help="the destination folder")
    rst.add_argument("--list", action="store_true", help="list the kept versions, restore none")
    rst.add_argument("--config", metavar="FILE", help="TOML config file ([sync] keep, state)")
    rst.set_defaults(handler=_cmd_restore)

    demo = sub.add_parser(
        "demo",
        help="run the main job on a built-in example (no internet needed)",
        description="Serve generated images from 127.0.0.1, sync them, re-publish some "
        "re-encoded and some edited, sync again, and show what was decided and why.",
    )
    demo.add_argument(
        "dir", metavar="DIR", nargs="?", help="destination (default: a new temp folder)"
    )
    demo.set_defaults(handler=_cmd_demo)
    return parser


def _count(text: str) -> int:
    """An integer >= 0 for a flag (argparse names the flag when this raises)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def _positive(text: str) -> int:
    value = _count(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = _interrupt_on_sigterm()
    try:
        handler: Any = args.handler
        return int(handler(args))
    except FetcherError as exc:
        _error(str(exc))
        return EXIT_TROUBLE
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader of our output went away: stop quietly
        _silence(sys.stdout)
        _silence(sys.stderr)
        return EXIT_PIPE_CLOSED
    except Exception as exc:  # a bug: one line and exit 2, never a traceback
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        _error(f"internal error: {type(exc).__name__}" + (f": {message}" if message else ""))
        return EXIT_TROUBLE
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _interrupt_on_sigterm() -> Any:
    """SIGTERM ends a run like Ctrl-C: in-flight writes finish, state and report are flushed."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, handler)


def _load(args: argparse.Namespace, **overrides: Any) -> Config:
    return load_config(args.config, **overrides)


def _cmd_compare(args: argparse.Namespace) -> int:
    from .comparison import compare
    from .diffmap import render_diff_map

    config = _load(args)
    try:
        result = compare(args.old, args.new, config, keep_map=bool(args.diff_map or args.html))
    except DecodeError as exc:  # the old one's is a verdict (disk-unreadable), below
        _error(f"{args.new}: the new image does not decode: {exc}")
        return EXIT_TROUBLE
    if result.reason == "disk-unreadable":
        _error(f"{args.old}: {result.detail}")
        return EXIT_TROUBLE
    if args.html:
        _compare_page(args, result, config)
    if args.diff_map:
        if result.edit_map is not None:
            try:
                render_diff_map(result).save(args.diff_map, format=_picture_format(args.diff_map))
            except OSError as exc:
                _error(f"cannot write diff map {args.diff_map}: {exc.strerror or exc}")
                return EXIT_TROUBLE
        else:
            _error(f"no diff map written: {result.detail}")
    if args.json:
        print(json.dumps(result.to_dict(), sort_keys=True))
    else:
        print(_describe(result, config))
    return EXIT_OK if result.same else EXIT_CHANGED


def _picture_format(path: str) -> str:
    """The format a file name asks for (``map.jpg``: JPEG), PNG for any other name."""
    from PIL import Image

    return Image.registered_extensions().get(Path(path).suffix.lower(), "PNG")


def _compare_page(args: argparse.Namespace, result: Any, config: Config) -> None:
    """``fetcher compare --html FILE``: both images, the map and the scores on one page."""
    from .comparison import load_source
    from .htmlreport import write_compare_page
    from .visual import change_visual

    old, new = load_source(args.old), load_source(args.new)
    visual = change_visual(old, new, config.compare, result)
    write_compare_page(
        args.html,
        result,
        visual,
        old_name=args.old,
        new_name=args.new,
        thresholds=config.compare,
    )


def _cmd_sync(args: argparse.Namespace) -> int:
    """``fetcher sync``, and its metrics file (``--metrics``) whatever the exit status."""
    from .report import Report

    started = time.monotonic()
    ran: list[Report] = []
    metrics: str | None = args.metrics
    status = EXIT_TROUBLE
    try:
        config = _load(
            args,
            sync={"workers": args.workers, "scheduler": args.scheduler, "keep": args.keep},
            report={"html": args.html, "metrics": args.metrics},
        )
        metrics = config.report.metrics or None
        if metrics:
            where = os.path.dirname(os.path.abspath(metrics))
            if not os.path.isdir(where):  # before the run: cron would never be told
                metrics = None
                _error(f"cannot write metrics file {args.metrics!r}: no folder {where!r}")
                return EXIT_TROUBLE
        status = _sync(args, config, ran)
    except KeyboardInterrupt:
        status = EXIT_INTERRUPTED
        raise
    except BrokenPipeError:
        status = EXIT_PIPE_CLOSED
        raise
    finally:
        written = not metrics or _write_metrics(
            metrics, args, ran, status, time.monotonic() - started
        )
        if not written and status in (EXIT_OK, EXIT_CHANGED):
            status = EXIT_TROUBLE  # a monitor that no longer hears of the runs must be told
    return status


def _write_metrics(
    path: str, args: argparse.Namespace, ran: list[Any], status: int, duration: float
) -> bool:
    """Write the metrics file; False (and one line on stderr) if it cannot be written."""
    from .metrics import record_run

    report = ran[0] if ran else None
    try:
        record_run(
            path, args.dest, report, exit_status=status, duration=duration, dry_run=args.dry_run
        )
    except FetcherError as exc:
        _error(str(exc))
        return False
    return True


def _sync(args: argparse.Namespace, config: Config, ran: list[Any]) -> int:
    from .mirror import sync
    from .report import Progress, ReportFile, ReportWriter, Result

    to_stdout = args.report == "-"
    out = sys.stderr if to_stdout else sys.stdout
    terminal = sys.stderr.isatty()
    console = _Console()
    with contextlib.ExitStack() as stack:
        # a path: sync opens it before it takes the lock (ListError: exit 2); stdin is
        # read in binary too, so that every line is checked to be UTF-8
        lines: Any = getattr(sys.stdin, "buffer", sys.stdin) if args.urls == "-" else args.urls
        writer: ReportWriter | None = None
        if to_stdout:
            writer = ReportWriter(_ConsoleStream(console, sys.stdout))
        elif args.report:
            writer = ReportFile(args.report)  # touched only once the run holds the lock
        if writer is not None:
            stack.callback(writer.close)
        html = _html_report(config, args.dest)
        if html is not None:
            stack.callback(html.close)

        hosts_down: set[str] = set()

        def show(result: Result) -> None:
            if html is not None:
                html.add(result)
            if result.reason == "host-down":  # one line per host, not one per URL
                host = str(result.error).partition(" is down")[0]
                if host not in hosts_down:
                    hosts_down.add(host)
                    console.line(f"fetcher: {result.error}", sys.stderr)
            elif not result.ok:
                console.line(f"fetcher: {_failure_line(result)}", sys.stderr)
                if args.verbose and result.traceback:
                    console.line(result.traceback.rstrip(), sys.stderr)
            elif args.verbose or (result.outcome == "deleted" and args.dry_run):
                extra = f" ({result.detail})" if result.detail else ""
                console.line(f"{result.outcome:9} {result.reason:16} {result.path}{extra}", out)

        shown = terminal and not args.no_progress and not args.quiet
        bar = Progress(enabled=shown, total=_count_entries(args.urls) if shown else None)
        console.running, console.bar = True, bar.enabled
        try:
            report = sync(
                lines,
                args.dest,
                config,
                dry_run=args.dry_run,
                force=args.force,
                writer=writer,
                on_result=show,
                progress=bar,
                thumbnails=config.report.html_max if html is not None else 0,
                delete=args.delete,
            )
            ran.append(report)
        finally:
            bar.close()  # the run closed it, unless it never started (e.g. locked out)
            console.running = console.bar = False
        if html is not None:
            html.write(report, exit_code=EXIT_PIPE_CLOSED if console.closed else None)
    if console.closed:
        return EXIT_PIPE_CLOSED
    if not args.quiet:
        summary = report.summary_table() if terminal and out.isatty() else report.summary_line()
        console.line(summary, out)
    if report.not_deleted is not None:
        console.line(f"fetcher: --delete deleted nothing: {report.not_deleted}", sys.stderr)
    if report.interrupted and not console.closed:
        _error("interrupted; finished writes kept, state and report flushed")
    return EXIT_PIPE_CLOSED if console.closed else report.exit_code


def _html_report(config: Config, dest: str) -> HtmlReport | None:
    """The HTML report the run should write (``--html``, ``[report] html``), or None."""
    if not config.report.html:
        return None
    from .htmlreport import HtmlReport

    return HtmlReport(
        config.report.html,
        max_images=config.report.html_max,
        thresholds=config.compare,
        title=dest,
    )


def _count_entries(urls: str) -> int | None:
    """How many lines of the list file ``urls`` hold an entry (None if not a regular file).

    The bar's total, for its ETA: one quick pass over the bytes before the run, for a
    regular file only (stdin or a pipe is read once, by the run).
    """
    try:
        if urls == "-" or not stat.S_ISREG(os.stat(urls).st_mode):
            return None
        with open(urls, "rb") as handle:
            return sum(1 for raw in handle if raw.strip() and not raw.lstrip().startswith(b"#"))
    except OSError:
        return None


def _failure_line(result: Any) -> str:
    """``line N: URL: cause``, without repeating what the cause already names."""
    message = str(result.error)
    if message.startswith("line "):
        return message  # a list-line error names its line and text already
    if result.url and result.url not in message:
        message = f"{result.url}: {message}"
    return f"line {result.line}: {message}" if result.line else message


def _cmd_restore(args: argparse.Namespace) -> int:
    from .history import History, find_destination, restore
    from .store import Destination

    config = _load(args)
    if args.dest:
        dest, relpath = Path(args.dest), args.path
    else:
        dest, relpath = find_destination(args.path)
    if args.list:
        with Destination.open(dest) as root:
            versions = History(root, config.sync.keep).versions(relpath)
        print(f"{relpath}: {len(versions)} kept version(s), newest first")
        for v in versions:
            size = format_bytes(v.size)
            print(f"  {v.number:3}  replaced {_when(v.replaced)}  {size:>9}  .fetcher/{v.path}")
        return EXIT_OK
    done = restore(dest, relpath, version=args.version, config=config)
    kept = (
        "the file it replaced is now version 1"
        if done.replaced
        else "there was no file there to replace"
    )
    print(
        f"restored {relpath} from version {done.version.number} (replaced "
        f"{_when(done.version.replaced)}); {kept}"
    )
    if not done.records:
        print(
            f"note: the state has no record of {relpath}: the next run fetches its URL in full "
            "and compares it with the restored file"
        )
    return EXIT_OK


def _when(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(args.dir)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _describe(result: Any, config: Config) -> str:
    """``same (similar): ...`` plus, past rung 5, every score against its threshold."""
    verdict = "same" if result.same else "changed"
    line = f"{verdict} ({result.reason}): {result.detail}"
    if result.reason in ("similar", "dissimilar"):
        scores = ", ".join(
            f"{name} {_fmt(getattr(result, name))} (threshold {getattr(config.compare, name)})"
            + (" <- decided" if name == result.decided_by else "")
            for name in METRICS
        )
        line += f"\n  {scores}"
    return line


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
