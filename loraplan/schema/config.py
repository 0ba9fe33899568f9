"""The native config: PEFT's and transformers' own field names, strictly typed.

A config is a declarative view of what will be passed to `LoraConfig` and
`BitsAndBytesConfig`, plus what a plan needs (architecture override, training shape for the
memory estimate). Field descriptions here are the single source for the JSON Schema and docs.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema
from pydantic_core import PydanticCustomError

from loraplan.schema.distributed import DistributedSection
from loraplan.schema.peft_subconfigs import (
    ArrowSection,
    BdLoraSection,
    CordaSection,
    EvaSection,
    KasaSection,
    LoftQSection,
    LoraGASection,
    MonteCloraSection,
    RuntimeSection,
    VeloraSection,
)
from loraplan.schema.regex_budget import compile_user

Dtype = Literal["bfloat16", "float16", "float32"]
InitMode = Literal["gaussian", "eva", "olora", "pissa", "corda", "loftq", "orthogonal", "mica", "lora_ga"]
PISSA_NITER = re.compile(r"pissa_niter_[0-9]+")


def _check_regex(value: str) -> str:
    try:
        compile_user(value)
    except re.error as exc:
        raise PydanticCustomError("regex", "invalid regular expression: {error}", {"error": str(exc)}) from None
    return value


def _check_pattern_key(key: str) -> str:
    r"""A rank_pattern / alpha_pattern key: PEFT matches it as `(.*\.)?(key)$`, so it must compile there."""
    try:
        compile_user(key)
        compile_user(rf"(.*\.)?({key})$")
    except re.error as exc:
        raise PydanticCustomError(
            "regex", "key '{key}' is not a valid regular expression: {error}", {"key": key, "error": str(exc)}
        ) from None
    return key


def _check_init(value: bool | str) -> bool | str:
    if isinstance(value, bool) or value in InitMode.__args__ or PISSA_NITER.fullmatch(value):
        return value
    options = ", ".join([*InitMode.__args__, "pissa_niter_<n>", "true", "false"])
    raise PydanticCustomError("literal_error", "Input should be one of: {options}", {"options": options})


# For editors: true/false, one of the named modes, or pissa_niter_<n>.
_INIT_SCHEMA = {
    "anyOf": [
        {"type": "boolean"},
        {"type": "string", "enum": list(InitMode.__args__)},
        {"type": "string", "pattern": "^pissa_niter_[0-9]+$"},
    ]
}

Regex = Annotated[str, AfterValidator(_check_regex)]
PatternKey = Annotated[str, AfterValidator(_check_pattern_key)]
Names = list[Annotated[str, Field(min_length=1)]]  # an empty name would match nothing
Token = Annotated[int, Field(ge=0)]
LayerRange = Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=2, max_length=2)]  # [start, end)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=False)


class LoraSection(_Strict):
    """PEFT `LoraConfig` fields, under PEFT's names."""

    r: int = Field(8, ge=1, le=65536, description="LoRA rank: the inner dimension of A (r x in) and B (out x r).")
    lora_alpha: float = Field(
        8, gt=0, allow_inf_nan=False,
        description="Scaling numerator: the update is scaled by lora_alpha / r (or / sqrt(r) with rsLoRA)."
    )
    lora_dropout: float = Field(
        0.0, ge=0.0, lt=1.0, allow_inf_nan=False,
        description="Dropout on the adapter input; 0 skips dropout work entirely."
    )
    target_modules: Names | Regex | None = Field(
        None,
        description=(
            "Modules to adapt. A list matches a module whose name equals an item or ends with '.item'; a string "
            "is a regular expression that must match the whole module name (re.fullmatch); 'all-linear' is "
            "every Linear/Conv1D except the output layer. Unset: PEFT's default for the model type."
        ),
        examples=["all-linear", ["q_proj", "k_proj", "v_proj", "o_proj"], r".*\.self_attn\.(q|v)_proj"],
    )
    exclude_modules: Names | Regex | None = Field(
        None, description="Modules never adapted; same matching rules as target_modules."
    )
    target_parameters: Names | None = Field(
        None,
        description=(
            "nn.Parameter names to adapt directly (e.g. fused MoE experts 'mlp.experts.gate_up_proj'); "
            "matched as exact name or '.suffix'. Needs lora_dropout 0 and no DoRA."
        ),
    )
    layers_to_transform: Annotated[int, Field(ge=0)] | list[Annotated[int, Field(ge=0)]] | None = Field(
        None, description="Only adapt these layer indices (the number after layers_pattern in the module name)."
    )
    layers_pattern: str | list[str] | None = Field(
        None, description="Name of the layer list (e.g. 'layers', 'h'); needs layers_to_transform."
    )
    rank_pattern: dict[PatternKey, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict,
        description="Per-module rank: regex key matched against the end of the module name (first key wins).",
    )
    alpha_pattern: dict[PatternKey, Annotated[float, Field(gt=0, allow_inf_nan=False)]] = Field(
        default_factory=dict, description="Per-module alpha, keys as in rank_pattern."
    )
    use_rslora: bool = Field(False, description="Rank-stabilised LoRA: scale by lora_alpha / sqrt(r).")
    use_dora: bool = Field(False, description="DoRA: adds a trainable magnitude vector per adapted module.")
    bias: Literal["none", "all", "lora_only"] = Field(
        "none", description="Which bias parameters become trainable: none, all biases, or those of adapted modules."
    )
    lora_bias: bool = Field(False, description="Give LoRA B a bias (needs default init, no DoRA).")
    init_lora_weights: Annotated[bool | str, AfterValidator(_check_init), WithJsonSchema(_INIT_SCHEMA)] = Field(
        True,
        description=(
            "Adapter init: true (B = 0, a no-op start), false (random, debugging), gaussian, eva, olora, pissa, "
            "pissa_niter_<n>, corda, loftq, orthogonal, mica, lora_ga."
        ),
    )
    modules_to_save: Names | None = Field(
        None, description="Modules trained in full and saved with the adapter (e.g. a classifier head)."
    )
    fan_in_fan_out: bool = Field(False, description="Set for layers storing weight as (in, out), like GPT-2 Conv1D.")
    loftq_config: LoftQSection | None = Field(
        None, description="LoftQ settings (loftq_bits, loftq_iter; PEFT's defaults fill the rest); needed when "
        "init_lora_weights is loftq."
    )
    task_type: (
        Literal["CAUSAL_LM", "SEQ_CLS", "SEQ_2_SEQ_LM", "TOKEN_CLS", "QUESTION_ANS", "FEATURE_EXTRACTION"] | None
    ) = Field(None, description="PEFT task type (selects the PeftModel subclass).")
    # The rest of PEFT's LoraConfig (tests/schema/test_peft_surface.py walks PEFT's fields).
    revision: str | None = Field(None, min_length=1, description="Base model revision PEFT records in the adapter.")
    trainable_token_indices: list[Token] | dict[Annotated[str, Field(min_length=1)], list[Token]] | None = Field(
        None, description="Token ids whose embedding rows are trained (a list: the input embedding; a mapping: "
        "embedding module name -> ids)."
    )
    layer_replication: list[LayerRange] | None = Field(
        None, description="Rebuild the layer stack from [start, end) ranges of the original layers (shared base "
        "weights, one adapter per copy)."
    )
    ensure_weight_tying: bool = Field(False, description="Tie the adapters of tied layers (embedding / lm_head).")
    use_qalora: bool = Field(False, description="QALoRA (PEFT implements it for GPTQ layers only).")
    qalora_group_size: int = Field(16, ge=1, description="QALoRA pooling group size (divides in_features).")
    eva_config: EvaSection | None = Field(None, description="EVA settings (init_lora_weights: eva).")
    corda_config: CordaSection | None = Field(None, description="CorDA settings (init_lora_weights: corda).")
    lora_ga_config: LoraGASection | None = Field(None, description="LoRA-GA settings (init_lora_weights: lora_ga).")
    kasa_config: KasaSection | None = Field(None, description="KaSA: a trainable singular-value diagonal per layer.")
    use_bdlora: BdLoraSection | None = Field(None, description="BD-LoRA: block-diagonal A or B factors.")
    monteclora_config: MonteCloraSection | None = Field(None, description="MonteCLoRA: Monte Carlo adapters.")
    arrow_config: ArrowSection | None = Field(None, description="Arrow routing over trained adapters.")
    velora_config: VeloraSection | None = Field(None, description="VeLoRA: compressed activations for A.")
    alora_invocation_tokens: list[Token] | None = Field(
        None, min_length=1, description="Activated LoRA: token ids after which the adapter is active."
    )
    runtime_config: RuntimeSection = Field(
        default_factory=RuntimeSection, description="Run-time settings PEFT never saves (ephemeral_gpu_offload)."
    )
    megatron_config: dict[str, Any] | None = Field(
        None, description="Megatron TransformerConfig kwargs, for Megatron's parallel linear layers."
    )
    megatron_core: str = Field("megatron.core", min_length=1, description="Megatron core module PEFT imports.")


