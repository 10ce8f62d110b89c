"""AWS Glue 5.0 entry script (Spark 3.5.4, Python 3.11): a thin shell over glue.job.

    --JOB_NAME reconcile                         (required, as in every Glue job)
    --GORSE_CDC_<SECTION>__<FIELD> value         any setting, e.g. --GORSE_CDC_S3__BUCKET my-bucket,
                                                 --GORSE_CDC_GORSE__URL http://gorse:8088
    --DRY_RUN true|false   --SOURCE_CHECK true|false   --MAX_WRITES_PER_S n   --SAMPLE n
    --SOURCE_DIR path      --REPORT_DIR path     --STAGING_DIR path   --SPARK_MASTER local[2]
    --repair true|false    (false = --DRY_RUN true)   --report_prefix reconcile/ (default reports/)
    --MAX_DELETE_SHARE 0.05   --FORCE_DELETES true|false   (glue.safety; folded into the
                           settings' reconcile section, like --GORSE_CDC_RECONCILE__...)
    --gorse_api_key_secret_id ARN   the Gorse API key from Secrets Manager (never an argument)
    --source_dsn_secret_id ARN      the source DSN for --SOURCE_CHECK from Secrets Manager: a
                           plain DSN, JSON {"dsn": ...}, or an RDS secret (username, password,
                           host, port, dbname)
SOURCE_CHECK absent: on when repairing and a source DSN is known (the secret, or
--GORSE_CDC_SOURCE__DSN), off otherwise (glue.job.source_check_on).

Under Glue, awsglue provides the SparkSession (GlueContext), getResolvedOptions and the Job
bookmark lifecycle; drift (exit code 1) is a successful run there -- the report says what was
repaired -- and a failure raises so Glue marks the run FAILED. Without awsglue (tests, a
laptop) the script parses the same arguments itself, starts a local session and exits with
the scheduler codes 0 / 1 / 2.
Package gorse_cdc and glue as a wheel (--extra-py-files) with psycopg for --SOURCE_CHECK.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from glue.job import ReconcileOptions
from glue.main import reconcile_and_print
from glue.vocabulary import ExitCode
from gorse_cdc.logs import setup_logging
from gorse_cdc.settings import Settings

SETTING_PREFIX = "GORSE_CDC_"
OPTIONS = (
    "DRY_RUN",
    "SOURCE_CHECK",
    "MAX_WRITES_PER_S",
    "SAMPLE",
    "SOURCE_DIR",
    "REPORT_DIR",
    "STAGING_DIR",
    "SPARK_MASTER",
    "repair",
    "report_prefix",
    "gorse_api_key_secret_id",
    "source_dsn_secret_id",
    "MAX_DELETE_SHARE",
    "FORCE_DELETES",
)


class GlueArgumentError(ValueError):
    pass


def _wanted(argv: list[str]) -> list[str]:
    present = [a[2:].split("=", 1)[0] for a in argv if a.startswith("--")]
    return ["JOB_NAME", *(n for n in present if n in OPTIONS or n.startswith(SETTING_PREFIX))]


def _parse(argv: list[str], wanted: list[str]) -> dict[str, str]:
    """getResolvedOptions' behaviour for the names we want: --NAME value or --NAME=value."""
    out: dict[str, str] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--"):
            name, eq, value = arg[2:].partition("=")
            if not eq:
                if i + 1 >= len(argv):
                    raise GlueArgumentError(f"--{name} needs a value")
                value, i = argv[i + 1], i + 1
            if name in wanted:
                out[name] = value
        i += 1
    if "JOB_NAME" not in out:
        raise GlueArgumentError("--JOB_NAME is required")
    return out


def resolve_args(argv: list[str]) -> dict[str, str]:
    wanted = _wanted(argv)
    try:
        from awsglue.utils import getResolvedOptions
    except ImportError:
        return _parse(argv[1:], wanted)
    resolved: dict[str, str] = getResolvedOptions(argv, wanted)
    return resolved


def settings_overrides(args: dict[str, str]) -> dict[str, Any]:
    """--GORSE_CDC_S3__BUCKET b -> {"s3": {"bucket": "b"}} (the env variable's nesting)."""
    out: dict[str, Any] = {}
    for name, value in args.items():
        if not name.startswith(SETTING_PREFIX):
            continue
        path = name[len(SETTING_PREFIX) :].lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = value
    return out


def safety_overrides(args: dict[str, str]) -> dict[str, Any]:
    """--MAX_DELETE_SHARE / --FORCE_DELETES -> the settings' reconcile section (validated there)."""
    out: dict[str, Any] = {}
    if args.get("MAX_DELETE_SHARE"):
        out["max_delete_share"] = float(args["MAX_DELETE_SHARE"])
    if "FORCE_DELETES" in args:
        out["force_deletes"] = _flag(args["FORCE_DELETES"])
    return {"reconcile": out} if out else {}


