"""A simple, explicit estimate of one training step's peak GPU memory on one device.

Every number comes from a stated assumption (see `assumptions` in the result), so it can be
checked and calibrated against measured peaks. The model is additive, an upper-ish bound:

  weights      base parameters in their storage: dtype bytes; NF4/FP4 0.5 byte + one absmax per
               64-weight block (fp32, or 8-bit plus a second fp32 absmax per 256 blocks with
               double quantisation); LLM.int8 1 byte + one fp32 scale per output row
  adapters     LoRA / DoRA / modules_to_save parameters (adapters in float32: PEFT's default
               autocast_adapter_dtype=True; modules_to_save copies in the model dtype)
  gradients    one gradient per trainable parameter, in its dtype
  optimizer    states per trainable parameter for training.optimizer
  activations  per decoder layer and token: 6h + 2*kv + 4*ffn elements in the model dtype (norm
               inputs/outputs, q, attention output, gate/up/act/product; 3*ffn under
               training.torch_compile, which recomputes the product), plus each adapted
               module's dropout copy of its input and its r-wide A output; eager attention adds
               the heads x seq x seq probabilities; gradient checkpointing keeps one h-wide input
               per layer plus one layer's activations for the recompute
  logits       seq x batch x vocab x 10 bytes (model-dtype logits, float32 upcast, float32
               log-softmax kept for the loss backward)
  overhead     CUDA context and cuBLAS workspace (fixed), a 4-bit dequantisation buffer for the
               largest quantised weight, and 5% allocator fragmentation on top of the rest
"""

from __future__ import annotations

from typing import Any

from loraplan.compiler import memory_bnb
from loraplan.compiler.architecture import Architecture
from loraplan.compiler.axolotl import moe_expert_parameters
from loraplan.compiler.counting import quantized_modules
from loraplan.compiler.plan import Injection, MemoryEstimate, Totals

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
CUDA_CONTEXT_BYTES = 512 * 2**20
FRAGMENTATION = 0.05
NF4_BLOCK = 64
DOUBLE_QUANT_BLOCK = 256
ADAPTER_BYTES = 4  # PEFT autocasts adapter weights to float32 by default

# bytes of optimizer state per trainable parameter, relative to a float32 parameter
OPTIMIZER_STATE_BYTES = {
    "adamw_torch": 8.0,
    "adamw_torch_fused": 8.0,
    "adamw_8bit": 2.0,
    "adamw_bnb_8bit": 2.0,
    "paged_adamw_8bit": 2.0,
    "paged_adamw_32bit": 8.0,
    "sgd": 0.0,
    "lion_32bit": 4.0,
    "lion_8bit": 1.0,
}


