"""The `gorse-cdc` command. Each package registers its own subcommands; this is the only
place that lists them."""

from __future__ import annotations

import argparse
import importlib
import sys

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from gorse_cdc.errors import FatalError, GorseCdcError
from gorse_cdc.logs import setup_logging
from gorse_cdc.settings import Settings

# module paths with a register(subparsers) function; each sets func(args, settings) -> int
SUBCOMMANDS = [
    "entrypoints.stack.cli",
    "producers.cli",
    "consumers.cli",
    "consumers.replay.cli",
    "glue.cli",
    "gateway.cli",
    "entrypoints.demo",
    "entrypoints.status",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gorse-cdc",
        description=(
            "Keep a Gorse recommender in step with a live database: AWS DMS change records "
            "(Kinesis + S3) become idempotent Gorse writes within a second. Settings come from "
            "GORSE_CDC_* environment variables or the TOML file in GORSE_CDC_CONFIG."
        ),
        epilog="Start with: gorse-cdc stack up && gorse-cdc demo",
    )
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    parser.add_argument("--json-logs", action="store_true", help="one JSON object per log line")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in SUBCOMMANDS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name is None or not module.startswith(e.name):
                raise
            continue  # a package that has no commands yet
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.json_logs)
    try:
        settings = Settings()
    except ValidationError as e:
        print(f"gorse-cdc: invalid settings:\n{e}", file=sys.stderr)
        return 2
    try:
        rc: int = args.func(args, settings)
    except KeyboardInterrupt:
        return 130
    except (GorseCdcError, BotoCoreError, ClientError, OSError) as e:
        # operational failures get one clear line (the traceback with --log-level DEBUG)
        if args.log_level.upper() == "DEBUG":
            raise
        kind = "" if isinstance(e, FatalError) else f"{type(e).__name__}: "
        print(f"gorse-cdc {args.command}: {kind}{e}", file=sys.stderr)
        return 2
    return rc


if __name__ == "__main__":
    sys.exit(main())
