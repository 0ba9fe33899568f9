"""k-bit training preparation without PEFT's blanket fp32 upcast.

PEFT's `prepare_model_for_kbit_training` casts every fp16/bf16 parameter that is not 4-bit
(embeddings, norms, the LM head, unquantised layers) to fp32. Measured on an H200 (1.1B Llama,
QLoRA nf4 r16, docs/benchmarks.md): 405 ms and 45.2 GiB per step against 198 ms and 23.6 GiB
without it. Part of the time is the gradient checkpointing it also switches on; the memory
doubles despite that, because fp32 norms make the activations after them fp32 and the fp32 LM
head doubles the logits. The frozen weights get no gradient, so their precision only matters
for the forward; the compute dtype is enough.
"""

from __future__ import annotations

from typing import Any

# Class-name fragments of normalisation layers (LayerNorm, RMSNorm, LlamaRMSNorm, T5LayerNorm, ...).
_NORM_MARKERS = ("norm",)


def is_norm(module: Any) -> bool:
    return any(m in type(module).__name__.lower() for m in _NORM_MARKERS)


def enable_gradient_checkpointing(model: Any, *, input_require_grads: bool = True) -> None:
    """Non-reentrant gradient checkpointing, the KV cache off, and the input-embedding hook.

    use_reentrant=False recomputes correctly even when no input requires grad; the hook that
    marks the embedding output as requiring grad (transformers' `enable_input_require_grads`) is
    what reentrant checkpointing needs and what users of PEFT's preparation get, so it is kept
    (it costs one extra input-gradient pass through the first block).
    """
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x (the old name warns)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    elif hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    config = getattr(model, "config", None)
    if config is not None and hasattr(config, "use_cache"):
        config.use_cache = False
    if input_require_grads and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()


def prepare_for_kbit_training(
    model: Any,
    *,
    gradient_checkpointing: bool = True,
    upcast_norms: bool = False,
    input_require_grads: bool = True,
) -> Any:
    """Freeze a 4-/8-bit model for adapter training; returns the same model.

    What is cast, and why:
      - by default NOTHING. Norms, embeddings, the LM head and any unquantised layer stay in the
        dtype they were loaded in (`config.dtype`, which should equal the 4-bit compute dtype):
        they are frozen, so fp32 copies would buy no gradient precision, only memory and time.
        The adapters PEFT adds are fp32 by default (`autocast_adapter_dtype`), which is where
        optimiser precision matters.
      - `upcast_norms=True` casts the parameters of normalisation layers (class name containing
        "Norm") to fp32, for models that are numerically fragile in half precision. On
        Llama-style RMSNorm this makes the norm's output fp32, which raises activation memory.
    Quantised weights (Params4bit, Int8Params) are never touched. Gradient checkpointing is
    non-reentrant, with the input-grad hook (see `enable_gradient_checkpointing`).
    """
    import torch

    for param in model.parameters():
        param.requires_grad_(False)
    if upcast_norms:
        for module in model.modules():
            if not is_norm(module):
                continue
            for param in module.parameters(recurse=False):
                if param.dtype in (torch.float16, torch.bfloat16):
                    param.data = param.data.float()
    if gradient_checkpointing:
        enable_gradient_checkpointing(model, input_require_grads=input_require_grads)
    return model
