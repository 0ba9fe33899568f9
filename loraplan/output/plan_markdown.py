"""A Plan as GitHub-flavoured markdown: for pull-request comments, job summaries and docs.

Same rows as the text table (collapsed layers, see plan_rows.py) in markdown tables; the
findings are the text rendering of loraplan.output.diagnostics in a code block, so they read the
same as on a terminal. Deterministic, no colour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from loraplan.output.plan_collapse import collapse_names
from loraplan.output.plan_rows import (
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


def cell(text: str) -> str:
    """Text safe inside a table cell: `|` escaped (GFM honours `\\|` inside code spans too)."""
    return text.replace("|", "\\|").replace("\n", " ")


def code(text: str) -> str:
    return f"`{cell(text)}`"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset()) -> list[str]:
    rule = ["---:" if i in right else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _injections(title: str, plan: Any, items: list[Any], what: str) -> list[str]:
    g = glyphs()
    rows = injection_rows(items)
    total = sum(i.params for i in items)
    summary = f"{fmt_int(len(items))} {what} adapted, {fmt_int(total)} trainable parameters"
    shared = settings_summary(plan, items)
    if shared:
        summary += "; " + ", ".join(shared)
    lines = [f"## {title}", "", summary + "."]
    path = fast_path_summary(items) if items and items[0].kind != "parameter" else None
    if path:
        lines += ["", path[0].upper() + path[1:] + "."]
    if not rows:
        return lines
    per_row_dropout = uniform([i.dropout for i in items]) is None
    notes = any(r.notes for r in rows)
    headers = ["modules", "kind", "r", g["alpha"], f"in{g['arrow']}out"]
    headers += ["dropout"] * per_row_dropout + ["count", "params"] + ["notes"] * notes
    body = []
    for r in rows:
        row = [code(r.pattern), r.kind, str(r.r), fmt_num(r.alpha), r.shape(g)]
        row += [fmt_num(r.dropout)] * per_row_dropout
        row += [fmt_int(r.count), fmt_int(r.params)] + [cell("; ".join(r.notes))] * notes
        body.append(row)
    count_col = headers.index("count")
    return [*lines, "", *table(headers, body, right=frozenset({2, 3, count_col, count_col + 1}))]


def _coverage(plan: Any) -> list[str]:
    layers = num_layers(plan)
    lines = ["## Coverage", "", (f"{layers} decoder layers." if layers else "No decoder stack.")]
    if not plan.coverage:
        return [*lines, "", "No target patterns."]
    body = [
        [code(c.pattern), c.source, fmt_int(c.modules), layers_text(c.layers_covered, c.layers_total, c.layers)]
        for c in plan.coverage
    ]
    return [*lines, "", *table(["pattern", "from", "modules", "layers"], body, right=frozenset({2}))]


def _totals(plan: Any) -> list[str]:
    t = plan.totals
    body = [["trainable", fmt_int(t.trainable_params), f"{t.trainable_percent:.4f}%"]]
    body += [[f"&nbsp;&nbsp;{name}", fmt_int(n), ""] for name, n in totals_parts(t)]
    body.append(["total", fmt_int(t.total_params), ""])
    return ["## Totals", "", *table(["parameters", "count", "share"], body, right=frozenset({1, 2}))]


def _memory(plan: Any) -> list[str]:
    m = plan.memory
    if m is None:
        return ["## Memory estimate", "", "Not available."]
    body = [[name, fmt_bytes(n)] for name, n in memory_parts(m)]
    body.append(["**total**", f"**{fmt_bytes(m.total_bytes)}**"])
    if m.peak_allocated_bytes:
        body.append(["PyTorch peak (`max_memory_allocated`: total less context and fragmentation)",
                     fmt_bytes(m.peak_allocated_bytes)])
    body += [[name, fmt_bytes(n)] for name, n in host_parts(m)]
    lines = ["## Memory estimate", "", f"{fmt_bytes(m.total_bytes)} {memory_scope(m)}.", ""]
    lines += table(["component", "bytes"], body, right=frozenset({1}))
    if m.assumptions:
        lines += ["", "Assumptions:", "", *(f"- {a}" for a in m.assumptions)]
    return lines


def _source_rows(plan: Any) -> list[list[str]]:
    from loraplan.output.arch_source import source_text, stored_text

    origin = getattr(plan, "architecture_source", None)
    rows = [["resolved from", source_text(origin).replace("|", "\\|")]]
    stored = stored_text(origin)
    if stored:
        rows.append(["weights", stored.replace("|", "\\|")])
    return rows


def render_markdown(
    plan: Any,
    *,
    title: str | None = None,
    sources: Mapping[str, Any] | None = None,
    files: Sequence[str] | None = None,
) -> str:
    """The whole plan as markdown; arguments as for plan_table.render_table."""
    from loraplan.output.diagnostics import render

    layers = num_layers(plan)
    heading = f"# Plan: {code(title)}" if title else "# Plan"
    arch = f"{code(plan.architecture)} ({code(plan.model_class)}" + (f", {layers} layers)" if layers else ")")
    sections = [
        [
            heading,
            "",
            *table(
                ["", ""],
                [
                    ["architecture", arch],
                    *_source_rows(plan),
                    *([["module tree", plan.module_tree]] if getattr(plan, "module_tree", None) else []),
                    ["architecture fingerprint", code(plan.architecture_fingerprint)],
                    ["plan fingerprint", code(plan.fingerprint)],
                ],
            ),
        ],
        _injections("Injections", plan, plan.injections, "modules"),
    ]
    if plan.parameters:
        sections.append(_injections("Parameters (target_parameters)", plan, plan.parameters, "parameters"))
    if plan.modules_to_save:
        names = collapse_names(list(plan.modules_to_save))
        sections.append(
            [
                "## modules_to_save",
                "",
                f"{len(plan.modules_to_save)} modules, trained and saved in full.",
                "",
                *(f"- {code(n)}" for n in names),
            ]
        )
    sections += [_coverage(plan), _totals(plan), _memory(plan)]
    checked = list(files) if files is not None else ([title] if title else [])
    findings = render(plan.diagnostics, "text", sources or {}, files=checked, color=False).rstrip("\n")
    sections.append(["## Diagnostics", "", "```text", findings.replace("```", "'''"), "```"])
    return "\n\n".join("\n".join(s) for s in sections) + "\n"
