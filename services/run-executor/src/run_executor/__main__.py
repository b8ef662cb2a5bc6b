"""Command line of the run-executor service: `python -m run_executor --help`, plus
`python -m run_executor purge-run-data` (one retention pass now: logs, spans and claims of
long-finished runs; see application/retention.py)."""

import asyncio
import sys

from ailab_runtime.logging import configure_logging
from ailab_runtime.service import Runtime, run_cli

from .bootstrap import SPEC, build_retention
from .config import Settings

PURGE = "purge-run-data"


async def purge_run_data(settings: Settings) -> None:
    configure_logging(SPEC.name, settings.log_level)
    runtime = Runtime(SPEC, settings)
    try:
        await runtime.prepare_database()
        done = await build_retention(settings, runtime.db).run_once()
        print(f"{SPEC.name}: deleted {done.logs} logs, {done.spans} spans, {done.claims} claims")
    finally:
        await runtime.mongo.close()


def main() -> None:
    if sys.argv[1:2] == [PURGE]:
        if len(sys.argv) > 2:
            sys.exit(f"usage: python -m run_executor {PURGE}  (settings come from the environment)")
        asyncio.run(purge_run_data(Settings()))
        return
    run_cli(SPEC, Settings)


if __name__ == "__main__":
    main()
