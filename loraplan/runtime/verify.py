"""Check an adapted model against its plan: what PEFT injected is what the plan said, exactly.

Compared: the adapted module set, the adapted parameter set (target_parameters), the
ModulesToSaveWrapper set, each adapter's rank, A/B shapes, scaling, dropout, DoRA flag and
parameter count, and the trainable total as PEFT counts it (`get_nb_trainable_parameters`,
4-bit storage included). Every difference is collected; `verify` raises them all at once.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loraplan.errors import PlanMismatchError
from loraplan.schema.diagnostic import Diagnostic

if TYPE_CHECKING:
    from loraplan.compiler.plan import Injection, Plan

MAX_LISTED = 25  # differences spelt out in an error; the rest are counted


@dataclass(frozen=True)
class Adapter:
    """One injected adapter as found on the model."""

    name: str  # module name (for a parameter adapter: the parameter's full name)
    layer_cls: str
    r: int
    scaling: float
    dropout: float
    use_dora: bool
    a_shape: tuple[int, ...]
    b_shape: tuple[int, ...]
    params: int  # trainable ones
    experts: int = 1


@dataclass
class Found:
    modules: dict[str, Adapter]
    parameters: dict[str, Adapter]
    modules_to_save: list[str]


_BASE_LAYER = re.compile(r"(\.base_layer)+$")


def _numel(params: Any) -> int:
    """Trainable elements only: some inits freeze a factor (MiCA trains A, not B)."""
    return sum(p.numel() for p in params if p.requires_grad)


def _adapter(name: str, layer: Any, adapter: str) -> Adapter:
    if adapter in getattr(layer, "lora_A", {}):
        a, b = layer.lora_A[adapter], layer.lora_B[adapter]
        a_shape, b_shape = _dense_shape(a), _dense_shape(b)
    else:  # embeddings keep their factors as plain parameters
        a, b = layer.lora_embedding_A[adapter], layer.lora_embedding_B[adapter]
        a_shape, b_shape = tuple(a.shape), tuple(b.shape)
    params = 0
    # A, B, DoRA magnitude, KaSA diagonal, samplers... (variants may list their attribute again)
    for attr in dict.fromkeys(getattr(layer, "adapter_layer_names", ())):
        container = getattr(layer, attr, None)
        if container is not None and adapter in container:
            held = container[adapter]
            params += _numel(held.parameters() if hasattr(held, "parameters") else [held])
    dropout = layer.lora_dropout[adapter]
    use_dora = getattr(layer, "use_dora", {}).get(adapter, False)
    return Adapter(
        name=name,
        layer_cls=type(layer).__name__,
        r=int(layer.r[adapter]),
        scaling=float(layer.scaling[adapter]),
        dropout=float(getattr(dropout, "p", 0.0)),
        use_dora=bool(use_dora),
        a_shape=a_shape,
        b_shape=b_shape,
        params=int(params),
        experts=int(getattr(layer, "num_experts", 1)),
    )


def _dense_shape(factor: Any) -> tuple[int, ...]:
    """(out, in) of a factor; BD-LoRA's BlockDiagonalLinear stores 1/nblocks of it, as the plan counts."""
    if type(factor).__name__ == "BlockDiagonalLinear":
        return (factor.out_features, factor.in_features)
    return tuple(factor.weight.shape)


def find_adapters(peft_model: Any, adapter: str = "default") -> Found:
    """Every LoRA adapter named `adapter` on a PeftModel, under the base model's module names."""
    from peft.tuners.lora import LoraLayer, ParamWrapper
    from peft.utils import ModulesToSaveWrapper

    found = Found({}, {}, [])
    for name, module in peft_model.get_base_model().named_modules():
        if isinstance(module, ModulesToSaveWrapper):
            found.modules_to_save.append(name)
            continue
        if not isinstance(module, LoraLayer):
            continue
        if adapter not in module.lora_A and adapter not in module.lora_embedding_A:
            continue
        if isinstance(module, ParamWrapper):
            full = f"{_BASE_LAYER.sub('', name)}.{module.parameter_name}"
            found.parameters[full] = _adapter(full, module, adapter)
        else:
            found.modules[name] = _adapter(name, module, adapter)
    return found


