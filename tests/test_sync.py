"""Tests of fetcher.sync and ``fetcher sync``: the mirror cycle, faults, exit codes, the library."""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import functools
import hashlib
import io
import json
import os
import re
import sqlite3
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import encode, gradient_rgb, photo
from origin import Origin, RequestRecord
from PIL import Image, ImageDraw
from test_report import DESIGN_FIELDS

from fetcher.cli import main
from fetcher.config import load_config
from fetcher.errors import ListError, StateError
from fetcher.mirror import sync, sync_one
from fetcher.report import Result
from fetcher.state import State
from fetcher.store import DestinationLock

REPO = Path(__file__).resolve().parents[1]

_COUNT = r"(?: \([a-z0-9-]+ \d+(?:, [a-z0-9-]+ \d+)*\))?"
SUMMARY = re.compile(
    rf"^new (\d+){_COUNT}, changed (\d+){_COUNT}, unchanged (\d+){_COUNT}, "
    rf"failed (\d+){_COUNT}, \d+(?:\.\d)? (?:B|kB|MB|GB) in \d+\.\d s$"
)

#: Small timeouts and backoff so that every fault ends within seconds.
FAST: dict[str, dict[str, Any]] = {
    "sync": {"workers": 4, "per_host": 4},
    "http": {
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
        "deadline": 5.0,
        "retries": 2,
        "backoff": 0.02,
        "backoff_max": 0.1,
        "retry_after_max": 5.0,
    },
}


# -- pictures --------------------------------------------------------------------------------
@functools.cache
def _photo(name: str, size: tuple[int, int]) -> Image.Image:
    return photo(name).convert("RGB").resize(size)


@functools.cache
def pictures() -> dict[str, bytes]:
    """What the origin publishes first: real photographs and a gradient, small."""
    return {
        "/photos/astronaut.jpg": encode(_photo("astronaut", (256, 256)), "JPEG", quality=95),
        "/photos/coffee.png": encode(_photo("coffee", (200, 150)), "PNG"),
        "/gradient.png": encode(gradient_rgb(96, 64), "PNG"),
        "/cats/chelsea.png": encode(_photo("chelsea", (160, 120)), "PNG"),
    }


def reencoded_q90(jpeg: bytes) -> bytes:
    """The same photograph decoded and saved again as JPEG quality 90 (a CDN re-encode)."""
    with Image.open(io.BytesIO(jpeg)) as img:
        return encode(img.convert("RGB"), "JPEG", quality=90)


