"""Every rule in rules_peft.py: a config that passes it, one that trips it, and the exact place."""

from __future__ import annotations

import pytest

from loraplan.schema import rules, rules_peft
from loraplan.schema.load import load_text

BASE = "base_model: m\nlora:\n  target_modules: [q_proj]\n"


def findings(text: str) -> list[tuple[str, str, int, int]]:
    return [(d.code, d.severity, d.line, d.column) for d in load_text(text, "t.yaml").diagnostics]


CASES = [  # (good extra lines, bad extra lines, expected finding of the bad one)
    ("  kasa_config: {}\n", "  kasa_config: {}\n  use_dora: true\n", ("LP318", "error", 4, 3)),
    ("  velora_config: {}\n", "  velora_config: {}\n  alora_invocation_tokens: [1]\n  task_type: CAUSAL_LM\n",
     ("LP318", "error", 4, 3)),
    ("  r: 4\n", "  arrow_config: {top_k: 2}\n", ("LP319", "error", 4, 3)),
    ("  megatron_core: megatron.core\n  megatron_config: {a: 1}\n",
     "  use_dora: true\n  megatron_config: {a: 1}\n", ("LP306", "error", 4, 3)),
    ("  r: 4\n", "  megatron_core: megatron.core\n", ("LP307", "warning", 4, 3)),
    ("  qalora_group_size: 16\n  r: 4\n", "  use_qalora: true\n", ("LP321", "warning", 4, 3)),
    ("  r: 4\n", "  qalora_group_size: 8\n", ("LP307", "warning", 4, 3)),
    ("  init_lora_weights: lora_ga\n  lora_ga_config: {}\n", "  init_lora_weights: lora_ga\n",
     ("LP309", "error", 4, 3)),
    ("  init_lora_weights: eva\n  eva_config: {rho: 1}\n", "  eva_config: {rho: 1}\n", ("LP307", "warning", 4, 3)),
    ("  init_lora_weights: corda\n  corda_config: {}\n", "  corda_config: {}\n", ("LP307", "warning", 4, 3)),
    ("  alora_invocation_tokens: [5]\n  task_type: CAUSAL_LM\n", "  alora_invocation_tokens: [5]\n",
     ("LP322", "warning", 4, 3)),
    ("  layer_replication: [[0, 2], [1, 3]]\n", "  layer_replication: [[0, 2], [3, 3]]\n",
     ("LP323", "error", 4, 31)),
    ("  layer_replication: [[0, 1]]\n", "  layer_replication: []\n", ("LP307", "warning", 4, 3)),
]


@pytest.mark.parametrize(("good", "bad", "expected"), CASES)
def test_rule(good, bad, expected):
    assert expected not in findings(BASE + good)
    assert expected in findings(BASE + bad), findings(BASE + bad)


def test_megatron_config_is_said_to_need_megatron():
    assert ("LP320", "warning", 4, 3) in findings(BASE + "  megatron_config: {num_layers: 2}\n")


def test_every_rule_is_exercised_here():
    names = {fn.__name__ for fn in rules.RULES if fn.__module__ == rules_peft.__name__}
    assert names == {"one_variant", "arrow_needs_trained_adapters", "megatron_rules", "qalora_rules",
                     "data_driven_inits", "alora_rules", "layer_replication_ranges"}
