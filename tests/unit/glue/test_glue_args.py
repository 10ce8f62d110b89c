from __future__ import annotations

from pathlib import Path

import pytest

from glue.reconcile_job import GlueArgumentError, options_from, resolve_args, settings_overrides
from gorse_cdc.settings import Settings


def test_glue_style_arguments_become_settings_and_options() -> None:
    argv = [
        "reconcile_job.py",
        "--JOB_NAME",
        "nightly",
        "--GORSE_CDC_S3__BUCKET",
        "b1",
        "--GORSE_CDC_GORSE__URL=http://g:1",
        "--DRY_RUN",
        "true",
        "--SOURCE_DIR",
        "/data",
        "--job-bookmark-option",
        "job-bookmark-disable",
        "--MAX_WRITES_PER_S",
        "50",
    ]
    args = resolve_args(argv)
    assert args["JOB_NAME"] == "nightly" and "job-bookmark-option" not in args
    s = Settings(**settings_overrides(args))
    assert s.s3.bucket == "b1" and s.gorse_url == "http://g:1"
    o = options_from(args)
    assert o.dry_run and o.source_dir == Path("/data") and o.max_writes_per_s == 50.0 and not o.source_check


def test_the_cloudformation_job_arguments() -> None:
    args = resolve_args(["s.py", "--JOB_NAME", "j", "--repair", "false", "--report_prefix", "reconcile/"])
    o = options_from(args)
    assert o.dry_run and o.report_prefix == "reconcile"
    assert not options_from(resolve_args(["s.py", "--JOB_NAME", "j", "--repair", "true"])).dry_run


def test_job_name_is_required_and_flags_are_checked() -> None:
    with pytest.raises(GlueArgumentError, match="JOB_NAME"):
        resolve_args(["x", "--DRY_RUN", "true"])
    with pytest.raises(GlueArgumentError, match="true or false"):
        options_from({"JOB_NAME": "j", "DRY_RUN": "maybe"})
