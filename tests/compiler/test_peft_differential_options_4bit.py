"""LoRA variants and inits on bitsandbytes 4-bit layers (loaded on the CPU): PEFT's bnb layers take
DoRA, aLoRA and Arrow, refuse VeLoRA and ignore KaSA, MonteCLoRA and BD-LoRA; OLoRA dequantises and
shrinks like on nn.Linear. The plan's modules, counts and refusals against get_peft_model."""

from __future__ import annotations

import warnings

import pytest
import torch
import transformers
from peft_oracle import TINY, architecture, hf_factory, lora_config
from transformers import BitsAndBytesConfig

from loraplan.compiler.compile import compile_plan
from loraplan.schema.config import Config

pytest.importorskip("bitsandbytes")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("llama")
    torch.manual_seed(0)
    cfg = transformers.AutoConfig.for_model("llama", **TINY["llama"])
    transformers.AutoModelForCausalLM.from_config(cfg).save_pretrained(path)
    return path


def _load(folder):
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.AutoModelForCausalLM.from_pretrained(folder, quantization_config=quant, device_map="cpu",
                                                                 dtype=torch.bfloat16)


EXTRAS = [
    {"kasa_config": {}},
    {"monteclora_config": {"num_samples": 3}},
    {"use_bdlora": {"target_modules_bd_a": ["q_proj"], "target_modules_bd_b": ["v_proj"], "nblocks": 2}},
    {"velora_config": {}},
    {"alora_invocation_tokens": [1], "task_type": "CAUSAL_LM"},
    {"init_lora_weights": "olora", "r": 24},
]


@pytest.mark.parametrize("extra", EXTRAS, ids=lambda e: "-".join(e))
def test_options_on_4bit_layers(folder, extra):
    from peft import get_peft_model

    config = Config.model_validate({
        "base_model": "test", "adapter": "qlora", "dtype": "bfloat16",
        "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], **extra},
        "quantization": {"load_in_4bit": True, "bnb_4bit_compute_dtype": "bfloat16"},
    })
    plan = compile_plan(config, architecture(hf_factory("llama")))
    errors = [d for d in plan.diagnostics if d.severity == "error"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pm = get_peft_model(_load(folder), lora_config(config))
    except Exception as exc:
        assert errors, f"PEFT raised {exc!r}, the plan has no error"
        return
    assert not errors, [d.message for d in errors]
    assert [i.module for i in plan.injections] == list(pm.base_model.targeted_module_names)
    assert (plan.totals.trainable_params, plan.totals.total_params) == pm.get_nb_trainable_parameters()
