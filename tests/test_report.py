"""Tests of fetcher.report: Result, counts and exit status, summaries, JSON lines, progress."""

from __future__ import annotations

import dataclasses
import io
import json
import re
import stat
import time
import tracemalloc
from pathlib import Path

import pytest

from fetcher.errors import StoreError
from fetcher.report import (
    OUTCOMES,
    Progress,
    Report,
    ReportFile,
    ReportWriter,
    Result,
    format_bytes,
)

#: The report fields DESIGN.md names.
DESIGN_FIELDS = (
    "url",
    "path",
    "outcome",
    "reason",
    "http_status",
    "bytes",
    "ssim",
    "nrmse",
    "local_edit",
    "elapsed",
    "error",
)


def result(outcome: str, reason: str, n: int = 0, **more: object) -> Result:
    return Result(
        url=f"https://img.example/{outcome}/{reason}/{n}.png",
        path=f"img.example/{outcome}/{reason}/{n}.png",
        outcome=outcome,
        reason=reason,
        **more,  # type: ignore[arg-type]
    )


def nightly() -> Report:
    """The run of the summary-line example: new 3, changed 1, unchanged 120 (118 + 2)."""
    report = Report()
    for i in range(3):
        report.add(result("new", "new", i, bytes=1_000_000))
    report.add(result("changed", "dissimilar", bytes=1_100_000))
    for i in range(118):
        report.add(result("unchanged", "not-modified", i))
    for i in range(2):
        report.add(result("unchanged", "similar", i))
    report.elapsed = 2.3
    return report


# -- Result ------------------------------------------------------------------------------------
@pytest.mark.parametrize("outcome", ["skipped", "", "NEW", "ok"])
def test_result_rejects_an_unknown_outcome(outcome: str) -> None:
    with pytest.raises(ValueError, match="outcome"):
        Result(url="u", path="p", outcome=outcome, reason="x")


@pytest.mark.parametrize("outcome", OUTCOMES)
def test_result_accepts_each_outcome_and_only_failed_is_not_ok(outcome: str) -> None:
    assert Result(url="u", path="p", outcome=outcome, reason="r").ok is (outcome != "failed")


def test_result_is_frozen() -> None:
    r = result("new", "new")
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.outcome = "failed"  # type: ignore[misc]


def test_to_dict_has_every_design_field_in_order_and_rounds_elapsed() -> None:
    r = result("unchanged", "similar", ssim=0.97, nrmse=0.98, local_edit=0.9, elapsed=1.234567891)
    record = r.to_dict()
    keys = list(record)
    assert [k for k in keys if k in DESIGN_FIELDS] == list(DESIGN_FIELDS)
    assert record["elapsed"] == 1.2346
    assert (record["ssim"], record["nrmse"], record["local_edit"]) == (0.97, 0.98, 0.9)
    assert record["error"] is None and record["http_status"] is None


# -- Report ------------------------------------------------------------------------------------
def test_counts_reasons_bytes_and_failures() -> None:
    report = Report()
    report.add(result("new", "new", bytes=100))
    report.add(result("new", "new", 1, bytes=50))
    report.add(result("unchanged", "not-modified"))
    report.add(result("failed", "http-404", http_status=404, error="GET x: 404 Not Found"))
    report.add(result("failed", "timeout", error="GET y: no answer"))
    assert report.total == 5
    assert dict(report.counts) == {"new": 2, "unchanged": 1, "failed": 2}
    assert dict(report.reasons["failed"]) == {"http-404": 1, "timeout": 1}
    assert report.bytes == 150
    assert [f.reason for f in report.failures] == ["http-404", "timeout"]  # only failures kept


@pytest.mark.parametrize(
    ("outcomes", "interrupted", "code"),
    [
        ([], False, 0),
        (["new", "changed", "unchanged"], False, 0),
        (["new", "failed"], False, 1),
        (["failed"], False, 1),
        (["new"], True, 130),
        (["failed"], True, 130),
    ],
)
def test_exit_code(outcomes: list[str], interrupted: bool, code: int) -> None:
    report = Report(interrupted=interrupted)
    for i, outcome in enumerate(outcomes):
        report.add(result(outcome, "r", i))
    assert report.exit_code == code


def test_finish_stops_the_clock() -> None:
    before = time.monotonic()
    report = Report()
    assert report.elapsed == 0.0
    assert report.finish() is report
    span = time.monotonic() - before
    assert 0.0 <= report.elapsed <= span  # the time from creation to finish, no more


