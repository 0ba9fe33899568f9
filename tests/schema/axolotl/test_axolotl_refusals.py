"""Axolotl 0.19.0's own refusals (LP409) and the keys its schema drops (LP410).

Each expected message is Axolotl's (src/axolotl/utils/schemas/peft.py, validation.py, config.py,
deprecated.py), so a CI user reads what Axolotl would have said before a GPU hour.
"""

from __future__ import annotations

import pytest

from loraplan.schema.load import load_text

BASE = "base_model: m\nlora_r: 8\nlora_alpha: 16\nlora_target_modules: [q_proj]\n"


def _found(text: str) -> list[tuple]:
    result = load_text(text, "a.yml", dialect="axolotl")
    return [(d.code, d.severity, d.line, d.message) for d in result.diagnostics]


@pytest.mark.parametrize(("extra", "line", "quote"), [
    ("adapter: qlora\nload_in_4bit: true\nmerge_lora: true\n", 3, "Can't merge qlora if loaded in 4bit"),
    ("adapter: qlora\nload_in_8bit: true\nmerge_lora: true\n", 3, "Can't merge qlora if loaded in 8bit"),
    ("adapter: lora\nload_in_8bit: true\nlora_mlp_kernel: true\n", 3, "not compatible with 8-bit LoRA"),
    ("adapter: lora\ntrust_remote_code: true\nlora_qkv_kernel: true\n", 3, "not compatible with trust_remote_code"),
    ("adapter: lora\nrelora: true\nrelora_steps: 150\n", 2, "jagged_restart_steps must be set to use ReLoRA"),
    ("adapter: lora\nrelora: true\njagged_restart_steps: 10\ndeepspeed: ds.json\n", 2,
     "deepspeed not supported with ReLoRA"),
    ("adapter: lora\nrelora: true\njagged_restart_steps: 10\nlr_scheduler: one_cycle\n", 2, "one_cycle"),
    ("adapter: lora\nflash_attn_rms_norm: true\n", 2, "`flash_attn_rms_norm` is no longer supported."),
    ("adapter: lora\nunsloth_lora_mlp: true\n", 2, "`unsloth_lora_mlp` has been removed"),
    ("adapter: lora\nmodel_quantization_config:\n  bnb:\n    weight_dtype: nf4\n", 3, "Mxfp4Config"),  # the value
])
def test_axolotl_stops_and_loraplan_says_why(extra, line, quote):
    found = [(code, line_, message) for code, severity, line_, message in _found(extra + BASE)
             if severity == "error" and code == "LP409"]
    assert len(found) == 1 and found[0][1] == line and quote in found[0][2], found
    assert found[0][2].startswith("Axolotl 0.19.0 refuses this config")


@pytest.mark.parametrize("extra", [
    "adapter: qlora\nload_in_4bit: true\n",  # QLoRA without merging
    "adapter: lora\nload_in_8bit: true\n",  # 8-bit LoRA: the kernels are not auto-enabled then
    "adapter: lora\nlora_mlp_kernel: true\nlora_dropout: 0.1\n",  # kernels with dropout: 0.19.0 allows it
    "adapter: lora\nrelora: true\njagged_restart_steps: 150\n",
    "adapter: lora\nflash_attn_rms_norm: false\n",
    "adapter: lora\nmodel_quantization_config: Mxfp4Config\n",
])
def test_what_axolotl_accepts_is_not_refused(extra):
    assert not [f for f in _found(extra + BASE) if f[0] == "LP409"]


def test_dropped_exclude_modules_is_a_warning_and_not_planned():
    result = load_text("adapter: lora\nlora_exclude_modules: [vision_tower]\n" + BASE, "a.yml", dialect="axolotl")
    (d,) = result.diagnostics
    assert (d.code, d.severity, d.line) == ("LP410", "warning", 2) and "ignores this key" in d.message
    assert result.config.lora.exclude_modules is None


def test_old_release_keys_are_info():
    found = _found("adapter: lora\ngptq_groupsize: 128\n" + BASE)
    assert [(c, s, ln) for c, s, ln, _ in found] == [("LP410", "info", 2)]
