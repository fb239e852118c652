"""Keep the README honest: commands, flags, config keys, report fields and the quick start."""

from __future__ import annotations

import argparse
import dataclasses
import re
from pathlib import Path

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
