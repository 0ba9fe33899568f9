"""The markdown rendering: GFM tables of collapsed rows, escaped cells, findings in a code block."""

from __future__ import annotations

from plan_samples import MEMORY, inj, layers, make_plan

from loraplan.compiler.plan import Coverage
from loraplan.output.plan_markdown import render_markdown
from loraplan.schema.diagnostic import Diagnostic


def section(text: str, title: str) -> list[str]:
    """The lines of one `## title` section (without the heading)."""
    body = text.split(f"\n## {title}\n", 1)[1]
    return body.split("\n## ", 1)[0].strip("\n").splitlines()


def table_rows(lines: list[str]) -> list[list[str]]:
    rows = [line for line in lines if line.startswith("| ")]
    return [[c.strip() for c in row.strip("|").split(" | ")] for row in rows]


def sample():
    items = [
        inj(f"model.layers.{n}.self_attn.{p}", o=1024 if p in ("k_proj", "v_proj") else 4096)
        for n in range(8)
        for p in ("q_proj", "k_proj", "v_proj", "o_proj")
    ]
    return make_plan(
        items,
        modules_to_save=["score"],
        coverage=[Coverage(r".*\.(q|v)_proj", 16, 8, 8, list(range(8))), Coverage("k_proj", 8, 4, 8, [0, 1, 2, 3])],
        memory=MEMORY,
        diagnostics=[Diagnostic("LP503", "warning", "`k_proj` reaches 4 of 8 decoder blocks", "c.yaml", 6, 7)],
    )


def test_heading_and_architecture():
    text = render_markdown(sample(), title="c.yaml")
    assert text.startswith("# Plan: `c.yaml`\n\n")
    assert "| architecture | `test/arch` (`TestForCausalLM`, 8 layers) |" in text
    assert f"| plan fingerprint | `{sample().fingerprint}` |" in text


def test_injection_table_is_collapsed_and_aligned():
    lines = section(render_markdown(sample()), "Injections")
    assert (
        lines[0] == f"32 modules adapted, {sum(i.params for i in sample().injections):,} trainable parameters; "
        "lora_dropout 0.05."
    )
    rows = table_rows(lines)
    assert rows[0] == ["modules", "kind", "r", "α", "in→out", "count", "params"]  # no notes column: none to show
    assert (
        lines[lines.index("| modules | kind | r | α | in→out | count | params |") + 1]
        == "| --- | --- | ---: | ---: | --- | ---: | ---: |"
    )
    assert rows[2] == [
        "`model.layers.0-7.self_attn.{q,o}_proj`",
        "linear",
        "16",
        "32",
        "4096→4096",
        "16",
        f"{16 * 16 * 8192:,}",
    ]
    assert rows[3][0] == "`model.layers.0-7.self_attn.{k,v}_proj`" and rows[3][4] == "4096→1024"
    assert len(rows) == 4


def test_notes_column_when_a_row_has_notes():
    items = layers("m.layers.{}.q", range(3))
    items[0] = inj("m.layers.0.q", r=4, rank_pattern="layers.0")
    rows = table_rows(section(render_markdown(make_plan(items)), "Injections"))
    assert rows[0][-1] == "notes" and rows[2][-1] == "r from rank_pattern `layers.0`" and rows[3][-1] == ""


def test_pipes_in_patterns_are_escaped():
    lines = section(render_markdown(sample()), "Coverage")
    assert r"| `.*\.(q\|v)_proj` | target_modules | 16 | 8/8 |" in lines
    assert "| `k_proj` | target_modules | 8 | 4/8 (0-3) |" in lines


def test_totals_memory_and_modules_to_save():
    text = render_markdown(sample())
    assert section(text, "modules_to_save")[-1] == "- `score`"
    totals = table_rows(section(text, "Totals"))
    plan = sample()
    assert totals[2] == ["trainable", f"{plan.totals.trainable_params:,}", f"{plan.totals.trainable_percent:.4f}%"]
    assert totals[-1] == ["total", "1,000,000,000", ""]
    memory = section(text, "Memory estimate")
    assert "| weights | 16.00 GiB |" in memory and "| **total** | **20.12 GiB** |" in memory
    assert "- weights: all weights in bfloat16" in memory


def test_diagnostics_in_a_text_block():
    lines = section(render_markdown(sample(), title="c.yaml", files=["c.yaml"]), "Diagnostics")
    assert lines[0] == "```text" and lines[-1] == "```"
    assert "c.yaml:6:7: LP503 warning: `k_proj` reaches 4 of 8 decoder blocks" in lines
    assert "\033[" not in "\n".join(lines)


def test_no_parameters_section_without_parameters_and_deterministic():
    text = render_markdown(sample())
    assert "## Parameters" not in text
    assert text == render_markdown(sample())
    with_params = make_plan(
        layers("m.layers.{}.q", range(2)),
        [
            inj(
                "m.layers.0.mlp.experts.down_proj",
                kind="parameter",
                i=14336,
                o=4096,
                dropout=0.0,
                params=8 * 16 * (14336 + 4096),
            )
        ],
    )
    rows = table_rows(section(render_markdown(with_params), "Parameters (target_parameters)"))
    assert rows[2][:5] == ["`m.layers.0.mlp.experts.down_proj`", "parameter", "16", "32", "8×(14336→4096)"]
