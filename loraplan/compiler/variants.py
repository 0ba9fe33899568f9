"""Architecture variants: module trees that a training tool builds by patching a transformers class.

A plan is only true for the modules that exist at training time. Axolotl's
`llama4_linearized_experts: true` swaps Llama-4's fused expert tensors (`experts.gate_up_proj`
[E, H, 2I] and `experts.down_proj` [E, I, H]) for one `nn.Linear` per expert and projection, so
that bitsandbytes can quantise them and LoRA can wrap them. Its checkpoints
(`axolotl-quants/Llama-4-*-Linearized-*`) only load that way. The layout is Axolotl's
`src/axolotl/monkeypatch/models/llama4/modeling.py` (`Llama4TextExperts`): `gate_projs.{i}` and
`up_projs.{i}` are Linear(hidden, intermediate, bias=False), `down_projs.{i}` Linear(intermediate,
hidden, bias=False); the router, shared expert and dense layers are unchanged. Its
`cli/delinearize_llama4.py` maps the two layouts both ways with the same `config.json`.

Pure data work on an Architecture (no torch), so catalog variants stay torch-free.
"""

from __future__ import annotations

import dataclasses

from loraplan.compiler.architecture import Architecture, ModuleInfo, ParamInfo

LLAMA4_LINEARIZED = "axolotl-llama4-linearized-experts"
VARIANTS = (LLAMA4_LINEARIZED,)
_FUSED_EXPERTS = "Llama4TextExperts"


class VariantError(ValueError):
    """The variant does not apply to this architecture."""


def _linear(name: str, fan_in: int, fan_out: int, layer: int | None) -> tuple[ModuleInfo, ParamInfo]:
    module = ModuleInfo(
        name=name,
        cls="Linear",
        kind="linear",
        in_features=fan_in,
        out_features=fan_out,
        bias=False,
        params=fan_in * fan_out,
        layer=layer,
        weight_shape=(fan_out, fan_in),
    )
    return module, ParamInfo(name=f"{name}.weight", module=name, shape=(fan_out, fan_in), layer=layer)


def _linearize_one(experts: ModuleInfo, params: dict[str, ParamInfo]) -> tuple[list[ModuleInfo], list[ParamInfo]]:
    gate_up = params.get(f"{experts.name}.gate_up_proj")
    down = params.get(f"{experts.name}.down_proj")
    if gate_up is None or down is None or len(gate_up.shape) != 3 or len(down.shape) != 3:
        raise VariantError(f"{experts.name} has no fused gate_up_proj/down_proj tensors to linearize")
    num_experts, hidden, double_inter = gate_up.shape
    inter = double_inter // 2
    if down.shape != (num_experts, inter, hidden):
        raise VariantError(f"{experts.name}: down_proj {down.shape} does not fit gate_up_proj {gate_up.shape}")
    layer = experts.layer
    modules = [dataclasses.replace(experts, kind="container", params=0, weight_shape=None)]
    new_params: list[ParamInfo] = []
    shapes = (("gate_projs", hidden, inter), ("up_projs", hidden, inter), ("down_projs", inter, hidden))
    for group, fan_in, fan_out in shapes:
        modules.append(ModuleInfo(name=f"{experts.name}.{group}", cls="ModuleList", kind="container", layer=layer))
        for i in range(num_experts):
            module, param = _linear(f"{experts.name}.{group}.{i}", fan_in, fan_out, layer)
            modules.append(module)
            new_params.append(param)
    return modules, new_params


def linearize_llama4_experts(arch: Architecture) -> Architecture:
    """Axolotl's linearized Llama-4: every fused expert holder becomes 3 x E Linear layers."""
    params = {p.name: p for p in arch.parameters}
    fused = [m for m in arch.modules if m.cls == _FUSED_EXPERTS and m.kind != "container"]
    if not fused and any(m.name.endswith(".experts.gate_projs.0") for m in arch.modules):
        return arch  # a live model Axolotl has already patched
    if not fused:
        raise VariantError(f"{arch.model_class} has no fused Llama-4 experts ({_FUSED_EXPERTS}) to linearize")
    replaced: dict[str, tuple[list[ModuleInfo], list[ParamInfo]]] = {m.name: _linearize_one(m, params) for m in fused}
    modules: list[ModuleInfo] = []
    for m in arch.modules:
        modules.extend(replaced[m.name][0] if m.name in replaced else [m])
    parameters: list[ParamInfo] = []
    for p in arch.parameters:
        if p.module in replaced:
            if p.name.endswith(".gate_up_proj"):  # emit the new Linear weights once, where the old tensors were
                parameters.extend(replaced[p.module][1])
            continue
        parameters.append(p)
    attrs = {**arch.config_attrs, "variant": LLAMA4_LINEARIZED}
    return dataclasses.replace(arch, modules=modules, parameters=parameters, config_attrs=attrs, _index=None)


def apply_variant(arch: Architecture, variant: str) -> Architecture:
    """`arch` as the named variant builds it; unchanged if it already is that variant."""
    if arch.config_attrs.get("variant") == variant:
        return arch
    if variant == LLAMA4_LINEARIZED:
        return linearize_llama4_experts(arch)
    raise VariantError(f"unknown architecture variant '{variant}' (known: {', '.join(VARIANTS)})")
