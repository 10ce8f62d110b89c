"""PutRecords batching and the retry rule that keeps per-key order. Pure.

A PutRecords call takes at most 500 entries and 5 MiB; each entry at most 1 MiB (data plus
partition key). Kinesis processes every entry of a call and reports failures per entry, so a
later entry of a key can land while an earlier one of the same key failed.

Retry rule: for every partition key with a failed entry, resend that key's entries from its
FIRST failed entry onward (failed or not), in the original order; keys with no failure are
not resent. Per key the shard then holds: its records in commit order up to the first
failure, possibly some later ones that got through, then again every record from the first
failure in commit order. So the LAST occurrence of each record is in commit order and the
newest record of a key is always the last one the shard holds for it: exactly what an
at-least-once redelivery (a DMS task restart) looks like, which consumers must handle anyway
(dedupe / order by stream-position, idempotent writes). The next batch is sent only after the
previous one fully succeeded, so nothing overtakes across batches.

Lanes: to send several calls at once, entries are split into lanes by partition key (a key
always in the same lane, its entries in their order) and each lane sends its calls one after
another. Calls of different lanes hold different keys, so nothing of a key overtakes.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, NamedTuple

from gorse_cdc.errors import FatalError

MAX_RECORDS = 500
MAX_CALL_BYTES = 5 * 1024 * 1024
MAX_RECORD_BYTES = 1024 * 1024


class RecordTooLargeError(FatalError):
    """DMS would truncate LOBs or fail the table; we refuse to drop or cut data silently."""


class Entry(NamedTuple):
    """One PutRecords entry (a named tuple: one is made per change, on the hot path)."""

    data: bytes
    partition_key: str
    tag: Any = None  # opaque, for the caller (e.g. the commit LSN)

    @property
    def size(self) -> int:
        return len(self.data) + len(self.partition_key.encode())


def check_size(entry: Entry) -> Entry:
    # a UTF-8 character takes at most 4 bytes: most entries pass without encoding their key
    if len(entry.data) + 4 * len(entry.partition_key) > MAX_RECORD_BYTES and entry.size > MAX_RECORD_BYTES:
        raise RecordTooLargeError(
            f"a record of {entry.size} bytes (partition key {entry.partition_key!r}) exceeds "
            "Kinesis's 1 MiB limit"
        )
    return entry


def chunks(entries: Iterable[Entry], max_records: int = MAX_RECORDS) -> Iterator[list[Entry]]:
    """Split into PutRecords calls of at most 500 entries and 5 MiB, order kept."""
    batch: list[Entry] = []
    size = 0
    for e in entries:
        if batch and (len(batch) >= max_records or size + e.size > MAX_CALL_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(e)
        size += e.size
    if batch:
        yield batch


def to_resend(entries: Sequence[Entry], failed: Sequence[bool]) -> list[Entry]:
    """The entries to send again after a partial failure (see the module docstring)."""
    first: dict[str, int] = {}
    for i, (e, bad) in enumerate(zip(entries, failed, strict=True)):
        if bad and e.partition_key not in first:
            first[e.partition_key] = i
    return [e for i, e in enumerate(entries) if i >= first.get(e.partition_key, len(entries))]


def lanes(entries: Iterable[Entry], n: int) -> list[list[Entry]]:
    """Split into at most ``n`` non-empty lanes by partition key, each key's order kept."""
    out: list[list[Entry]] = [[] for _ in range(max(1, n))]
    for e in entries:
        out[zlib.crc32(e.partition_key.encode()) % len(out)].append(e)
    return [lane for lane in out if lane]
