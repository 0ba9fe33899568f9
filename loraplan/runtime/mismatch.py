"""Why a model does not match a plan's architecture fingerprint, in terms a user can act on.

The plan records only the fingerprint of the architecture it was compiled for. To say *what*
differs, the plan's architecture is rebuilt from its config when that resolves offline to the same
fingerprint (then the two module trees are diffed: class, layer count, missing and extra names,
shapes); otherwise the plan is recompiled against the model and the two plans are compared
(modules the plan adapts that the model lacks or shapes differently, modules it would add).
Per-layer repeats are folded (`model.layers.*.mlp.up_proj (16 modules)`).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loraplan.compiler.architecture import Architecture, ModuleInfo
    from loraplan.compiler.plan import Plan

_INDEX = re.compile(r"(?<=\.)\d+(?=\.|$)")


def _fold(lines: list[tuple[str, str]], unit: str) -> list[str]:
    """(name, detail) pairs -> one line per (name with layer indices as *, detail), counted."""
    groups: OrderedDict[tuple[str, str], list[str]] = OrderedDict()
    for name, detail in lines:
        groups.setdefault((_INDEX.sub("*", name), detail), []).append(name)
    out = []
    for (pattern, detail), names in groups.items():
        shown = names[0] if len(names) == 1 else f"{pattern} ({len(names)} {unit})"
        out.append(f"{shown}: {detail}" if detail else shown)
    return out


def _shape(m: ModuleInfo) -> str:
    text = f"{m.kind} {m.in_features}->{m.out_features}" if m.in_features is not None else m.kind
    if m.weight_shape and m.kind not in ("linear", "conv1d_gpt2"):
        text += f" weight {list(m.weight_shape)}"
    return text + (" +bias" if m.bias else "")


def _beyond(layer: int | None, name: str, stack: str | None, common: int | None) -> bool:
    """A name inside a block that only one side has (reported once, as the layer count)."""
    if common is None or layer is None or stack is None or not name.startswith(stack + "."):
        return False
    return layer >= common


def architecture_differences(planned: Architecture, model: Architecture) -> list[str]:
    """Class, layer count, missing/extra module names, module and parameter shapes."""
    out: list[str] = []
    if planned.model_class != model.model_class:
        out.append(f"model class: plan {planned.model_class}, model {model.model_class}")
    common = None
    if planned.num_layers != model.num_layers:
        out.append(f"layer count: plan {planned.num_layers}, model {model.num_layers}")
        common = min(planned.num_layers, model.num_layers)
    stack = planned.main_stack if planned.main_stack == model.main_stack else None
    p_mods = {m.name: m for m in planned.modules}
    m_mods = {m.name: m for m in model.modules}
    missing = [(n, "") for n, m in p_mods.items() if n not in m_mods and not _beyond(m.layer, n, stack, common)]
    extra = [(n, "") for n, m in m_mods.items() if n not in p_mods and not _beyond(m.layer, n, stack, common)]
    out += [f"missing in the model: {line}" for line in _fold(missing, "modules")]
    out += [f"not in the plan's architecture: {line}" for line in _fold(extra, "modules")]
    changed = [
        (n, f"plan {_shape(p)}, model {_shape(m_mods[n])}")
        for n, p in p_mods.items()
        if n in m_mods and _shape(p) != _shape(m_mods[n])
    ]
    out += [f"shape: {line}" for line in _fold(changed, "modules")]
    reported = {n for n, _ in changed}
    m_params = {p.name: p for p in model.parameters}
    p_changed = [
        (p.name, f"plan {list(p.shape)}, model {list(m_params[p.name].shape)}")
        for p in planned.parameters
        if p.name in m_params and p.shape != m_params[p.name].shape and p.module not in reported
    ]
    out += [f"parameter shape: {line}" for line in _fold(p_changed, "parameters")]
    p_names = {p.name for p in planned.parameters}
    p_missing = [(p.name, "") for p in planned.parameters
                 if p.name not in m_params and p.module in m_mods and not _beyond(p.layer, p.name, stack, common)]
    p_extra = [(p.name, "") for p in model.parameters
               if p.name not in p_names and p.module in p_mods and not _beyond(p.layer, p.name, stack, common)]
    out += [f"parameter missing in the model: {line}" for line in _fold(p_missing, "parameters")]
    out += [f"parameter not in the plan's architecture: {line}" for line in _fold(p_extra, "parameters")]
    return out


def _injection_shape(i: Any) -> str:
    return f"{i.kind} {i.in_features}->{i.out_features}, r={i.r}, {i.params} params"


def plan_differences(plan: Plan, model: Architecture) -> list[str]:
    """The plan against the same config recompiled for the model: what it adapts differently."""
    from loraplan.compiler.compile import compile_plan
    from loraplan.schema.config import Config

    out: list[str] = []
    if plan.model_class != model.model_class:
        out.append(f"model class: plan {plan.model_class}, model {model.model_class}")
    planned_layers = max((c.layers_total for c in plan.coverage), default=None)
    if planned_layers is not None and planned_layers != model.num_layers:
        out.append(f"layer count: plan {planned_layers}, model {model.num_layers}")
    try:
        here = compile_plan(Config.model_validate(plan.config), model)
    except Exception as exc:  # the config no longer compiles against this model: say so, keep going
        here = None
        out.append(f"the plan's config does not compile against this model: {exc}")
    mine = {i.module: i for i in [*plan.injections, *plan.parameters]}
    theirs = {i.module: i for i in [*here.injections, *here.parameters]} if here else {}
    common = min(planned_layers, model.num_layers) if planned_layers is not None else None
    stack = getattr(model, "main_stack", None)
    missing = [(n, _injection_shape(i)) for n, i in mine.items()
               if n not in theirs and not _beyond(i.layer, n, stack, common)]
    extra = [(n, _injection_shape(i)) for n, i in theirs.items()
             if n not in mine and not _beyond(i.layer, n, stack, common)]
    changed = [
        (n, f"plan {_injection_shape(i)}, model {_injection_shape(theirs[n])}")
        for n, i in mine.items()
        if n in theirs and _injection_shape(i) != _injection_shape(theirs[n])
    ]
    if here is not None:
        out += [f"planned, but the model has no such target: {line}" for line in _fold(missing, "targets")]
        out += [f"the plan's targets also select, in this model: {line}" for line in _fold(extra, "targets")]
    out += [f"shape: {line}" for line in _fold(changed, "targets")]
    return out


def resolve_plan_architecture(plan: Plan) -> Architecture | None:
    """The architecture the plan was compiled for, when its config resolves to it offline."""
    try:
        from loraplan.compiler.resolve import resolve_architecture
        from loraplan.schema.config import Config

        arch = resolve_architecture(Config.model_validate(plan.config))
    except Exception:  # unresolvable here (hub id not cached, live module at compile time, ...)
        return None
    return arch if arch.fingerprint == plan.architecture_fingerprint else None


def fingerprint_differences(plan: Plan, model: Architecture) -> list[str]:
    """What differs between the plan's architecture and the model's (never empty)."""
    planned = resolve_plan_architecture(plan)
    out = architecture_differences(planned, model) if planned is not None else plan_differences(plan, model)
    if not out:
        out.append(
            f"architecture fingerprint: plan {plan.architecture_fingerprint}, model {model.fingerprint}; the "
            "difference lies in modules or parameters the plan does not adapt"
        )
    return out
