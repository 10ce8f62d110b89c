"""Puts accepted events on their own Kinesis stream (aiobotocore). The gateway answers 202 only
after this returns: every event of the batch was accepted by Kinesis, so a gateway killed after
its answer loses nothing. Entries Kinesis refuses (throttling) are put again, a few times with
backoff; when some still fail the caller answers 503 and the client sends the batch again
(harmless: Gorse feedback is PUT, keyed by (type, user, item))."""

from __future__ import annotations

import asyncio
from typing import Any

from gorse_cdc.errors import RetriableError

MAX_PUT = 500


class EventsNotAcceptedError(RetriableError):
    pass


class EventPublisher:
    def __init__(self, kinesis: Any, stream: str, attempts: int = 4, base_delay_s: float = 0.05) -> None:
        self.kinesis = kinesis
        self.stream = stream
        self.attempts = attempts
        self.base_delay_s = base_delay_s

    async def put(self, records: list[dict[str, object]]) -> None:
        for start in range(0, len(records), MAX_PUT):
            await self._put_chunk(records[start : start + MAX_PUT])

    async def _put_chunk(self, pending: list[dict[str, object]]) -> None:
        for attempt in range(self.attempts):
            if attempt:
                await asyncio.sleep(self.base_delay_s * 2**attempt)
            try:
                resp = await self.kinesis.put_records(StreamName=self.stream, Records=pending)
            except Exception as e:  # botocore's errors: connection, throttling of the whole call
                if attempt == self.attempts - 1:
                    raise EventsNotAcceptedError(
                        f"Kinesis did not accept the events: {type(e).__name__}"
                    ) from e
                continue
            if not int(resp.get("FailedRecordCount", 0)):
                return
            pending = [r for r, out in zip(pending, resp["Records"], strict=True) if out.get("ErrorCode")]
        raise EventsNotAcceptedError(f"Kinesis refused {len(pending)} events after {self.attempts} attempts")

    async def ready(self) -> bool:
        try:
            desc = await self.kinesis.describe_stream_summary(StreamName=self.stream)
        except Exception:
            return False
        return bool(desc["StreamDescriptionSummary"]["StreamStatus"] in ("ACTIVE", "UPDATING"))
