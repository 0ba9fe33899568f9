"""Every cross-field rule in rules.py: a config that passes it, one that trips it, and the exact place."""

from __future__ import annotations

import pytest

from loraplan.schema import rules
from loraplan.schema.codes import CODES
from loraplan.schema.load import load_text

BASE = "base_model: m\n"


def findings(text: str) -> list[tuple[str, str, int, int]]:
    """(code, severity, line, column) of every finding."""
    return [(d.code, d.severity, d.line, d.column) for d in load_text(text, "t.yaml").diagnostics]


def only(text: str, code: str) -> list[tuple[str, str, int, int]]:
    return [f for f in findings(text) if f[0] == code]


Q4 = "quantization:\n  load_in_4bit: true\n  bnb_4bit_compute_dtype: bfloat16\n"


# --- qlora_needs_4bit ------------------------------------------------------------------------


def test_qlora_needs_4bit():
    good = BASE + "adapter: qlora\nlora: {r: 8}\n" + Q4
    assert findings(good) == []
    bad = BASE + "adapter: qlora\nlora: {r: 8}\n"
    assert findings(bad) == [("LP301", "error", 2, 1)]
    bad8 = BASE + "adapter: qlora\nlora: {r: 8}\nquantization:\n  load_in_8bit: true\n"
    assert only(bad8, "LP301") == [("LP301", "error", 2, 1)]


# --- lora_on_quantized_base ------------------------------------------------------------------


def test_lora_written_on_a_4bit_base_is_qlora():
    assert findings(BASE + "lora: {r: 8}\n" + Q4) == []  # adapter left out: nothing to blame
    assert findings(BASE + "adapter: lora\nlora: {r: 8}\nquantization:\n  load_in_8bit: true\n") == []
    bad = BASE + "adapter: lora\nlora: {r: 8}\n" + Q4
    assert findings(bad) == [("LP311", "warning", 2, 1)]


# --- bits_exclusive --------------------------------------------------------------------------


def test_4bit_and_8bit_are_exclusive():
    bad = BASE + "adapter: qlora\nlora: {r: 8}\n" + Q4 + "  load_in_8bit: true\n"
    assert only(bad, "LP302") == [("LP302", "error", 7, 3)]
    assert only(BASE + "adapter: qlora\nlora: {r: 8}\n" + Q4 + "  load_in_8bit: false\n", "LP302") == []


# --- unused_quant_options --------------------------------------------------------------------


def test_4bit_options_without_4bit_loading():
    bad = BASE + "lora: {r: 8}\nquantization:\n  load_in_8bit: true\n  bnb_4bit_quant_type: fp4\n"
    assert findings(bad) == [("LP307", "warning", 5, 3)]
    good = BASE + "adapter: qlora\nlora: {r: 8}\n" + Q4 + "  bnb_4bit_quant_type: fp4\n"
    assert findings(good) == []


def test_8bit_options_without_8bit_loading():
    bad = BASE + "adapter: qlora\nlora: {r: 8}\n" + Q4 + "  llm_int8_threshold: 5.0\n"
    assert findings(bad) == [("LP307", "warning", 7, 3)]
    good = BASE + "lora: {r: 8}\nquantization:\n  load_in_8bit: true\n  llm_int8_threshold: 5.0\n"
    assert findings(good) == []


def test_quantization_block_that_loads_nothing():
    bad = BASE + "lora: {r: 8}\nquantization:\n  load_in_4bit: false\n"
    assert findings(bad) == [("LP307", "warning", 3, 1)]


# --- compute_dtype ---------------------------------------------------------------------------


def test_compute_dtype_missing_is_located_at_load_in_4bit():
    bad = BASE + "adapter: qlora\nlora: {r: 8}\nquantization:\n  load_in_4bit: true\n"
    assert findings(bad) == [("LP310", "warning", 5, 3)]
    assert "float32" in load_text(bad, "t.yaml").diagnostics[0].message


def test_compute_dtype_differs_from_model_dtype():
    bad = BASE + "adapter: qlora\nlora: {r: 8}\nquantization:\n  load_in_4bit: true\n"
    bad += "  bnb_4bit_compute_dtype: float16\n"
    assert findings(bad) == [("LP310", "warning", 6, 3)]
    good = bad.replace("base_model: m\n", "base_model: m\ndtype: float16\n")
    assert findings(good) == []