def test_summary_line_of_the_nightly_example() -> None:
    # exactly the format of the example
    assert nightly().summary_line() == (
        "new 3, changed 1, unchanged 120 (not-modified 118, similar 2), failed 0, 4.1 MB in 2.3 s"
    )


def test_summary_line_names_failure_reasons_most_common_first() -> None:
    report = Report(elapsed=0.04)
    report.add(result("failed", "timeout", 1))
    for i in range(3):
        report.add(result("failed", "http-404", i))
    assert report.summary_line() == (
        "new 0, changed 0, unchanged 0, failed 4 (http-404 3, timeout 1), 0 B in 0.0 s"
    )


def test_summary_line_marks_dry_runs_and_interruptions() -> None:
    assert Report(dry_run=True).summary_line().endswith("0 B in 0.0 s (dry run: nothing written)")
    assert Report(interrupted=True).summary_line().endswith("0 B in 0.0 s (interrupted)")


def test_deleted_files_and_the_history_size_show_only_when_there_are_some() -> None:
    report = Report(elapsed=0.04)
    report.add(result("new", "new", 0))
    report.add(Result(url="u", path="gone.png", outcome="deleted", reason="not-listed"))
    report.history = (3, 2500)
    assert report.summary_line() == (
        "new 1, changed 0, unchanged 0, failed 0, deleted 1, 0 B in 0.0 s, history 3 files 2.5 kB"
    )
    assert report.exit_code == 0
    table = report.summary_table().splitlines()
    at = next(n for n, row in enumerate(table) if row.startswith("deleted"))
    assert table[at].split() == ["deleted", "1", "not-listed", "1"]
    assert table[at + 1].endswith(", history 3 files 2.5 kB")  # the line after the counts


def test_summary_table() -> None:
    lines = nightly().summary_table().splitlines()
    assert lines[0].split() == ["outcome", "count", "reasons"]
    rows = {line.split()[0]: line for line in lines[1:5]}
    assert list(rows) == list(OUTCOMES[:4])  # "deleted" only when --delete deleted some
    assert rows["unchanged"].split(None, 2) == ["unchanged", "120", "not-modified 118, similar 2"]
    assert rows["failed"].split() == ["failed", "0"]
    # counts right-aligned in one column
    ends = {line.index(line.split()[1]) + len(line.split()[1]) for line in lines[1:5]}
    assert len(ends) == 1
    assert lines[5] == "124 URLs, 4.1 MB in 2.3 s"
    paths = [
        r.path
        for r in (result("changed", "dissimilar"), *(result("new", "new", i) for i in range(3)))
    ]
    assert lines[6:] == ["changed:", f"  {paths[0]}", "new:", *(f"  {p}" for p in paths[1:])]


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 kB"),
        (1500, "1.5 kB"),
        (4_100_000, "4.1 MB"),
        (2_500_000_000, "2.5 GB"),
        (7_000_000_000_000, "7000.0 GB"),
    ],
)
def test_format_bytes_decimal_units(n: int, text: str) -> None:
    assert format_bytes(n) == text


# -- ReportWriter ------------------------------------------------------------------------------
class _Stream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_report_writer_writes_one_flushed_json_object_per_line() -> None:
    stream = _Stream()
    writer = ReportWriter(stream)
    first = result("new", "new", bytes=12, http_status=200, elapsed=0.5)
    writer.write(first)
    assert stream.flushes >= 1  # flushed as it goes: a killed run keeps its lines
    writer.write_all(
        [
            Result(
                url="https://bilder.example/größe.png",
                path="größe.png",
                outcome="unchanged",
                reason="similar",
                ssim=0.91,
            ),
            result("failed", "http-503", http_status=503, error="GET x: 503 (after 4 attempts)"),
        ]
    )
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    records = [json.loads(line) for line in lines]
    for record in records:
        assert set(DESIGN_FIELDS) <= set(record)
    assert records[0]["url"] == first.url and records[0]["bytes"] == 12
    assert records[1]["path"] == "größe.png" and "größe" in lines[1]  # not \\u-escaped
    assert (records[2]["outcome"], records[2]["http_status"]) == ("failed", 503)
    assert records[2]["error"].endswith("(after 4 attempts)")


