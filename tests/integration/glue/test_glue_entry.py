"""The Glue entry script runs the same core with Glue-style arguments (no AWS, no awsglue):
local DMS folder, the stack's Gorse and moto endpoints, a local report folder, --DRY_RUN."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from gorse_cdc.gorse import GorseClient
from tests.unit.glue.dmsdata import DmsWriter, dir_put

SCRIPT = Path(__file__).resolve().parents[3] / "glue" / "reconcile_job.py"


def test_glue_script_with_glue_style_arguments(stack, settings, tmp_path: Path) -> None:
    w = DmsWriter(dir_put(tmp_path / "dms-out"), prefix="nightly")
    w.definitions()
    w.load("users", [[900001, 33, "F", "pilot", "75001"]])
    w.load("movies", [])
    w.load("ratings", [])
    argv = [
        sys.executable, str(SCRIPT),
        "--JOB_NAME", "gorse-cdc-reconcile",
        "--GORSE_CDC_GORSE__URL", settings.gorse_url,
        "--GORSE_CDC_AWS__ENDPOINT_URL", settings.aws_endpoint_url,
        "--GORSE_CDC_S3__PREFIX", "nightly",
        "--SOURCE_DIR", str(tmp_path / "dms-out"),
        "--REPORT_DIR", str(tmp_path / "reports"),
        "--DRY_RUN", "true",
        "--SAMPLE", "1000",
        "--job-bookmark-option", "job-bookmark-disable",
    ]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr[-3000:]
    reports = list((tmp_path / "reports" / "reports").glob("reconcile-*.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["dry_run"] is True and report["source"].endswith("dms-out/nightly")
    assert report["source_rows"] == {"users": 1, "movies": 0, "ratings": 0}
    assert ["900001"] in report["drift"]["users"]["sample_missing"]
    assert json.loads(proc.stdout)["run_id"] == report["run_id"]

    async def user() -> object:
        async with GorseClient.from_settings(settings) as c:
            return await c.get_user("900001")

    assert asyncio.run(user()) is None  # a dry run writes nothing


def test_glue_script_bad_arguments_exit_2(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--DRY_RUN", "true"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "JOB_NAME" in proc.stderr