# --- layer_filter ----------------------------------------------------------------------------


def test_layers_pattern_needs_layers_to_transform():
    bad = BASE + "lora:\n  target_modules: [q_proj]\n  layers_pattern: layers\n"
    assert findings(bad) == [("LP303", "error", 4, 3)]
    assert findings(bad + "  layers_to_transform: [0, 1]\n") == []


@pytest.mark.parametrize("target", ["'.*q_proj'", "all-linear"])
def test_layer_filter_with_a_string_target(target):
    bad = BASE + f"lora:\n  target_modules: {target}\n  layers_to_transform: [0]\n  layers_pattern: layers\n"
    assert findings(bad) == [("LP304", "error", 4, 3), ("LP304", "error", 5, 3)]
    good = BASE + "lora:\n  target_modules: [q_proj]\n  layers_to_transform: [0]\n  layers_pattern: layers\n"
    assert findings(good) == []


def test_layer_listed_twice_points_at_the_repeat():
    bad = BASE + "lora:\n  target_modules: [q_proj]\n  layers_to_transform: [0, 1, 0]\n"
    assert findings(bad) == [("LP313", "warning", 4, 31)]


def test_empty_layers_to_transform():
    bad = BASE + "lora:\n  target_modules: [q_proj]\n  layers_to_transform: []\n"
    assert findings(bad) == [("LP313", "error", 4, 3)]
    assert findings(bad.replace("[]", "3")) == []


# --- target_parameters_rules -----------------------------------------------------------------

TP = BASE + "lora:\n  target_modules: []\n  target_parameters: [mlp.experts.gate_up_proj]\n"


def test_target_parameters_good():
    assert findings(TP) == []


def test_target_parameters_needs_dropout_zero():
    assert findings(TP + "  lora_dropout: 0.1\n") == [("LP305", "error", 5, 3)]
    assert findings(TP + "  lora_dropout: 0.0\n") == []


def test_target_parameters_refuses_dora():
    assert findings(TP + "  use_dora: true\n") == [("LP306", "error", 5, 3)]


@pytest.mark.parametrize("key", ["fan_in_fan_out", "lora_bias"])
def test_target_parameters_refuses_fan_in_fan_out_and_lora_bias(key):
    assert findings(TP + f"  {key}: true\n") == [("LP315", "error", 5, 3)]
    assert findings(TP + f"  {key}: false\n") == []


# --- dora_rules ------------------------------------------------------------------------------


def test_dora_refuses_lora_bias():
    good = BASE + "lora:\n  target_modules: all-linear\n  use_dora: true\n"
    assert findings(good) == []
    assert findings(good + "  lora_bias: true\n") == [("LP306", "error", 5, 3)]


def test_dora_refuses_mica_init():
    bad = BASE + "lora:\n  use_dora: true\n  init_lora_weights: mica\n"
    assert findings(bad) == [("LP306", "error", 4, 3)]
    assert findings(bad.replace("use_dora: true", "use_dora: false")) == []


# --- init_rules ------------------------------------------------------------------------------


def test_loftq_needs_loftq_config():
    bad = BASE + "lora:\n  init_lora_weights: loftq\n"
    assert findings(bad) == [("LP309", "error", 3, 3)]
    assert findings(bad + "  loftq_config: {loftq_bits: 4, loftq_iter: 1}\n") == []


def test_loftq_config_ignored_without_loftq_init():
    assert findings(BASE + "lora:\n  loftq_config: {loftq_bits: 4}\n") == [("LP307", "warning", 3, 3)]


def test_loftq_on_a_4bit_base():
    bad = BASE + "adapter: qlora\nlora:\n  init_lora_weights: loftq\n  loftq_config: {loftq_bits: 4}\n" + Q4
    assert findings(bad) == [("LP309", "warning", 4, 3)]


def test_lora_bias_needs_default_init():
    bad = BASE + "lora:\n  lora_bias: true\n  init_lora_weights: gaussian\n"
    assert findings(bad) == [("LP314", "error", 3, 3)]
    assert findings(bad.replace("gaussian", "false")) == []


