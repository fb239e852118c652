"""fetcher: keep a folder of images in step with a list of image URLs, rewriting only changes."""

from __future__ import annotations

from .config import CompareConfig, Config, HttpConfig, SyncConfig, load_config
from .errors import (
    ConfigError,
    DecodeError,
    FetchConnectionError,
    FetcherError,
    FetchError,
    FetchTimeoutError,
    HTTPStatusError,
    LockError,
    StateError,
    StoreError,
    TooLargeError,
    TooManyPixelsError,
    UnsafePathError,
    UrlError,
)

__version__ = "0.1.0"

__all__ = [
    "CompareConfig",
    "Config",
    "ConfigError",
    "DecodeError",
    "FetchConnectionError",
    "FetchError",
    "FetchTimeoutError",
    "FetcherError",
    "HTTPStatusError",
    "HttpConfig",
    "LockError",
    "StateError",
    "StoreError",
    "SyncConfig",
    "TooLargeError",
    "TooManyPixelsError",
    "UnsafePathError",
    "UrlError",
    "__version__",
    "load_config",
]