class QuantizationSection(_Strict):
    """transformers `BitsAndBytesConfig` fields, under their own names."""

    load_in_4bit: bool = Field(False, description="Load the base weights in 4 bits (QLoRA).")
    load_in_8bit: bool = Field(False, description="Load the base weights in 8 bits (LLM.int8).")
    bnb_4bit_quant_type: Literal["nf4", "fp4"] = Field("nf4", description="4-bit data type.")
    bnb_4bit_use_double_quant: bool = Field(False, description="Quantise the quantisation constants too.")
    bnb_4bit_compute_dtype: Dtype = Field("float32", description="dtype of the matmuls on dequantised 4-bit weights.")
    bnb_4bit_quant_storage: Literal["uint8", "bfloat16", "float16", "float32"] = Field(
        "uint8", description="dtype the packed 4-bit weights are stored in; FSDP needs it equal to the model dtype."
    )
    llm_int8_threshold: float = Field(6.0, ge=0, allow_inf_nan=False, description="Outlier threshold of LLM.int8.")
    llm_int8_skip_modules: Names | None = Field(None, description="Modules left unquantised.")
    llm_int8_enable_fp32_cpu_offload: bool = Field(False, description="Allow fp32 CPU offload of some modules.")
    llm_int8_has_fp16_weight: bool = Field(False, description="Keep fp16 main weights in 8-bit mode.")


