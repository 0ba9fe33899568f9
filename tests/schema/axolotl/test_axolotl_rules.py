"""Adapter types, Axolotl-specific conflicts, and native rules located at the Axolotl keys."""

from __future__ import annotations

from loraplan.schema.axolotl import reword
from loraplan.schema.diagnostic import Diagnostic
from loraplan.schema.load import load_text

BASE = "base_model: m\nlora_r: 8\nlora_alpha: 16\nlora_target_linear: true\n"


def _diags(text: str) -> list[tuple]:
    result = load_text(text, "a.yml", dialect="axolotl")
    return [(d.code, d.severity, d.line, d.column) for d in result.diagnostics]


def test_missing_adapter_is_lp403_at_the_file_start():
    result = load_text(BASE, "a.yml", dialect="axolotl")
    [diag] = result.diagnostics
    assert (diag.code, diag.severity, diag.line, diag.column) == ("LP403", "error", 1, 1)
    assert "fine-tunes every weight" in diag.message
    assert result.config is None  # nothing to plan


def test_llama_adapter_is_lp403_at_the_value():
    result = load_text(BASE + "adapter: llama-adapter\n", "a.yml", dialect="axolotl")
    [diag] = result.diagnostics
    assert (diag.code, diag.line, diag.column, diag.end_column) == ("LP403", 5, 10, 23)
    assert "LLaMA-Adapter" in diag.message
    assert result.config is None


def test_adapter_case_gets_did_you_mean():
    result = load_text(BASE + "adapter: LoRA\n", "a.yml", dialect="axolotl")
    [diag] = result.diagnostics
    assert diag.code == "LP403" and diag.hint == "did you mean 'lora'?"


def test_missing_rank_or_alpha_is_an_error_at_adapter():
    assert _diags("base_model: m\nadapter: lora\nlora_target_linear: true\n") == [
        ("LP202", "error", 2, 1), ("LP202", "error", 2, 1)]


def test_4bit_and_8bit_conflict_points_at_load_in_8bit():
    text = "adapter: qlora\nload_in_4bit: true\nload_in_8bit: true\n" + BASE
    assert _diags(text) == [("LP302", "error", 3, 1)]


def test_qlora_without_4bit_points_at_adapter_in_axolotl_words():
    result = load_text("adapter: qlora\n" + BASE, "a.yml", dialect="axolotl")
    [diag] = result.diagnostics
    assert (diag.code, diag.line, diag.column) == ("LP301", 1, 1)
    assert "quantization." not in diag.message and "load_in_4bit" in diag.message
    assert diag.hint == "add `load_in_4bit: true`, or use `adapter: lora`"


def test_lora_with_4bit_warns_that_axolotl_does_not_quantise():
    result = load_text("adapter: lora\nload_in_4bit: true\n" + BASE, "a.yml", dialect="axolotl")
    assert [(d.code, d.severity, d.line) for d in result.diagnostics] == [("LP404", "warning", 2)]
    assert result.config.quantization is None


def test_bnb_config_kwargs_without_qlora_has_no_effect():
    text = "adapter: lora\nbnb_config_kwargs:\n  bnb_4bit_quant_type: fp4\n" + BASE
    assert _diags(text) == [("LP307", "warning", 2, 1)]


def test_layers_pattern_without_layers_to_transform():
    result = load_text("adapter: lora\npeft_layers_pattern: [layers]\n" + BASE, "a.yml", dialect="axolotl")
    [diag] = result.diagnostics
    assert (diag.code, diag.line) == ("LP303", 2)
    assert "peft_layers_pattern" in diag.message and "peft_layers_to_transform" in diag.message


def test_layer_filter_with_target_linear_is_accepted():
    # Axolotl expands lora_target_linear into a list of names, which PEFT takes with a layer filter.
    text = "adapter: lora\npeft_layers_to_transform: [0, 1]\npeft_layers_pattern: [layers]\n" + BASE
    assert _diags(text) == []


def test_target_parameters_with_dropout_points_at_lora_dropout():
    text = "adapter: lora\nlora_dropout: 0.05\nlora_target_parameters: [mlp.experts.down_proj]\n" + BASE
    assert _diags(text) == [("LP305", "error", 2, 1)]


def test_layer_filter_with_regex_string():
    text = ("base_model: m\nadapter: lora\nlora_r: 8\nlora_alpha: 16\nlora_target_modules: '.*q_proj'\n"
            "peft_layers_to_transform: [0]\n")
    assert _diags(text) == [("LP304", "error", 6, 1)]


def test_qlora_with_gptq_is_refused():
    text = "adapter: qlora\nload_in_4bit: true\ngptq: true\n" + BASE
    assert _diags(text) == [("LP404", "error", 3, 1)]


def test_quantize_moe_experts_conflicts():
    text = "adapter: qlora\nload_in_4bit: true\nquantize_moe_experts: true\n" + BASE
    assert _diags(text) == [("LP404", "error", 3, 1)]
    text = "adapter: lora\nquantize_moe_experts: true\nlora_target_parameters: [experts.down_proj]\n" + \
        BASE.replace("lora_target_linear: true\n", "")
    assert _diags(text) == [("LP404", "error", 2, 1)]


def test_gptq_lora_is_info():
    assert _diags("adapter: lora\ngptq: true\n" + BASE) == [("LP402", "info", 2, 1)]


def test_attn_implementation_with_legacy_flag_is_refused():
    text = "adapter: lora\nattn_implementation: sdpa\nflash_attention: true\n" + BASE
    assert _diags(text) == [("LP404", "error", 3, 1)]


def test_unknown_attention_kernel_is_info_at_the_value():
    assert _diags("adapter: lora\nattn_implementation: xformers\n" + BASE) == [("LP402", "info", 2, 22)]


def test_lora_model_dir_is_info_only_when_set():
    assert _diags("adapter: lora\nlora_model_dir:\n" + BASE) == []
    assert _diags("adapter: lora\nlora_model_dir: ./out\n" + BASE) == [("LP402", "info", 2, 1)]


def test_mxfp4_base_is_info_unless_dequantised():
    text = "adapter: lora\nmodel_quantization_config: Mxfp4Config\n" + BASE
    assert _diags(text) == [("LP402", "info", 2, 1)]
    text += "model_quantization_config_kwargs:\n  dequantize: true\n"
    assert _diags(text) == []


def test_peft_backend_keys_are_dropped_and_qlora_needs_4bit():
    # Axolotl 0.19.0 drops peft.backend/weight_dtype; its validate_qlora then wants load_in_4bit
    text = "adapter: qlora\npeft:\n  backend: torchao\n  weight_dtype: int4\n" + BASE
    result = load_text(text, "a.yml", dialect="axolotl")
    found = [(d.code, d.severity, d.line) for d in result.diagnostics]
    assert ("LP410", "warning", 3) in found and ("LP410", "warning", 4) in found
    assert any(code == "LP301" and severity == "error" for code, severity, _ in found)


def test_reword_replaces_native_names_only_as_whole_keys():
    d = Diagnostic("LP306", "error", "DoRA is not supported with target_parameters",
                   hint="set `use_dora: false`; peft_layers_pattern stays")
    [out] = reword([d])
    assert out.message == "DoRA is not supported with lora_target_parameters"
    assert out.hint == "set `peft_use_dora: false`; peft_layers_pattern stays"


def test_native_dialect_is_not_reworded():
    text = "base_model: m\nlora:\n  r: 8\n  layers_pattern: layers\n"
    result = load_text(text, "a.yml")
    [diag] = [d for d in result.diagnostics if d.code == "LP303"]
    assert "peft_" not in diag.message
