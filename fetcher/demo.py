"""``fetcher demo``: the main job on a built-in example, served from 127.0.0.1 (no internet)."""

from __future__ import annotations

import hashlib
import io
import shlex
import tempfile
import threading
import time
from collections.abc import Callable
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .config import Config, SyncConfig
from .htmlreport import HtmlReport
from .metrics import record_run
from .mirror import sync
from .report import Result

__all__ = ["DemoOrigin", "run_demo", "sample_image"]


class DemoOrigin:
    """A tiny loopback web server with ETag/Last-Modified and 304 support."""

    def __init__(self) -> None:
        self._files: dict[str, tuple[bytes, str, str, str]] = {}
        self._lock = threading.Lock()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with origin._lock:
                    item = origin._files.get(self.path)
                if item is None:
                    self.send_error(404)
                    return
                body, etag, modified, ctype = item
                if self.headers.get("If-None-Match") == etag:
                    self.send_response(304)
                    self.send_header("ETag", etag)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", etag)
                self.send_header("Last-Modified", modified)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> DemoOrigin:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}{path}"

    def publish(self, path: str, body: bytes, when: float) -> None:
        ctype = "image/jpeg" if path.endswith(".jpg") else "image/png"
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        with self._lock:
            self._files[path] = (body, etag, formatdate(when, usegmt=True), ctype)


