"""`python -m ailab_contracts export-schemas DIR`: write JSON Schema of every event version."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from . import REGISTRY
from .asyncapi import asyncapi
from .schema import export


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m ailab_contracts", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    exp = sub.add_parser(
        "export-schemas",
        help="write one JSON Schema per event version, and asyncapi.json beside the directory",
    )
    exp.add_argument("directory", type=Path)
    args = parser.parse_args()
    if args.command == "export-schemas":
        paths = export(REGISTRY, args.directory)
        doc = args.directory.parent / "asyncapi.json"
        doc.write_text(json.dumps(asyncapi(REGISTRY), indent=2, sort_keys=True) + "\n")
        print(f"wrote {len(paths)} schemas to {args.directory} and the AsyncAPI document to {doc}")


if __name__ == "__main__":
    main()
