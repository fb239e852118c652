"""Keep the README honest: commands, flags, config keys, report fields and the quick start."""

from __future__ import annotations

import argparse
import dataclasses
import io
import re
from pathlib import Path

import pytest
from conftest import encode, gradient_rgb, photo
from origin import Origin
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

import fetcher
from fetcher.cli import build_parser
from fetcher.config import Config
from fetcher.demo import run_demo
from fetcher.report import REPORT_FIELDS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def _quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block is not None, "the Quick start has a sh code block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_quick_start_has_exactly_two_commands_install_demo_and_tests() -> None:
    commands = _quick_start_commands()
    assert len(commands) == 2
    assert commands[0] == "pip install . && fetcher demo"
    assert "pytest" in commands[1] and commands[1].startswith('pip install ".[test,dask]"')


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert _quick_start_commands()[1] in ci


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no subcommands")


def test_every_command_and_flag_is_documented() -> None:
    for name, sub in _subparsers().items():
        assert f"fetcher {name}" in README, name
        for action in sub._actions:
            for option in action.option_strings:
                if option in ("-h", "--help"):
                    continue
                assert option in README, f"{name} {option} is not in the README"


def test_every_config_key_is_documented() -> None:
    config = Config()
    for section in (f.name for f in dataclasses.fields(Config)):
        for f in dataclasses.fields(getattr(config, section)):
            assert f"`{section}.{f.name}`" in README or f"{section}.{f.name}`" in README, (
                f"{section}.{f.name} is not in the README's config table"
            )


def test_every_report_field_is_documented() -> None:
    for name in REPORT_FIELDS:
        assert f"`{name}`" in README, name


def test_exit_statuses_are_documented() -> None:
    for status in ("`0`", "`1`", "`2`", "`130`"):
        assert status in README


def test_library_names_in_the_readme_exist() -> None:
    for name in ("sync", "sync_one", "compare", "load_config", "FetcherError", "Report", "Result"):
        assert f"fetcher.{name}" in README or name in README
        assert name in fetcher.__all__


def test_demo_runs_offline_and_every_decision_is_right(tmp_path: Path) -> None:
    lines: list[str] = []
    assert run_demo(str(tmp_path / "demo"), out=lines.append) == 0
    text = "\n".join(lines)
    for reason in ("not-modified", "similar", "identical-pixels", "dissimilar"):
        assert reason in text
    assert "expected" not in text  # a wrong decision is marked "(expected ...)"
    # what it points the user to is there: the page, the metrics, a restorable version
    page = tmp_path / "demo" / "fetcher-report.html"
    assert str(page) in text and page.read_text(encoding="utf-8").count("data:image/") >= 9
    families = {
        (f.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families((tmp_path / "demo" / "fetcher.prom").read_text())
        for s in f.samples
    }
    dest = str(tmp_path / "demo")
    assert families[("fetcher_outcome_urls", (("dest", dest), ("outcome", "changed")))] == 3
    assert families[("fetcher_exit_status", (("dest", dest),))] == 0
    restore = text.splitlines()[-1].split()
    assert restore[:2] == ["fetcher", "restore"] and restore[-1] == "--list"
    assert fetcher.restore(dest, str(Path(restore[2]).relative_to(dest))).version.number == 1


def test_the_readme_python_examples_run(
    origin: Origin,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Every ```python block of the README runs as written, against a loopback origin."""
    blocks = re.findall(r"```python\n(.*?)```", README, re.S)
    assert blocks, "the README shows the library in Python"
    jpeg = encode(photo("astronaut").resize((320, 320)), "JPEG", quality=92)
    origin.publish("/a.jpg", jpeg, content_type="image/jpeg")
    origin.publish("/b.png", encode(gradient_rgb()))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "urls.txt").write_text(f"{origin.url('/a.jpg')}\n{origin.url('/b.png')}\n")
    reencoded = Image.open(io.BytesIO(jpeg))
    (tmp_path / "a-reencoded.webp").write_bytes(encode(reencoded, "WEBP", quality=90))
    for block in blocks:
        exec(compile(block.replace("https://example.org", origin.base_url), "README", "exec"), {})
    out = capsys.readouterr().out
    assert "new 2, changed 0, unchanged 0" in out  # the list, synced
    assert "new new" in out  # sync_one with the caller's session
    assert "True similar" in out  # a WebP re-encode of the file just mirrored
    assert (tmp_path / "mirror" / "a.jpg").read_bytes() == jpeg


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to -."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_of_the_readme_and_docs_leads_somewhere() -> None:
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert len(pages) >= 3, "the README links docs/design.md and docs/performance.md"
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # an absolute URL
            file, _, anchor = target.partition("#")
            linked = (page.parent / file).resolve() if file else page
            assert linked.is_file(), f"{page.name}: {target} names no file"
            if anchor:
                body = re.sub(r"```.*?```", "", linked.read_text(encoding="utf-8"), flags=re.S)
                headings = re.findall(r"^#{1,6} (.+)$", body, re.M)
                assert anchor in {_anchor(h) for h in headings}, f"{page.name}: {target}"
