"""The estimate's terms for llm_int8_has_fp16_weight and llm_int8_enable_fp32_cpu_offload, the
first checked against the bytes bitsandbytes really holds after a transformers 8-bit load (CPU)."""

from __future__ import annotations

import warnings

import pytest
import torch
import transformers

from loraplan.compiler.compile import compile_plan
from loraplan.compiler.counting import quantized_modules
from loraplan.compiler.memory import _weights
from loraplan.compiler.sources.from_module import from_module
from loraplan.schema.config import Config

TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=128)


def config(**quant):
    return Config.model_validate({"base_model": "tiny", "dtype": "float16", "lora": {"target_modules": ["q_proj"]},
                                  "quantization": {"load_in_8bit": True, **quant}})


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(transformers.LlamaConfig(**TINY), dtype=torch.float16)
    model.save_pretrained(path)
    return path


def held_bytes(model) -> int:
    """Bytes bitsandbytes holds: every parameter and buffer (Int8Params, SCB) of the loaded model."""
    total = sum(p.numel() * p.element_size() for p in model.parameters())
    for m in model.modules():
        scb = getattr(getattr(m, "weight", None), "SCB", None)
        if scb is not None:
            total += scb.numel() * scb.element_size()
    return total


@pytest.mark.parametrize("fp16_weight", [False, True])
def test_int8_weight_bytes_equal_bitsandbytes(folder, fp16_weight):
    pytest.importorskip("bitsandbytes")
    cfg = config(llm_int8_has_fp16_weight=fp16_weight)
    bnb = transformers.BitsAndBytesConfig(load_in_8bit=True, llm_int8_has_fp16_weight=fp16_weight)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.AutoModelForCausalLM.from_pretrained(folder, quantization_config=bnb, device_map="cpu",
                                                                  dtype=torch.float16)
    arch = from_module(transformers.AutoModelForCausalLM.from_config(transformers.LlamaConfig(**TINY)))
    assert len(quantized_modules(arch, None)) == 14
    assert _weights(cfg, arch, 2)[0] == held_bytes(model)


def test_fp16_weight_costs_more_and_is_said():
    from loraplan.compiler.catalog import load_catalog_architecture

    arch = load_catalog_architecture("TinyLlama/TinyLlama-1.1B-Chat-v1.0")
    plain = compile_plan(config(), arch).memory
    fp16 = compile_plan(config(llm_int8_has_fp16_weight=True), arch).memory
    q = [p for p in arch.parameters if p.module in quantized_modules(arch, None) and p.name.endswith(".weight")]
    assert fp16.weights_bytes - plain.weights_bytes == sum(p.numel - 4 * p.shape[0] for p in q)
    largest = max(q, key=lambda p: p.numel)
    assert fp16.breakdown["dequant_buffer"] == largest.numel + 4 * largest.shape[0]
    assert plain.breakdown["dequant_buffer"] == 0
    assert any("llm_int8_has_fp16_weight" in a for a in fp16.assumptions)


def test_fp32_cpu_offload_is_said_and_changes_nothing_without_a_device_map():
    from loraplan.compiler.catalog import load_catalog_architecture

    arch = load_catalog_architecture("TinyLlama/TinyLlama-1.1B-Chat-v1.0")
    plain = compile_plan(config(), arch).memory
    offload = compile_plan(config(llm_int8_enable_fp32_cpu_offload=True), arch).memory
    assert offload.total_bytes == plain.total_bytes
    assert any("llm_int8_enable_fp32_cpu_offload" in a and "device_map" in a for a in offload.assumptions)
