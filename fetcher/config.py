"""Configuration: frozen dataclasses per TOML section, loaded and validated up front."""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

__all__ = ["CompareConfig", "Config", "HttpConfig", "ReportConfig", "SyncConfig", "load_config"]


def _positive(value: float) -> bool:
    return value > 0


def _non_negative(value: float) -> bool:
    return value >= 0


def _unit(value: float) -> bool:
    return 0.0 <= value <= 1.0


@dataclass(frozen=True)
class SyncConfig:
    """``[sync]``: how a run is organised."""

    workers: int = field(default=12, metadata={"check": _positive, "want": "a positive integer"})
    per_host: int = field(default=8, metadata={"check": _positive, "want": "a positive integer"})
    compare_workers: int = field(
        default=0,
        metadata={"check": _non_negative, "want": "0 (one per core) or a positive integer"},
    )
    layout: str = field(
        default="host/path",
        metadata={"check": lambda v: v in ("host/path", "path"), "want": '"host/path" or "path"'},
    )
    state: str = field(default="", metadata={"want": "a path (empty: DEST/.fetcher/state.sqlite3)"})
    state_timeout: float = field(default=10.0, metadata={"check": _positive, "want": "seconds > 0"})
    processes: bool = True
    remote_time: bool = True
    scheduler: str = field(default="", metadata={"want": 'empty, "local" or tcp://HOST:PORT'})
    keep: int = field(
        default=0, metadata={"check": _non_negative, "want": "an integer >= 0 (0: keep none)"}
    )


@dataclass(frozen=True)
class HttpConfig:
    """``[http]``: timeouts, retries and limits of every request."""

    connect_timeout: float = field(
        default=10.0, metadata={"check": _positive, "want": "seconds > 0"}
    )
    read_timeout: float = field(default=30.0, metadata={"check": _positive, "want": "seconds > 0"})
    deadline: float = field(default=300.0, metadata={"check": _positive, "want": "seconds > 0"})
    retries: int = field(default=3, metadata={"check": _non_negative, "want": "an integer >= 0"})
    backoff: float = field(default=0.5, metadata={"check": _non_negative, "want": "seconds >= 0"})
    backoff_max: float = field(
        default=30.0, metadata={"check": _non_negative, "want": "seconds >= 0"}
    )
    retry_after_max: float = field(
        default=120.0, metadata={"check": _non_negative, "want": "seconds >= 0"}
    )
    max_bytes: int = field(
        default=64 * 1024 * 1024, metadata={"check": _positive, "want": "bytes > 0"}
    )
    max_redirects: int = field(
        default=5, metadata={"check": _non_negative, "want": "an integer >= 0"}
    )
    user_agent: str = "fetcher/0.1 (+https://pypi.org/project/fetcher/)"
    headers: Mapping[str, str] = field(default_factory=dict)
    host_failures: int = field(
        default=10, metadata={"check": _non_negative, "want": "an integer >= 0 (0: never)"}
    )


@dataclass(frozen=True)
class CompareConfig:
    """``[compare]``: when two images count as the same picture, and decoding limits."""

    ssim: float = field(default=0.937, metadata={"check": _unit, "want": "a number in [0, 1]"})
    nrmse: float = field(default=0.967, metadata={"check": _unit, "want": "a number in [0, 1]"})
    local_edit: float = field(
        default=0.969, metadata={"check": _unit, "want": "a number in [0, 1]"}
    )
    local_structure: float = field(
        default=0.868, metadata={"check": _unit, "want": "a number in [0, 1]"}
    )
    max_pixels: int = field(
        default=120_000_000, metadata={"check": _positive, "want": "pixels > 0"}
    )
    max_frames: int = field(
        default=1000, metadata={"check": _positive, "want": "a positive integer"}
    )


@dataclass(frozen=True)
class ReportConfig:
    """``[report]``: what a run leaves behind besides the files, for people and for monitoring."""

    html: str = field(default="", metadata={"want": "a path (empty: no HTML report)"})
    html_max: int = field(default=500, metadata={"check": _non_negative, "want": "an integer >= 0"})
    metrics: str = field(default="", metadata={"want": "a path (empty: no metrics file)"})