def test_orthogonal_init_needs_even_ranks():
    bad = BASE + "lora:\n  r: 7\n  init_lora_weights: orthogonal\n  rank_pattern: {q_proj: 8, v_proj: 3}\n"
    assert findings(bad) == [("LP316", "error", 3, 6)]  # rank_pattern's odd 3: the compiler, per layer
    good = BASE + "lora:\n  r: 8\n  init_lora_weights: orthogonal\n  rank_pattern: {q_proj: 4}\n"
    assert findings(good) == []
    # the default rank (8) is even; an odd rank is fine with other inits
    assert findings(BASE + "lora:\n  init_lora_weights: orthogonal\n") == []
    assert findings(BASE + "lora:\n  r: 7\n") == []


@pytest.mark.parametrize("init", ["pissa", "pissa_niter_4", "corda", "mica"])
def test_svd_inits_need_an_unquantised_base(init):
    bad = BASE + f"adapter: qlora\nlora:\n  init_lora_weights: {init}\n" + Q4
    assert findings(bad) == [("LP317", "error", 4, 3)]
    assert findings(BASE + f"lora:\n  init_lora_weights: {init}\n") == []


def test_olora_is_allowed_on_a_4bit_base():
    assert findings(BASE + "adapter: qlora\nlora:\n  init_lora_weights: olora\n" + Q4) == []


def test_rslora_with_patterns_and_pissa():
    bad = BASE + "lora:\n  use_rslora: true\n  rank_pattern: {q_proj: 4}\n  init_lora_weights: pissa\n"
    assert findings(bad) == [("LP307", "warning", 3, 3)]
    assert findings(bad.replace("use_rslora: true", "use_rslora: false")) == []


# --- nothing_targeted ------------------------------------------------------------------------


def test_empty_target_list_without_parameters():
    bad = BASE + "lora:\n  target_modules: []\n"
    assert findings(bad) == [("LP308", "error", 3, 3)]
    assert findings(TP) == []


# --- pattern_values --------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["rank_pattern", "alpha_pattern"])
def test_empty_pattern_key(key):
    bad = BASE + f"lora:\n  {key}:\n    '': 4\n"
    assert findings(bad) == [("LP312", "error", 4, 5)]
    assert findings(bad.replace("''", "q_proj")) == []


# --- fsdp_storage ----------------------------------------------------------------------------


def test_quant_storage_differs_from_dtype():
    bad = BASE + "adapter: qlora\nlora: {r: 8}\n" + Q4 + "  bnb_4bit_quant_storage: float16\n"
    assert findings(bad) == [("LP310", "warning", 7, 3)]
    good = BASE + "adapter: qlora\nlora: {r: 8}\n" + Q4 + "  bnb_4bit_quant_storage: bfloat16\n"
    assert findings(good) == []
    good = BASE + "adapter: qlora\nlora: {r: 8}\n" + Q4 + "  bnb_4bit_quant_storage: uint8\n"
    assert findings(good) == []


# --- all_linear_spelling (more in test_messages.py) ---------------------------------------------


def test_all_linear_spelling():
    assert findings(BASE + "lora:\n  target_modules: all_linear\n") == [("LP215", "error", 3, 19)]
    assert findings(BASE + "lora:\n  target_modules: [all-linear]\n") == [("LP215", "error", 3, 20)]
    assert findings(BASE + "lora:\n  target_modules: all-linear\n") == []


# --- the registry itself ---------------------------------------------------------------------


def test_every_rule_is_exercised_here():
    names = {fn.__name__ for fn in rules.RULES if fn.__module__ == rules.__name__}  # rules_peft: its own file
    assert names == {
        "qlora_needs_4bit",
        "lora_on_quantized_base",
        "bits_exclusive",
        "unused_quant_options",
        "compute_dtype",
        "layer_filter",
        "target_parameters_rules",
        "dora_rules",
        "init_rules",
        "nothing_targeted",
        "pattern_values",
        "fsdp_storage",
        "all_linear_spelling",
    }, "a rule was added or removed: add a good and a bad case for it in this file"


def test_rule_codes_are_registered():
    import inspect
    import re

    source = inspect.getsource(rules)
    for code in set(re.findall(r'"(LP\d{3})"', source)):
        assert code in CODES


def test_rules_collect_every_finding():
    bad = BASE + "adapter: qlora\nlora:\n  target_modules: []\n  layers_pattern: layers\n"
    assert [f[0] for f in findings(bad)] == ["LP301", "LP308", "LP303"]
