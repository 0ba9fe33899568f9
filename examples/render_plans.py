"""Render the example plans under examples/plans/ (a table .txt and a markdown .md per config).

    python examples/render_plans.py          # rewrite them
    python examples/render_plans.py --check  # exit 1 when one is out of date (a test runs this)

Each file is exactly what `loraplan plan examples/<name>.yaml` prints (`--format markdown` for
.md), run from the repository root with colour off, so a change in the compiler or the
renderers shows up in review as a change in these files.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLANS_DIR = ROOT / "examples" / "plans"

# One of each kind of model: dense, mixture of experts, hybrid (linear + full attention).
EXAMPLES = ("llama3-8b-qlora", "mixtral-8x7b-qlora", "qwen3.5-9b-hybrid-lora")
FORMATS = {".txt": "table", ".md": "markdown"}


def render_all() -> dict[Path, str]:
    """{output path: text} for every example and format, rendered from the repository root."""
    from loraplan.commands.plan import compile_file, document

    out: dict[Path, str] = {}
    cwd = os.getcwd()
    os.chdir(ROOT)  # paths in the output read `examples/<name>.yaml` wherever this runs from
    try:
        for name in EXAMPLES:
            config = f"examples/{name}.yaml"
            plan, diagnostics, _ = compile_file(config, "auto", None, strict=False)
            if plan is None:
                raise SystemExit(f"{config}: no plan was made; run `loraplan plan {config}`")
            for suffix, fmt in FORMATS.items():
                out[PLANS_DIR / f"{name}{suffix}"] = document(
                    plan, diagnostics, config, fmt, color=False, ascii_only=False
                )
    finally:
        os.chdir(cwd)
    return out


def stale(rendered: dict[Path, str]) -> list[Path]:
    """The outputs whose file is missing or differs from what the code renders now."""
    return [p for p, text in rendered.items() if not p.is_file() or p.read_text(encoding="utf-8") != text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the files are up to date")
    args = parser.parse_args(argv)
    rendered = render_all()
    if args.check:
        old = stale(rendered)
        for p in old:
            print(f"out of date: {p.relative_to(ROOT)} (run python examples/render_plans.py)", file=sys.stderr)
        return 1 if old else 0
    PLANS_DIR.mkdir(parents=True, exist_ok=True)
    for p, text in rendered.items():
        p.write_text(text, encoding="utf-8", newline="\n")
        print(f"wrote {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
