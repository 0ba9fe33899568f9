"""Config + Architecture -> Plan: which modules get which adapters, what it costs, what is wrong.

The matching is PEFT's (see matching.py / targets.py); this module assembles the Plan and is the
entry point for the API (`loraplan.compile`), `plan` and `validate`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from loraplan.compiler import axolotl
from loraplan.compiler.architecture import Architecture
from loraplan.compiler.diagnose import diagnose
from loraplan.compiler.injections import build_coverage, build_injections
from loraplan.compiler.memory import estimate_memory
from loraplan.compiler.plan import Plan
from loraplan.compiler.targets import resolve_targets
from loraplan.compiler.totals import compute_totals
from loraplan.schema.diagnostic import Diagnostic, sort_diagnostics

if TYPE_CHECKING:
    from loraplan.schema.config import Config
    from loraplan.schema.load import LoadResult
    from loraplan.schema.yaml_source import SourceDoc

PEFT_CONFIG_KEYS = (
    "r",
    "lora_alpha",
    "lora_dropout",
    "target_modules",
    "exclude_modules",
    "target_parameters",
    "layers_to_transform",
    "layers_pattern",
    "rank_pattern",
    "alpha_pattern",
    "use_rslora",
    "use_dora",
    "bias",
    "lora_bias",
    "init_lora_weights",
    "modules_to_save",
    "fan_in_fan_out",
    "loftq_config",
    "task_type",
)


def _architecture(
    config: Config, architecture: Any, source: SourceDoc | None, arch_override: str | None
) -> Architecture:
    from loraplan.compiler.resolve import resolve_architecture, with_variant

    if isinstance(architecture, Architecture):
        return with_variant(architecture, config, source)
    if architecture is None or isinstance(architecture, str):
        override = architecture if isinstance(architecture, str) else arch_override
        return resolve_architecture(config, override, source)
    from loraplan.compiler.sources.from_module import from_module

    return with_variant(from_module(architecture), config, source)


def peft_config(config: Config) -> dict[str, Any]:
    """LoraConfig kwargs that make PEFT select exactly the plan: the user's own settings.

    PEFT applies its own rewrites (defaults, all-linear, the MoE conversion) to these again, and
    the plan replays the same rewrites, so passing them unchanged selects the planned set.
    """
    data = config.lora.model_dump(mode="json")
    out = {k: data[k] for k in PEFT_CONFIG_KEYS if k in data}
    if float(out["lora_alpha"]).is_integer():
        out["lora_alpha"] = int(out["lora_alpha"])
    out["alpha_pattern"] = {k: (int(v) if float(v).is_integer() else v) for k, v in out["alpha_pattern"].items()}
    return out


def compile_plan(
    config: Config,
    architecture: Architecture | str | Any | None = None,
    *,
    source: SourceDoc | None = None,
    arch_override: str | None = None,
) -> Plan:
    """Resolve `config` against an architecture into a Plan (raises ResolveError when none resolves).

    `architecture`: an Architecture, a catalog name / path / hub id, a live nn.Module, or None (from
    the config: `arch_override`, then `architecture:`, then `base_model`). Diagnostics are located
    in `source` when given.
    """
    arch = _architecture(config, architecture, source, arch_override)
    config, arch, notes = axolotl.expand(config, arch, source)
    res = resolve_targets(config.lora, arch)
    notes += axolotl.patch_resolution(config, res, arch, source)
    modules, params = build_injections(config.lora, res, arch)
    params = axolotl.patch_parameters(config, res, params)
    coverage = build_coverage(config.lora, res, arch, modules, params)
    totals = compute_totals(config, res, arch)
    diagnostics = notes + axolotl.findings(
        config, res, diagnose(config, arch, res, modules, params, coverage, source), source)
    return Plan(
        config=config.model_dump(mode="json"),
        architecture=arch.name,
        model_class=arch.model_class,
        architecture_fingerprint=arch.fingerprint,
        injections=modules,
        parameters=params,
        modules_to_save=list(res.modules_to_save),
        coverage=coverage,
        totals=totals,
        memory=estimate_memory(config, arch, totals, modules, params),
        diagnostics=sort_diagnostics(diagnostics),
        peft_config=peft_config(config),
        module_tree=axolotl.module_tree(arch, notes),
    )


def check_loaded(
    result: LoadResult, arch_override: str | None = None, offline_only: bool = True
) -> tuple[Plan | None, list[Diagnostic]]:
    """Compile a loaded config when its architecture resolves; never raises for bad input.

    offline_only: resolve from the bundled catalog only (no torch), as `validate` does; when the
    architecture cannot be resolved that way, returns (None, []) so validation stays quiet.
    Returns the plan (None when none was made) and the compiler's diagnostics.
    """
    from loraplan.errors import LoraplanError

    config = result.config
    if config is None:
        return None, []
    try:
        if offline_only:
            from loraplan.compiler.resolve import can_resolve_offline, resolve_architecture

            if not can_resolve_offline(config, arch_override):
                return None, []
            arch = resolve_architecture(config, arch_override, result.source, allow_torch=False)
        else:
            arch = None
        plan = compile_plan(config, arch, source=result.source, arch_override=arch_override)
    except LoraplanError as exc:
        return None, sort_diagnostics(_located(exc.diagnostics, result.source))
    except Exception as exc:  # a compiler bug must not become a traceback for the user
        diag = Diagnostic("LP512", "error", f"internal error while compiling the plan: {type(exc).__name__}: {exc}",
                          hint="please report this with the config")
        return None, _located([diag], result.source)
    # One finding per place: where the schema already reported an error (e.g. LP305 dropout with
    # target_parameters), the compiler's consequence of the same mistake (LP505) is not repeated.
    taken = {(d.line, d.column) for d in result.diagnostics if d.severity == "error" and d.line is not None}
    return plan, [d for d in plan.diagnostics if d.severity != "error" or (d.line, d.column) not in taken]


def _located(diagnostics: list[Diagnostic], source: SourceDoc | None) -> list[Diagnostic]:
    if source is None:
        return list(diagnostics)
    out = []
    for d in diagnostics:
        if d.line is None:
            d = d.at(source.key_span(("base_model",)), source.file)
        out.append(d)
    return out
