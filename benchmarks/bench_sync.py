"""Benchmark ``fetcher sync`` against ``wget -N`` and ``curl --parallel`` on a loopback origin.

Usage::

    python benchmarks/bench_sync.py [-n 300] [--size 1280x960] [--refresh-lines 1000]
                                    [--rtt MS] [--origin auto|nginx|python]
                                    [--rss-lines 0] [--rss-base 1000]
                                    [--wget PATH] [--curl PATH] [--strict]

The origin is nginx when it is installed (``apt-get install nginx-light``; ETag and
Last-Modified from the files, 304 to ``If-None-Match`` and ``If-Modified-Since``,
keep-alive), else an HTTP/1.1 server in this process (same validators, TCP_NODELAY), and
the first line says which. With ``--rtt MS`` a delay proxy in a process of its own sits in
front of the origin: every chunk of bytes is held ``MS / 2`` in each direction, and a new
connection waits one ``MS`` before its first byte is passed on (the handshake).

Rows, each a child process on the same URL list (N generated photographs, JPEG q90):

(0) fetcher alone on an empty list: its fixed cost per run (interpreter, imports, lock,
    state), the floor under every other row;
(a) the first sync into an empty folder: ``fetcher sync LIST --dest D --no-progress -q``,
    ``wget -q -N -x -i LIST -P D2`` and ``curl --parallel --parallel-max 8 -R -o FILE ...``
    (one output per URL, from a config file);
(b) a refresh with nothing changed, all three again (curl with ``-z FILE`` per URL);
(r) a refresh of ``--refresh-lines`` URLs with nothing changed (small PNGs, synced once
    first), all three (not with ``--rtt``);
(c) fetcher alone after the origin re-encoded every photograph (JPEG q85, new validators:
    every URL is downloaded and goes through the similarity rung) (not with ``--rtt``);
(d) fetcher alone after every tenth photograph changed visibly (not with ``--rtt``);
(e) with ``--rss-lines N``: fetcher's peak RSS on an N-line list of small PNGs against a
    ``--rss-base``-line one, first sync and refresh.

Each child is started through a small wrapper interpreter that forks, execs and waits for
it (``os.wait4``): wall time from fork to exit, CPU time (user + system) and peak RSS of
that one child and the children it waited for. CPU per URL is that CPU over the row's URLs.
The origin and the proxy are not in any child's figures.

Checks (exit 1 if one fails): after (a) every folder holds the origin's exact bytes; after
(b) fetcher downloaded no body; after (c) no file changed on disk; after (d) exactly the
edited tenth was rewritten. Targets (issue 11; ratios of wall times from this one run) are
printed PASS or MISS; ``--strict`` makes a MISS exit 1 too. wget and curl are not
installed by this benchmark: a tool that is missing has its rows and ratios skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures as cf
import contextlib
import hashlib
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

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


class PythonOrigin:
    """A keep-alive HTTP/1.1 server on 127.0.0.1 with validators and 304s, GET and HEAD.

    ``counts`` tallies answers by method and status (e.g. ``"GET 200"``).
    """

    name = "Python http.server origin (nginx not used)"

    def __init__(self, work: Path) -> None:
        self.files: dict[str, Item] = {}
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
                item = origin.files.get(path)
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

    def __enter__(self) -> PythonOrigin:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def publish(self, path: str, body: bytes, when: float) -> None:
        self.files[path] = make_item(body, when)

    def take_counts(self) -> dict[str, int]:
        """The answers since the last call, then start counting afresh."""
        with self._lock:
            counts, self.counts = self.counts, {}
        return counts


_NGINX_CONF = """daemon off;
worker_processes 1;
error_log {work}/nginx-error.log;
pid {work}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    log_format counts '$request_method $status';
    access_log {work}/nginx-access.log counts;
    client_body_temp_path {work}/nginx-tmp; proxy_temp_path {work}/nginx-tmp;
    fastcgi_temp_path {work}/nginx-tmp; uwsgi_temp_path {work}/nginx-tmp;
    scgi_temp_path {work}/nginx-tmp;
    types {{ image/jpeg jpg; image/png png; }}
    sendfile on; tcp_nopush on; tcp_nodelay on;
    keepalive_timeout 65; keepalive_requests 100000;
    server {{ listen 127.0.0.1:{port}; root {work}/www; etag on; }}
}}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_listening(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class NginxOrigin:
    """nginx serving files under WORK/www: ETag and Last-Modified from each file, 304s."""

    def __init__(self, work: Path, nginx: str) -> None:
        self.work = work
        self.nginx = nginx
        self.port = _free_port()
        self.name = f"nginx ({nginx})"
        self._log = work / "nginx-access.log"
        self._offset = 0
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> NginxOrigin:
        shutil.rmtree(self.work / "www", ignore_errors=True)
        (self.work / "www").mkdir(parents=True)
        for folder in (self.work.parent, self.work, self.work / "www"):
            folder.chmod(0o755)  # nginx's workers run as another user (nobody)
        (self.work / "nginx-tmp").mkdir(exist_ok=True)
        conf = self.work / "nginx.conf"
        conf.write_text(_NGINX_CONF.format(work=self.work, port=self.port))
        self._log.write_bytes(b"")
        self._proc = subprocess.Popen(
            [self.nginx, "-c", str(conf), "-p", str(self.work)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_listening(self.port)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)

    def publish(self, path: str, body: bytes, when: float) -> None:
        target = self.work / "www" / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(body)
        os.utime(target, (when, when))

    def take_counts(self) -> dict[str, int]:
        with self._log.open("rb") as log:
            log.seek(self._offset)
            data = log.read()
        self._offset += len(data)
        counts: dict[str, int] = {}
        for line in data.decode().splitlines():
            counts[line] = counts.get(line, 0) + 1
        return counts


# -- the delay proxy ---------------------------------------------------------------------------


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    """Pass bytes on, each chunk ``delay`` seconds after it arrived, in order."""
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def send() -> None:
        while True:
            due, data = await queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                break
            writer.write(data)
            await writer.drain()
        writer.close()

    sender = asyncio.create_task(send())
    try:
        while True:
            data = await reader.read(65536)
            queue.put_nowait((loop.time() + delay, data))
            if not data:
                break
        await sender
    except (ConnectionError, OSError):
        sender.cancel()
        writer.close()


def serve_proxy(upstream: int, rtt_ms: float) -> None:
    """Run the delay proxy (in its own process) until killed; print its port first."""
    half = rtt_ms / 2000

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(2 * half)  # the handshake's round trip
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", upstream)
        except OSError:
            client_w.close()
            return
        up_w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client_w.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.gather(_pipe(client_r, up_w, half), _pipe(up_r, client_w, half))

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=256)
        print(server.sockets[0].getsockname()[1], flush=True)
        await server.serve_forever()

    asyncio.run(main())


class DelayProxy:
    """``serve_proxy`` in a child process, in front of ``upstream``."""

    def __init__(self, upstream: int, rtt_ms: float) -> None:
        self._cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve-proxy",
            str(upstream),
            "--rtt",
            str(rtt_ms),
        ]
        self._proc: subprocess.Popen[str] | None = None
        self.port = 0

    def __enter__(self) -> DelayProxy:
        self._proc = subprocess.Popen(self._cmd, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        self.port = int(self._proc.stdout.readline())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait(10)


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


class Origin(Protocol):
    name: str
    port: int

    def publish(self, path: str, body: bytes, when: float) -> None: ...

    def take_counts(self) -> dict[str, int]: ...


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


FETCHER_ARGS: list[str] = []  # --fetcher-arg: extra arguments for every fetcher run


def fetcher_cmd(url_list: Path, dest: Path) -> list[str]:
    return [*_fetcher_cmd(url_list, dest), *FETCHER_ARGS]


def _fetcher_cmd(url_list: Path, dest: Path) -> list[str]:
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


def curl_cmd(curl: str, urls: list[str], dest: Path, config: Path, *, refresh: bool) -> list[str]:
    """``curl --parallel --parallel-max 8``, one output per URL (``-z FILE`` on a refresh)."""
    blocks = []
    for url in urls:
        out = dest / url.split("://", 1)[1].replace(":", "_")
        block = f'url = "{url}"\noutput = "{out}"\ncreate-dirs\nremote-time\n'
        if refresh:
            block += f'time-cond = "{out}"\n'
        blocks.append(block)
    config.write_text("next\n".join(blocks))
    return [curl, "--parallel", "--parallel-max", "8", "-s", "-K", str(config)]


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
        f"{'scenario':32} {'tool':8} {'URLs':>6} {'wall s':>7} {'CPU s':>6} {'CPU/URL':>9} "
        f"{'CPU/wall':>8} {'URL/s':>6} {'peak RSS':>10}  origin answered"
    )
    lines = [head, "-" * len(head)]
    for r in runs:
        per = f"{r.cpu / r.images * 1000:6.2f} ms" if r.images else "      -  "
        rate = f"{r.images / r.wall:6.0f}" if r.images else "     -"
        lines.append(
            f"{r.label:32} {r.tool:8} {r.images:6d} {r.wall:7.2f} {r.cpu:6.2f} {per:>9} "
            f"{r.load:8.2f} {rate} {r.rss_mib:7.1f} MiB  {_served(r.served)}"
        )
    return "\n".join(lines)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


