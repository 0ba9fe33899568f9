"""A Plan as a text table for people: collapsed injections, coverage, totals, memory, findings.

Repeated layers are one row each (`model.layers.0-31.self_attn.{q,k,v,o}_proj  r=16  α=32 ...`,
see plan_collapse.py), so a 405B model's plan fits on a screen. Output is deterministic (same
plan, same text); colour only when asked (the command asks on a TTY without NO_COLOR).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

from loraplan.output.plan_collapse import collapse_names
from loraplan.output.plan_rows import (
    Row,
    fast_path_summary,
    fmt_bytes,
    fmt_int,
    fmt_num,
    glyphs,
    host_parts,
    injection_rows,
    layers_text,
    memory_parts,
    memory_scope,
    num_layers,
    settings_summary,
    totals_parts,
    uniform,
)

WRAP = 100
_BOLD, _RESET = "\033[1m", "\033[0m"


def align(rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset(), indent: str = "  ") -> list[str]:
    """Columns padded to their widest cell, two spaces apart; `right` columns right-aligned."""
    if not rows:
        return []
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [v.rjust(w) if c in right else v.ljust(w) for c, (v, w) in enumerate(zip(r, widths))]
        out.append((indent + "  ".join(cells)).rstrip())
    return out


def _heading(text: str, detail: str, color: bool) -> str:
    head = f"{_BOLD}{text}{_RESET}" if color else text
    return f"{head}  {detail}" if detail else head


def _injection_lines(rows: list[Row], g: dict[str, str], per_row_dropout: bool) -> list[str]:
    cells = []
    for row in rows:
        cell = [
            row.pattern,
            row.kind,
            f"r={row.r}",
            f"{g['alpha']}={fmt_num(row.alpha)}",
            row.shape(g),
        ]
        if per_row_dropout:
            cell.append(f"dropout={fmt_num(row.dropout)}")
        cell += [f"{g['times']}{row.count}", fmt_int(row.params), "; ".join(row.notes)]
        cells.append(cell)
    n = len(cells[0]) if cells else 0
    return align(cells, right=frozenset({n - 3, n - 2}))


def _section_injections(title: str, plan: Any, items: list[Any], what: str, g: dict, color: bool) -> list[str]:
    rows = injection_rows(items, ascii_only=g["arrow"] == "->")
    total = sum(i.params for i in items)
    detail = f"{fmt_int(len(items))} {what} adapted, {fmt_int(total)} trainable parameters"
    shared = settings_summary(plan, items)
    if shared:
        detail += "; " + ", ".join(shared)
    per_row_dropout = uniform([i.dropout for i in items]) is None
    lines = [_heading(title, detail, color), *_injection_lines(rows, g, per_row_dropout)]
    path = fast_path_summary(items) if items and items[0].kind != "parameter" else None
    return [*lines, f"  {path}"] if path else lines


def _section_coverage(plan: Any, color: bool) -> list[str]:
    layers = num_layers(plan)
    detail = f"{layers} decoder layers" if layers else "no decoder stack"
    cells = [["PATTERN", "FROM", "MODULES", "LAYERS"]]
    for c in plan.coverage:
        cells.append([_clip(c.pattern), c.source, fmt_int(c.modules),
                      layers_text(c.layers_covered, c.layers_total, c.layers)])
    if len(cells) == 1:
        return [_heading("Coverage", detail, color), "  (no target patterns)"]
    return [_heading("Coverage", detail, color), *align(cells, right=frozenset({2}))]


PATTERN_WIDTH = 56  # a long regex target must not push the table past a terminal's width


def _clip(text: str, width: int = PATTERN_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _section_totals(plan: Any, color: bool) -> list[str]:
    t = plan.totals
    cells = [
        ["trainable", fmt_int(t.trainable_params), f"{t.trainable_percent:.4f}% of the total"],
        ["total", fmt_int(t.total_params), ""],
        *([f"  {name}", fmt_int(n), ""] for name, n in totals_parts(t)),
    ]
    # The parts explain the trainable count: list them right under it.
    cells = [cells[0], *cells[2:], cells[1]]
    return [_heading("Totals", "parameters, as PEFT counts them", color), *align(cells, right=frozenset({1}))]


def _section_memory(plan: Any, color: bool) -> list[str]:
    m = plan.memory
    if m is None:
        return [_heading("Memory estimate", "not available", color)]
    cells = [[name, fmt_bytes(n)] for name, n in memory_parts(m)]
    cells.append(["total", fmt_bytes(m.total_bytes)])
    if m.peak_allocated_bytes:
        cells.append(["PyTorch peak", fmt_bytes(m.peak_allocated_bytes)])  # total less context, fragmentation
    cells += [[name, fmt_bytes(n)] for name, n in host_parts(m)]
    lines = [_heading("Memory estimate", f"{fmt_bytes(m.total_bytes)} {memory_scope(m)}", color)]
    lines += align(cells, right=frozenset({1}))
    if m.assumptions:
        lines.append("  assumptions:")
        for a in m.assumptions:
            lines += textwrap.wrap(a, WRAP, initial_indent="  - ", subsequent_indent="    ", break_on_hyphens=False)
    return lines


def _header(plan: Any, title: str | None, color: bool) -> list[str]:
    layers = num_layers(plan)
    arch = f"{plan.architecture} ({plan.model_class}" + (f", {layers} layers)" if layers else ")")
    from loraplan.output.arch_source import source_text, stored_text

    cells = [
        ["architecture", arch],
        ["resolved from", source_text(getattr(plan, "architecture_source", None))],
        ["arch fingerprint", plan.architecture_fingerprint],
        ["plan fingerprint", plan.fingerprint],
    ]
    if getattr(plan, "module_tree", None):
        cells.insert(2, ["module tree", plan.module_tree])
    stored = stored_text(getattr(plan, "architecture_source", None))
    if stored:
        cells.insert(2, ["weights", stored])
    lines = []
    for line in align(cells):  # long source lines (alias evidence) wrap under their value
        indent = " " * (len(line) - len(line.lstrip()) + max(len(c[0]) for c in cells) + 2)
        lines += textwrap.wrap(line, WRAP, subsequent_indent=indent, break_on_hyphens=False,
                               break_long_words=False) or [line]
    return [_heading("Plan", title or "", color), *lines]


def render_table(
    plan: Any,
    *,
    title: str | None = None,
    sources: Mapping[str, Any] | None = None,
    files: Sequence[str] | None = None,
    color: bool = False,
    ascii_only: bool = False,
) -> str:
    """The whole plan as text. `title`: usually the config's path; `sources`/`files`: as for
    loraplan.output.diagnostics.render (source lines under the findings, the summary's file count)."""
    from loraplan.output.diagnostics import render

    g = glyphs(ascii_only)
    checked = list(files) if files is not None else ([title] if title else [])
    findings = render(plan.diagnostics, "text", sources or {}, files=checked, color=color).rstrip("\n")
    if not plan.injections and not plan.parameters and any(d.severity == "error" for d in plan.diagnostics):
        # Nothing adapted because of errors: the errors, not forty lines of an empty plan.
        return "\n".join(_header(plan, title, color)[:2]) + "\n\n" + findings + "\n"
    sections = [_header(plan, title, color)]
    sections.append(_section_injections("Injections", plan, plan.injections, "modules", g, color))
    if plan.parameters:
        sections.append(
            _section_injections("Parameters (target_parameters)", plan, plan.parameters, "parameters", g, color)
        )
    if plan.modules_to_save:
        names = collapse_names(list(plan.modules_to_save))
        detail = f"{len(plan.modules_to_save)} modules, trained and saved in full"
        sections.append([_heading("modules_to_save", detail, color), *(f"  {n}" for n in names)])
    sections.append(_section_coverage(plan, color))
    sections.append(_section_totals(plan, color))
    sections.append(_section_memory(plan, color))
    sections.append([_heading("Diagnostics", "", color), *findings.split("\n")])
    return "\n\n".join("\n".join(s) for s in sections) + "\n"
