"""The I/O of the operator's view: each reader takes one reading and keeps its error instead
of raising (gorse_cdc.status.model turns them into findings). Read-only: a Scan of each lease
table, one or two GetRecords of one record per open shard (from its checkpoint), the consumers'
/metrics and /readyz, a List of the dead-letter prefix (and a Get of its newest letters), the
newest reconcile report, pg_replication_slots, the gateway's /metrics, Gorse's health and
dashboard stats. Nothing is written anywhere."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from aiobotocore.session import get_session

from gorse_cdc.settings import Settings
from gorse_cdc.status.join import (
    SHARD_END,
    LeaseInfo,
    Position,
    consumer_endpoint,
    lease_info,
    parse_metrics,
    per_label,
    rates,
    shard_rows,
    total,
)
from gorse_cdc.status.model import (
    ConsumerEndpoint,
    DeadLetterReading,
    GatewayReading,
    GorseReading,
    Readings,
    ReconcileReading,
    SlotReading,
    SourceReading,
    StreamReading,
)

PORT_TRIES = 10  # the consumers take the next free metrics port (consumers.health.PORT_TRIES)
REPORT_PREFIX = "reports"  # glue.report.REPORT_PREFIX
LETTERS_SAMPLED = 50
TIMEOUT_S = 2.0


GatewayCounts = tuple[float, float, float] | str | None  # totals, an error, or no gateway to read


def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:300]


def default_metrics_urls(settings: Settings) -> list[str]:
    """Where consumers on this host serve /metrics: consumer.metrics_port and the next ports."""
    port = settings.consumer.metrics_port
    host = settings.consumer.metrics_host if settings.consumer.metrics_host != "0.0.0.0" else "127.0.0.1"  # noqa: S104
    return [f"http://{host}:{p}" for p in range(port, port + PORT_TRIES)] if port else []


@dataclass
class StatusSources:
    """What to read. ``metrics_urls``: consumer endpoints given by hand (else the known ports are
    scanned and only those that answer are shown); ``gateway_metrics``: the gateway's own
    registry when the gateway itself asks (its status page)."""

    metrics_urls: list[str] = field(default_factory=list)
    scan_metrics: bool = True
    gateway_url: str | None = None
    gateway_key: str | None = None
    gateway_ca: str | None = None
    gateway_metrics: Callable[[], bytes] | None = None
    streams: list[tuple[str, str]] = field(default_factory=list)  # (stream, lease table)


def streams_of(settings: Settings) -> list[tuple[str, str]]:
    events = settings.gateway.events_stream
    return [(settings.kinesis.stream_name, settings.leases.table), (events, f"{events}-leases")]


class StatusReader:
    """Opened once (``async with``), read many times: rates are taken between two reads (the
    first read samples the counters twice, ``first_sample_s`` apart)."""

    def __init__(self, settings: Settings, sources: StatusSources, first_sample_s: float = 1.0) -> None:
        self.settings = settings
        self.sources = sources
        self.first_sample_s = first_sample_s
        self._stack = contextlib.AsyncExitStack()
        self._aws: dict[str, Any] = {}
        self._http: aiohttp.ClientSession | None = None
        self._previous: tuple[float, dict[str, dict[str, float]], GatewayCounts] | None = None

    async def __aenter__(self) -> StatusReader:
        session: Any = get_session()
        for service in ("dynamodb", "kinesis", "s3", "sqs"):
            self._aws[service] = await self._stack.enter_async_context(
                session.create_client(service, **self.settings.aws_client_kwargs(service))
            )
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_S)
        self._http = await self._stack.enter_async_context(aiohttp.ClientSession(timeout=timeout))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    @property
    def http(self) -> aiohttp.ClientSession:
        assert self._http is not None, "use StatusReader in `async with`"
        return self._http

    # ---- the whole reading ----------------------------------------------------------------
    async def read(self) -> Readings:
        streams = self.sources.streams or streams_of(self.settings)
        endpoints, gateway_counts = await asyncio.gather(self.consumers(), self._gateway_counts())
        now = time.monotonic()
        counters = self._read_counters(endpoints)
        if self._previous is None and self.first_sample_s > 0:
            await asyncio.sleep(self.first_sample_s)
            self._previous = (now, counters, gateway_counts)
            endpoints, gateway_counts = await asyncio.gather(self.consumers(), self._gateway_counts())
            now, counters = time.monotonic(), self._read_counters(endpoints)
        before = self._previous
        self._previous = (now, counters, gateway_counts)
        elapsed = now - before[0] if before else 0.0
        results = await asyncio.gather(
            *(
                self.stream(name, table, endpoints, before[1] if before else {}, counters, elapsed)
                for name, table in streams
            ),
            self.source(),
            self.dead_letters(),
            self.reconcile(),
            self.gorse(),
        )
        stream_readings = [r for r in results[: len(streams)] if isinstance(r, StreamReading)]
        source, letters, report, gorse = results[len(streams) :]
        gateway = self._gateway(gateway_counts, before[2] if before else None, elapsed)
        return Readings(
            at=datetime.now(UTC),
            streams=stream_readings,
            consumers=endpoints,
            source=source,  # type: ignore[arg-type]
            dead_letters=letters,  # type: ignore[arg-type]
            reconcile=report,  # type: ignore[arg-type]
            gateway=gateway,
            gorse=gorse,  # type: ignore[arg-type]
        )

    @staticmethod
    def _read_counters(endpoints: list[ConsumerEndpoint]) -> dict[str, dict[str, float]]:
        return {e.url: dict(e.reads) for e in endpoints}

    # ---- consumers ----------------------------------------------------------------------------
    async def _scrape(self, url: str) -> ConsumerEndpoint | None:
        base = url.rstrip("/").removesuffix("/metrics")
        try:
            async with self.http.get(base + "/metrics") as resp:
                if resp.status != 200:
                    raise RuntimeError(f"/metrics answered {resp.status}")
                text = await resp.text()
            ready: dict[str, Any] | None = None
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                async with self.http.get(base + "/readyz") as resp:
                    ready = orjson.loads(await resp.read())
        except (TimeoutError, aiohttp.ClientError, OSError, RuntimeError) as e:
            if url in self.sources.metrics_urls:
                return ConsumerEndpoint(url=base, ready=False, unreadable=_short(e))
            return None  # a scanned port nobody listens on
        return consumer_endpoint(base, parse_metrics(text), ready)

    async def consumers(self) -> list[ConsumerEndpoint]:
        urls = list(self.sources.metrics_urls)
        if self.sources.scan_metrics and not urls:
            urls = default_metrics_urls(self.settings)
        found = await asyncio.gather(*(self._scrape(u) for u in urls))
        return [e for e in found if e is not None]

    # ---- streams and leases ---------------------------------------------------------------
    async def _leases(self, table: str) -> list[LeaseInfo] | None:
        ddb = self._aws["dynamodb"]
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
        try:
            while True:
                resp = await ddb.scan(**kwargs)
                items += resp.get("Items", [])
                if not resp.get("LastEvaluatedKey"):
                    break
                kwargs["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
        except ddb.exceptions.ResourceNotFoundException:
            return None
        return [lease_info(i) for i in items]

    async def _first_record(self, stream: str, shard: str, kind: str, seq: str | None) -> tuple[Any, float]:
        kinesis = self._aws["kinesis"]
        kwargs: dict[str, Any] = {"StreamName": stream, "ShardId": shard, "ShardIteratorType": kind}
        if seq:
            kwargs["StartingSequenceNumber"] = seq
        it = (await kinesis.get_shard_iterator(**kwargs))["ShardIterator"]
        resp = await kinesis.get_records(ShardIterator=it, Limit=1)
        records = resp.get("Records", [])
        return (records[0] if records else None), float(resp.get("MillisBehindLatest", 0) or 0)

    async def position(self, stream: str, lease: LeaseInfo) -> Position:
        """How old the checkpointed record is, and the oldest record after it (0: none)."""
        now = datetime.now(UTC)
        if lease.checkpoint == SHARD_END:
            return Position(None, 0.0)
        seq = lease.checkpoint if lease.checkpoint[:1].isdigit() else None
        try:
            if seq is None:
                kind = "LATEST" if lease.checkpoint == "LATEST" else "TRIM_HORIZON"
                first, behind = await self._first_record(stream, lease.shard, kind, None)
                cp_age = None
            else:
                (cp, _), (first, behind) = await asyncio.gather(
                    self._first_record(stream, lease.shard, "AT_SEQUENCE_NUMBER", seq),
                    self._first_record(stream, lease.shard, "AFTER_SEQUENCE_NUMBER", seq),
                )
                cp_age = (now - cp["ApproximateArrivalTimestamp"]).total_seconds() if cp else None
        except Exception:  # a trimmed checkpoint, a closed shard: position unknown
            return Position(None, None)
        if first is not None:
            behind = max((now - first["ApproximateArrivalTimestamp"]).total_seconds() * 1000, 0.0)
        return Position(cp_age, behind)

    async def stream(
        self,
        name: str,
        table: str,
        endpoints: list[ConsumerEndpoint],
        before: dict[str, dict[str, float]],
        after: dict[str, dict[str, float]],
        elapsed: float,
    ) -> StreamReading | None:
        try:
            leases = await self._leases(table)
            try:
                summary = await self._aws["kinesis"].describe_stream_summary(StreamName=name)
                open_shards: int | None = int(summary["StreamDescriptionSummary"]["OpenShardCount"])
            except self._aws["kinesis"].exceptions.ResourceNotFoundException:
                open_shards = None
            if leases is None and open_shards is None:
                return None  # this stream is not deployed (no events stream without the gateway)
            leases = leases or []
            positions = await asyncio.gather(*(self.position(name, lease) for lease in leases))
        except Exception as failed:  # the lease table or Kinesis cannot be read: itself a finding
            return StreamReading(name, table, unreadable=_short(failed))
        owners = {lease.owner for lease in leases if lease.owner}
        mine = [e for e in endpoints if e.stream == name or (e.worker is None and e.stream is None)]
        mine = [e for e in mine if e.worker is None or e.worker in owners]
        read_rates: dict[str, float] = {}
        for e in mine:
            for shard, rate in rates(before.get(e.url, {}), after.get(e.url, {}), elapsed).items():
                read_rates[shard] = read_rates.get(shard, 0.0) + rate
        rows = shard_rows(
            name, leases, mine, dict(zip([x.shard for x in leases], positions, strict=True)), read_rates
        )
        return StreamReading(name, table, rows, open_shards)

    # ---- the source database ----------------------------------------------------------------
    async def source(self) -> SourceReading | None:
        if not self.settings.has_source_dsn or self.settings.source.engine == "mysql":
            return None  # a MySQL source has no slot; its binlog position is in the DMS task state
        import psycopg

        query = (
            "SELECT s.slot_name, s.active,"
            " coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn), 0)::bigint,"
            " coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), s.restart_lsn), 0)::bigint,"
            " extract(epoch FROM r.replay_lag)::float8"
            " FROM pg_replication_slots s LEFT JOIN pg_stat_replication r ON r.pid = s.active_pid"
            " WHERE s.database = current_database()"
        )
        expected = self.settings.source.slot_name
        try:
            async with (
                await psycopg.AsyncConnection.connect(
                    self.settings.source_dsn, connect_timeout=3, autocommit=True
                ) as conn,
                conn.cursor() as cur,
            ):
                await cur.execute(query)
                rows = await cur.fetchall()
        except (psycopg.Error, OSError) as e:
            return SourceReading(expected_slot=expected, unreadable=_short(e))
        slots = [SlotReading(str(n), bool(a), int(lag), int(kept), lag_s) for n, a, lag, kept, lag_s in rows]
        return SourceReading(slots, expected)

    # ---- dead letters -------------------------------------------------------------------------
    async def dead_letters(self) -> DeadLetterReading:
        d = self.settings.dead_letters
        if d.kind == "sqs":
            return await self._sqs_letters(d.sqs_queue)
        bucket, prefix = self.settings.s3.bucket, d.s3_prefix.strip("/") + "/"
        where = f"s3://{bucket}/{prefix}"
        s3 = self._aws["s3"]
        objects: list[dict[str, Any]] = []
        try:
            async for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                objects += page.get("Contents", [])
        except s3.exceptions.NoSuchBucket:
            return DeadLetterReading(where)
        except Exception as e:
            return DeadLetterReading(where, unreadable=_short(e))
        if not objects:
            return DeadLetterReading(where)
        now = datetime.now(UTC)
        objects.sort(key=lambda o: o["LastModified"], reverse=True)
        ages = [(now - o["LastModified"]).total_seconds() for o in objects]

        async def reason(key: str) -> str:
            try:
                resp = await s3.get_object(Bucket=bucket, Key=key)
                async with resp["Body"] as body:
                    doc = orjson.loads(await body.read())
                return str(doc.get("error_type") or "unknown")
            except Exception:
                return "unreadable"

        sampled = await asyncio.gather(*(reason(o["Key"]) for o in objects[:LETTERS_SAMPLED]))
        by_reason: dict[str, int] = {}
        for r in sampled:
            by_reason[r] = by_reason.get(r, 0) + 1
        return DeadLetterReading(where, len(objects), by_reason, max(ages), min(ages), len(sampled))

    async def _sqs_letters(self, queue: str) -> DeadLetterReading:
        sqs = self._aws["sqs"]
        where = f"sqs:{queue}"
        try:
            url = (await sqs.get_queue_url(QueueName=queue))["QueueUrl"]
            attrs = (
                await sqs.get_queue_attributes(
                    QueueUrl=url,
                    AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
                )
            )["Attributes"]
        except sqs.exceptions.QueueDoesNotExist:
            return DeadLetterReading(where)
        except Exception as e:
            return DeadLetterReading(where, unreadable=_short(e))
        count = int(attrs.get("ApproximateNumberOfMessages", 0)) + int(
            attrs.get("ApproximateNumberOfMessagesNotVisible", 0)
        )
        # reasons would need a receive, which is not read-only: counted only
        return DeadLetterReading(where, count)

    # ---- the reconcile's report -----------------------------------------------------------
    async def reconcile(self) -> ReconcileReading:
        s3, bucket = self._aws["s3"], self.settings.s3.bucket
        try:
            keys: list[str] = []
            async for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=bucket, Prefix=f"{REPORT_PREFIX}/reconcile-"
            ):
                keys += [o["Key"] for o in page.get("Contents", [])]
            if not keys:
                return ReconcileReading()
            key = max(keys)  # reconcile-YYYYmmddTHHMMSSZ.json: the newest sorts last
            resp = await s3.get_object(Bucket=bucket, Key=key)
            async with resp["Body"] as body:
                doc = orjson.loads(await body.read())
        except s3.exceptions.NoSuchBucket:
            return ReconcileReading()
        except Exception as e:
            return ReconcileReading(unreadable=_short(e))
        finished = doc.get("finished_at")
        at = datetime.fromisoformat(finished.replace("Z", "+00:00")) if finished else None
        return ReconcileReading(
            key=f"s3://{bucket}/{key}",
            run_id=doc.get("run_id"),
            finished_at=at,
            age_h=(datetime.now(UTC) - at).total_seconds() / 3600 if at else None,
            dry_run=doc.get("dry_run"),
            drift_total=(doc.get("drift") or {}).get("total"),
            exit_code=doc.get("exit_code"),
            refused=doc.get("refused"),
        )

    # ---- the gateway --------------------------------------------------------------------------
    async def _gateway_counts(self) -> tuple[float, float, float] | str | None:
        """(requests, 5xx, 429) totals; None when no gateway is to be read; the error text."""
        src = self.sources
        try:
            if src.gateway_metrics is not None:
                text = src.gateway_metrics().decode()
            elif src.gateway_url and src.gateway_key:
                context = ssl.create_default_context(cafile=src.gateway_ca) if src.gateway_ca else None
                async with self.http.get(
                    src.gateway_url.rstrip("/") + "/metrics",
                    headers={"X-API-Key": src.gateway_key},
                    ssl=context if context is not None else True,
                ) as resp:
                    if resp.status != 200:
                        return f"/metrics answered {resp.status}"
                    text = await resp.text()
            else:
                return None
        except (TimeoutError, aiohttp.ClientError, OSError, ssl.SSLError) as e:
            return _short(e)
        samples = parse_metrics(text)
        by_status = per_label(samples, "gorse_cdc_gateway_requests_total", "status")
        errors = sum(v for s, v in by_status.items() if s.startswith("5"))
        return (sum(by_status.values()), errors, total(samples, "gorse_cdc_gateway_rate_limited_total"))

    def _gateway(self, counts: Any, before: Any, elapsed: float) -> GatewayReading | None:
        src = self.sources
        url = src.gateway_url or "(this gateway)"
        if counts is None:
            return None
        if isinstance(counts, str):
            return GatewayReading(url, unreadable=counts)
        reading = GatewayReading(url, True, *counts)
        if isinstance(before, tuple) and elapsed > 0:
            r = rates(
                {"r": before[0], "e": before[1], "t": before[2]},
                {"r": counts[0], "e": counts[1], "t": counts[2]},
                elapsed,
            )
            reading = replace(reading, requests_per_s=r["r"], errors_per_s=r["e"], rate_limited_per_s=r["t"])
        return reading

    # ---- Gorse ---------------------------------------------------------------------------------
    async def gorse(self) -> GorseReading:
        url = self.settings.gorse_url
        key = self.settings.gorse.api_key.get_secret_value()
        try:
            async with self.http.get(url + "/api/health/ready") as resp:
                health = orjson.loads(await resp.read())
            async with self.http.get(url + "/api/dashboard/stats", headers={"X-API-Key": key}) as resp:
                stats = orjson.loads(await resp.read()) if resp.status == 200 else {}
        except (TimeoutError, aiohttp.ClientError, OSError, ValueError) as e:
            return GorseReading(url, unreadable=_short(e))
        fit = stats.get("MatchingModelFitTime")
        return GorseReading(
            url,
            reachable=True,
            ready=bool(health.get("Ready")),
            users=stats.get("NumUsers"),
            items=stats.get("NumItems"),
            positive_feedback=stats.get("NumTotalPosFeedback"),
            model_fit_at=None if not fit or fit.startswith("0001-") else fit,
        )


async def read_once(settings: Settings, sources: StatusSources) -> Readings:
    async with StatusReader(settings, sources) as reader:
        return await reader.read()


ReadFn = Callable[[], Awaitable[Readings]]
