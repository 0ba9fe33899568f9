"""`loraplan schema`: print the JSON Schema (draft-07) of the native config format.

Editors use it through yaml-language-server (`# yaml-language-server: $schema=...`); the copy
shipped in the package is regenerated with `loraplan schema > loraplan/schema/loraplan.schema.json`
and `--check` tells whether it is stale.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "schema",
        help="print the JSON Schema of the native config format",
        description="Print the JSON Schema (draft-07, for yaml-language-server) of loraplan's native config.",
    )
    group = parser.add_mutually_exclusive_group()
    group.add_argument("-o", "--output", metavar="FILE", help="write the schema to FILE instead of stdout")
    parser.add_argument("--force", action="store_true", help="with -o: replace an existing FILE (or a symlink)")
    group.add_argument(
        "--check",
        action="store_true",
        help="exit 1 when the copy shipped in the package differs from the generated schema",
    )


def run(args: argparse.Namespace) -> int:
    from loraplan.schema.json_schema import COMMITTED, committed, render

    text = render()
    if args.check:
        try:
            current = committed()
        except OSError:
            current = None
        if current == text:
            print(f"{COMMITTED.name} is up to date.")
            return 0
        print(
            f"{COMMITTED} is stale; regenerate it with: loraplan schema > loraplan/schema/loraplan.schema.json",
            file=sys.stderr,
        )
        return 1
    if args.output:
        from loraplan.commands.output_file import Refused, write_text

        try:
            write_text(args.output, text, force=args.force)
        except Refused as exc:
            print(f"loraplan: {exc}", file=sys.stderr)
            return 2
        return 0
    sys.stdout.write(text)
    return 0
