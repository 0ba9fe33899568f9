"""Unknown Axolotl keys: misspelt adapter keys are errors with did-you-mean, everything else passes."""

from __future__ import annotations

import pytest

from loraplan.schema.axolotl.keys import ADAPTER_KEYS, AXOLOTL_KEYS, MARKER_KEYS, PLANNED_KEYS
from loraplan.schema.axolotl.unknown import closest, distance
from loraplan.schema.load import load_text

BASE = "base_model: m\nadapter: lora\nlora_r: 8\nlora_alpha: 16\nlora_target_linear: true\n"


def _findings(extra: str) -> list[tuple]:
    result = load_text(BASE + extra, "a.yml", dialect="axolotl")
    return [(d.code, d.severity, d.line, d.column, d.hint) for d in result.diagnostics]


@pytest.mark.parametrize(
    ("key", "meant"),
    [
        ("lora_alpah", "lora_alpha"),
        ("lora_targets_modules", "lora_target_modules"),
        ("peft_use_dorra", "peft_use_dora"),
        ("load_in_4bits", "load_in_4bit"),
        ("lora_dropuot", "lora_dropout"),
        ("lora_modules_to_saves", "lora_modules_to_save"),
        ("peft_layers_to_tranform", "peft_layers_to_transform"),
        ("bnb_config_kwarg", "bnb_config_kwargs"),
        ("adaptor", "adapter"),
        ("sequnce_len", "sequence_len"),
        ("micro_batchsize", "micro_batch_size"),
        ("Lora_Dropout", "lora_dropout"),
    ],
)
def test_misspelt_adapter_key_is_an_error_with_did_you_mean(key, meant):
    [finding] = _findings(f"{key}: 1\n")
    assert finding == ("LP401", "error", 6, 1, f"did you mean '{meant}'?")


def test_misspelt_key_message_says_what_is_lost():
    result = load_text(BASE + "lora_alpah: 32\n", "a.yml")
    [diag] = result.diagnostics
    assert diag.message == "unknown key 'lora_alpah': Axolotl ignores it, so lora_alpha is not set"
    assert (diag.line, diag.column, diag.end_line, diag.end_column) == (6, 1, 6, 11)


@pytest.mark.parametrize(("key", "axolotl"), [("target_modules", "lora_target_modules"),
                                               ("use_dora", "peft_use_dora"), ("r", "lora_r")])
def test_peft_names_point_to_the_axolotl_key(key, axolotl):
    [finding] = _findings(f"{key}: 1\n")
    assert finding[:4] == ("LP401", "error", 6, 1)
    assert axolotl in finding[4]


def test_bnb_name_at_top_level_points_into_bnb_config_kwargs():
    [finding] = _findings("bnb_4bit_quant_type: nf4\n")
    assert finding[0] == "LP401" and "bnb_config_kwargs" in finding[4]


def test_unknown_adapter_prefixed_key_without_close_match_is_a_warning():
    [finding] = _findings("lora_magic_sauce: true\n")
    assert finding[:4] == ("LP401", "warning", 6, 1)


def test_misspelt_non_adapter_key_is_only_info():
    [finding] = _findings("context_parapllel_size: 2\n")
    assert finding == ("LP405", "info", 6, 1, "did you mean 'context_parallel_size'?")


@pytest.mark.parametrize(
    "extra",
    [
        "datasets:\n  - path: tatsu-lab/alpaca\n    type: alpaca\n",
        "wandb_project: x\nwandb_entity:\nwandb_watch:\n",
        "fsdp:\n  - full_shard\nfsdp_config:\n  fsdp_offload_params: true\n",
        "deepspeed: deepspeed_configs/zero2.json\n",
        "lr_scheduler: cosine\nlearning_rate: 0.0002\nnum_epochs: 3\n",
        "liger_rms_norm: true\nplugins:\n  - axolotl.integrations.liger.LigerPlugin\n",
        "lora_mlp_kernel: true\nlora_qkv_kernel: true\nlora_o_kernel: true\n",
        "relora: true\nrelora_prune_ratio: 0.9\njagged_restart_steps: 150\n",
        "loraplus_lr_ratio: 16\nmerge_lora: false\n",
        "my_plugin_setting: 3\ntest_value: true\nfoo: bar\n",  # unknown, not near any key: nothing
        "special_tokens:\n  pad_token: <pad>\n",
    ],
)
def test_other_axolotl_keys_pass_without_complaint(extra):
    # fsdp / deepspeed are read now: only LP359 (the world size is assumed) may be said about them
    assert [f for f in _findings(extra) if f[0] != "LP359"] == []


def test_unknown_key_inside_peft_block():
    result = load_text(BASE + "peft:\n  loftq_confg:\n    loftq_bits: 4\n", "a.yml")
    [diag] = result.diagnostics
    assert (diag.code, diag.severity, diag.line, diag.column) == ("LP401", "error", 7, 3)
    assert diag.hint == "did you mean 'peft.loftq_config'?"


def test_loftq_iter_is_ignored_by_axolotl():
    result = load_text(BASE + "peft:\n  loftq_config:\n    loftq_bits: 4\n    loftq_iter: 2\n", "a.yml")
    assert [(d.code, d.severity, d.line) for d in result.diagnostics] == [("LP401", "warning", 9)]


def test_misspelt_bnb_kwarg_is_an_unknown_key_with_did_you_mean():
    text = ("base_model: m\nadapter: qlora\nload_in_4bit: true\nlora_r: 8\nlora_alpha: 16\n"
            "lora_target_linear: true\nbnb_config_kwargs:\n  bnb_4bit_quant_typ: nf4\n")
    result = load_text(text, "a.yml")
    [diag] = result.diagnostics
    assert (diag.code, diag.line, diag.column) == ("LP201", 8, 3)
    assert "bnb_config_kwargs.bnb_4bit_quant_typ" in diag.message
    assert diag.hint == "did you mean 'bnb_4bit_quant_type'?"


def test_distance_counts_transpositions_as_one():
    assert distance("lora_alpah", "lora_alpha") == 1
    assert distance("abc", "abc") == 0
    assert distance("kitten", "sitting") == 3


def test_closest_prefers_keys_loraplan_reads():
    assert closest("lora_alpah") == "lora_alpha"
    assert closest("completely_unrelated_name") is None


def test_tables_are_consistent():
    assert ADAPTER_KEYS <= AXOLOTL_KEYS and PLANNED_KEYS <= AXOLOTL_KEYS
    assert "lora" not in MARKER_KEYS and "base_model" not in MARKER_KEYS  # native keys never mark Axolotl
    # No two known keys are so close that one would be reported as a misspelling of the other.
    for key in ADAPTER_KEYS | PLANNED_KEYS:
        assert closest(key) == key
