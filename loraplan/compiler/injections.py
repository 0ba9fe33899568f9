"""Resolution -> plan entries: one Injection per adapted module or parameter, and per-entry coverage.

`matched_by` names the *user's* entries (list items, the regex string, `all-linear`, PEFT's default
names, or the old MoE names PEFT converted) so coverage and diagnostics speak the config's language.
"""

from __future__ import annotations

from typing import Any

from loraplan.compiler.architecture import Architecture
from loraplan.compiler.counting import param_adapter, scaling
from loraplan.compiler.fast_path import FALLBACK_REASONS, static_fallback_reason
from loraplan.compiler.lora_options import module_shape, variants
from loraplan.compiler.matching import entry_matches, main_stack_index, names_match
from loraplan.compiler.plan import Coverage, Injection
from loraplan.compiler.targets import Resolution


def user_entries(lora: Any, res: Resolution) -> tuple[list[str], bool, str]:
    """(entries, is_regex, source) of the target_modules the user wrote, or PEFT's default for them."""
    tm = lora.target_modules
    if tm is None and res.default_used is not None:
        d = res.default_used
        return ([d], True, "default") if isinstance(d, str) else (list(d), False, "default")
    if tm is None:
        return [], False, "target_modules"
    if isinstance(tm, str):
        return [tm], True, "target_modules"
    return list(tm), False, "target_modules"


def _moved_from(res: Resolution, key: str, string_entry: str | None) -> list[str]:
    """User entries PEFT's MoE conversion turned into the target_parameters entry matching `key`."""
    if res.moe is None:
        return []
    out: list[str] = []
    for new, olds in res.moe.moved.items():
        if key == new or key.endswith(f".{new}"):
            out.extend([string_entry] if string_entry is not None else olds)
    return sorted(set(out))


def build_injections(
    lora: Any, res: Resolution, arch: Architecture, quantized: set[str] | None = None
) -> tuple[list[Injection], list[Injection]]:
    entries, is_regex, _ = user_entries(lora, res)
    init = lora.init_lora_weights
    modules = []
    for t in res.modules:
        shape = module_shape(t.module, t.shape_r or t.r, lora, quantized or set())
        matched = [e for e in entries if entry_matches(e, t.name, is_regex=is_regex)] or list(entries)
        modules.append(
            Injection(
                module=t.name,
                kind=t.module.kind,
                in_features=shape.in_features,
                out_features=shape.out_features,
                r=t.r,
                lora_alpha=_num(t.alpha),
                scaling=scaling(t.alpha, t.r, lora.use_rslora),
                dropout=lora.lora_dropout,
                init=init,
                params=shape.trainable,
                use_dora=bool(lora.use_dora),
                layer=main_stack_index(arch, t.name),
                matched_by=matched,
                rank_pattern=t.rank_key,
                alpha_pattern=t.alpha_key,
                **_fast(t.module.kind, lora, t.name in (quantized or set())),
            )
        )
    string_entry = lora.target_modules if isinstance(lora.target_modules, str) else None
    params = []
    for p in res.parameters:
        transposed = bool(p.module.extra.get("is_transposed", False))
        shape = param_adapter(p.shape, p.r, transposed=transposed)
        own = [t for t in (lora.target_parameters or []) if names_match([t], p.name)]
        params.append(
            Injection(
                module=p.name,
                kind="parameter",
                in_features=shape.in_features,
                out_features=shape.out_features,
                r=p.r,
                lora_alpha=_num(p.alpha),
                scaling=scaling(p.alpha, p.r, lora.use_rslora),
                dropout=lora.lora_dropout,
                init=init,
                params=shape.trainable,
                use_dora=False,
                layer=main_stack_index(arch, p.name),
                matched_by=own + [e for e in _moved_from(res, p.name, string_entry) if e not in own],
                rank_pattern=p.rank_key,
                alpha_pattern=p.alpha_key,
                fast_path=False,
                fallback_reason=FALLBACK_REASONS["kind"],
            )
        )
    return modules, params


def _fast(kind: str, lora: Any, quantized: bool = False) -> dict[str, Any]:
    """Whether the fused training path runs this module, and why not when it does not."""
    reason = static_fallback_reason(
        kind, dropout=lora.lora_dropout, use_dora=lora.use_dora, lora_bias=lora.lora_bias,
        init=lora.init_lora_weights,
    )
    # KaSA, BD-LoRA, MonteCLoRA, VeLoRA, aLoRA, Arrow: PEFT's layer holds a variant object (runtime/fast
    # falls back on it); bitsandbytes layers keep only aLoRA and Arrow among them.
    kept = {"alora_invocation_tokens", "arrow_config"} if quantized else variants(lora) - {"use_dora", "mica"}
    if reason is None and kind == "linear" and variants(lora) & kept:
        reason = "LoRA variant (" + ", ".join(sorted(variants(lora) & kept)) + "): PEFT's layer"
    return {"fast_path": reason is None, "fallback_reason": reason}


def _num(x: float) -> float:
    """Whole floats as ints in the plan (16 rather than 16.0), so JSON reads as the user wrote it."""
    return int(x) if float(x).is_integer() else x  # type: ignore[return-value]


def build_coverage(
    lora: Any, res: Resolution, arch: Architecture, modules: list[Injection], params: list[Injection]
) -> list[Coverage]:
    entries, _, source = user_entries(lora, res)
    total = int(arch.num_layers or 0)
    rows: list[tuple[str, str, list[Injection]]] = [
        (e, source, [i for i in modules + params if e in i.matched_by]) for e in entries
    ]
    rows += [
        (t, "target_parameters", [i for i in params if t in i.matched_by]) for t in (lora.target_parameters or [])
    ]
    out = []
    for pattern, src, hits in rows:
        layers = sorted({i.layer for i in hits if i.layer is not None})
        out.append(Coverage(pattern, len(hits), len(layers), total, layers, src))
    return out
