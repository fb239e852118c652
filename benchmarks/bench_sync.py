"""Benchmark ``fetcher sync`` against ``wget -N -x -i LIST`` on a loopback origin.

Usage::

    python benchmarks/bench_sync.py [-n 300] [--size 1280x960] [--rss-lines 100000]
                                    [--rss-base 1000] [--wget PATH] [--strict]

Starts an HTTP/1.1 origin on 127.0.0.1 (in this process, keep-alive, ``ETag`` and
``Last-Modified`` on every answer, ``304`` to ``If-None-Match`` and, when no
``If-None-Match`` is sent, to ``If-Modified-Since``; GET and HEAD) serving N generated
photographs (``fetcher.demo.sample_image``, JPEG quality 90), then runs, each as a
child process on the same URL list:

(0) fetcher alone on an empty list: its fixed cost per run (interpreter, imports,
    lock, state, workers), the floor under every other row;
(a) the first sync into an empty folder: ``python -m fetcher sync LIST --dest D
    --no-progress -q`` and ``wget -q -N -x -i LIST -P D2``;
(b) a refresh with nothing changed, both tools again;
(c) fetcher alone after the origin re-encoded every image (JPEG quality 85, new ETag
    and Last-Modified: every URL is downloaded and goes through the similarity rung);
(d) fetcher alone after the origin changed every tenth image visibly (a box and a
    caption; the rest answer 304);
(e) fetcher's peak RSS on a list of ``--rss-lines`` URLs against one of ``--rss-base``
    URLs. Those URLs (``/tiny/K/I.png``) all serve the same 16x16 PNG of 100-odd bytes:
    every line still costs a parsed entry, a path claim, a request, a decode, a file
    and a state record, while the origin stays cheap enough for 100 000 lines. Both
    lists are synced twice (first sync, then the 304 refresh) and both runs count.

Each child is started through a small wrapper interpreter that forks, execs and
waits for it (``os.wait4``): wall time from fork to exit, CPU time (user + system) and peak RSS
from the ``getrusage`` figures of that one child, not the running maximum of
``RUSAGE_CHILDREN`` over every child so far. (Linux counts the size a process had just
before ``exec`` in its peak RSS, so the wrapper's size at fork is a floor; it is
measured with ``true`` and printed.) The origin runs in this process, so its CPU is in
no child's figures (it serves both tools alike).

Checks (exit 1 if one fails): after (a) both folders hold the origin's exact bytes;
after (b) fetcher downloaded no body; after (c) no file changed on disk (every
re-encode judged similar); after (d) exactly the edited tenth was rewritten. Targets
(from issue 5, ratios from this one run) are printed PASS or MISS; ``--strict`` makes
a MISS exit 1 too. wget is not installed by this benchmark: when it is missing its
rows and the ratios against it are skipped and the table says so.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fetcher.demo import sample_image  # noqa: E402

EDIT_EVERY = 10  # (d): one image in ten changes visibly


# -- the origin --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    """One published body with its validators."""

    body: bytes
    etag: str
    last_modified: str  # HTTP-date
    modified: float  # POSIX seconds, whole


def make_item(body: bytes, when: float) -> Item:
    """Publish ``body`` as last modified at ``when`` (ETag from its digest)."""
    when = float(int(when))
    etag = '"' + hashlib.sha256(body).hexdigest()[:20] + '"'
    return Item(body, etag, formatdate(when, usegmt=True), when)


def _etag_matches(header: str, etag: str) -> bool:
    """If-None-Match: weak comparison against a list, or ``*`` (RFC 9110 13.1.2)."""
    if header.strip() == "*":
        return True
    strong = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == strong for tag in header.split(","))


def _not_modified(headers: Any, item: Item) -> bool:
    inm = headers.get("If-None-Match")
    if inm is not None:
        return _etag_matches(inm, item.etag)  # If-Modified-Since is then ignored
    ims = headers.get("If-Modified-Since")
    if ims is None:
        return False
    try:
        since = parsedate_to_datetime(ims).timestamp()
    except (TypeError, ValueError, IndexError):
        return False
    return item.modified <= since


class Origin:
    """A keep-alive HTTP/1.1 server on 127.0.0.1 with validators and 304s, GET and HEAD.

    ``/tiny/...`` paths all serve the one ``tiny`` item; other paths what was published.
    ``counts`` tallies answers by method and status (e.g. ``"GET 200"``).
    """

    def __init__(self, tiny: Item) -> None:
        self.files: dict[str, Item] = {}
        self.tiny = tiny
        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # TCP_NODELAY, as nginx and Apache set: http.server writes the head and the
            # body separately, and without it a short body waits for the client's
            # delayed ACK (40 ms on Linux) after every answer.
            disable_nagle_algorithm = True

            def do_GET(self) -> None:
                self._answer(with_body=True)

            def do_HEAD(self) -> None:
                self._answer(with_body=False)

            def _answer(self, *, with_body: bool) -> None:
                path = self.path.split("?", 1)[0]
                item = origin.tiny if path.startswith("/tiny/") else origin.files.get(path)
                if item is None:
                    status = 404
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif _not_modified(self.headers, item):
                    status = 304
                    self.send_response(304)
                    self.send_header("ETag", item.etag)
                    self.send_header("Last-Modified", item.last_modified)
                    self.end_headers()
                else:
                    status = 200
                    self.send_response(200)
                    self.send_header(
                        "Content-Type", "image/jpeg" if path.endswith(".jpg") else "image/png"
                    )
                    self.send_header("Content-Length", str(len(item.body)))
                    self.send_header("ETag", item.etag)
                    self.send_header("Last-Modified", item.last_modified)
                    self.end_headers()
                    if with_body:
                        self.wfile.write(item.body)
                key = f"{self.command} {status}"
                with origin._lock:
                    origin.counts[key] = origin.counts.get(key, 0) + 1

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self._server = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> Origin:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def take_counts(self) -> dict[str, int]:
        """The answers since the last call, then start counting afresh."""
        with self._lock:
            counts, self.counts = self.counts, {}
        return counts


# -- the pictures ------------------------------------------------------------------------------


def _jpeg(img: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _edit(img: Image.Image, seed: int) -> Image.Image:
    """A visible edit: a filled box over about 2 % of the picture and a caption."""
    out = img.copy()
    w, h = out.size
    draw = ImageDraw.Draw(out)
    x, y = (seed * 37) % (w * 3 // 4), (seed * 53) % (h * 3 // 4)
    draw.rectangle([x, y, x + w // 7, y + h // 7], fill=(250, 250, 250))
    draw.text((12, h - 24), f"(c) 2026 example.org #{seed}", fill=(255, 255, 0))
    return out


def make_picture(seed: int, size: tuple[int, int]) -> tuple[bytes, bytes, bytes | None]:
    """One photograph: original (q 90), its re-encode (q 85), its visible edit (every 10th)."""
    img = sample_image(seed, size)
    edited = _jpeg(_edit(img, seed), 90) if seed % EDIT_EVERY == 0 else None
    return _jpeg(img, 90), _jpeg(img, 85), edited


def tiny_png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 140, 200)).save(buf, format="PNG")
    return buf.getvalue()


# -- running and measuring a child ---------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One measured child process."""

    label: str
    tool: str
    images: int
    wall: float
    cpu: float  # user + system seconds of the child
    rss_mib: float  # peak resident set of the child
    status: int
    served: dict[str, int]

    @property
    def load(self) -> float:
        """CPU time / wall time: how many cores were busy on average."""
        return self.cpu / self.wall if self.wall > 0 else 0.0


