"""Axolotl keys -> native tree, with the exact source spans and labels of every translated value."""

from __future__ import annotations

import textwrap

import pytest

from loraplan.schema.axolotl import translate
from loraplan.schema.diagnostic import Span
from loraplan.schema.load import detect_dialect, load_text
from loraplan.schema.yaml_source import parse_text


def _translate(text: str):
    doc, diags = parse_text(textwrap.dedent(text), "a.yml")
    assert doc is not None and not diags
    return translate(doc)


FULL = """\
base_model: meta-llama/Llama-3.2-1B
base_model_config: ./llama-config
model_type: LlamaForCausalLM
adapter: qlora
load_in_4bit: true
lora_r: 16
lora_alpha: 32
lora_dropout: 0.05
lora_target_modules:
  - q_proj
  - v_proj
lora_exclude_modules:
  - vision_tower
lora_modules_to_save: [embed_tokens, lm_head]
lora_fan_in_fan_out: false
peft_layers_to_transform: [0, 1]
peft_layers_pattern: [layers]
peft_use_dora: true
peft_use_rslora: true
peft_init_lora_weights: gaussian
bnb_config_kwargs:
  bnb_4bit_quant_type: fp4
bf16: true
sequence_len: 4096
micro_batch_size: 2
gradient_accumulation_steps: 8
gradient_checkpointing: true
optimizer: paged_adamw_8bit
attn_implementation: flash_attention_2
datasets:
  - path: tatsu-lab/alpaca
"""


@pytest.fixture(scope="module")
def full():
    return _translate(FULL)


def test_full_config_native_tree(full):
    native, diags, _ = full
    # Axolotl 0.19.0's schema drops lora_exclude_modules: not planned, and said
    assert [(d.code, d.severity, d.line) for d in diags] == [("LP410", "warning", 12)]
    assert native.data == {
        "axolotl": {},
        "base_model": "meta-llama/Llama-3.2-1B",
        "architecture": "./llama-config",
        "model_class": "LlamaForCausalLM",
        "dtype": "bfloat16",
        "adapter": "qlora",
        "lora": {
            "r": 16, "lora_alpha": 32.0, "lora_dropout": 0.05, "target_modules": ["q_proj", "v_proj"],
            "modules_to_save": ["embed_tokens", "lm_head"],
            "fan_in_fan_out": False, "layers_to_transform": [0, 1], "layers_pattern": ["layers"],
            "use_dora": True, "use_rslora": True, "init_lora_weights": "gaussian",
        },
        "quantization": {
            "load_in_4bit": True, "bnb_4bit_quant_type": "fp4", "bnb_4bit_use_double_quant": True,
            "bnb_4bit_quant_storage": "bfloat16", "bnb_4bit_compute_dtype": "bfloat16",
        },
        "training": {
            "sequence_len": 4096, "micro_batch_size": 2, "gradient_accumulation_steps": 8,
            "gradient_checkpointing": True, "optimizer": "paged_adamw_8bit",
            "attn_implementation": "flash_attention_2",
        },
    }


