"""QLoRA through bitsandbytes' CPU backend: a plan compiled from a folder's config.json (no
weights) fits the 4-bit model loaded from that folder, PEFT's 4-bit count included, and trains.
The GPU version of this is test_gpu_qlora.py."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
import transformers
from runtime_models import config_differences

from loraplan.compiler.compile import compile_plan
from loraplan.runtime.apply import apply
from loraplan.runtime.export import adapter_config
from loraplan.runtime.load import load_model
from loraplan.schema.config import Config


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def test_nf4_plan_from_config_json_applies_and_trains(tmp_path):
    cfg = transformers.LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, architectures=["LlamaForCausalLM"],
    )
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(tmp_path / "model")
    config = Config.model_validate({
        "base_model": str(tmp_path / "model"), "adapter": "qlora", "dtype": "bfloat16",
        "lora": {"r": 4, "lora_alpha": 8, "target_modules": "all-linear", "task_type": "CAUSAL_LM"},
        "quantization": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
                         "bnb_4bit_compute_dtype": "bfloat16"},
    })
    plan = compile_plan(config)
    model = load_model(config, tmp_path / "model", device_map="cpu", progress=False)
    assert type(model.model.layers[0].mlp.up_proj).__name__ == "Linear4bit"
    peft_model = apply(plan, model)
    assert peft_model.get_nb_trainable_parameters() == (plan.totals.trainable_params, plan.totals.total_params)
    ids = torch.randint(1, 128, (2, 12), generator=torch.Generator().manual_seed(1))
    opt = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(4):
        opt.zero_grad()
        loss = peft_model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0], losses
    peft_model.save_pretrained(tmp_path / "adapter")
    saved = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert config_differences(saved, adapter_config(plan)) == []
