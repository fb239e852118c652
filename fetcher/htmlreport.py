"""The visual change report: one self-contained HTML page of a run (or of one compared pair).

The page needs nothing but itself: every picture is a ``data:`` URI, the style sheet is
inline, there is no script, and it follows the reader's light or dark preference
(``prefers-color-scheme``). At the top: the counts per outcome and reason, the run's
time, bytes and exit status. Then every ``changed`` image with the old and new version
side by side and the diff map beside them, its scores against their thresholds (the one
that decided marked), path and URL; every ``new`` image as a thumbnail; failures grouped
by reason with their messages; ``unchanged`` URLs only counted. Past the picture cap
(``[report] html_max``) the rest are listed as links, and the page says how many.

Memory stays bounded on a list of any length: a result's pictures are turned into HTML
as it arrives and spooled to a temporary file (held in memory while small); only
counts, and at most :data:`LIST_MAX` rows of each list, are kept.
"""

from __future__ import annotations

import html
import os
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import IO, TYPE_CHECKING

from .comparison import METRICS
from .config import CompareConfig
from .report import Report, ReportFile, Result, TextSink, format_bytes

if TYPE_CHECKING:
    from .comparison import Comparison
    from .visual import Thumbnail, Visual

__all__ = ["LIST_MAX", "HtmlReport", "write_compare_page"]

#: Most rows of one list on the page (links of one section, failures of one reason);
#: past it the page says how many more there were (the JSON report lists them all).
LIST_MAX = 10_000

_SCORES = METRICS

_EXIT_MEANING = {
    0: "every URL ended new, changed or unchanged",
    1: "some URLs failed",
    2: "the run could not finish",
    130: "interrupted: finished writes kept",
    141: "its output was closed: finished writes kept",
}

