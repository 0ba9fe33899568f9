"""Hypothesis: no YAML text and no config-shaped data makes the schema layer raise, and every
finding it gives is well formed (a known code, a severity, a position inside the file) and renders
in every output format."""

from __future__ import annotations

import json
import os
import string

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loraplan.output.diagnostics import FORMATS, render
from loraplan.schema.codes import CODES
from loraplan.schema.config import Config
from loraplan.schema.load import load_text
from loraplan.schema.yaml_source import split_lines

# Modest by default (CI); LORAPLAN_FUZZ_EXAMPLES=5000 for a long local run.
FUZZ = settings(
    max_examples=int(os.environ.get("LORAPLAN_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def check_well_formed(text: str, diagnostics) -> None:
    lines = len(split_lines(text)) + 1
    for d in diagnostics:
        assert d.code in CODES, d
        assert d.severity in ("error", "warning", "info"), d
        assert d.message and isinstance(d.message, str), d
        assert d.file == "fuzz.yaml", d
        assert isinstance(d.line, int) and 1 <= d.line <= lines, d
        assert isinstance(d.column, int) and d.column >= 1, d
        if d.end_line is not None:
            assert d.end_line >= d.line, d
    for fmt in FORMATS:
        out = render(diagnostics, fmt, {"fuzz.yaml": text}, files=["fuzz.yaml"], color=False)
        if fmt in ("json", "sarif"):
            json.loads(out)


YAML_BITS = st.sampled_from(
    [":", " ", "\n", "  ", "- ", "[", "]", "{", "}", ",", "&a ", "*a", "<<: ", "!!int ", "!!str ", "? ",
     "'", '"', "#", "|", ">", "---\n", "...\n", "\t", "~", "lora:", "r:", "base_model:", "0", "-1", "1e9",
     "true", "null", "all-linear", "%", "@", "\\", "\x00", "\ufeff", "é"]
)


@FUZZ
@given(st.lists(st.one_of(YAML_BITS, st.text(string.printable, max_size=5)), max_size=40).map("".join))
def test_random_yaml_text_never_raises(text):
    result = load_text(text, "fuzz.yaml")
    check_well_formed(text, result.diagnostics)


@FUZZ
@given(st.text(max_size=200))
def test_random_unicode_text_never_raises(text):
    result = load_text(text, "fuzz.yaml")
    check_well_formed(text, result.diagnostics)


FIELD_NAMES = sorted(
    set(Config.model_fields)
    | {"r", "lora_alpha", "lora_dropout", "target_modules", "target_parameters", "layers_to_transform",
       "layers_pattern", "rank_pattern", "alpha_pattern", "use_dora", "use_rslora", "bias", "lora_bias",
       "init_lora_weights", "loftq_config", "exclude_modules", "modules_to_save", "fan_in_fan_out",
       "load_in_4bit", "load_in_8bit", "bnb_4bit_quant_type", "bnb_4bit_compute_dtype",
       "bnb_4bit_quant_storage", "sequence_len", "micro_batch_size", "optimizer", "lorra_alpha", ""}
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["all-linear", "qlora", "lora", "nf4", "bfloat16", "pissa_niter_3", "loftq", "orthogonal",
                     "q_proj", "(", ".*", "", "mica", "layers"]),
    st.text(max_size=8),
)
KEYS = st.one_of(st.sampled_from(FIELD_NAMES), st.integers(-3, 3), st.booleans())
VALUES = st.recursive(
    SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)),
    max_leaves=12,
)
SECTIONS = st.fixed_dictionaries(
    {},
    optional={
        "base_model": VALUES,
        "adapter": VALUES,
        "dtype": VALUES,
        "lora": st.dictionaries(KEYS, VALUES, max_size=8),
        "quantization": st.one_of(st.dictionaries(KEYS, VALUES, max_size=6), VALUES),
        "training": st.dictionaries(KEYS, VALUES, max_size=4),
        "architecture": VALUES,
    },
)


@FUZZ
@given(SECTIONS, st.sampled_from(["block", "flow"]))
def test_random_config_shaped_data_never_raises(data, style):
    text = yaml.safe_dump(data, default_flow_style=(style == "flow"), allow_unicode=True)
    result = load_text(text, "fuzz.yaml")
    check_well_formed(text, result.diagnostics)
    if result.config is not None and not any(d.severity == "error" for d in result.diagnostics):
        assert result.ok


LORA_VALUES = st.fixed_dictionaries(
    {},
    optional={
        "r": st.integers(-2, 70000),
        "lora_alpha": st.one_of(st.integers(-2, 64), st.floats(-1, 64)),
        "lora_dropout": st.floats(-0.5, 1.5),
        "target_modules": st.one_of(st.just("all-linear"), st.lists(st.sampled_from(["q_proj", "v_proj", ""]))),
        "target_parameters": st.lists(st.sampled_from(["mlp.experts.gate_up_proj", "w1"]), max_size=2),
        "layers_to_transform": st.one_of(st.integers(-1, 40), st.lists(st.integers(-1, 40), max_size=4)),
        "layers_pattern": st.sampled_from(["layers", "h", ""]),
        "rank_pattern": st.dictionaries(st.sampled_from(["q_proj", "", "(", "k"]), st.integers(-1, 9), max_size=3),
        "use_dora": st.booleans(),
        "use_rslora": st.booleans(),
        "lora_bias": st.booleans(),
        "fan_in_fan_out": st.booleans(),
        "init_lora_weights": st.sampled_from([True, False, "pissa", "loftq", "orthogonal", "mica", "olora", "x"]),
        "loftq_config": st.dictionaries(st.sampled_from(["loftq_bits", "loftq_iter"]), st.integers(0, 8)),
    },
)
QUANT_VALUES = st.fixed_dictionaries(
    {},
    optional={
        "load_in_4bit": st.booleans(),
        "load_in_8bit": st.booleans(),
        "bnb_4bit_compute_dtype": st.sampled_from(["bfloat16", "float16", "float32"]),
        "bnb_4bit_quant_storage": st.sampled_from(["uint8", "bfloat16", "float16"]),
        "llm_int8_threshold": st.floats(0, 10),
    },
)


@FUZZ
@given(st.sampled_from(["lora", "qlora"]), st.sampled_from(["bfloat16", "float16"]), LORA_VALUES,
       st.one_of(st.none(), QUANT_VALUES))
def test_plausible_configs_exercise_the_rules_without_raising(adapter, dtype, lora, quant):
    data = {"base_model": "m", "adapter": adapter, "dtype": dtype, "lora": lora}
    if quant is not None:
        data["quantization"] = quant
    text = yaml.safe_dump(data, sort_keys=False)
    result = load_text(text, "fuzz.yaml")
    check_well_formed(text, result.diagnostics)
