"""The plan table stays readable (issue 13): no empty plan before its errors, no 180-column
coverage row for a long regex, patterns shown as written."""

from __future__ import annotations

from plan_samples import MEMORY, inj, layers, make_plan

from loraplan.compiler.plan import Coverage
from loraplan.output.plan_table import render_table
from loraplan.schema.diagnostic import Diagnostic

LONG = r"model\.language_model\.layers\.\d+\.(self_attn\.[qkvo]_proj|linear_attn\.(in_proj_qkv|out_proj))"


def test_an_empty_plan_with_errors_prints_the_errors_only():
    error = Diagnostic("LP502", "error", "target `nonexist` matches no module", "c.yaml", 3, 20)
    plan = make_plan([], coverage=[Coverage("nonexist", 0, 0, 16, [])], diagnostics=[error],
                     memory=MEMORY)
    text = render_table(plan, title="c.yaml")
    lines = text.splitlines()
    assert lines[0].startswith("Plan") and "test/arch" in lines[1]
    assert "c.yaml:3:20: LP502 error" in lines[3]
    for section in ("Injections", "Coverage", "Totals", "Memory estimate"):
        assert section not in text
    assert len(lines) < 10


def test_a_plan_with_injections_and_errors_keeps_its_sections():
    error = Diagnostic("LP502", "error", "target `x` matches no module", "c.yaml", 3, 20)
    text = render_table(make_plan(layers("m.layers.{}.q", range(2)), diagnostics=[error], memory=MEMORY))
    assert "Injections" in text and "Coverage" in text


def test_a_long_regex_does_not_widen_the_coverage_table():
    plan = make_plan(layers("m.layers.{}.q", range(2)),
                     coverage=[Coverage(LONG, 104, 32, 32, list(range(32)))], memory=MEMORY)
    text = render_table(plan)
    coverage = text[text.index("Coverage"):text.index("Totals")].splitlines()
    assert max(len(line) for line in coverage) <= 100
    assert any(line.lstrip().startswith(LONG[:40]) for line in coverage)


def test_pattern_keys_are_shown_as_written():
    row = inj("m.layers.0.self_attn.q_proj", rank_pattern=r".*\.q_proj", alpha_pattern=r"q_proj$")
    text = render_table(make_plan([row], memory=MEMORY))
    assert r"r from rank_pattern `.*\.q_proj`" in text
    assert "\\\\" not in text  # no doubled backslash anywhere
