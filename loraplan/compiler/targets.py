"""Which modules and parameters PEFT adapts for a config, in PEFT's order, with PEFT's refusals.

`resolve_targets` replays `get_peft_model` -> `inject_adapter` step by step on Architecture data:
task-type heads added to modules_to_save, the transformers-v5 MoE conversion, the per-model
default targets, all-linear expansion, condensing of 20+ names, per-module matching, parameter
targeting, and the errors PEFT would raise (collected here instead of raised one at a time).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from loraplan.compiler import matching as mt
from loraplan.compiler import weight_tying
from loraplan.compiler.architecture import Architecture, ModuleInfo, ParamInfo
from loraplan.compiler.counting import conv_groups
from loraplan.compiler.moe_conversion import MoeConversion, convert
from loraplan.compiler.peft_tables import (
    INCLUDE_LINEAR_LAYERS_SHORTHAND,
    MAMBA_INCOMPATIBLE_NAMES,
    MAMBA_MODEL_TYPES,
    TASK_MODULES_TO_SAVE_AFTER,
    TASK_MODULES_TO_SAVE_BEFORE,
)


@dataclass
class Refusal:
    """An error PEFT raises for this config on this model (get_peft_model would not return)."""

    kind: str  # type | unsupported | mamba | moe_partial | no_match | all_excluded | param_invalid | mts_*
    message: str
    names: list[str] = field(default_factory=list)
    option: str | None = None  # the lora option PEFT objects to, when it is one


@dataclass
class ModuleTarget:
    name: str
    module: ModuleInfo
    r: int
    alpha: float
    rank_key: str | None = None
    alpha_key: str | None = None
    shape_r: int | None = None  # the rank of its tensors when they are another adapter's (weight tying)


@dataclass
class ParamTarget:
    name: str  # module.param, as PEFT names it in targeted_parameter_names
    module: ModuleInfo
    shape: tuple[int, ...]
    r: int
    alpha: float
    rank_key: str | None = None
    alpha_key: str | None = None


@dataclass
class Resolution:
    spec: mt.Spec  # the config after PEFT's rewrites
    modules: list[ModuleTarget]
    parameters: list[ParamTarget]
    modules_to_save: list[str]  # module names wrapped in ModulesToSaveWrapper, PEFT's order
    excluded: list[str]
    default_used: list[str] | str | None = None
    all_linear: set[str] | None = None
    condensed: set[str] | None = None
    moe: MoeConversion | None = None
    refusals: list[Refusal] = field(default_factory=list)
    fan_in_fan_out_forced: list[tuple[str, bool]] = field(default_factory=list)  # (module, value PEFT set)
    unwrappable: list[str] = field(default_factory=list)  # matched modules of a type LoRA cannot wrap
    tied: list[str] = field(default_factory=list)  # adapted last, tied to the embedding (ensure_weight_tying)


def _param_table(arch: Architecture) -> list[tuple[str, str, tuple[int, ...]]]:
    """(module, full name, shape) per module in named_modules order, tied duplicates included."""
    shapes = {p.name: p.shape for p in arch.parameters}
    by_module: dict[str, list[tuple[str, tuple[int, ...]]]] = {}
    for p in arch.parameters:
        by_module.setdefault(p.module, []).append((p.name, p.shape))
    for dup, src in getattr(arch, "tied_parameters", {}).items():
        owner = dup.rpartition(".")[0]
        if src in shapes:
            by_module.setdefault(owner, []).append((dup, shapes[src]))
    order = [""] + [m.name for m in arch.modules]
    return [(m, n, s) for m in order for n, s in by_module.get(m, [])]


def _check_module(res: Resolution, arch: Architecture, m: ModuleInfo, lora: Any) -> bool:
    """Record what PEFT refuses for a matched module; False when LoRA cannot wrap its type at all."""
    leaf = m.name.rsplit(".", 1)[-1]
    if arch.model_type in MAMBA_MODEL_TYPES and leaf in MAMBA_INCOMPATIBLE_NAMES:
        res.refusals.append(Refusal("mamba", f"PEFT refuses `{leaf}` on Mamba-based models ({arch.model_type})",
                                    [m.name]))
    if not mt.wrappable(m):
        res.refusals.append(Refusal("type", f"{m.cls} ({m.kind})", [m.name]))
        res.unwrappable.append(m.name)
        return False
    if m.kind == "embedding" and lora.lora_bias:
        res.refusals.append(Refusal("unsupported", "lora_bias is not supported on Embedding layers", [m.name]))
    if m.kind == "mha" and lora.use_dora:
        res.refusals.append(Refusal("unsupported", "DoRA is not supported on MultiheadAttention", [m.name]))
    if m.kind == "mha" and any(m.extra.get(k, m.in_features) != m.in_features for k in ("kdim", "vdim")):
        res.refusals.append(Refusal("unsupported", "PEFT adapts MultiheadAttention only with equal query/key/value "
                                                   "dims", [m.name]))
    if _is_mica(lora) and m.kind not in ("linear", "conv1d_gpt2", "embedding"):
        res.refusals.append(Refusal("unsupported", f"MiCA init is not supported on {m.cls}", [m.name]))
    return True


def _is_mica(lora: Any) -> bool:
    return isinstance(lora.init_lora_weights, str) and lora.init_lora_weights.lower() == "mica"


def resolve_targets(lora: Any, arch: Architecture) -> Resolution:
    """Replay PEFT's injection for `lora` (a LoraSection) on `arch`."""
    spec = mt.Spec.from_lora(lora)
    if spec.task_type in TASK_MODULES_TO_SAVE_BEFORE:
        spec.modules_to_save = (spec.modules_to_save or []) + TASK_MODULES_TO_SAVE_BEFORE[spec.task_type]
    res = Resolution(spec=spec, modules=[], parameters=[], modules_to_save=[], excluded=[])
    res.tied, mts_tied = weight_tying.rewrite(spec, arch, lora)
    res.moe = convert(spec, arch)
    if res.moe is not None and res.moe.refused:
        res.refusals.append(Refusal("moe_partial", res.moe.refused))
        return res
    if spec.target_modules is None:
        default = mt.default_targets(arch.model_type)
        if default is not None:
            res.default_used = default
            spec.target_modules = default if isinstance(default, str) else set(default)
        elif not spec.target_parameters:
            res.refusals.append(Refusal("no_match", f"no target_modules given and PEFT has no default for "
                                                    f"model type '{arch.model_type}'"))
            return res
    tm = spec.target_modules
    if isinstance(tm, str) and tm.lower() == INCLUDE_LINEAR_LAYERS_SHORTHAND:
        res.all_linear = mt.all_linear_names(arch, spec.task_type)
        spec.target_modules = set(res.all_linear)
    names = [m.name for m in arch.modules]
    res.condensed = mt.condense(spec, ["", *names])
    if res.condensed is not None:
        spec.target_modules = res.condensed

    unmatched = 0
    fifo = bool(lora.fan_in_fan_out)
    deferred: list[ModuleInfo] = []  # tied to the embedding: adapted last (ensure_weight_tying)
    for m in arch.modules:
        if res.tied and weight_tying.is_tied(m.name, res.tied):
            deferred.append(m)
            continue
        verdict = mt.check_target_module_exists(spec, m.name)
        if verdict == mt.EXCLUDED:
            res.excluded.append(m.name)
            continue
        if verdict == mt.NO:
            unmatched += 1
            continue
        if not _check_module(res, arch, m, lora):
            continue
        if m.kind == "conv1d_gpt2" and not fifo:
            fifo = True
            res.fan_in_fan_out_forced.append((m.name, True))
        elif m.kind == "linear" and fifo:
            fifo = False
            res.fan_in_fan_out_forced.append((m.name, False))
        r, alpha, rk, ak = mt.rank_and_alpha(spec, m.name)
        if m.kind in ("conv1d", "conv2d", "conv3d") and r % conv_groups(m) != 0:
            res.refusals.append(Refusal("unsupported", f"rank {r} is not divisible by the conv's "
                                                       f"groups={conv_groups(m)}", [m.name]))
        res.modules.append(ModuleTarget(m.name, m, r, alpha, rk, ak))

    if spec.target_parameters:
        _resolve_parameters(res, arch, lora, fifo)
    # The tied adapters take the embedding adapter's tensors, unless the init then assigns new ones of
    # the module's own rank (every weight-reading init and MiCA do; true/false/gaussian/eva init in place).
    keeps = not isinstance(lora.init_lora_weights, str) or lora.init_lora_weights in ("gaussian", "eva")
    embed_r = next((t.r for t in res.modules if t.name == arch.input_embedding), None) if keeps else None
    for m in deferred:
        if _check_module(res, arch, m, lora):
            r, alpha, rk, ak = mt.rank_and_alpha(spec, m.name)
            tied_r = embed_r if m.kind in ("linear", "conv1d_gpt2") else None  # Embedding ignores tied_adapter
            res.modules.append(ModuleTarget(m.name, m, r, alpha, rk, ak, shape_r=tied_r))

    if not res.modules and not res.parameters and not res.unwrappable:
        if res.excluded and not unmatched:
            res.refusals.append(Refusal("all_excluded", "every matched module is excluded"))
        else:
            res.refusals.append(Refusal("no_match", "no module or parameter matches the targets"))

    after = TASK_MODULES_TO_SAVE_AFTER.get(spec.task_type or "")
    wrap = (spec.modules_to_save or []) + (after or [])
    res.modules_to_save = mt.modules_to_save_hits(wrap, names)
    _check_modules_to_save(res, arch)
    adapted = {t.name for t in res.modules}
    for name in mt.modules_to_save_hits(mts_tied, names):  # tied copies of the saved embedding
        if name in adapted:
            res.refusals.append(Refusal("mts_adapted", "it is adapted by LoRA too", [name]))
    return res


