"""Each LoRA option through the whole cycle: DoRA, rsLoRA, rank/alpha patterns, layer filters,
modules_to_save, exclusions, dropout, lora_bias, bias modes and init modes.

For each: the plan applies and verifies, the trainable count is the plan's, training lowers the
loss, the saved adapter_config.json is the exported one key by key, and plain PEFT reloads it
with the same outputs.
"""

from __future__ import annotations

import json
import math
import warnings

import pytest
import torch
from peft import PeftModel
from runtime_models import TINY, config_differences, logits, snapshot, train

from loraplan.compiler.compile import compile_plan
from loraplan.runtime.apply import apply
from loraplan.runtime.export import adapter_config
from loraplan.runtime.verify import find_adapters

LIST_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

LLAMA_CASES = {
    "dora": {"use_dora": True},
    "rslora": {"use_rslora": True, "r": 8, "lora_alpha": 16},
    "rank_alpha_patterns": {"rank_pattern": {"q_proj": 8, r"mlp\.down_proj": 2}, "alpha_pattern": {"v_proj": 32}},
    "layers_to_transform": {"target_modules": LIST_TARGETS, "layers_to_transform": [1], "layers_pattern": "layers"},
    "modules_to_save": {"modules_to_save": ["lm_head"]},
    "exclude_modules": {"exclude_modules": ["o_proj", "down_proj"]},
    "dropout": {"lora_dropout": 0.1},
    "lora_bias": {"lora_bias": True},
    "embedding": {"target_modules": ["embed_tokens", "q_proj"]},
    "init_false": {"init_lora_weights": False},
    "init_gaussian": {"init_lora_weights": "gaussian"},
    "init_pissa": {"init_lora_weights": "pissa", "target_modules": ["q_proj", "v_proj"]},
    "init_olora": {"init_lora_weights": "olora", "target_modules": ["q_proj", "v_proj"]},
    "init_orthogonal": {"init_lora_weights": "orthogonal"},
    "init_mica": {"init_lora_weights": "mica", "target_modules": ["q_proj", "v_proj"]},
    "many_names_condensed": {  # 20+ full names (3 layers x 7): PEFT condenses them to suffixes
        "_layers": 3,
        "target_modules": [f"model.layers.{i}.{m}" for i in range(3) for m in
                           ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                            "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]],
    },
}

GPT2_CASES = {
    "bias_all": {"bias": "all"},
    "bias_lora_only": {"bias": "lora_only"},
    "gpt2_dora": {"use_dora": True},
    "fan_in_fan_out_forced": {"fan_in_fan_out": False},  # PEFT sets it True for Conv1D while injecting
}


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _cycle(family: str, lora: dict, tmp_path) -> tuple:
    tiny = TINY[family]
    lora = dict(lora)
    layers = lora.pop("_layers", None)
    model = tiny.build(**({"num_hidden_layers": layers} if layers else {}))
    base = snapshot(model)
    plan = compile_plan(tiny.loraplan_config(**lora), model)
    assert not [d for d in plan.diagnostics if d.severity == "error"], plan.diagnostics
    peft_model = apply(plan, model)
    assert peft_model.get_nb_trainable_parameters()[0] == plan.totals.trainable_params
    batch = tiny.batch()
    losses = train(peft_model, batch)
    assert losses[-1] < losses[0] - 0.02, losses
    peft_model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert config_differences(saved, adapter_config(plan)) == []
    torch.manual_seed(0)  # data-driven inits replay on load
    reloaded = PeftModel.from_pretrained(base, tmp_path)
    torch.testing.assert_close(logits(reloaded, batch), logits(peft_model, batch), rtol=1e-5, atol=1e-5)
    return plan, peft_model


@pytest.mark.parametrize("case", list(LLAMA_CASES))
def test_llama_option(case, tmp_path):
    plan, peft_model = _cycle("llama", LLAMA_CASES[case], tmp_path)
    found = find_adapters(peft_model)
    if case == "dora":
        assert all(a.use_dora for a in found.modules.values())
        assert all(i.use_dora for i in plan.injections)
    if case == "rslora":
        assert all(math.isclose(a.scaling, 16 / math.sqrt(8)) for a in found.modules.values())
    if case == "rank_alpha_patterns":
        q = found.modules["model.layers.0.self_attn.q_proj"]
        down = found.modules["model.layers.1.mlp.down_proj"]
        v = found.modules["model.layers.0.self_attn.v_proj"]
        assert (q.r, down.r, v.r) == (8, 2, 4)
        assert math.isclose(v.scaling, 32 / 4) and math.isclose(q.scaling, 8 / 8)
    if case == "layers_to_transform":
        assert {i.layer for i in plan.injections} == {1}
        assert all(".layers.1." in n for n in found.modules)
    if case == "modules_to_save":
        assert found.modules_to_save == ["lm_head"]
    if case == "exclude_modules":
        assert not [n for n in found.modules if n.endswith(("o_proj", "down_proj"))]
    if case == "embedding":
        emb = found.modules["model.embed_tokens"]
        assert emb.a_shape == (4, 96) and emb.b_shape == (32, 4)
    if case == "dropout":
        assert all(a.dropout == pytest.approx(0.1) for a in found.modules.values())
    if case == "many_names_condensed":
        assert len(found.modules) == 21
        # PEFT condensed the names to suffixes while injecting; the adapter keeps the plan's 21 names
        assert peft_model.peft_config["default"].target_modules == set(plan.peft_config["target_modules"])


@pytest.mark.parametrize("case", list(GPT2_CASES))
def test_gpt2_option(case, tmp_path):
    plan, peft_model = _cycle("gpt2", GPT2_CASES[case], tmp_path)
    trainable = {n for n, p in peft_model.get_base_model().named_parameters() if p.requires_grad}
    biases = {n for n in trainable if n.endswith(".bias")}
    if case == "bias_all":
        assert plan.totals.bias_params > 0
        assert any("ln_" in n for n in biases)  # every bias, norms included
    if case == "bias_lora_only":
        assert plan.totals.bias_params > 0
        assert biases and all(n.endswith("base_layer.bias") for n in biases)
    if case == "gpt2_dora":
        assert not biases
    if case == "fan_in_fan_out_forced":
        layer = peft_model.get_base_model().get_submodule("transformer.h.0.attn.c_attn")
        assert layer.fan_in_fan_out is True
        assert peft_model.peft_config["default"].fan_in_fan_out is False  # the plan's, as saved
