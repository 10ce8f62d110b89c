"""The long-running Kinesis -> Gorse service (``gorse-cdc consume``) and ``gorse-cdc verify``.

The path decode -> map -> coalesce -> write -> checkpoint is a library (``consumers.pipeline``)
built on four small Protocols (``consumers.protocols``): a record source, a checkpoint store,
a sink and a dead-letter store, so the replay tool can run the same path over another source
(the S3 archive, the DLQ) and another checkpoint namespace without touching live leases.
"""
