"""Apply a plan to a model through PEFT, refusing a model the plan was not made for, and verify.

Steps: refuse a plan with errors, a model that already carries adapters, or a model whose
architecture fingerprint differs from the plan's (listing what differs); inject with
`get_peft_model(model, LoraConfig(**plan.peft_config))`; keep the adapter config in the plan's
form (below); verify the result against the plan (verify.py); put eligible layers on the fast
path (loraplan.runtime.fast) when it is available.

The adapter config kept on the model is the plan's: PEFT rewrites `target_modules` while it
injects (the per-model default, `all-linear` expanded to module names, 20+ names condensed to
suffixes, the transformers-v5 MoE conversion) and would save the rewritten form. Those rewrites
are deterministic and PEFT replays them when the adapter is loaded, so saving the plan's own
`target_modules` / `exclude_modules` / `target_parameters` / `fan_in_fan_out` selects the same
modules and layers, and
`save_pretrained` then writes exactly what `loraplan export-peft` writes without a model.
`base_model_name_or_path` is the config's `base_model` (a hub id travels; a local path does not);
with a hub id there, PEFT's save_pretrained asks the hub whether the base's vocabulary changed,
unless HF_HUB_OFFLINE=1 (then it assumes it did not, with a warning).
"""

from __future__ import annotations

import copy
import logging
from typing import TYPE_CHECKING, Any, Literal

from loraplan.errors import LoraplanError, PlanMismatchError
from loraplan.runtime.export import plan_kwargs
from loraplan.runtime.verify import as_diagnostics
from loraplan.runtime.verify import verify as verify_plan
from loraplan.schema.diagnostic import Diagnostic

if TYPE_CHECKING:
    from loraplan.compiler.plan import Plan

log = logging.getLogger("loraplan")

# Fields PEFT rewrites during injection that are restored to the plan's form afterwards.
# (modules_to_save is not among them: PeftModel derives its wrapped-module set from it.)
# fan_in_fan_out: PEFT flips it to fit each module type (Conv1D: True, Linear: False) and keeps
# the last value. base_model_name_or_path: get_peft_model overwrites it with the model's name_or_path.
RESTORED_FIELDS = (
    "target_modules", "exclude_modules", "target_parameters", "fan_in_fan_out", "base_model_name_or_path",
)


def refuse_adapted(model: Any) -> None:
    """A model that already carries PEFT adapters cannot take a plan a second time."""
    from peft import PeftModel
    from peft.tuners.tuners_utils import BaseTunerLayer

    if isinstance(model, PeftModel):
        raise PlanMismatchError(
            "the model is already a PeftModel; apply a plan to the base model "
            "(e.g. `model.unload()` or a freshly loaded model)",
            [Diagnostic("LP601", "error", "the model is already a PeftModel")],
        )
    adapted = [name for name, m in model.named_modules() if isinstance(m, BaseTunerLayer)]
    if adapted:
        raise PlanMismatchError(
            f"the model already has {len(adapted)} adapter layer(s) (e.g. {adapted[0]}); "
            "apply a plan to a model without adapters",
            [Diagnostic("LP601", "error", f"already adapted: {adapted[0]}")],
        )


def check_architecture(plan: Plan, model: Any) -> None:
    """Refuse, listing the differences, a model whose architecture fingerprint is not the plan's."""
    from loraplan.compiler.sources.from_module import from_module
    from loraplan.runtime.mismatch import fingerprint_differences

    arch = from_module(model)
    if arch.fingerprint == plan.architecture_fingerprint:
        return
    found = fingerprint_differences(plan, arch)
    raise PlanMismatchError(
        f"the plan was compiled for another architecture than this model's ({plan.architecture}, "
        f"{plan.architecture_fingerprint} vs {arch.fingerprint}); {len(found)} difference(s)",
        as_diagnostics(
            "LP601",
            found,
            hint="compile the plan against this model: loraplan.compile(config, architecture=model)",
        ),
    )


