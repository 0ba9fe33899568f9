"""What the plan renderers share: collapsed injection rows and number formats.

The table, the markdown and `diff` show the same rows, built here once: injections grouped by
their settings (kind, in/out, r, alpha, scaling, dropout, DoRA, init, params, where r and alpha
came from) and collapsed by name (see plan_collapse.py). Pure data and the standard library.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from loraplan.output.plan_collapse import collapse, index_runs

# Glyphs for terminals that can print them, and their ASCII stand-ins.
UNICODE = {"arrow": "→", "alpha": "α", "times": "×"}
ASCII = {"arrow": "->", "alpha": "alpha", "times": "x"}


def glyphs(ascii_only: bool = False) -> dict[str, str]:
    return ASCII if ascii_only else UNICODE


def settings_key(i: Any) -> tuple:
    """Everything that makes two injections the same kind of row, except their names."""
    return (
        i.kind,
        i.in_features,
        i.out_features,
        i.r,
        i.lora_alpha,
        i.scaling,
        i.dropout,
        bool(i.use_dora),
        repr(i.init),
        i.params,
        i.rank_pattern,
        i.alpha_pattern,
        i.fast_path,
        i.fallback_reason,
    )


@dataclass(frozen=True)
class Row:
    """One collapsed row of injections (or of parameters) and its settings."""

    pattern: str
    kind: str
    r: int
    alpha: float
    scaling: float
    dropout: float
    in_features: int
    out_features: int
    experts: int  # > 1 for a 3-D parameter: one adapter pair per expert
    count: int
    params_each: int
    params: int
    notes: tuple[str, ...]
    names: tuple[str, ...]

    def shape(self, g: dict[str, str]) -> str:
        core = f"{self.in_features}{g['arrow']}{self.out_features}"
        return f"{self.experts}{g['times']}({core})" if self.experts > 1 else core


def _experts(i: Any) -> int:
    """Experts of a parameter adapter: PEFT gives each expert its own r-wide A and B slice."""
    if i.kind != "parameter":
        return 1
    per = i.r * (i.in_features + i.out_features)
    return max(1, i.params // per) if per else 1


def _notes(i: Any, g: dict[str, str]) -> tuple[str, ...]:
    notes = []
    if i.rank_pattern is not None:
        notes.append(f"r from rank_pattern `{i.rank_pattern}`")  # as written: repr would double backslashes
    if i.alpha_pattern is not None:
        notes.append(f"{g['alpha']} from alpha_pattern `{i.alpha_pattern}`")
    return tuple(notes)  # the training path (fused or PEFT's layer) is summed up under the rows


def injection_rows(injections: Sequence[Any], ascii_only: bool = False) -> list[Row]:
    g = glyphs(ascii_only)
    rows = []
    for group in collapse(list(injections), lambda i: i.module, settings_key):
        i = group.first
        kind = f"{i.kind}+DoRA" if i.use_dora else i.kind
        rows.append(
            Row(
                pattern=group.pattern,
                kind=kind,
                r=i.r,
                alpha=i.lora_alpha,
                scaling=i.scaling,
                dropout=i.dropout,
                in_features=i.in_features,
                out_features=i.out_features,
                experts=_experts(i),
                count=group.count,
                params_each=i.params,
                params=sum(m.params for m in group.items),
                notes=_notes(i, g),
                names=tuple(m.module for m in group.items),
            )
        )
    return rows


def uniform(values: Sequence[Any]) -> Any | None:
    """The one value all items share, else None."""
    distinct = set(values)
    return next(iter(distinct)) if len(distinct) == 1 else None


def fmt_int(n: int) -> str:
    return f"{n:,}"


def fmt_num(x: float) -> str:
    """16 rather than 16.0; 0.05 as written; no float noise."""
    if isinstance(x, bool):
        return str(x).lower()
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.6g}"


def fmt_bytes(n: int) -> str:
    """Binary units, three significant digits or so: 5.31 GiB, 160.0 MiB, 512 B."""
    size = float(n)
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(size) >= scale:
            value = size / scale
            return f"{value:.2f} {unit}"
    return f"{n} B"


def fmt_signed_bytes(n: int) -> str:
    return ("+" if n > 0 else "-" if n < 0 else "±") + fmt_bytes(abs(n))


def fmt_signed_int(n: int) -> str:
    return ("+" if n > 0 else "-" if n < 0 else "±") + fmt_int(abs(n))


def layers_text(covered: int, total: int, layers: Sequence[int]) -> str:
    """`32/32`, `8/32 (3,7,11,...)` when partial, `-` when the model has no decoder stack."""
    if not total:
        return "-"
    text = f"{covered}/{total}"
    if 0 < covered < total and layers:
        text += f" ({index_runs(layers)})"
    return text


def num_layers(plan: Any) -> int:
    return max((c.layers_total for c in plan.coverage), default=0)


def memory_parts(memory: Any) -> list[tuple[str, int]]:
    """(component, bytes) in the estimate's own order, with a fallback to its summary fields."""
    if memory.breakdown:
        return [(k.replace("_", " "), int(v)) for k, v in memory.breakdown.items()]
    return [
        ("weights", memory.weights_bytes),
        ("adapters", memory.adapter_bytes),
        ("gradients", memory.gradient_bytes),
        ("optimizer", memory.optimizer_bytes),
        ("activations", memory.activation_bytes),
        ("overhead", memory.overhead_bytes),
    ]


