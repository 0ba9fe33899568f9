"""Plan -> apply -> verify -> train -> save -> reload in plain PEFT, on tiny models of each family.

Families: Llama (nn.Linear, all-linear), GPT-2 (Conv1D), Qwen3-MoE (fused 3-D experts through
target_parameters), T5 (encoder-decoder, tied embeddings) and a Llama classifier (SEQ_CLS: PEFT
adds the head to modules_to_save).
"""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from peft import PeftModel
from runtime_models import TINY, config_differences, logits, snapshot, train

from loraplan.compiler.compile import compile_plan
from loraplan.runtime.apply import apply
from loraplan.runtime.export import adapter_config
from loraplan.runtime.verify import find_adapters

FAMILIES = ["llama", "gpt2", "qwen3_moe", "t5", "llama_seq_cls"]


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.mark.parametrize("name", FAMILIES)
def test_plan_apply_train_save_reload(name, tmp_path):
    tiny = TINY[name]
    model = tiny.build()
    base = snapshot(model)
    plan = compile_plan(tiny.loraplan_config(), model)
    assert not [d for d in plan.diagnostics if d.severity == "error"]

    peft_model = apply(plan, model)

    assert isinstance(peft_model, PeftModel)
    found = find_adapters(peft_model)
    assert set(found.modules) == {i.module for i in plan.injections}
    assert set(found.parameters) == {p.module for p in plan.parameters}
    assert sorted(found.modules_to_save) == sorted(plan.modules_to_save)
    assert peft_model.get_nb_trainable_parameters()[0] == plan.totals.trainable_params
    for inj in plan.injections:
        layer = peft_model.get_base_model().get_submodule(inj.module)
        assert tuple(layer.lora_A["default"].weight.shape) == (inj.r, inj.in_features)
        assert tuple(layer.lora_B["default"].weight.shape) == (inj.out_features, inj.r)
        assert layer.scaling["default"] == pytest.approx(inj.scaling)

    batch = tiny.batch()
    losses = train(peft_model, batch)
    assert losses[-1] < losses[0] - 0.05, losses

    peft_model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config_differences(saved, adapter_config(plan)) == []

    base_logits = logits(base, batch)
    reloaded = PeftModel.from_pretrained(base, tmp_path)
    torch.testing.assert_close(logits(reloaded, batch), logits(peft_model, batch), rtol=1e-5, atol=1e-5)
    # the reloaded adapter is the trained one, not a fresh (no-op) init
    assert not torch.allclose(logits(reloaded, batch), base_logits, atol=1e-4)


def test_moe_expert_adapters_match_plan():
    tiny = TINY["qwen3_moe"]
    model = tiny.build()
    plan = compile_plan(tiny.loraplan_config(), model)
    assert {p.module.rsplit(".", 1)[-1] for p in plan.parameters} == {"gate_up_proj", "down_proj"}
    peft_model = apply(plan, model)
    found = find_adapters(peft_model)
    experts = model.config.num_experts
    for inj in plan.parameters:
        got = found.parameters[inj.module]
        assert got.experts == experts
        assert got.a_shape == (inj.r * experts, inj.in_features)
        assert got.b_shape == (inj.out_features, inj.r * experts)


def test_plain_peft_path_reloads_bit_for_bit(tmp_path):
    """fast=False keeps PEFT's own layers: the reloaded adapter gives exactly the same logits."""
    tiny = TINY["llama"]
    model = tiny.build()
    base = snapshot(model)
    plan = compile_plan(tiny.loraplan_config(), model)
    peft_model = apply(plan, model, fast=False)
    assert peft_model.loraplan_fast_report is None
    batch = tiny.batch()
    train(peft_model, batch, steps=2)
    peft_model.save_pretrained(tmp_path)
    reloaded = PeftModel.from_pretrained(base, tmp_path)
    assert torch.equal(logits(reloaded, batch), logits(peft_model, batch))


def test_saved_config_keeps_the_plans_target_form(tmp_path):
    """PEFT expands all-linear while injecting; the saved adapter keeps the plan's `all-linear`."""
    tiny = TINY["llama"]
    model = tiny.build()
    plan = compile_plan(tiny.loraplan_config(), model)
    peft_model = apply(plan, model)
    peft_model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["target_modules"] == "all-linear"
    assert saved["base_model_name_or_path"] == "tiny/llama"
    assert saved["inference_mode"] is True
