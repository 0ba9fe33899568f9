"""`loraplan validate FILE...`: every finding in every file, located, in one run.

Runs the schema layer (YAML, types, cross-field rules) on each file and the target checks against
its architecture: the catalog needs no torch; a config.json (--arch, `architecture:`, the HF cache,
or the hub with --online) imports transformers only then. A file whose targets could not be
checked says so (LP520, a warning: --strict fails it) and the summary counts it as checked partly.
Many files per call, so it works as a pre-commit hook.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from loraplan.commands import (
    EXIT_USAGE,
    add_arch_flag,
    add_dialect_flag,
    add_format_flag,
    add_strict_flag,
    apply_strict,
    exit_code,
    output_format,
)

COMPILER_MODULE = "loraplan.compiler.compile"


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "validate",
        help="check config files: YAML, schema, cross-field rules (and targets, offline)",
        description=(
            "Check loraplan (or Axolotl) config files and report every finding at file:line:col. "
            "Exit 0: no errors; 1: errors found; 2: usage or internal error (a FILE that does not exist is a "
            "usage error)."
        ),
    )
    parser.add_argument("files", nargs="+", metavar="FILE",
                        help="config files (YAML); a folder stands for every *.yaml / *.yml file under it")
    add_format_flag(parser)
    add_strict_flag(parser)
    add_dialect_flag(parser)
    add_arch_flag(parser)
    parser.add_argument(
        "--online",
        action="store_true",
        help="fetch config.json (only) from the hub for a model neither bundled nor in the HF cache, so its "
        "targets are checked (honours HF_ENDPOINT, HF_TOKEN, HF_HUB_OFFLINE); default: offline, deterministic",
    )


def compiler_check() -> Any:
    """`check_loaded` from the compiler when that module exists (it may land later), else None."""
    import importlib
    import importlib.util

    if importlib.util.find_spec(COMPILER_MODULE) is None:
        return None
    return getattr(importlib.import_module(COMPILER_MODULE), "check_loaded", None)


def read_text_quietly(path: str) -> str | None:
    """The file's text for source lines in the report (None when it cannot be read)."""
    from loraplan.schema.safe_read import read_bounded
    from loraplan.schema.yaml_source import MAX_FILE_BYTES

    try:
        raw = read_bounded(path, MAX_FILE_BYTES)
    except OSError:
        return None
    return raw.decode("utf-8-sig", errors="replace")


def internal_error_finding(path: str, exc: BaseException) -> Any:
    """LP551 for a file whose check crashed: no output format may then read as "passed"."""
    from loraplan.schema.diagnostic import Diagnostic

    return Diagnostic(
        "LP551", "error", f"internal error: {type(exc).__name__}: {exc}; this file was not fully checked",
        file=path, line=1, column=1, hint="set LORAPLAN_DEBUG=1 to see the traceback, and please report it",
    )


def run(args: argparse.Namespace) -> int:
    from loraplan.commands.file_args import expand
    from loraplan.output.diagnostics import render
    from loraplan.schema.load import load_file

    fmt = output_format(args.format)
    given = expand(args.files)
    files = given.files
    for folder in given.empty_folders:
        print(f"loraplan: warning: no *.yaml or *.yml file under {folder}", file=sys.stderr)
    if args.arch is not None:
        from loraplan.compiler.arch_argument import arch_argument_problem

        problem = arch_argument_problem(args.arch)
        if problem:
            print(f"loraplan: --arch {args.arch!r} {problem}", file=sys.stderr)
            return EXIT_USAGE
    internal_error = False
    try:
        check = compiler_check()
    except Exception as exc:  # a broken compiler is our bug, not the user's config
        print(f"loraplan: internal error: cannot load the compiler: {type(exc).__name__}: {exc}", file=sys.stderr)
        check, internal_error = None, True

    diagnostics = []
    sources: dict[str, Any] = {}
    for path in files:
        try:
            result = load_file(path, dialect=args.dialect)
            diagnostics.extend(result.diagnostics)
            if check is not None and result.config is not None:
                _plan, found = check(result, arch_override=args.arch, offline_only=True,
                                     network=getattr(args, "online", False))
                diagnostics.extend(found)
        except Exception as exc:
            print(f"loraplan: internal error on {path!r}: {type(exc).__name__}: {exc}", file=sys.stderr)
            internal_error = True
            diagnostics.append(internal_error_finding(path, exc))

    if fmt == "text":  # source lines under the findings, read from the files the user wrote
        sources = {file: read_text_quietly(file) for file in {d.file for d in diagnostics} if file}
    diagnostics = apply_strict(diagnostics, args.strict)
    sys.stdout.write(render(diagnostics, fmt, sources, files=files, execution_ok=not internal_error))
    sys.stdout.flush()
    # A path that does not exist is a usage error (reported above as LP108, located): exit 2.
    return EXIT_USAGE if internal_error or given.missing else exit_code(diagnostics)