_STYLE = """
:root {
  color-scheme: light dark;
  --bg: #f6f6f4; --fg: #1c1c1e; --muted: #636369; --card: #ffffff; --line: #d9d9de;
  --link: #0a58b8; --new: #1a7f37; --changed: #b25000; --failed: #c62828;
  --unchanged: #636369; --chip: #ececef; --mark: #fff1c2;
  --check-a: #d8d8d8; --check-b: #f4f4f4; --on-status: #ffffff;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #141416; --fg: #e6e6e9; --muted: #a2a2aa; --card: #1f1f23; --line: #36363d;
    --link: #78b6ff; --new: #57c46f; --changed: #ffa64d; --failed: #ff7070;
    --unchanged: #a2a2aa; --chip: #2c2c32; --mark: #4a3d12;
    --check-a: #3a3a3a; --check-b: #4a4a4a; --on-status: #141416;
  }
}
* { box-sizing: border-box; }
body {
  margin: 0 auto; padding: 24px 28px 48px; max-width: 1200px; background: var(--bg);
  color: var(--fg); font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
}
a { color: var(--link); }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace;
  font-size: 0.92em; }
h1 { font-size: 1.55em; margin: 0 0 4px; display: flex; flex-wrap: wrap; gap: 10px;
  align-items: baseline; }
h2 { font-size: 1.25em; margin: 36px 0 12px; padding-bottom: 6px;
  border-bottom: 1px solid var(--line); }
h2 .n, h3 .n { color: var(--muted); font-weight: normal; }
.meta { color: var(--muted); margin: 0 0 16px; }
.status { font-size: 0.6em; font-weight: 600; padding: 3px 10px; border-radius: 999px;
  color: var(--on-status); background: var(--new); white-space: nowrap; }
.status.bad { background: var(--failed); }
.status.stop { background: var(--changed); }
.banner { padding: 8px 12px; border-radius: 6px; background: var(--mark); margin: 8px 0; }
table { border-collapse: collapse; }
.counts td, .counts th { padding: 5px 14px 5px 0; text-align: left; vertical-align: top;
  border-bottom: 1px solid var(--line); }
.counts td:first-child { white-space: nowrap; }
.counts td.num { text-align: right; font-variant-numeric: tabular-nums; font-weight: 600; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 50%;
  margin-right: 7px; }
.o-new { background: var(--new); } .o-changed { background: var(--changed); }
.o-failed { background: var(--failed); } .o-unchanged { background: var(--unchanged); }
.chip { display: inline-block; background: var(--chip); border-radius: 4px;
  padding: 0 7px; margin: 1px 4px 1px 0; font-size: 0.9em; white-space: nowrap; }
nav { margin: 14px 0 0; display: flex; flex-wrap: wrap; gap: 6px 18px; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 14px 16px 12px; margin: 0 0 16px; }
.card h3 { margin: 0; font-size: 1.02em; overflow-wrap: anywhere; }
.card .url { margin: 2px 0 10px; font-size: 0.88em; overflow-wrap: anywhere; }
.pics { display: flex; flex-wrap: wrap; gap: 12px; align-items: flex-start; }
figure { margin: 0; max-width: 320px; }
figure img { display: block; max-width: 100%; height: auto; border-radius: 4px;
  border: 1px solid var(--line);
  background: repeating-conic-gradient(var(--check-a) 0 25%, var(--check-b) 0 50%)
    50% / 16px 16px; }
figcaption { font-size: 0.85em; color: var(--muted); margin-top: 3px;
  overflow-wrap: anywhere; }
.missing { width: 320px; max-width: 100%; min-height: 80px; display: flex;
  align-items: center; justify-content: center; text-align: center; padding: 10px;
  border: 1px dashed var(--line); border-radius: 4px; color: var(--muted);
  font-size: 0.85em; }
.scores { margin: 10px 0 0; font-size: 0.9em; font-variant-numeric: tabular-nums; }
.scores th, .scores td { padding: 2px 16px 2px 0; text-align: left; }
.scores th { color: var(--muted); font-weight: normal; }
.scores tr.decided td { font-weight: 700; }
.scores .below { color: var(--failed); }
.detail { margin: 6px 0 0; font-size: 0.9em; }
.notes { margin: 6px 0 0; font-size: 0.85em; color: var(--muted); }
.reason { font-size: 0.8em; font-weight: normal; color: var(--muted); margin-left: 6px; }
.grid { display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-start; }
.grid figure { background: var(--card); border: 1px solid var(--line); border-radius: 8px;
  padding: 8px; max-width: 338px; }
.legend { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 14px;
  margin: 0 0 14px; font-size: 0.88em; color: var(--muted); }
.scale { position: relative; width: 300px; height: 14px; border-radius: 3px;
  margin-bottom: 16px; }
.scale span { position: absolute; top: 16px; font-size: 0.85em; transform: translateX(-50%);
  white-space: nowrap; }
.scale i { position: absolute; top: -3px; bottom: -3px; width: 2px; background: var(--fg); }
.more { margin: 8px 0 0; color: var(--muted); }
ul.rows { margin: 6px 0 0; padding-left: 20px; }
ul.rows li { margin: 2px 0; overflow-wrap: anywhere; }
ul.rows .msg { color: var(--muted); }
footer { margin-top: 40px; color: var(--muted); font-size: 0.85em; }
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _link(url: str, text: str | None = None) -> str:
    """A link to a listed URL (only http and https ones; anything else is plain text)."""
    label = _e(url if text is None else text)
    if url.lower().startswith(("http://", "https://")):
        return f'<a href="{_e(url)}" rel="noreferrer">{label}</a>'
    return label


def _figure(picture: Thumbnail | None, caption: str, missing: str) -> str:
    if picture is None:
        return (
            f'<figure><div class="missing">{_e(missing)}</div>'
            f"<figcaption>{_e(caption)}</figcaption></figure>"
        )
    width, height = picture.size
    return (
        f'<figure><img src="{picture.data_uri()}" width="{width}" height="{height}" '
        f'alt="{_e(caption)}"><figcaption>{_e(caption)}</figcaption></figure>'
    )


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _scores_table(
    scores: dict[str, float | None], decided_by: str | None, thresholds: CompareConfig
) -> str:
    if all(value is None for value in scores.values()):
        return ""
    rows = ["<tr><th>score</th><th>value</th><th>threshold</th><th></th></tr>"]
    for name in _SCORES:
        value, limit = scores.get(name), getattr(thresholds, name)
        below = value is not None and value < limit
        mark = "decided" if name == decided_by else ""
        rows.append(
            f'<tr class="{mark}"><td>{name}</td>'
            f'<td class="{"below" if below else ""}">{_fmt(value)}</td><td>{limit}</td>'
            f"<td>{'&larr; decided' if mark else ''}</td></tr>"
        )
    return f'<table class="scores">{"".join(rows)}</table>'


def _decided_by(result: Result, visual: Visual | None) -> str | None:
    if visual is not None and visual.decided_by:
        return visual.decided_by
    detail = result.detail or ""
    return next((name for name in _SCORES if detail.startswith(name + " ")), None)


def change_card(
    *,
    title: str,
    url: str | None,
    reason: str,
    scores: dict[str, float | None],
    detail: str | None,
    visual: Visual | None,
    thresholds: CompareConfig,
    decided_by: str | None = None,
    labels: tuple[str, str] = ("old", "new"),
) -> str:
    """One changed (or compared) pair: old, new and diff map side by side, then the scores."""
    notes = visual.notes if visual is not None else ()
    old = visual.old if visual is not None else None
    new = visual.new if visual is not None else None
    diff = visual.diff if visual is not None else None
    parts = [
        f'<article class="card"><h3><code>{_e(title)}</code>'
        f'<span class="reason">{_e(reason)}</span></h3>'
    ]
    if url:
        parts.append(f'<p class="url">{_link(url)}</p>')
    no_map = "no diff map: the decision came before the similarity rung"
    parts.append(
        '<div class="pics">'
        + _figure(old, labels[0], "no picture of the old image")
        + _figure(new, labels[1], "no picture of the new image")
        + _figure(diff, "diff map: where they differ", no_map)
        + "</div>"
    )
    parts.append(_scores_table(scores, decided_by, thresholds))
    if detail:
        parts.append(f'<p class="detail">{_e(detail)}</p>')
    if notes:
        parts.append(f'<p class="notes">{"<br>".join(_e(n) for n in notes)}</p>')
    parts.append("</article>\n")
    return "".join(parts)


def _legend(thresholds: CompareConfig) -> str:
    """The diff maps' colour scale as a CSS gradient, with the threshold marked."""
    from .diffmap import SCALE_TOP, scale_colours

    stops = ", ".join(
        f"rgb{colour} {100 * ratio / SCALE_TOP:.1f}%" for ratio, colour in scale_colours()
    )
    limit = (1 - thresholds.local_edit) * 255
    ticks = "".join(
        f'<span style="left:{100 * k / SCALE_TOP:.1f}%">{label}</span>'
        for k, label in ((0, "0"), (1, f"threshold ({limit:.1f} levels)"), (3, "3&times;"))
    )
    return (
        '<div class="legend"><span>diff map: the new image in grey; colour where old and new '
        "differ (mean blurred difference in an 8 px window), blue to yellow below the "
        "local_edit threshold, orange to red above it; red boxes around every region over "
        "it, and around every region whose local structure falls below its threshold"
        f'</span><div class="scale" style="background:linear-gradient(to right, {stops})">'
        f'<i style="left:{100 / SCALE_TOP:.1f}%"></i>{ticks}</div></div>\n'
    )


