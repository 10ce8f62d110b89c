"""GetRecords' successful responses parsed by one orjson.loads instead of botocore's parser.

Why: botocore parses a JSON body with the stdlib, then walks the operation's shape member by
member, building every record again; per record it base64-decodes Data and turns
ApproximateArrivalTimestamp into a datetime in the local time zone through dateutil, which
alone cost more than the rest of the record's parse. Reading a backlog, that parse was a third
of the native consumer's CPU (docs/benchmarks.md, the peer benchmark).

What: GetRecordsOutput is plain JSON except two members, Records[].Data (a blob: base64) and
Records[].ApproximateArrivalTimestamp (a timestamp: epoch seconds). A 2xx body is parsed here
into the same dict botocore would return (members botocore drops when null are dropped, Data
bytes, the timestamp an aware datetime, in UTC rather than local time: the same instant);
tests/unit/consumers/test_get_records_parse.py compares the two parsers and pins the shape.

How: through botocore's ``before-parse.kinesis.GetRecords`` event, which hands handlers the raw
response and a dict merged over the parsed one (botocore's own handlers rewrite S3 responses at
this event). The handler puts its result there and empties the body, so botocore's parser
only adds ResponseMetadata. Anything else is left to botocore exactly as before: error
responses (status >= 300: throttling, an expired iterator, a missing stream, so ClientError and
its code, hence the retry classification, do not change) and a body this parser does not
recognise (botocore then parses or refuses it as it always did).
"""

from __future__ import annotations

import binascii
from datetime import UTC, datetime
from typing import Any

import orjson
from botocore.utils import parse_timestamp

EVENT = "before-parse.kinesis.GetRecords"
HANDLER_ID = "gorse-cdc.fast-get-records"
MEMBERS = ("Records", "NextShardIterator", "MillisBehindLatest", "ChildShards")


def _timestamp(value: Any) -> datetime:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    return parse_timestamp(value)  # botocore's: ISO 8601 or RFC 822 strings (never seen from Kinesis)


def parse_get_records(body: bytes) -> dict[str, Any] | None:
    """GetRecordsOutput from a successful response's body, as botocore would return it (without
    ResponseMetadata); None when the body is not the JSON this expects."""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(doc, dict):
        return None
    out = {k: v for k in MEMBERS if (v := doc.get(k)) is not None}
    records = out.get("Records", [])
    if not isinstance(records, list):
        return None
    try:
        for r in records:  # the dicts orjson made, converted in place
            if (data := r.get("Data")) is not None:
                r["Data"] = binascii.a2b_base64(data)  # what base64.b64decode (botocore) does
            if (ts := r.get("ApproximateArrivalTimestamp")) is not None:
                r["ApproximateArrivalTimestamp"] = _timestamp(ts)
    except (AttributeError, TypeError, ValueError, OverflowError, OSError):  # binascii.Error is a ValueError
        return None
    return out


def _before_parse(response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any) -> None:
    if response_dict.get("status_code", 500) >= 300:
        return
    body = response_dict.get("body")
    if not isinstance(body, bytes | bytearray):
        return
    parsed = parse_get_records(bytes(body))
    if parsed is None:
        return
    customized_response_dict.update(parsed)
    response_dict["body"] = b""  # botocore's JSON parser reads an empty body as {}


def use_fast_parse(client: Any) -> None:
    """Parse this (aio)botocore Kinesis client's GetRecords responses here. Idempotent (one
    handler per client, whatever the number of readers sharing it); a client without botocore's
    event system (a test's fake) is left alone."""
    events = getattr(getattr(client, "meta", None), "events", None)
    if events is not None:
        events.register(EVENT, _before_parse, unique_id=HANDLER_ID)