def boxed(png: bytes, fill: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    """The picture with a solid box drawn over about a tenth of it (a visible edit)."""
    with Image.open(io.BytesIO(png)) as img:
        edited = img.convert("RGB")
    w, h = edited.size
    ImageDraw.Draw(edited).rectangle((w // 3, h // 3, w // 3 + w // 4, h // 3 + h // 3), fill=fill)
    return encode(edited, "PNG")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 50_000, height: int = 50_000) -> bytes:
    """A tiny but valid-looking PNG whose header claims ``width`` x ``height`` pixels."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    idat = zlib.compress(b"\x00" + bytes(3 * 16), 9)  # one row's worth; the decoder never gets here
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def etag_of(body: bytes) -> str:
    """The ETag the loopback origin sends for ``body`` (quoted SHA-1, computed here)."""
    return '"' + hashlib.sha1(body).hexdigest() + '"'


def header(record: RequestRecord, name: str) -> str | None:
    return {k.lower(): v for k, v in record.headers.items()}.get(name.lower())


def write_config(path: Path, sections: dict[str, dict[str, Any]]) -> Path:
    lines = []
    for section, keys in sections.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in keys.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def merged(**overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {name: dict(keys) for name, keys in FAST.items()}
    for name, keys in overrides.items():
        out.setdefault(name, {}).update(keys)
    return out


def stamp(path: Path) -> tuple[int, int, bytes]:
    """Inode, mtime_ns and bytes of a file: an atomic rewrite changes the inode."""
    st = path.stat()
    return st.st_ino, st.st_mtime_ns, path.read_bytes()


def image_files(dest: Path) -> list[Path]:
    """Every file fetcher may have written, outside its own ``.fetcher`` folder."""
    return sorted(
        p for p in dest.rglob("*") if p.is_file() and ".fetcher" not in p.relative_to(dest).parts
    )


# -- the CLI harness ---------------------------------------------------------------------------
class Run:
    """One ``fetcher sync`` run in-process: exit code, output and the parsed report."""

    def __init__(self, code: int, out: str, err: str, report: list[dict[str, Any]], took: float):
        self.code = code
        self.out = out
        self.err = err
        self.report = report
        self.took = took
        self.by_url = {row["url"]: row for row in report}


class Mirror:
    """A destination, a URL list and a config file, synced against an Origin with the CLI."""

    def __init__(self, origin: Origin, tmp: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.origin = origin
        self.tmp = tmp
        self.capsys = capsys
        self.dest = tmp / "mirror"
        self.list = tmp / "urls.txt"
        self.config = write_config(tmp / "fetcher.toml", FAST)
        self.runs = 0

    def url(self, path: str) -> str:
        return self.origin.url(path)

    def write_list(self, *lines: str) -> None:
        self.list.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def sync(self, *flags: str, config: Path | None = None) -> Run:
        self.runs += 1
        report = self.tmp / f"report-{self.runs}.jsonl"
        argv = [
            "sync",
            str(self.list),
            "--dest",
            str(self.dest),
            "--config",
            str(config or self.config),
            "--report",
            str(report),
            *flags,
        ]
        self.capsys.readouterr()
        started = time.monotonic()
        code = main(argv)
        took = time.monotonic() - started
        captured = self.capsys.readouterr()
        rows = [json.loads(line) for line in report.read_text("utf-8").splitlines()]
        return Run(code, captured.out, captured.err, rows, took)

    def file(self, run: Run, path: str) -> Path:
        """The file the report says ``path``'s URL was mirrored to."""
        return self.dest / str(run.by_url[self.url(path)]["path"])


@pytest.fixture
def mirror(origin: Origin, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Mirror:
    for path, body in pictures().items():
        origin.publish(path, body, content_type="image/jpeg" if path.endswith(".jpg") else None)
    m = Mirror(origin, tmp_path, capsys)
    m.write_list(
        "# nightly mirror",
        m.url("/photos/astronaut.jpg"),
        f"{m.url('/photos/coffee.png')} coffee.png",
        "",
        m.url("/gradient.png"),
        f"{m.url('/cats/chelsea.png')}  cats/chelsea.png",
    )
    return m


@pytest.fixture
def mirrored(mirror: Mirror) -> tuple[Mirror, Run]:
    first = mirror.sync()
    assert first.code == 0, first.err
    return mirror, first


# -- the mirror cycle --------------------------------------------------------------------------
def test_first_run_writes_every_image_as_new_with_the_origins_exact_bytes(mirror: Mirror) -> None:
    run = mirror.sync()
    assert run.code == 0, run.err
    assert {row["outcome"] for row in run.report} == {"new"}
    assert len(run.report) == len(pictures())
    for path, body in pictures().items():
        row = run.by_url[mirror.url(path)]
        assert (mirror.dest / row["path"]).read_bytes() == body
        assert row["bytes"] == len(body)
        assert row["http_status"] == 200
    # explicit PATHs are used as given; the others land under HOST_PORT/URL-PATH
    assert run.by_url[mirror.url("/photos/coffee.png")]["path"] == "coffee.png"
    astronaut = run.by_url[mirror.url("/photos/astronaut.jpg")]["path"]
    assert astronaut == f"127.0.0.1_{mirror.origin.port}/photos/astronaut.jpg"
    assert len(image_files(mirror.dest)) == len(pictures())


def test_second_run_is_all_not_modified_conditional_and_rewrites_nothing(
    mirrored: tuple[Mirror, Run],
) -> None:
    mirror, first = mirrored
    before = {p: stamp(mirror.file(first, p)) for p in pictures()}
    mirror.origin.clear_log()
    second = mirror.sync()
    assert second.code == 0, second.err
    assert {(r["outcome"], r["reason"]) for r in second.report} == {("unchanged", "not-modified")}
    for path, body in pictures().items():
        sent = mirror.origin.requests_for(path)
        assert len(sent) == 1
        assert header(sent[0], "If-None-Match") == etag_of(body)
        assert header(sent[0], "If-Modified-Since")
        assert sent[0].status == 304
        assert second.by_url[mirror.url(path)]["bytes"] == 0
        assert stamp(mirror.file(second, path)) == before[path]


def test_republished_images_only_the_edited_one_is_rewritten(
    mirrored: tuple[Mirror, Run],
) -> None:
    mirror, first = mirrored
    originals = pictures()
    before = {p: stamp(mirror.file(first, p)) for p in originals}
    jpeg90 = reencoded_q90(originals["/photos/astronaut.jpg"])
    edited = boxed(originals["/photos/coffee.png"])
    assert jpeg90 != originals["/photos/astronaut.jpg"]
    mirror.origin.publish("/gradient.png", originals["/gradient.png"])  # same bytes again
    mirror.origin.publish("/photos/astronaut.jpg", jpeg90, content_type="image/jpeg")
    mirror.origin.publish("/photos/coffee.png", edited)

    run = mirror.sync()
    assert run.code == 0, run.err
    got = {path: run.by_url[mirror.url(path)] for path in originals}
    assert (got["/gradient.png"]["outcome"], got["/gradient.png"]["reason"]) == (
        "unchanged",
        "not-modified",
    )
    assert (got["/cats/chelsea.png"]["outcome"], got["/cats/chelsea.png"]["reason"]) == (
        "unchanged",
        "not-modified",
    )
    similar = got["/photos/astronaut.jpg"]
    assert (similar["outcome"], similar["reason"]) == ("unchanged", "similar")
    assert 0.85 <= similar["ssim"] < 1.0
    changed = got["/photos/coffee.png"]
    assert (changed["outcome"], changed["reason"]) == ("changed", "dissimilar")
    assert changed["bytes"] == len(edited)

    # the re-encode keeps the OLD bytes, the same file; the edit has the NEW exact bytes
    for path in ("/gradient.png", "/cats/chelsea.png", "/photos/astronaut.jpg"):
        assert stamp(mirror.file(run, path)) == before[path], path
    assert mirror.file(run, "/photos/coffee.png").read_bytes() == edited

    # the next night everything is a 304 again: the new validators were remembered
    mirror.origin.clear_log()
    again = mirror.sync()
    assert {(r["outcome"], r["reason"]) for r in again.report} == {("unchanged", "not-modified")}
    sent = mirror.origin.requests_for("/photos/astronaut.jpg")
    assert [header(r, "If-None-Match") for r in sent] == [etag_of(jpeg90)]
    assert (
        mirror.file(again, "/photos/astronaut.jpg").read_bytes()
        == originals["/photos/astronaut.jpg"]
    )


def test_a_deleted_file_comes_back_as_new_fetched_in_full(mirrored: tuple[Mirror, Run]) -> None:
    mirror, first = mirrored
    gone = mirror.file(first, "/cats/chelsea.png")
    gone.unlink()
    mirror.origin.clear_log()
    run = mirror.sync()
    assert run.code == 0, run.err
    row = run.by_url[mirror.url("/cats/chelsea.png")]
    assert (row["outcome"], row["reason"]) == ("new", "new")
    assert gone.read_bytes() == pictures()["/cats/chelsea.png"]
    sent = mirror.origin.requests_for("/cats/chelsea.png")
    assert len(sent) == 1
    assert header(sent[0], "If-None-Match") is None
    assert header(sent[0], "If-Modified-Since") is None
    others = [r for r in run.report if r["url"] != mirror.url("/cats/chelsea.png")]
    assert {r["reason"] for r in others} == {"not-modified"}


def test_hand_edited_files_are_fetched_in_full_and_decided_by_compare(
    mirrored: tuple[Mirror, Run],
) -> None:
    mirror, first = mirrored
    originals = pictures()
    old = time.time() - 86_400
    # 1. only touched: same bytes, another mtime
    touched = mirror.file(first, "/photos/astronaut.jpg")
    os.utime(touched, (old, old))
    # 2. re-saved losslessly: the same pixels in other bytes (another size)
    resaved = mirror.file(first, "/cats/chelsea.png")
    with Image.open(io.BytesIO(originals["/cats/chelsea.png"])) as img:
        lossless = encode(img, "PNG", compress_level=0)
    assert len(lossless) != len(originals["/cats/chelsea.png"])
    resaved.write_bytes(lossless)
    # 3. scribbled on: another picture
    scribbled = mirror.file(first, "/gradient.png")
    scribbled.write_bytes(boxed(originals["/gradient.png"], fill=(0, 0, 0)))
    os.utime(scribbled, (old, old))
    kept = {p: stamp(p) for p in (touched, resaved)}

    mirror.origin.clear_log()
    run = mirror.sync()
    assert run.code == 0, run.err
    decided = {
        path: (run.by_url[mirror.url(path)]["outcome"], run.by_url[mirror.url(path)]["reason"])
        for path in originals
    }
    assert decided == {
        "/photos/astronaut.jpg": ("unchanged", "identical-bytes"),
        "/cats/chelsea.png": ("unchanged", "identical-pixels"),
        "/gradient.png": ("changed", "dissimilar"),
        "/photos/coffee.png": ("unchanged", "not-modified"),
    }
    for path in ("/photos/astronaut.jpg", "/cats/chelsea.png", "/gradient.png"):
        sent = mirror.origin.requests_for(path)
        assert len(sent) == 1
        assert header(sent[0], "If-None-Match") is None, path
        assert sent[0].status == 200
    assert header(mirror.origin.requests_for("/photos/coffee.png")[0], "If-None-Match")
    for kept_file, before in kept.items():
        assert stamp(kept_file) == before  # unchanged: the hand's file stays as it is
    assert scribbled.read_bytes() == originals["/gradient.png"]


def test_force_sends_no_validators_and_rewrites_nothing(mirrored: tuple[Mirror, Run]) -> None:
    mirror, first = mirrored
    before = {p: stamp(mirror.file(first, p)) for p in pictures()}
    mirror.origin.clear_log()
    run = mirror.sync("--force")
    assert run.code == 0, run.err
    assert {(r["outcome"], r["reason"]) for r in run.report} == {("unchanged", "identical-bytes")}
    for path in pictures():
        sent = mirror.origin.requests_for(path)
        assert len(sent) == 1
        assert header(sent[0], "If-None-Match") is None
        assert header(sent[0], "If-Modified-Since") is None
        assert stamp(mirror.file(run, path)) == before[path]


def _records(mirror: Mirror) -> dict[str, Any]:
    """Every picture URL's state record (as a row), or None; the state is not created."""
    found: dict[str, Any] = dict.fromkeys(map(mirror.url, pictures()))
    state = mirror.dest / ".fetcher" / "state.sqlite3"
    if state.exists():
        with contextlib.closing(sqlite3.connect(f"file:{state}?mode=ro", uri=True)) as conn:
            found.update({row[0]: row for row in conn.execute("SELECT * FROM records")})
    return found


def test_dry_run_on_a_fresh_destination_creates_nothing_at_all(mirror: Mirror) -> None:
    run = mirror.sync("--dry-run")
    assert run.code == 0, run.err
    assert {r["outcome"] for r in run.report} == {"new"}
    assert not mirror.dest.exists()  # not even DEST/.fetcher (lock, state)
    assert "dry run" in run.out


def disk_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``root``: size and mtime (folders: 0 and their mtime)."""
    return {
        str(p.relative_to(root)): (0 if p.is_dir() else p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
    }


def test_dry_run_on_a_mirror_changes_nothing_on_disk_and_still_uses_the_state(
    mirrored: tuple[Mirror, Run],
) -> None:
    mirror, _ = mirrored
    leftover = mirror.dest / "cats" / ".fetcher-tmp-0123456789abcdef"  # a killed run's
    leftover.write_bytes(b"half a file")
    mirror.origin.publish("/photos/coffee.png", boxed(pictures()["/photos/coffee.png"]))
    before = disk_snapshot(mirror.dest)
    mirror.origin.clear_log()
    run = mirror.sync("--dry-run")
    assert run.code == 0, run.err
    assert disk_snapshot(mirror.dest) == before  # no sweep, no -wal/-shm, no pid written
    reasons = {row["url"]: row["reason"] for row in run.report}
    assert reasons.pop(mirror.url("/photos/coffee.png")) == "dissimilar"
    assert set(reasons.values()) == {"not-modified"}  # the state was read: validators sent


def test_dry_run_decides_but_keeps_files_and_state(mirrored: tuple[Mirror, Run]) -> None:
    mirror, first = mirrored
    edited = boxed(pictures()["/photos/coffee.png"])
    mirror.origin.publish("/photos/coffee.png", edited)
    target = mirror.file(first, "/photos/coffee.png")
    gone = mirror.file(first, "/gradient.png")
    gone.unlink()
    before_file = stamp(target)
    before_state = _records(mirror)

    run = mirror.sync("--dry-run")
    assert run.code == 0, run.err
    assert run.by_url[mirror.url("/photos/coffee.png")]["outcome"] == "changed"
    assert run.by_url[mirror.url("/gradient.png")]["outcome"] == "new"
    assert stamp(target) == before_file
    assert not gone.exists()
    assert _records(mirror) == before_state

    real = mirror.sync()  # the state did not learn anything from the dry run
    assert real.by_url[mirror.url("/photos/coffee.png")]["outcome"] == "changed"
    assert target.read_bytes() == edited
    assert gone.read_bytes() == pictures()["/gradient.png"]


# -- faults ------------------------------------------------------------------------------------
GOOD = "/good.png"


@pytest.fixture
def good(mirror: Mirror) -> tuple[Mirror, Path, tuple[int, int, bytes]]:
    """A mirror of one URL whose good file is already on disk."""
    mirror.write_list(mirror.url(GOOD))
    mirror.origin.publish(GOOD, pictures()["/gradient.png"])
    first = mirror.sync()
    assert first.code == 0, first.err
    target = mirror.file(first, GOOD)
    assert target.read_bytes() == pictures()["/gradient.png"]
    return mirror, target, stamp(target)


UNPINNED = -1  # an HTTP status the test does not check

FAILING_FAULTS = [
    # kind, options, expected reason, expected HTTP status, requests made (retries = 2)
    pytest.param("status", {"code": 404}, "http-404", 404, 1, id="404"),
    # a truncated body's 200 is not carried by the connection error (http.py); not pinned
    pytest.param("truncate", {}, "connection", UNPINNED, 3, id="truncated"),
    pytest.param("html200", {}, "not-an-image", 200, 1, id="html-error-page-200"),
    pytest.param("huge-length", {}, "too-large", 200, 1, id="gigabytes-content-length"),
    pytest.param("reset", {}, "connection", None, 3, id="connection-reset"),
]


@pytest.mark.parametrize(("kind", "opts", "reason", "status", "tries"), FAILING_FAULTS)
def test_a_fault_fails_the_url_and_leaves_the_good_file_untouched(
    good: tuple[Mirror, Path, tuple[int, int, bytes]],
    kind: str,
    opts: dict[str, Any],
    reason: str,
    status: int | None,
    tries: int,
) -> None:
    mirror, target, before = good
    mirror.origin.fault(GOOD, kind, **opts)
    mirror.origin.clear_log()
    run = mirror.sync()
    assert run.code == 1
    row = run.by_url[mirror.url(GOOD)]
    assert (row["outcome"], row["reason"]) == ("failed", reason)
    if status != UNPINNED:
        assert row["http_status"] == status
    assert row["error"]
    assert len(mirror.origin.requests_for(GOOD)) == tries
    assert stamp(target) == before
    assert image_files(mirror.dest) == [target]  # no temporary file left behind
    # failures: one line each on stderr, naming the URL
    failure_lines = [line for line in run.err.splitlines() if mirror.url(GOOD) in line]
    assert len(failure_lines) == 1
    # the validators survive the failure: once the fault clears, a 304
    mirror.origin.clear_fault(GOOD)
    after = mirror.sync()
    assert (after.report[0]["outcome"], after.report[0]["reason"]) == ("unchanged", "not-modified")


def test_a_trickling_body_fails_at_the_deadline(
    good: tuple[Mirror, Path, tuple[int, int, bytes]],
) -> None:
    mirror, target, before = good
    config = write_config(mirror.tmp / "deadline.toml", merged(http={"deadline": 1.5}))
    mirror.origin.fault(GOOD, "trickle", interval=0.2)
    run = mirror.sync("--force", config=config)
    row = run.report[0]
    assert run.code == 1
    assert (row["outcome"], row["reason"]) == ("failed", "deadline")
    # cut at the deadline: not before it, and well before the trickle (0.2 s a byte) ends
    assert 1.4 <= row["elapsed"] < 0.2 * len(pictures()["/gradient.png"]) / 2
    assert stamp(target) == before


def test_a_decompression_bomb_png_fails_as_too_many_pixels(
    good: tuple[Mirror, Path, tuple[int, int, bytes]],
) -> None:
    mirror, target, before = good
    bomb = bomb_png()
    assert len(bomb) < 200
    # the header really claims 2.5 gigapixels, and its checksum is right
    assert struct.unpack(">II", bomb[16:24]) == (50_000, 50_000)
    assert struct.unpack(">I", bomb[29:33])[0] == zlib.crc32(bomb[12:29])
    mirror.origin.publish(GOOD, bomb)
    run = mirror.sync()
    row = run.report[0]
    assert run.code == 1
    assert (row["outcome"], row["reason"]) == ("failed", "too-many-pixels")
    assert stamp(target) == before


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"<!DOCTYPE html><html><body>Oops</body></html>", "not-an-image", id="html"),
        pytest.param(bomb_png(), "too-many-pixels", id="bomb"),
    ],
)
def test_a_new_url_that_is_no_usable_image_leaves_no_file(
    mirror: Mirror, body: bytes, reason: str
) -> None:
    mirror.origin.publish("/bad.png", body)
    mirror.write_list(f"{mirror.url('/bad.png')} bad.png")
    run = mirror.sync()
    assert run.code == 1
    assert (run.report[0]["outcome"], run.report[0]["reason"]) == ("failed", reason)
    assert image_files(mirror.dest) == []


def test_503_then_200_is_retried_and_the_new_image_written(
    good: tuple[Mirror, Path, tuple[int, int, bytes]],
) -> None:
    mirror, target, _ = good
    edited = boxed(pictures()["/gradient.png"])
    mirror.origin.publish(GOOD, edited)
    mirror.origin.fault(GOOD, "status", code=503, times=2)
    mirror.origin.clear_log()
    run = mirror.sync()
    assert run.code == 0, run.err
    row = run.report[0]
    assert (row["outcome"], row["reason"], row["http_status"]) == ("changed", "dissimilar", 200)
    assert [r.status for r in mirror.origin.requests_for(GOOD)] == [503, 503, 200]
    assert target.read_bytes() == edited


def test_429_with_retry_after_waits_then_succeeds(
    good: tuple[Mirror, Path, tuple[int, int, bytes]],
) -> None:
    mirror, target, before = good
    mirror.origin.fault(GOOD, "retry-after", code=429, value="1", times=1)
    mirror.origin.clear_log()
    run = mirror.sync()
    assert run.code == 0, run.err
    assert (run.report[0]["outcome"], run.report[0]["reason"]) == ("unchanged", "not-modified")
    sent = mirror.origin.requests_for(GOOD)
    assert [r.status for r in sent] == [429, 304]
    assert sent[1].at - sent[0].at >= 0.95  # Retry-After honoured, not the tiny backoff
    assert stamp(target) == before


def test_retries_give_up_after_the_configured_count(
    good: tuple[Mirror, Path, tuple[int, int, bytes]],
) -> None:
    mirror, target, before = good
    mirror.origin.fault(GOOD, "status", code=503)
    mirror.origin.clear_log()
    run = mirror.sync()
    assert run.code == 1
    row = run.report[0]
    assert (row["reason"], row["http_status"]) == ("http-503", 503)
    assert len(mirror.origin.requests_for(GOOD)) == FAST["http"]["retries"] + 1
    assert stamp(target) == before


# -- exit codes and output ---------------------------------------------------------------------
def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_report_has_one_object_per_url_with_the_design_fields(mirror: Mirror) -> None:
    mirror.write_list(
        mirror.url("/gradient.png"), mirror.url("/missing.png"), "not a url", "# comment"
    )
    run = mirror.sync()
    assert run.code == 1
    assert len(run.report) == 3
    for row in run.report:
        assert set(row) >= set(DESIGN_FIELDS), row
        assert row["outcome"] in ("new", "changed", "unchanged", "failed")
        assert isinstance(row["elapsed"], float) and row["elapsed"] >= 0
    ok, missing = run.by_url[mirror.url("/gradient.png")], run.by_url[mirror.url("/missing.png")]
    bad = run.by_url["not"]  # a bad line reports what it has for a URL
    assert (ok["outcome"], ok["http_status"], ok["bytes"], ok["error"]) == (
        "new",
        200,
        len(pictures()["/gradient.png"]),
        None,
    )
    assert ok["ssim"] is None and ok["nrmse"] is None and ok["local_edit"] is None
    assert (missing["outcome"], missing["reason"], missing["http_status"]) == (
        "failed",
        "http-404",
        404,
    )
    assert (bad["outcome"], bad["reason"]) == ("failed", "bad-url")
    assert "line 3" in bad["error"]


def test_exit_0_when_all_ok_and_one_summary_line_off_a_terminal(mirror: Mirror) -> None:
    run = mirror.sync()
    assert run.code == 0
    assert run.err == ""
    lines = run.out.splitlines()
    assert len(lines) == 1
    match = SUMMARY.match(lines[0])
    assert match, lines[0]
    assert [int(n) for n in match.groups()] == [len(pictures()), 0, 0, 0]
    total = sum(map(len, pictures().values()))
    assert f"{total / 1000:.1f} kB" in lines[0]


def test_exit_1_when_any_url_failed(mirror: Mirror) -> None:
    mirror.write_list(mirror.url("/gradient.png"), mirror.url("/nothing-here.png"))
    run = mirror.sync()
    assert run.code == 1
    match = SUMMARY.match(run.out.strip())
    assert match, run.out
    assert [int(n) for n in match.groups()] == [1, 0, 0, 1]
    assert mirror.url("/nothing-here.png") in run.err


def test_quiet_prints_nothing_on_success_and_only_failures_otherwise(mirror: Mirror) -> None:
    run = mirror.sync("-q")
    assert (run.code, run.out, run.err) == (0, "", "")
    mirror.origin.fault("/gradient.png", "status", code=410)
    run = mirror.sync("-q")
    assert run.code == 1
    assert run.out == ""
    assert len(run.err.splitlines()) == 1
    assert mirror.url("/gradient.png") in run.err and "410" in run.err


def test_report_to_stdout_keeps_stdout_pure_json(
    mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["sync", str(mirror.list), "--dest", str(mirror.dest), "--config", str(mirror.config)]
    code, out, err = _main([*argv, "--report", "-"], capsys)
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["url"] for r in rows) == sorted(map(mirror.url, pictures()))
    assert len(err.splitlines()) == 1 and SUMMARY.match(err.strip())


@pytest.mark.parametrize(
    ("flags", "merged"),
    [(["--report", "-"], False), (["-v"], False), (["-v"], True)],
    ids=["report-to-stdout|head-1", "verbose|head-1", "verbose-2>&1|head-1"],
)
def test_a_closed_pipe_stops_the_run_quietly_like_a_unix_tool(
    mirror: Mirror, flags: list[str], merged: bool
) -> None:
    """``fetcher sync ... | head -1``: no traceback, exit 141, what finished is recorded."""
    go = threading.Event()
    mirror.origin.publish("/first.png", pictures()["/gradient.png"])
    later = [f"/later/{i}.png" for i in range(6)]
    for path in later:
        mirror.origin.publish(path, pictures()["/cats/chelsea.png"])
        mirror.origin.fault(path, "wait", event=go)
    mirror.write_list(f"{mirror.url('/first.png')} first.png", *map(mirror.url, later))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    argv = [sys.executable, "-m", "fetcher", "sync", str(mirror.list), "--dest", str(mirror.dest)]
    err_file = mirror.tmp / "stderr.txt"
    with err_file.open("wb") as err:
        child = subprocess.Popen(
            [*argv, "--config", str(mirror.config), *flags],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if merged else err,
            env=env,
        )
        try:
            assert child.stdout is not None
            first = child.stdout.readline()  # what head -1 reads; then it exits
            child.stdout.close()
        finally:
            go.set()  # now the other URLs finish, and their lines meet the closed pipe
        code = child.wait(timeout=60)
    assert b"first.png" in first
    assert code == 141, (code, err_file.read_text())
    assert "Traceback" not in err_file.read_text() and "Error" not in err_file.read_text()
    with State.open(mirror.dest / ".fetcher" / "state.sqlite3") as state:
        recorded = state.get(mirror.url("/first.png"), "first.png")
    assert recorded is not None and recorded.size == len(pictures()["/gradient.png"])
    assert not list(mirror.dest.rglob(".fetcher-tmp-*"))


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal, keeping every byte written to it."""

    def isatty(self) -> bool:
        return True


def screen(text: str) -> list[str]:
    """What a terminal shows of ``text``: each line as its last carriage return left it."""
    return [line.rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")]


def test_on_a_terminal_lines_go_above_the_bar_and_the_table_lists_what_changed(
    mirrored: tuple[Mirror, Run], monkeypatch: pytest.MonkeyPatch
) -> None:
    mirror, first = mirrored
    mirror.origin.publish("/photos/coffee.png", boxed(pictures()["/photos/coffee.png"]))
    missing = [mirror.url(f"/missing/{i}.png") for i in range(3)]
    mirror.write_list(*(row["url"] + " " + row["path"] for row in first.report), *missing)
    err, out = FakeTerminal(), FakeTerminal()
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(sys, "stdout", out)
    argv = ["sync", str(mirror.list), "--dest", str(mirror.dest), "--config", str(mirror.config)]
    assert main(argv) == 1
    shown = screen(err.getvalue())
    failures = [line for line in shown if "fetcher:" in line]
    assert len(failures) == 3
    assert all(line.startswith("fetcher: line ") for line in failures), failures  # not in the bar
    assert "0/7 [" in err.getvalue()  # the bar knows the total (a regular file): an ETA
    table = out.getvalue()
    assert "changed:\n  coffee.png\n" in table and "7 URLs" in table


def test_bad_config_key_exits_2_with_one_line_naming_it(
    mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(mirror.tmp / "bad.toml", {"http": {"retrys": 3}})
    code, out, err = _main(
        ["sync", str(mirror.list), "--dest", str(mirror.dest), "--config", str(config)], capsys
    )
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "retrys" in err and "Traceback" not in err
    assert mirror.origin.requests == []


def test_unreadable_url_list_exits_2(mirror: Mirror, capsys: pytest.CaptureFixture[str]) -> None:
    missing = mirror.tmp / "no-such-list.txt"
    code, _, err = _main(["sync", str(missing), "--dest", str(mirror.dest)], capsys)
    assert code == 2
    assert str(missing) in err and len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_a_held_lock_exits_2_naming_the_lock(
    mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    with DestinationLock(mirror.dest) as lock:
        code, _, err = _main(
            ["sync", str(mirror.list), "--dest", str(mirror.dest), "--config", str(mirror.config)],
            capsys,
        )
        assert code == 2
        assert str(lock.path) in err and str(os.getpid()) in err
        assert len(err.strip().splitlines()) == 1
    assert mirror.origin.requests == []
    assert image_files(mirror.dest) == []
    code, _, _ = _main(
        ["sync", str(mirror.list), "--dest", str(mirror.dest), "--config", str(mirror.config)],
        capsys,
    )
    assert code == 0  # released: the next run goes ahead


def test_a_destination_that_cannot_be_a_folder_exits_2(
    mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = mirror.tmp / "blocker"
    blocker.write_bytes(b"a file where the destination folder should be")
    code, out, err = _main(
        ["sync", str(mirror.list), "--dest", str(blocker), "--config", str(mirror.config)], capsys
    )
    assert code == 2
    assert out == "" and str(blocker) in err and "Traceback" not in err
    assert mirror.origin.requests == []


def test_the_url_list_can_come_from_stdin(
    mirror: Mirror, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(mirror.list.read_text("utf-8")))
    code, out, _ = _main(
        ["sync", "-", "--dest", str(mirror.dest), "--config", str(mirror.config)], capsys
    )
    assert code == 0
    match = SUMMARY.match(out.strip())
    assert match and int(match.group(1)) == len(pictures())
    assert sorted(p.read_bytes() for p in image_files(mirror.dest)) == sorted(pictures().values())


def test_garbage_state_file_exits_2_naming_it(
    mirror: Mirror, capsys: pytest.CaptureFixture[str]
) -> None:
    state = mirror.dest / ".fetcher" / "state.sqlite3"
    state.parent.mkdir(parents=True)
    state.write_bytes(b"this is not a database, just some bytes " * 40)
    code, _, err = _main(
        ["sync", str(mirror.list), "--dest", str(mirror.dest), "--config", str(mirror.config)],
        capsys,
    )
    assert code == 2
    assert str(state) in err and "Traceback" not in err
    assert state.read_bytes().startswith(b"this is not a database")  # never reset silently
    with pytest.raises(StateError, match=re.escape(str(state))):
        sync([mirror.url("/gradient.png")], mirror.dest)
    assert mirror.origin.requests == []


def test_python_m_fetcher_sync_in_a_subprocess(mirror: Mirror) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    argv = [sys.executable, "-m", "fetcher", "sync", str(mirror.list), "--dest", str(mirror.dest)]
    proc = subprocess.run(
        [*argv, "--config", str(mirror.config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    match = SUMMARY.match(proc.stdout.strip())
    assert match, proc.stdout
    assert [int(n) for n in match.groups()] == [len(pictures()), 0, 0, 0]
    assert sorted(p.read_bytes() for p in image_files(mirror.dest)) == sorted(pictures().values())


# -- the library -------------------------------------------------------------------------------
def test_sync_takes_url_path_pairs(mirror: Mirror) -> None:
    pairs: list[tuple[str, str | None]] = [
        (mirror.url("/photos/coffee.png"), "a/coffee.png"),
        (mirror.url("/gradient.png"), None),
    ]
    report = sync(pairs, mirror.dest)
    assert report.exit_code == 0
    assert report.counts["new"] == 2 and report.total == 2
    assert (mirror.dest / "a/coffee.png").read_bytes() == pictures()["/photos/coffee.png"]
    derived = mirror.dest / f"127.0.0.1_{mirror.origin.port}" / "gradient.png"
    assert derived.read_bytes() == pictures()["/gradient.png"]
    again = sync(pairs, mirror.dest)
    assert again.reasons["unchanged"]["not-modified"] == 2


def test_sync_takes_list_lines_and_goes_on_past_bad_ones(mirror: Mirror) -> None:
    outside = mirror.tmp / "x"
    lines = [
        "# a list with problems",
        f"{mirror.url('/photos/coffee.png')} pics/one.png",
        "ftp://example.com/a.png",
        f"{mirror.url('/gradient.png')} pics/one.png",
        f"{mirror.url('/gradient.png')} ../x",
        f"{mirror.url('/cats/chelsea.png')} pics/two.png",
    ]
    results: list[Result] = []
    report = sync(iter(lines), mirror.dest, on_result=results.append)
    assert report.exit_code == 1
    assert len(results) == 5
    by_line = {r.line: r for r in results}
    assert (by_line[3].outcome, by_line[3].reason) == ("failed", "bad-url")
    assert "line 3" in str(by_line[3].error)
    assert (by_line[4].outcome, by_line[4].reason) == ("failed", "unsafe-path")
    assert "line 2" in str(by_line[4].error)  # names the entry that has the path
    assert (by_line[5].outcome, by_line[5].reason) == ("failed", "unsafe-path")
    assert (by_line[2].outcome, by_line[6].outcome) == ("new", "new")
    # the first entry keeps its path; the refused ones fetched nothing
    assert (mirror.dest / "pics/one.png").read_bytes() == pictures()["/photos/coffee.png"]
    assert (mirror.dest / "pics/two.png").read_bytes() == pictures()["/cats/chelsea.png"]
    assert mirror.origin.requests_for("/gradient.png") == []
    assert not outside.exists()
    assert report.counts == {"new": 2, "failed": 3}


@pytest.mark.parametrize("kind", ["str", "Path", "binary file", "text file", "bytes lines"])
def test_sync_takes_a_list_file_by_path_or_open_or_its_lines(mirror: Mirror, kind: str) -> None:
    """The rule: str, bytes or path-like is the list file's path; anything else is iterated."""
    urls: Any
    with contextlib.ExitStack() as stack:
        if kind == "str":
            urls = str(mirror.list)
        elif kind == "Path":
            urls = mirror.list
        elif kind == "binary file":
            urls = stack.enter_context(mirror.list.open("rb"))
        elif kind == "text file":
            urls = stack.enter_context(mirror.list.open(encoding="utf-8"))
        else:
            urls = mirror.list.read_bytes().splitlines()
        report = sync(urls, mirror.dest)
    assert (report.counts["new"], report.total) == (len(pictures()), len(pictures()))


def test_sync_of_a_missing_list_file_names_it_and_hints_at_a_url(mirror: Mirror) -> None:
    with pytest.raises(ListError, match=r"cannot read URL list 'nope\.txt': No such file"):
        sync("nope.txt", mirror.dest)
    url = mirror.url("/gradient.png")
    with pytest.raises(ListError, match=re.escape(f"pass a list: sync([{url!r}], ...)")):
        sync(url, mirror.dest)
    assert not mirror.dest.exists() and mirror.origin.requests == []


def test_a_list_not_in_utf_8_names_the_line_and_the_byte(mirror: Mirror) -> None:
    good = mirror.url("/gradient.png")
    text = f"{good}\n{mirror.url('/café.png')} café.png\n"
    mirror.list.write_bytes(text.encode("latin-1"))
    run = mirror.sync()
    assert run.code == 1
    bad = next(row for row in run.report if row["outcome"] == "failed")
    assert (bad["line"], bad["reason"]) == (2, "bad-url")
    column = len(mirror.url("/caf")) + 1
    assert bad["error"].startswith(f"line 2: not UTF-8: byte 0xE9 at column {column} ")
    assert bad["error"] in run.err
    assert run.by_url[good]["outcome"] == "new"  # the other lines go on
    assert mirror.origin.requests_for("/caf\ufffd.png") == []


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--workers", "-1"], "argument --workers: must be a positive integer, not -1"),
        (["--workers", "two"], "argument --workers: must be a positive integer, not 'two'"),
        (["--scheduler", "nowhere"], "argument --scheduler: must be 'local' or an address"),
    ],
)
def test_a_bad_flag_is_one_line_naming_the_flag(
    mirror: Mirror, capsys: pytest.CaptureFixture[str], flags: list[str], words: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["sync", str(mirror.list), "--dest", str(mirror.dest), *flags])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"fetcher: {words}") and err.count("\n") == 1, err
    assert "sync.workers" not in err and not mirror.dest.exists()


def test_sync_runs_on_the_callers_executor_and_leaves_it_open(mirror: Mirror) -> None:
    with cf.ThreadPoolExecutor(max_workers=2) as pool:
        report = sync(map(mirror.url, pictures()), mirror.dest, executor=pool)
        assert report.counts["new"] == len(pictures())
        assert pool.submit(lambda: 41 + 1).result(timeout=5) == 42


class _TrackedSession(requests.Session):
    def __init__(self) -> None:
        super().__init__()
        self.closed = 0
        self.sent = 0

    def close(self) -> None:
        self.closed += 1
        super().close()

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        self.sent += 1
        return super().request(*args, **kwargs)


def test_sync_one_uses_the_callers_session_and_does_not_close_it(
    origin: Origin, tmp_path: Path
) -> None:
    body = pictures()["/photos/coffee.png"]
    origin.publish("/c.png", body)
    session = _TrackedSession()
    session.headers["X-Scraper"] = "nightly-42"
    target = tmp_path / "deep" / "c.png"
    result = sync_one(origin.url("/c.png"), target, session=session)
    assert (result.outcome, result.reason, result.http_status) == ("new", "new", 200)
    assert target.read_bytes() == body
    assert session.sent == 1 and session.closed == 0
    assert header(origin.requests_for("/c.png")[0], "X-Scraper") == "nightly-42"
    # no state: a second call fetches in full and finds the same bytes
    again = sync_one(origin.url("/c.png"), target, session=session)
    assert (again.outcome, again.reason) == ("unchanged", "identical-bytes")
    assert header(origin.requests_for("/c.png")[1], "If-None-Match") is None
    assert session.sent == 2 and session.closed == 0
    session.close()


def test_sync_one_reports_failures_as_results(origin: Origin, tmp_path: Path) -> None:
    target = tmp_path / "x.png"
    bad = sync_one("not a url", target)
    assert (bad.outcome, bad.reason) == ("failed", "bad-url")
    missing = sync_one(origin.url("/absent.png"), target)
    assert (missing.outcome, missing.reason, missing.http_status) == ("failed", "http-404", 404)
    assert not target.exists()


@pytest.mark.parametrize("processes", [True, False], ids=["processes", "threads"])
def test_compares_decide_alike_in_worker_processes_and_in_threads(
    mirror: Mirror, processes: bool
) -> None:
    originals = pictures()
    pairs: list[tuple[str, str | None]] = [(mirror.url(p), None) for p in originals]
    config = load_config(sync={"processes": processes, "compare_workers": 2})
    assert sync(pairs, mirror.dest, config).counts["new"] == len(originals)
    mirror.origin.publish(
        "/photos/astronaut.jpg",
        reencoded_q90(originals["/photos/astronaut.jpg"]),
        content_type="image/jpeg",
    )
    mirror.origin.publish("/photos/coffee.png", boxed(originals["/photos/coffee.png"]))
    seen: dict[str, str] = {}
    report = sync(pairs, mirror.dest, config, on_result=lambda r: seen.__setitem__(r.url, r.reason))
    assert report.exit_code == 0
    assert seen[mirror.url("/photos/astronaut.jpg")] == "similar"
    assert seen[mirror.url("/photos/coffee.png")] == "dissimilar"


def test_the_array_stack_loads_only_when_a_download_needs_it(
    origin: Origin, tmp_path: Path
) -> None:
    """A run whose URLs all answer 304 never pays for importing numpy, scipy or Pillow."""
    for name, body in list(pictures().items())[:3]:
        origin.publish(name, body)
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(origin.url(name) + "\n" for name in list(pictures())[:3]))
    dest = tmp_path / "dest"
    assert sync(urls.read_text().splitlines(), dest).counts["new"] == 3
    code = (
        "import sys, fetcher, fetcher.cli\n"
        "heavy = ('numpy', 'scipy', 'PIL')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
        f"report = fetcher.sync(open({str(urls)!r}), {str(dest)!r})\n"
        "print(dict(report.reasons['unchanged']), sorted(m for m in heavy if m in sys.modules))\n"
        "from PIL import Image\n"
        "img = Image.new('RGB', (16, 16), (10, 20, 30))\n"
        "c = fetcher.compare(img, img.copy())\n"
        "module = sys.modules['fetcher.comparison']\n"
        "print(c.reason, fetcher.compare is module.compare, 'numpy' in sys.modules)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert run.stdout.splitlines() == [
        "[]",
        "{'not-modified': 3} []",
        "identical-pixels True True",
    ]
