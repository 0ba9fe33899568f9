"""`loraplan archs [FILTER]`: list the bundled architecture catalog (no torch needed).

Each row is one published config.json with the class `from_pretrained` builds from it; FILTER
keeps rows whose hub id, aliases, model type or class contain it (case-insensitive).
"""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "archs",
        help="list the bundled architecture catalog",
        description="List the architectures bundled with loraplan (usable offline as base_model or --arch).",
    )
    parser.add_argument("filter", nargs="?", default=None, help="only entries whose names, type or class contain it")
    parser.add_argument("--format", choices=("table", "json"), default="table", help="output format (default: table)")


def human(n: int) -> str:
    """Parameter count as people write it, three significant digits: 8.03B, 494M, 12.3K."""
    for size, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")):
        if n >= size * 0.9995:
            value = n / size
            return f"{value:.3g}{suffix}" if value < 999.5 else f"{value:.0f}{suffix}"
    return str(n)


def _matches(entry: Any, needle: str | None) -> bool:
    if not needle:
        return True
    needle = needle.lower()
    fields = (entry.name, *entry.aliases, entry.model_type, entry.model_class, entry.config_file)
    return any(needle in f.lower() for f in fields)


def _table(rows: list[dict[str, Any]]) -> str:
    headers = ("NAME", "MODEL TYPE", "CLASS", "LAYERS", "PARAMS", "ALIASES")
    cells = [
        (
            r["name"],
            r["model_type"],
            r["model_class"],
            str(r["num_layers"]),
            human(r["total_params"]),
            str(len(r["aliases"])),
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(headers)]
    right = {3, 4, 5}

    def line(values: tuple[str, ...]) -> str:
        return "  ".join(
            v.rjust(w) if i in right else v.ljust(w) for i, (v, w) in enumerate(zip(values, widths))
        ).rstrip()

    return "\n".join([line(headers), *(line(c) for c in cells)])


def run(args: argparse.Namespace) -> int:
    from loraplan.compiler.catalog import list_catalog

    rows = [
        {
            "name": e.name,
            "aliases": list(e.aliases),
            "model_type": e.model_type,
            "model_class": e.model_class,
            "num_layers": e.num_layers,
            "total_params": e.total_params,
            "num_modules": e.num_modules,
            "config_file": e.config_file,
            "transformers_version": e.transformers_version,
            **({"variant": e.variant, "base_config": e.base_config} if e.variant else {}),
        }
        for e in list_catalog()
        if _matches(e, args.filter)
    ]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no catalog architecture matches '{args.filter}'")
        return 1
    print(_table(rows))
    print(f"\n{len(rows)} architecture(s); use a NAME or an alias as base_model, architecture: or --arch.")
    return 0
