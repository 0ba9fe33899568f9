"""Fast LoRA training path: PEFT's modules and parameter names, fused forward and backward.

`patch_model(peft_model)` swaps eligible PEFT LoRA layers to subclasses whose forward runs one
custom autograd function; everything PEFT saves or loads (names, shapes, state-dict keys,
adapter_config.json) is unchanged. Ineligible layers keep PEFT's forward and are reported.
"""

from loraplan.compiler.fast_path import FALLBACK_REASONS, static_fallback_reason
from loraplan.runtime.fast.freshness import adapters_changed
from loraplan.runtime.fast.patch import FastPathReport, patch_model, unpatch_model

__all__ = [
    "FALLBACK_REASONS",
    "FastPathReport",
    "adapters_changed",
    "patch_model",
    "static_fallback_reason",
    "unpatch_model",
]