# -- the run -----------------------------------------------------------------------------------


def parse_size(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h)


def _tool(name: str, label: str) -> str | None:
    path = shutil.which(name)
    if path is None:
        print(
            f"{label} ({name}) not found: its rows and the ratios against it are skipped"
            " (this benchmark installs nothing)"
        )
        return None
    version = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    print(f"comparing with {path}: {version.splitlines()[0] if version else '?'}")
    return path


def _origin(kind: str, work: Path) -> Origin:
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.path.exists(p)), None
    )
    if kind == "nginx" and nginx is None:
        raise SystemExit("bench_sync: --origin nginx, but nginx is not installed")
    if kind != "python" and nginx is not None:
        return NginxOrigin(work / "nginx", nginx)
    if kind == "auto":
        print("nginx not found (apt-get install nginx-light): falling back to the Python origin")
    return PythonOrigin(work)


class Bench:
    """The work folder, the tools, the origin (behind the proxy with --rtt) and the rows."""

    def __init__(self, args: argparse.Namespace, work: Path, origin: Origin, port: int) -> None:
        self.args = args
        self.work = work
        self.origin = origin
        self.port = port
        self.log = work / "children.log"
        self.runs: list[Run] = []
        self.failures: list[str] = []
        self.wget = args.wget_path
        self.curl = args.curl_path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def check(self, ok: bool, what: str) -> None:
        if not ok:
            self.failures.append(what)

    def row(self, label: str, tool: str, cmd: list[str], urls: int) -> Run:
        run = measure(label, tool, cmd, self.origin, urls, self.log)
        self.check(run.status == 0, f"{label}: {tool} exited {run.status} (see {self.log})")
        self.runs.append(run)
        return run

    def all_tools(self, label: str, paths: list[str], name: str, *, refresh: bool) -> None:
        """fetcher, wget and curl on the same URLs, each into its own folder."""
        listing = self.work / f"{name}.txt"
        urls = [self.url(p) for p in paths]
        listing.write_text("".join(u + "\n" for u in urls))
        self.row(label, "fetcher", fetcher_cmd(listing, self.work / f"{name}-fetcher"), len(urls))
        if self.wget:
            self.row(
                label, "wget", wget_cmd(self.wget, listing, self.work / f"{name}-wget"), len(urls)
            )
        if self.curl:
            cmd = curl_cmd(
                self.curl,
                urls,
                self.work / f"{name}-curl",
                self.work / f"{name}.curlrc",
                refresh=refresh,
            )
            self.row(label, "curl", cmd, len(urls))

    def folders_hold(self, name: str, bodies: dict[str, bytes], label: str) -> None:
        want = digests(bodies)
        for tool in ("fetcher", "wget", "curl"):
            folder = self.work / f"{name}-{tool}"
            if folder.exists():
                self.check(contents(folder) == want, f"{label}: {tool}'s folder != the origin")

    def by(self, prefix: str, tool: str) -> Run | None:
        return next((r for r in self.runs if r.label.startswith(prefix) and r.tool == tool), None)