# The child is started by this small interpreter (fork, exec, wait4), not by the benchmark
# itself: Linux counts the resident size a process had just before exec() in its peak
# RSS, so a child forked (or vforked) straight from the benchmark, which holds every
# picture, would report the benchmark's size. This wrapper's own anonymous memory at
# fork is the floor a reading cannot go below; it is measured and printed.
_WRAPPER = """
import os, sys, time
fd = int(sys.argv[1])
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.close(fd)
    try:
        os.execvp(sys.argv[2], sys.argv[2:])
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - started
os.write(fd, f"{wall} {ru.ru_utime + ru.ru_stime} {ru.ru_maxrss}".encode())
sys.exit(os.waitstatus_to_exitcode(status))
"""


def measure(label: str, tool: str, cmd: list[str], origin: Origin, images: int, log: Path) -> Run:
    """Run ``cmd`` to completion: its wall time, and CPU and peak RSS of it alone."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    origin.take_counts()
    read_end, write_end = os.pipe()
    try:
        with open(log, "ab") as out:
            out.write(f"\n$ {' '.join(cmd)}\n".encode())
            out.flush()
            status = subprocess.call(
                [sys.executable, "-I", "-S", "-c", _WRAPPER, str(write_end), *cmd],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=env,
                pass_fds=(write_end,),
            )
        os.close(write_end)
        write_end = -1
        with os.fdopen(read_end, "rb") as reading:
            read_end = -1
            wall, cpu, rss_kib = (float(v) for v in reading.read().split())
    finally:
        for fd in (read_end, write_end):
            if fd >= 0:
                os.close(fd)
    return Run(
        label=label,
        tool=tool,
        images=images,
        wall=wall,
        cpu=cpu,
        rss_mib=rss_kib / 1024,  # ru_maxrss is in KiB on Linux
        status=status,
        served=origin.take_counts(),
    )


def fetcher_cmd(url_list: Path, dest: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "fetcher",
        "sync",
        str(url_list),
        "--dest",
        str(dest),
        "--no-progress",
        "-q",
    ]


def wget_cmd(wget: str, url_list: Path, dest: Path) -> list[str]:
    return [wget, "-q", "-N", "-x", "-i", str(url_list), "-P", str(dest)]


def contents(folder: Path) -> dict[str, str]:
    """File name -> SHA-256 of every file under ``folder`` outside fetcher's state folder."""
    found = {}
    for path in folder.rglob("*"):
        if path.is_file() and ".fetcher" not in path.parts:
            found[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def digests(bodies: dict[str, bytes]) -> dict[str, str]:
    return {name: hashlib.sha256(body).hexdigest() for name, body in bodies.items()}


# -- the report --------------------------------------------------------------------------------


def _served(counts: dict[str, int]) -> str:
    return " ".join(f"{k}x{v}" for k, v in sorted(counts.items())) or "-"


def table(runs: list[Run]) -> str:
    head = (
        f"{'scenario':30} {'tool':8} {'images':>7} {'wall s':>8} {'CPU s':>7} "
        f"{'CPU/wall':>8} {'img/s':>8} {'peak RSS':>10}  origin answered"
    )
    lines = [head, "-" * len(head)]
    for r in runs:
        lines.append(
            f"{r.label:30} {r.tool:8} {r.images:7d} {r.wall:8.2f} {r.cpu:7.2f} {r.load:8.2f} "
            f"{r.images / r.wall:8.0f} {r.rss_mib:7.1f} MiB  {_served(r.served)}"
        )
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# -- the run -----------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="photographs served (default 300)")
    parser.add_argument("--size", type=parse_size, default=(1280, 960), help="WxH of each")
    parser.add_argument("--rss-lines", type=int, default=100_000, help="the long list (e)")
    parser.add_argument("--rss-base", type=int, default=1_000, help="the short list (e)")
    parser.add_argument("--wget", default="wget", help="wget to compare with (name or path)")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: temp)")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    n: int = args.n
    wget = shutil.which(args.wget)
    cores = os.cpu_count() or 1

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-sync-"))
    work.mkdir(parents=True, exist_ok=True)
    log = work / "children.log"
    print(
        f"bench_sync: {n} photographs {args.size[0]}x{args.size[1]}, JPEG q90; {cores} cores;"
        f" work folder {work}"
    )
    if wget is None:
        print(
            f"wget ({args.wget}) not found: its rows and the ratios against it are skipped"
            " (this benchmark installs nothing)"
        )
    else:
        version = subprocess.run([wget, "--version"], capture_output=True, text=True).stdout
        print(f"comparing with {wget}: {version.splitlines()[0] if version else '?'}")

    started = time.perf_counter()
    with cf.ProcessPoolExecutor(max_workers=cores) as pool:
        pictures = list(pool.map(make_picture, range(n), [args.size] * n, chunksize=4))
    names = [f"{i:05d}.jpg" for i in range(n)]
    print(
        f"generated in {time.perf_counter() - started:.1f} s; mean JPEG"
        f" {sum(len(p[0]) for p in pictures) / max(n, 1) / 1024:.0f} KiB"
    )

    failures: list[str] = []
    runs: list[Run] = []
    with Origin(make_item(tiny_png(), 0)) as idle:
        floor = measure("floor", "true", ["true"], idle, 0, log).rss_mib
    print(f"peak RSS floor of the measuring wrapper (its size at fork): {floor:.1f} MiB")

    def check(ok: bool, what: str) -> None:
        if not ok:
            failures.append(what)

    now = time.time()
    with Origin(make_item(tiny_png(), now - 86400)) as origin:
        url_list = work / "urls.txt"
        url_list.write_text("".join(origin.url(f"/img/{name}") + "\n" for name in names))
        mine, theirs = work / "fetcher", work / "wget"
        for folder in (mine, theirs):
            shutil.rmtree(folder, ignore_errors=True)
        original = dict(zip(names, (p[0] for p in pictures), strict=True))
        for name, body in original.items():
            origin.files[f"/img/{name}"] = make_item(body, now - 86400)

        def both(label: str) -> None:
            runs.append(measure(label, "fetcher", fetcher_cmd(url_list, mine), origin, n, log))
            if wget is not None:
                runs.append(
                    measure(label, "wget", wget_cmd(wget, url_list, theirs), origin, n, log)
                )

        empty = work / "empty.txt"
        empty.write_text("")
        runs.append(
            measure(
                "(0) start-up: empty list",
                "fetcher",
                fetcher_cmd(empty, work / "e"),
                origin,
                0,
                log,
            )
        )
        both("(a) first sync, empty folder")
        check(contents(mine) == digests(original), "(a) fetcher's folder != the origin")
        if wget is not None:
            check(contents(theirs) == digests(original), "(a) wget's folder != the origin")
        both("(b) refresh, nothing changed")
        check(
            runs[-2 if wget else -1].served.get("GET 200", 0) == 0, "(b) fetcher downloaded a body"
        )

        for name, (_, reencoded, _) in zip(names, pictures, strict=True):
            origin.files[f"/img/{name}"] = make_item(reencoded, now - 3600)
        runs.append(
            measure("(c) all re-encoded", "fetcher", fetcher_cmd(url_list, mine), origin, n, log)
        )
        check(contents(mine) == digests(original), "(c) a re-encoded image was rewritten")

        expected = dict(original)
        for name, (_, _, edited) in zip(names, pictures, strict=True):
            if edited is not None:
                origin.files[f"/img/{name}"] = make_item(edited, now - 60)
                expected[name] = edited
        runs.append(
            measure(
                "(d) 10 % edited visibly", "fetcher", fetcher_cmd(url_list, mine), origin, n, log
            )
        )
        check(contents(mine) == digests(expected), "(d) not exactly the edited images rewritten")

        rss_runs: dict[int, list[Run]] = {}
        for lines in (args.rss_base, args.rss_lines):
            listing = work / f"tiny-{lines}.txt"
            listing.write_text(
                "".join(origin.url(f"/tiny/{i // 1000}/{i}.png") + "\n" for i in range(lines))
            )
            dest = work / f"tiny-{lines}"
            shutil.rmtree(dest, ignore_errors=True)
            rss_runs[lines] = [
                measure(
                    f"(e) {lines}-line list, first",
                    "fetcher",
                    fetcher_cmd(listing, dest),
                    origin,
                    lines,
                    log,
                ),
                measure(
                    f"(e) {lines}-line list, refresh",
                    "fetcher",
                    fetcher_cmd(listing, dest),
                    origin,
                    lines,
                    log,
                ),
            ]
            runs.extend(rss_runs[lines])
            shutil.rmtree(dest, ignore_errors=True)
    for run in runs:
        check(run.status == 0, f"{run.label}: {run.tool} exited {run.status} (see {log})")

    print()
    print(table(runs))
    print()
    print("targets (issue 5):")
    by = {(r.label[:3], r.tool): r for r in runs}
    met: list[bool] = []
    for key, limit, what in (("(a)", 1.0, "first sync"), ("(b)", 0.5, "unchanged refresh")):
        if wget is None:
            print(f"  {what:30} fetcher/wget <= {limit:.1f}x   skipped (no wget)")
            continue
        ratio = by[(key, "fetcher")].wall / by[(key, "wget")].wall
        met.append(ratio <= limit)
        print(f"  {what:30} fetcher/wget <= {limit:.1f}x   {ratio:5.2f}x  {verdict(met[-1])}")
    if wget is not None:
        floor = by[("(0)", "fetcher")].wall
        print(
            f"  {'what bounds (a) and (b)':30} fetcher's fixed cost (interpreter, imports,"
            f" lock, state) {floor:.2f} s = {floor / by[('(b)', 'wget')].wall:.1f}x wget's"
            f" whole refresh, {floor / by[('(a)', 'wget')].wall:.1f}x its first sync"
        )
    load = by[("(c)", "fetcher")].load
    met.append(load >= 1.6)
    print(
        f"  {'(c) compares in flight':30} CPU/wall >= 1.6     {load:5.2f}   {verdict(met[-1])}"
        f"  ({cores} cores)"
    )
    print(f"  {'(d) for reference':30} CPU/wall            {by[('(d)', 'fetcher')].load:5.2f}")
    for index, phase in enumerate(("first sync", "refresh")):
        small, big = rss_runs[args.rss_base][index], rss_runs[args.rss_lines][index]
        growth = big.rss_mib / small.rss_mib
        met.append(growth <= 1.10)
        print(
            f"  RSS {args.rss_lines} vs {args.rss_base} lines, {phase:10} <= 1.10x  "
            f"{growth:5.2f}x  {verdict(met[-1])}  ({big.rss_mib:.1f} vs {small.rss_mib:.1f} MiB)"
        )
    for failure in failures:
        print(f"CHECK FAILED: {failure}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        return 1
    return 1 if args.strict and not all(met) else 0


if __name__ == "__main__":
    sys.exit(main())
