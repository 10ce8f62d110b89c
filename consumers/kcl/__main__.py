"""The program the MultiLangDaemon starts once per shard lease: amazon-kclpy's protocol on
stdin/stdout (so nothing else may write to stdout: logs go to stderr)."""

from __future__ import annotations

import argparse
import sys

from amazon_kclpy import kcl
from pydantic import ValidationError

from consumers.kcl.processor import GorseRecordProcessor
from consumers.kcl.runtime import ShardRuntime
from gorse_cdc.logs import setup_logging
from gorse_cdc.settings import Settings


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m consumers.kcl", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--json-logs", action="store_true")
    args = parser.parse_args()
    setup_logging(args.log_level, args.json_logs)
    try:
        settings = Settings()
    except ValidationError as e:
        print(f"gorse-cdc KCL processor: invalid settings:\n{e}", file=sys.stderr)
        return 2
    kcl.KCLProcess(GorseRecordProcessor(lambda: ShardRuntime(settings))).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
