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
from loraplan.compiler.lora_options import quantized_names
from loraplan.compiler.memory import estimate_memory
from loraplan.compiler.memory_distributed import fit_diagnostics
from loraplan.compiler.plan import Plan
from loraplan.compiler.targets import resolve_targets
from loraplan.compiler.totals import compute_totals
from loraplan.schema import regex_budget
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
# The rest of LoraConfig, passed only when set (so plans without them keep their peft_config).
# runtime_config is not among them: PEFT does not convert a dict there (runtime/apply.py builds it).
PEFT_OPTIONAL_KEYS = (
    "revision",
    "trainable_token_indices",
    "layer_replication",
    "ensure_weight_tying",
    "use_qalora",
    "qalora_group_size",
    "eva_config",
    "corda_config",
    "lora_ga_config",
    "kasa_config",
    "use_bdlora",
    "monteclora_config",
    "arrow_config",
    "velora_config",
    "alora_invocation_tokens",
    "megatron_config",
    "megatron_core",
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

    arch = from_module(architecture)
    arch.origin = {"kind": "module", "class": type(architecture).__name__}
    return with_variant(arch, config, source)


def peft_config(config: Config) -> dict[str, Any]:
    """LoraConfig kwargs that make PEFT select exactly the plan: the user's own settings.

    PEFT applies its own rewrites (defaults, all-linear, the MoE conversion) to these again, and
    the plan replays the same rewrites, so passing them unchanged selects the planned set.
    """
    data = config.lora.model_dump(mode="json")
    out = {k: data[k] for k in PEFT_CONFIG_KEYS if k in data}
    fields = type(config.lora).model_fields
    for key in PEFT_OPTIONAL_KEYS:
        default = fields[key].get_default(call_default_factory=True)
        if data[key] != (default.model_dump(mode="json") if hasattr(default, "model_dump") else default):
            out[key] = data[key]
    if float(out["lora_alpha"]).is_integer():
        out["lora_alpha"] = int(out["lora_alpha"])
    out["alpha_pattern"] = {k: (int(v) if float(v).is_integer() else v) for k, v in out["alpha_pattern"].items()}
    return out


def _replicated(config: Config, arch: Architecture, source: SourceDoc | None) -> tuple[Architecture, list]:
    """The module tree after PEFT's layer_replication, and what the plan says about it (LP567)."""
    from loraplan.compiler.replication import ReplicationError, layer_list, replicate

    ranges = config.lora.layer_replication
    if not ranges:
        return arch, []
    try:
        new = replicate(arch, ranges)
    except ReplicationError as exc:
        return arch, _located([Diagnostic("LP567", "error", str(exc))], source, ("lora", "layer_replication"))
    stack = layer_list(arch)
    message = (f"layer_replication rebuilds `{stack}` from {arch.layer_stacks.get(stack, '?')} into "
               f"{new.layer_stacks[stack]} layers; copies share their base weights (counted once) and each gets "
               "its own adapters")
    return new, _located([Diagnostic("LP567", "info", message)], source, ("lora", "layer_replication"))


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
    fingerprint = arch.fingerprint  # of the model apply() receives, before PEFT replicates layers
    try:
        with regex_budget.budget():
            config, arch, notes = axolotl.expand(config, arch, source)
            arch, replication = _replicated(config, arch, source)
            res = resolve_targets(config.lora, arch)
            notes += axolotl.patch_resolution(config, res, arch, source)
            modules, params = build_injections(config.lora, res, arch, quantized_names(config, arch))
            params = axolotl.patch_parameters(config, res, params)
            coverage = build_coverage(config.lora, res, arch, modules, params)
            totals = compute_totals(config, res, arch)
            diagnostics = notes + axolotl.findings(
                config, res, diagnose(config, arch, res, modules, params, coverage, source) + replication, source)
            diagnostics += _prequantized(config, arch, modules, params, source)
            memory = estimate_memory(config, arch, totals, modules, params)
            diagnostics += fit_diagnostics(config, memory, source)
    except regex_budget.RegexBudgetError as exc:
        raise _budget_error(exc, config, source) from None
    return Plan(
        architecture_source=dict(arch.origin) or {"kind": arch.source},
        config=config.model_dump(mode="json"),
        architecture=arch.name,
        model_class=arch.model_class,
        architecture_fingerprint=fingerprint,
        injections=modules,
        parameters=params,
        modules_to_save=list(res.modules_to_save),
        coverage=coverage,
        totals=totals,
        memory=memory,
        diagnostics=sort_diagnostics(diagnostics),
        peft_config=peft_config(config),
        module_tree=axolotl.module_tree(arch, notes),
    )


def _prequantized(config: Config, arch: Architecture, modules: list, params: list,
                  source: SourceDoc | None) -> list[Diagnostic]:
    from loraplan.compiler.prequantized import diagnose as diagnose_stored

    found = diagnose_stored(config, arch, [i.module for i in [*modules, *params]])
    if source is None:
        return found
    keys = {"LP528": ("quantization", "load_in_4bit" if config.load_in_4bit else "load_in_8bit")}
    return [d.at(source.span(keys.get(d.code, ("base_model",))), source.file) for d in found]


def _budget_error(exc: regex_budget.RegexBudgetError, config: Config, source: SourceDoc | None) -> Exception:
    """LP550 at the pattern the user wrote (its key when it is a rank/alpha_pattern key)."""
    from loraplan.errors import ConfigError

    path, is_key = _find_text(config.model_dump(mode="python"), exc.pattern)
    diag = Diagnostic(
        "LP550", "error", f"regex `{_short(exc.pattern)}` is too slow to match: {exc.reason}",
        hint="nested repeats like `(a+)+` or `(.*)*` backtrack exponentially; write each repeat once, "
             "e.g. `.*\\.(q_proj|v_proj)`",
    )
    if source is not None:
        span = source.key_span(path) if is_key else source.span(path)
        diag = diag.at(span, source.file)
    return ConfigError("a regex in the config is too slow to match", [diag])


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _find_text(data: Any, text: str, path: tuple = ()) -> tuple[tuple, bool]:
    """The path of the first value (or key) equal to `text` in the config data; () when absent."""
    if isinstance(data, dict):
        for k, v in data.items():
            if k == text:
                return (*path, k), True
            found, is_key = _find_text(v, text, (*path, k))
            if found:
                return found, is_key
    elif isinstance(data, (list, tuple, set)):
        for i, v in enumerate(sorted(data, key=str) if isinstance(data, set) else data):
            found, is_key = _find_text(v, text, (*path, i))
            if found:
                return found, is_key
    elif data == text:
        return path, False
    return (), False


def check_loaded(
    result: LoadResult, arch_override: str | None = None, offline_only: bool = True, *, network: bool = False
) -> tuple[Plan | None, list[Diagnostic]]:
    """Compile a loaded config when its architecture resolves; never raises for bad input.

    offline_only: `validate`'s mode: the hub only when `network`; transformers imported only for
    a config.json; a model out of reach gives the LP520 warning ("targets not checked"), never
    silence. Otherwise `plan`'s: the hub unless HF_HUB_OFFLINE, and an unresolved name is an error.
    Returns the plan (None when none was made) and the compiler's diagnostics.
    """
    from loraplan.errors import LoraplanError

    config = result.config
    if config is None:
        return None, []
    try:
        if offline_only:
            from loraplan.compiler.resolve import resolve_for_check

            arch, skipped = resolve_for_check(config, arch_override, result.source, network=network)
            if arch is None:
                return None, _located(skipped, result.source)  # --arch: at base_model, the key it overrides
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


def _located(
    diagnostics: list[Diagnostic], source: SourceDoc | None, path: tuple = ("base_model",)
) -> list[Diagnostic]:
    if source is None:
        return list(diagnostics)
    out = []
    for d in diagnostics:
        if d.line is None:
            d = d.at(source.key_span(path), source.file)
        out.append(d)
    return out
