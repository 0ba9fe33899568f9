"""`loraplan diff A B`: what changes between two plans (or configs, compiled on the fly).

Each argument is a plan JSON (`loraplan plan --format json`) or a YAML config. Prints the
injections added, removed and changed (repeated layers collapsed, as in the table), and the
totals and memory deltas. Exit 0: identical; 1: they differ (like diff); 2: an argument could
not be read or compiled (its findings go to stderr).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from loraplan.commands import EXIT_FINDINGS, EXIT_OK, EXIT_USAGE, add_arch_flag, add_dialect_flag

MAX_PLAN_BYTES = 256 * 1024 * 1024  # a 405B model's plan is ~30 MB


class _Unusable(Exception):
    """An argument that gives no plan; the message (and any findings) were already reported."""


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "diff",
        help="compare two plans or configs: injections added/removed/changed, totals and memory",
        description=(
            "Compare two plans. Each argument is a plan JSON file (from `loraplan plan --format json`) or a "
            "YAML config, compiled on the fly. Exit 0: identical; 1: different; 2: an argument has errors."
        ),
    )
    parser.add_argument("a", metavar="A", help="plan JSON or config YAML (the old side)")
    parser.add_argument("b", metavar="B", help="plan JSON or config YAML (the new side)")
    parser.add_argument("--format", choices=("text", "json"), default="text", help="output format (default: text)")
    add_arch_flag(parser)
    add_dialect_flag(parser)


def _looks_like_plan(path: str) -> dict | None:
    """The parsed JSON object when `path` holds a plan (JSON with `injections`), else None."""
    from loraplan.schema.safe_read import read_bounded

    try:
        raw = read_bounded(path, MAX_PLAN_BYTES)
    except OSError as exc:
        if path.lower().endswith(".json"):
            raise _report(f"cannot read {path}: {exc.strerror or exc}") from None
        return None  # not a plan: the config loader reports it, located
    if not path.lower().endswith(".json") and raw.lstrip()[:1] != b"{":
        return None
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _report(f"{path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise _report(f"{path} is not a plan: JSON nested too deeply") from None
    if not isinstance(data, dict) or "injections" not in data:
        raise _report(
            f"{path} is JSON but not a loraplan plan (no `injections`); write one with "
            "`loraplan plan CONFIG --format json -o FILE`"
        )
    return data


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON number")


def _report(message: str) -> _Unusable:
    print(f"loraplan: {message}", file=sys.stderr)
    return _Unusable(message)


def load_plan(path: str, args: argparse.Namespace) -> Any:
    """A Plan from a plan JSON or a config (compiled); _Unusable when neither works."""
    from loraplan.compiler.plan import Plan

    data = _looks_like_plan(path)
    if data is not None:
        try:
            return Plan.from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
            raise _report(f"{path} is not a plan this loraplan can read: {type(exc).__name__}: {exc}") from None
    from loraplan.commands.plan import compile_file
    from loraplan.output.diagnostics import render, use_color

    plan, diagnostics, _ = compile_file(path, args.dialect, args.arch, strict=False)
    errors = [d for d in diagnostics if d.severity == "error"]
    if plan is None or errors:
        sources = {path: _source_text(path)}
        sys.stderr.write(render(errors or diagnostics, "text", sources, files=[path], color=use_color(sys.stderr)))
        raise _Unusable(path)
    return plan


def _source_text(path: str) -> str | None:
    from loraplan.commands.validate import read_text_quietly

    return read_text_quietly(path)


def run(args: argparse.Namespace) -> int:
    from loraplan.commands.plan import ascii_stdout
    from loraplan.output.diagnostics import use_color
    from loraplan.output.plan_diff import compare, render_json, render_text

    try:
        a = load_plan(args.a, args)
        b = load_plan(args.b, args)
    except _Unusable:
        return EXIT_USAGE
    try:
        from loraplan.output.diagnostics import printable

        d = compare(a, b, printable(args.a), printable(args.b))  # labels are file names: no raw controls
        if args.format == "json":
            text = render_json(d)
        else:
            text = render_text(d, color=use_color(sys.stdout), ascii_only=ascii_stdout())
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, RecursionError) as exc:
        # Plan.from_dict checks the layout, not every value: a hand-edited plan fails here.
        _report(f"{args.a} or {args.b} is not a plan this loraplan can compare: {type(exc).__name__}: {exc}")
        return EXIT_USAGE
    sys.stdout.write(text)
    sys.stdout.flush()
    return EXIT_OK if d.identical else EXIT_FINDINGS
