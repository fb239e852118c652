"""Tests for fetcher/config.py: defaults, the example file, overrides and one-line errors."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from fetcher.config import Config, load_config
from fetcher.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config.example.toml"


def test_example_file_loads_and_equals_the_defaults() -> None:
    assert load_config(EXAMPLE) == Config()


def test_example_file_lists_every_key_of_every_section() -> None:
    raw = tomllib.loads(EXAMPLE.read_text())
    defaults = Config()
    for section in (f.name for f in dataclasses.fields(Config)):
        fields = {f.name for f in dataclasses.fields(getattr(defaults, section))}
        assert set(raw[section]) == fields, section


def test_overrides_beat_the_file_and_none_is_ignored(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[sync]\nworkers = 3\nper_host = 2\n")
    config = load_config(cfg, sync={"workers": 5, "per_host": None})
    assert config.sync.workers == 5
    assert config.sync.per_host == 2


def test_int_accepted_for_float_keys() -> None:
    config = load_config(http={"read_timeout": 7})
    assert config.http.read_timeout == 7.0
    assert isinstance(config.http.read_timeout, float)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[sync]\nwrkers = 3\n", "sync.wrkers"),
        ("[sync]\nworkers = 0\n", "sync.workers"),
        ("[sync]\nworkers = '4'\n", "sync.workers"),
        ("[sync]\nworkers = true\n", "sync.workers"),
        ("[sync]\nlayout = 'flat'\n", "sync.layout"),
        ("[http]\nheaders = { X = 1 }\n", "http.headers"),
        ("[compare]\nssim = 1.5\n", "compare.ssim"),
        ("[compare]\nlocal_edit = -0.1\n", "compare.local_edit"),
        ("[compare]\nlocal_shift = 0.9\n", "compare.local_shift"),  # a key of fetcher 0.1
        ("[nonsense]\nx = 1\n", "[nonsense]"),
        ("sync = 3\n", "[sync]"),
        ("[sync\n", "not valid TOML"),
    ],
)
def test_bad_files_give_one_line_naming_the_key(tmp_path: Path, text: str, needle: str) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(cfg)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message.strip()


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        load_config(tmp_path / "nope.toml")


def test_config_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        load_config(sync={"workers": -1})


def test_replace_validates_and_keeps_other_keys() -> None:
    base = load_config(sync={"workers": 3})
    changed = base.replace(http={"retries": 0})
    assert changed.http.retries == 0
    assert changed.sync.workers == 3
    with pytest.raises(ConfigError, match=r"http\.retries"):
        base.replace(http={"retries": -1})


def test_headers_are_read_only() -> None:
    config = load_config(http={"headers": {"X-Token": "abc"}})
    assert config.http.headers["X-Token"] == "abc"
    with pytest.raises(TypeError):
        config.http.headers["X"] = "y"  # type: ignore[index]
