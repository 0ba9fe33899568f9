r"""PEFT's rewrite of old MoE targets for transformers-v5 fused experts (transformers_weight_conversion).

transformers v5 stores the experts of Mixtral-, Qwen-MoE- and DeepSeek-style models as 3-D
parameters (`mlp.experts.gate_up_proj`, `mlp.experts.down_proj`) and the router as a custom module
holding `gate.weight`. Before matching, PEFT rewrites the config of those model types in place:
every target named like a v4 expert projection or router (`w1`/`w3`/`w2`/`gate` for Mixtral;
`gate_proj`/`up_proj`/`down_proj`/`gate` for the Qwen family) leaves `target_modules` and becomes a
`target_parameters` entry; the fused pair gets `rank_pattern` / `alpha_pattern` entries of 2r / 2α.
A string target (regex or all-linear) is first resolved to leaf names. Note what follows from it:
any *Linear* with such a name (dense MLP layers, shared experts) is no longer adapted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from loraplan.compiler.architecture import Architecture
from loraplan.compiler.matching import YES, Spec, all_linear_names, check_target_module_exists
from loraplan.compiler.peft_tables import (
    INCLUDE_LINEAR_LAYERS_SHORTHAND,
    MOE_CONVERSION_FAMILY,
    MOE_FUSED_TARGETS,
    MOE_TARGET_MODULE_MAPPING,
)


@dataclass
class MoeConversion:
    """What PEFT's v5 conversion did to the config (or why it refused)."""

    family: str
    resolved_from_string: set[str] | None = None  # leaf names a regex / all-linear became
    moved: dict[str, list[str]] = field(default_factory=dict)  # new target_parameters entry -> old names
    fused_patterns: dict[str, tuple[int, float]] = field(default_factory=dict)  # rank/alpha pattern key -> (r, α)
    refused: str | None = None  # PEFT's ValueError: a fused pair targeted only in part
    linears_dropped: list[str] = field(default_factory=list)  # target names that no longer reach Linears


def _resolve_string(spec: Spec, arch: Architecture, mapping: dict[str, str]) -> set[str]:
    """_resolve_string_target_modules: a regex / all-linear as the leaf names it reaches."""
    tm = spec.target_modules
    assert isinstance(tm, str)
    if tm.lower() == INCLUDE_LINEAR_LAYERS_SHORTHAND:
        return {n.rsplit(".", 1)[-1] for n in all_linear_names(arch, spec.task_type)} | set(mapping)
    keys = [m.name for m in arch.modules] + [p.name for p in arch.parameters]
    matched = {k.rsplit(".", 1)[-1] for k in keys if check_target_module_exists(spec, k) == YES}
    containers: dict[str, set[str]] = {}
    for p in arch.parameters:
        container, _, leaf = p.name.rpartition(".")
        containers.setdefault(leaf, set()).add(container)
    for old, new in mapping.items():
        if old in matched:
            continue
        for container in sorted(containers.get(new, ())):
            if check_target_module_exists(spec, f"{container}.{old}") == YES:
                matched.add(old)
                break
    return matched


def convert(spec: Spec, arch: Architecture) -> MoeConversion | None:
    """_convert_peft_config_moe, in place on `spec`. None when the model type is not converted."""
    family = MOE_CONVERSION_FAMILY.get(arch.model_type)
    if family is None:
        return None
    mapping = MOE_TARGET_MODULE_MAPPING[family]
    fused = MOE_FUSED_TARGETS[family]
    conv = MoeConversion(family)
    if isinstance(spec.target_modules, str):
        resolved = _resolve_string(spec, arch, mapping)
        if not resolved:
            return conv  # nothing matched: PEFT leaves the string for its not-found error
        conv.resolved_from_string = resolved
        spec.target_modules = resolved
    new_params = set(spec.target_parameters or [])
    remaining: set[str] = set()
    present: dict[str, set[str]] = {new: set() for new in fused}
    for target in spec.target_modules or set():
        hit = next(((o, n) for o, n in mapping.items() if target == o or target.endswith(f".{o}")), None)
        if hit is None:
            remaining.add(target)
            continue
        old, new = hit
        new_params.add(new)
        conv.moved.setdefault(new, []).append(target)
        if new in fused:
            present.setdefault(new, set()).add(old)
    for new, required in fused.items():
        got = present.get(new, set())
        if 0 < len(got) < len(required):
            missing = ", ".join(sorted(set(required) - got))
            conv.refused = (
                f"PEFT cannot convert target(s) {', '.join(sorted(got))} without also targeting {missing}: "
                f"they are fused into `{new}` in transformers v5"
            )
            return conv
        if len(got) == len(required) and len(required) > 1:
            key = rf".*\.{re.escape(new)}"
            n = len(required)
            spec.rank_pattern[key] = spec.r * n
            spec.alpha_pattern[key] = spec.lora_alpha * n
            conv.fused_patterns[key] = (spec.r * n, spec.lora_alpha * n)
    for names in conv.moved.values():
        names.sort()
    linear_leaves = {m.name.rsplit(".", 1)[-1] for m in arch.modules if m.kind in ("linear", "conv1d_gpt2")}
    conv.linears_dropped = sorted(
        t for ts in conv.moved.values() for t in ts if t.rsplit(".", 1)[-1] in linear_leaves
    )
    spec.target_parameters = new_params
    spec.target_modules = remaining
    return conv
