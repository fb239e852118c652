"""Tests for fetcher.metrics: the --metrics file, read back with prometheus_client's parser."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from conftest import encode, gradient_rgb
from origin import Origin
from prometheus_client.parser import text_string_to_metric_families
from test_sync import Mirror

from fetcher.cli import main
from fetcher.metrics import read_last_success, render, write_metrics
from fetcher.report import OUTCOMES, Report, Result
from fetcher.store import DestinationLock


def parse(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Every family's samples as (labels, value), by family name; the types checked."""
    families: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge", family.name
        assert family.documentation, family.name
        families[family.name] = [(dict(s.labels), s.value) for s in family.samples]
    return families


def value(families: dict[str, Any], name: str, **labels: str) -> float:
    found = [v for got, v in families[name] if all(got.get(k) == x for k, x in labels.items())]
    assert len(found) == 1, (name, labels, families.get(name))
    return float(found[0])


@pytest.fixture
def site(origin: Origin, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Mirror:
    m = Mirror(origin, tmp_path, capsys)
    origin.publish("/a.png", encode(gradient_rgb(64, 48), "PNG"))
    origin.publish("/b.png", encode(gradient_rgb(48, 32), "PNG"))
    m.write_list(f"{m.url('/a.png')} a.png", f"{m.url('/b.png')} b.png")
    return m


def exit_status(site: Mirror, *flags: str, config: Path | None = None) -> int:
    """``fetcher sync`` on the site's list, for runs that may end before writing a report."""
    argv = ["sync", str(site.list), "--dest", str(site.dest), "--config"]
    return main([*argv, str(config or site.config), *flags])


def test_a_run_writes_its_figures_for_the_textfile_collector(site: Mirror, tmp_path: Path) -> None:
    prom = tmp_path / "textfile" / "fetcher.prom"
    prom.parent.mkdir()
    run = site.sync("--metrics", str(prom), "--keep", "2")
    assert run.code == 0, run.err
    got = parse(prom.read_text("utf-8"))
    dest = str(site.dest)
    for samples in got.values():  # every series names its destination
        assert all(labels["dest"] == dest for labels, _ in samples)
    assert value(got, "fetcher_urls", outcome="new", reason="new") == 2
    assert {labels["outcome"] for labels, _ in got["fetcher_outcome_urls"]} == set(OUTCOMES)
    assert value(got, "fetcher_outcome_urls", outcome="failed") == 0
    assert value(got, "fetcher_received_bytes") == sum(r["bytes"] for r in run.report)
    assert value(got, "fetcher_exit_status") == 0
    assert value(got, "fetcher_dry_run") == 0
    assert value(got, "fetcher_run_duration_seconds") >= 0
    ended = value(got, "fetcher_run_timestamp_seconds")
    assert value(got, "fetcher_last_success_timestamp_seconds") == ended
    assert (value(got, "fetcher_history_files"), value(got, "fetcher_history_bytes")) == (0, 0)
    assert [p.name for p in prom.parent.iterdir()] == ["fetcher.prom"]  # no temporary left
    assert prom.stat().st_mode & stat.S_IROTH  # node_exporter (another user) can read it


def test_a_failed_run_keeps_the_last_success_time(site: Mirror, tmp_path: Path) -> None:
    prom = tmp_path / "fetcher.prom"
    assert site.sync("--metrics", str(prom)).code == 0
    success = value(parse(prom.read_text("utf-8")), "fetcher_last_success_timestamp_seconds")

    site.origin.remove("/b.png")  # exit 1: one URL fails
    assert site.sync("--metrics", str(prom)).code == 1
    got = parse(prom.read_text("utf-8"))
    assert value(got, "fetcher_exit_status") == 1
    assert value(got, "fetcher_urls", outcome="failed", reason="http-404") == 1
    assert value(got, "fetcher_last_success_timestamp_seconds") == success
    assert value(got, "fetcher_run_timestamp_seconds") > success

    with DestinationLock(site.dest):  # exit 2: nothing could run (another run holds the lock)
        assert exit_status(site, "--metrics", str(prom)) == 2
    got = parse(prom.read_text("utf-8"))
    assert value(got, "fetcher_exit_status") == 2
    assert value(got, "fetcher_last_success_timestamp_seconds") == success
    assert got["fetcher_urls"] == []

    site.origin.publish("/b.png", encode(gradient_rgb(48, 32), "PNG"))
    assert site.sync("--metrics", str(prom), "--dry-run").code == 0  # a dry run syncs nothing
    got = parse(prom.read_text("utf-8"))
    assert value(got, "fetcher_dry_run") == 1
    assert value(got, "fetcher_last_success_timestamp_seconds") == success

    assert site.sync("--metrics", str(prom)).code == 0
    got = parse(prom.read_text("utf-8"))
    assert value(got, "fetcher_last_success_timestamp_seconds") > success


def test_a_bad_config_still_writes_exit_status_2(site: Mirror, tmp_path: Path) -> None:
    prom = tmp_path / "fetcher.prom"
    bad = tmp_path / "bad.toml"
    bad.write_text("[sync]\nworkers = -1\n", encoding="utf-8")
    assert exit_status(site, "--metrics", str(prom), config=bad) == 2
    got = parse(prom.read_text("utf-8"))
    assert value(got, "fetcher_exit_status") == 2
    assert "fetcher_last_success_timestamp_seconds" not in got  # never succeeded yet


def test_the_config_key_names_the_file(site: Mirror, tmp_path: Path) -> None:
    prom = tmp_path / "from-config.prom"
    config = tmp_path / "metrics.toml"
    config.write_text(
        site.config.read_text("utf-8") + f'\n[report]\nmetrics = "{prom}"\n', encoding="utf-8"
    )
    assert site.sync(config=config).code == 0
    assert value(parse(prom.read_text("utf-8")), "fetcher_exit_status") == 0


def test_a_metrics_file_that_cannot_be_written_is_one_line_and_exit_2(
    site: Mirror, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As for --report and --html: a monitor that no longer hears of the runs is told."""
    # its folder missing: known before the run, which then does not start
    capsys.readouterr()
    assert exit_status(site, "--metrics", str(tmp_path / "missing" / "fetcher.prom")) == 2
    err = capsys.readouterr().err
    assert "cannot write metrics file" in err and "no folder" in err
    assert len(err.strip().splitlines()) == 1
    assert not site.dest.exists()
    # known only at the end (its name is a folder): the run is done, the status says 2
    (tmp_path / "taken").mkdir()
    run = site.sync("--metrics", str(tmp_path / "taken"))
    assert run.code == 2
    assert "cannot write metrics file" in run.err
    assert len(run.err.strip().splitlines()) == 1
    assert (site.dest / "a.png").is_file()


def test_labels_are_escaped_and_read_back_exactly(tmp_path: Path) -> None:
    dest = '/srv/mir"ror\\night\nly'
    report = Report()
    report.add(Result(url="u", path="p", outcome="failed", reason="http-404"))
    text = render(dest, report, exit_status=1, duration=1.5, ended=2e9, last_success=1.5e9)
    got = parse(text)
    assert value(got, "fetcher_urls", outcome="failed", reason="http-404") == 1
    assert {labels["dest"] for labels, _ in got["fetcher_exit_status"]} == {dest}
    prom = tmp_path / "x.prom"
    write_metrics(prom, text)
    assert read_last_success(prom, dest) == 1.5e9
    assert read_last_success(prom, "/another/destination") is None
    assert read_last_success(tmp_path / "none.prom", dest) is None


def test_the_file_is_replaced_atomically_keeping_its_permissions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prom = tmp_path / "x.prom"
    write_metrics(prom, "# first\n")
    os.chmod(prom, 0o640)
    seen: list[tuple[str, str]] = []
    real_replace = os.replace

    def watch(src: Any, dst: Any) -> None:
        seen.append((Path(src).name, Path(dst).read_text("utf-8")))  # the old file still whole
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", watch)
    write_metrics(prom, "# second\n")
    [(temp, before)] = seen
    assert temp.startswith(".x.prom.") and not temp.endswith(".prom")  # the collector skips it
    assert before == "# first\n"
    assert prom.read_text("utf-8") == "# second\n"
    assert stat.S_IMODE(prom.stat().st_mode) == 0o640
