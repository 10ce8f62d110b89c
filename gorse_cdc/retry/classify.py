"""One classification of failures: what to do when a call raised.

- RETRIABLE: try the same call again later (throttling, 5xx, connection errors, timeouts,
  RetriableError). Progress holds meanwhile.
- PERMANENT: the request as sent can never succeed (validation, other 4xx,
  PermanentRecordError). Only a *typed* PermanentRecordError may send a record to the DLQ;
  for an AWS call the caller decides (a producer stops, it has no DLQ).
- FATAL: the pipeline itself is broken (credentials, authorization, a missing stream or
  bucket where the caller says so, FatalError, and any exception nobody classified: a bug is
  never retried and never dead-lettered).

``error_code`` is the one place that digs the code out of a botocore ClientError.
``STATUS_CLASS`` is the one table of HTTP statuses, shared by the Gorse client and by AWS
errors whose code is not in a table below.
"""

from __future__ import annotations

import enum
from collections.abc import Collection

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    UnknownServiceError,
)

from gorse_cdc.errors import GorseCdcError, PermanentRecordError


class ErrorClass(enum.Enum):
    RETRIABLE = "retriable"
    PERMANENT = "permanent"
    FATAL = "fatal"


# HTTP statuses with a class of their own; every other 5xx is RETRIABLE and every other 4xx
# PERMANENT (a request whose content Gorse refuses: the record dead-letters). Statuses that say
# the pipeline itself is wrong, not one record, are FATAL: they stop progress and alert, never
# dead-letter (401/403 a wrong or rotated key, 413 a batch larger than the server takes). 408
# is the server giving up waiting: retry. Change a line here to change every caller.
STATUS_CLASS: dict[int, ErrorClass] = {
    401: ErrorClass.FATAL,
    403: ErrorClass.FATAL,
    408: ErrorClass.RETRIABLE,
    413: ErrorClass.FATAL,
    429: ErrorClass.RETRIABLE,
}

# botocore's standard retry mode lists, plus the Kinesis/KMS/S3 codes we meet.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "KMSThrottlingException",
    }
)
TRANSIENT_CODES = frozenset(
    {
        "InternalFailure",
        "InternalError",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        "PriorRequestNotComplete",
    }
)
FATAL_CODES = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "MissingAuthenticationToken",
        "ExpiredToken",
        "ExpiredTokenException",
        "KMSAccessDeniedException",
    }
)
PERMANENT_CODES = frozenset(
    {
        "ValidationException",
        "ValidationError",
        "InvalidArgumentException",
        "InvalidParameterValue",
        "InvalidParameterException",
        "SerializationException",
        "EntityTooLarge",
    }
)
# Client-side botocore errors that no retry can cure: configuration or programming errors.
_FATAL_BOTOCORE = (
    NoCredentialsError,
    PartialCredentialsError,
    NoRegionError,
    ParamValidationError,
    UnknownServiceError,
)


def error_code(exc: BaseException) -> str | None:
    """The AWS error code of a ClientError (``None`` for anything else, or no code)."""
    if not isinstance(exc, ClientError):
        return None
    code = exc.response.get("Error", {}).get("Code")
    return str(code) if code else None


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a ClientError's response, when botocore recorded one."""
    if not isinstance(exc, ClientError):
        return None
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status else None


def status_class(status: int) -> ErrorClass:
    """The class of an HTTP error status (>= 400), from ``STATUS_CLASS``."""
    if status in STATUS_CLASS:
        return STATUS_CLASS[status]
    return ErrorClass.RETRIABLE if status >= 500 else ErrorClass.PERMANENT


def classify(
    exc: BaseException,
    *,
    retriable: Collection[str] = (),
    permanent: Collection[str] = (),
    fatal: Collection[str] = (),
) -> ErrorClass:
    """The class of ``exc``. ``retriable``/``permanent``/``fatal`` are AWS codes the caller
    knows better about (e.g. ResourceNotFoundException is FATAL for a configured stream);
    they win over the tables. Bind them with functools.partial to pass a classifier on."""
    if isinstance(exc, GorseCdcError):
        if exc.retriable:  # RetriableError and its subclasses
            return ErrorClass.RETRIABLE
        if isinstance(exc, PermanentRecordError):
            return ErrorClass.PERMANENT
        return ErrorClass.FATAL
    if isinstance(exc, ClientError):
        return _client_error_class(exc, retriable, permanent, fatal)
    if isinstance(exc, BotoCoreError):
        return ErrorClass.FATAL if isinstance(exc, _FATAL_BOTOCORE) else ErrorClass.RETRIABLE
    if isinstance(exc, OSError):  # connection refused/reset, DNS, TimeoutError (= asyncio's)
        return ErrorClass.RETRIABLE
    return ErrorClass.FATAL


def _client_error_class(
    exc: ClientError, retriable: Collection[str], permanent: Collection[str], fatal: Collection[str]
) -> ErrorClass:
    code = error_code(exc) or ""
    for codes, cls in (
        (fatal, ErrorClass.FATAL),
        (retriable, ErrorClass.RETRIABLE),
        (permanent, ErrorClass.PERMANENT),
        (FATAL_CODES, ErrorClass.FATAL),
        (THROTTLING_CODES, ErrorClass.RETRIABLE),
        (TRANSIENT_CODES, ErrorClass.RETRIABLE),
        (PERMANENT_CODES, ErrorClass.PERMANENT),
    ):
        if code in codes:
            return cls
    status = http_status(exc)
    return status_class(status) if status and status >= 400 else ErrorClass.PERMANENT


def retry_after_s(exc: BaseException) -> float | None:
    """A server's Retry-After hint carried by a typed error, if any."""
    hint = getattr(exc, "retry_after_s", None)
    return float(hint) if isinstance(hint, int | float) and hint > 0 else None
