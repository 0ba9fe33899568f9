"""Memory per rank (memory_distributed.py): each engine's sharding, checked against the one-device parts."""

from __future__ import annotations

import pytest

from loraplan.compiler.catalog import load_catalog_architecture
from loraplan.compiler.compile import compile_plan
from loraplan.compiler.memory import CUDA_CONTEXT_BYTES
from loraplan.compiler.plan import Plan
from loraplan.output.plan_markdown import render_markdown
from loraplan.output.plan_table import render_table
from loraplan.schema.config import Config

ARCH = "meta-llama/Meta-Llama-3-8B"  # 32 layers, hidden 4096, vocab 128256, untied embeddings
Q4 = {"load_in_4bit": True, "bnb_4bit_use_double_quant": True, "bnb_4bit_compute_dtype": "bfloat16",
      "bnb_4bit_quant_storage": "bfloat16"}


@pytest.fixture(scope="module")
def arch():
    return load_catalog_architecture(ARCH)


def plan_for(arch, distributed=None, quantization=None, **training):
    data = {"base_model": ARCH, "lora": {"r": 16, "lora_alpha": 32, "target_modules": "all-linear"},
            "training": {"sequence_len": 4096, "gradient_checkpointing": True, **training}}
    if quantization:
        data["quantization"], data["adapter"] = quantization, "qlora"
    if distributed:
        data["distributed"] = distributed
    return compile_plan(Config.model_validate(data), arch)


def parts(plan):
    return plan.memory.breakdown


def test_parts_add_up_per_rank(arch):
    m = plan_for(arch, {"world_size": 4, "fsdp": {}}, Q4).memory
    assert (m.scope, m.world_size, m.engine) == ("per rank", 4, "fsdp2")
    assert sum(m.breakdown.values()) == m.total_bytes
    assert m.total_bytes - CUDA_CONTEXT_BYTES - m.breakdown["fragmentation"] == m.peak_allocated_bytes


def test_fsdp_shards_weights_gradients_and_optimizer_state(arch):
    one = plan_for(arch, quantization=Q4).memory.breakdown
    two, four = parts(plan_for(arch, {"world_size": 2, "fsdp": {}}, Q4)), parts(
        plan_for(arch, {"world_size": 4, "fsdp": {}}, Q4))
    # the one-device weights are shards + the constants kept whole on every rank
    assert two["weights"] * 2 + two["quant_constants"] == pytest.approx(one["weights"], rel=1e-6)
    assert four["weights"] * 2 == pytest.approx(two["weights"], rel=1e-6)
    assert four["quant_constants"] == two["quant_constants"] > 0
    for key in ("gradients", "optimizer", "adapters"):
        assert four[key] * 4 == pytest.approx(one[key], abs=4)
    assert four["activations"] == one["activations"] and four["logits"] == one["logits"]


def test_gathered_working_set_is_two_blocks_and_the_root(arch):
    p = parts(plan_for(arch, {"world_size": 8, "fsdp": {}}))  # bf16: every block has the same size
    block = 2 * (4096 * 4096 * 2 + 4096 * 1024 * 2 + 3 * 4096 * 14336 + 2 * 4096)  # bf16 weights + norms
    adapters = 4 * 16 * (2 * (4096 + 4096) + 2 * (4096 + 1024) + 3 * (4096 + 14336))  # fp32 A and B
    root = 2 * (2 * 128256 * 4096 + 4096)  # embed_tokens, lm_head, final norm
    assert p["gathered_params"] == 2 * (block + adapters) + root
    kept = parts(plan_for(arch, {"world_size": 8, "fsdp": {"reshard_after_forward": False}}))
    assert kept["gathered_params"] == 32 * (block + adapters) + root


def test_uint8_storage_is_whole_on_every_fsdp2_rank(arch):
    floating = parts(plan_for(arch, {"world_size": 4, "fsdp": {}}, Q4))
    packed = parts(plan_for(arch, {"world_size": 4, "fsdp": {}}, {**Q4, "bnb_4bit_quant_storage": "uint8"}))
    linear = 32 * (4096 * 4096 * 2 + 4096 * 1024 * 2 + 3 * 4096 * 14336)
    assert packed["weights"] - floating["weights"] == pytest.approx(linear / 2 * 3 / 4, rel=1e-6)


