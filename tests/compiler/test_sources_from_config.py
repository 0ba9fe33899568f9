"""from_config_json on tiny configs: the class from_pretrained builds, on meta, equal to a real build."""

from __future__ import annotations

import json
import os

import pytest
import torch
import transformers

from loraplan.compiler.sources.from_config import from_config_json
from loraplan.compiler.sources.from_module import from_module
from loraplan.errors import ResolveError

LLAMA = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 100,
    "max_position_embeddings": 128,
    "tie_word_embeddings": False,
    "dtype": "bfloat16",
}
GPT2 = {
    "model_type": "gpt2",
    "architectures": ["GPT2LMHeadModel"],
    "n_embd": 32,
    "n_layer": 2,
    "n_head": 4,
    "n_positions": 64,
    "vocab_size": 100,
}
MIXTRAL = {
    "model_type": "mixtral",
    "architectures": ["MixtralForCausalLM"],
    "hidden_size": 32,
    "intermediate_size": 48,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "num_local_experts": 4,
    "num_experts_per_tok": 2,
    "vocab_size": 100,
}
T5 = {
    "model_type": "t5",
    "architectures": ["T5ForConditionalGeneration"],
    "d_model": 32,
    "d_ff": 64,
    "d_kv": 8,
    "num_layers": 2,
    "num_decoder_layers": 3,
    "num_heads": 4,
    "vocab_size": 100,
}
BERT = {
    "model_type": "bert",
    "architectures": ["BertForMaskedLM"],
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "vocab_size": 100,
    "max_position_embeddings": 64,
}
GEMMA3 = {
    "model_type": "gemma3",
    "architectures": ["Gemma3ForConditionalGeneration"],
    "mm_tokens_per_image": 4,
    "text_config": {
        "model_type": "gemma3_text",
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 3,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 8,
        "vocab_size": 300,
        "sliding_window": 16,
    },
    "vision_config": {
        "model_type": "siglip_vision_model",
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": 28,
        "patch_size": 14,
    },
}


def real_build(data: dict, cls_name: str | None = None):
    """The same class built for real on CPU, as from_pretrained would instantiate it."""
    config = transformers.AutoConfig.for_model(**data)
    cls = getattr(transformers, cls_name or data["architectures"][0])
    if not isinstance(config, cls.config_class):
        config = cls.config_class.from_dict(data["text_config"])
    torch.manual_seed(0)
    return cls(config)


def same_tree(a, b) -> None:
    assert a.modules == b.modules
    assert a.parameters == b.parameters
    for key in ("output_embedding", "input_embedding", "tied_embeddings", "tied_parameters", "num_layers"):
        assert getattr(a, key) == getattr(b, key), key


@pytest.mark.parametrize("data", [LLAMA, GPT2, MIXTRAL, T5, BERT, GEMMA3], ids=lambda d: d["model_type"])
def test_meta_build_equals_real_build(data):
    arch = from_config_json(data)
    real = from_module(real_build(data), model_type=data["model_type"], model_class=data["architectures"][0])
    same_tree(arch, real)
    assert arch.model_class == data["architectures"][0]
    assert arch.source == "config.json" and arch.transformers_version == transformers.__version__


def test_llama_from_file_and_folder(tmp_path):
    folder = tmp_path / "tiny-llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(LLAMA))
    a = from_config_json(folder)
    b = from_config_json(folder / "config.json")
    assert a.modules == b.modules
    assert a.name == str(folder / "config.json")
    names = [m.name for m in a.modules]
    assert "model.layers.1.self_attn.k_proj" in names and a.output_embedding == "lm_head"
    k = a.module("model.layers.1.self_attn.k_proj")
    assert (k.kind, k.in_features, k.out_features, k.layer) == ("linear", 32, 16, 1)
    assert a.tied_embeddings is False and a.tied_parameters == {}
    assert a.config_attrs["num_key_value_heads"] == 2 and a.config_attrs["dtype"] == "bfloat16"
    assert a.main_stack == "model.layers" and a.num_layers == 2


def test_config_dtype_is_ignored():
    # The bf16 config builds the same tree as an fp32 one: dtype never changes names or shapes.
    a = from_config_json(LLAMA)
    b = from_config_json({**LLAMA, "dtype": "float32"})
    assert a.modules == b.modules and a.parameters == b.parameters


def test_gpt2_conv1d():
    a = from_config_json(GPT2)
    c = a.module("transformer.h.0.attn.c_attn")
    assert (c.kind, c.in_features, c.out_features, c.weight_shape) == ("conv1d_gpt2", 32, 96, (32, 96))
    assert a.tied_parameters == {"lm_head.weight": "transformer.wte.weight"} and a.tied_embeddings
    assert a.main_stack == "transformer.h"


