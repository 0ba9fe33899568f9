"""A plan compiled against a model already loaded in 4 bits equals one compiled from its config."""

from __future__ import annotations

import torch
from transformers import BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM

import loraplan
from loraplan.compiler.sources.from_module import from_module
from loraplan.schema.config import Config


def test_live_4bit_model_gives_the_same_weights_estimate_and_totals(tmp_path):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)
    LlamaForCausalLM(cfg).save_pretrained(tmp_path)
    bnb = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16)
    quantized = LlamaForCausalLM.from_pretrained(tmp_path, quantization_config=bnb, dtype=torch.bfloat16)
    unquantized = LlamaForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16)
    config = Config.model_validate({
        "base_model": str(tmp_path), "adapter": "qlora", "lora": {"target_modules": "all-linear"},
        "quantization": {"load_in_4bit": True, "bnb_4bit_compute_dtype": "bfloat16"},
    })
    live = loraplan.compile(config, architecture=quantized)
    planned = loraplan.compile(config, architecture=from_module(unquantized))
    assert live.totals == planned.totals
    assert live.memory.breakdown["weights"] == planned.memory.breakdown["weights"]
    assert live.memory.breakdown["weights"] < 2 * sum(p.numel() for p in unquantized.parameters())  # 4-bit, not bf16