def memory_scope(memory: Any) -> str:
    """What the total is for: one device, or each rank of a sharded run (with its host share)."""
    if getattr(memory, "scope", "one device") != "per rank":
        return "for one training step on one device"
    text = f"per rank for one training step, {memory.world_size} ranks ({memory.engine})"
    if memory.host_bytes:
        text += f", plus {fmt_bytes(memory.host_bytes)} of host memory per rank"
    return text


def host_parts(memory: Any) -> list[tuple[str, int]]:
    """(component, bytes) offloaded to host memory per rank."""
    return [(f"host: {k}", int(v)) for k, v in (getattr(memory, "host_breakdown", None) or {}).items()]


def totals_parts(totals: Any) -> list[tuple[str, int]]:
    """Where the trainable parameters come from (only the parts that are not zero, adapters always)."""
    parts = [("adapters", totals.adapter_params)]
    if totals.modules_to_save_params:
        parts.append(("modules_to_save", totals.modules_to_save_params))
    if totals.bias_params:
        parts.append(("bias", totals.bias_params))
    return parts


def settings_summary(plan: Any, items: Sequence[Any]) -> list[str]:
    """Settings every row shares, said once above the rows: dropout, init, rsLoRA, bias."""
    out = []
    dropout = uniform([i.dropout for i in items])
    if dropout is not None:
        out.append(f"lora_dropout {fmt_num(dropout)}")
    lora = plan.config.get("lora", {}) if isinstance(plan.config, dict) else {}
    init = uniform([repr(i.init) for i in items])
    if init is not None and items and items[0].init is not True:
        out.append(f"init_lora_weights {fmt_num(items[0].init) if isinstance(items[0].init, bool) else items[0].init}")
    if lora.get("use_rslora"):
        out.append("rsLoRA (scaling alpha/sqrt(r))")
    if lora.get("bias") not in (None, "none"):
        out.append(f"bias {lora['bias']}")
    if lora.get("lora_bias"):
        out.append("lora_bias")
    return out


def fast_path_summary(items: Sequence[Any]) -> str | None:
    """'training path: fused for N of M; PEFT's layer for K (reason)', or None when not decided."""
    decided = [i for i in items if getattr(i, "fast_path", None) is not None]
    if not decided:
        return None
    fused = sum(1 for i in decided if i.fast_path)
    reasons: dict[str, int] = {}
    for i in decided:
        if not i.fast_path:
            reasons[i.fallback_reason or "not eligible"] = reasons.get(i.fallback_reason or "not eligible", 0) + 1
    text = f"training path: loraplan's fused layer for {fmt_int(fused)} of {fmt_int(len(decided))}"
    for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
        text += f"; PEFT's layer for {fmt_int(count)} ({reason})"
    return text
