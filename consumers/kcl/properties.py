"""The MultiLangDaemon's properties and the processors' environment, derived from the one
Settings object. Pure: no I/O.

The lease table is KCL's ``applicationName``: the KCL engine and the native engine share
``settings.leases.table`` and can take over from each other (README: "moving between the
native engine and KCL"). KCL 3 adds two tables of its own beside it:
``<table>-CoordinatorState`` and ``<table>-WorkerMetricStats``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from gorse_cdc.settings import LOCAL_AWS_KEY, Settings

PROCESSOR_MODULE = "consumers.kcl"


def kcl_kinesis_endpoint(settings: Settings) -> str | None:
    """The Kinesis endpoint the KCL uses. Its client forces HTTP/2: locally that is the
    stack's h2c listener (kinesalite served again over cleartext HTTP/2), not the usual port."""
    if settings.kcl.kinesis_endpoint_url:
        return settings.kcl.kinesis_endpoint_url
    if settings.aws.kinesis_endpoint_url:
        return settings.aws.kinesis_endpoint_url
    if not settings.local:
        return settings.aws_endpoint_url  # None: the real Kinesis
    if settings.stack.kinesis_emulator == "kinesalite":
        return f"http://{settings.stack.host}:{settings.stack.port('kinesis_h2c')}"
    return settings.kinesis_endpoint_url


def daemon_properties(
    settings: Settings, worker_id: str, *, python: str = sys.executable, log_flags: str = ""
) -> dict[str, str]:
    """Every property the daemon gets, in the order written. ``log_flags``: the processors'
    logging options (``--log-level X --json-logs``)."""
    k = settings.kcl
    props: dict[str, str] = {
        "executableName": f"{python} -m {PROCESSOR_MODULE} {log_flags}".rstrip(),
        "streamName": settings.kinesis.stream_name,
        "applicationName": settings.leases.table,
        "workerIdentifier": worker_id,
        "AwsCredentialsProvider": "DefaultCredentialsProvider",
        "processingLanguage": f"python/{sys.version_info.major}.{sys.version_info.minor}",
        "initialPositionInStream": "TRIM_HORIZON",
        "regionName": settings.aws.region,
        "retrievalMode": "POLLING",
        "metricsLevel": "NONE",
        "failoverTimeMillis": str(settings.leases.failover_ms),
        "maxLeasesToStealAtOneTime": str(max(1, settings.leases.max_leases_to_steal)),
        # SIGTERM: each processor checkpoints what it applied (KCL's default 0 gives up at once)
        "shutdownGraceMillis": str(int(settings.consumer.shutdown_timeout_s * 1000)),
    }
    endpoint = kcl_kinesis_endpoint(settings)
    if endpoint:
        props["kinesisEndpoint"] = endpoint
    if settings.aws_endpoint_url:
        props["dynamoDBEndpoint"] = settings.aws_endpoint_url
    optional = {
        "shardSyncIntervalMillis": k.shard_sync_interval_ms,
        "leaseAssignmentIntervalMillis": k.lease_assignment_interval_ms,
        "idleTimeBetweenReadsInMillis": k.idle_time_between_reads_ms,
        "maxRecords": k.max_records,
    }
    if k.tuned:
        props.update({name: str(v) for name, v in optional.items() if v is not None})
    props.update(k.extra_properties)
    return props


def render(props: Mapping[str, str]) -> str:
    for name, value in props.items():
        if "\n" in name or "\n" in value:
            raise ValueError(f"KCL property {name!r}: a property cannot span lines")
    return "".join(f"{name} = {value}\n" for name, value in props.items())


def daemon_environment(settings: Settings) -> dict[str, str]:
    """Environment added to the daemon's (and so to its processors'): the AWS credentials the
    daemon's DefaultCredentialsProvider reads (locally the emulators' dummy key; in AWS the
    task role, nothing added) and the settings the command line folded in, so each processor builds the same
    Settings. Secrets are passed, never logged."""
    env = {
        "AWS_REGION": settings.aws.region,
        "GORSE_CDC_KINESIS__STREAM_NAME": settings.kinesis.stream_name,
        "GORSE_CDC_LEASES__TABLE": settings.leases.table,
        "GORSE_CDC_CONSUMER__METRICS_PORT": str(settings.consumer.metrics_port),
        "GORSE_CDC_CONSUMER__ENGINE": "kcl",
    }
    a = settings.aws
    if a.access_key_id and a.secret_access_key:
        env["AWS_ACCESS_KEY_ID"] = a.access_key_id.get_secret_value()
        env["AWS_SECRET_ACCESS_KEY"] = a.secret_access_key.get_secret_value()
    elif settings.local:
        env["AWS_ACCESS_KEY_ID"] = env["AWS_SECRET_ACCESS_KEY"] = LOCAL_AWS_KEY
    return env
