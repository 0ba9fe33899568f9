"""The memory estimate: each part follows its stated formula, and every part states its assumption."""

from __future__ import annotations

import pytest

from loraplan.compiler.catalog import load_catalog_architecture
from loraplan.compiler.compile import compile_plan
from loraplan.compiler.counting import quantized_modules
from loraplan.compiler.memory import CUDA_CONTEXT_BYTES, FRAGMENTATION, OPTIMIZER_STATE_BYTES
from loraplan.schema.config import Config

ARCH = "TinyLlama/TinyLlama-1.1B-Chat-v1.0"  # hidden 2048, ffn 5632, 22 layers, 32 heads, 4 kv heads


@pytest.fixture(scope="module")
def arch():
    return load_catalog_architecture(ARCH)


def plan_for(arch, quantization=None, training=None, dtype="bfloat16", **lora):
    data = {"base_model": ARCH, "dtype": dtype, "lora": {"r": 16, "lora_alpha": 32, "target_modules": "all-linear",
                                                        **lora}}
    if quantization:
        data["quantization"] = quantization
        data["adapter"] = "qlora"
    if training:
        data["training"] = training
    return compile_plan(Config.model_validate(data), arch)


def test_parts_add_up_and_are_explained(arch):
    mem = plan_for(arch).memory
    assert mem.total_bytes == sum(mem.breakdown.values())
    assert mem.total_bytes == (mem.weights_bytes + mem.adapter_bytes + mem.gradient_bytes + mem.optimizer_bytes
                               + mem.activation_bytes + mem.overhead_bytes)
    text = " ".join(mem.assumptions)
    for word in ("weights", "adapters", "optimizer", "activations", "logits", "overhead", "peak"):
        assert word in text


def test_bf16_weights_and_fp32_adapters(arch):
    plan = plan_for(arch)
    mem = plan.memory
    assert mem.weights_bytes == 2 * arch.total_params
    assert mem.adapter_bytes == 4 * plan.totals.adapter_params
    assert mem.gradient_bytes == 4 * plan.totals.adapter_params
    assert mem.optimizer_bytes == 8 * plan.totals.adapter_params  # AdamW: two float32 moments
    assert plan_for(arch, dtype="float32").memory.weights_bytes == 4 * arch.total_params


def test_nf4_weights_with_and_without_double_quant(arch):
    quantized = quantized_modules(arch, None)
    q_params = sum(p.numel for p in arch.parameters if p.module in quantized and p.name.endswith(".weight"))
    rest = arch.total_params - q_params
    plain = plan_for(arch, {"load_in_4bit": True, "bnb_4bit_compute_dtype": "bfloat16"}).memory
    double = plan_for(arch, {"load_in_4bit": True, "bnb_4bit_use_double_quant": True,
                             "bnb_4bit_compute_dtype": "bfloat16"}).memory
    assert "lm_head" not in quantized and len(quantized) == 22 * 7
    # 0.5 byte per weight + one fp32 absmax per 64 weights (all sizes here are multiples of 64)
    assert plain.weights_bytes == pytest.approx(q_params / 2 + q_params / 64 * 4 + 2 * rest, abs=8)
    # double quantisation: 8-bit absmax + one fp32 constant per 256 blocks
    assert double.weights_bytes == pytest.approx(q_params / 2 + q_params / 64 + q_params / 64 / 256 * 4 + 2 * rest,
                                                 rel=1e-4)
    assert double.weights_bytes < plain.weights_bytes < plan_for(arch).memory.weights_bytes
    assert plain.breakdown["dequant_buffer"] == 2 * 5632 * 2048  # the largest 4-bit weight, dequantised
    assert "nf4 4-bit" in plain.assumptions[0]


def test_int8_weights(arch):
    mem = plan_for(arch, {"load_in_8bit": True}).memory
    quantized = quantized_modules(arch, None)
    q = [p for p in arch.parameters if p.module in quantized and p.name.endswith(".weight")]
    expected = sum(p.numel + 4 * p.shape[0] for p in q) + 2 * (arch.total_params - sum(p.numel for p in q))
    assert mem.weights_bytes == expected


@pytest.mark.parametrize("optimizer", sorted(OPTIMIZER_STATE_BYTES))
def test_optimizer_states(arch, optimizer):
    plan = plan_for(arch, training={"optimizer": optimizer})
    assert plan.memory.optimizer_bytes == int(OPTIMIZER_STATE_BYTES[optimizer] * plan.totals.adapter_params)
    assert optimizer in " ".join(plan.memory.assumptions)


def test_adafactor_is_factored(arch):
    plan = plan_for(arch, training={"optimizer": "adafactor"})
    expected = 4 * sum(i.r + i.in_features + i.out_features + i.r for i in plan.injections)
    assert plan.memory.optimizer_bytes == expected < 8 * plan.totals.adapter_params