# -- ReportFile --------------------------------------------------------------------------------
def test_report_file_is_written_beside_its_name_and_renamed_into_place_at_the_end(
    tmp_path: Path,
) -> None:
    final = tmp_path / "r.jsonl"
    final.write_text("previous\n")
    final.chmod(0o640)
    writer = ReportFile(final)
    assert not writer.started and sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]
    writer.start()
    writer.write(result("new", "new", 1))
    writer.write(result("failed", "http-404", 2))
    (partial,) = tmp_path.glob(".r.jsonl.*.part")
    assert partial.read_text().count("\n") == 2  # flushed as it goes
    assert final.read_text() == "previous\n"  # readers see the whole previous report
    writer.close()
    assert [json.loads(line)["url"] for line in final.read_text().splitlines()] == [
        result("new", "new", 1).url,
        result("failed", "http-404", 2).url,
    ]
    assert stat.S_IMODE(final.stat().st_mode) == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.jsonl"]
    writer.close()  # closing twice is harmless


def test_report_file_never_started_touches_nothing(tmp_path: Path) -> None:
    ReportFile(tmp_path / "r.jsonl").close()
    assert list(tmp_path.iterdir()) == []


def test_report_file_in_a_missing_folder_is_a_store_error_naming_it(tmp_path: Path) -> None:
    target = tmp_path / "no" / "r.jsonl"
    with pytest.raises(StoreError, match=re.escape(str(target))):
        ReportFile(target).start()


# -- Progress ----------------------------------------------------------------------------------
def test_progress_disabled_writes_nothing() -> None:
    stream = io.StringIO()
    bar = Progress(enabled=False, stream=stream)
    bar.update(result("new", "new"))
    bar.close()
    assert stream.getvalue() == ""


def test_progress_enabled_draws_on_its_stream_and_closes_once() -> None:
    stream = io.StringIO()
    bar = Progress(enabled=True, stream=stream)
    for i in range(3):
        bar.update(result("new", "new", i))
    bar.close()
    drawn = stream.getvalue()
    assert "url" in drawn
    bar.close()  # closing twice is harmless
    bar.update(result("new", "new"))  # and an update after close draws nothing
    assert stream.getvalue() == drawn


def test_progress_with_a_total_shows_how_far_and_an_eta() -> None:
    stream = io.StringIO()
    bar = Progress(enabled=True, stream=stream, total=4)
    assert bar.enabled
    for i in range(2):
        bar.update(result("new", "new", i))
    drawn = str(bar._bar)  # the meter as tqdm draws it now
    bar.close()
    assert "2/4" in drawn
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d", drawn), drawn  # elapsed<remaining (ETA)


# -- new and changed paths ---------------------------------------------------------------------
def test_report_lists_new_and_changed_paths_in_order_and_the_table_shows_the_first() -> None:
    report = Report()
    for i in range(12):
        report.add(dataclasses.replace(result("new", "new", i), path=f"n/{i:02d}.png"))
    for i in range(2):
        report.add(dataclasses.replace(result("changed", "dissimilar", i), path=f"c/{i}.png"))
    report.add(result("unchanged", "similar", 1))
    report.add(result("failed", "http-404", 2))
    assert list(report.new_paths()) == [f"n/{i:02d}.png" for i in range(12)]
    assert list(report.changed_paths()) == ["c/0.png", "c/1.png"]
    report.add(dataclasses.replace(result("changed", "dimensions", 9), path="c/9.png"))
    assert list(report.changed_paths())[-1] == "c/9.png"  # adding after reading goes on
    tail = report.summary_table().split("URLs, ")[1].splitlines()[1:]
    assert tail == [
        "changed:",
        "  c/0.png",
        "  c/1.png",
        "  c/9.png",
        "new:",
        *[f"  n/{i:02d}.png" for i in range(5)],
        "  … and 7 more",
    ]


def test_a_million_line_run_keeps_its_changed_paths_in_bounded_memory() -> None:
    """200 000 changed paths of 60 bytes: 12 MB as a list; the report holds under 1 MiB."""
    report = Report()
    changed = result("changed", "dissimilar")
    tracemalloc.start()
    try:
        for i in range(200_000):
            report.add(
                dataclasses.replace(changed, path=f"host.example/images/{i:08d}/{'x' * 30}.png")
            )
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held < 1 << 20, held
    paths = report.changed_paths()
    assert next(paths).startswith("host.example/images/00000000/")
    assert sum(1 for _ in paths) == 199_999