@pytest.mark.parametrize(
    ("native_path", "line", "label"),
    [
        (("base_model",), 1, "base_model"),
        (("architecture",), 2, "base_model_config"),
        (("model_class",), 3, "model_type"),
        (("adapter",), 4, "adapter"),
        (("lora", "r"), 6, "lora_r"),
        (("lora", "lora_alpha"), 7, "lora_alpha"),
        (("lora", "lora_dropout"), 8, "lora_dropout"),
        (("lora", "target_modules"), 9, "lora_target_modules"),
        (("lora", "modules_to_save"), 14, "lora_modules_to_save"),
        (("lora", "fan_in_fan_out"), 15, "lora_fan_in_fan_out"),
        (("lora", "layers_to_transform"), 16, "peft_layers_to_transform"),
        (("lora", "layers_pattern"), 17, "peft_layers_pattern"),
        (("lora", "use_dora"), 18, "peft_use_dora"),
        (("lora", "use_rslora"), 19, "peft_use_rslora"),
        (("lora", "init_lora_weights"), 20, "peft_init_lora_weights"),
        (("quantization", "load_in_4bit"), 5, "load_in_4bit"),
        (("quantization", "bnb_4bit_quant_type"), 22, "bnb_config_kwargs.bnb_4bit_quant_type"),
        (("quantization", "bnb_4bit_compute_dtype"), 5, "load_in_4bit"),
        (("dtype",), 23, "bf16"),
        (("training", "sequence_len"), 24, "sequence_len"),
        (("training", "micro_batch_size"), 25, "micro_batch_size"),
        (("training", "gradient_accumulation_steps"), 26, "gradient_accumulation_steps"),
        (("training", "gradient_checkpointing"), 27, "gradient_checkpointing"),
        (("training", "optimizer"), 28, "optimizer"),
        (("training", "attn_implementation"), 29, "attn_implementation"),
    ],
)
def test_every_value_points_at_its_axolotl_key(full, native_path, line, label):
    native, _, labels = full
    key = native.keys[native_path]
    assert (key.line, key.column) == ((line, 3) if native_path[-1] == "bnb_4bit_quant_type" else (line, 1))
    block_list = native_path[-1] in ("target_modules", "exclude_modules")  # items start on the next line
    assert native.values[native_path].line == line + block_list
    assert labels[native_path] == label


def test_value_spans_are_exact(full):
    native, _, _ = full
    # `lora_r: 16`: the value 16 is columns 9-10 of line 6
    assert native.values[("lora", "r")] == Span(6, 9, 6, 11)
    # flow list `[embed_tokens, lm_head]`: the second item
    assert native.values[("lora", "modules_to_save", 1)] == Span(14, 38, 14, 45)


def test_list_items_keep_their_own_spans_and_labels(full):
    native, _, labels = full
    assert native.values[("lora", "target_modules", 0)] == Span(10, 5, 10, 11)
    assert native.values[("lora", "target_modules", 1)] == Span(11, 5, 11, 11)
    assert labels[("lora", "target_modules", 1)] == "lora_target_modules[1]"
    assert labels[("lora", "layers_to_transform", 0)] == "peft_layers_to_transform[0]"


def test_storage_default_is_not_marked_as_written(full):
    native, _, _ = full
    # Axolotl's own default: kept for the plan, but no rule may blame the user for it.
    assert ("quantization", "bnb_4bit_quant_storage") not in native.keys
    assert ("quantization", "bnb_4bit_compute_dtype") in native.keys


def test_full_config_loads_clean():
    result = load_text(FULL, "a.yml")
    assert result.dialect == "axolotl"
    assert result.config is not None
    assert [d.code for d in result.diagnostics] == ["LP410"]  # lora_exclude_modules, dropped by Axolotl 0.19.0
    assert result.config.quantization.bnb_4bit_quant_type == "fp4"
    assert result.config.lora.exclude_modules is None


def test_target_linear_is_an_intent_located_at_the_flag():
    native, diags, labels = _translate("""\
        base_model: m
        adapter: lora
        lora_r: 8
        lora_alpha: 16
        lora_target_linear: true
        """)
    # Axolotl's find_all_linear_names needs the model: the compiler adds the names
    assert native.data["lora"]["target_modules"] == []
    assert native.data["axolotl"] == {"target_linear": True}
    assert native.keys[("lora", "target_modules")] == Span(5, 1, 5, 19)
    assert native.keys[("axolotl", "target_linear")] == Span(5, 1, 5, 19)
    assert labels[("lora", "target_modules")] == "lora_target_linear"
    assert diags == []


def test_target_linear_with_modules_keeps_them_for_the_union():
    native, diags, labels = _translate("""\
        base_model: m
        adapter: lora
        lora_r: 8
        lora_alpha: 16
        lora_target_linear: true
        lora_target_modules: [q_proj, embed_tokens]
        """)
    assert native.data["lora"]["target_modules"] == ["q_proj", "embed_tokens"]
    assert labels[("lora", "target_modules", 1)] == "lora_target_modules[1]"
    assert diags == []


