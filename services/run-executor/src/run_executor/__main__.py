"""Command line of the run-executor service: `python -m run_executor --help`."""

from ailab_runtime.service import run_cli

from .bootstrap import SPEC
from .config import Settings


def main() -> None:
    run_cli(SPEC, Settings)


if __name__ == "__main__":
    main()
