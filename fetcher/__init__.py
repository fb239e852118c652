"""fetcher: keep a folder of images in step with a list of image URLs, rewriting only changes."""

from __future__ import annotations

from .comparison import Comparison, compare
from .config import CompareConfig, Config, HttpConfig, ReportConfig, SyncConfig, load_config
from .errors import (
    ConfigError,
    DecodeError,
    FetchConnectionError,
    FetcherError,
    FetchError,
    FetchTimeoutError,
    HostDownError,
    HTTPStatusError,
    ListError,
    LockError,
    StateError,
    StoreError,
    TooLargeError,
    TooManyPixelsError,
    UnsafePathError,
    UrlError,
)
from .history import restore
from .htmlreport import HtmlReport
from .mirror import sync, sync_one
from .report import Report, ReportWriter, Result

__version__ = "0.1.0"

__all__ = [
    "CompareConfig",
    "Comparison",
    "Config",
    "ConfigError",
    "DecodeError",
    "FetchConnectionError",
    "FetchError",
    "FetchTimeoutError",
    "FetcherError",
    "HTTPStatusError",
    "HostDownError",
    "HtmlReport",
    "HttpConfig",
    "ListError",
    "LockError",
    "Report",
    "ReportConfig",
    "ReportWriter",
    "Result",
    "StateError",
    "StoreError",
    "SyncConfig",
    "TooLargeError",
    "TooManyPixelsError",
    "UnsafePathError",
    "UrlError",
    "__version__",
    "compare",
    "load_config",
    "restore",
    "sync",
    "sync_one",
]
