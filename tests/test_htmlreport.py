"""Tests of the visual change report (fetcher.htmlreport, fetcher.visual): parsed, and drawn
by a real browser (headless Chromium; skipped with the reason where there is none)."""

from __future__ import annotations

import io
import pickle
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import encode
from origin import Origin
from PIL import Image, ImageDraw

from fetcher import visual as visual_module
from fetcher.cli import main
from fetcher.config import Config
from fetcher.htmlreport import HtmlReport
from fetcher.ladder import Job
from fetcher.mirror import sync
from fetcher.report import Report, Result
from fetcher.runner import run_batch
from fetcher.visual import Thumbnail, Visual, change_visual, new_visual, thumbnail

#: Colours the page itself never uses, so that a screenshot shows where the pictures are.
CYAN, MAGENTA, LIME = (0, 230, 230), (240, 0, 240), (120, 240, 0)


def textured(colour: tuple[int, int, int], size: tuple[int, int] = (480, 360)) -> Image.Image:
    """A flat colour with mild grain (a photograph-like body for JPEG and the compare)."""
    grain = np.random.default_rng(sum(colour)).normal(0, 4, (size[1], size[0], 1))
    pixels = np.clip(np.asarray(colour, dtype=np.float64) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB")


def with_square(img: Image.Image, colour: tuple[int, int, int]) -> Image.Image:
    out = img.copy()
    w, h = out.size
    ImageDraw.Draw(out).rectangle([w // 4, h // 4, 3 * w // 4, 3 * h // 4], fill=colour)
    return out


# --------------------------------------------------------------------------- parsing


@dataclass
class Page:
    """What the checks need from a page: sections, pictures, links, every resource."""

    sections: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    resources: list[str] = field(default_factory=list)  # anything a browser would load
    scripts: int = 0
    text: str = ""
    counts: dict[str, int] = field(default_factory=dict)


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.page = Page()
        self._text: list[str] = []
        self._in_style = False
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_counts = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "section":
            self.page.sections.append(a.get("id", ""))
        if tag == "img":
            self.page.images.append(a.get("src", ""))
        if tag == "a":
            self.page.links.append(a.get("href", ""))
        if tag == "script":
            self.page.scripts += 1
        if tag == "style":
            self._in_style = True
        for name in ("src", "srcset", "poster", "data", "background", "action"):
            if name in a:
                self.page.resources.append(a[name])
        if tag in ("link", "base", "iframe", "object", "embed", "source", "meta") and (
            "href" in a or ("content" in a and "url=" in a["content"].lower())
        ):
            self.page.resources.append(a.get("href") or a["content"])
        if "style" in a:
            self.page.resources += re.findall(r"url\(([^)]*)\)", a["style"])
        if tag == "table" and "counts" in a.get("class", ""):
            self._in_counts = True
        if self._in_counts and tag == "tr":
            self._row = []
        if self._row is not None and tag == "td":
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr" and self._row:
            self.page.counts[self._row[0]] = int(self._row[1])
            self._row = None
        if tag == "table":
            self._in_counts = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.page.resources += re.findall(r"url\(([^)]*)\)|@import", data)
            return
        self._text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def close(self) -> None:
        super().close()
        self.page.text = re.sub(r"\s+", " ", "".join(self._text))


def parse(path: Path) -> Page:
    parser = _Parser()
    parser.feed(path.read_text(encoding="utf-8"))
    parser.close()
    return parser.page


def assert_self_contained(page: Page) -> None:
    """Every picture embedded, nothing a browser would fetch, no script."""
    assert page.images, "no pictures at all"
    for src in page.images:
        assert re.match(r"data:image/(jpeg|webp|png);base64,[A-Za-z0-9+/=]+$", src), src[:60]
    assert [r for r in page.resources if not r.startswith("data:")] == []
    assert page.scripts == 0


# --------------------------------------------------------------------------- the run


@dataclass
class Run:
    page: Path
    code: int
    urls: dict[str, str]


def _sync(origin_list: Path, dest: Path, html: Path, *flags: str) -> int:
    return main(["sync", str(origin_list), "--dest", str(dest), "--html", str(html), *flags])


@pytest.fixture(scope="module")
def second_sync(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    """A second sync whose page has a changed, two new and a failed image (and unchanged)."""
    tmp = tmp_path_factory.mktemp("html")
    with Origin() as origin:
        cyan = textured(CYAN)
        origin.publish("/edited.jpg", encode(cyan, "JPEG", quality=92), content_type="image/jpeg")
        origin.publish("/same.png", encode(textured((90, 90, 90))))
        origin.publish("/gone.png", encode(textured((50, 50, 50))))
        names = ["edited.jpg", "same.png", "gone.png", "added.png", "added2.png"]
        urls = {name: origin.url("/" + name) for name in names}
        listing = tmp / "urls.txt"
        listing.write_text("".join(f"{urls[n]} {n}\n" for n in names))
        config = tmp / "fetcher.toml"
        config.write_text("[http]\nretries = 0\n")
        flags = ("--config", str(config), "-q")
        assert _sync(listing, tmp / "dest", tmp / "first.html", *flags) == 1  # added*: 404
        edited = with_square(cyan, MAGENTA)
        origin.publish("/edited.jpg", encode(edited, "JPEG", quality=90), content_type="image/jpeg")
        origin.publish("/added.png", encode(textured(LIME)))
        origin.publish("/added2.png", encode(textured(LIME, (300, 400))))
        origin.remove("/gone.png")
        code = _sync(listing, tmp / "dest", tmp / "page.html", *flags)
    yield Run(tmp / "page.html", code, urls)


def test_the_page_of_a_sync_has_every_section_every_picture_embedded_and_right_counts(
    second_sync: Run,
) -> None:
    page = parse(second_sync.page)
    assert second_sync.code == 1
    assert page.sections == ["changed", "new", "failed", "unchanged"]
    assert page.counts == {"new": 2, "changed": 1, "unchanged": 1, "failed": 1}
    assert_self_contained(page)
    assert len(page.images) == 3 + 2  # old, new and diff map of the change; two new images
    assert "exit 1" in page.text
    assert "edited.jpg" in page.text and "dissimilar" in page.text and "decided" in page.text
    assert "http-404" in page.text and "gone.png" in page.text and "404" in page.text
    assert "not listed" in page.text  # unchanged: counted only
    # the only links are to listed URLs, and in-page anchors
    assert {link for link in page.links if not link.startswith("#")} <= set(
        second_sync.urls.values()
    )
    leftovers = [p for p in second_sync.page.parent.iterdir() if p.name.endswith(".part")]
    assert leftovers == []


def test_the_first_syncs_page_shows_the_new_images_and_failures(second_sync: Run) -> None:
    page = parse(second_sync.page.with_name("first.html"))
    assert page.sections == ["new", "failed", "unchanged"]
    assert page.counts == {"new": 3, "changed": 0, "unchanged": 0, "failed": 2}
    assert_self_contained(page)
    assert len(page.images) == 3


def _results(n: int, outcome: str = "new") -> list[Result]:
    return [
        Result(url=f"http://127.0.0.1:9/{i}.png", path=f"{i}.png", outcome=outcome, reason=outcome)
        for i in range(n)
    ]


@pytest.fixture
def tiny_thumb() -> Thumbnail:
    return thumbnail(encode(textured(LIME, (40, 30))))


def test_past_html_max_the_rest_are_links_and_the_page_says_how_many(
    tmp_path: Path, tiny_thumb: Thumbnail, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fetcher.htmlreport.LIST_MAX", 4)
    html = HtmlReport(tmp_path / "page.html", max_images=3)
    report = Report()
    for i, result in enumerate(_results(9)):
        # the first five carry pictures (a cluster may make a few past the cap)
        if i < 5:
            result = Result(**{**result.__dict__, "visual": Visual(new=tiny_thumb)})
        html.add(result)
        report.add(result)
    html.write(report.finish())
    page = parse(tmp_path / "page.html")
    assert len(page.images) == 3
    assert len([link for link in page.links if link.endswith(".png")]) == 3 + 4
    assert "6 more new images, past the 3 shown with pictures" in page.text
    assert "and 2 more not listed here" in page.text


def test_failures_are_grouped_by_reason_with_their_messages_and_capped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("fetcher.htmlreport.LIST_MAX", 2)
    html = HtmlReport(tmp_path / "page.html")
    report = Report()
    for i in range(5):
        reason = "http-404" if i < 3 else "timeout"
        result = Result(
            url=f"http://127.0.0.1:9/{i}.png",
            path=f"{i}.png",
            outcome="failed",
            reason=reason,
            error=f"message number {i}",
            line=i + 1,
        )
        html.add(result)
        report.add(result)
    html.write(report.finish())
    text = parse(tmp_path / "page.html").text
    assert "http-404 3" in text and "timeout 2" in text
    assert "message number 0" in text and "message number 3" in text
    assert "message number 2" not in text and "and 1 more http-404 failures" in text
    assert text.index("http-404 3") < text.index("timeout 2")  # the largest group first


def test_an_interrupted_or_dry_run_says_so_at_the_top(tmp_path: Path) -> None:
    html = HtmlReport(tmp_path / "page.html")
    report = Report(dry_run=True)
    report.interrupted = True
    html.write(report.finish())
    text = parse(tmp_path / "page.html").text
    assert "exit 130: interrupted" in text
    assert "dry run: decided everything, wrote nothing" in text
    assert "interrupted: this page shows the URLs finished before it" in text


def test_hostile_paths_urls_and_messages_are_escaped(tmp_path: Path, tiny_thumb: Thumbnail) -> None:
    evil = '<script>alert(1)</script><img src="http://evil.example/x.png">'
    html = HtmlReport(tmp_path / "page.html", title=evil)
    report = Report()
    for result in (
        Result(
            url="javascript:alert(1)", path=evil, outcome="failed", reason="bad-url", error=evil
        ),
        Result(
            url="http://127.0.0.1:9/a.png",
            path=evil,
            outcome="changed",
            reason="dissimilar",
            detail=evil,
            visual=Visual(new=tiny_thumb),
        ),
        Result(url="http://127.0.0.1:9/b.png", path=evil, outcome="new", reason="new"),
    ):
        html.add(result)
        report.add(result)
    html.write(report.finish())
    raw = (tmp_path / "page.html").read_text()
    assert "<script" not in raw and "http://evil" not in raw.replace("&quot;http://evil", "")
    page = parse(tmp_path / "page.html")
    assert page.scripts == 0 and "javascript:alert(1)" not in page.links
    assert_self_contained(page)


def test_the_page_is_written_beside_its_name_and_a_failed_write_keeps_the_old_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "page.html"
    target.write_text("the previous page")
    html = HtmlReport(target)
    for result in _results(2):
        html.add(result)

    def broken(*args: object) -> Iterator[str]:
        yield "<!doctype html>"
        raise OSError("disk full")

    monkeypatch.setattr(HtmlReport, "_chunks", broken)
    with pytest.raises(OSError, match="disk full"):
        html.write(Report())
    assert target.read_text() == "the previous page"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["page.html"]
    monkeypatch.undo()
    html.write(Report())
    assert "<!doctype html>" in target.read_text()


# --------------------------------------------------------------------------- the pictures


def test_pictures_are_small_and_made_only_for_new_and_changed_within_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[int] = []
    real = visual_module.new_visual

    def counted(*args: Any) -> Visual:
        made.append(1)
        return real(*args)

    monkeypatch.setattr(visual_module, "new_visual", counted)
    with Origin() as origin:
        for i in range(5):
            origin.publish(f"/{i}.png", encode(textured((40 * i, 200, 90))))
        urls = [origin.url(f"/{i}.png") for i in range(5)]
        seen: list[Result] = []
        sync(urls, tmp_path / "dest", thumbnails=3, on_result=seen.append)
        pictured = [r for r in seen if r.visual is not None]
        assert len(pictured) == 3 and len(made) == 3  # none made past the budget
        for result in pictured:
            assert result.visual is not None and result.visual.new is not None
            assert max(result.visual.new.size) == 320
            assert len(result.visual.new.data) < 40_000
        seen.clear()
        origin.publish("/0.png", encode(with_square(textured((0, 200, 90)), MAGENTA)))
        sync(urls, tmp_path / "dest", on_result=seen.append)  # no thumbnails asked for
        assert [r.outcome for r in seen].count("changed") == 1
        assert all(r.visual is None for r in seen)
        # new and changed images each have their budget: new ones never crowd out a change
        seen.clear()
        origin.publish("/1.png", encode(with_square(textured((40, 200, 90)), MAGENTA)))
        for i in (5, 6, 7):
            origin.publish(f"/{i}.png", encode(textured((0, 0, 30 * i))))
        more = [*urls, *(origin.url(f"/{i}.png") for i in (5, 6, 7))]
        sync(more, tmp_path / "dest", thumbnails=1, on_result=seen.append)
        assert sorted(r.outcome for r in seen if r.visual is not None) == ["changed", "new"]
        changed = next(r for r in seen if r.outcome == "changed")
        assert changed.visual is not None
        assert None not in (changed.visual.old, changed.visual.new, changed.visual.diff)
        assert changed.visual.decided_by == "local_edit"


def test_a_cluster_task_sends_its_pictures_back_in_its_outcome(tmp_path: Path) -> None:
    """What a Dask worker runs (run_batch): the pictures travel back, pickled, with the result."""
    dest = tmp_path / "dest"
    dest.mkdir()
    with Origin() as origin:
        origin.publish("/a.png", encode(textured(LIME)))
        jobs = [
            Job(url=origin.url("/a.png"), path=name, dest=str(dest), thumbnails=flag)
            for name, flag in (("a.png", True), ("b.png", False))
        ]
        pictured, plain = (
            pickle.loads(pickle.dumps(outcome)) for outcome in run_batch(jobs, Config())
        )
    assert [pictured.result.outcome, plain.result.outcome] == ["new", "new"]
    assert pictured.result.visual is not None and pictured.result.visual.new is not None
    assert plain.result.visual is None


def test_a_run_without_pictures_never_makes_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = tmp_path / "a picture was made"  # seen from a compare worker process too

    def refuse(*args: object, **kwargs: object) -> None:
        made.touch()
        raise AssertionError("a picture was made")

    monkeypatch.setattr(visual_module, "thumbnail", refuse)
    monkeypatch.setattr(visual_module, "change_visual", refuse)
    monkeypatch.setattr(visual_module, "new_visual", refuse)
    with Origin() as origin:
        origin.publish("/a.png", encode(textured(CYAN)))
        seen: list[Result] = []
        url = origin.url("/a.png")
        sync([url], tmp_path / "dest", on_result=seen.append)
        origin.publish("/a.png", encode(with_square(textured(CYAN), MAGENTA)))
        sync([url], tmp_path / "dest", on_result=seen.append)
    assert [r.outcome for r in seen] == ["new", "changed"]
    assert [r.visual for r in seen] == [None, None]
    assert not made.exists()


def test_a_thumbnail_keeps_transparency_and_turns_the_image_upright() -> None:
    rgba = Image.new("RGBA", (400, 200), (255, 0, 0, 0))
    ImageDraw.Draw(rgba).rectangle([0, 0, 199, 199], fill=(0, 0, 255, 255))
    thumb = thumbnail(encode(rgba, "PNG"))
    assert thumb.mime == "image/webp" and thumb.size == (320, 160)
    assert Image.open(io.BytesIO(thumb.data)).getchannel("A").getextrema() == (0, 255)
    tall = textured(CYAN, (400, 200))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    turned = thumbnail(encode(tall, "JPEG", exif=exif.tobytes()))
    assert turned.mime == "image/jpeg" and turned.size == (160, 320)
    grey16 = Image.fromarray(np.full((100, 100), 60000, dtype=np.uint16))
    light = Image.open(io.BytesIO(thumbnail(encode(grey16, "PNG")).data))
    low = light.getextrema()[0]
    assert isinstance(low, (int, float)) and low > 220  # scaled down from 16 bits, not clipped


def test_a_change_without_a_decodable_old_image_says_why_a_picture_is_missing() -> None:
    pictures = change_visual(b"not an image", encode(textured(CYAN)))
    assert pictures.old is None and pictures.new is not None and pictures.diff is None
    assert any("old image" in note for note in pictures.notes)
    assert new_visual(b"nope").notes


def test_compare_html_writes_one_pair(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = tmp_path / "old.png", tmp_path / "new.png"
    old.write_bytes(encode(textured(CYAN)))
    new.write_bytes(encode(with_square(textured(CYAN), MAGENTA)))
    assert main(["compare", str(old), str(new), "--html", str(tmp_path / "pair.html")]) == 1
    page = parse(tmp_path / "pair.html")
    assert_self_contained(page)
    assert len(page.images) == 3
    assert "changed: dissimilar" in page.text and "decided" in page.text
    assert str(old) in page.text and str(new) in page.text
    capsys.readouterr()


# --------------------------------------------------------------------------- in a browser


def _browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no headless Chromium on this machine (Debian: apt-get install -y chromium)")


def screenshot(page: Path, out: Path, *, dark: bool, size: tuple[int, int]) -> Image.Image:
    """The page as headless Chromium draws it, offline, in a fresh profile."""
    browser = _browser()
    with tempfile.TemporaryDirectory(prefix="fetcher-chromium-") as profile:
        command = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={out}",
            f"--window-size={size[0]},{size[1]}",
            *(["--force-dark-mode"] if dark else []),
            page.absolute().as_uri(),
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0 and out.exists(), done.stderr[-2000:]
    return Image.open(out).convert("RGB")


def near(shot: Image.Image, colour: tuple[int, int, int], tolerance: int = 40) -> int:
    """How many pixels of the screenshot are within ``tolerance`` of ``colour``."""
    pixels = np.asarray(shot, dtype=np.int16)
    return int((np.abs(pixels - np.asarray(colour)).max(axis=2) <= tolerance).sum())


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_a_browser_draws_every_picture_in_light_and_dark_mode(
    second_sync: Run, tmp_path: Path, dark: bool
) -> None:
    shot = screenshot(second_sync.page, tmp_path / "shot.png", dark=dark, size=(1200, 2600))
    # the changed image's old and new thumbnails: cyan, the new one with a magenta square
    # (320 x 240 each: the cyan of both is over 40 000 pixels, the square about 19 000)
    assert near(shot, CYAN) > 40_000
    assert near(shot, MAGENTA) > 15_000
    # the two new images (lime): 320 x 240 and 240 x 320 as thumbnails
    assert near(shot, LIME) > 100_000
    # the diff map lights the square up in red, boxed
    assert near(shot, (235, 30, 20), tolerance=35) > 5_000
    corner = np.asarray(shot.crop((0, 0, 12, 12)), dtype=np.float64).mean()
    assert (corner < 60) if dark else (corner > 200), corner


def test_the_browser_test_fails_on_a_page_whose_pictures_do_not_load(
    second_sync: Run, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.html"
    text = second_sync.page.read_text()
    broken.write_text(re.sub(r'src="data:image/[^"]*"', 'src="data:image/jpeg;base64,AAAA"', text))
    shot = screenshot(broken, tmp_path / "shot.png", dark=False, size=(1200, 2600))
    assert near(shot, CYAN) < 1_000 and near(shot, LIME) < 1_000