def test_activations_scale_and_checkpointing(arch):
    base = plan_for(arch, training={"sequence_len": 1024, "micro_batch_size": 2}).memory
    h, kv, ffn, layers, tokens = 2048, 256, 5632, 22, 2048
    expected = tokens * ((4 * h + 2 * kv + 3 * ffn) * 2 + 2 * h * 4) * layers  # what the frozen layer keeps
    # fused path: inputs kept once per group (q/k/v: h, o: h, gate/up: h, down: ffn), r-wide A outputs in bf16
    lora = tokens * ((3 * h + ffn) * 2 + 16 * 2 * 7) * layers
    assert base.breakdown["activations"] == pytest.approx(expected + lora, rel=1e-9)
    assert base.breakdown["logits"] == tokens * 32000 * 14  # bf16 logits, float32 log-softmax, two gradients
    doubled = plan_for(arch, training={"sequence_len": 2048, "micro_batch_size": 2}).memory
    assert doubled.breakdown["activations"] == pytest.approx(2 * base.breakdown["activations"], rel=1e-9)
    ckpt = plan_for(arch, training={"sequence_len": 1024, "micro_batch_size": 2, "gradient_checkpointing": True})
    # checkpoints, then the larger of one recomputed layer and the loss's backward (counted in logits)
    one_layer = base.breakdown["activations"] / layers
    assert ckpt.memory.breakdown["activations"] == pytest.approx(
        tokens * h * 2 * layers + max(one_layer - base.breakdown["logits"], 0))
    assert ckpt.memory.breakdown["activations"] + ckpt.memory.breakdown["logits"] == pytest.approx(
        tokens * h * 2 * layers + max(one_layer, base.breakdown["logits"]))
    assert "gradient checkpointing" in " ".join(ckpt.memory.assumptions)


def test_compile_keeps_less_and_is_said(arch):
    eager = plan_for(arch, training={"sequence_len": 1024, "micro_batch_size": 2}).memory
    compiled = plan_for(arch, training={"sequence_len": 1024, "micro_batch_size": 2, "torch_compile": True}).memory
    tokens, h, ffn, layers = 2048, 2048, 5632, 22
    assert eager.breakdown["activations"] - compiled.breakdown["activations"] == tokens * (ffn * 2 + 2 * h * 4) * layers
    assert "torch.compile" in " ".join(compiled.assumptions)
    assert compiled.breakdown["logits"] == tokens * 32000 * 10  # inductor fuses the loss
    on_top = compiled.breakdown["cuda_context"] + compiled.breakdown["fragmentation"]
    assert compiled.peak_allocated_bytes == compiled.total_bytes - on_top


def test_peft_layers_keep_a_float32_input_per_module(arch):
    """A float32 model: PEFT's layer (DoRA) keeps a float32 copy of each module's input."""
    fused = plan_for(arch, dtype="float32").memory.breakdown["activations"]
    dora = plan_for(arch, dtype="float32", use_dora=True)
    assert not any(i.fast_path for i in dora.injections)
    tokens, h, ffn, layers = 2048, 2048, 5632, 22
    fp32_inputs = (6 * h + ffn) * 4 + 16 * 4 * 7  # q, k, v, o, gate, up read h; down reads ffn
    fused_inputs = (3 * h + ffn) * 4 + 16 * 4 * 7
    assert dora.memory.breakdown["activations"] - fused == tokens * layers * (fp32_inputs - fused_inputs)


def test_dora_in_a_16_bit_model_keeps_its_two_outputs_per_module(arch):
    """bf16: fallback adapters take the compute dtype (no input copy); DoRA keeps base and low-rank outputs."""
    fused = plan_for(arch).memory.breakdown["activations"]
    dora = plan_for(arch, use_dora=True)
    tokens, layers = 2048, 22
    outs = sum(i.out_features for i in dora.injections) // layers
    assert outs == 2048 + 256 + 256 + 2048 + 5632 + 5632 + 2048  # q, k, v, o, gate, up, down
    assert dora.memory.breakdown["activations"] - fused == tokens * layers * 2 * outs * 2


def test_dropout_and_eager_attention_cost_more(arch):
    sdpa = plan_for(arch).memory.breakdown["activations"]
    # the fused path makes its dropout mask again from a seed: nothing more is kept
    assert plan_for(arch, lora_dropout=0.1).memory.breakdown["activations"] == sdpa
    dora = plan_for(arch, use_dora=True).memory.breakdown["activations"]  # PEFT's layer keeps the mask
    assert plan_for(arch, use_dora=True, lora_dropout=0.1).memory.breakdown["activations"] > dora
    eager = plan_for(arch, training={"attn_implementation": "eager"}).memory
    assert eager.breakdown["activations"] - sdpa == 22 * 32 * 2048**2 * 2 * 2
    assert "eager attention" in " ".join(eager.assumptions)


def test_overhead(arch):
    mem = plan_for(arch).memory
    subtotal = mem.total_bytes - mem.overhead_bytes
    assert mem.breakdown["cuda_context"] == CUDA_CONTEXT_BYTES
    assert mem.breakdown["fragmentation"] == int(FRAGMENTATION * subtotal)


def test_unknown_sizes_are_said(arch):
    import dataclasses

    bare = dataclasses.replace(arch, config_attrs={})
    mem = plan_for(bare).memory
    assert mem.breakdown["activations"] == 0 and "unknown" in " ".join(mem.assumptions)
