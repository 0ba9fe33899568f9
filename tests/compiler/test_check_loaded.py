"""check_loaded, the compiler pass `validate` runs: findings merged with the schema's, never raising."""

from __future__ import annotations

import textwrap

from loraplan.schema.load import load_text


def test_check_loaded_does_not_repeat_a_schema_error_at_the_same_place():
    from loraplan.compiler.compile import check_loaded

    result = load_text(textwrap.dedent("""
        base_model: mistralai/Mixtral-8x7B-v0.1
        lora:
          lora_dropout: 0.1
          target_parameters: [mlp.experts.gate_up_proj]
    """).lstrip("\n"), "cfg.yaml")
    assert [(d.code, d.line) for d in result.diagnostics if d.severity == "error"] == [("LP305", 3)]
    plan, found = check_loaded(result)
    assert plan is not None
    assert not [d for d in found if d.severity == "error" and d.line == 3]
    assert any(d.code == "LP505" for d in plan.diagnostics)  # the plan itself keeps the full story