def test_target_linear_with_a_string_makes_it_a_list_item():
    native, diags, _ = _translate("""\
        base_model: m
        adapter: lora
        lora_r: 8
        lora_alpha: 16
        lora_target_linear: true
        lora_target_modules: '.*_proj'
        """)
    # load_lora: `[lora_target_modules]` when it is not a list, so PEFT reads it as a name
    assert native.data["lora"]["target_modules"] == [".*_proj"]
    assert [(d.code, d.severity, d.line) for d in diags] == [("LP406", "warning", 6)]


def test_target_linear_false_keeps_the_modules():
    native, diags, _ = _translate("""\
        base_model: m
        adapter: lora
        lora_r: 8
        lora_alpha: 16
        lora_target_linear: false
        lora_target_modules: 'model\\.layers\\.\\d+\\.self_attn\\.q_proj'
        """)
    assert native.data["lora"]["target_modules"] == r"model\.layers\.\d+\.self_attn\.q_proj"
    assert diags == []


def test_no_target_is_an_empty_list_not_peft_default():
    result = load_text("base_model: m\nadapter: lora\nlora_r: 8\nlora_alpha: 16\n", "a.yml", dialect="axolotl")
    assert result.source.data["lora"]["target_modules"] == []
    lp308 = [d for d in result.diagnostics if d.code == "LP308"]
    assert [(d.line, d.column) for d in lp308] == [(2, 1)]  # at `adapter`, the only place to blame


def test_null_values_are_unset():
    native, diags, _ = _translate("""\
        base_model: m
        adapter: lora
        lora_model_dir:
        lora_r: 8
        lora_alpha: 16
        lora_dropout:
        lora_target_linear: true
        lora_fan_in_fan_out:
        sequence_len:
        optimizer:
        """)
    assert "lora_dropout" not in native.data["lora"]
    assert "fan_in_fan_out" not in native.data["lora"]
    assert native.data["training"]["sequence_len"] == 512  # Axolotl's default
    assert native.data["training"]["optimizer"] == "adamw_torch_fused"  # Axolotl's default
    assert diags == []


@pytest.mark.parametrize(
    ("lines", "dtype", "src_line"),
    [
        ("bf16: true", "bfloat16", 3),
        ("bf16: auto", "bfloat16", 3),
        ("tf32: true", "bfloat16", None),  # bf16 unset means Axolotl's default `auto`
        ("bf16: false\nfp16: true", "float16", 4),
        ("bf16: false\nfloat16: true", "float16", 4),
        ("bf16: false\nbfloat16: true", "bfloat16", 4),
        ("bf16: false", "float32", 3),
        ("bf16: false\nload_in_8bit: true", "float16", 4),
    ],
)
def test_dtype_resolution(lines, dtype, src_line):
    native, _, labels = _translate(f"base_model: m\nadapter: lora\n{lines}\nlora_r: 8\nlora_alpha: 8\n")
    assert native.data["dtype"] == dtype
    if src_line is None:
        assert ("dtype",) not in native.keys
    else:
        assert native.keys[("dtype",)].line == src_line
        assert labels[("dtype",)] in {"bf16", "fp16", "float16", "bfloat16", "load_in_8bit"}


def test_torch_dtype_that_disagrees_is_reported_as_ignored():
    _, diags, _ = _translate("base_model: m\nadapter: lora\nlora_r: 8\nlora_alpha: 8\nbf16: true\n"
                             "torch_dtype: float32\n")
    assert [(d.code, d.severity, d.line) for d in diags] == [("LP307", "warning", 6)]
    _, diags, _ = _translate("base_model: m\nadapter: lora\nlora_r: 8\nlora_alpha: 8\ntorch_dtype: bfloat16\n")
    assert diags == []


def test_qlora_defaults_follow_axolotl():
    native, _, _ = _translate("""\
        base_model: m
        adapter: qlora
        load_in_4bit: true
        bf16: false
        fp16: true
        lora_r: 8
        lora_alpha: 8
        """)
    assert native.data["quantization"] == {
        "load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
        "bnb_4bit_quant_storage": "bfloat16", "bnb_4bit_compute_dtype": "float16",
    }


