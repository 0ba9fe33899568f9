"""The same finding once, not once per list item (issue 13): LP506 and LP503 are grouped."""

from __future__ import annotations

import textwrap

from loraplan.compiler.catalog import load_catalog_architecture, lookup
from loraplan.compiler.compile import compile_plan
from loraplan.schema.load import load_text


def run(text: str, arch: str):
    result = load_text(textwrap.dedent(text).lstrip("\n"), "c.yaml")
    assert result.config is not None, result.diagnostics
    plan = compile_plan(result.config, load_catalog_architecture(lookup(arch)), source=result.source)
    return plan, [(d.code, d.severity, d.line, d.column) for d in plan.diagnostics]


def test_four_missing_layers_are_one_lp503():
    plan, found = run("""
        base_model: m
        lora:
          target_modules: [q_proj]
          layers_to_transform: [0, 16, 17, 40, 41]
    """, "meta-llama/Llama-3.2-1B")
    assert found == [("LP503", "warning", 4, 28)]
    assert plan.diagnostics[0].message.startswith("layers 16, 17, 40, 41 select nothing")


def test_one_missing_layer_reads_in_the_singular():
    plan, found = run("base_model: m\nlora:\n  target_modules: [q_proj]\n  layers_to_transform: [0, 99]\n",
                      "meta-llama/Llama-3.2-1B")
    assert found == [("LP503", "warning", 4, 28)]
    assert plan.diagnostics[0].message.startswith("layer 99 selects nothing")


def test_converted_expert_names_are_one_lp506_at_the_first():
    plan, found = run("base_model: m\nlora:\n  target_modules: [q_proj, gate_proj, up_proj, down_proj]\n",
                      "Qwen/Qwen3-30B-A3B")
    assert found == [("LP506", "info", 3, 28)]  # was three copies, one per expert name
    message = plan.diagnostics[0].message
    assert "`down_proj` -> `down_proj`" in message and "`gate_proj`, `up_proj` -> `gate_up_proj`" in message
