"""EVA redistributes ranks from calibration data after get_peft_model: the plan gives the range the
adapters' size can end in, and PEFT's own initialize_lora_eva_weights lands inside it."""

from __future__ import annotations

import warnings

import pytest
import torch
import yaml
from peft_oracle import architecture, hf_factory

from loraplan.compiler.compile import compile_plan
from loraplan.compiler.diagnose_options import eva_bounds
from loraplan.schema.load import load_text


def _config(rho: float):
    lora = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj", "gate_proj", "down_proj"],
            "init_lora_weights": "eva", "eva_config": {"rho": rho, "tau": 0.5}}
    return load_text(yaml.safe_dump({"base_model": "tiny", "lora": lora})).config


@pytest.mark.parametrize("rho", [3.0])
def test_eva_lands_inside_the_planned_range(rho):
    from peft import get_peft_model, initialize_lora_eva_weights

    from loraplan.compiler.compile import peft_config

    factory = hf_factory("llama", device="cpu")
    config = _config(rho)
    plan = compile_plan(config, architecture(factory))
    lo, hi = eva_bounds(plan.injections, rho)
    note = next(d for d in plan.diagnostics if d.code == "LP564")
    assert f"between {lo:,} and {hi:,}" in note.message
    from peft import LoraConfig

    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(factory(), LoraConfig(**peft_config(config)))
        batches = [{"input_ids": torch.randint(0, 64, (16, 32)), "attention_mask": torch.ones(16, 32, dtype=torch.long)}
                   for _ in range(2)]
        initialize_lora_eva_weights(model, dataloader=batches)
    after = sum(p.numel() for n, p in model.named_parameters() if "lora_A" in n or "lora_B" in n)
    assert lo <= after <= hi, (lo, after, hi)
    assert lo < plan.totals.adapter_params < hi  # a real range: rho 3 lets ranks move


def test_rho_one_keeps_the_planned_ranks():
    plan = compile_plan(_config(1.0), architecture(hf_factory("llama")))
    assert eva_bounds(plan.injections, 1.0) == (plan.totals.adapter_params,) * 2
