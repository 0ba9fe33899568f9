"""The LoraConfig options beyond plain LoRA through the whole cycle (plan, apply, verify, train,
save, reload with plain PEFT), as test_apply_options.py does for the classic ones."""

from __future__ import annotations

import pytest
from test_apply_options import _cycle

from loraplan.runtime.verify import find_adapters

CASES = {
    "kasa": {"kasa_config": {"beta": 0.0001}, "target_modules": ["q_proj", "v_proj"]},
    "bdlora": {"use_bdlora": {"target_modules_bd_a": ["q_proj"], "target_modules_bd_b": ["v_proj"], "nblocks": 2},
               "target_modules": ["q_proj", "v_proj"]},
    "velora": {"velora_config": {"num_groups": 4}, "target_modules": ["q_proj", "v_proj"]},
    "trainable_tokens": {"trainable_token_indices": [1, 2, 3]},
    "layer_replication": {"layer_replication": [[0, 2], [1, 2]], "target_modules": ["q_proj", "v_proj"]},
    "runtime_config": {"runtime_config": {"ephemeral_gpu_offload": True}},  # (only DoRA's init on CUDA reads it)
    "revision": {"revision": "main"},
    "pissa_narrow": {"init_lora_weights": "pissa", "r": 48, "lora_alpha": 480},  # r above every width: shrunk
}


@pytest.mark.parametrize("case", list(CASES))
def test_option_cycle(case, tmp_path):
    plan, peft_model = _cycle("llama", CASES[case], tmp_path)
    found = find_adapters(peft_model)
    if case == "layer_replication":
        assert len(peft_model.get_base_model().model.layers) == 3
        assert sorted(found.modules) == [i.module for i in sorted(plan.injections, key=lambda i: i.module)]
    if case == "runtime_config":
        assert peft_model.peft_config["default"].runtime_config.ephemeral_gpu_offload is True
    if case == "revision":
        assert peft_model.peft_config["default"].revision == "main"
