"""The replay tool: push history through the same decode -> map -> write path as the live
consumer, from Kinesis (a position to a stop point), the S3 archive or the dead-letter store,
with its own checkpoint namespace (never the live consumer's leases)."""
