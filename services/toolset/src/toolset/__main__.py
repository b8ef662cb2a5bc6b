"""Command line of the toolset service: `python -m toolset --help`."""

from ailab_runtime.service import run_cli

from .bootstrap import SPEC
from .config import Settings


def main() -> None:
    run_cli(SPEC, Settings)


if __name__ == "__main__":
    main()
