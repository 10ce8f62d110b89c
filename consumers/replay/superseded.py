"""Which dead letters a re-drive may apply without setting a key back (ARCHITECTURE.md,
invariants 5 and 7).

A letter is an old change. Applying it after later changes of its key were applied would set
the key back; applying a letter of an erased user would bring the user back. So, before a
re-drive writes anything:

- a letter of a user in the erasure log (users, ratings, events) is superseded by the erasure;
- of the letters of one key, only the newest may be applied (the others are superseded by it);
- the newest is superseded by a later change when the CDC archive (or, for the changes the
  archive may not hold yet, the Kinesis stream) has a change of that key committed after it:
  the live consumer applied that change (or will: it is on the stream), and that change is
  the key's newer state;
- a letter of a source table without a time to order it by (a letter of an archive replay:
  its record was rebuilt from a CSV row) cannot be placed: it stays in the store (replay the
  archive for it), unless the re-drive runs unordered.

``plan_redrive`` is the pure decision; ``letter_facts`` reads what it needs from a letter; the
I/O (the archive and the stream tail) is ``later_changes``.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from consumers.deadletter import DeadLetter
from consumers.events import EVENTS_TABLE, decode_event
from consumers.kinesis.shards import list_shards
from consumers.replay.archive import ArchiveSource
from gorse_cdc.dms.record import DmsDecodeError, decode_record
from gorse_cdc.dms.s3files import rows_with_commit_time
from gorse_cdc.errors import FatalError, PermanentRecordError
from gorse_cdc.mapping import Mapper
from gorse_cdc.mapping.values import to_id

log = logging.getLogger(__name__)

Key = tuple[str, ...]  # (table, *key values); ("events", user, item, type) for an event
_OLDEST = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class LetterFacts:
    """What the decision needs from one letter."""

    key: Key | None = None  # None: not a change of a known key (the applier decides again)
    user: str | None = None  # the user it writes, if any (erasure check)
    at: datetime | None = None  # commit time (DMS commit-timestamp, else the message time)
    archived: bool = False  # a source table's change: the archive holds its later changes
    shard: str = ""
    sequence: int = 0


@dataclass
class RedrivePlan:
    """Indexes into the letters given to ``plan_redrive``, each in exactly one list."""

    apply: list[int] = field(default_factory=list)
    erased: list[int] = field(default_factory=list)  # superseded by an erasure
    older: list[int] = field(default_factory=list)  # superseded by a newer letter of its key
    later: list[int] = field(default_factory=list)  # superseded by a later change of its key
    unplaced: list[int] = field(default_factory=list)  # no time to order it by: kept in the store


def _order(f: LetterFacts) -> tuple[datetime, str, int]:
    return (f.at or _OLDEST, f.shard, f.sequence)


def plan_redrive(
    letters: Sequence[LetterFacts],
    erased: Collection[str],
    later: Mapping[Key, datetime] | None,
) -> RedrivePlan:
    """``erased``: users in the erasure log; ``later``: the newest committed change per key
    found in the archive and on the stream, or None for an unordered re-drive (no such check;
    letters without a time are applied too). The applied letters keep the order given."""
    plan = RedrivePlan()
    groups: dict[Key, list[int]] = defaultdict(list)
    apply: set[int] = set()
    for i, f in enumerate(letters):
        if f.user is not None and f.user in erased:
            plan.erased.append(i)
        elif f.key is None:
            apply.add(i)
        elif later is not None and f.archived and f.at is None:
            plan.unplaced.append(i)
        else:
            groups[f.key].append(i)
    for key, members in groups.items():
        newest = max(members, key=lambda i: _order(letters[i]))
        plan.older += [i for i in members if i != newest]
        at = letters[newest].at
        changed = later.get(key) if later is not None else None
        if changed is not None and at is not None and changed > at:
            plan.later.append(newest)
        else:
            apply.add(newest)
    plan.apply = sorted(apply)
    for part in (plan.erased, plan.older, plan.later, plan.unplaced):
        part.sort()
    return plan


def _time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _user_of(mapper: Mapper, table: str, row: Mapping[str, Any]) -> str | None:
    rule = mapper.spec.tables[table]
    column = rule.user.id if rule.user is not None else rule.feedback.user if rule.feedback else None
    value = row.get(column) if column else None
    if value is None or value == "":
        return None
    try:
        return to_id(value)
    except ValueError:
        return None


def letter_facts(letter: DeadLetter, mapper: Mapper) -> LetterFacts:
    """The key, user and commit time of a letter's record, as far as they can be read (a
    letter that cannot be read has no key: it goes through the applier and fails again)."""
    try:
        sequence = int(letter.sequence_number or 0)
    except ValueError:
        sequence = 0
    base = LetterFacts(shard=letter.shard_id, sequence=sequence)
    try:
        event = decode_event(letter.raw)
        if event is not None:
            user, item, etype = event.get("user"), event.get("item"), event.get("type")
            if not all(isinstance(v, str) for v in (user, item, etype)):
                return base
            event_key: Key = (EVENTS_TABLE, str(user), str(item), str(etype))
            return LetterFacts(event_key, str(user), _time(str(event.get("ts") or "")), False, *_pos(base))
        dms = decode_record(letter.raw)
    except PermanentRecordError:  # unreadable: the applier dead-letters it again with its reason
        return base
    if not dms.is_data or dms.table not in mapper.spec.tables:
        return base
    rule = mapper.spec.tables[dms.table]
    key = _key(mapper, dms.table, dms.data)
    if key is None:  # a missing or bad key: the applier says why
        return base
    user = _user_of(mapper, dms.table, dms.data) if rule.entity in ("user", "feedback") else None
    at = _time(dms.commit_timestamp) or _time(dms.timestamp)
    return LetterFacts(key, user, at, True, *_pos(base))


def _key(mapper: Mapper, table: str, row: Mapping[str, Any]) -> Key | None:
    try:
        return (table, *mapper.key_of(table, dict(row)))
    except PermanentRecordError:
        return None


def _pos(f: LetterFacts) -> tuple[str, int]:
    return f.shard, f.sequence


# ---- I/O: the later changes of the letters' keys -----------------------------------------------
def _newer(found: dict[Key, datetime], key: Key, at: datetime | None) -> None:
    if at is not None and (key not in found or at > found[key]):
        found[key] = at


async def archive_changes(
    source: ArchiveSource, mapper: Mapper, keys: Collection[Key]
) -> tuple[dict[Key, datetime], datetime | None]:
    """The newest committed change of each of ``keys`` in the archive's CDC files, and how far
    the archive goes (the newest commit time or file time of any of the source's tables: only
    the files of the keys' tables are read). Raises FatalError when the rows carry no commit
    time (TimestampColumnName unset, or Parquet)."""
    found: dict[Key, datetime] = {}
    newest: datetime | None = None
    tables = {k[0] for k in keys}
    files = await source.files()
    for table, table_files in files.items():
        for f in table_files:
            if f.at is not None and (newest is None or f.at > newest):
                newest = f.at
            if table not in tables:
                continue
            body = await (await source.s3.get_object(Bucket=source.bucket, Key=f.key))["Body"].read()
            rows = rows_with_commit_time(
                f.key, body, source.definitions[table], has_op=True, timestamp_column=source.timestamp_column
            )
            for _op, ts, row in rows:
                at = _time(ts)
                if at is None:
                    raise FatalError(
                        f"s3://{source.bucket}/{f.key}: rows without a commit time (set "
                        "settings.s3.timestamp_column as the DMS task's TimestampColumnName, CSV)"
                    )
                newest = at if newest is None or at > newest else newest
                key = _key(mapper, table, row)
                if key is not None and key in keys:
                    _newer(found, key, at)
    return found, newest


async def stream_changes(
    kinesis: Any, stream: str, mapper: Mapper, keys: Collection[Key], since: datetime, until: datetime
) -> dict[Key, datetime]:
    """The newest change of each of ``keys`` on the stream among records that arrived from
    ``since`` to about ``until`` (every shard, open or closed), by the commit time they carry."""
    found: dict[Key, datetime] = {}
    for shard in await list_shards(kinesis, stream):
        it = (
            await kinesis.get_shard_iterator(
                StreamName=stream, ShardId=shard.shard_id, ShardIteratorType="AT_TIMESTAMP", Timestamp=since
            )
        ).get("ShardIterator")
        while it:
            resp = await kinesis.get_records(ShardIterator=it, Limit=10_000)
            records = resp.get("Records", [])
            for r in records:
                try:
                    dms = decode_record(r["Data"])
                except DmsDecodeError:
                    continue  # refresh records, garbage: not a change of a source row
                if not dms.is_data or dms.table not in mapper.spec.tables:
                    continue
                key = _key(mapper, dms.table, dms.data)
                if key is not None and key in keys:
                    _newer(found, key, _time(dms.commit_timestamp) or _time(dms.timestamp))
            it = resp.get("NextShardIterator")
            arrived = records[-1].get("ApproximateArrivalTimestamp") if records else None
            if (not records and not resp.get("MillisBehindLatest")) or (arrived and arrived > until):
                break  # caught up, or past what the re-drive started with
    return found


async def later_changes(
    source: ArchiveSource,
    kinesis: Any,
    stream: str,
    mapper: Mapper,
    keys: Collection[Key],
    *,
    oldest: datetime,
    archive_lag_s: float,
    retention_h: float,
    now: datetime | None = None,
) -> dict[Key, datetime]:
    """The newest committed change of each key: the archive (the system of record), plus the
    stream's records since shortly before the archive's newest file or commit time (DMS writes
    the archive every ``archive_lag_s`` at most: the newest changes may be on the stream only;
    with no archive file after ``oldest``, the oldest letter's time, the stream since then).
    Raises FatalError when either cannot be read, or when the stream no longer holds what the
    archive lacks."""
    now = now or datetime.now(UTC)
    try:
        found, newest = await archive_changes(source, mapper, keys)
    except FatalError:
        raise
    except Exception as e:
        raise FatalError(f"cannot read the CDC archive s3://{source.bucket}/{source.prefix}: {e}") from None
    margin = timedelta(seconds=archive_lag_s + 60)
    since = min(newest or oldest, now) - margin
    if since < now - timedelta(hours=retention_h):
        raise FatalError(
            f"the CDC archive's newest change ({newest}) is older than the stream's retention: "
            "the changes after it are in neither"
        )
    try:
        for key, at in (await stream_changes(kinesis, stream, mapper, keys, since, now)).items():
            _newer(found, key, at)
    except Exception as e:
        raise FatalError(f"cannot read the stream {stream} since {since.isoformat()}: {e}") from None
    return found


def erased_users(facts: Iterable[LetterFacts]) -> set[str]:
    return {f.user for f in facts if f.user is not None}


def describe_dropped(letters: Sequence[DeadLetter], indexes: Iterable[int]) -> str:
    """Per table counts (no ids: letters of erased users must leave no trace in the logs)."""
    counts: dict[str, int] = defaultdict(int)
    for i in indexes:
        counts[letters[i].table or "?"] += 1
    return orjson.dumps(dict(sorted(counts.items()))).decode()
