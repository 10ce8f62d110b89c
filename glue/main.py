"""The shared tail of both entry points (CLI and Glue script): run, print, map errors to exit
codes (glue.vocabulary.ExitCode). Exit 2 on any failure, with the reason on stderr (never a secret)."""

from __future__ import annotations

import logging
import sys

from pyspark.sql import SparkSession

from glue.job import ReconcileOptions, run_reconcile
from glue.report import render
from glue.vocabulary import ExitCode
from gorse_cdc.errors import GorseCdcError
from gorse_cdc.settings import Settings

log = logging.getLogger(__name__)


def reconcile_and_print(spark: SparkSession, settings: Settings, options: ReconcileOptions) -> ExitCode:
    try:
        outcome = run_reconcile(spark, settings, options)
    except GorseCdcError as e:
        print(f"reconcile failed: {e}", file=sys.stderr)
        return ExitCode.FAILURE
    except Exception as e:  # a Spark job failure (e.g. a malformed DMS file) arrives wrapped
        log.exception("reconcile failed")
        print(f"reconcile failed: {type(e).__name__}: {str(e)[:2000]}", file=sys.stderr)
        return ExitCode.FAILURE
    sys.stdout.write(render(outcome.report).decode() + "\n")
    if outcome.result.refused:
        print(outcome.result.refused, file=sys.stderr)
    print(f"drift report: {outcome.report_path}", file=sys.stderr)
    return outcome.exit_code
