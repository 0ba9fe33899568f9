"""The text table: collapsing repeated layers (exactly, never merging different settings) and sections."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from plan_samples import MEMORY, inj, layers, make_plan

from loraplan.compiler.plan import Coverage
from loraplan.output.plan_collapse import brace, collapse, collapse_names, index_runs
from loraplan.output.plan_table import render_table
from loraplan.schema.diagnostic import Diagnostic

QKVO = ("q_proj", "k_proj", "v_proj", "o_proj")


def injection_lines(text: str) -> list[str]:
    """The rows under the Injections heading."""
    block = text.split("\nInjections", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines()[1:]]


def expand_indices(text: str) -> list[int]:
    parts = text.split(",")
    runs = [tuple(int(x) for x in p.split("-")) if "-" in p else (int(p), int(p)) for p in parts if p != "..."]
    if "..." in parts:
        (a0, b0), (a1, _), (last, _) = runs[0], runs[1], runs[-1]
        return [a + k for a in range(a0, last + 1, a1 - a0) for k in range(b0 - a0 + 1)]
    return [v for a, b in runs for v in range(a, b + 1)]


def expand(pattern: str) -> set[str]:
    """Every name a collapsed pattern stands for (the inverse of the collapsing)."""
    choices = []
    for seg in re.findall(r"(?:[^.{]|\{[^}]*\})+", pattern):
        if seg[0].isdigit():
            choices.append([str(v) for v in expand_indices(seg)])
        elif "{" in seg:
            head, rest = seg.split("{", 1)
            inner, tail = rest.split("}", 1)
            choices.append([f"{head}{m}{tail}" for m in inner.split(",")])
        else:
            choices.append([seg])
    return {".".join(p) for p in itertools.product(*choices)}


class TestIndexRuns:
    @pytest.mark.parametrize(
        ("indices", "text"),
        [
            (range(32), "0-31"),
            ([0, 1, 2, 3, 8, 9, 10, 11], "0-3,8-11"),
            ([5], "5"),
            ([4, 5], "4-5"),
            ([1, 3, 5, 7], "1,3,5,7"),  # four parts: listed
            (range(3, 32, 4), "3,7,...,31"),  # a hybrid model's attention layers
            ([i for i in range(32) if i % 4 != 3], "0-2,4-6,...,28-30"),
            ([1, 3, 5, 7, 10], "1,3,5,7,10"),  # irregular: no ellipsis
            ([0, 2, 4, 6, 8, 9], "0,2,4,6,8-9"),  # unequal runs: no ellipsis
            ([3, 1, 2, 2], "1-3"),
        ],
    )
    def test_runs(self, indices, text):
        assert index_runs(indices) == text
        assert expand_indices(text) == sorted(set(indices))


class TestBrace:
    @pytest.mark.parametrize(
        ("names", "text"),
        [
            (["q_proj", "k_proj", "v_proj", "o_proj"], "{q,k,v,o}_proj"),
            (["gate_proj", "up_proj"], "{gate,up}_proj"),
            (["in_proj_qkv", "in_proj_z"], "in_proj_{qkv,z}"),
            (["gate_up_proj", "up_proj"], "{gate_up,up}_proj"),
            (["w1", "w3"], "{w1,w3}"),  # no `_` boundary: whole names
            (["proj", "x_proj"], "{proj,x_proj}"),  # an empty alternative would hide a name
            (["lm_head"], "lm_head"),
        ],
    )
    def test_brace(self, names, text):
        assert brace(names) == text


class TestCollapse:
    def test_all_layers_and_siblings_with_one_setting_are_one_row(self):
        items = [inj(f"model.layers.{n}.self_attn.{p}") for n in range(32) for p in QKVO]
        groups = collapse(items, lambda i: i.module, lambda i: (i.r, i.in_features, i.out_features))
        assert [(g.pattern, g.count) for g in groups] == [("model.layers.0-31.self_attn.{q,k,v,o}_proj", 128)]

    def test_index_runs_in_names(self):
        names = [f"model.layers.{n}.mlp.down_proj" for n in (*range(4), *range(8, 12))]
        assert collapse_names(names) == ["model.layers.0-3,8-11.mlp.down_proj"]

    def test_two_numeric_positions(self):
        names = [f"model.layers.{n}.block_sparse_moe.experts.{e}.w1" for n in range(4) for e in range(8)]
        assert collapse_names(names) == ["model.layers.0-3.block_sparse_moe.experts.0-7.w1"]

    def test_different_parents_are_not_brace_merged(self):
        names = ["model.layers.0.self_attn.q_proj", "model.layers.0.mlp.q_proj"]
        assert collapse_names(names) == names

    def test_unequal_index_sets_do_not_merge_leaves(self):
        names = [f"model.layers.{n}.self_attn.q_proj" for n in range(8)]
        names += [f"model.layers.{n}.self_attn.k_proj" for n in range(4)]
        assert collapse_names(names) == ["model.layers.0-7.self_attn.q_proj", "model.layers.0-3.self_attn.k_proj"]

    @settings(max_examples=150, deadline=None)
    @given(
        st.sets(
            st.tuples(
                st.integers(0, 11), st.sampled_from(["self_attn", "mlp"]), st.sampled_from(QKVO), st.integers(0, 2)
            ),
            min_size=1,
            max_size=60,
        )
    )
    def test_rows_stand_for_exactly_their_members(self, entries):
        """No name is invented or lost, and no row mixes settings, whatever the input."""
        items = sorted(entries)
        groups = collapse(items, lambda e: f"model.layers.{e[0]}.{e[1]}.{e[2]}", lambda e: e[3])
        seen = []
        for g in groups:
            names = {f"model.layers.{e[0]}.{e[1]}.{e[2]}" for e in g.items}
            assert expand(g.pattern) == names
            assert len({e[3] for e in g.items}) == 1
            seen += g.items
        assert sorted(seen) == items


class TestTableRows:
    def test_collapsed_row_has_settings_count_and_params(self):
        plan = make_plan([inj(f"model.layers.{n}.self_attn.{p}") for n in range(32) for p in QKVO])
        (row,) = injection_lines(render_table(plan))
        assert re.fullmatch(
            r"model\.layers\.0-31\.self_attn\.\{q,k,v,o\}_proj\s+linear\s+r=16\s+α=32\s+4096→4096\s+×128\s+16,777,216",
            row,
        )

    def test_shapes_split_siblings(self):
        items = []
        for n in range(2):
            items += [
                inj(f"model.layers.{n}.self_attn.{p}", o=1024 if p in ("k_proj", "v_proj") else 4096) for p in QKVO
            ]
        rows = injection_lines(render_table(make_plan(items)))
        assert [r.split()[0] for r in rows] == [
            "model.layers.0-1.self_attn.{q,o}_proj",
            "model.layers.0-1.self_attn.{k,v}_proj",
        ]
        assert "4096→1024" in rows[1] and "×4" in rows[1]

    @pytest.mark.parametrize(
        "odd",
        [
            {"r": 8},
            {"alpha": 16},
            {"dropout": 0.1},
            {"kind": "conv1d_gpt2"},
            {"use_dora": True},
            {"i": 2048},
            {"params": 1},
            {"rank_pattern": "layers.5.q_proj"},
        ],
    )
    def test_different_settings_are_not_merged(self, odd):
        items = layers("model.layers.{}.self_attn.q_proj", range(8))
        items[5] = inj("model.layers.5.self_attn.q_proj", **odd)
        rows = injection_lines(render_table(make_plan(items)))
        assert [r.split()[0] for r in rows] == [
            "model.layers.0-4,6-7.self_attn.q_proj",
            "model.layers.5.self_attn.q_proj",
        ]

    def test_rank_pattern_and_dora_are_shown(self):
        items = layers("model.layers.{}.mlp.up_proj", range(4), use_dora=True)
        items[0] = inj("model.layers.0.mlp.up_proj", r=64, alpha=32, use_dora=True, rank_pattern="layers.0.mlp")
        rows = injection_lines(render_table(make_plan(items)))
        assert "linear+DoRA" in rows[0] and "r=64" in rows[0] and "r from rank_pattern `layers.0.mlp`" in rows[0]
        assert "r=16" in rows[1] and "rank_pattern" not in rows[1]

    def test_uniform_dropout_in_heading_mixed_dropout_per_row(self):
        same = render_table(make_plan(layers("m.layers.{}.q", range(2))))
        assert "lora_dropout 0.05" in same.split("\nInjections", 1)[1].splitlines()[0]
        assert "dropout=" not in same
        mixed = [*layers("m.layers.{}.q", range(2)), inj("m.layers.0.k", dropout=0.0)]
        rows = injection_lines(render_table(make_plan(mixed)))
        assert "dropout=0.05" in rows[0] and "dropout=0" in rows[1]

    def test_rows_follow_plan_order(self):
        items = layers("model.layers.{}.mlp.down_proj", range(2), i=14336) + layers(
            "model.layers.{}.self_attn.q_proj", range(2)
        )
        rows = injection_lines(render_table(make_plan(items)))
        assert rows[0].startswith("model.layers.0-1.mlp.down_proj") and "14336→4096" in rows[0]


class TestSections:
    def plan(self):
        params = [
            inj(
                f"model.layers.{n}.mlp.experts.gate_up_proj",
                kind="parameter",
                i=4096,
                o=28672,
                dropout=0.0,
                params=8 * 16 * (4096 + 28672),
            )
            for n in range(4)
        ]
        return make_plan(
            layers("model.layers.{}.self_attn.q_proj", range(4)),
            params,
            modules_to_save=["lm_head", "model.embed_tokens"],
            coverage=[
                Coverage("q_proj", 4, 4, 8, [0, 1, 2, 3]),
                Coverage("mlp.experts.gate_up_proj", 4, 4, 8, [0, 1, 2, 3], "target_parameters"),
                Coverage("v_porj", 0, 0, 8, []),
            ],
            memory=MEMORY,
            diagnostics=[
                Diagnostic(
                    "LP502", "error", "target `v_porj` matches nothing", "c.yaml", 5, 7, hint="did you mean `v_proj`?"
                )
            ],
        )

    def test_every_section_in_order(self):
        text = render_table(self.plan(), title="c.yaml", files=["c.yaml"])
        heads = [line.split("  ")[0] for line in text.split("\n\n") for line in [line.splitlines()[0]]]
        assert heads[:7] == [
            "Plan",
            "Injections",
            "Parameters (target_parameters)",
            "modules_to_save",
            "Coverage",
            "Totals",
            "Memory estimate",
        ]
        assert "Diagnostics" in text.split("Memory estimate", 1)[1]

    def test_parameters_show_experts(self):
        text = render_table(self.plan())
        block = text.split("Parameters (target_parameters)", 1)[1].split("\n\n", 1)[0]
        assert "model.layers.0-3.mlp.experts.gate_up_proj" in block
        assert "8×(4096→28672)" in block and "×4" in block and f"{4 * 8 * 16 * (4096 + 28672):,}" in block

    def test_modules_to_save_coverage_totals(self):
        text = render_table(self.plan())
        assert "modules_to_save  2 modules" in text and "\n  lm_head\n  model.embed_tokens\n" in text
        coverage = text.split("\nCoverage", 1)[1].split("\n\n", 1)[0]
        assert re.search(r"q_proj\s+target_modules\s+4\s+4/8 \(0-3\)", coverage)
        assert re.search(r"mlp\.experts\.gate_up_proj\s+target_parameters\s+4\s+4/8", coverage)
        assert re.search(r"v_porj\s+target_modules\s+0\s+0/8", coverage)
        plan = self.plan()
        totals = text.split("\nTotals", 1)[1].split("\n\n", 1)[0]
        assert re.search(
            rf"trainable\s+{plan.totals.trainable_params:,}\s+{plan.totals.trainable_percent:.4f}%", totals
        )
        assert re.search(r"total\s+1,000,000,000", totals)

    def test_memory_components_and_assumptions(self):
        text = render_table(self.plan())
        memory = text.split("\nMemory estimate", 1)[1].split("\n\nDiagnostics", 1)[0]
        assert memory.splitlines()[0].strip() == "20.12 GiB for one training step on one device"
        assert re.search(r"weights\s+16\.00 GiB", memory) and re.search(r"cuda context\s+512\.00 MiB", memory)
        assert re.search(r"total\s+20\.12 GiB", memory)
        assert "- weights: all weights in bfloat16" in memory

    def test_diagnostics_rendered_with_source_line(self):
        source = "base_model: x\nlora:\n  r: 16\n  target_modules:\n    - v_porj\n"
        text = render_table(self.plan(), title="c.yaml", sources={"c.yaml": source}, files=["c.yaml"])
        diags = text.split("\nDiagnostics\n", 1)[1]
        assert diags.startswith("c.yaml:5:7: LP502 error: target `v_porj` matches nothing\n 5 |     - v_porj\n")
        assert "help: did you mean `v_proj`?" in diags and "Found 1 error and 0 warnings" in diags

    def test_no_memory_estimate(self):
        text = render_table(make_plan(layers("m.layers.{}.q", range(2))))
        assert "Memory estimate  not available" in text

    def test_deterministic(self):
        assert render_table(self.plan(), title="c.yaml") == render_table(self.plan(), title="c.yaml")


class TestColourAndGlyphs:
    def test_colour_only_when_asked(self):
        plan = make_plan(layers("m.layers.{}.q", range(2)), diagnostics=[Diagnostic("LP503", "warning", "w")])
        assert "\033[" not in render_table(plan)
        coloured = render_table(plan, color=True)
        assert "\033[1mInjections\033[0m" in coloured and "\033[1;33mwarning\033[0m" in coloured

    def test_ascii_stand_ins(self):
        plan = make_plan(layers("m.layers.{}.q", range(2)))
        text = render_table(plan, ascii_only=True)
        assert "alpha=32" in text and "4096->4096" in text and "x2" in text
        assert not any(ch in text for ch in "α→×")


@pytest.mark.parametrize(
    ("lora", "expected"),
    [
        ("{target_modules: all-linear}", "training path: loraplan's fused layer for 112 of 112"),
        ("{target_modules: all-linear, use_dora: true}",
         "training path: loraplan's fused layer for 0 of 112; PEFT's layer for 112 (DoRA"),
    ],
)
def test_the_table_says_which_layers_train_on_the_fused_path(lora, expected):
    from loraplan.compiler.compile import compile_plan
    from loraplan.output.plan_table import render_table
    from loraplan.schema.load import load_text

    result = load_text(f"base_model: meta-llama/Llama-3.2-1B\nlora: {lora}\n", "cfg.yaml")
    text = render_table(compile_plan(result.config, source=result.source), color=False)
    assert expected in text


def test_memory_section_shows_the_allocator_peak_beside_the_device_total():
    from loraplan.compiler.compile import compile_plan
    from loraplan.output.plan_rows import fmt_bytes
    from loraplan.schema.load import load_text

    result = load_text("base_model: meta-llama/Llama-3.2-1B\nlora: {target_modules: all-linear}\n", "cfg.yaml")
    plan = compile_plan(result.config, source=result.source)
    text = render_table(plan, color=False)
    memory = plan.memory
    assert 0 < memory.peak_allocated_bytes < memory.total_bytes
    assert re.search(rf"PyTorch peak\s+{re.escape(fmt_bytes(memory.peak_allocated_bytes))}", text)
