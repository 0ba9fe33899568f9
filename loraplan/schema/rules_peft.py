"""Cross-field rules for the LoraConfig options beyond plain LoRA: variants, data-driven inits,
Arrow, Megatron, QALoRA, aLoRA, layer replication. Each mirrors a PEFT check (cited) or a case
where PEFT silently ignores the option. Registered into rules.RULES on import.
"""

from __future__ import annotations

from collections.abc import Iterator

from loraplan.schema.config import Config
from loraplan.schema.diagnostic import Diagnostic
from loraplan.schema.rules import _d, _set, rule
from loraplan.schema.yaml_source import SourceDoc

# LoraConfig fields PEFT's resolve_lora_variant treats as variants (metadata is_lora_variant, plus
# init_lora_weights 'mica'); lora.Linear maps each alone to a variant class and refuses combinations.
VARIANT_FIELDS = ("use_dora", "arrow_config", "use_bdlora", "alora_invocation_tokens", "velora_config",
                  "monteclora_config", "kasa_config")


def active_variants(lora) -> list[str]:
    """The LoRA variants a config requests, under PEFT's names."""
    out = [f for f in VARIANT_FIELDS if getattr(lora, f)]
    if lora.init_lora_weights == "mica":
        out.append("init_lora_weights")
    return out


@rule
def one_variant(c: Config, doc: SourceDoc) -> Iterator[Diagnostic]:
    names = active_variants(c.lora)
    if len(names) > 1 and set(names) != {"use_dora", "init_lora_weights"}:  # that pair: LP306 (rules.py)
        shown = ["init_lora_weights: mica" if n == "init_lora_weights" else n for n in names]
        yield _d(doc, ("lora", names[1]), "LP318", "error",
                 f"{' and '.join(shown)} are LoRA variants PEFT does not combine (lora.Linear raises 'Invalid or "
                 "unsupported variant combination')", hint="keep one of them")


@rule
def arrow_needs_trained_adapters(c: Config, doc: SourceDoc) -> Iterator[Diagnostic]:
    if c.lora.arrow_config is not None:
        yield _d(doc, ("lora", "arrow_config"), "LP319", "error",
                 "arrow_config routes between adapters that are already trained: get_peft_model with it fails "
                 "(ArrowConfig.task_adapter_names is only set by peft's create_arrow_model)",
                 hint="train plain LoRA adapters, then combine them with peft.create_arrow_model")


@rule
def megatron_rules(c: Config, doc: SourceDoc) -> Iterator[Diagnostic]:
    lora = c.lora
    if lora.megatron_config and lora.use_dora:
        yield _d(doc, ("lora", "use_dora"), "LP306", "error", "DoRA does not support megatron_core (PEFT refuses "
                 "use_dora with megatron_config)", hint="set `use_dora: false`")
    if lora.megatron_config:
        yield _d(doc, ("lora", "megatron_config"), "LP320", "warning",
                 f"megatron_config only changes Megatron-LM's ColumnParallelLinear / RowParallelLinear layers; PEFT "
                 f"imports `{lora.megatron_core}` when it injects, so it must be installed")
    elif _set(doc, ("lora", "megatron_core")):
        yield _d(doc, ("lora", "megatron_core"), "LP307", "warning",
                 "megatron_core has no effect without megatron_config")


@rule
def qalora_rules(c: Config, doc: SourceDoc) -> Iterator[Diagnostic]:
    lora = c.lora
    if lora.use_qalora:
        yield _d(doc, ("lora", "use_qalora"), "LP321", "warning",
                 "QALoRA is implemented in PEFT for GPTQ-quantized layers only; on an unquantised or bitsandbytes "
                 "base PEFT ignores use_qalora (A keeps its r x in_features shape)",
                 hint="remove use_qalora, or load a GPTQ model (which loraplan does not plan)")
    elif _set(doc, ("lora", "qalora_group_size")):
        yield _d(doc, ("lora", "qalora_group_size"), "LP307", "warning",
                 "qalora_group_size has no effect unless use_qalora is true")


@rule
def data_driven_inits(c: Config, doc: SourceDoc) -> Iterator[Diagnostic]:
    lora = c.lora
    init = lora.init_lora_weights
    if init == "lora_ga" and lora.lora_ga_config is None:
        yield _d(doc, ("lora", "init_lora_weights"), "LP309", "error",
                 "init_lora_weights 'lora_ga' needs lora_ga_config (peft's preprocess_loraga refuses it without)",
                 hint="add `lora_ga_config: {direction: ArB2r, scale: stable}`")
    for key, mode in (("eva_config", "eva"), ("corda_config", "corda"), ("lora_ga_config", "lora_ga")):
        if getattr(lora, key) is not None and init != mode:
            yield _d(doc, ("lora", key), "LP307", "warning",
                     f"{key} is ignored unless init_lora_weights is '{mode}'")


@rule
def alora_rules(c: Config, doc: SourceDoc) -> Iterator[Diagnostic]:
    lora = c.lora
    if lora.alora_invocation_tokens is not None and lora.task_type != "CAUSAL_LM":
        yield _d(doc, ("lora", "alora_invocation_tokens"), "LP322", "warning",
                 f"aLoRA is only supported for task_type CAUSAL_LM (PEFT warns), not {lora.task_type}",
                 hint="set `task_type: CAUSAL_LM`")


@rule
def layer_replication_ranges(c: Config, doc: SourceDoc) -> Iterator[Diagnostic]:
    for i, (start, end) in enumerate(c.lora.layer_replication or []):
        if start >= end:
            yield _d(doc, ("lora", "layer_replication", i), "LP323", "error",
                     f"layer_replication range [{start}, {end}) is empty: PEFT copies layers start..end-1",
                     hint=f"write [{start}, {start + 1}] to copy layer {start}", key=False)
    if c.lora.layer_replication is not None and not c.lora.layer_replication:
        yield _d(doc, ("lora", "layer_replication"), "LP307", "warning",
                 "layer_replication is empty: PEFT ignores it (the layers stay as they are)")
