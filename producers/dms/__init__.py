"""The local AWS DMS: PostgreSQL logical replication (wal2json) -> Kinesis and S3, writing
what DMS writes. Library use: ``run_dms(settings, until_idle=True)`` (blocking) or
``await arun_dms(settings, until_idle=True)``."""

from producers.dms.runner import DmsSummary, LocalDms, arun_dms, run_dms

__all__ = ["DmsSummary", "LocalDms", "arun_dms", "run_dms"]
