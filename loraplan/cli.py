"""The `loraplan` command line: a thin argparse front over loraplan/commands/<name>.py.

Subcommand modules land independently, so only those that exist are registered. Nothing heavy is
imported here: `loraplan validate` must start about as fast as Python with pydantic and PyYAML.
Exit codes: 0 no errors, 1 errors found, 2 usage or internal error.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType

# Module names under loraplan.commands; a command's name on the command line is its module name
# with '-' for '_' (export_peft -> export-peft), as its add_parser registers it.
COMMANDS = ["validate", "plan", "diff", "archs", "schema", "export_peft"]

DESCRIPTION = "Validate, plan and apply LoRA / QLoRA / DoRA adapter configs."


def _load_command(name: str) -> ModuleType | None:
    module_name = f"loraplan.commands.{name}"
    try:
        if importlib.util.find_spec(module_name) is None:
            return None
        return importlib.import_module(module_name)
    except Exception as exc:  # a broken command module must not take the others down
        print(f"loraplan: command '{name}' is unavailable: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser with every available command (or just the module `only`, to start faster)."""
    from loraplan import __version__

    parser = argparse.ArgumentParser(prog="loraplan", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"loraplan {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in [only] if only else COMMANDS:
        module = _load_command(name)
        if module is None or not hasattr(module, "add_parser") or not hasattr(module, "run"):
            continue
        before = set(subparsers.choices)
        module.add_parser(subparsers)
        for added in set(subparsers.choices) - before:
            subparsers.choices[added].set_defaults(_command_run=module.run)
    parser.set_defaults(_command_names=set(subparsers.choices))
    return parser


def _requested_command(argv: Sequence[str]) -> str | None:
    """The command module named by the first argument, when it is one (skips loading the rest)."""
    if not argv or argv[0].startswith("-"):
        return None
    name = argv[0].replace("-", "_")
    return name if name in COMMANDS else None


def _tolerant_streams() -> None:
    """Never crash on a character the terminal's encoding lacks (LANG=C, PYTHONIOENCODING=ascii)."""
    for stream in (sys.stdout, sys.stderr):
        if getattr(stream, "errors", None) == "strict" and hasattr(stream, "reconfigure"):
            with contextlib.suppress(ValueError, OSError):  # a closed or detached stream
                stream.reconfigure(errors="backslashreplace")


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    _tolerant_streams()
    only = _requested_command(argv)
    parser = build_parser(only)
    if only and argv[0] not in parser.get_default("_command_names"):
        parser = build_parser()  # that module registered another name: offer every command
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help / --version (0) and usage errors (2)
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    run = getattr(args, "_command_run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(run(args))
    except KeyboardInterrupt:
        print("loraplan: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (`loraplan ... | head`); stop quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except Exception as exc:
        print(f"loraplan: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        if os.environ.get("LORAPLAN_DEBUG"):
            import traceback

            traceback.print_exc()
        else:
            print("loraplan: set LORAPLAN_DEBUG=1 to see the traceback, and please report it", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