def test_bnb_config_kwargs_override_and_torch_dtype_names():
    native, _, labels = _translate("""\
        base_model: m
        adapter: qlora
        load_in_4bit: true
        lora_r: 8
        lora_alpha: 8
        bnb_config_kwargs:
          bnb_4bit_use_double_quant: false
          bnb_4bit_compute_dtype: torch.float16
        """)
    q = native.data["quantization"]
    assert q["bnb_4bit_use_double_quant"] is False
    assert q["bnb_4bit_compute_dtype"] == "float16"
    assert native.keys[("quantization", "bnb_4bit_compute_dtype")] == Span(8, 3, 8, 25)
    assert labels[("quantization", "bnb_4bit_compute_dtype")] == "bnb_config_kwargs.bnb_4bit_compute_dtype"


def test_lora_with_8bit():
    native, diags, _ = _translate("base_model: m\nadapter: lora\nload_in_8bit: true\nlora_r: 8\nlora_alpha: 8\n")
    assert native.data["quantization"] == {"load_in_8bit": True}
    assert native.keys[("quantization", "load_in_8bit")].line == 3
    assert diags == []


def test_no_quantization_block_when_flags_are_false():
    native, _, _ = _translate("base_model: m\nadapter: lora\nload_in_8bit: false\nload_in_4bit: false\n"
                              "lora_r: 8\nlora_alpha: 8\n")
    assert "quantization" not in native.data


def test_peft_bnb_nf4_shorthand_is_dropped_by_axolotl_0_19():
    # 0.19.0's PeftConfig keeps only loftq_config: backend/weight_dtype never promote to QLoRA there
    native, diags, _ = _translate("""\
        base_model: m
        adapter: lora
        peft:
          backend: bnb
          weight_dtype: nf4
        lora_r: 8
        lora_alpha: 8
        """)
    assert native.data["adapter"] == "lora" and "quantization" not in native.data
    assert [(d.code, d.severity, d.line) for d in diags] == [("LP410", "warning", 4), ("LP410", "warning", 5)]


def test_loftq_block():
    native, diags, labels = _translate("""\
        base_model: m
        adapter: lora
        lora_r: 8
        lora_alpha: 8
        peft:
          loftq_config:
            loftq_bits: 4
        """)
    assert native.data["lora"]["init_lora_weights"] == "loftq"
    assert native.data["lora"]["loftq_config"] == {"loftq_bits": 4, "loftq_iter": 1}  # LoftQConfig(loftq_bits=4)
    assert native.keys[("lora", "loftq_config")].line == 6
    assert native.keys[("lora", "loftq_config", "loftq_bits")].line == 7
    assert labels[("lora", "loftq_config", "loftq_bits")] == "peft.loftq_config.loftq_bits"
    assert diags == []


def test_falsy_passthrough_keys_are_not_passed():
    native, diags, _ = _translate("""\
        base_model: m
        adapter: lora
        lora_r: 8
        lora_alpha: 8
        peft_use_dora: false
        lora_modules_to_save: []
        peft_init_lora_weights: false
        """)
    assert "use_dora" not in native.data["lora"]
    assert "modules_to_save" not in native.data["lora"]
    assert "init_lora_weights" not in native.data["lora"]
    assert [(d.code, d.line) for d in diags] == [("LP307", 7)]


def test_target_parameters():
    native, diags, labels = _translate("""\
        base_model: m
        adapter: lora
        lora_r: 8
        lora_alpha: 8
        lora_dropout: 0
        lora_target_parameters:
          - mlp.experts.gate_up_proj
        """)
    assert native.data["lora"]["target_parameters"] == ["mlp.experts.gate_up_proj"]
    assert native.data["lora"]["target_modules"] == []  # Axolotl passes `lora_target_modules or []`
    assert native.values[("lora", "target_parameters", 0)] == Span(7, 5, 7, 29)
    assert labels[("lora", "target_parameters", 0)] == "lora_target_parameters[0]"
    assert diags == []


