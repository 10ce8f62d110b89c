"""The nightly reconcile: prove (and repair) that Gorse equals mapping(source DB).

A pure PySpark core (``glue.job.run_reconcile``) that runs in AWS Glue 5.0 through the thin
entry script ``glue/reconcile_job.py`` and locally as ``gorse-cdc reconcile``. Phases:
read the DMS S3 output (LOAD then CDC files, per table) -> latest row per key -> expected
Gorse state through the shared Mapper -> export the actual Gorse state -> diff in Spark ->
guarded repair through the shared GorseClient -> drift report (JSON to S3 and stdout).
"""
