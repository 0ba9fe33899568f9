"""Which adapted modules loraplan's fused training path can run, decided from data alone.

The compiler records the answer in each Injection (`fast_path`, `fallback_reason`) so the plan
says where PEFT's own layer will run instead; the runtime (loraplan/runtime/fast) re-checks the
live module, which also knows the base layer's class (nn.Linear or bitsandbytes 4-bit).
"""

from __future__ import annotations

FALLBACK_REASONS = {
    "dora": "DoRA: PEFT's layer computes the weight norm",
    "lora_bias": "lora_bias: PEFT's layer adds B's bias",
    "kind": "not a Linear: PEFT's layer for this module type",
    "variant": "MiCA init is a LoRA variant (B frozen): PEFT's layer",
}


def static_fallback_reason(
    kind: str, *, dropout: float, use_dora: bool, lora_bias: bool, init: bool | str = True
) -> str | None:
    """None when the fused path applies to an injection of this kind and settings, else why not.

    Only nn.Linear modules qualify (PEFT stores their weight as (out, in); GPT-2's Conv1D, which
    stores it transposed, embeddings, convolutions and nn.Parameter targets keep PEFT's layers).
    `dropout` is accepted for callers that pass it; it no longer decides anything.
    """
    if kind != "linear":
        return FALLBACK_REASONS["kind"]
    if init == "mica":
        return FALLBACK_REASONS["variant"]
    if use_dora:
        return FALLBACK_REASONS["dora"]
    if lora_bias:
        return FALLBACK_REASONS["lora_bias"]
    return None  # lora_dropout > 0 runs fused too: its mask is made from a seed (runtime/fast/dropout.py)
