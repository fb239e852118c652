"""The exception tree: every error fetcher raises on purpose derives from FetcherError.

::

    FetcherError
    ├── ConfigError(ValueError)          bad config file, key or value
    ├── ListError(OSError)               the URL list cannot be read (a missing or unreadable file)
    ├── UrlError(ValueError)             reason "bad-url": a list line or URL that cannot be used
    │   └── UnsafePathError              reason "unsafe-path": destination outside the destination folder
    ├── FetchError(OSError)              transport failure after retries
    │   ├── HTTPStatusError              reason "http-NNN"
    │   ├── FetchTimeoutError(TimeoutError)  reason "timeout" (per read) or "deadline" (whole download)
    │   ├── FetchConnectionError(ConnectionError)  reason "connection"
    │   ├── TooLargeError                reason "too-large": body over the byte cap
    │   └── HostDownError                reason "host-down": the host's circuit breaker is open
    ├── DecodeError(ValueError)          reason "not-an-image": bytes that are not a decodable image
    │   └── TooManyPixelsError           reason "too-many-pixels": over the pixel cap, refused before decoding
    ├── StoreError(OSError)              reason "io-error": reading or writing the destination
    │   └── LockError                    another run holds the destination lock
    └── StateError                       the state database cannot be opened or used

Each class carries a ``reason``: the short word that ends up in a failed result's
``reason`` field and in the JSON-lines report. Classes that describe a kind of
failure the standard library also knows inherit the matching built-in as well,
so ``except ValueError`` or ``except OSError`` in a caller keeps working.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DecodeError",
    "FetchConnectionError",
    "FetchError",
    "FetchTimeoutError",
    "FetcherError",
    "HTTPStatusError",
    "HostDownError",
    "ListError",
    "LockError",
    "StateError",
    "StoreError",
    "TooLargeError",
    "TooManyPixelsError",
    "UnsafePathError",
    "UrlError",
]


class FetcherError(Exception):
    """Base class of every error fetcher raises on purpose."""

    reason: str = "error"

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(FetcherError, ValueError):
    """A config file, key or value that fetcher cannot use; the message names the key."""

    reason = "config"


class ListError(FetcherError, OSError):
    """The URL list cannot be read (the file is missing, a folder, unreadable)."""

    reason = "list"

    def __str__(self) -> str:
        return self.message


class UrlError(FetcherError, ValueError):
    """A URL-list line or URL that cannot be fetched."""

    reason = "bad-url"


class UnsafePathError(UrlError):
    """A destination path that would land outside the destination folder."""

    reason = "unsafe-path"


class FetchError(FetcherError, OSError):
    """A download that failed after retries."""

    reason = "connection"
    #: Set by the transport on a failure worth another try (refused, reset, timeout).
    transient: bool = False

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        url: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message, reason=reason)
        self.url = url
        self.status = status

    def __str__(self) -> str:
        return self.message


class HTTPStatusError(FetchError):
    """The origin answered with an HTTP status that is not a success."""

    def __init__(self, message: str, *, status: int, url: str | None = None) -> None:
        super().__init__(message, reason=f"http-{status}", url=url, status=status)


class FetchTimeoutError(FetchError, TimeoutError):
    """A connect or read timeout, or the whole-download deadline, expired."""

    reason = "timeout"


class FetchConnectionError(FetchError, ConnectionError):
    """The connection could not be made or was broken."""

    reason = "connection"


class TooLargeError(FetchError):
    """The body is larger than the configured byte cap."""

    reason = "too-large"


class HostDownError(FetchError):
    """The host failed to connect or answer too many times in a row: its URLs fail at once."""

    reason = "host-down"


class DecodeError(FetcherError, ValueError):
    """Bytes that do not decode as an image: truncated, corrupt or not an image at all."""

    reason = "not-an-image"


class TooManyPixelsError(DecodeError):
    """An image whose header claims more pixels than the configured cap."""

    reason = "too-many-pixels"


class StoreError(FetcherError, OSError):
    """Reading or writing a file under the destination failed."""

    reason = "io-error"

    def __str__(self) -> str:
        return self.message


class LockError(StoreError):
    """Another run holds the destination's lock."""

    reason = "locked"


class StateError(FetcherError):
    """The state database cannot be opened, read or written."""

    reason = "state"
