"""Subcommands of the `loraplan` CLI.

Each module here exposes `add_parser(subparsers)` (cheap: registers its flags, imports nothing
heavy) and `run(args) -> int` (does the work; heavy imports happen inside). The helpers below
keep the common flags (`--format`, `--strict`, `--dialect`, `--arch`) and exit codes the same in
every command.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loraplan.schema.diagnostic import Diagnostic

EXIT_OK = 0  # no errors
EXIT_FINDINGS = 1  # errors found (warnings too, with --strict)
EXIT_USAGE = 2  # usage or internal error

DIAGNOSTIC_FORMATS = ("text", "json", "github", "sarif")


def add_format_flag(parser: argparse.ArgumentParser, choices: Sequence[str] = DIAGNOSTIC_FORMATS) -> None:
    parser.add_argument(
        "--format",
        choices=list(choices),
        default=None,
        help=f"output format (default: text, or github when GITHUB_ACTIONS=true); one of {', '.join(choices)}",
    )


def add_strict_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors (exit 1 on any warning)")


def add_dialect_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dialect",
        choices=["auto", "native", "axolotl"],
        default="auto",
        help="config dialect (default: auto, detected from the keys)",
    )


def add_arch_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--arch",
        metavar="NAME_OR_PATH",
        default=None,
        help="architecture to check against instead of base_model: catalog name, hub id, config.json or folder",
    )


def output_format(requested: str | None, default: str = "text") -> str:
    """The format asked for, else `github` inside GitHub Actions, else `default`."""
    if requested:
        return requested
    if os.environ.get("GITHUB_ACTIONS", "").lower() == "true" and "github" in DIAGNOSTIC_FORMATS:
        return "github"
    return default


def apply_strict(diagnostics: Iterable[Diagnostic], strict: bool) -> list[Diagnostic]:
    """With --strict every warning becomes an error; infos stay infos."""
    if not strict:
        return list(diagnostics)
    return [d.with_severity("error") if d.severity == "warning" else d for d in diagnostics]


def exit_code(diagnostics: Iterable[Diagnostic]) -> int:
    return EXIT_FINDINGS if any(d.severity == "error" for d in diagnostics) else EXIT_OK
