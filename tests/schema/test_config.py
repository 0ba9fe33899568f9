"""Every field constraint of the native Config: a good and a bad value, and where the finding lands."""

from __future__ import annotations

import pytest

from loraplan.schema.config import Config, LoraSection, QuantizationSection, TrainingSection
from loraplan.schema.load import load_text


def findings(text: str) -> list[tuple[str, int, int]]:
    return [(d.code, d.line, d.column) for d in load_text(text, "t.yaml").diagnostics]


def lora(line: str) -> str:
    """A config whose lora block holds `line` on line 3, indented by two spaces."""
    return f"base_model: m\nlora:\n  {line}\n"


def quant(line: str) -> str:
    """`line` sits on line 5 (column 3 is its key), with 4-bit loading on."""
    return (
        "base_model: m\nadapter: qlora\nlora: {r: 8}\nquantization:\n"
        f"  {line}\n  load_in_4bit: true\n  bnb_4bit_compute_dtype: bfloat16\n"
    )


def training(line: str) -> str:
    """`line` sits on line 4."""
    return f"base_model: m\nlora: {{r: 8}}\ntraining:\n  {line}\n"


def top(line: str) -> str:
    """`line` sits on line 2, at the top level."""
    return f"base_model: m\n{line}\nlora: {{r: 8}}\n"


# (good document, bad document, code, line, column) -- column is where the value starts.
CASES = [
    # --- lora ---
    (lora("r: 1"), lora("r: 0"), "LP204", 3, 6),
    (lora("r: 65536"), lora("r: 65537"), "LP204", 3, 6),
    (lora("r: 16"), lora("r: 16.0"), "LP203", 3, 6),
    (lora("r: 16"), lora("r: '16'"), "LP203", 3, 6),
    (lora("r: 16"), lora("r: true"), "LP203", 3, 6),
    (lora("lora_alpha: 0.5"), lora("lora_alpha: 0"), "LP204", 3, 15),
    (lora("lora_alpha: 16"), lora("lora_alpha: -1"), "LP204", 3, 15),
    (lora("lora_alpha: 16"), lora("lora_alpha: sixteen"), "LP203", 3, 15),
    (lora("lora_dropout: 0"), lora("lora_dropout: -0.1"), "LP204", 3, 17),
    (lora("lora_dropout: 0.99"), lora("lora_dropout: 1"), "LP204", 3, 17),
    (lora("target_modules: all-linear"), lora("target_modules: 5"), "LP203", 3, 19),
    (lora("target_modules: '.*(q|v)_proj'"), lora("target_modules: '.*(q|v_proj'"), "LP206", 3, 19),
    (lora("target_modules: [q_proj]"), lora("target_modules: [q_proj, '']"), "LP204", 3, 28),
    (lora("target_modules: [q_proj]"), lora("target_modules: [q_proj, 7]"), "LP203", 3, 28),
    (lora("target_modules: [q_proj]"), lora("target_modules: {q_proj: 1}"), "LP203", 3, 19),
    (lora("exclude_modules: [lm_head]"), lora("exclude_modules: '['"), "LP206", 3, 20),
    (lora("exclude_modules: lm_head"), lora("exclude_modules: [[lm_head]]"), "LP203", 3, 21),
    (lora("target_parameters: [mlp.experts.down_proj]"), lora("target_parameters: mlp.experts.down_proj"),
     "LP203", 3, 22),
    (lora("target_parameters: [a]"), lora("target_parameters: ['']"), "LP204", 3, 23),
    (lora("layers_to_transform: 0"), lora("layers_to_transform: -1"), "LP204", 3, 24),
    (lora("layers_to_transform: [0, 1]"), lora("layers_to_transform: [0, -1]"), "LP204", 3, 28),
    (lora("layers_to_transform: [0, 1]"), lora("layers_to_transform: [0, one]"), "LP203", 3, 28),
    (lora("layers_to_transform: [0, 1]"), lora("layers_to_transform: '0,1'"), "LP203", 3, 24),
    (lora("layers_pattern: layers"), lora("layers_pattern: 3"), "LP203", 3, 19),
    (lora("layers_pattern: [layers, h]"), lora("layers_pattern: [layers, 3]"), "LP203", 3, 28),
    (lora("rank_pattern: {q_proj: 4}"), lora("rank_pattern: {q_proj: 0}"), "LP204", 3, 26),
    (lora("rank_pattern: {'layers\\.0\\..*': 4}"), lora("rank_pattern: {'q(': 4}"), "LP206", 3, 18),
    (lora("rank_pattern: {q_proj: 4}"), lora("rank_pattern: [q_proj]"), "LP203", 3, 17),
    (lora("rank_pattern: {q_proj: 4}"), lora("rank_pattern: {q_proj: 4.5}"), "LP203", 3, 26),
    (lora("alpha_pattern: {q_proj: 0.5}"), lora("alpha_pattern: {q_proj: 0}"), "LP204", 3, 27),
    (lora("alpha_pattern: {q_proj: 8}"), lora("alpha_pattern: {'*q': 8}"), "LP206", 3, 19),
    (lora("use_rslora: true"), lora("use_rslora: yes please"), "LP203", 3, 15),
    (lora("use_dora: false"), lora("use_dora: 1"), "LP203", 3, 13),
    (lora("bias: lora_only"), lora("bias: lora"), "LP205", 3, 9),
    (lora("lora_bias: false"), lora("lora_bias: 'false'"), "LP203", 3, 14),
    (lora("init_lora_weights: pissa_niter_4"), lora("init_lora_weights: pissa_niter_x"), "LP205", 3, 22),
    (lora("init_lora_weights: false"), lora("init_lora_weights: gausian"), "LP205", 3, 22),
    (lora("init_lora_weights: olora"), lora("init_lora_weights: 1"), "LP203", 3, 22),
    (lora("modules_to_save: [score]"), lora("modules_to_save: score"), "LP203", 3, 20),
    (lora("fan_in_fan_out: true"), lora("fan_in_fan_out: on please"), "LP203", 3, 19),
    (lora("loftq_config: {loftq_bits: 4}"), lora("loftq_config: {loftq_bits: four}"), "LP205", 3, 30),
    (lora("task_type: SEQ_CLS"), lora("task_type: causal_lm"), "LP205", 3, 14),
    (lora("r: 8"), lora("rank: 8"), "LP201", 3, 3),
    # --- quantization ---
    (quant("bnb_4bit_quant_type: fp4"), quant("bnb_4bit_quant_type: nf5"), "LP205", 5, 24),
    (quant("bnb_4bit_use_double_quant: true"), quant("bnb_4bit_use_double_quant: 2"), "LP203", 5, 30),
    (quant("bnb_4bit_quant_storage: bfloat16"), quant("bnb_4bit_quant_storage: int8"), "LP205", 5, 27),
    (quant("llm_int8_skip_modules: [lm_head]"), quant("llm_int8_skip_modules: ['']"), "LP204", 5, 27),
    (quant("llm_int8_enable_fp32_cpu_offload: false"), quant("llm_int8_enable_fp32_cpu_offload: no way"),
     "LP203", 5, 37),
    (quant("load_in_8bit: false"), quant("load_in_16bit: false"), "LP201", 5, 3),
    # --- training ---
    (training("sequence_len: 1"), training("sequence_len: 0"), "LP204", 4, 17),
    (training("sequence_len: 10000000"), training("sequence_len: 10000001"), "LP204", 4, 17),
    (training("micro_batch_size: 1"), training("micro_batch_size: 0"), "LP204", 4, 21),
    (training("micro_batch_size: 1000000"), training("micro_batch_size: 1000001"), "LP204", 4, 21),
    (training("gradient_accumulation_steps: 1"), training("gradient_accumulation_steps: 0"), "LP204", 4, 32),
    (training("gradient_checkpointing: true"), training("gradient_checkpointing: 'true'"), "LP203", 4, 27),
    (training("optimizer: paged_adamw_8bit"), training("optimizer: adam"), "LP205", 4, 14),
    (training("attn_implementation: eager"), training("attn_implementation: flash"), "LP205", 4, 24),
    (training("sequence_len: 8"), training("seq_len: 8"), "LP201", 4, 3),
    # --- top level ---
    (top("adapter: lora"), top("adapter: dora"), "LP205", 2, 10),
    (top("architecture: llama"), top("architecture: ''"), "LP204", 2, 15),
    (top("model_class: LlamaForCausalLM"), top("model_class: ''"), "LP204", 2, 14),
    (top("dtype: float16"), top("dtype: bf16"), "LP205", 2, 8),
    (top("dtype: float32"), top("lora_r: 8"), "LP201", 2, 1),
    (top("training: {sequence_len: 4}"), top("training: [4]"), "LP203", 2, 11),
    (top("quantization: {load_in_8bit: true}"), top("quantization: true"), "LP203", 2, 15),
]


