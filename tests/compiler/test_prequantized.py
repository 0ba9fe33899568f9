"""Pre-quantized checkpoints: stored format from quantization_config (or the catalog's evidence),
weights memory in that format, PEFT's support for it, and bitsandbytes asked on top of it."""

from __future__ import annotations

import json

import pytest

from loraplan.compiler.catalog import CONFIGS_DIR
from loraplan.compiler.compile import check_loaded
from loraplan.compiler.prequantized import describe, stored_format
from loraplan.schema.load import load_text

TINY = json.loads((CONFIGS_DIR / "tiny" / "trl-internal-testing--tiny-Qwen2ForCausalLM-2.5.json").read_text())
# quantization_config blocks as the quantizers write them into config.json
BNB_NF4 = {"quant_method": "bitsandbytes", "load_in_4bit": True, "load_in_8bit": False, "bnb_4bit_quant_type": "nf4",
           "bnb_4bit_use_double_quant": True, "bnb_4bit_compute_dtype": "bfloat16", "llm_int8_skip_modules": None}
GPTQ = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": True, "sym": True, "damp_percent": 0.1}
COMPRESSED_NVFP4 = {"quant_method": "compressed-tensors", "format": "nvfp4-pack-quantized", "config_groups": {
    "group_0": {"targets": ["Linear"], "weights": {"num_bits": 4, "type": "float", "group_size": 16}}},
    "ignore": ["lm_head"]}


def plan_of(text: str):
    plan, diags = check_loaded(load_text(text, "c.yaml"), offline_only=False)
    assert plan is not None, diags
    return plan, diags


def folder(tmp_path, quantization: dict | None):
    data = dict(TINY)
    if quantization is not None:
        data["quantization_config"] = quantization
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(data))
    return str(tmp_path)


BASE = "base_model: {base}\n{extra}lora:\n  r: 8\n  target_modules: [q_proj, v_proj]\n"


def test_nvfp4_alias_is_not_planned_as_bf16():
    bf16, _ = plan_of(BASE.format(base="Qwen/Qwen3-30B-A3B", extra=""))
    nvfp4, diags = plan_of(BASE.format(base="nvidia/Qwen3-30B-A3B-NVFP4", extra=""))
    assert nvfp4.architecture_fingerprint == bf16.architecture_fingerprint  # same module tree
    # Independently: attention projections and fused experts are NVFP4 (4 bits + one FP8 scale per
    # 16 values = 9/16 byte), everything else (embeddings, norms, lm_head, routers) stays bf16.
    from loraplan.compiler.catalog import load_catalog_architecture

    arch = load_catalog_architecture("Qwen/Qwen3-30B-A3B")
    quant = sum(p.numel for p in arch.parameters
                if (".self_attn." in p.name and p.name.endswith("_proj.weight")) or ".mlp.experts." in p.name)
    assert bf16.memory.weights_bytes == 2 * arch.total_params
    assert nvfp4.memory.weights_bytes == pytest.approx(2 * (arch.total_params - quant) + quant * 9 / 16, abs=2)
    assert nvfp4.memory.weights_bytes < 0.35 * bf16.memory.weights_bytes
    assert "pre-quantized in nvfp4" in nvfp4.memory.assumptions[0]
    src = nvfp4.architecture_source
    assert src["alias"] == "nvidia/Qwen3-30B-A3B-NVFP4" and src["alias_of"] == "Qwen/Qwen3-30B-A3B"
    assert src["quantization"]["method"] == "nvfp4"
    (warn,) = [d for d in diags if d.code == "LP529"]
    assert warn.severity == "warning" and "NVFP4Linear is not an nn.Linear" in warn.message


def test_qlora_on_an_nvfp4_checkpoint_is_an_error_naming_the_bf16_sibling():
    extra = "adapter: qlora\nquantization:\n  load_in_4bit: true\n  bnb_4bit_compute_dtype: bfloat16\n"
    _, diags = plan_of(BASE.format(base="nvidia/Qwen3-30B-A3B-NVFP4", extra=extra))
    (err,) = [d for d in diags if d.code == "LP528"]
    assert err.severity == "error" and "refuses a BitsAndBytesConfig" in err.message
    assert "Qwen/Qwen3-30B-A3B" in err.hint and (err.line, err.column) == (4, 17)  # at load_in_4bit: true


