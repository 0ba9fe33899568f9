"""Parameter counts exactly as PEFT's `get_nb_trainable_parameters` reports them.

Shapes of what PEFT creates (peft/tuners/lora/layer.py, variants.py, dora.py):
- Linear / GPT-2 Conv1D: A (r, in), B (out, r) [+ B bias (out) with lora_bias] [+ DoRA magnitude (out)];
- Embedding: lora_embedding_A (r, num_embeddings), lora_embedding_B (dim, r) [+ DoRA (dim)];
- ConvNd: A conv(in -> r, kernel), B conv(r -> out, 1x..1, groups) [+ bias (out)] [+ DoRA (out)];
- MultiheadAttention: A (r, E), B (3E, r), plus a LoRA Linear on its out_proj (r*E + E*r);
- nn.Parameter (ParamWrapper): A (r*experts, in), B (out, r*experts); a 2-D parameter has one expert.
MiCA freezes B (lora_embedding_B), so it counts in the total but not as trainable.

The base model: every parameter once (tied storage once). A bitsandbytes 4-bit weight is a
`Params4bit` holding ceil(n / (2 * itemsize)) packed elements of the storage dtype, and PEFT counts
it as packed_numel * 2 * itemsize: n for even n. transformers quantises only modules of exact type
nn.Linear (or GPT-2 Conv1D) outside its skip list (see `quantized_modules`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from loraplan.compiler.architecture import Architecture, ModuleInfo
from loraplan.schema import regex_budget

QUANT_STORAGE_ITEMSIZE = {"uint8": 1, "int8": 1, "float16": 2, "bfloat16": 2, "float32": 4}


@dataclass(frozen=True)
class AdapterShape:
    in_features: int
    out_features: int
    total: int  # parameters PEFT creates
    trainable: int  # of which require grad


def _prod(values: object) -> int:
    if isinstance(values, int):
        return values
    n = 1
    for v in values or ():  # type: ignore[union-attr]
        n *= int(v)
    return n


def _kernel(m: ModuleInfo) -> int:
    if m.extra.get("kernel_size") is not None:
        return _prod(m.extra["kernel_size"])
    return _prod(m.weight_shape[2:]) if m.weight_shape and len(m.weight_shape) > 2 else 1


def conv_groups(m: ModuleInfo) -> int:
    """A conv's groups, from the recorded attribute or its weight shape (out, in / groups, *kernel)."""
    g = m.extra.get("groups")
    if isinstance(g, int):
        return g
    if m.weight_shape and m.in_features and len(m.weight_shape) > 1 and m.weight_shape[1]:
        return max(1, m.in_features // m.weight_shape[1])
    return 1


def module_features(m: ModuleInfo) -> tuple[int, int]:
    """(in, out) as PEFT's _get_in_out_features sees the module (MHA: embed_dim -> 3 * embed_dim)."""
    if m.kind == "mha":
        e = m.in_features or (m.weight_shape[1] if m.weight_shape else 0)
        return e, 3 * e
    if m.kind == "conv1d_gpt2" and m.in_features is None and m.weight_shape:
        return m.weight_shape[0], m.weight_shape[1]
    if m.kind == "embedding" and m.in_features is None and m.weight_shape:
        return m.weight_shape[0], m.weight_shape[1]
    return int(m.in_features or 0), int(m.out_features or 0)


def module_adapter(m: ModuleInfo, r: int, *, lora_bias: bool, use_dora: bool, mica: bool) -> AdapterShape:
    """What PEFT adds when it wraps module `m` with rank `r`."""
    i, o = module_features(m)
    bias = o if lora_bias else 0
    dora = o if use_dora else 0
    if m.kind in ("conv1d", "conv2d", "conv3d"):
        a, b = r * i * _kernel(m), o * (r // max(1, conv_groups(m)))
    elif m.kind == "mha":
        e = i
        a, b = r * e + r * e, o * r + e * r  # in_proj A/B + out_proj A/B
        bias = (o + e) if lora_bias else 0
    else:
        a, b = r * i, o * r
    total = a + b + bias + dora
    return AdapterShape(i, o, total, total - (b if mica else 0))


def param_adapter(shape: tuple[int, ...], r: int, *, transposed: bool = False) -> AdapterShape:
    """ParamWrapper: a 3-D (experts, d1, d2) parameter is (in=d2, out=d1) unless the module is transposed."""
    if len(shape) == 3:
        experts, d1, d2 = shape
        i, o = (d1, d2) if transposed else (d2, d1)
    elif len(shape) == 2:
        experts, o, i = 1, shape[0], shape[1]
    else:
        return AdapterShape(0, 0, 0, 0)
    total = r * experts * (i + o)
    return AdapterShape(i, o, total, total)


def scaling(alpha: float, r: int, use_rslora: bool) -> float:
    return alpha / math.sqrt(r) if use_rslora else alpha / r


def packed_4bit_count(numel: int, storage: str = "uint8") -> int:
    """What PEFT reports for one quantised weight of `numel` elements."""
    itemsize = QUANT_STORAGE_ITEMSIZE.get(storage, 1)
    return ((numel + 1) // (itemsize * 2)) * 2 * itemsize


def _should_convert(name: str, patterns: list[str]) -> bool:
    """transformers.quantizers.quantizers_utils.should_convert_module."""
    boundary = r"(?:(?<=\.)|(?=\.|$))"
    for key in patterns:
        try:
            if regex_budget.match(rf"(?:{key}){boundary}", name, origin=key):
                return False
        except re.error:
            pass
        if name.endswith(key):
            return False
    return True


def skip_modules(arch: Architecture, user_skip: list[str] | None) -> list[str]:
    """HfQuantizer.get_modules_to_not_convert: user list, else tied keys + last parameter + output embedding."""
    skips: set[str] = set()
    if user_skip is None:
        tied = getattr(arch, "tied_parameters", {}) or {}
        keys = set(tied) | set(tied.values())
        if arch.parameters:
            keys.add(arch.parameters[-1].name)
        if arch.output_embedding:
            keys.add(arch.output_embedding)
        skips = {k.removesuffix(".weight") for k in keys}
    else:
        skips = set(user_skip)
    skips.update(arch.config_attrs.get("keep_in_fp32_modules") or [])
    return sorted(skips)


def quantized_modules(arch: Architecture, user_skip: list[str] | None) -> set[str]:
    """Modules replace_with_bnb_linear turns into Linear4bit / Linear8bitLt (or, in an architecture
    read from a model already loaded with bitsandbytes, the ones it did turn)."""
    if any(m.extra.get("quantized") for m in arch.modules):
        return {m.name for m in arch.modules if m.extra.get("quantized")}
    patterns = skip_modules(arch, user_skip)
    return {
        m.name
        for m in arch.modules
        if ((m.kind == "linear" and m.cls.rsplit(".", 1)[-1] == "Linear") or m.kind == "conv1d_gpt2")
        and _should_convert(m.name, patterns)
    }