def test_patterns_and_exclude_modules():
    native, _, _ = _translate("""\
        base_model: m
        adapter: lora
        lora_r: 8
        lora_alpha: 8
        lora_rank_pattern: {q_proj: 4}
        lora_alpha_pattern: {q_proj: 8}
        lora_exclude_modules: [vision_tower]
        """)
    lora = native.data["lora"]
    assert lora["rank_pattern"] == {"q_proj": 4}
    assert lora["alpha_pattern"] == {"q_proj": 8}
    assert "exclude_modules" not in lora  # Axolotl 0.19.0's schema drops lora_exclude_modules
    assert native.keys[("lora", "rank_pattern", "q_proj")].line == 5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lora_r: '16'", ("lora", "r", 16)),
        ("lora_dropout: 5e-2", ("lora", "lora_dropout", 0.05)),  # YAML reads 5e-2 as a string
        ("lora_fan_in_fan_out: 'yes'", ("lora", "fan_in_fan_out", True)),
        ("peft_layers_to_transform: ['1', 2.0]", ("lora", "layers_to_transform", [1, 2])),
        ("sequence_len: '1024'", ("training", "sequence_len", 1024)),
    ],
)
def test_lax_coercion_like_axolotl(text, expected):
    rank = "" if text.startswith("lora_r") else "lora_r: 8\n"
    native, _, _ = _translate(f"base_model: m\nadapter: lora\n{rank}lora_alpha: 8\n{text}\n")
    section, key, value = expected
    assert native.data[section][key] == value


def test_bad_value_is_a_schema_error_in_the_users_words():
    result = load_text("base_model: m\nadapter: lora\nlora_r: sixteen\nlora_alpha: 8\n", "a.yml")
    [diag] = [d for d in result.diagnostics if d.code == "LP203"]
    assert "'lora_r'" in diag.message
    assert (diag.line, diag.column) == (3, 9)


def test_batch_size_gives_accumulation_steps():
    native, _, _ = _translate("base_model: m\nadapter: lora\nlora_r: 8\nlora_alpha: 8\nbatch_size: 8\n"
                              "micro_batch_size: 2\n")
    assert native.data["training"]["gradient_accumulation_steps"] == 4
    assert native.keys[("training", "gradient_accumulation_steps")].line == 5


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        ("gradient_checkpointing: offload", True),
        ("gradient_checkpointing: false", False),
        ("torch_compile: true", True),
        ("optimizer: adamw_torch_8bit", "adamw_8bit"),
        ("optimizer: adamw_bnb_8bit", "adamw_bnb_8bit"),
        ("flash_attention: true", "flash_attention_2"),
        ("sdp_attention: true", "sdpa"),
        ("attn_implementation: kernels-community/vllm-flash-attn3", "flash_attention_3"),
        ("attn_implementation: eager", "eager"),
    ],
)
def test_training_values(lines, expected):
    native, diags, _ = _translate(f"base_model: m\nadapter: lora\nlora_r: 8\nlora_alpha: 8\n{lines}\n")
    key = {"gradient_checkpointing": "gradient_checkpointing", "optimizer": "optimizer",
           "torch_compile": "torch_compile"}.get(lines.split(":")[0], "attn_implementation")
    assert native.data["training"][key] == expected
    assert native.keys[("training", key)].line == 5
    assert diags == []


def test_unknown_optimizer_keeps_default_with_info():
    native, diags, _ = _translate("base_model: m\nadapter: lora\nlora_r: 8\nlora_alpha: 8\n"
                                  "optimizer: adamw_torch_4bit\n")
    assert native.data["training"]["optimizer"] == "adamw_torch_fused"
    assert ("training", "optimizer") not in native.keys
    assert [(d.code, d.severity, d.line, d.column) for d in diags] == [("LP402", "info", 5, 12)]


def test_model_type_auto_or_remote_code_gives_no_model_class():
    for extra in ("model_type: AutoModelForCausalLM", "model_type: LlamaForCausalLM\ntrust_remote_code: true",
                  "model_type: LlamaForCausalLM\ngptq: true"):
        native, _, _ = _translate(f"base_model: m\nadapter: lora\nlora_r: 8\nlora_alpha: 8\n{extra}\n")
        assert "model_class" not in native.data


def test_detect_dialect():
    assert detect_dialect({"adapter": "lora", "lora_r": 8}) == "axolotl"
    assert detect_dialect({"adapter": "lora", "load_in_4bit": True}) == "axolotl"
    assert detect_dialect({"adapter": "lora", "lora": {"r": 8}}) == "native"
    assert detect_dialect({"base_model": "m", "adapter": "lora"}) == "native"