def test_bnb_checkpoint_weighs_what_loading_bf16_in_4bit_weighs(tmp_path):
    stored, diags = plan_of(BASE.format(base=folder(tmp_path / "q", BNB_NF4), extra=""))
    extra = ("adapter: qlora\nquantization:\n  load_in_4bit: true\n  bnb_4bit_use_double_quant: true\n"
             "  bnb_4bit_compute_dtype: bfloat16\n")
    loaded, _ = plan_of(BASE.format(base=folder(tmp_path / "b", None), extra=extra))
    assert stored.memory.weights_bytes == loaded.memory.weights_bytes
    (info,) = [d for d in diags if d.code == "LP529"]
    assert info.severity == "info" and "bnb LoRA layers" in info.message and "bitsandbytes" in info.hint
    _, again = plan_of(BASE.format(base=folder(tmp_path / "q", BNB_NF4), extra=extra))
    assert [d.severity for d in again if d.code == "LP528"] == ["warning"]  # the checkpoint's settings win


def test_gptq_group_scales_and_what_peft_needs(tmp_path):
    plain, _ = plan_of(BASE.format(base=folder(tmp_path / "b", None), extra=""))
    gptq, diags = plan_of(BASE.format(base=folder(tmp_path / "g", GPTQ), extra=""))
    from loraplan.compiler.sources.from_config import from_config_json

    arch = from_config_json(tmp_path / "b")
    linear = [p for p in arch.parameters if p.name.endswith("_proj.weight")]
    q = sum(p.numel for p in linear)
    expected = plain.memory.weights_bytes - 2 * q + q * 4 / 8 + (q / 128) * (2 + 4 / 8)
    assert gptq.memory.weights_bytes == int(expected)
    (info,) = [d for d in diags if d.code == "LP529"]
    assert "GPTQLoraLinear" in info.message and "gptqmodel" in info.hint


def test_formats_read_from_quantization_config():
    assert stored_format({"quantization_config": COMPRESSED_NVFP4})["as"] == "nvfp4"
    fp8 = stored_format({"quantization_config": {"quant_method": "fp8", "weight_block_size": [128, 128]}})
    assert (fp8["method"], fp8["block"]) == ("fp8", [128, 128])
    mx = stored_format({"quantization_config": {"quant_method": "mxfp4", "modules_to_not_convert": ["self_attn"]}})
    assert mx["method"] == "mxfp4" and mx["exclude_names"] == ["self_attn"]
    assert stored_format({"model_type": "llama"}) is None
    assert describe(stored_format({"quantization_config": GPTQ})) == "gptq 4-bit, group 128"


def test_catalog_fp8_checkpoint_counts_fp8_weights():
    plan, diags = plan_of(BASE.format(base="deepseek-ai/DeepSeek-V3", extra="").replace(
        "[q_proj, v_proj]", "[q_a_proj]"))
    src = plan.architecture_source["quantization"]
    assert src["method"] == "fp8" and src["block"] == [128, 128]
    total = plan.totals.total_params
    assert plan.memory.weights_bytes < 1.1 * total  # ~1 byte per weight, not bf16's 2
    assert any(d.code == "LP529" and "FP8Linear" in d.message for d in diags)


def test_mxfp4_gpt_oss_experts_only_attention_stays_bf16_and_lora_able():
    plan, diags = plan_of(BASE.format(base="openai/gpt-oss-20b", extra=""))
    from loraplan.compiler.catalog import load_catalog_architecture

    arch = load_catalog_architecture("openai/gpt-oss-20b")
    experts = sum(p.numel for p in arch.parameters if ".mlp.experts." in p.name and len(p.shape) == 3)
    assert experts > arch.total_params // 2  # most of gpt-oss is its fused expert tensors
    # modules_to_not_convert (model.layers.*.self_attn, router, embeddings, lm_head) stay bf16
    assert plan.memory.weights_bytes == int(2 * (arch.total_params - experts) + experts * 17 / 32)
    (info,) = [d for d in diags if d.code == "LP529"]
    assert info.severity == "info" and "mxfp4" in info.message  # q_proj/v_proj are not stored in MXFP4