def _weights(config: Any, arch: Architecture, dtype_bytes: int) -> tuple[int, int, str]:
    """(bytes, largest quantised weight in elements, description) of the base weights."""
    stored = (arch.origin or {}).get("quantization")
    if stored:  # a pre-quantized checkpoint: its own format, whatever the config asks to load it with
        from loraplan.compiler.prequantized import stored_weight_bytes

        return stored_weight_bytes(arch, stored, config.dtype, dtype_bytes)
    q = config.quantization
    four = bool(q and q.load_in_4bit)
    eight = bool(q and q.load_in_8bit)
    quant = quantized_modules(arch, q.llm_int8_skip_modules) if (four or eight) else set()
    experts = moe_expert_parameters(config, arch, quant)  # Axolotl's quantize_moe_experts
    total, largest = 0.0, 0
    for p in arch.parameters:
        n = p.numel
        if p.name in experts:  # bitsandbytes parametrization: nf4 with double quantisation, or row-wise int8
            largest = max(largest, n)
            blocks = -(-n // NF4_BLOCK)
            total += (n / 2 + blocks + 4 * -(-blocks // DOUBLE_QUANT_BLOCK)) if four else n + 4 * (n // p.shape[-1])
        elif p.module in quant and p.name == f"{p.module}.weight":
            largest = max(largest, n)
            if four:
                blocks = -(-n // NF4_BLOCK)
                if q.bnb_4bit_use_double_quant:
                    absmax = blocks + 4 * -(-blocks // DOUBLE_QUANT_BLOCK)  # 8-bit absmax + fp32 per 256 blocks
                else:
                    absmax = 4 * blocks  # one fp32 absmax per block
                total += n / 2 + absmax
            else:
                total += memory_bnb.int8_weight_bytes(q, n, p.shape[0] if p.shape else 1)
        else:
            total += n * dtype_bytes
    if four:
        kind = f"{q.bnb_4bit_quant_type} 4-bit" + (" with double quantisation" if q.bnb_4bit_use_double_quant else "")
        what = f"{len(quant)} Linear weights in {kind}, everything else in {config.dtype}"
        if experts:
            what += f"; {len(experts)} fused expert parameters in nf4 with double quantisation (quantize_moe_experts)"
    elif eight:
        kind = "16-bit (llm_int8_has_fp16_weight)" if q.llm_int8_has_fp16_weight else "LLM.int8"
        what = f"{len(quant)} Linear weights in {kind}, everything else in {config.dtype}"
        if experts:
            what += f"; {len(experts)} fused expert parameters in row-wise int8 (quantize_moe_experts)"
    else:
        what = f"all weights in {config.dtype}"
    return int(total), largest, what


def _rows(arch: Architecture, numel: int) -> int:
    """Output rows of a 2-D weight of `numel` elements (for its per-row scales)."""
    return next((p.shape[0] for p in arch.parameters if p.numel == numel and len(p.shape) == 2), 0)


def _dims(config: Any, arch: Architecture) -> dict[str, int] | None:
    a = arch.config_attrs or {}
    h = a.get("hidden_size")
    if not isinstance(h, int):
        return None
    heads = a.get("num_attention_heads") or 1
    head_dim = a.get("head_dim") or h // max(1, heads)
    kv = (a.get("num_key_value_heads") or heads) * head_dim
    ffn = a.get("intermediate_size") or 4 * h
    if a.get("num_experts") and a.get("moe_intermediate_size"):
        ffn = a["moe_intermediate_size"] * (a.get("num_experts_per_tok") or 1) + a["moe_intermediate_size"] * (
            a.get("n_shared_experts") or 0)
    layers = arch.num_layers or a.get("num_hidden_layers") or 0
    vocab = a.get("vocab_size") or 0
    return {"h": h, "heads": heads, "kv": kv, "ffn": ffn, "layers": int(layers), "vocab": int(vocab)}


# Siblings that read the same input tensor: one copy of it is kept for all of their adapters.
SHARED_INPUT_GROUPS = (
    frozenset({"q_proj", "k_proj", "v_proj"}),
    frozenset({"gate_proj", "up_proj"}),
    frozenset({"w1", "w3"}),
    frozenset({"query", "key", "value"}),
    frozenset({"q", "k", "v"}),
)


def _input_key(name: str) -> tuple[str, str]:
    parent, _, leaf = name.rpartition(".")
    for group in SHARED_INPUT_GROUPS:
        if leaf in group:
            return parent, "|".join(sorted(group))
    return parent, leaf


def adapter_input_bytes(modules: list[Injection], dtype_bytes: int) -> float:
    """Bytes per token that adapters keep for their backward, beyond what the frozen model keeps.

    dL/dA needs each adapted module's input. On loraplan's fused path that is the input itself,
    in the compute dtype, once per group of siblings reading the same tensor (q/k/v, gate/up).
    PEFT's own layer (the fallback) casts the input to float32 adapters and keeps that copy per
    module, plus the dropout mask when lora_dropout > 0. In a 16-bit model the fast path gives
    fallback layers adapters in the compute dtype (runtime/fast/patch.py), so their input is not
    cast: one copy per group as above, plus PEFT's dropped input and mask per module, and for
    DoRA the base and low-rank outputs that the magnitude's gradient needs (2 x out per module;
    measured on an H100, DoRA's estimate was -15 % without them, docs/benchmarks.md).
    """
    fused: dict[tuple[str, str], int] = {}
    total = 0.0
    for i in modules:
        if i.kind == "parameter":
            continue
        if i.fast_path or dtype_bytes < ADAPTER_BYTES:
            key = _input_key(i.module)
            fused[key] = max(fused.get(key, 0), i.in_features)
            if not i.fast_path:  # PEFT's layer, adapters in the compute dtype
                total += i.in_features * (dtype_bytes + 1) if i.dropout > 0 else 0
                total += 2 * i.out_features * dtype_bytes if i.use_dora else 0
                total += i.r * dtype_bytes
        else:
            total += i.in_features * (ADAPTER_BYTES + (1 if i.dropout > 0 else 0)) + i.r * ADAPTER_BYTES
    return total + sum(fused.values()) * dtype_bytes + sum(i.r for i in modules if i.fast_path) * dtype_bytes


# Bytes per token and vocabulary entry at the loss. 14 eager: a 151,936-entry vocabulary (Qwen2.5,
# H100, docs/benchmarks.md) peaked 4.3 GiB above the 10 counted before, with checkpointing.
LOGIT_BYTES, LOGIT_BYTES_COMPILED = 14, 10


def _activations(config: Any, dims: dict[str, int], modules: list[Injection], dtype_bytes: int) -> tuple[int, int]:
    """(activation bytes, logits bytes) for training.sequence_len x micro_batch_size."""
    t = config.training
    tokens = t.sequence_len * t.micro_batch_size
    h, kv, ffn, layers = dims["h"], dims["kv"], dims["ffn"], max(1, dims["layers"])
    if t.torch_compile:  # inductor fuses the norms and recomputes act(gate) * up
        frozen = (4 * h + 2 * kv + 2 * ffn) * dtype_bytes
    else:  # + float32 inputs of the two RMSNorms, and act(gate) kept for the product
        frozen = (4 * h + 2 * kv + 3 * ffn) * dtype_bytes + 2 * h * 4
    per_layer = tokens * (frozen + adapter_input_bytes(modules, dtype_bytes) / layers)
    if t.attn_implementation == "eager":
        per_layer += t.micro_batch_size * dims["heads"] * t.sequence_len**2 * dtype_bytes * 2
    # the loss: model-dtype logits, float32 log-softmax output and, in its backward, two float32
    # gradients (nll's and log-softmax's) at once; inductor fuses them under torch.compile
    logits = tokens * dims["vocab"] * (LOGIT_BYTES_COMPILED if t.torch_compile else LOGIT_BYTES)
    if t.gradient_checkpointing:  # the loss's backward runs before any layer is recomputed
        acts = tokens * h * dtype_bytes * layers + max(per_layer - logits, 0)
    else:
        acts = per_layer * layers
    return int(acts), int(logits)


def _optimizer(name: str, totals: Totals, modules: list[Injection], params: list[Injection], dtype_bytes: int) -> int:
    adapters, copies = totals.adapter_params, totals.modules_to_save_params + totals.bias_params
    if name == "adafactor":
        factored = sum((i.r + i.in_features) + (i.out_features + i.r) for i in modules + params)
        return factored * 4 + copies * dtype_bytes
    per = OPTIMIZER_STATE_BYTES.get(name, 8.0)
    return int(adapters * per + copies * per * dtype_bytes / 4)


def estimate_memory(
    config: Any, arch: Architecture, totals: Totals, modules: list[Injection], params: list[Injection]
) -> MemoryEstimate:
    t = config.training
    dtype_bytes = DTYPE_BYTES[config.dtype]
    weights, largest_q, weights_what = _weights(config, arch, dtype_bytes)
    copies = totals.modules_to_save_params + totals.bias_params
    adapter_bytes = totals.adapter_params * ADAPTER_BYTES + totals.modules_to_save_params * dtype_bytes
    gradient_bytes = totals.adapter_params * ADAPTER_BYTES + copies * dtype_bytes
    optimizer_bytes = _optimizer(t.optimizer, totals, modules, params, dtype_bytes)
    assumptions = [
        f"weights: {weights_what}",
        f"adapters and their gradients in float32 ({ADAPTER_BYTES} bytes/parameter: PEFT's autocast_adapter_dtype "
        f"default); modules_to_save copies and trainable biases in {config.dtype}",
        f"optimizer {t.optimizer}: " + ("factored second moments (rows + columns per matrix, float32)"
                                        if t.optimizer == "adafactor" else
                                        f"{OPTIMIZER_STATE_BYTES.get(t.optimizer, 8.0):g} bytes of state per "
                                        "float32 trainable parameter"),
    ]
    dims = _dims(config, arch)
    acts = logits = 0
    if dims is None:
        assumptions.append("activations: unknown (the architecture records no hidden_size); counted as 0")
    else:
        acts, logits = _activations(config, dims, modules, dtype_bytes)
        kept = "4h + 2kv + 2ffn" if t.torch_compile else "4h + 2kv + 3ffn in the model dtype + 2h float32"
        assumptions.append(
            f"activations: {t.micro_batch_size} x {t.sequence_len} tokens, {dims['layers']} layers, hidden "
            f"{dims['h']}, kv {dims['kv']}, ffn {dims['ffn']}: what the frozen layer keeps per token ({kept}: "
            "RoPE'd q and k, v, attention output, norm inputs, gate, act(gate), up"
            + ("; torch.compile fuses the norms and recomputes act(gate) * up" if t.torch_compile else "")
            + "), plus the adapted modules' inputs (one copy per group of siblings on loraplan's fused path; a "
            "float32 copy per module, and the dropout mask, on PEFT's layer) and their r-wide A outputs"
            + (f"; {t.attn_implementation} attention keeps no seq x seq matrix" if t.attn_implementation != "eager"
               else "; eager attention keeps heads x seq x seq probabilities (x2)")
            + ("; gradient checkpointing: one hidden-state input per layer plus one layer recomputed"
               if t.gradient_checkpointing else "; no gradient checkpointing: every layer's activations kept"))
        assumptions.append(
            f"logits: {t.micro_batch_size * t.sequence_len} tokens x vocab {dims['vocab']} x "
            + (f"{LOGIT_BYTES_COMPILED} bytes (inductor fuses the float32 upcast and log-softmax)" if t.torch_compile
               else f"{LOGIT_BYTES} bytes (model-dtype logits, float32 log-softmax, and its two float32 gradients "
                    "in backward)")
            + ("; with gradient checkpointing the loss's backward and a recomputed layer are not alive together, "
               "so the larger of the two counts" if t.gradient_checkpointing else ""))
    dequant = largest_q * dtype_bytes if config.load_in_4bit else 0
    dequant += memory_bnb.int8_scratch_bytes(config.quantization, largest_q, _rows(arch, largest_q))
    assumptions.extend(memory_bnb.assumptions(config.quantization))
    subtotal = weights + adapter_bytes + gradient_bytes + optimizer_bytes + acts + logits
    overhead = CUDA_CONTEXT_BYTES + dequant + int(FRAGMENTATION * subtotal)
    assumptions.append(f"overhead: CUDA context and cuBLAS workspace {CUDA_CONTEXT_BYTES // 2**20} MiB, "
                       f"{int(FRAGMENTATION * 100)}% allocator fragmentation"
                       + (", one dequantised copy of the largest 4-bit weight" if dequant else ""))
    assumptions.append("peak = sum of all parts (activations and gradients are counted as alive together); "
                       "without the CUDA context and fragmentation it is the peak PyTorch allocates "
                       "(torch.cuda.max_memory_allocated), calibrated against H200 runs in docs/benchmarks.md")
    breakdown = {
        "weights": weights,
        "adapters": adapter_bytes,
        "gradients": gradient_bytes,
        "optimizer": optimizer_bytes,
        "activations": acts,
        "logits": logits,
        "dequant_buffer": dequant,
        "cuda_context": CUDA_CONTEXT_BYTES,
        "fragmentation": int(FRAGMENTATION * subtotal),
    }
    estimate = MemoryEstimate(
        weights_bytes=weights,
        adapter_bytes=adapter_bytes,
        gradient_bytes=gradient_bytes,
        optimizer_bytes=optimizer_bytes,
        activation_bytes=acts + logits,
        overhead_bytes=overhead,
        total_bytes=weights + adapter_bytes + gradient_bytes + optimizer_bytes + acts + logits + overhead,
        peak_allocated_bytes=subtotal + dequant,
        breakdown=breakdown,
        assumptions=assumptions,
    )
    if getattr(config, "distributed", None) is not None:  # several ranks: what each one holds
        from loraplan.compiler.memory_distributed import per_rank

        return per_rank(config, arch, estimate, totals, modules, params)
    return estimate