def _check_modules_to_save(res: Resolution, arch: Architecture) -> None:
    """AuxiliaryTrainingWrapper.check_module: no wrapper around a LoRA layer or a module container."""
    adapted = {t.name for t in res.modules} | {p.module.name for p in res.parameters}
    for name in res.modules_to_save:
        m = arch.module(name)
        if name in adapted:
            res.refusals.append(Refusal("mts_adapted", "it is adapted by LoRA too", [name]))
        elif m is not None and m.cls in ("ModuleList", "ModuleDict", "ParameterList", "ParameterDict"):
            res.refusals.append(Refusal("mts_container", f"it is a {m.cls}", [name]))


def _resolve_parameters(res: Resolution, arch: Architecture, lora: Any, fifo: bool) -> None:
    """BaseTuner._inject_parameters: `module.param` names, exact or as `.suffix`."""
    spec = res.spec
    targets = sorted(set(spec.target_parameters or []))
    adapted = {t.name for t in res.modules}
    for module_name, key, shape in _param_table(arch):
        if not (key in targets or any(key.endswith(f".{t}") for t in targets)):
            continue
        m = arch.module(module_name)
        if m is None:  # a parameter of the root module
            res.refusals.append(Refusal("param_invalid", "PEFT cannot target a parameter of the top-level module",
                                        [key]))
            continue
        problems = []
        if module_name in adapted:
            problems.append("its module is also adapted through target_modules")
        if len(shape) not in (2, 3):
            problems.append(f"it is {len(shape)}-dimensional (PEFT adapts 2-D and 3-D parameters)")
        leaf = module_name.rsplit(".", 1)[-1]
        if arch.model_type in MAMBA_MODEL_TYPES and leaf in MAMBA_INCOMPATIBLE_NAMES:
            problems.append(f"PEFT refuses `{leaf}` on Mamba-based models")
        for p in problems:
            res.refusals.append(Refusal("param_invalid", p, [key]))
        # lora.ParamWrapper.__init__ refuses these options
        options = [("lora_dropout", lora.lora_dropout != 0, f"lora_dropout {lora.lora_dropout} (must be 0)"),
                   ("init_lora_weights", _is_mica(lora), "MiCA init"),
                   ("fan_in_fan_out", fifo, "fan_in_fan_out true when PEFT reaches it"),
                   ("lora_bias", lora.lora_bias, "lora_bias"), ("use_dora", lora.use_dora, "DoRA")]
        for option, bad, text in options:
            if bad:
                res.refusals.append(Refusal("param_invalid", f"parameter adapters do not support {text}", [key],
                                            option))
        r, alpha, rk, ak = mt.rank_and_alpha(spec, key)
        res.parameters.append(ParamTarget(key, m, tuple(shape), r, alpha, rk, ak))


def param_info(arch: Architecture, name: str) -> ParamInfo | None:
    return next((p for p in arch.parameters if p.name == name), None)
