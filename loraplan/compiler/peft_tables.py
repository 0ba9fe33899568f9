"""PEFT's (and transformers') lookup tables that target matching depends on, copied as data.

The compiler must not import peft, so the few tables PEFT consults while it matches targets live
here, pinned to the PEFT and transformers versions below. tests/compiler/test_matching.py checks
every table against the installed packages, so a version bump that changes one fails loudly.
"""

from __future__ import annotations

PEFT_VERSION = "0.21.2"
TRANSFORMERS_VERSION = "5.23.0"

# peft.utils.constants
INCLUDE_LINEAR_LAYERS_SHORTHAND = "all-linear"
MIN_TARGET_MODULES_FOR_OPTIMIZATION = 20
EMBEDDING_LAYER_NAMES = ("embed_tokens", "lm_head")
SEQ_CLS_HEAD_NAMES = ("score", "classifier")

# peft.utils.constants.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING: used when target_modules is unset.
DEFAULT_TARGET_MODULES: dict[str, list[str] | str] = {
    "t5": ["q", "v"],
    "mt5": ["q", "v"],
    "bart": ["q_proj", "v_proj"],
    "gpt2": ["c_attn"],
    "bloom": ["query_key_value"],
    "blip-2": ["q", "v", "q_proj", "v_proj"],
    "opt": ["q_proj", "v_proj"],
    "gptj": ["q_proj", "v_proj"],
    "gpt_neox": ["query_key_value"],
    "gpt_neo": ["q_proj", "v_proj"],
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "xlm-roberta": ["query", "value"],
    "electra": ["query", "value"],
    "deberta-v2": ["query_proj", "value_proj"],
    "deberta": ["in_proj"],
    "layoutlm": ["query", "value"],
    "llama": ["q_proj", "v_proj"],
    "llama4": ["q_proj", "v_proj"],
    "chatglm": ["query_key_value"],
    "gpt_bigcode": ["c_attn"],
    "mpt": ["Wqkv"],
    "RefinedWebModel": ["query_key_value"],
    "RefinedWeb": ["query_key_value"],
    "falcon": ["query_key_value"],
    "btlm": ["c_proj", "c_attn"],
    "codegen": ["qkv_proj"],
    "mistral": ["q_proj", "v_proj"],
    "mixtral": ["q_proj", "v_proj"],
    "stablelm": ["q_proj", "v_proj"],
    "phi": ["q_proj", "v_proj", "fc1", "fc2"],
    "gemma": ["q_proj", "v_proj"],
    "gemma2": ["q_proj", "v_proj"],
    "gemma3_text": ["q_proj", "v_proj"],
    "gemma4": ".*language_model\\..*\\.(q_proj|v_proj)",
    "qwen2": ["q_proj", "v_proj"],
    "qwen3": ["q_proj", "v_proj"],
    "nemotron_h": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "rwkv": ["key", "value", "receptance", "output"],
    "rwkv7": ["r_proj", "k_proj", "v_proj", "o_proj", "key", "value"],
}

# peft.tuners.tuners_utils._check_lora_target_modules_mamba: PEFT refuses these leaf names on these models.
MAMBA_MODEL_TYPES = frozenset({"falcon_h1", "mamba", "mamba2", "falcon_mamba", "nemotron_h"})
MAMBA_INCOMPATIBLE_NAMES = frozenset({"out_proj", "conv1d"})

# peft.utils.transformers_weight_conversion: model types whose transformers-v5 MoE layout PEFT converts
# old targets for (model_type -> conversion family), derived from transformers' _MODEL_TO_CONVERSION_PATTERN
# restricted to types with a checkpoint conversion mapping and a family PEFT knows.
MOE_CONVERSION_FAMILY: dict[str, str] = {
    "Dots3NoteTextModel": "qwen2_moe",
    "UnlimitedOcrTextModel": "qwen2_moe",
    "afmoe": "qwen2_moe",
    "beam": "qwen2_moe",
    "cohere2_moe": "qwen2_moe",
    "deepseek_v2": "qwen2_moe",
    "deepseek_v3": "qwen2_moe",
    "deepseek_v32": "qwen2_moe",
    "dots1": "qwen2_moe",
    "ernie4_5_moe": "qwen2_moe",
    "exaone_moe": "qwen2_moe",
    "flex_olmo": "qwen2_moe",
    "glm4_moe": "qwen2_moe",
    "glm4_moe_lite": "qwen2_moe",
    "glm4v_moe": "qwen2_moe",
    "glm_moe_dsa": "qwen2_moe",
    "hunyuan_v1_moe": "qwen2_moe",
    "longcat_flash": "qwen2_moe",
    "mellum": "qwen2_moe",
    "minimax": "mixtral",
    "minimax_m2": "mixtral",
    "mixtral": "mixtral",
    "olmoe": "qwen2_moe",
    "qwen3_moe": "qwen2_moe",
    "qwen3_next": "qwen2_moe",
    "qwen3_omni_moe": "qwen2_moe",
    "qwen3_omni_moe_text": "qwen2_moe",
    "qwen3_omni_moe_thinker": "qwen2_moe",
    "solar_open": "qwen2_moe",
}

# _MOE_TARGET_MODULE_MAPPING: old (v4) target name -> new target parameter name (dict order matters: first wins).
MOE_TARGET_MODULE_MAPPING: dict[str, dict[str, str]] = {
    "mixtral": {"gate": "gate.weight", "w1": "gate_up_proj", "w3": "gate_up_proj", "w2": "down_proj"},
    "qwen2_moe": {
        "gate": "gate.weight",
        "gate_proj": "gate_up_proj",
        "up_proj": "gate_up_proj",
        "down_proj": "down_proj",
    },
}

# _MOE_FUSED_TARGETS: new parameter -> the old names fused into it (all must be targeted together).
MOE_FUSED_TARGETS: dict[str, dict[str, list[str]]] = {
    "mixtral": {"gate_up_proj": ["w1", "w3"]},
    "qwen2_moe": {"gate_up_proj": ["gate_proj", "up_proj"]},
}

# Task types whose PeftModel subclass adds classifier heads to modules_to_save, before or after injection.
# PEFT 0.21: only SEQ_CLS adds its heads before injection (so targeting skips them); TOKEN_CLS and
# QUESTION_ANS add theirs afterwards, so a head that all-linear adapted cannot be wrapped (TypeError).
TASK_MODULES_TO_SAVE_BEFORE: dict[str, list[str]] = {"SEQ_CLS": ["classifier", "score"]}
TASK_MODULES_TO_SAVE_AFTER: dict[str, list[str]] = {
    "TOKEN_CLS": ["classifier", "score"],
    "QUESTION_ANS": ["qa_outputs"],
}
