"""`loraplan plan CONFIG`: which modules get adapters, coverage, trainable parameters, memory.

Loads the config (native or Axolotl), resolves its architecture (the bundled catalog needs no
torch; a local config.json builds on the meta device) and prints the compiled Plan as a table,
JSON (the full Plan, `Plan.from_json` reads it back) or markdown. Exit codes as `validate`.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from typing import Any

from loraplan.commands import EXIT_USAGE, add_arch_flag, add_dialect_flag, add_strict_flag, apply_strict, exit_code

FORMATS = ("table", "json", "markdown")


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="compile a config into its injection plan: modules, coverage, parameters, memory",
        description=(
            "Resolve a loraplan (or Axolotl) config against its architecture and print the plan: every "
            "adapted module (repeated layers collapsed), per-pattern coverage, trainable parameters, the "
            "memory estimate and every finding. Exit 0: no errors; 1: errors found; 2: usage or internal error."
        ),
    )
    parser.add_argument("config", metavar="CONFIG", help="config file (YAML)")
    parser.add_argument("--format", choices=FORMATS, default="table", help="output format (default: table)")
    add_arch_flag(parser)
    add_dialect_flag(parser)
    add_strict_flag(parser)
    parser.add_argument("-o", "--output", metavar="FILE", default=None, help="write the plan to FILE instead of stdout")
    parser.add_argument("--force", action="store_true", help="with -o: replace an existing FILE (or a symlink)")


def can_print(stream: Any, text: str = "α→×") -> bool:
    """Whether the stream's encoding has the table's glyphs (else ASCII stand-ins are used)."""
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def ascii_stdout() -> bool:
    """True when stdout cannot print the glyphs; then anything else unprintable becomes `?`, not a crash."""
    if can_print(sys.stdout):
        return False
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        reconfigure(errors="replace")
    return True


def compile_file(path: str, dialect: str, arch: str | None, strict: bool) -> tuple[Any, list[Any], Any]:
    """(plan or None, every finding with --strict applied, LoadResult) for one config file."""
    from loraplan.compiler.compile import check_loaded
    from loraplan.schema.diagnostic import sort_diagnostics
    from loraplan.schema.load import load_file

    result = load_file(path, dialect=dialect)  # type: ignore[arg-type]
    diagnostics = list(result.diagnostics)
    plan = None
    if result.config is not None:
        plan, found = check_loaded(result, arch_override=arch, offline_only=False)
        diagnostics += found
    diagnostics = apply_strict(sort_diagnostics(diagnostics), strict)
    if plan is not None:
        plan = replace(plan, diagnostics=diagnostics)  # the plan carries every finding, the loader's too
    return plan, diagnostics, result


def document(plan: Any, diagnostics: list[Any], path: str, fmt: str, *, color: bool, ascii_only: bool) -> str:
    """The text to print: the plan in `fmt`, or the findings alone when no plan was made."""
    from loraplan.commands.validate import read_text_quietly
    from loraplan.output.diagnostics import printable, render

    sources = {path: read_text_quietly(path)} if fmt != "json" else {}
    if plan is None:
        if fmt == "json":
            return render(diagnostics, "json", files=[path])
        text = render(diagnostics, "text", sources, files=[path], color=color and fmt == "table")
        if fmt == "markdown":
            return f"# Plan: `{printable(path)}`\n\nNo plan: the config has errors.\n\n```text\n{text.rstrip()}\n```\n"
        return text
    if fmt == "json":
        return plan.to_json() + "\n"
    if fmt == "markdown":
        from loraplan.output.plan_markdown import render_markdown

        return render_markdown(plan, title=printable(path), sources=sources, files=[path])
    from loraplan.output.plan_table import render_table

    return render_table(plan, title=printable(path), sources=sources, files=[path], color=color, ascii_only=ascii_only)


def run(args: argparse.Namespace) -> int:
    from loraplan.output.diagnostics import render, use_color

    plan, diagnostics, _ = compile_file(args.config, args.dialect, args.arch, args.strict)
    if args.output:
        text = document(plan, diagnostics, args.config, args.format, color=False, ascii_only=False)
        from loraplan.commands.output_file import Refused, write_text

        try:
            write_text(args.output, text, force=args.force, inputs=[args.config, *([args.arch] if args.arch else [])])
        except Refused as exc:
            print(f"loraplan: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if any(d.severity in ("error", "warning") for d in diagnostics):  # say why the exit code is what it is
            sources = {args.config: _source_text(args.config)}
            sys.stderr.write(render(diagnostics, "text", sources, files=[args.config], color=use_color(sys.stderr)))
    else:
        color = args.format == "table" and use_color(sys.stdout)
        text = document(plan, diagnostics, args.config, args.format, color=color, ascii_only=ascii_stdout())
        sys.stdout.write(text)
        sys.stdout.flush()
    return EXIT_USAGE if missing_path(args.config) else exit_code(diagnostics)


def missing_path(path: str) -> bool:
    """A config path that does not exist: a usage error (exit 2), as in `validate`."""
    try:
        return not os.path.lexists(path)
    except (OSError, ValueError):
        return False


def _source_text(path: str) -> str | None:
    from loraplan.commands.validate import read_text_quietly

    return read_text_quietly(path)