def _restore_planned_form(peft_model: Any, adapter_name: str, kwargs: dict[str, Any]) -> None:
    from peft import LoraConfig

    planned = LoraConfig(**copy.deepcopy(kwargs))
    live = peft_model.peft_config[adapter_name]
    for key in RESTORED_FIELDS:
        if getattr(live, key, None) != getattr(planned, key, None):
            setattr(live, key, getattr(planned, key))


def _fast_path(peft_model: Any, fast: bool | str) -> Any:
    """Patch eligible layers onto loraplan's fused path; the report goes on the model."""
    if fast is False:
        return None
    try:
        from loraplan.runtime.fast import patch_model
    except ImportError as exc:
        if fast is True:
            raise LoraplanError(f"fast=True, but loraplan's fast path is not available: {exc}") from exc
        return None
    report = patch_model(peft_model)
    for name, reason in report.fallback.items():
        log.info("LP603 %s: %s", name, reason)
    return report


def _sharding(plan: Plan, peft_model: Any, report: Any) -> None:
    """Under the plan's FSDP / ZeRO-3, layers the fused path cannot serve keep PEFT's (LP620 on the plan)."""
    from loraplan.runtime.engines import planned_engine, prepare_sharding

    restored = prepare_sharding(peft_model, report, planned_engine(plan))
    if restored:
        reason = report.fallback[restored[0]]
        plan.diagnostics.append(Diagnostic(
            "LP620", "info", f"{len(restored)} layer(s) keep PEFT's forward under the planned sharding "
            f"({restored[0]}{' and others' if len(restored) > 1 else ''}): {reason}"))


def apply(
    plan: Plan,
    model: Any,
    *,
    verify: bool = True,
    fast: bool | Literal["auto"] = "auto",
    adapter_name: str = "default",
    autocast_adapter_dtype: bool = True,
) -> Any:
    """Inject the planned adapters into `model` (in place) and return the verified `PeftModel`.

    verify: check the result against the plan (verify.py) and raise PlanMismatchError listing
    every difference. fast: "auto" puts eligible layers on loraplan's fused path when it is
    installed, True requires it, False keeps PEFT's layers; the report is
    `peft_model.loraplan_fast_report`. autocast_adapter_dtype: PEFT's flag (True: fp32 adapters).
    """
    from loraplan.schema.diagnostic import has_errors

    if has_errors(plan.diagnostics):
        raise LoraplanError(
            "the plan has errors; PEFT would refuse or do something else than planned",
            [d for d in plan.diagnostics if d.severity == "error"],
        )
    refuse_adapted(model)
    check_architecture(plan, model)

    from peft import LoraConfig, get_peft_model

    kwargs = plan_kwargs(plan)
    inject_kwargs = {k: v for k, v in copy.deepcopy(kwargs).items() if k != "base_model_name_or_path"}
    from loraplan.runtime.quiet import no_checkpointing_alias_warning

    runtime = (plan.config.get("lora") or {}).get("runtime_config")
    if runtime and any(runtime.values()):  # never saved, so not in peft_config; PEFT wants the dataclass
        from peft.tuners.lora.config import LoraRuntimeConfig

        inject_kwargs["runtime_config"] = LoraRuntimeConfig(**runtime)
    try:
        with no_checkpointing_alias_warning():  # PEFT reads the deprecated alias, not the user
            peft_model = get_peft_model(
                model, LoraConfig(**inject_kwargs), adapter_name=adapter_name,
                autocast_adapter_dtype=autocast_adapter_dtype,
            )
    except (ValueError, TypeError, RuntimeError) as exc:
        raise PlanMismatchError(
            f"PEFT refused the plan: {exc}", [Diagnostic("LP602", "error", f"get_peft_model: {exc}")]
        ) from exc
    _restore_planned_form(peft_model, adapter_name, kwargs)
    if verify:
        verify_plan(plan, peft_model, adapter_name)
    peft_model.loraplan_fast_report = _fast_path(peft_model, fast)
    if peft_model.loraplan_fast_report is not None:
        _sharding(plan, peft_model, peft_model.loraplan_fast_report)
    return peft_model
