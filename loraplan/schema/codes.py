"""Every diagnostic code loraplan emits, with its one-line meaning (the single source for docs).

LP1xx: YAML text; LP2xx: schema; LP3xx: cross-field rules; LP4xx: Axolotl dialect;
LP5xx: compiler (architecture and targets); LP6xx: runtime.
"""

from __future__ import annotations

CODES: dict[str, str] = {
    # YAML text
    "LP101": "YAML syntax error",
    "LP102": "duplicate key (YAML keeps only the last one, silently)",
    "LP103": "empty file",
    "LP104": "top level is not a mapping",
    "LP105": "file is not valid UTF-8",
    "LP106": "alias expansion too large (possible alias bomb) or recursive alias",
    "LP107": "file too large (size, number of values or nesting depth)",
    "LP108": "file cannot be read",
    "LP109": "mapping key is not a plain scalar",
    # schema
    "LP201": "unknown key",
    "LP202": "missing required key",
    "LP203": "wrong type",
    "LP204": "value out of range",
    "LP205": "not one of the allowed options",
    "LP206": "invalid regular expression",
    "LP207": "invalid value",
    # cross-field rules
    "LP301": "qlora needs 4-bit loading",
    "LP302": "4-bit and 8-bit loading are exclusive",
    "LP303": "layers_pattern needs layers_to_transform",
    "LP304": "layer filter with a regex-string target_modules",
    "LP305": "target_parameters needs lora_dropout 0",
    "LP306": "option not supported with DoRA",
    "LP307": "option ignored in this configuration",
    "LP308": "nothing to target",
    "LP309": "init_lora_weights needs a companion setting",
    "LP310": "dtype mismatch",
    "LP311": "quantized base with adapter lora",
    "LP312": "rank_pattern / alpha_pattern key is an invalid regex or value",
    "LP313": "layers_to_transform index invalid",
    "LP314": "lora_bias only with default init",
    "LP315": "option not supported with target_parameters",
    "LP316": "orthogonal init needs an even rank",
    "LP317": "init needs unquantised base weights (PiSSA, CorDA, MiCA)",
    "LP318": "LoRA variants PEFT does not combine",
    "LP319": "arrow_config needs already trained adapters (create_arrow_model)",
    "LP320": "megatron_config needs Megatron-LM layers and megatron_core",
    "LP321": "QALoRA is implemented for GPTQ layers only",
    "LP322": "aLoRA needs task_type CAUSAL_LM",
    "LP323": "layer_replication range invalid",
    # Axolotl dialect
    "LP401": "misspelt or unknown adapter key",
    "LP402": "Axolotl key loraplan does not model (ignored)",
    "LP403": "Axolotl adapter type loraplan does not plan",
    "LP404": "conflicting Axolotl keys",
    "LP405": "unknown Axolotl key that looks misspelt (Axolotl ignores it)",
    # compiler
    "LP501": "architecture cannot be resolved offline",
    "LP502": "target pattern matches nothing",
    "LP503": "target pattern covers only part of the layers",
    "LP504": "adapter covers a small share of the decoder blocks",
    "LP505": "matched module type LoRA cannot wrap",
    "LP506": "MoE experts are fused parameters, not modules",
    "LP507": "target many serving stacks cannot load (lm_head, embeddings, routers)",
    "LP508": "rank_pattern / alpha_pattern / exclude_modules key matches nothing",
    "LP509": "PEFT quirk that changes the result silently",
    "LP510": "no target given: PEFT's per-model default is used",
    "LP511": "modules_to_save matches nothing",
    "LP512": "architecture could not be built",
    "LP513": "fan_in_fan_out set to fit the module type",
    "LP514": "target_parameters name matches nothing",
    "LP515": "modules_to_save wraps a module PEFT cannot save (an adapted layer or a module list)",
    "LP560": "init cannot run on a matched module (PEFT raises)",
    "LP561": "LoRA variant not supported on a matched module",
    "LP562": "rank too large for a matched layer (MiCA, KaSA)",
    "LP563": "PiSSA / OLoRA shrink the adapter of a layer narrower than r",
    "LP564": "init needs a preprocessing step with data at apply time",
    "LP565": "BD-LoRA block pattern or divisibility problem",
    "LP566": "trainable_token_indices problem or summary",
    "LP567": "layer_replication problem or summary",
    "LP568": "ensure_weight_tying has nothing to tie",
    "LP569": "option PEFT ignores on these layers",
    "LP570": "PEFT builds a broken adapter on this layer (wrong shapes or values)",
    "LP571": "run-time option: what it does during training or serving",
    # runtime
    "LP601": "plan does not match the model",
    "LP602": "adapted model differs from the plan",
    "LP603": "layer falls back from the fast path to PEFT's",
}


def describe(code: str) -> str:
    return CODES.get(code, "")
