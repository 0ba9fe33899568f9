"""resolve_architecture / can_resolve_offline: order of sources, model_class, located LP501/LP512."""

from __future__ import annotations

import json

import pytest

from loraplan.compiler.catalog import lookup
from loraplan.compiler.resolve import can_resolve_offline, resolve_architecture
from loraplan.errors import ResolveError
from loraplan.schema.load import load_text

TINY_LLAMA = {
    "model_type": "llama",
    "architectures": ["LlamaForCausalLM"],
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vocab_size": 100,
}


def load(yaml_text: str):
    result = load_text(yaml_text, file="cfg.yaml", dialect="native")
    assert result.config is not None, result.diagnostics
    return result.config, result.source


@pytest.fixture(autouse=True)
def empty_hf_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    monkeypatch.delenv("HF_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_catalog_name_alias_and_case():
    config, _ = load("base_model: nousresearch/META-LLAMA-3-8B\nlora: {r: 8}\n")
    arch = resolve_architecture(config, allow_torch=False)
    assert arch.name == "meta-llama/Meta-Llama-3-8B" and arch.source == "catalog"
    assert can_resolve_offline(config)


def test_architecture_key_overrides_base_model_and_override_beats_both():
    config, _ = load("base_model: my-org/private-finetune\narchitecture: Qwen/Qwen2.5-0.5B\nlora: {r: 8}\n")
    assert resolve_architecture(config, allow_torch=False).name == "Qwen/Qwen2.5-0.5B"
    assert resolve_architecture(config, "openai-community/gpt2", allow_torch=False).model_class == "GPT2LMHeadModel"
    assert can_resolve_offline(config) and can_resolve_offline(config, "gpt2")
    assert not can_resolve_offline(config, "no/such-model")


def test_local_folder_builds_with_transformers(tmp_path):
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY_LLAMA))
    config, _ = load(f"base_model: {folder}\nlora: {{r: 8}}\n")
    arch = resolve_architecture(config)
    assert arch.source == "config.json" and arch.num_layers == 2
    assert not can_resolve_offline(config)  # needs torch
    with pytest.raises(ResolveError) as info:
        resolve_architecture(config, allow_torch=False)
    assert "needs torch and transformers" in info.value.diagnostics[0].message


def test_local_copy_of_a_catalog_config_needs_no_torch(tmp_path):
    entry = lookup("openai-community/gpt2")
    (tmp_path / "config.json").write_text(entry.config_path.read_text())
    config, _ = load(f"base_model: {tmp_path}\nlora: {{r: 8}}\n")
    assert can_resolve_offline(config)
    arch = resolve_architecture(config, allow_torch=False)
    assert arch.source == "catalog" and arch.model_class == "GPT2LMHeadModel" and arch.name == str(tmp_path)


def test_hf_cache(monkeypatch, tmp_path):
    snap = tmp_path / "hub" / "models--acme--tiny" / "snapshots" / "abc"
    snap.mkdir(parents=True)
    (snap / "config.json").write_text(json.dumps(TINY_LLAMA))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    config, _ = load("base_model: acme/tiny\nlora: {r: 8}\n")
    arch = resolve_architecture(config)
    assert arch.source == "hf-cache" and arch.name == "acme/tiny" and arch.num_layers == 2
    assert not can_resolve_offline(config)


def test_model_class_matching_or_auto_stays_in_catalog():
    config, _ = load("base_model: mistralai/Mixtral-8x7B-v0.1\nmodel_class: AutoModelForCausalLM\nlora: {r: 8}\n")
    assert can_resolve_offline(config)
    assert resolve_architecture(config, allow_torch=False).model_class == "MixtralForCausalLM"


def test_model_class_override_rebuilds_from_the_catalog_config():
    config, source = load("base_model: google/gemma-3-4b-it\nmodel_class: Gemma3ForCausalLM\nlora: {r: 8}\n")
    assert not can_resolve_offline(config)
    with pytest.raises(ResolveError) as info:
        resolve_architecture(config, source=source, allow_torch=False)
    assert "Gemma3ForConditionalGeneration" in info.value.diagnostics[0].message
    arch = resolve_architecture(config)
    assert arch.model_class == "Gemma3ForCausalLM" and arch.main_stack == "model.layers"
    assert arch.name == "google/gemma-3-4b-it"


def test_unknown_base_model_is_located_with_did_you_mean():
    text = "lora: {r: 8}\nbase_model: meta-llama/Llama-3.1-8b-instrct\n"
    config, source = load(text)
    assert not can_resolve_offline(config)
    with pytest.raises(ResolveError) as info:
        resolve_architecture(config, source=source)
    (d,) = info.value.diagnostics
    assert d.code == "LP501" and d.severity == "error"
    assert (d.file, d.line, d.column) == ("cfg.yaml", 2, 13)
    assert "meta-llama/Llama-3.1-8B" in d.hint and "--arch" in d.hint and "architecture:" in d.hint


def test_unknown_architecture_key_is_located_there():
    config, source = load("base_model: meta-llama/Llama-3.1-8B\nlora: {r: 8}\narchitecture: ./nowhere/model\n")
    with pytest.raises(ResolveError) as info:
        resolve_architecture(config, source=source)
    (d,) = info.value.diagnostics
    assert (d.line, d.column) == (3, 15) and d.message.startswith("architecture './nowhere/model'")


def test_override_error_names_the_flag():
    config, source = load("base_model: meta-llama/Llama-3.1-8B\nlora: {r: 8}\n")
    with pytest.raises(ResolveError) as info:
        resolve_architecture(config, "qwen/nope", source=source)
    (d,) = info.value.diagnostics
    assert d.message.startswith("--arch 'qwen/nope'") and d.line is None


def test_build_failure_is_lp512_located(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**TINY_LLAMA, "model_type": "not-a-model"}))
    config, source = load(f"base_model: {tmp_path}\nlora: {{r: 8}}\n")
    with pytest.raises(ResolveError) as info:
        resolve_architecture(config, source=source)
    (d,) = info.value.diagnostics
    assert d.code == "LP512" and d.line == 1 and d.column == 13
    assert str(tmp_path) in d.message and "not-a-model" in d.message


def test_folder_without_config_says_so(tmp_path):
    config, source = load(f"base_model: {tmp_path}\nlora: {{r: 8}}\n")
    with pytest.raises(ResolveError) as info:
        resolve_architecture(config, source=source)
    assert "has no config.json" in info.value.diagnostics[0].message
