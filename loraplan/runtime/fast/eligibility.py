"""Which adapted modules the fused path can run, decided from data alone (no torch).

The compiler records the answer in each Injection (`fast_path`, `fallback_reason`) so that the
plan says where PEFT's own layer will run instead; the runtime re-checks the live module.
"""

from __future__ import annotations

FALLBACK_REASONS = {
    "dropout": "lora_dropout > 0: PEFT's layer applies dropout",
    "dora": "DoRA: PEFT's layer computes the weight norm",
    "lora_bias": "lora_bias: PEFT's layer adds B's bias",
    "kind": "not a Linear: PEFT's layer for this module type",
    "fan_in_fan_out": "fan_in_fan_out (weight stored transposed): PEFT's layer",
    "init": "data-driven init: PEFT's layer runs it",
}


def static_fallback_reason(
    kind: str, *, dropout: float, use_dora: bool, lora_bias: bool, fan_in_fan_out: bool
) -> str | None:
    """None when the fused path applies to an injection of this kind and settings, else why not."""
    if kind != "linear":
        return FALLBACK_REASONS["kind"]
    if fan_in_fan_out:
        return FALLBACK_REASONS["fan_in_fan_out"]
    if use_dora:
        return FALLBACK_REASONS["dora"]
    if lora_bias:
        return FALLBACK_REASONS["lora_bias"]
    if dropout > 0:
        return FALLBACK_REASONS["dropout"]
    return None