@pytest.mark.parametrize(("good", "bad", "code", "line", "column"), CASES)
def test_field_constraint(good, bad, code, line, column):
    assert [f for f in findings(good) if f[0].startswith("LP2")] == []
    assert findings(bad) == [(code, line, column)]


def test_required_keys_are_reported_at_the_document():
    assert findings("# a config\nadapter: lora\n") == [("LP202", 2, 1), ("LP202", 2, 1)]
    messages = [d.message for d in load_text("adapter: lora\n", "t.yaml").diagnostics]
    assert messages == ["missing required key 'base_model'", "missing required key 'lora'"]


def test_base_model_must_be_a_non_empty_string():
    assert findings("base_model: ''\nlora: {}\n") == [("LP204", 1, 13)]
    assert findings("base_model:\nlora: {}\n") == [("LP203", 1, 1)]  # empty value: at its key


def test_lora_block_must_be_a_mapping():
    assert findings("base_model: m\nlora:\n") == [("LP203", 2, 1)]
    assert findings("base_model: m\nlora: [r]\n") == [("LP203", 2, 7)]


def test_every_section_forbids_unknown_keys():
    for model in (Config, LoraSection, QuantizationSection, TrainingSection):
        assert model.model_config["extra"] == "forbid"
        assert model.model_config["strict"] is True


def test_defaults_are_peft_defaults():
    section = LoraSection()
    assert (section.r, section.lora_alpha, section.lora_dropout) == (8, 8, 0.0)
    assert section.target_modules is None and section.bias == "none" and section.init_lora_weights is True


def test_every_field_has_a_description():
    for model in (Config, LoraSection, QuantizationSection, TrainingSection):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"


def test_all_findings_are_collected_not_first_only():
    text = "base_model: m\nadapter: qlroa\nlora:\n  r: 0\n  lora_alpah: 2\ntraining:\n  optimizer: adam\n"
    assert findings(text) == [("LP205", 2, 10), ("LP204", 4, 6), ("LP201", 5, 3), ("LP205", 7, 14)]
