"""The compiler's findings (LP5xx), each located at the YAML entry it concerns.

PEFT stays silent about most of these (a list item that matches nothing while others match, a
full name that skips the layer filter, 20+ names condensed, MoE targets rewritten); loraplan
matches PEFT's result and says what happened. Checks live in diagnose_targets.py (target
entries, coverage, exclusions, patterns) and diagnose_model.py (MoE, serving, PEFT quirks).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from loraplan.compiler.architecture import Architecture, ModuleInfo
from loraplan.compiler.plan import Coverage, Injection
from loraplan.compiler.targets import Resolution
from loraplan.schema.diagnostic import Diagnostic

FUSED_QKV = ("qkv_proj", "query_key_value", "c_attn", "Wqkv", "W_pack", "qkv", "in_proj")
SPLIT_QKV = ("q_proj", "k_proj", "v_proj", "q", "k", "v", "query", "key", "value")
FUSED_GATE_UP = ("gate_up_proj",)
SPLIT_GATE_UP = ("gate_proj", "up_proj", "w1", "w3")


@dataclass
class Ctx:
    """Everything a check reads, plus helpers to locate findings in the YAML."""

    config: Any
    arch: Architecture
    res: Resolution
    modules: list[Injection]
    params: list[Injection]
    coverage: list[Coverage]
    source: Any  # SourceDoc | None

    @property
    def lora(self) -> Any:
        return self.config.lora

    def d(self, code: str, severity: str, message: str, path: tuple, hint: str | None = None,
          key: bool = False) -> Diagnostic:
        diag = Diagnostic(code, severity, message, hint=hint)  # type: ignore[arg-type]
        if self.source is None:
            return diag
        span = self.source.key_span(path) if key else self.source.span(path)
        return diag.at(span, self.source.file)

    def entry_path(self, field: str, entry: str) -> tuple:
        """Path of one entry of a list field, or of the field itself when it is a string / unset."""
        value = getattr(self.lora, field)
        if isinstance(value, list) and entry in value:
            return ("lora", field, value.index(entry))
        if isinstance(value, str):
            return ("lora", field)
        return ("lora",)

    def where(self, field: str) -> tuple[tuple, bool]:
        """(path, key?) pointing at a field the user wrote, else at the `lora:` key."""
        if self.source is not None and ("lora", field) in self.source.keys:
            return ("lora", field), True
        return ("lora",), True

    @cached_property
    def names(self) -> list[str]:
        return [m.name for m in self.arch.modules]

    @cached_property
    def adapted(self) -> set[str]:
        return {i.module for i in self.modules}

    @cached_property
    def adapted_params(self) -> set[str]:
        return {p.module for p in self.params}

    @cached_property
    def fused_experts(self) -> list[str]:
        """3-D parameters of non-Linear modules: transformers-v5 fused MoE experts."""
        kinds = {m.name: m.kind for m in self.arch.modules}
        return [p.name for p in self.arch.parameters if len(p.shape) == 3 and kinds.get(p.module) == "other"
                and "expert" in p.module.rsplit(".", 1)[-1]]


def layer_ranges(layers: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] -> '0-2, 5, 7-8'."""
    out: list[str] = []
    for i in sorted(set(layers)):
        if out and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i)  # type: ignore[assignment]
        else:
            out.append((i, i))  # type: ignore[arg-type]
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in out)  # type: ignore[misc]


def layer_summary(layers: list[int], limit: int = 6) -> str:
    """layer_ranges, cut after `limit` ranges: '3, 7, 11, 15, 19, 23, ... (16 blocks)'."""
    parts = layer_ranges(layers).split(", ")
    if len(parts) <= limit:
        return ", ".join(parts)
    return ", ".join(parts[:limit]) + f", ... ({len(set(layers))} blocks)"


def short_list(names: list[str], n: int = 3) -> str:
    shown = ", ".join(f"`{x}`" for x in names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def suffix_candidates(names: list[str], max_parts: int = 2) -> list[str]:
    """Dotted suffixes (up to `max_parts` components, no layer numbers) of module names."""
    out: dict[str, None] = {}
    for name in names:
        parts = name.split(".")
        for k in range(1, min(max_parts, len(parts)) + 1):
            tail = parts[-k:]
            if any(p.isdigit() for p in tail):
                break
            out[".".join(tail)] = None
    return list(out)


def did_you_mean(entry: str, arch: Architecture, wrappable_only: bool = True) -> list[str]:
    """Real names close to `entry`; a fused q/k/v or gate/up module first when the entry names a part."""
    from loraplan.compiler.matching import wrappable

    mods: list[ModuleInfo] = [m for m in arch.modules if wrappable(m)] if wrappable_only else arch.modules
    leaves = {m.name.rsplit(".", 1)[-1] for m in mods}
    leaf = entry.rsplit(".", 1)[-1]
    fused = []
    if leaf in SPLIT_QKV:
        fused = [f for f in FUSED_QKV if f in leaves]
    elif leaf in SPLIT_GATE_UP:
        fused = [f for f in FUSED_GATE_UP if f in leaves]
    if fused:
        return fused
    return close_matches(entry, suffix_candidates([m.name for m in mods]))


def close_matches(entry: str, candidates: list[str]) -> list[str]:
    """The closest candidates (up to 3), only those about as close as the best one."""
    close = difflib.get_close_matches(entry, candidates, n=3, cutoff=0.6)
    if not close:
        return []
    best = difflib.SequenceMatcher(None, entry, close[0]).ratio()
    kept: list[str] = []
    for c in close:  # best first; skip longer or shorter spellings of a name already kept
        if difflib.SequenceMatcher(None, entry, c).ratio() < best - 0.1:
            continue
        if not any(c.endswith("." + k) or k.endswith("." + c) for k in kept):
            kept.append(c)
    return kept


def diagnose(
    config: Any,
    arch: Architecture,
    res: Resolution,
    modules: list[Injection],
    params: list[Injection],
    coverage: list[Coverage],
    source: Any = None,
) -> list[Diagnostic]:
    from loraplan.compiler import diagnose_model, diagnose_options, diagnose_targets

    ctx = Ctx(config, arch, res, modules, params, coverage, source)
    out: list[Diagnostic] = []
    for check in (*diagnose_targets.CHECKS, *diagnose_model.CHECKS, *diagnose_options.CHECKS):
        out.extend(check(ctx))
    return out