@dataclass(frozen=True)
class Config:
    """The whole configuration, one frozen dataclass per TOML section."""

    sync: SyncConfig = field(default_factory=SyncConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    compare: CompareConfig = field(default_factory=CompareConfig)
    report: ReportConfig = field(default_factory=ReportConfig)

    def replace(self, **sections: Mapping[str, Any]) -> Config:
        """Return a copy with keys of some sections replaced, validated like the file.

        ``config.replace(sync={"workers": 4})``.
        """
        return _merge(_as_raw(self), sections)


_SECTIONS: dict[str, type[Any]] = {
    "sync": SyncConfig,
    "http": HttpConfig,
    "compare": CompareConfig,
    "report": ReportConfig,
}


def _as_raw(config: Config) -> dict[str, dict[str, Any]]:
    return {name: dataclasses.asdict(getattr(config, name)) for name in _SECTIONS}


_WANT: dict[Any, str] = {
    bool: "true or false",
    str: "a string",
    Mapping[str, str]: "a table of strings",
}


def _type_ok(value: Any, annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (Mapping, dict) or annotation in (Mapping, dict):
        return isinstance(value, Mapping) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        )
    if origin in (typing.Union, types.UnionType):
        return any(_type_ok(value, arg) for arg in typing.get_args(annotation))
    raise TypeError(f"unsupported config annotation {annotation!r}")  # a bug, not a user error


def _build_section(name: str, cls: type[Any], raw: Mapping[str, Any]) -> Any:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"config [{name}] must be a table, not {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in fields:
            raise ConfigError(
                f"unknown config key {name}.{key} (known: {', '.join(sorted(fields))})"
            )
        meta = fields[key].metadata
        want = meta.get("want") or _WANT.get(hints[key], str(hints[key]))
        if not _type_ok(value, hints[key]):
            raise ConfigError(f"config key {name}.{key} must be {want}, got {value!r}")
        check = meta.get("check")
        if check is not None and not check(value):
            raise ConfigError(f"config key {name}.{key} must be {want}, got {value!r}")
        if hints[key] is float:
            value = float(value)
        if key == "headers":
            value = types.MappingProxyType(dict(value))
        values[key] = value
    return cls(**values)


def _build(raw: Mapping[str, Any]) -> Config:
    for name in raw:
        if name not in _SECTIONS:
            raise ConfigError(f"unknown config section [{name}] (known: {', '.join(_SECTIONS)})")
    return Config(
        **{name: _build_section(name, cls, raw.get(name, {})) for name, cls in _SECTIONS.items()}
    )


def load_config(
    path: str | os.PathLike[str] | None = None, **overrides: Mapping[str, Any]
) -> Config:
    """Load a TOML config file (or the defaults) and apply overrides.

    Parameters
    ----------
    path : path-like, optional
        A TOML file; every key is optional. ``None`` means the defaults.
    **overrides : mapping
        Per-section keys that replace the file's, e.g. ``sync={"workers": 4}``
        (the command line's flags arrive this way).

    Raises
    ------
    ConfigError
        The file cannot be read or parsed, or a section, key or value is unknown
        or invalid; the message names the key.
    """
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            with Path(path).open("rb") as fh:
                raw = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(
                f"cannot read config file {os.fspath(path)}: {exc.strerror or exc}"
            ) from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {os.fspath(path)} is not valid TOML: {exc}") from None
    return _merge(raw, overrides)


def _merge(raw: dict[str, Any], overrides: Mapping[str, Mapping[str, Any]]) -> Config:
    """Overlay per-section overrides (``None`` values ignored) on raw TOML data and validate."""
    raw = dict(raw)
    for section, values in overrides.items():
        current = raw.get(section, {})
        if section not in _SECTIONS or not isinstance(current, Mapping):
            raise ConfigError(f"unknown config section [{section}] (known: {', '.join(_SECTIONS)})")
        raw[section] = {**current, **{k: v for k, v in values.items() if v is not None}}
    return _build(raw)
