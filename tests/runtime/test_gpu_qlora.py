"""QLoRA (nf4, fp4) and 8-bit on a GPU: load from a local folder, apply, verify, train.

Skipped without CUDA. The tiny Llama is saved to tmp_path and loaded back through
`load_model`, so bitsandbytes quantises it exactly as it would a real checkpoint.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import transformers

from loraplan.compiler.compile import compile_plan
from loraplan.runtime.apply import apply
from loraplan.runtime.load import load_model
from loraplan.runtime.verify import find_adapters
from loraplan.schema.config import Config

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

VOCAB = 256


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama-gpu")
    cfg = transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, architectures=["LlamaForCausalLM"],
    )
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(path)
    return path


def _config(model_dir, quantization: dict, adapter: str = "qlora", **training) -> Config:
    return Config.model_validate({
        "base_model": str(model_dir),
        "adapter": adapter,
        "dtype": "bfloat16",
        "lora": {"r": 8, "lora_alpha": 16, "target_modules": "all-linear", "task_type": "CAUSAL_LM"},
        "quantization": quantization,
        "training": training,
    })


def _train(model, steps: int = 8) -> list[float]:
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(1, VOCAB, (4, 32), generator=g).cuda()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    model.train()
    losses = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses


NF4 = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
       "bnb_4bit_compute_dtype": "bfloat16"}


@pytest.mark.parametrize(
    "quantization",
    [
        NF4,
        {**NF4, "bnb_4bit_quant_storage": "bfloat16"},  # FSDP-style storage
        {"load_in_4bit": True, "bnb_4bit_quant_type": "fp4", "bnb_4bit_compute_dtype": "bfloat16"},
    ],
    ids=["nf4", "nf4-bf16-storage", "fp4"],
)
@pytest.mark.parametrize("fast", [False, "auto"], ids=["peft-layers", "fast-path"])
def test_qlora_4bit(model_dir, quantization, fast):
    config = _config(model_dir, quantization, gradient_checkpointing=True)
    model = load_model(config, model_dir, progress=False)
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"
    # no blanket fp32 upcast: what is not quantised stays in the compute dtype
    floats = {p.dtype for n, p in model.named_parameters() if p.dtype.is_floating_point and "proj" not in n}
    assert floats == {torch.bfloat16}
    plan = compile_plan(config, model)
    peft_model = apply(plan, model, fast=fast)
    assert peft_model.get_nb_trainable_parameters()[0] == plan.totals.trainable_params
    assert len(find_adapters(peft_model).modules) == len(plan.injections) == 14
    losses = _train(peft_model)
    assert losses[-1] < losses[0], losses


def test_plan_from_config_json_fits_the_4bit_model(model_dir):
    """Compiled from the folder's config.json (no weights, no GPU), applied to the 4-bit load."""
    config = _config(model_dir, NF4)
    plan = compile_plan(config)  # resolves base_model: the local folder's config.json
    model = load_model(config, model_dir, progress=False)
    peft_model = apply(plan, model)
    assert peft_model.get_nb_trainable_parameters()[0] == plan.totals.trainable_params
    losses = _train(peft_model)
    assert losses[-1] < losses[0], losses


def test_8bit(model_dir):
    config = _config(model_dir, {"load_in_8bit": True}, adapter="lora")
    model = load_model(config, model_dir, progress=False)
    assert type(model.model.layers[0].self_attn.q_proj).__name__ == "Linear8bitLt"
    plan = compile_plan(config, model)
    peft_model = apply(plan, model)
    assert peft_model.get_nb_trainable_parameters()[0] == plan.totals.trainable_params
    losses = _train(peft_model)
    assert losses[-1] < losses[0], losses