def _flag(value: str | None) -> bool:
    if value is None:
        return False
    if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
        raise GlueArgumentError(f"expected true or false, got {value!r}")
    return value.lower() in ("true", "1", "yes")


def options_from(args: dict[str, str]) -> ReconcileOptions:
    def path(name: str) -> Path | None:
        return Path(args[name]) if args.get(name) else None

    rate = args.get("MAX_WRITES_PER_S")
    return ReconcileOptions(
        source_dir=path("SOURCE_DIR"),
        dry_run=_flag(args.get("DRY_RUN")) or ("repair" in args and not _flag(args["repair"])),
        max_writes_per_s=float(rate) if rate else None,
        source_check=_flag(args["SOURCE_CHECK"]) if args.get("SOURCE_CHECK") else None,
        report_dir=path("REPORT_DIR"),
        staging_dir=path("STAGING_DIR"),
        sample=int(args.get("SAMPLE", "10")),
        progress=False,
        report_prefix=args.get("report_prefix", "reports").strip("/") or "reports",
    )


def api_key_from_secret(secret_id: str, settings: Settings) -> str:
    """The Gorse API key from Secrets Manager (a plain string, or JSON with "api_key")."""
    import boto3
    import orjson

    sm = boto3.client("secretsmanager", **settings.aws_client_kwargs("secretsmanager"))
    value: str = sm.get_secret_value(SecretId=secret_id)["SecretString"]
    if value.startswith("{"):
        doc = orjson.loads(value)
        value = str(doc.get("api_key") or doc.get("GORSE_SERVER_API_KEY") or "")
    if not value:
        raise GlueArgumentError(f"secret {secret_id} holds no API key")
    return value


def dsn_from_secret(secret_id: str, settings: Settings) -> str:
    """The source DSN from Secrets Manager: a plain DSN, JSON {"dsn": ...}, or an RDS secret."""
    import boto3

    sm = boto3.client("secretsmanager", **settings.aws_client_kwargs("secretsmanager"))
    value: str = sm.get_secret_value(SecretId=secret_id)["SecretString"]
    return dsn_of(value, secret_id, settings.source.database)


def dsn_of(value: str, secret_id: str, database: str = "ott") -> str:
    """A DSN from a secret's value; an RDS-style secret without dbname uses ``database``."""
    import orjson

    if not value.lstrip().startswith("{"):
        if not value.strip():
            raise GlueArgumentError(f"{secret_id} holds no DSN")
        return value.strip()
    doc = orjson.loads(value)
    if doc.get("dsn"):
        return str(doc["dsn"])
    try:
        from psycopg.conninfo import make_conninfo

        return make_conninfo(
            host=str(doc["host"]),
            port=str(doc.get("port", 5432)),
            dbname=str(doc.get("dbname") or doc.get("database") or database),
            user=str(doc["username"]),
            password=str(doc["password"]),
            sslmode=str(doc.get("sslmode", "require")),
        )
    except KeyError as e:
        raise GlueArgumentError(f"{secret_id}: no DSN and no {e} field") from None


def main(argv: list[str]) -> int:
    setup_logging("INFO")
    try:
        args = resolve_args(argv)
        overrides = settings_overrides(args)
        for section, values in safety_overrides(args).items():
            overrides.setdefault(section, {}).update(values)
        settings = Settings(**overrides)
        if args.get("gorse_api_key_secret_id"):
            key = api_key_from_secret(args["gorse_api_key_secret_id"], settings)
            overrides.setdefault("gorse", {})["api_key"] = key
        if args.get("source_dsn_secret_id"):
            dsn = dsn_from_secret(args["source_dsn_secret_id"], settings)
            overrides.setdefault("source", {})["dsn"] = dsn
        settings = Settings(**overrides)
        options = options_from(args)
    except (GlueArgumentError, ValueError) as e:
        print(f"reconcile_job: bad arguments: {e}", file=sys.stderr)
        return ExitCode.FAILURE
    try:
        from awsglue.context import GlueContext
        from awsglue.job import Job
        from pyspark.context import SparkContext
    except ImportError:
        from glue.spark import local_session

        spark = local_session(args.get("SPARK_MASTER", "local[2]"))
        try:
            return reconcile_and_print(spark, settings, options)
        finally:
            spark.stop()
    glue_context = GlueContext(SparkContext.getOrCreate())
    job = Job(glue_context)
    job.init(args["JOB_NAME"], args)
    rc = reconcile_and_print(glue_context.spark_session, settings, options)
    if rc == ExitCode.FAILURE:
        raise RuntimeError("reconcile failed; see the log and the drift report")
    job.commit()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
