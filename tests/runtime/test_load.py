"""load_model: local folders only, dtype and class from the config, bitsandbytes settings, and
k-bit preparation without PEFT's blanket fp32 upcast."""

from __future__ import annotations

import json
import os
import warnings

import pytest
import torch
import transformers
from runtime_models import TINY, train

from loraplan.compiler.compile import compile_plan
from loraplan.errors import LoraplanError
from loraplan.runtime import load as load_mod
from loraplan.runtime.apply import apply
from loraplan.runtime.kbit import prepare_for_kbit_training
from loraplan.runtime.load import bnb_config, load_model, offline, progress_bars
from loraplan.schema.config import Config


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-llama")
    TINY["llama"].build().save_pretrained(path)
    return path


def _config(**top) -> Config:
    data = {"base_model": "org/tiny-llama", "lora": {"r": 4, "target_modules": ["q_proj", "v_proj"]}}
    data.update(top)
    return Config.model_validate(data)


def test_loads_dtype_and_class_frozen(llama_dir):
    model = load_model(_config(dtype="bfloat16"), llama_dir, progress=False)
    assert type(model) is transformers.LlamaForCausalLM
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not any(p.requires_grad for p in model.parameters())
    assert not model.model.layers[0].gradient_checkpointing


def test_model_class_override_and_auto_fallback(llama_dir, tmp_path):
    model = load_model(_config(dtype="float32", model_class="LlamaModel"), llama_dir, progress=False)
    assert type(model) is transformers.LlamaModel
    # a folder whose config.json names no architecture: the task type's Auto class
    no_arch = tmp_path / "noarch"
    TINY["llama"].build().save_pretrained(no_arch)
    cfg = json.loads((no_arch / "config.json").read_text())
    cfg.pop("architectures")
    (no_arch / "config.json").write_text(json.dumps(cfg))
    model = load_model(_config(dtype="float32"), no_arch, progress=False)
    assert type(model) is transformers.LlamaForCausalLM


def test_unknown_class_is_an_error(llama_dir):
    with pytest.raises(LoraplanError, match="'NoSuchModelForCausalLM' is not in transformers"):
        load_model(_config(model_class="NoSuchModelForCausalLM"), llama_dir)


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("meta-llama/Llama-3.1-8B",
         "no such folder; it looks like a hub id.*never downloads.*hf download meta-llama/Llama-3.1-8B"),
        ("./no/such/folder", "no such folder"),
    ],
)
def test_non_local_paths_are_refused(where, message):
    with pytest.raises(LoraplanError, match=message):
        load_model(_config(), where)


