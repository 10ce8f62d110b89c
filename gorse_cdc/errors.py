"""Typed errors shared by every entry point.

- RetriableError: try again later (connection errors, timeouts, 429, 5xx, throttling).
  Progress holds; nothing is checkpointed past the failing record.
- PermanentRecordError: this record can never apply (bad input, other 4xx). It goes to the
  dead-letter store with its reason and then counts as done.
- FatalError: stop the process without checkpointing (misconfiguration, lost lease).
"""

from __future__ import annotations


class GorseCdcError(Exception):
    """Base of every error gorse-cdc raises on purpose."""

    retriable: bool = False


class RetriableError(GorseCdcError):
    retriable = True

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class PermanentRecordError(GorseCdcError):
    """A record (or one write) that can never succeed as it is."""


class FatalError(GorseCdcError):
    """The process cannot go on safely."""


class InvalidEntityError(PermanentRecordError, ValueError):
    """An ID, label or field that Gorse would reject; raised before any request is sent."""


class GorseRequestError(GorseCdcError):
    """A Gorse HTTP call failed. Never carries the API key."""

    def __init__(self, method: str, path: str, status: int | None, message: str) -> None:
        where = f"{method} {path}"
        super().__init__(f"{where} -> {status if status is not None else 'no response'}: {message}")
        self.method = method
        self.path = path
        self.status = status
        self.detail = message


class GorseRetriableError(GorseRequestError, RetriableError):
    retriable = True

    def __init__(
        self,
        method: str,
        path: str,
        status: int | None,
        message: str,
        retry_after_s: float | None = None,
    ) -> None:
        GorseRequestError.__init__(self, method, path, status, message)
        self.retry_after_s = retry_after_s


class GorsePermanentError(GorseRequestError, PermanentRecordError):
    """4xx other than 429: the request as sent can never succeed."""


class GorseFatalError(GorseRequestError, FatalError):
    """A status that says the pipeline itself is misconfigured (see retry.STATUS_CLASS)."""