def _page_head(title: str) -> str:
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="color-scheme" content="light dark">\n'
        f"<title>{_e(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
    )


def _page_foot(extra: str = "") -> str:
    from . import __version__

    when = time.strftime("%Y-%m-%d %H:%M:%S %z")
    return (
        f"<footer>fetcher {_e(__version__)} &middot; written {_e(when)}{extra}</footer>\n"
        "</body>\n</html>\n"
    )


class _Spool:
    """Text for the page, kept in memory while small and in a temporary file beyond."""

    def __init__(self) -> None:
        self._file: IO[str] = tempfile.SpooledTemporaryFile(  # noqa: SIM115 (closed by close)
            max_size=4 << 20, mode="w+", encoding="utf-8"
        )
        self.count = 0

    def add(self, text: str) -> None:
        self._file.write(text)
        self.count += 1

    def copy_to(self, out: TextSink) -> None:
        self._file.seek(0)
        while block := self._file.read(1 << 16):
            out.write(block)

    def close(self) -> None:
        self._file.close()


class _Section:
    """One outcome's entries: cards with pictures, then links past the cap."""

    def __init__(self) -> None:
        self.cards = _Spool()
        self.links = _Spool()
        self.unlisted = 0

    def link(self, result: Result) -> None:
        if self.links.count >= LIST_MAX:
            self.unlisted += 1
            return
        detail = f" &middot; {_e(result.detail)}" if result.detail else ""
        self.links.add(
            f"<li>{_link(result.url, result.path or result.url)} "
            f'<span class="msg">{_e(result.reason)}{detail}</span></li>\n'
        )

    def close(self) -> None:
        self.cards.close()
        self.links.close()