def _expected_shapes(inj: Injection, experts: int) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """(A, B) leading dims PEFT gives an adapter of this kind; None where only counts are compared."""
    if inj.kind in ("linear", "conv1d_gpt2") and str(inj.init).startswith(("pissa", "olora")):
        k = min(inj.r, inj.in_features, inj.out_features)  # PiSSA / OLoRA keep min(r, in, out) directions
        if inj.kind == "conv1d_gpt2" and str(inj.init) == "olora":
            return None  # PEFT factors Conv1D's stored (in, out) weight as is (LP570)
        return (k, inj.in_features), (inj.out_features, k)
    if inj.kind in ("linear", "conv1d_gpt2", "embedding"):
        return (inj.r, inj.in_features), (inj.out_features, inj.r)
    if inj.kind == "parameter":
        return (inj.r * experts, inj.in_features), (inj.out_features, inj.r * experts)
    return None


def compare_adapter(inj: Injection, got: Adapter) -> list[str]:
    """Differences between one planned injection and the adapter found for it."""
    out: list[str] = []
    name = inj.module
    if got.r != inj.r:
        out.append(f"{name}: rank {got.r}, plan {inj.r}")
    if not math.isclose(got.scaling, inj.scaling, rel_tol=1e-6, abs_tol=1e-12):
        out.append(f"{name}: scaling {got.scaling:g}, plan {inj.scaling:g}")
    shapes = _expected_shapes(inj, got.experts)
    if shapes is not None:
        (a_exp, b_exp) = shapes
        if got.a_shape[:2] != a_exp:
            out.append(f"{name}: lora_A shape {got.a_shape}, plan {a_exp}")
        if got.b_shape[:2] != b_exp:
            out.append(f"{name}: lora_B shape {got.b_shape}, plan {b_exp}")
    if got.params != inj.params:
        out.append(f"{name}: {got.params} adapter parameters, plan {inj.params}")
    if not math.isclose(got.dropout, inj.dropout, abs_tol=1e-12):
        out.append(f"{name}: dropout {got.dropout:g}, plan {inj.dropout:g}")
    if got.use_dora != inj.use_dora:
        out.append(f"{name}: DoRA {got.use_dora}, plan {inj.use_dora}")
    return out


def _set_differences(what: str, planned: list[str], found: list[str]) -> list[str]:
    planned_set, found_set = set(planned), set(found)
    out = [f"{what} planned but not adapted: {n}" for n in planned if n not in found_set]
    out += [f"{what} adapted but not in the plan: {n}" for n in found if n not in planned_set]
    return out


def differences(plan: Plan, peft_model: Any, adapter: str = "default") -> list[str]:
    """Every way the adapted model differs from the plan (empty: it matches)."""
    found = find_adapters(peft_model, adapter)
    out = _set_differences("module", [i.module for i in plan.injections], list(found.modules))
    out += _set_differences("parameter", [p.module for p in plan.parameters], list(found.parameters))
    for inj in plan.injections:
        if inj.module in found.modules:
            out += compare_adapter(inj, found.modules[inj.module])
    for inj in plan.parameters:
        if inj.module in found.parameters:
            out += compare_adapter(inj, found.parameters[inj.module])
    out += _set_differences("modules_to_save entry", list(plan.modules_to_save), found.modules_to_save)
    trainable, _ = peft_model.get_nb_trainable_parameters()
    if trainable != plan.totals.trainable_params:
        out.append(
            f"trainable parameters: {trainable:,} on the model, plan {plan.totals.trainable_params:,} "
            f"(difference {trainable - plan.totals.trainable_params:+,})"
        )
    return out


def bounded(items: list[str], limit: int = MAX_LISTED) -> list[str]:
    """The first `limit` items, and a line counting the rest."""
    if len(items) <= limit:
        return list(items)
    return [*items[:limit], f"... and {len(items) - limit} more"]


def as_diagnostics(code: str, items: list[str], hint: str | None = None) -> list[Diagnostic]:
    return [Diagnostic(code, "error", item, hint=hint) for item in bounded(items)]


def verify(plan: Plan, peft_model: Any, adapter: str = "default") -> None:
    """Raise PlanMismatchError listing every difference between `peft_model` and `plan`."""
    found = differences(plan, peft_model, adapter)
    if found:
        raise PlanMismatchError(
            f"the adapted model differs from the plan in {len(found)} way(s) (the model was modified in place)",
            as_diagnostics("LP602", found),
        )
