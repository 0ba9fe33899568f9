"""Axolotl values -> native values: pydantic's lax coercion, optimizer and attention names.

Axolotl validates its config with pydantic in lax mode, so `lora_r: "16"` or `lora_dropout: 5e-2`
(which YAML reads as a string) are accepted there; the native Config is strict, so the same
coercion is applied here first, and only values Axolotl itself would refuse reach the schema.
"""

from __future__ import annotations

from typing import Any

_TRUE = {"1", "on", "t", "true", "y", "yes"}
_FALSE = {"0", "off", "f", "false", "n", "no"}


def lax_bool(value: Any) -> Any:
    """pydantic's lax bool: bools, 0/1, and the strings true/false/yes/no/on/off/t/f/y/n/1/0."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    return value


def lax_float(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    return value


def lax_int(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return int(text)
        except ValueError:
            number = lax_float(text)
            return int(number) if isinstance(number, float) and number.is_integer() else value
    return value


def lax_int_list(value: Any) -> Any:
    return [lax_int(v) for v in value] if isinstance(value, list) else lax_int(value)


# Optimizer names (transformers OptimizerNames and Axolotl's CustomSupportedOptimizers) onto the
# native set, only where the optimizer state has the same size per parameter.
OPTIMIZERS: dict[str, str] = {
    "adamw_torch": "adamw_torch",
    "adamw_torch_fused": "adamw_torch_fused",
    "adamw_torch_xla": "adamw_torch",
    "adamw_torch_npu_fused": "adamw_torch_fused",
    "adamw_apex_fused": "adamw_torch_fused",
    "adamw_hf": "adamw_torch",
    "adamw_anyprecision": "adamw_torch",
    "optimi_adamw": "adamw_torch",
    "adamw_bnb_8bit": "adamw_bnb_8bit",
    "adamw_8bit": "adamw_8bit",
    "adamw_torch_8bit": "adamw_8bit",
    "ao_adamw_8bit": "adamw_8bit",
    "paged_adamw_8bit": "paged_adamw_8bit",
    "paged_adamw_32bit": "paged_adamw_32bit",
    "adafactor": "adafactor",
    "sgd": "sgd",
    "lion_32bit": "lion_32bit",
    "lion_8bit": "lion_8bit",
    "paged_lion_32bit": "lion_32bit",
    "paged_lion_8bit": "lion_8bit",
}
# Axolotl's default when `optimizer` is unset (schemas/training.py HyperparametersConfig).
DEFAULT_OPTIMIZER = "adamw_torch_fused"

NATIVE_ATTN = frozenset({"sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention"})
# Axolotl's legacy boolean flags, in its priority order (schemas/enums.py LEGACY_ATTN_FLAG_TO_IMPL).
LEGACY_ATTN_FLAGS: dict[str, str] = {
    "xformers_attention": "xformers",
    "s2_attention": "s2",
    "sage_attention": "sage",
    "flex_attention": "flex_attention",
    "flash_attention": "flash_attention_2",
    "sdp_attention": "sdpa",
    "eager_attention": "eager",
}


def native_attn(value: str) -> str | None:
    """The native kernel for an Axolotl `attn_implementation`, or None when there is none.

    Hub-kernel paths (`kernels-community/...flash-attn3`) run FlashAttention 3.
    """
    if value in NATIVE_ATTN:
        return value
    if "/" in value:
        name = value.rsplit("/", 1)[-1].replace("_", "-")
        if "flash-attn3" in name or "flash-attention-3" in name:
            return "flash_attention_3"
        if "flash-attn" in name or "flash-attention" in name:
            return "flash_attention_2"
    return None


def native_dtype(value: Any) -> str | None:
    """A dtype spelt as transformers accepts it ('bfloat16', 'torch.bfloat16', 'bf16') -> native."""
    if not isinstance(value, str):
        return None
    name = value.strip().lower().removeprefix("torch.")
    return {"bfloat16": "bfloat16", "bf16": "bfloat16", "float16": "float16", "fp16": "float16",
            "half": "float16", "float32": "float32", "fp32": "float32", "float": "float32"}.get(name)