class HtmlReport:
    """The visual change report of one run: fed every result, written once at the end.

    Give :func:`fetcher.sync` ``thumbnails=max_images`` so that the first new and changed
    results carry their pictures, pass every result to :meth:`add` (``on_result``), then
    call :meth:`write` with the run's :class:`~fetcher.report.Report`.

    Parameters
    ----------
    path : path-like
        The page to write.
    max_images : int
        Most new images, and most changed ones, shown with pictures (``[report]
        html_max``); the results past it, and those that carry none, are listed as links.
    thresholds : CompareConfig, optional
        The thresholds the run compared with (shown beside the scores).
    title : str
        What the run was, e.g. the destination folder.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_images: int = 500,
        thresholds: CompareConfig | None = None,
        title: str = "",
    ) -> None:
        self.path = os.fspath(path)
        self.max_images = max_images
        self.thresholds = thresholds or CompareConfig()
        self.title = title
        self._sections = {"changed": _Section(), "new": _Section()}
        self._failures: dict[str, list[str]] = {}
        self._failed = Counter[str]()

    def add(self, result: Result) -> None:
        """Take one result: changed and new ones are laid out now, failures kept by reason."""
        if result.outcome == "failed":
            self._failed[result.reason] += 1
            rows = self._failures.setdefault(result.reason, [])
            if len(rows) < LIST_MAX:
                rows.append(self._failure_row(result))
            return
        section = self._sections.get(result.outcome)
        if section is None:
            return  # unchanged: counted by the report, not listed
        visual = result.visual
        if visual is None or section.cards.count >= self.max_images:
            section.link(result)
        elif result.outcome == "changed":
            section.cards.add(
                change_card(
                    title=result.path,
                    url=result.url,
                    reason=result.reason,
                    scores={name: getattr(result, name) for name in _SCORES},
                    detail=result.detail,
                    visual=visual,
                    thresholds=self.thresholds,
                    decided_by=_decided_by(result, visual),
                )
            )
        else:
            section.cards.add(self._new_figure(result, visual))

    @staticmethod
    def _new_figure(result: Result, visual: Visual) -> str:
        caption = _link(result.url, result.path)
        if visual.new is None:
            picture = f'<div class="missing">{_e("; ".join(visual.notes) or "no picture")}</div>'
        else:
            width, height = visual.new.size
            picture = (
                f'<img src="{visual.new.data_uri()}" width="{width}" height="{height}" '
                f'alt="{_e(result.path)}">'
            )
        return f"<figure>{picture}<figcaption>{caption}</figcaption></figure>\n"

    @staticmethod
    def _failure_row(result: Result) -> str:
        where = f"line {result.line}: " if result.line else ""
        path = f" <code>{_e(result.path)}</code>" if result.path else ""
        return (
            f"<li>{where}{_link(result.url)}{path}<br>"
            f'<span class="msg">{_e(result.error or result.reason)}</span></li>\n'
        )

    def write(self, report: Report, *, exit_code: int | None = None) -> None:
        """Write the page: beside its name, fsynced, then renamed into place (once).

        Raises
        ------
        StoreError
            The page cannot be written; ``path`` is left as it was.
        """
        code = report.exit_code if exit_code is None else exit_code
        page = ReportFile(self.path)
        page.start()
        try:
            out = page.stream
            for chunk in self._chunks(report, code):
                if isinstance(chunk, _Spool):
                    chunk.copy_to(out)
                else:
                    out.write(chunk)
        except BaseException:
            page.discard()
            raise
        page.close()
        self.close()

    def close(self) -> None:
        """Drop the spooled parts (done by a :meth:`write` that succeeds; or instead of it)."""
        for section in self._sections.values():
            section.close()

    # ---------------------------------------------------------------------- the page

    def _chunks(self, report: Report, code: int) -> Iterator[str | _Spool]:
        changed, new = self._sections["changed"], self._sections["new"]
        n_failed = sum(self._failed.values())
        heading = ", ".join(f"{report.counts[o]} {o}" for o in ("changed", "new", "failed"))
        yield _page_head(f"fetcher sync: {heading}" + (f" - {self.title}" if self.title else ""))
        yield self._summary(report, code)
        if report.counts["changed"] or changed.cards.count or changed.links.count:
            yield self._section_head("changed", "Changed", report.counts["changed"])
            if changed.cards.count:
                yield _legend(self.thresholds)
            yield changed.cards
            yield from self._links_part(changed, "changed")
            yield "</section>\n"
        if report.counts["new"] or new.cards.count or new.links.count:
            yield self._section_head("new", "New", report.counts["new"])
            if new.cards.count:
                yield '<div class="grid">\n'
                yield new.cards
                yield "</div>\n"
            yield from self._links_part(new, "new")
            yield "</section>\n"
        if n_failed:
            yield self._section_head("failed", "Failed", n_failed)
            for reason, count in self._failed.most_common():
                rows = self._failures.get(reason, [])
                yield f'<h3>{_e(reason)} <span class="n">{count}</span></h3>\n<ul class="rows">\n'
                yield from rows
                yield "</ul>\n"
                if count > len(rows):
                    yield (
                        f'<p class="more">and {count - len(rows)} more {_e(reason)} failures'
                        " (the JSON report lists them all)</p>\n"
                    )
            yield "</section>\n"
        unchanged = report.counts["unchanged"]
        yield self._section_head("unchanged", "Unchanged", unchanged)
        reasons = report.reasons.get("unchanged", Counter())
        detail = ", ".join(f"{r} {n}" for r, n in reasons.most_common())
        yield (
            f"<p>{unchanged} {'URL' if unchanged == 1 else 'URLs'} unchanged"
            + (f" ({_e(detail)})" if detail else "")
            + ": counted, not listed.</p>\n</section>\n"
        )
        yield _page_foot(f" &middot; pictures for up to {self.max_images} images")

    @staticmethod
    def _section_head(anchor: str, title: str, count: int) -> str:
        return f'<section id="{anchor}">\n<h2>{title} <span class="n">{count}</span></h2>\n'

    def _links_part(self, section: _Section, outcome: str) -> Iterable[str | _Spool]:
        listed = section.links.count
        if not listed:
            return []
        if section.cards.count:
            intro = (
                f"{listed + section.unlisted} more {outcome} images, past the {self.max_images}"
                " shown with pictures (<code>[report] html_max</code>):"
            )
        else:
            intro = f"{listed + section.unlisted} {outcome} images:"
        parts: list[str | _Spool] = [
            f'<p class="more">{intro}</p>\n<ul class="rows">\n',
            section.links,
            "</ul>\n",
        ]
        if section.unlisted:
            parts.append(
                f'<p class="more">and {section.unlisted} more not listed here '
                "(the JSON report lists them all)</p>\n"
            )
        return parts

    def _summary(self, report: Report, code: int) -> str:
        kind = "" if code == 0 else (" stop" if code in (130, 141) else " bad")
        meaning = _EXIT_MEANING.get(code, "")
        status = f"exit {code}: {meaning}" if meaning else f"exit {code}"
        parts = [f'<header>\n<h1>fetcher sync<span class="status{kind}">{status}</span></h1>\n']
        facts = [
            f"{report.total} URLs",
            f"{report.elapsed:.1f} s",
            f"{format_bytes(report.bytes)} received",
            f"finished {time.strftime('%Y-%m-%d %H:%M:%S')}",
        ]
        if self.title:
            facts.insert(0, f"<code>{_e(self.title)}</code>")
        parts.append(f'<p class="meta">{" &middot; ".join(facts)}</p>\n')
        if report.dry_run:
            parts.append('<p class="banner">dry run: decided everything, wrote nothing</p>\n')
        if report.interrupted:
            parts.append(
                '<p class="banner">interrupted: this page shows the URLs finished before it</p>\n'
            )
        rows = ["<tr><th>outcome</th><th>count</th><th>by reason</th></tr>"]
        for outcome in report.shown_outcomes():
            reasons = report.reasons.get(outcome, Counter())
            chips = "".join(
                f'<span class="chip">{_e(r)} {n}</span>' for r, n in reasons.most_common()
            )
            rows.append(
                f'<tr><td><span class="dot o-{outcome}"></span>{outcome}</td>'
                f'<td class="num">{report.counts[outcome]}</td><td>{chips}</td></tr>'
            )
        parts.append(f'<table class="counts">{"".join(rows)}</table>\n<nav>')
        for outcome, title in (("changed", "Changed"), ("new", "New"), ("failed", "Failed")):
            if report.counts[outcome]:
                parts.append(f'<a href="#{outcome}">{title} ({report.counts[outcome]})</a>')
        parts.append("</nav>\n</header>\n")
        return "".join(parts)


def write_compare_page(
    path: str | os.PathLike[str],
    comparison: Comparison,
    visual: Visual,
    *,
    old_name: str,
    new_name: str,
    thresholds: CompareConfig | None = None,
) -> None:
    """The page of ``fetcher compare OLD NEW --html FILE``: one pair, written atomically."""
    limits = thresholds or CompareConfig()
    verdict = "same" if comparison.same else "changed"
    title = f"fetcher compare: {verdict} ({comparison.reason})"
    card = change_card(
        title=new_name,
        url=None,
        reason=comparison.reason,
        scores={name: getattr(comparison, name) for name in _SCORES},
        detail=comparison.detail,
        visual=visual,
        thresholds=limits,
        decided_by=comparison.decided_by,
        labels=(f"old: {old_name}", f"new: {new_name}"),
    )
    kind = "" if comparison.same else " stop"
    text = (
        _page_head(title)
        + f'<header>\n<h1>fetcher compare<span class="status{kind}">{_e(verdict)}: '
        f"{_e(comparison.reason)}</span></h1>\n"
        f'<p class="meta"><code>{_e(old_name)}</code> &rarr; <code>{_e(new_name)}</code></p>\n'
        "</header>\n" + (_legend(limits) if visual.diff is not None else "") + card + _page_foot()
    )
    page = ReportFile(path)
    page.start()
    try:
        page.stream.write(text)
    except BaseException:
        page.discard()
        raise
    page.close()
