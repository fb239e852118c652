"""Command line: parse arguments, call the library, print, return an exit status."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from . import __version__
from .config import Config, load_config
from .errors import FetcherError

__all__ = ["main"]

EXIT_OK = 0
EXIT_CHANGED = 1  # compare: the images differ; sync: at least one URL failed
EXIT_TROUBLE = 2
EXIT_INTERRUPTED = 130


def _error(message: str) -> None:
    print(f"fetcher: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    cmp.add_argument("--config", metavar="FILE", help="TOML config file ([compare] thresholds)")
    cmp.set_defaults(handler=_cmd_compare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        handler: Any = args.handler
        return int(handler(args))
    except FetcherError as exc:
        _error(str(exc))
        return EXIT_TROUBLE
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED


def _load(args: argparse.Namespace, **overrides: Any) -> Config:
    return load_config(args.config, **overrides)


def _cmd_compare(args: argparse.Namespace) -> int:
    from .compare import compare, render_diff_map

    config = _load(args)
    result = compare(args.old, args.new, config, keep_map=bool(args.diff_map))
    if result.reason == "disk-unreadable":
        _error(f"{args.old}: {result.detail}")
        return EXIT_TROUBLE
    if args.diff_map:
        if result.ssim_map is not None:
            render_diff_map(result.ssim_map, size=result.size).save(args.diff_map, format="PNG")
        else:
            _error(f"no diff map written: {result.detail}")
    if args.json:
        print(json.dumps(result.to_dict(), sort_keys=True))
    else:
        print(_describe(result))
    return EXIT_OK if result.same else EXIT_CHANGED


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _describe(result: Any) -> str:
    verdict = "same" if result.same else "changed"
    line = f"{verdict} ({result.reason}): {result.detail}"
    if result.nrmse is not None and result.reason in ("similar", "dissimilar"):
        line += (
            f" [ssim {_fmt(result.ssim)}, nrmse {_fmt(result.nrmse)}, "
            f"local {_fmt(result.local_ssim)}]"
        )
    return line


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
