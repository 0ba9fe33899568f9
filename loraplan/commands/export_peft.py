"""`loraplan export-peft CONFIG [-o DIR]`: the adapter_config.json the plan's adapter will have.

Compiles the config (the architecture resolved offline, as `plan` does) and writes the PEFT
adapter config that `save_pretrained` writes after `loraplan.apply`, without loading a model:
to DIR/adapter_config.json with -o, else to stdout. Findings go to stderr; a config with errors
(or warnings, with --strict) exports nothing.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from loraplan.commands import (
    EXIT_FINDINGS,
    EXIT_OK,
    EXIT_USAGE,
    add_arch_flag,
    add_dialect_flag,
    add_format_flag,
    add_strict_flag,
    apply_strict,
    output_format,
)


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "export-peft",
        help="write the PEFT adapter_config.json a config's adapter will have (no model needed)",
        description=(
            "Compile CONFIG and write the adapter_config.json that PeftModel.save_pretrained writes for it "
            "after loraplan.apply. Exit 0: written; 1: the config has errors; 2: usage or internal error."
        ),
    )
    parser.add_argument("config", metavar="CONFIG", help="config file (YAML)")
    parser.add_argument(
        "-o", "--output", metavar="DIR", default=None, help="write DIR/adapter_config.json (default: stdout)"
    )
    parser.add_argument(
        "--force", action="store_true",
        help="with -o: replace an existing adapter_config.json (also one next to trained weights) or a symlink",
    )
    add_arch_flag(parser)
    add_dialect_flag(parser)
    add_format_flag(parser)
    add_strict_flag(parser)


def _text(path: str) -> str | None:
    from loraplan.commands.validate import read_text_quietly

    return read_text_quietly(path)


def run(args: argparse.Namespace) -> int:
    from loraplan.compiler.compile import check_loaded
    from loraplan.output.diagnostics import render
    from loraplan.runtime.export import adapter_config as build
    from loraplan.runtime.export import to_json
    from loraplan.schema.load import load_file

    result = load_file(args.config, dialect=args.dialect)
    diagnostics = list(result.diagnostics)
    plan = None
    if result.ok:
        plan, found = check_loaded(result, arch_override=args.arch, offline_only=False)
        diagnostics.extend(found)
    diagnostics = apply_strict(diagnostics, args.strict)
    failed = plan is None or not result.ok or any(d.severity == "error" for d in diagnostics)
    if diagnostics:
        fmt = output_format(args.format)
        sources = {args.config: _text(args.config)}
        sys.stderr.write(render(diagnostics, fmt, sources, files=[args.config]))
    if failed:
        from loraplan.commands.plan import missing_path

        return EXIT_USAGE if missing_path(args.config) else EXIT_FINDINGS
    assert plan is not None
    if args.output:
        from loraplan.commands.output_file import Refused, adapter_dir, write_text
        from loraplan.runtime.export import CONFIG_NAME

        try:
            folder = adapter_dir(args.output, force=args.force)
            path = write_text(folder / CONFIG_NAME, to_json(build(plan)), force=args.force, inputs=[args.config])
        except Refused as exc:
            print(f"loraplan: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(f"wrote {path}", file=sys.stderr)
    else:
        sys.stdout.write(to_json(build(plan)) + "\n")
    return EXIT_OK