def test_mixtral_fused_experts():
    a = from_config_json(MIXTRAL)
    experts = a.module("model.layers.1.mlp.experts")
    assert experts.kind == "other"
    shapes = {p.name: p.shape for p in a.parameters if p.module == "model.layers.1.mlp.experts"}
    assert shapes == {
        "model.layers.1.mlp.experts.gate_up_proj": (4, 96, 32),
        "model.layers.1.mlp.experts.down_proj": (4, 32, 48),
    }
    assert a.module("model.layers.1.mlp.gate").kind in ("linear", "other")
    assert a.config_attrs["num_experts"] == 4 and a.config_attrs["num_experts_per_tok"] == 2


def test_t5_encoder_decoder():
    a = from_config_json(T5)
    assert a.layer_stacks == {"encoder.block": 2, "decoder.block": 3}
    assert a.main_stack == "decoder.block" and a.num_layers == 3
    assert a.tied_parameters["lm_head.weight"] == "shared.weight"
    assert a.config_attrs["hidden_size"] == 32 and a.config_attrs["intermediate_size"] == 64
    assert a.config_attrs["keep_in_fp32_modules"] == ["wo"]


def test_bert_masked_lm_class():
    a = from_config_json(BERT)
    assert a.model_class == "BertForMaskedLM"
    assert a.output_embedding == "cls.predictions.decoder"
    assert a.main_stack == "bert.encoder.layer"


def test_vlm_class_is_architectures_entry():
    a = from_config_json(GEMMA3)
    names = {m.name for m in a.modules}
    assert "model.language_model.layers.2.self_attn.q_proj" in names
    assert "model.vision_tower.encoder.layers.1.self_attn.q_proj" in names
    assert a.main_stack == "model.language_model.layers" and a.num_layers == 3
    assert a.config_attrs["hidden_size"] == 32 and a.config_attrs["num_hidden_layers"] == 3
    assert a.config_attrs["text_model_type"] == "gemma3_text"


def test_model_class_override_uses_the_sub_config():
    # Gemma3ForCausalLM takes Gemma3TextConfig: from_pretrained extracts text_config.
    a = from_config_json(GEMMA3, model_class="Gemma3ForCausalLM")
    real = from_module(real_build(GEMMA3, "Gemma3ForCausalLM"))
    same_tree(a, real)
    assert a.model_class == "Gemma3ForCausalLM"
    assert "model.layers.0.self_attn.q_proj" in {m.name for m in a.modules}


def test_auto_class_override_maps_to_the_concrete_class():
    a = from_config_json(LLAMA, model_class="AutoModelForSequenceClassification")
    assert a.model_class == "LlamaForSequenceClassification"
    assert a.module("score") is not None and a.output_embedding is None


def test_no_architectures_falls_back_to_causal_lm():
    data = {k: v for k, v in LLAMA.items() if k != "architectures"}
    assert from_config_json(data).model_class == "LlamaForCausalLM"


def _error(source, code="LP512", **kw) -> str:
    with pytest.raises(ResolveError) as info:
        from_config_json(source, **kw)
    (d,) = info.value.diagnostics
    assert d.code == code and d.severity == "error"
    return d.message + " | " + (d.hint or "")


def test_unknown_model_type_suggests():
    text = _error({**LLAMA, "model_type": "lama"})
    assert "does not know model_type 'lama'" in text and "'llama'" in text


def test_remote_code_is_refused():
    text = _error({"model_type": "qwen", "architectures": ["QWenLMHeadModel"], "auto_map": {"AutoConfig": "x.Y"}},
                  code="LP526")
    assert "remote code" in text and "--arch" in text  # says what to pass instead


def test_class_transformers_lacks():
    text = _error(LLAMA, model_class="LlamaForTimeTravel")
    assert "has no class 'LlamaForTimeTravel'" in text


def test_missing_model_type_and_bad_files(tmp_path):
    assert "no `model_type`" in _error({"hidden_size": 3})
    assert "cannot read" in _error(tmp_path)  # folder without config.json
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    assert "not valid JSON" in _error(bad)
    bad.write_text("[1, 2]")
    assert "JSON object" in _error(bad)


def test_offline_environment_is_set():
    from_config_json(LLAMA)
    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def test_unknown_architectures_entry_falls_back_to_the_causal_lm_class():
    # e.g. a remote-code class name on a model type transformers supports natively
    a = from_config_json({**LLAMA, "architectures": ["LlamaForRemoteThing"]})
    assert a.model_class == "LlamaForCausalLM"