def test_file_and_folder_without_config_are_refused(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(LoraplanError, match="is a file"):
        load_model(_config(), tmp_path / "weights.bin")
    with pytest.raises(LoraplanError, match=r"no config\.json"):
        load_model(_config(), tmp_path)


def test_gradient_checkpointing_from_config_or_argument(llama_dir):
    cfg = _config(dtype="float32", training={"gradient_checkpointing": True})
    model = load_model(cfg, llama_dir, progress=False)
    layer = model.model.layers[0]
    assert layer.gradient_checkpointing
    assert layer._gradient_checkpointing_func.keywords == {"use_reentrant": False}
    assert model.config.use_cache is False
    model = load_model(cfg, llama_dir, progress=False, gradient_checkpointing=False)
    assert not model.model.layers[0].gradient_checkpointing


def test_loaded_model_compiles_applies_and_trains(llama_dir):
    cfg = _config(dtype="float32", training={"gradient_checkpointing": True})
    model = load_model(cfg, llama_dir, progress=False, device_map="cpu")
    plan = compile_plan(cfg, model)
    peft_model = apply(plan, model)
    losses = train(peft_model, TINY["llama"].batch(), steps=4)
    assert losses[-1] < losses[0]


def test_bnb_config_carries_every_field():
    cfg = _config(
        adapter="qlora",
        quantization={
            "load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
            "bnb_4bit_compute_dtype": "bfloat16", "bnb_4bit_quant_storage": "bfloat16",
            "llm_int8_skip_modules": ["lm_head"],
        },
    )
    q = bnb_config(cfg)
    assert isinstance(q, transformers.BitsAndBytesConfig)
    assert q.load_in_4bit and not q.load_in_8bit
    assert q.bnb_4bit_quant_type == "nf4" and q.bnb_4bit_use_double_quant
    assert q.bnb_4bit_compute_dtype == torch.bfloat16
    assert q.bnb_4bit_quant_storage == torch.bfloat16
    assert q.llm_int8_skip_modules == ["lm_head"]
    q8 = bnb_config(_config(quantization={"load_in_8bit": True, "llm_int8_threshold": 4.0}))
    assert q8.load_in_8bit and not q8.load_in_4bit and q8.llm_int8_threshold == 4.0
    assert bnb_config(_config()) is None
    assert bnb_config(_config(quantization={"bnb_4bit_quant_type": "fp4"})) is None  # nothing loads quantised


def test_quantised_load_needs_cuda(llama_dir, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cfg = _config(adapter="qlora", quantization={"load_in_4bit": True})
    with pytest.raises(LoraplanError, match="needs a CUDA GPU"):
        load_model(cfg, llama_dir)


def test_offline_and_progress_contexts_restore_state(monkeypatch):
    from huggingface_hub import constants
    from transformers.utils import logging as hf_logging

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    before = constants.HF_HUB_OFFLINE
    with offline():
        assert os.environ["HF_HUB_OFFLINE"] == "1" and constants.HF_HUB_OFFLINE is True
    assert "HF_HUB_OFFLINE" not in os.environ and constants.HF_HUB_OFFLINE is before

    hf_logging.enable_progress_bar()
    with progress_bars(False):
        assert not hf_logging.is_progress_bar_enabled()
    assert hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    with progress_bars(True):
        assert hf_logging.is_progress_bar_enabled()
    assert not hf_logging.is_progress_bar_enabled()
    hf_logging.enable_progress_bar()


def test_load_is_offline_and_local_only(llama_dir, monkeypatch):
    seen = {}

    def fake_from_pretrained(path, **kwargs):
        seen.update(kwargs, path=path, offline=os.environ.get("HF_HUB_OFFLINE"))
        return TINY["llama"].build()

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(transformers.LlamaForCausalLM, "from_pretrained", staticmethod(fake_from_pretrained))
    load_model(_config(training={"attn_implementation": "eager"}), llama_dir, progress=False)
    assert seen["local_files_only"] is True and seen["offline"] == "1"
    assert seen["dtype"] == torch.bfloat16 and seen["attn_implementation"] == "eager"
    assert "quantization_config" not in seen and "device_map" not in seen
    seen.clear()
    load_model(_config(), llama_dir, progress=False)
    assert "attn_implementation" not in seen  # only when the config sets it


def test_prepare_for_kbit_training_casts_nothing_by_default():
    model = TINY["llama"].build().to(torch.bfloat16)
    prepare_for_kbit_training(model)
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert not any(p.requires_grad for p in model.parameters())
    assert model.model.layers[0].gradient_checkpointing
    ids = torch.tensor([[1, 2, 3]])
    assert model.get_input_embeddings()(ids).requires_grad  # the input-grad hook


def test_prepare_for_kbit_training_upcasts_only_norms_when_asked():
    model = TINY["llama"].build().to(torch.bfloat16)
    prepare_for_kbit_training(model, upcast_norms=True, gradient_checkpointing=False)
    for name, p in model.named_parameters():
        expected = torch.float32 if "norm" in name else torch.bfloat16
        assert p.dtype == expected, name
    assert not model.model.layers[0].gradient_checkpointing


def test_default_device_map(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert load_mod.default_device_map(False) is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 3)
    assert load_mod.default_device_map(False) == {"": 3}
    assert load_mod.default_device_map(True) == {"": 3}
