"""`python -m ailab_contracts export-schemas DIR`: write JSON Schema of every event version."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import REGISTRY
from .schema import export


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ailab_contracts", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser("export-schemas", help="write one JSON Schema file per event version")
    exp.add_argument("directory", type=Path)
    args = parser.parse_args()
    if args.command == "export-schemas":
        paths = export(REGISTRY, args.directory)
        print(f"wrote {len(paths)} schemas to {args.directory}")


if __name__ == "__main__":
    main()
