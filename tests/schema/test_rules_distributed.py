"""Every rule of `distributed:` (rules_distributed.py): a config that passes, one that trips it, the place."""

from __future__ import annotations

import pytest

from loraplan.schema import rules, rules_distributed
from loraplan.schema.codes import CODES
from loraplan.schema.load import load_text

BASE = "base_model: m\nlora: {r: 8}\n"
QLORA = ("base_model: m\nadapter: qlora\nlora: {r: 8}\nquantization:\n  load_in_4bit: true\n"
         "  bnb_4bit_compute_dtype: bfloat16\n")


def findings(text: str, code: str | None = None) -> list[tuple[str, str, int, int]]:
    result = load_text(text, "t.yaml")
    return [(d.code, d.severity, d.line, d.column) for d in result.diagnostics if code is None or d.code == code]


def test_section_is_strict_and_typed():
    assert findings(BASE + "distributed: {world_size: 0}\n")[0][:2] == ("LP204", "error")
    assert findings(BASE + "distributed: {world_size: 2, fsdp: {version: 3}}\n")[0][:2] == ("LP205", "error")
    assert findings(BASE + "distributed: {world_size: 2, fsdp: {ofload_params: true}}\n")[0][:2] == ("LP201", "error")
    assert findings(BASE + "distributed: {world_size: 2, deepspeed: {}}\n")[0][:2] == ("LP202", "error")
    config = load_text(BASE + "distributed: {world_size: 4, fsdp: {dp_shard_size: 2}}\n").config
    assert (config.distributed.engine, config.distributed.shard_size) == ("fsdp2", 2)


def test_fsdp_and_deepspeed_together():
    text = BASE + "distributed:\n  world_size: 2\n  fsdp: {}\n  deepspeed: {zero_stage: 3}\n"
    assert findings(text) == [("LP350", "error", 6, 3)]
    assert findings(text.replace("  fsdp: {}\n", "")) == []


def test_dp_shard_size_divides_world_size():
    text = BASE + "distributed:\n  world_size: 8\n  fsdp:\n    dp_shard_size: 3\n"
    assert findings(text) == [("LP351", "error", 6, 5)]
    assert findings(text.replace("3", "4")) == []


def test_offload_param_needs_stage_3():
    text = BASE + "distributed:\n  world_size: 2\n  deepspeed:\n    zero_stage: 2\n    offload_param_device: cpu\n"
    assert findings(text) == [("LP352", "warning", 7, 5)]
    assert findings(text.replace("zero_stage: 2", "zero_stage: 3")) == []


@pytest.mark.parametrize(("storage", "engine", "expected"), [
    ("bfloat16", "fsdp: {version: 2}", []),
    ("uint8", "fsdp: {version: 2}", [("LP353", "warning", 7, 3)]),  # accelerate leaves them unsharded
    ("uint8", "fsdp: {version: 1}", [("LP353", "error", 7, 3)]),  # FSDP1 cannot flatten uint8 with bf16
    ("float32", "fsdp: {version: 1}", [("LP353", "error", 7, 3)]),
    ("float32", "fsdp: {version: 2}", [("LP353", "warning", 7, 3)]),
    ("float32", "deepspeed: {zero_stage: 3}", [("LP353", "warning", 7, 3)]),
    ("uint8", "deepspeed: {zero_stage: 2}", []),  # ZeRO-2 does not shard parameters
])
def test_quant_storage_must_be_the_model_dtype_when_sharded(storage, engine, expected):
    text = QLORA + f"  bnb_4bit_quant_storage: {storage}\ndistributed:\n  world_size: 2\n  {engine}\n"
    assert findings(text) == expected


def test_quant_storage_default_is_blamed_at_load_in_4bit():
    text = QLORA + "distributed: {world_size: 2, fsdp: {version: 1}}\n"
    assert findings(text) == [("LP353", "error", 5, 3)]


def test_dora_under_zero3():
    text = BASE.replace("{r: 8}", "{r: 8, use_dora: true}") + "distributed: {world_size: 2, deepspeed: {zero_stage: 3}}"
    text += "\n"
    assert findings(text, "LP354") == [("LP354", "warning", 2, 14)]
    assert findings(text.replace("zero_stage: 3", "zero_stage: 2"), "LP354") == []
    assert findings(text.replace("deepspeed: {zero_stage: 3}", "fsdp: {}"), "LP354") == []


def test_8bit_under_sharding():
    text = ("base_model: m\nlora: {r: 8}\nquantization:\n  load_in_8bit: true\n"
            "distributed: {world_size: 2, fsdp: {}}\n")
    assert findings(text, "LP355") == [("LP355", "warning", 4, 3)]
    assert findings(text.replace("fsdp: {}", "deepspeed: {zero_stage: 1}"), "LP355") == []


def test_modules_to_save_under_fsdp():
    text = BASE.replace("{r: 8}", "{r: 8, modules_to_save: [lm_head]}") + "distributed: {world_size: 2, fsdp: {}}\n"
    assert findings(text, "LP356") == [("LP356", "info", 2, 14)]
    assert findings(text.replace("fsdp: {}", "deepspeed: {zero_stage: 2}"), "LP356") == []


def test_paged_8bit_optimizer_under_fsdp_qlora():
    text = (QLORA + "  bnb_4bit_quant_storage: bfloat16\ntraining:\n  optimizer: paged_adamw_8bit\n"
            "distributed: {world_size: 2, fsdp: {}}\n")
    assert findings(text) == [("LP357", "warning", 9, 3)]
    assert findings(text.replace("paged_adamw_8bit", "adamw_torch_fused")) == []


def test_zero3_qlora_cpu_offload():
    text = (QLORA + "  bnb_4bit_quant_storage: bfloat16\ndistributed:\n  world_size: 2\n  deepspeed:\n"
            "    zero_stage: 3\n    offload_optimizer_device: cpu\n")
    assert findings(text) == [("LP358", "info", 10, 3)]
    assert findings(text.replace("cpu", "none")) == []


def test_the_old_single_device_storage_rule_gives_way():
    """Without distributed:, LP310 still warns; with it, LP353 says what the engine does instead."""
    text = QLORA + "  bnb_4bit_quant_storage: float16\n"
    assert findings(text) == [("LP310", "warning", 7, 3)]
    assert [f[0] for f in findings(text + "distributed: {world_size: 2, fsdp: {}}\n")] == ["LP353"]


def test_every_rule_is_exercised_here():
    names = {fn.__name__ for fn in rules.RULES if fn.__module__ == rules_distributed.__name__}
    assert names == {"engines", "quant_storage", "adapters_under_sharding"}


def test_codes_are_registered():
    import inspect
    import re

    for code in set(re.findall(r'"(LP\d{3})"', inspect.getsource(rules_distributed))):
        assert code in CODES and 350 <= int(code[2:]) <= 369
