"""Command line of the agent-registry service: `python -m agent_registry --help`."""

from ailab_runtime.service import run_cli

from .bootstrap import SPEC
from .config import Settings


def main() -> None:
    run_cli(SPEC, Settings)


if __name__ == "__main__":
    main()
