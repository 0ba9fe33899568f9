"""The fast path under a sharding engine (FSDP2, FSDP1, DeepSpeed ZeRO-3): what it needs, where it stops.

FSDP and ZeRO-3 swap each layer's parameters between a shard and the gathered tensor around
every forward and backward. The fused layers read their parameters when they run, inside the
gathered window, so they see what PEFT's layer sees (tests/runtime/test_sharded.py: the same
loss and gradients as PEFT on 2 gloo ranks, FSDP2 through `fully_shard` and through accelerate's
`fsdp2_prepare_model`, ZeRO-3 through `deepspeed.initialize`). Two things need care:

- FSDP2 gathers a bitsandbytes 4-bit weight into a plain Parameter: its `quant_state` is gone
  until bitsandbytes' `fix_4bit_weight_quant_state_from_module` puts it back, which only
  `Linear4bit.forward` calls. The merged formulation dequantises the weight itself, so a
  forward pre-hook on each fused 4-bit layer does the same first (`prepare_sharding`).
- DeepSpeed ZeRO-3 is checked only for the versions listed in TESTED_DEEPSPEED; under another
  version, and for 4-bit layers under ZeRO-3 (not checked: bitsandbytes' CPU backend cannot
  run ZeRO-3's partitioned 4-bit weights here), layers keep PEFT's forward, with an LP620 reason.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("loraplan")

TESTED_DEEPSPEED = ("0.19",)  # major.minor versions whose ZeRO-3 the tests ran against
_HOOK_ATTR = "_loraplan_quant_state_hook"


def detect_engine(model: Any) -> str | None:
    """'fsdp2', 'fsdp1' or 'zero3' when `model` (or a parameter of it) is managed by one, else None."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # torch without distributed
        FSDPModule = ()
    for module in model.modules():
        if FSDPModule and isinstance(module, FSDPModule):
            return "fsdp2"
        if type(module).__name__ == "FullyShardedDataParallel":
            return "fsdp1"
    for param in model.parameters():
        if hasattr(param, "ds_id"):
            return "zero3"
        if type(param).__name__ == "DTensor":
            return "fsdp2"
    return None


def zero3_reason(layer: Any, planned: bool = False) -> str | None:
    """Why a fused layer must keep PEFT's forward under ZeRO-3 (None: it need not).

    planned: the plan's `distributed:` says ZeRO-3 (the parameters may not be partitioned yet).
    """
    if not planned and not any(hasattr(p, "ds_id") for p in layer.parameters()):
        return None
    version = _deepspeed_version()
    if version is not None and not version.startswith(TESTED_DEEPSPEED):
        return (f"DeepSpeed ZeRO-3 {version}: the fused layer is checked against PEFT's under DeepSpeed "
                f"{', '.join(TESTED_DEEPSPEED)} only")
    if type(layer.get_base_layer()).__name__ == "Linear4bit":
        return "4-bit base under DeepSpeed ZeRO-3: not checked against PEFT's layer, which stays"
    return None


def _deepspeed_version() -> str | None:
    try:
        import deepspeed
    except Exception:  # not installed, or it fails to import without an accelerator
        return None
    return str(getattr(deepspeed, "__version__", "0"))


def _restore_quant_state(layer: Any, _args: Any) -> None:
    """bitsandbytes' own repair of a 4-bit weight that FSDP gathered without its quant_state."""
    base = layer.get_base_layer()
    if getattr(base.weight, "quant_state", None) is None and getattr(base, "quant_state", None) is not None:
        from bitsandbytes.nn.modules import fix_4bit_weight_quant_state_from_module

        fix_4bit_weight_quant_state_from_module(base)


def prepare_sharding(model: Any, report: Any, planned_engine: str | None = None) -> list[str]:
    """Ready the fused layers of `model` for FSDP / ZeRO-3; put back PEFT's forward where they cannot run.

    Returns the names of layers that went back to PEFT's forward (each also in report.fallback).
    """
    from loraplan.runtime.fast.patch import _FastForward

    engine = detect_engine(model) or planned_engine
    restored = []
    for name, module in model.named_modules():
        if not isinstance(module, _FastForward):
            continue
        reason = zero3_reason(module, planned=engine == "zero3") if engine == "zero3" else None
        if reason is not None:
            module.__dict__.pop("_loraplan_group", None)
            module.__class__ = module._loraplan_original
            report.fast.remove(name)
            report.fallback[name] = reason
            restored.append(name)
            log.info("LP620 %s: %s", name, reason)
            continue
        if type(module.get_base_layer()).__name__ == "Linear4bit" and not hasattr(module, _HOOK_ATTR):
            setattr(module, _HOOK_ATTR, module.register_forward_pre_hook(_restore_quant_state))
    if restored:  # siblings of a restored layer no longer share its input
        from loraplan.runtime.fast.patch import _group_siblings

        _group_siblings(model, stack=False)
    return restored


def planned_engine(plan: Any) -> str | None:
    """The engine a plan's `distributed:` names ('fsdp1', 'fsdp2', 'zero0'..'zero3', 'ddp'), or None."""
    d = (plan.config or {}).get("distributed") if plan is not None else None
    if not d:
        return None
    if d.get("fsdp") is not None:
        return f"fsdp{d['fsdp'].get('version', 2)}"
    if d.get("deepspeed") is not None:
        return f"zero{d['deepspeed'].get('zero_stage', 0)}"
    return "ddp"