Optimizer = Literal[
    "adamw_torch",
    "adamw_torch_fused",
    "adamw_8bit",
    "adamw_bnb_8bit",
    "paged_adamw_8bit",
    "paged_adamw_32bit",
    "adafactor",
    "sgd",
    "lion_32bit",
    "lion_8bit",
]


class TrainingSection(_Strict):
    """Training shape, used by the plan's memory estimate."""

    sequence_len: int = Field(2048, ge=1, le=10_000_000, description="Tokens per sequence.")
    micro_batch_size: int = Field(1, ge=1, le=1_000_000, description="Sequences per forward/backward pass.")
    gradient_accumulation_steps: int = Field(1, ge=1, description="Micro-batches per optimizer step.")
    gradient_checkpointing: bool = Field(False, description="Recompute activations in backward to save memory.")
    optimizer: Optimizer = Field("adamw_torch", description="Optimizer, for the size of its state.")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention"] = (
        Field("sdpa", description="Attention kernel; eager keeps the full attention matrix.")
    )
    torch_compile: bool = Field(
        False, description="The model runs under torch.compile (inductor saves fewer activations than eager)."
    )


class AxolotlSection(_Strict):
    """What an Axolotl config asks of the plan that only the model decides (the Axolotl dialect sets it).

    Axolotl's `load_lora` builds part of PEFT's LoraConfig from the loaded model: the linear-layer
    names of `lora_target_linear` and the task type. The compiler expands these against the
    architecture, so the plan shows exactly the LoraConfig Axolotl would pass.
    """

    version: str = Field("0.19.0", description="The Axolotl release whose load_lora the plan reproduces.")
    target_linear: bool = Field(
        False,
        description="lora_target_linear: add the leaf name of every linear layer except the output embedding "
        "(Axolotl's find_all_linear_names) to target_modules.",
    )
    quantize_moe_experts: bool = Field(
        False, description="Axolotl quantises the fused MoE expert parameters on load, like the Linear weights."
    )
    trust_remote_code: bool = Field(
        False, description="Axolotl loads the model repository's own code when its config.json has an auto_map."
    )


class Config(_Strict):
    """A loraplan config: what to adapt, on which model, and how it will be trained."""

    base_model: str = Field(
        ..., min_length=1, description="Hub id, local folder or catalog name of the model to adapt."
    )
    adapter: Literal["lora", "qlora"] = Field(
        "lora", description="lora, or qlora (LoRA on a 4-bit base; needs quantization.load_in_4bit)."
    )
    architecture: str | None = Field(
        None, min_length=1, description="Override where the architecture comes from: catalog name, path or hub id."
    )
    base_model_revision: str | None = Field(
        None,
        min_length=1,
        description="Hub revision (branch, tag or commit) whose config.json is read for base_model / architecture.",
    )
    model_class: str | None = Field(
        None,
        min_length=1,
        description="transformers class to build (default: the config's `architectures` entry).",
    )
    architecture_variant: Literal["axolotl-llama4-linearized-experts"] | None = Field(
        None,
        description="A module tree a training tool patches in: axolotl-llama4-linearized-experts is Axolotl's "
        "`llama4_linearized_experts` (one nn.Linear per Llama-4 expert and projection).",
    )
    dtype: Dtype = Field("bfloat16", description="dtype of the unquantised base weights and of the adapters.")
    lora: LoraSection = Field(..., description="The adapter: PEFT LoraConfig fields.")
    quantization: QuantizationSection | None = Field(
        None, description="bitsandbytes loading: transformers BitsAndBytesConfig fields."
    )
    training: TrainingSection = Field(
        default_factory=TrainingSection, description="Training shape for the memory estimate."
    )
    axolotl: AxolotlSection | None = Field(
        None, description="Set by the Axolotl dialect: what Axolotl's load_lora derives from the model."
    )
    distributed: DistributedSection | None = Field(
        None, description="Several ranks: FSDP or DeepSpeed ZeRO; the memory estimate is then per rank."
    )

    @property
    def load_in_4bit(self) -> bool:
        return bool(self.quantization and self.quantization.load_in_4bit)

    @property
    def load_in_8bit(self) -> bool:
        return bool(self.quantization and self.quantization.load_in_8bit)
