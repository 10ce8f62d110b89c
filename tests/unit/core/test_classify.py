"""The one classification of failures (gorse_cdc.retry.classify)."""

from __future__ import annotations

import functools

import pytest
from botocore.exceptions import (
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from gorse_cdc.errors import (
    FatalError,
    GorseFatalError,
    GorsePermanentError,
    GorseRetriableError,
    InvalidEntityError,
    PermanentRecordError,
    RetriableError,
)
from gorse_cdc.gorse.client import status_error
from gorse_cdc.retry import STATUS_CLASS, ErrorClass, classify, error_code, http_status, status_class
from tests.unit.aws_errors import aws_error

R, P, F = ErrorClass.RETRIABLE, ErrorClass.PERMANENT, ErrorClass.FATAL


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("ProvisionedThroughputExceededException", 400, R),
        ("ThrottlingException", 400, R),
        ("LimitExceededException", 400, R),
        ("RequestLimitExceeded", 503, R),
        ("SlowDown", 503, R),
        ("ServiceUnavailable", 503, R),
        ("InternalFailure", 500, R),
        ("InternalError", 500, R),
        ("SomethingNew", 502, R),  # 5xx by status
        ("SomethingNew", 429, R),
        ("AccessDenied", 403, F),
        ("AccessDeniedException", 400, F),
        ("UnrecognizedClientException", 400, F),
        ("InvalidSignatureException", 400, F),
        ("ExpiredToken", 400, F),
        ("ExpiredTokenException", 400, F),
        ("ValidationException", 400, P),
        ("InvalidArgumentException", 400, P),
        ("SomethingNew", 400, P),  # other 4xx by status
        ("ResourceNotFoundException", 400, P),  # unless the caller says otherwise
        (None, None, P),
    ],
)
def test_client_error_codes(code: str | None, status: int | None, expected: ErrorClass) -> None:
    assert classify(aws_error(code, status)) is expected


def test_the_caller_overrides_codes() -> None:
    rnf = aws_error("ResourceNotFoundException")
    assert classify(rnf, fatal={"ResourceNotFoundException"}) is F
    in_use = aws_error("ResourceInUseException")
    assert classify(in_use) is P
    assert functools.partial(classify, retriable={"ResourceInUseException"})(in_use) is R


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (EndpointConnectionError(endpoint_url="http://x"), R),
        (ReadTimeoutError(endpoint_url="http://x"), R),
        (ConnectTimeoutError(endpoint_url="http://x"), R),
        (ConnectionResetError("reset"), R),
        (OSError("unreachable"), R),
        (TimeoutError(), R),  # asyncio.TimeoutError is TimeoutError
        (NoCredentialsError(), F),
        (RetriableError("later"), R),
        (GorseRetriableError("PUT", "/api/feedback", 503, "locked"), R),
        (PermanentRecordError("bad"), P),
        (InvalidEntityError("bad id"), P),
        (GorsePermanentError("PUT", "/api/feedback", 400, "refused"), P),
        (FatalError("lease lost"), F),
        (KeyError("a bug"), F),  # never retried, never dead-lettered
    ],
)
def test_other_errors(exc: Exception, expected: ErrorClass) -> None:
    assert classify(exc) is expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [(400, P), (404, P), (401, F), (403, F), (413, F), (408, R), (429, R), (500, R), (503, R), (599, R)],
)
def test_http_status_table(status: int, expected: ErrorClass) -> None:
    assert status_class(status) is expected


def test_gorse_errors_follow_the_status_table(monkeypatch: pytest.MonkeyPatch) -> None:
    retriable = status_error("PUT", "/api/feedback", 429, "slow down", "7")
    assert isinstance(retriable, GorseRetriableError) and retriable.retry_after_s == 7.0
    assert isinstance(status_error("POST", "/api/users", 401, "no key"), GorseFatalError)
    monkeypatch.setitem(STATUS_CLASS, 401, ErrorClass.PERMANENT)  # one line changes every caller
    assert isinstance(status_error("POST", "/api/users", 401, "no key"), GorsePermanentError)
    assert classify(aws_error("SomethingNew", 401)) is P


def test_a_404_names_a_record_only_on_an_entity_route() -> None:
    assert isinstance(status_error("DELETE", "/api/user/42", 404, "gone"), GorsePermanentError)
    assert isinstance(status_error("POST", "/api/users", 404, "no route"), GorseFatalError)
    assert isinstance(status_error("PUT", "/api/feedback/", 404, "no route"), GorseFatalError)


def test_error_code_and_status() -> None:
    e = aws_error("ExpiredIteratorException", 400, "GetRecords")
    assert error_code(e) == "ExpiredIteratorException" and http_status(e) == 400
    assert error_code(aws_error(None)) is None
    assert error_code(ValueError("x")) is None and http_status(OSError()) is None