def _ratio_line(bench: Bench, key: str, other: str, limit: float, what: str) -> bool | None:
    mine, theirs = bench.by(key, "fetcher"), bench.by(key, other)
    if mine is None or theirs is None:
        print(f"  {what:34} fetcher/{other} <= {limit:.1f}x   skipped (no {other})")
        return None
    ratio = mine.wall / theirs.wall
    print(f"  {what:34} fetcher/{other} <= {limit:.1f}x   {ratio:5.2f}x  {verdict(ratio <= limit)}")
    return ratio <= limit


def _byte_compile_fetcher() -> None:
    """Compile fetcher's modules as ``pip install .`` leaves them, and say so.

    With ``PYTHONDONTWRITEBYTECODE=1`` (set on some machines) an editable install would
    otherwise compile every module at every start: 0.03-0.06 s more per run here, which
    the start-up row and every small ratio would carry.
    """
    import compileall

    import fetcher

    folder = Path(fetcher.__file__).parent
    if compileall.compile_dir(str(folder), quiet=2):
        print(f"fetcher's modules byte-compiled ({folder})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="photographs served (default 300)")
    parser.add_argument("--size", type=parse_size, default=(1280, 960), help="WxH of each")
    parser.add_argument("--refresh-lines", type=int, default=1000, help="URLs of row (r)")
    parser.add_argument("--rtt", type=float, default=0.0, metavar="MS", help="delay proxy")
    parser.add_argument("--origin", choices=("auto", "nginx", "python"), default="auto")
    parser.add_argument("--rss-lines", type=int, default=0, help="the long list of (e); 0: no (e)")
    parser.add_argument("--rss-base", type=int, default=1_000, help="the short list of (e)")
    parser.add_argument("--wget", default="wget", help="wget to compare with (name or path)")
    parser.add_argument("--curl", default="curl", help="curl to compare with (name or path)")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (default: temp)")
    parser.add_argument("--strict", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument(
        "--fetcher-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="an extra argument for every fetcher run (repeat: --fetcher-arg=--workers "
        "--fetcher-arg=12)",
    )
    parser.add_argument("--serve-proxy", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    FETCHER_ARGS[:] = args.fetcher_arg
    if args.serve_proxy:
        serve_proxy(args.serve_proxy, args.rtt)
        return 0
    n: int = args.n
    cores = os.cpu_count() or 1
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-sync-"))
    work.mkdir(parents=True, exist_ok=True)
    rtt = f", {args.rtt:g} ms round trip (delay proxy)" if args.rtt else ""
    print(
        f"bench_sync: {n} photographs {args.size[0]}x{args.size[1]}, JPEG q90; {cores} cores"
        f"{rtt}; work folder {work}"
    )
    _byte_compile_fetcher()
    args.wget_path = _tool(args.wget, "wget")
    args.curl_path = _tool(args.curl, "curl")
    started = time.perf_counter()
    with cf.ProcessPoolExecutor(max_workers=cores) as pool:
        pictures = list(pool.map(make_picture, range(n), [args.size] * n, chunksize=4))
    names = [f"{i:05d}.jpg" for i in range(n)]
    print(
        f"generated in {time.perf_counter() - started:.1f} s; mean JPEG"
        f" {sum(len(p[0]) for p in pictures) / max(n, 1) / 1024:.0f} KiB"
    )
    origin = _origin(args.origin, work)
    print(f"origin: {origin.name}")
    with contextlib.ExitStack() as stack:
        stack.enter_context(origin)  # type: ignore[arg-type]
        port = origin.port
        if args.rtt:
            port = stack.enter_context(DelayProxy(origin.port, args.rtt)).port
        bench = Bench(args, work, origin, port)
        _rows(bench, names, pictures)
    print()
    print(table(bench.runs))
    print()
    met = _targets(bench, cores)
    for failure in bench.failures:
        print(f"CHECK FAILED: {failure}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    if bench.failures:
        return 1
    return 1 if args.strict and not all(met) else 0


def _rows(
    bench: Bench, names: list[str], pictures: list[tuple[bytes, bytes, bytes | None]]
) -> None:
    args, origin, now = bench.args, bench.origin, time.time()
    original = dict(zip(names, (p[0] for p in pictures), strict=True))
    for name, body in original.items():
        origin.publish(f"/img/{name}", body, now - 86400)
    paths = [f"/img/{name}" for name in names]
    empty = bench.work / "empty.txt"
    empty.write_text("")
    bench.row("(0) start-up: empty list", "fetcher", fetcher_cmd(empty, bench.work / "e"), 0)
    bench.all_tools("(a) first sync, empty folder", paths, "photos", refresh=False)
    bench.folders_hold("photos", original, "(a)")
    bench.all_tools("(b) refresh, nothing changed", paths, "photos", refresh=True)
    bench.folders_hold("photos", original, "(b)")
    fetcher_b = bench.by("(b)", "fetcher")
    bench.check(
        fetcher_b is not None and fetcher_b.served.get("GET 200", 0) == 0,
        "(b) fetcher downloaded a body",
    )
    if args.rtt:
        return
    tiny = tiny_png()
    small = [f"/small/{i // 1000}/{i}.png" for i in range(args.refresh_lines)]
    for path in small:
        origin.publish(path, tiny, now - 86400)
    bench.all_tools("(r) setup: first sync", small, "small", refresh=False)
    bench.all_tools(f"(r) refresh {args.refresh_lines} URLs", small, "small", refresh=True)
    mine = bench.work / "photos-fetcher"
    listing = bench.work / "photos.txt"
    for name, (_, reencoded, _) in zip(names, pictures, strict=True):
        origin.publish(f"/img/{name}", reencoded, now - 3600)
    bench.row("(c) all re-encoded", "fetcher", fetcher_cmd(listing, mine), len(names))
    bench.check(contents(mine) == digests(original), "(c) a re-encoded image was rewritten")
    expected = dict(original)
    for name, (_, _, edited) in zip(names, pictures, strict=True):
        if edited is not None:
            origin.publish(f"/img/{name}", edited, now - 60)
            expected[name] = edited
    bench.row("(d) 10 % edited visibly", "fetcher", fetcher_cmd(listing, mine), len(names))
    bench.check(contents(mine) == digests(expected), "(d) not exactly the edited images rewritten")
    if args.rss_lines:
        for lines in (args.rss_base, args.rss_lines):
            paths = [f"/tiny/{i // 1000}/{i}.png" for i in range(lines)]
            for path in paths:
                origin.publish(path, tiny, now - 86400)
            listing = bench.work / f"tiny-{lines}.txt"
            listing.write_text("".join(bench.url(p) + "\n" for p in paths))
            dest = bench.work / f"tiny-{lines}"
            bench.row(f"(e) {lines}-line list, first", "fetcher", fetcher_cmd(listing, dest), lines)
            bench.row(
                f"(e) {lines}-line list, refresh", "fetcher", fetcher_cmd(listing, dest), lines
            )
            shutil.rmtree(dest, ignore_errors=True)


def _targets(bench: Bench, cores: int) -> list[bool]:
    args = bench.args
    print("targets (issue 11):")
    met: list[bool | None] = []
    if args.rtt:
        met.append(_ratio_line(bench, "(a)", "curl", 1.1, f"first sync, {args.rtt:g} ms RTT"))
        met.append(_ratio_line(bench, "(b)", "curl", 1.1, f"refresh, {args.rtt:g} ms RTT"))
    else:
        met.append(_ratio_line(bench, "(a)", "wget", 3.0, "first sync"))
        met.append(
            _ratio_line(bench, "(r) refresh", "wget", 1.0, f"refresh of {args.refresh_lines} URLs")
        )
        c = bench.by("(c)", "fetcher")
        if c is not None:
            met.append(c.load >= 1.6)
            print(
                f"  {'(c) compares in flight':34} CPU/wall >= 1.6     {c.load:5.2f}   "
                f"{verdict(c.load >= 1.6)}  ({cores} cores)"
            )
    floor = bench.by("(0)", "fetcher")
    if floor is not None:
        print(
            f"  {'what bounds the small rows':34} fetcher's fixed cost {floor.wall:.2f} s"
            f" wall, {floor.cpu:.2f} s CPU (interpreter, imports, lock, state)"
        )
    if args.rss_lines and not args.rtt:
        for phase in ("first", "refresh"):
            small = bench.by(f"(e) {args.rss_base}-line list, {phase}", "fetcher")
            big = bench.by(f"(e) {args.rss_lines}-line list, {phase}", "fetcher")
            if small is None or big is None:
                continue
            growth = big.rss_mib / small.rss_mib
            met.append(growth <= 1.10)
            print(
                f"  RSS {args.rss_lines} vs {args.rss_base} lines, {phase:7} <= 1.10x  "
                f"{growth:5.2f}x  {verdict(growth <= 1.10)}"
            )
    return [m for m in met if m is not None]


if __name__ == "__main__":
    sys.exit(main())