def test_deepspeed_stages(arch):
    one = plan_for(arch).memory.breakdown
    z1, z2, z3 = (parts(plan_for(arch, {"world_size": 4, "deepspeed": {"zero_stage": s}})) for s in (1, 2, 3))
    assert z1["weights"] == z2["weights"] == one["weights"] and z1["gathered_params"] == 0
    assert z1["gradients"] == one["gradients"] and z1["optimizer"] * 4 == pytest.approx(one["optimizer"], abs=4)
    assert z2["gradients"] * 4 == pytest.approx(one["gradients"], abs=4)
    assert z3["weights"] * 4 == pytest.approx(one["weights"], abs=4) and z3["gathered_params"] > 0


def test_offload_moves_shards_to_host(arch):
    on = plan_for(arch, {"world_size": 4, "fsdp": {}}, Q4).memory
    off = plan_for(arch, {"world_size": 4, "fsdp": {"offload_params": True}}, Q4).memory
    assert off.breakdown["weights"] == off.breakdown["optimizer"] == off.breakdown["gradients"] == 0
    assert off.breakdown["quant_constants"] == on.breakdown["quant_constants"]  # not parameters: stay
    assert off.host_breakdown == {k: on.breakdown[k] for k in ("weights", "adapters", "gradients", "optimizer")}
    assert off.host_bytes == sum(off.host_breakdown.values())
    ds = plan_for(arch, {"world_size": 4, "deepspeed": {"zero_stage": 3, "offload_optimizer_device": "cpu",
                                                        "offload_param_device": "cpu"}}, Q4).memory
    assert ds.breakdown["optimizer"] == ds.breakdown["weights"] == 0 and set(ds.host_breakdown) == {
        "optimizer", "weights", "adapters"}


def test_hybrid_shard_divides_by_the_shard_group(arch):
    full = parts(plan_for(arch, {"world_size": 8, "fsdp": {"dp_shard_size": 4}}))
    four = parts(plan_for(arch, {"world_size": 4, "fsdp": {}}))
    assert full["weights"] == four["weights"] and full["optimizer"] == four["optimizer"]


def test_every_output_format_says_per_rank(arch):
    plan = plan_for(arch, {"world_size": 4, "fsdp": {"offload_params": True}}, Q4)
    table = render_table(plan)
    assert "per rank for one training step, 4 ranks (fsdp2), plus" in table and "host: weights" in table
    assert "gathered params" in table and "for one training step on one device" not in table
    md = render_markdown(plan)
    assert "per rank for one training step, 4 ranks (fsdp2)" in md and "host: optimizer" in md
    back = Plan.from_json(plan.to_json())
    assert back.memory == plan.memory and back.memory.host_bytes > 0
    assert "for one training step on one device" in render_table(plan_for(arch))


def test_too_big_for_one_gpu_is_said(arch):
    big = plan_for(arch, sequence_len=65536, gradient_checkpointing=False)
    assert [d.code for d in big.diagnostics if d.code.startswith("LP58")] == ["LP580"]
    sharded = plan_for(arch, {"world_size": 2, "fsdp": {}}, sequence_len=65536, gradient_checkpointing=False)
    assert [d.code for d in sharded.diagnostics if d.code.startswith("LP58")] == ["LP581"]
    assert not [d for d in plan_for(arch).diagnostics if d.code.startswith("LP58")]


def test_deepseek_v3_on_one_device_is_not_silent():
    config = Config.model_validate({"base_model": "deepseek-ai/DeepSeek-V3", "lora": {"r": 16,
                                                                                     "target_modules": "all-linear"}})
    plan = compile_plan(config, load_catalog_architecture("deepseek-ai/DeepSeek-V3"))
    [warn] = [d for d in plan.diagnostics if d.code == "LP580"]
    assert warn.severity == "warning" and "distributed:" in warn.hint
    sharded = compile_plan(config.model_copy(update={"distributed": Config.model_validate(
        {"base_model": "m", "lora": {}, "distributed": {"world_size": 64, "fsdp": {}}}).distributed}),
        load_catalog_architecture("deepseek-ai/DeepSeek-V3"))
    # 1/64 of the weights, but two whole MoE blocks gathered (about 22 GB each in bf16): not 1/64 of the total
    assert sharded.memory.scope == "per rank" and sharded.memory.total_bytes < plan.memory.total_bytes / 8
    assert sharded.memory.breakdown["gathered_params"] > 40 * 10**9
