"""Two plans compared: injections added, removed or changed (collapsed like the table), and the
totals and memory deltas. `loraplan diff` renders it as text or JSON.

Injections are matched by module name. A change is any difference in what PEFT creates or how
it scales (kind, in/out, r, alpha, scaling, dropout, DoRA, init, params); which target entry
matched a module, or which rank_pattern key set its rank, is bookkeeping and not a change.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from loraplan.output.plan_collapse import collapse, collapse_names
from loraplan.output.plan_rows import (
    Row,
    fmt_bytes,
    fmt_int,
    fmt_num,
    fmt_signed_bytes,
    fmt_signed_int,
    glyphs,
    injection_rows,
    memory_parts,
)
from loraplan.output.plan_table import align

COMPARED = (
    "kind",
    "in_features",
    "out_features",
    "r",
    "lora_alpha",
    "scaling",
    "dropout",
    "use_dora",
    "init",
    "params",
)
TOTALS = (
    "trainable_params",
    "total_params",
    "trainable_percent",
    "adapter_params",
    "modules_to_save_params",
    "bias_params",
)
_STYLE = {"+": "\033[32m", "-": "\033[31m", "~": "\033[33m", "bold": "\033[1m"}
_RESET = "\033[0m"


@dataclass(frozen=True)
class Changed:
    """Modules present in both plans whose settings differ the same way."""

    pattern: str
    names: tuple[str, ...]
    changes: tuple[tuple[str, Any, Any], ...]  # (field, in a, in b)


@dataclass
class SetDiff:
    added: list[Row] = field(default_factory=list)
    removed: list[Row] = field(default_factory=list)
    changed: list[Changed] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)


@dataclass
class PlanDiff:
    a: Any
    b: Any
    a_label: str
    b_label: str
    injections: SetDiff
    parameters: SetDiff
    save_added: list[str]
    save_removed: list[str]
    totals: list[tuple[str, Any, Any]]  # (field, a, b) for fields that differ
    memory: list[tuple[str, int | None, int | None]]  # (component, a, b) for components that differ

    @property
    def identical(self) -> bool:
        return (
            self.a.architecture_fingerprint == self.b.architecture_fingerprint
            and self.injections.empty
            and self.parameters.empty
            and not (self.save_added or self.save_removed or self.totals or self.memory)
        )


def _compare_sets(a: list[Any], b: list[Any]) -> SetDiff:
    in_a = {i.module: i for i in a}
    in_b = {i.module: i for i in b}
    out = SetDiff()
    out.added = injection_rows([i for i in b if i.module not in in_a])
    out.removed = injection_rows([i for i in a if i.module not in in_b])
    changed = []
    for i in a:
        j = in_b.get(i.module)
        if j is None:
            continue
        delta = tuple((f, getattr(i, f), getattr(j, f)) for f in COMPARED if getattr(i, f) != getattr(j, f))
        if delta:
            changed.append((i.module, delta))
    for group in collapse(changed, lambda c: c[0], lambda c: repr(c[1])):
        out.changed.append(Changed(group.pattern, tuple(c[0] for c in group.items), group.first[1]))
    return out


def _memory_table(plan: Any) -> dict[str, int]:
    m = plan.memory
    if m is None:
        return {}
    parts = {name.replace(" ", "_"): n for name, n in memory_parts(m)}
    parts["total"] = m.total_bytes
    return parts


def compare(a: Any, b: Any, a_label: str = "a", b_label: str = "b") -> PlanDiff:
    mem_a, mem_b = _memory_table(a), _memory_table(b)
    names = list(dict.fromkeys([*mem_a, *mem_b]))
    return PlanDiff(
        a=a,
        b=b,
        a_label=a_label,
        b_label=b_label,
        injections=_compare_sets(a.injections, b.injections),
        parameters=_compare_sets(a.parameters, b.parameters),
        save_added=[m for m in b.modules_to_save if m not in set(a.modules_to_save)],
        save_removed=[m for m in a.modules_to_save if m not in set(b.modules_to_save)],
        totals=[
            (f, getattr(a.totals, f), getattr(b.totals, f))
            for f in TOTALS
            if getattr(a.totals, f) != getattr(b.totals, f)
        ],
        memory=[(n, mem_a.get(n), mem_b.get(n)) for n in names if mem_a.get(n) != mem_b.get(n)],
    )


# --- text -------------------------------------------------------------------------------------


def _paint(text: str, style: str, color: bool) -> str:
    return f"{_STYLE[style]}{text}{_RESET}" if color else text


def _value(name: str, v: Any) -> str:
    if name == "params":
        return fmt_int(v)
    return fmt_num(v) if isinstance(v, (int, float)) else str(v)


_LABEL = {"lora_alpha": "alpha", "in_features": "in", "out_features": "out", "use_dora": "DoRA"}


def _set_lines(title: str, d: SetDiff, g: dict[str, str], color: bool) -> list[str]:
    if d.empty:
        return []
    n_add = sum(r.count for r in d.added)
    n_rm = sum(r.count for r in d.removed)
    n_ch = sum(len(c.names) for c in d.changed)
    head = f"{_paint(title, 'bold', color)}  {n_add} added, {n_rm} removed, {n_ch} changed"
    cells: list[list[str]] = []
    signs: list[str] = []
    for sign, rows in (("+", d.added), ("-", d.removed)):
        for r in rows:
            cells.append(
                [
                    f"{sign} {r.pattern}",
                    r.kind,
                    f"r={r.r}",
                    f"{g['alpha']}={fmt_num(r.alpha)}",
                    r.shape(g),
                    f"{g['times']}{r.count}",
                    fmt_int(r.params),
                ]
            )
            signs.append(sign)
    lines = align(cells, right=frozenset({5, 6})) if cells else []
    lines = [_paint(line, s, color) for line, s in zip(lines, signs)]
    changed = [
        [
            f"~ {c.pattern}",
            ", ".join(
                f"{_LABEL.get(f, f)} {_value(f, x)}{g['arrow']}{_value(f, y)}" + (" each" if f == "params" else "")
                for f, x, y in c.changes
            ),
            f"{g['times']}{len(c.names)}",
        ]
        for c in d.changed
    ]
    lines += [_paint(line, "~", color) for line in align(changed, right=frozenset({2}))]
    return [head, *lines]


def render_text(d: PlanDiff, *, color: bool = False, ascii_only: bool = False) -> str:
    g = glyphs(ascii_only)
    a, b = d.a, d.b
    head = [
        _paint(f"--- {d.a_label}  {a.architecture}  {a.fingerprint}", "-", color),
        _paint(f"+++ {d.b_label}  {b.architecture}  {b.fingerprint}", "+", color),
    ]
    if d.identical:
        return "\n".join([*head, "", "The plans are identical."]) + "\n"
    sections = [head]
    if a.architecture_fingerprint != b.architecture_fingerprint:
        sections.append(
            [
                _paint("Architecture", "bold", color),
                f"  {a.architecture} ({a.model_class}, {a.architecture_fingerprint}) {g['arrow']} "
                f"{b.architecture} ({b.model_class}, {b.architecture_fingerprint})",
            ]
        )
    for title, s in (("Injections", d.injections), ("Parameters (target_parameters)", d.parameters)):
        lines = _set_lines(title, s, g, color)
        if lines:
            sections.append(lines)
    if d.save_added or d.save_removed:
        lines = [_paint("modules_to_save", "bold", color)]
        lines += [_paint(f"  + {n}", "+", color) for n in collapse_names(d.save_added)]
        lines += [_paint(f"  - {n}", "-", color) for n in collapse_names(d.save_removed)]
        sections.append(lines)
    if d.totals:
        cells = []
        for f, x, y in d.totals:
            if f == "trainable_percent":
                cells.append([f, f"{x:.4f}%", g["arrow"], f"{y:.4f}%", f"({y - x:+.4f} points)"])
            else:
                cells.append([f, fmt_int(x), g["arrow"], fmt_int(y), f"({fmt_signed_int(y - x)})"])
        sections.append([_paint("Totals", "bold", color), *align(cells, right=frozenset({1, 3}))])
    if d.memory:
        cells = []
        for name, x, y in d.memory:
            delta = f"({fmt_signed_bytes((y or 0) - (x or 0))})" if x is not None and y is not None else ""
            cells.append(
                [
                    name.replace("_", " "),
                    "-" if x is None else fmt_bytes(x),
                    g["arrow"],
                    "-" if y is None else fmt_bytes(y),
                    delta,
                ]
            )
        sections.append([_paint("Memory estimate", "bold", color), *align(cells, right=frozenset({1, 3}))])
    return "\n\n".join("\n".join(s) for s in sections) + "\n"


# --- json -------------------------------------------------------------------------------------


def _row_json(r: Row) -> dict[str, Any]:
    return {
        "modules": r.pattern,
        "names": list(r.names),
        "kind": r.kind,
        "r": r.r,
        "lora_alpha": r.alpha,
        "in_features": r.in_features,
        "out_features": r.out_features,
        "count": r.count,
        "params": r.params,
    }


def _set_json(s: SetDiff) -> dict[str, Any]:
    return {
        "added": [_row_json(r) for r in s.added],
        "removed": [_row_json(r) for r in s.removed],
        "changed": [
            {
                "modules": c.pattern,
                "names": list(c.names),
                "count": len(c.names),
                "changes": {f: {"a": x, "b": y} for f, x, y in c.changes},
            }
            for c in s.changed
        ],
    }


def _side(label: str, plan: Any) -> dict[str, Any]:
    return {
        "source": label,
        "architecture": plan.architecture,
        "model_class": plan.model_class,
        "architecture_fingerprint": plan.architecture_fingerprint,
        "fingerprint": plan.fingerprint,
    }


def render_json(d: PlanDiff) -> str:
    payload = {
        "identical": d.identical,
        "a": _side(d.a_label, d.a),
        "b": _side(d.b_label, d.b),
        "injections": _set_json(d.injections),
        "parameters": _set_json(d.parameters),
        "modules_to_save": {"added": d.save_added, "removed": d.save_removed},
        "totals": {f: {"a": x, "b": y, "delta": y - x} for f, x, y in d.totals},
        "memory": {
            n: {"a": x, "b": y, "delta": (y - x) if x is not None and y is not None else None} for n, x, y in d.memory
        },
    }
    from loraplan.compiler.plan import finite

    return json.dumps(finite(payload), indent=2, ensure_ascii=False, default=_default, allow_nan=False) + "\n"


def _default(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