def sample_image(seed: int, size: tuple[int, int] = (480, 360)) -> Image.Image:
    """A generated photograph-like picture: smooth light, soft texture and a few shapes."""
    rng = np.random.default_rng(seed)
    w, h = size
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = rng.uniform(40, 200, 3).astype(np.float32)
    tilt = rng.uniform(-0.25, 0.25, (3, 2)).astype(np.float32)
    rgb = np.stack([base[c] + tilt[c, 0] * x + tilt[c, 1] * y for c in range(3)], axis=-1)
    texture = Image.fromarray(rng.normal(128, 40, (h // 4, w // 4)).clip(0, 255).astype(np.uint8))
    soft = np.asarray(texture.resize(size, Image.Resampling.BICUBIC), dtype=np.float32) - 128
    rgb += soft[..., None] * 0.5
    img = Image.fromarray(rgb.clip(0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(img)
    for _ in range(6):
        cx, cy = int(rng.integers(0, w)), int(rng.integers(0, h))
        r = int(rng.integers(15, 70))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    return img.filter(ImageFilter.GaussianBlur(1.2))


def _encode(img: Image.Image, path: str, **params: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG" if path.endswith(".jpg") else "PNG", **params)
    return buf.getvalue()


def _box(img: Image.Image) -> Image.Image:
    out = img.copy()
    w, h = out.size
    ImageDraw.Draw(out).rectangle(
        [w // 2, h // 3, w // 2 + w // 10, h // 3 + h // 10], fill="white"
    )
    return out


def _caption(img: Image.Image) -> Image.Image:
    out = img.copy()
    ImageDraw.Draw(out).text((12, out.size[1] - 28), "(c) 2026 example.org", fill="yellow")
    return out


def _brighter(img: Image.Image) -> Image.Image:
    return Image.fromarray((np.asarray(img).astype(np.int16) + 20).clip(0, 255).astype(np.uint8))


#: (name, how the origin re-publishes it, what fetcher should decide, explanation)
_PLAN: list[tuple[str, Callable[[Image.Image, str], bytes] | None, str, str]] = [
    ("harbour.jpg", None, "not-modified", "untouched: the origin answers 304"),
    ("meadow.png", None, "not-modified", "untouched: the origin answers 304"),
    (
        "portrait.jpg",
        lambda im, p: _encode(im, p, quality=88),
        "similar",
        "re-encoded by the CMS at quality 88: new bytes, same picture",
    ),
    (
        "skyline.jpg",
        lambda im, p: _encode(im, p, quality=95, progressive=True),
        "identical-pixels",
        "re-saved as a progressive JPEG: new bytes, identical pixels",
    ),
    (
        "diagram.png",
        lambda im, p: _encode(im, p, compress_level=1),
        "identical-pixels",
        "PNG recompressed: new bytes, identical pixels",
    ),
    (
        "product.png",
        lambda im, p: _encode(_box(im), p),
        "dissimilar",
        "a white box pasted over 1 % of the picture",
    ),
    (
        "banner.jpg",
        lambda im, p: _encode(_caption(im), p, quality=92),
        "dissimilar",
        "a caption added in the corner",
    ),
    (
        "poster.png",
        lambda im, p: _encode(_brighter(im), p),
        "dissimilar",
        "brightened by 20 levels",
    ),
]


def run_demo(folder: str | None = None, *, out: Callable[[str], None] = print) -> int:
    """Run the demo into ``folder`` (default: a new temporary one); 0 if all decided right."""
    dest = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="fetcher-demo-"))
    config = Config(sync=SyncConfig(keep=1))  # the replaced versions stay restorable
    pictures = {name: sample_image(seed) for seed, (name, *_rest) in enumerate(_PLAN)}
    with DemoOrigin() as origin:
        start = time.time() - 86400
        for name, img in pictures.items():
            origin.publish(f"/img/{name}", _encode(img, name, quality=95), start)
        urls = [origin.url(f"/img/{name}") for name in pictures]
        out(f"fetcher demo: {len(urls)} generated images served from {origin.url('/')}")
        out(f"destination: {dest}\n")

        def run(
            title: str, html: HtmlReport | None = None, metrics: Path | None = None
        ) -> dict[str, Result]:
            results: dict[str, Result] = {}
            began = time.monotonic()

            def keep(result: Result) -> None:
                results[result.url] = result
                if html is not None:
                    html.add(result)

            report = sync(
                urls, dest, config, on_result=keep, thumbnails=html.max_images if html else 0
            )
            out(f"{title}\n  {report.summary_line()}")
            if html is not None:
                html.write(report)
            if metrics is not None:
                record_run(
                    metrics,
                    dest,
                    report,
                    exit_status=report.exit_code,
                    duration=time.monotonic() - began,
                )
            return results

        first = run("1. first sync into an empty folder (every image is new):")
        second = run("2. second sync, nothing changed at the origin (one 304 each):")
        out("\n3. the origin re-publishes: some untouched, some re-encoded, some edited")
        for name, republish, _, why in _PLAN:
            if republish is not None:
                origin.publish(f"/img/{name}", republish(pictures[name], name), time.time())
                out(f"   {name:13} {why}")
        page = dest / "fetcher-report.html"
        html = HtmlReport(page, thresholds=config.compare, title=f"{dest} (demo, third sync)")
        prom = dest / "fetcher.prom"
        third = run("\n4. third sync decides each image:", html, prom)
        right = all(r.outcome == "new" for r in first.values()) and all(
            r.reason == "not-modified" for r in second.values()
        )
        out(f"   {'image':13} {'outcome':9} {'reason':16} why")
        for (name, _, expected, _why), url in zip(_PLAN, urls, strict=True):
            result = third[url]
            mark = "" if result.reason == expected else f"   (expected {expected})"
            right = right and result.reason == expected
            detail = result.detail or f"{result.http_status} from the origin, nothing downloaded"
            out(f"   {name:13} {result.outcome:9} {result.reason:16} {detail}{mark}")
    out("\nunchanged images kept their bytes on disk; only the edited ones were rewritten,")
    out("each with the origin's exact bytes.")
    out(f"\nwhat the third sync changed, with pictures (old, new and where they differ):\n  {page}")
    out(f"  open it in a browser: {page.absolute().as_uri()}")
    out(f"its figures for monitoring, as --metrics writes them:\n  {prom}")
    banner = next(r.path for r in third.values() if r.path and r.path.endswith("banner.jpg"))
    listing = f"fetcher restore {shlex.quote(str(dest / banner))} --list"
    out(f"the replaced versions are kept; list them, or put one back:\n  {listing}")
    return 0 if right else 1
