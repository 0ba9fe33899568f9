"""4-bit counting: the plan's totals against PEFT on models really loaded with bitsandbytes 4-bit.

PEFT counts a `Params4bit` weight as packed_numel * 2 * itemsize(quant_storage); transformers
quantises only exact nn.Linear / GPT-2 Conv1D modules outside its skip list. bitsandbytes
quantises on the CPU too, so the end-to-end comparison runs here; the `gpu` variant repeats it on
CUDA for the device machine.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import transformers
from peft_oracle import TINY, architecture, hf_factory, lora_config
from transformers import BitsAndBytesConfig

from loraplan.compiler.compile import compile_plan
from loraplan.compiler.counting import packed_4bit_count, quantized_modules
from loraplan.schema.config import Config

STORAGE = {"uint8": torch.uint8, "bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}
MODELS = [
    ("llama", "AutoModelForCausalLM", {}),
    ("llama", "AutoModelForCausalLM", {"tie_word_embeddings": True}),
    ("gpt2", "AutoModelForCausalLM", {}),
    ("bert", "AutoModelForSequenceClassification", {}),
    ("t5", "AutoModelForSeq2SeqLM", {}),
]


PACKING = [(s, shape) for s in STORAGE for shape in [(30, 64), (30, 63), (7, 5), (128, 96)]
           # bitsandbytes views the packed bytes as the storage dtype: an odd byte count only fits uint8
           if s == "uint8" or ((shape[0] * shape[1] // 2) % STORAGE[s].itemsize == 0 and shape[0] * shape[1] % 2 == 0)]


@pytest.mark.parametrize(("storage", "shape"), PACKING)
def test_packed_count_equals_bitsandbytes(storage, shape):
    import bitsandbytes as bnb

    param = bnb.nn.Params4bit(torch.randn(*shape), requires_grad=False, quant_storage=STORAGE[storage])
    packed = param._quantize("cpu")
    assert packed.numel() < shape[0] * shape[1]
    assert packed.numel() * 2 * packed.element_size() == packed_4bit_count(shape[0] * shape[1], storage)


@pytest.mark.parametrize(("model_type", "auto", "extra"), MODELS)
@pytest.mark.parametrize("skip", [None, ["lm_head", "q"]])
def test_quantized_modules_equal_transformers(model_type, auto, extra, skip):
    from transformers.integrations.bitsandbytes import replace_with_bnb_linear
    from transformers.quantizers.base import HfQuantizer

    factory = hf_factory(model_type, auto=auto, **extra)
    model = factory()
    arch = architecture(factory)
    config = BitsAndBytesConfig(load_in_4bit=True, llm_int8_skip_modules=skip)
    keep = HfQuantizer.get_modules_to_not_convert(model, skip, model._keep_in_fp32_modules)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        replaced = replace_with_bnb_linear(model, modules_to_not_convert=keep, quantization_config=config)
    expected = {n for n, m in replaced.named_modules() if type(m).__name__ == "Linear4bit"}
    assert quantized_modules(arch, skip) == expected


def _load_4bit(tmp_path, model_type, auto, extra, storage, device):
    cls = getattr(transformers, auto)
    cfg = transformers.AutoConfig.for_model(model_type, **{**TINY[model_type], **extra})
    torch.manual_seed(0)
    cls.from_config(cfg).save_pretrained(tmp_path)
    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_quant_storage=STORAGE[storage])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cls.from_pretrained(tmp_path, quantization_config=quant, device_map=device, dtype=torch.bfloat16)


def _compare_4bit(tmp_path, model_type, auto, extra, storage, device):
    from peft import get_peft_model

    config = Config.model_validate({
        "base_model": "test", "adapter": "qlora",
        "lora": {"r": 4, "lora_alpha": 8, "target_modules": "all-linear", "bias": "lora_only"},
        "quantization": {"load_in_4bit": True, "bnb_4bit_use_double_quant": True,
                         "bnb_4bit_compute_dtype": "bfloat16", "bnb_4bit_quant_storage": storage},
    })
    meta = hf_factory(model_type, auto=auto, **extra)
    plan = compile_plan(config, architecture(meta))
    model = _load_4bit(tmp_path, model_type, auto, extra, storage, device)
    assert any(type(m).__name__ == "Linear4bit" for m in model.modules())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = get_peft_model(model, lora_config(config))
    trainable, total = pm.get_nb_trainable_parameters()
    assert [i.module for i in plan.injections] == list(pm.base_model.targeted_module_names)
    assert (plan.totals.trainable_params, plan.totals.total_params) == (trainable, total)


@pytest.mark.parametrize("storage", ["uint8", "bfloat16"])
@pytest.mark.parametrize(("model_type", "auto", "extra"), MODELS)
def test_4bit_totals_like_peft_cpu(tmp_path, model_type, auto, extra, storage):
    _compare_4bit(tmp_path, model_type, auto, extra, storage, "cpu")


@pytest.mark.gpu
@pytest.mark.parametrize("storage", ["uint8", "bfloat16"])
@pytest.mark.parametrize(("model_type", "auto", "extra"), MODELS)
def test_4bit_totals_like_peft_gpu(tmp_path, model_type, auto, extra, storage):
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    _compare_4bit(tmp_path, model_type, auto, extra, storage, "cuda")
