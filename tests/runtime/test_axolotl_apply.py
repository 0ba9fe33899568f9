"""Axolotl configs through `apply`: what Axolotl's load_lora builds is what PEFT gets.

- `peft.loftq_config: {loftq_bits: 4}` becomes PEFT's LoftQConfig(loftq_bits=4) (loftq_iter 1)
  with init_lora_weights loftq: PEFT's LoftQ init runs (it raised KeyError 'loftq_iter' when
  loraplan passed the bare dict);
- the task type comes from the model class (LlamaForSequenceClassification -> SEQ_CLS, so PEFT
  trains the `score` head in full), and the exported adapter_config.json carries it.
"""

from __future__ import annotations

import pytest
import torch
import transformers
from runtime_models import llama_config, llama_seq_cls_config

from loraplan.compiler.compile import compile_plan
from loraplan.runtime.apply import apply
from loraplan.runtime.export import adapter_config, plan_kwargs
from loraplan.schema.load import load_text

AXOLOTL = """\
base_model: tiny
adapter: lora
lora_r: 4
lora_alpha: 8
lora_target_linear: true
datasets:
  - path: x
"""


def _plan(text: str, model):
    result = load_text(text, "a.yml", dialect="axolotl")
    assert result.ok, result.diagnostics
    return compile_plan(result.config, model, source=result.source)


def test_loftq_from_axolotl_is_peft_loftqconfig():
    # PEFT's LoRA layer reads config.loftq_config["loftq_iter"] (lora/layer.py loftq_init): it is there
    from peft import LoraConfig

    plan = _plan(AXOLOTL + "peft:\n  loftq_config:\n    loftq_bits: 4\n", "meta-llama/Llama-3.2-1B")
    assert plan.peft_config["loftq_config"] == {"loftq_bits": 4, "loftq_iter": 1}
    assert plan.peft_config["init_lora_weights"] == "loftq"
    config = LoraConfig(**plan_kwargs(plan))
    assert config.loftq_config["loftq_iter"] == 1 and config.loftq_config["loftq_bits"] == 4


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_loftq_from_axolotl_applies_on_gpu():
    # PEFT's LoftQ init quantises on CUDA with bitsandbytes (peft/utils/loftq_utils.py)
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(llama_config())
    before = model.model.layers[0].self_attn.q_proj.weight.detach().clone()
    plan = _plan(AXOLOTL + "peft:\n  loftq_config:\n    loftq_bits: 4\n", model)
    peft_model = apply(plan, model)
    q = peft_model.base_model.model.model.layers[0].self_attn.q_proj
    # LoftQ replaced the base weight by its dequantised form and initialised B != 0
    assert not torch.equal(q.base_layer.weight.cpu(), before)
    assert q.lora_B["default"].weight.abs().sum() > 0


def test_task_type_from_the_model_class_trains_the_score_head():
    torch.manual_seed(0)
    model = transformers.LlamaForSequenceClassification(llama_seq_cls_config())
    plan = _plan(AXOLOTL + "model_type: LlamaForSequenceClassification\n", model)
    assert plan.peft_config["task_type"] == "SEQ_CLS" and plan.modules_to_save == ["score"]
    assert "score" in plan.peft_config["target_modules"]  # find_all_linear_names drops only lm_head
    peft_model = apply(plan, model)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert trainable == plan.totals.trainable_params
    exported = adapter_config(plan)
    assert exported["task_type"] == "SEQ_CLS" and exported["bias"] == "none"
