"""Errors as RFC 9457 problem details (application/problem+json). Pure: no I/O.

Every refusal the gateway makes is a ``Problem``: a status, a short stable ``type`` slug and a
human ``detail``. Handlers raise it; the app's error middleware renders it. A problem never
carries a secret (an API key, a token): details name what was wrong, not what was sent.
"""

from __future__ import annotations

from typing import Any

import orjson

CONTENT_TYPE = "application/problem+json"
TYPE_BASE = "https://gorse-cdc.invalid/problems/"
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class Problem(Exception):
    """An HTTP refusal with a machine-readable slug and extra members (e.g. ``errors``)."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(f"{status} {slug}: {detail}")
        self.status = status
        self.slug = slug
        self.detail = detail
        self.headers = headers or {}
        self.extra = extra

    def body(self, instance: str | None = None) -> bytes:
        doc: dict[str, Any] = {
            "type": TYPE_BASE + self.slug,
            "title": TITLES.get(self.status, "Error"),
            "status": self.status,
            "detail": self.detail,
        }
        if instance:
            doc["instance"] = instance
        doc.update(self.extra)
        return orjson.dumps(doc)


def unauthorized(detail: str) -> Problem:
    return Problem(401, "unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="gorse-cdc"'})


def forbidden(detail: str) -> Problem:
    return Problem(403, "forbidden", detail)


def bad_request(detail: str, **extra: Any) -> Problem:
    return Problem(400, "bad-request", detail, **extra)


def too_many(retry_after_s: float) -> Problem:
    seconds = max(1, int(retry_after_s + 0.999))
    return Problem(
        429,
        "rate-limited",
        f"rate limit exceeded for this key; retry after {seconds} s",
        headers={"Retry-After": str(seconds)},
    )
