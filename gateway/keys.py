"""API keys: their shape, roles and hashes. Pure: no I/O.

A key reads ``gcdc_<id>_<secret>``: the id (12 hex digits) is public and names the key in
listings, logs and metrics; the secret (32 random bytes, URL-safe) is shown once, at creation.
At rest only HMAC-SHA256(pepper, key) is kept, so a leaked table gives no usable key, and a
lookup by id plus a constant-time compare of the hash checks a presented key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

PREFIX = "gcdc"
_SHAPE = re.compile(r"gcdc_([0-9a-f]{12})_([A-Za-z0-9_-]{43})")  # whole value: fullmatch


class Role(StrEnum):
    """reader: the read API; ingest: posting events; admin: both (and the metrics of keys)."""

    READER = "reader"
    INGEST = "ingest"
    ADMIN = "admin"


# what each kind of route accepts
READ_ROLES = frozenset({Role.READER, Role.ADMIN})
INGEST_ROLES = frozenset({Role.INGEST, Role.ADMIN})


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One key as stored: never the key itself."""

    key_id: str
    key_hash: str
    role: Role
    rate_per_s: float
    burst: int
    name: str
    created_at: datetime
    revoked_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def public(self) -> dict[str, object]:
        """What a listing shows (no hash)."""
        return {
            "key_id": self.key_id,
            "name": self.name,
            "role": self.role.value,
            "rate_per_s": self.rate_per_s,
            "burst": self.burst,
            "created_at": self.created_at.isoformat(),
            "revoked_at": self.revoked_at.isoformat() if self.revoked_at else None,
        }


def new_key() -> tuple[str, str]:
    """A fresh (key_id, full key)."""
    key_id = secrets.token_hex(6)
    return key_id, f"{PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def key_id_of(presented: str) -> str | None:
    """The id inside a well-formed key; None when the value is not shaped like a key."""
    m = _SHAPE.fullmatch(presented)
    return m.group(1) if m else None


def hash_key(pepper: bytes, key: str) -> str:
    return hmac.new(pepper, key.encode(), hashlib.sha256).hexdigest()


def matches(pepper: bytes, presented: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(pepper, presented), stored_hash)
