"""Command line of the usage-meter service: `python -m usage_meter --help`."""

from ailab_runtime.service import run_cli

from .bootstrap import SPEC
from .config import Settings


def main() -> None:
    run_cli(SPEC, Settings)


if __name__ == "__main__":
    main()
