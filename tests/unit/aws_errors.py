"""botocore ClientErrors as AWS returns them, for unit tests."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError


def aws_error(code: str | None, status: int | None = 400, op: str = "PutRecords") -> ClientError:
    """A ClientError with this error code and HTTP status (None: left out of the response)."""
    response: dict[str, Any] = {"Error": {"Message": code or "boom"}}
    if code is not None:
        response["Error"]["Code"] = code
    if status is not None:
        response["ResponseMetadata"] = {"HTTPStatusCode": status}
    return ClientError(response, op)  # type: ignore[arg-type]
