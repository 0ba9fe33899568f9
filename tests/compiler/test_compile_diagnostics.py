"""Every compiler diagnostic (LP5xx): when it fires, its severity, and exactly where in the YAML it points."""

from __future__ import annotations

import textwrap

import pytest
from peft_oracle import architecture, hf_factory

from loraplan.compiler.catalog import load_catalog_architecture
from loraplan.compiler.compile import compile_plan
from loraplan.schema.load import load_text

_ARCHS: dict[str, object] = {}


def arch(name: str):
    """A catalog architecture (no torch) or, for `tiny:<type>`, a tiny model built on meta."""
    if name not in _ARCHS:
        _ARCHS[name] = architecture(hf_factory(name[5:])) if name.startswith("tiny:") else \
            load_catalog_architecture(name)
    return _ARCHS[name]


def run(text: str, arch_name: str = "tiny:llama", dialect: str = "auto"):
    result = load_text(textwrap.dedent(text).lstrip("\n"), "cfg.yaml", dialect)  # type: ignore[arg-type]
    assert result.config is not None, result.diagnostics
    plan = compile_plan(result.config, arch(arch_name), source=result.source)
    return plan, [(d.code, d.severity, d.line, d.column) for d in plan.diagnostics]


def only(plan, code: str):
    found = [d for d in plan.diagnostics if d.code == code]
    assert len(found) == 1, [(d.code, d.message) for d in plan.diagnostics]
    return found[0]


# --- LP502: an entry that adapts nothing -------------------------------------------------------------------


def test_typo_in_list_is_an_error_even_when_others_match():
    plan, found = run("""
        base_model: test
        lora:
          target_modules:
            - q_proj
            - v_porj
    """)
    assert ("LP502", "error", 5, 7) in found
    d = only(plan, "LP502")
    assert "`v_porj`" in d.message and d.hint == "did you mean `v_proj`?" and d.file == "cfg.yaml"
    assert (d.end_line, d.end_column) == (5, 13)
    assert len(plan.injections) == 3


def test_split_projection_on_fused_qkv_model_suggests_the_fused_name():
    plan, found = run("""
        base_model: test
        lora:
          target_modules: [q_proj, v_proj, o_proj]
    """, "microsoft/Phi-3-mini-4k-instruct")
    assert [(c, s, line, col) for c, s, line, col in found if c == "LP502"] == [
        ("LP502", "error", 3, 20), ("LP502", "error", 3, 28)]
    assert all("qkv_proj" in d.hint for d in plan.diagnostics if d.code == "LP502")


def test_bare_name_as_regex_string():
    plan, found = run("""
        base_model: test
        lora:
          target_modules: q_proj
    """)
    assert found == [("LP502", "error", 3, 19)]
    assert "[q_proj]" in only(plan, "LP502").hint


def test_layer_filter_that_keeps_nothing():
    plan, _found = run("""
        base_model: test
        lora:
          target_modules: [q_proj, lm_head]
          layers_to_transform: [2]
          layers_pattern: h
    """)
    d = only(plan, "LP502")
    assert (d.line, d.column) == (3, 20) and "layers_to_transform" in d.message


def test_everything_excluded():
    plan, found = run("""
        base_model: test
        lora:
          target_modules: [q_proj]
          exclude_modules: [self_attn.q_proj]
    """)
    assert found == [("LP502", "error", 3, 20)]
    assert "exclude_modules / modules_to_save exclude them all" in plan.diagnostics[0].message


# --- LP503 / LP504: coverage --------------------------------------------------------------------------------


def test_entries_reaching_part_of_a_hybrid_model():
    plan, _found = run("""
        base_model: test
        lora:
          target_modules: [q_proj, k_proj, in_proj, out_proj]
    """, "tiny:jamba")
    lp503 = [d for d in plan.diagnostics if d.code == "LP503"]
    assert [(d.line, d.column) for d in lp503] == [(3, 20), (3, 36)]
    assert "`q_proj`, `k_proj` reach 2 of 4 decoder blocks (1, 3)" in lp503[0].message
    assert "`x_proj`" in lp503[0].hint and "`v_proj`" in lp503[1].hint  # what the other blocks hold instead


def test_small_share_of_blocks_is_a_warning_with_numbers():
    plan, _ = run("""
        base_model: test
        lora:
          target_modules: [q_proj, k_proj, v_proj, o_proj]
    """, "nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B-NVFP4")
    d = only(plan, "LP504")
    assert d.severity == "warning" and "6 of 52 decoder blocks (12%)" in d.message
    assert (d.line, d.column) == (3, 3) and "NemotronHBlock" in d.message and "in_proj" in d.hint


def test_vision_tower_only():
    plan, _ = run("""
        base_model: test
        lora:
          target_modules: .*vision_tower.*\\.(q_proj|v_proj)
    """, "llava-hf/llava-1.5-7b-hf")
    d = only(plan, "LP504")
    assert d.severity == "warning" and "none of its 32 blocks" in d.message and "model.vision_tower" in d.message


def test_layer_index_that_does_not_exist():
    plan, found = run("""
        base_model: test
        lora:
          target_modules: [q_proj]
          layers_to_transform: [1, 9]
    """)
    assert found == [("LP503", "warning", 4, 28)]
    assert "layer 9" in plan.diagnostics[0].message


# --- LP505: module types LoRA cannot wrap -----------------------------------------------------------------


def test_norm_and_container_targets():
    plan, found = run("""
        base_model: test
        lora:
          target_modules: [input_layernorm, self_attn, q_proj]
    """)
    assert [f for f in found if f[0] == "LP505"] == [("LP505", "error", 3, 20), ("LP505", "error", 3, 37)]
    messages = [d.message for d in plan.diagnostics if d.code == "LP505"]
    assert any("LlamaRMSNorm" in m for m in messages) and any("LlamaAttention (container)" in m for m in messages)


def test_mamba_out_proj_refused():
    plan, _found = run("""
        base_model: test
        lora:
          target_modules: all-linear
    """, "tiny:falcon_h1")
    d = only(plan, "LP505")
    assert (d.line, d.column) == (3, 19) and "`out_proj` on Mamba-based models" in d.message


def test_experts_module_points_to_target_parameters():
    plan, _found = run("""
        base_model: test
        lora:
          target_modules: [experts]
    """, "tiny:gpt_oss")
    d = next(d for d in plan.diagnostics if d.code == "LP505")
    assert "GptOssExperts" in d.message and "experts.gate_up_proj" in d.hint


def test_conv_rank_not_divisible_by_groups():
    plan, _found = run("""
        base_model: test
        lora:
          r: 6
          target_modules: [conv1d]
    """, "tiny:jamba")
    d = only(plan, "LP505")
    assert "not divisible by the conv's groups=64" in d.message and (d.line, d.column) == (4, 20)


# --- LP506: fused MoE experts -----------------------------------------------------------------------------


def test_old_expert_names_converted_by_peft():
    plan, _ = run("""
        base_model: test
        lora:
          r: 8
          lora_alpha: 16
          target_modules: [q_proj, w1, w2, w3]
    """, "mistralai/Mixtral-8x7B-v0.1")
    lp506 = [d for d in plan.diagnostics if d.code == "LP506"]
    assert [(d.severity, d.line, d.column) for d in lp506] == [("info", 5, 28)]  # once for the list (issue 13)
    assert ("`w1`, `w3` -> `gate_up_proj` with r=16, lora_alpha=32 (PEFT doubles both for the fused pair)"
            in lp506[0].message)
    assert "`w2` -> `down_proj`" in lp506[0].message


def test_half_of_a_fused_pair_is_refused():
    plan, found = run("""
        base_model: test
        lora:
          target_modules: [gate_proj, down_proj]
    """, "Qwen/Qwen3-30B-A3B")
    assert found == [("LP506", "error", 3, 20)]  # once, at the first entry (issue 13)
    assert "without also targeting up_proj" in plan.diagnostics[0].message


def test_conversion_drops_dense_and_shared_linears():
    plan, _ = run("""
        base_model: test
        lora:
          target_modules: all-linear
    """, "deepseek-ai/DeepSeek-V3")
    d = only(plan, "LP506")
    assert d.severity == "warning" and "NOT adapted" in d.message and "model.layers.0.mlp.gate_proj" in d.message
    assert "shared_experts.gate_proj.weight" in d.hint


def test_unconverted_model_with_fused_experts():
    plan, found = run("""
        base_model: test
        lora:
          target_modules: [q_proj, gate_proj]
    """, "openai/gpt-oss-20b")
    assert ("LP502", "error", 3, 28) in found and ("LP506", "warning", 3, 28) in found
    d = only(plan, "LP506")
    assert "fused parameters" in d.message and "target_parameters: [experts.down_proj, experts.gate_up_proj]" in d.hint


# --- LP507: targets serving stacks cannot load ---------------------------------------------------------------


def test_lm_head_embeddings_routers_and_saved_copies():
    plan, _found = run("""
        base_model: test
        lora:
          target_modules: [q_proj, embed_tokens, lm_head]
          modules_to_save: [model.norm]
    """)
    lp507 = [d for d in plan.diagnostics if d.code == "LP507"]
    assert [(d.line, d.column) for d in lp507] == [(3, 28), (3, 42)]
    assert "vLLM" in lp507[0].message
    plan, _ = run("""
        base_model: test
        lora:
          target_modules: [q_proj]
          modules_to_save: [lm_head]
    """)
    d = only(plan, "LP507")
    assert (d.line, d.column) == (4, 3) and "full copies of `lm_head`" in d.message
    plan, _ = run("""
        base_model: test
        lora:
          target_modules: all-linear
    """, "Qwen/Qwen3-30B-A3B")
    d = only(plan, "LP507")
    assert "MoE routers" in d.message and "mlp.gate.weight" in d.message


# --- LP508: patterns and exclusions that do nothing ----------------------------------------------------------


def test_rank_alpha_patterns_and_exclusions():
    plan, _found = run("""
        base_model: test
        lora:
          target_modules: [q_proj, k_proj]
          rank_pattern:
            q_proj: 4
            layers.1.self_attn.q_proj: 8
            nope: 2
          alpha_pattern: {v_proj: 3}
          exclude_modules: [gate_proj, foo]
    """)
    lp508 = sorted((d.line, d.column, d.message) for d in plan.diagnostics if d.code == "LP508")
    assert [(line, col) for line, col, _ in lp508] == [(6, 5), (7, 5), (8, 19), (9, 21), (9, 32)]
    assert "never applies" in lp508[0][2] and "matches no adapted" in lp508[1][2]
    assert "excludes nothing" in lp508[3][2] and "matches no module" in lp508[4][2]


# --- LP509: PEFT quirks ---------------------------------------------------------------------------------


def test_full_name_skips_the_layer_filter():
    plan, found = run("""
        base_model: test
        lora:
          target_modules: [q_proj, model.layers.0.self_attn.v_proj]
          layers_to_transform: [1]
    """)
    assert found == [("LP509", "warning", 3, 28)]
    assert [i.module for i in plan.injections] == ["model.layers.0.self_attn.v_proj", "model.layers.1.self_attn.q_proj"]


def test_twenty_names_are_condensed():
    names = [f"model.layers.{i}.{p}" for i in range(3) for p in ("self_attn.q_proj", "self_attn.k_proj",
                                                                  "self_attn.v_proj", "self_attn.o_proj",
                                                                  "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")]
    plan, found = run(f"""
        base_model: test
        lora:
          target_modules: [{", ".join(names)}]
          layers_to_transform: [1]
    """)
    d = only(plan, "LP509")
    assert d.severity == "warning" and "condenses the 21 target names into 7 suffixes" in d.message
    assert "now every one goes through layers_to_transform" in d.message and (d.line, d.column) == (3, 3)
    assert {i.layer for i in plan.injections} == {1}  # the full names no longer skip the filter
    assert sum(1 for f in found if f[0] == "LP502") == 14  # layers 0 and 2's full names adapt nothing


def test_modules_to_save_plain_suffix_and_task_heads():
    plan, _ = run("""
        base_model: test
        lora:
          target_modules: [query]
          modules_to_save: [head]
    """, "tiny:llama")
    d = next(d for d in plan.diagnostics if d.code == "LP509")
    assert "also wraps `lm_head`" in d.message and (d.line, d.column) == (4, 21)
    plan, _ = run("""
        base_model: test
        lora:
          target_modules: [query, value]
          task_type: SEQ_CLS
    """, "tiny:bert")
    d = only(plan, "LP509")
    assert d.severity == "info" and "`classifier`" in d.message and (d.line, d.column) == (4, 14)


def test_layer_filter_reaching_outside_the_main_stack():
    plan, _ = run("""
        base_model: test
        lora:
          target_modules: [q_proj]
          layers_to_transform: [0]
    """, "llava-hf/llava-1.5-7b-hf")
    d = only(plan, "LP509")
    assert "outside the main stack" in d.message and "vision_tower" in d.message
    assert d.hint == "set `layers_pattern: layers`" and (d.line, d.column) == (4, 3)


# --- LP510: PEFT's default targets -----------------------------------------------------------------------


def test_default_targets():
    plan, found = run("""
        base_model: test
        lora:
          r: 4
    """)
    assert found == [("LP510", "info", 2, 1)] and "q_proj, v_proj" in plan.diagnostics[0].message
    plan, found = run("""
        base_model: test
        lora:
          target_parameters: [mlp.down_proj.weight]
    """)
    assert found == [("LP510", "warning", 2, 1)] and "target_modules: []" in plan.diagnostics[0].hint
    plan, found = run("""
        base_model: test
        lora:
          r: 4
    """, "mistralai/Mixtral-8x7B-v0.1")
    assert found == [("LP510", "error", 2, 1)]
    plan, found = run("""
        base_model: test
        lora:
          r: 4
    """, "openai/gpt-oss-20b")
    assert found == [("LP510", "error", 2, 1)] and "no default" in plan.diagnostics[0].message


# --- LP511 / LP513 / LP514 / LP515 ---------------------------------------------------------------------------


def test_modules_to_save_that_matches_nothing():
    plan, found = run("""
        base_model: test
        lora:
          target_modules: [q_proj]
          modules_to_save: [lm_haed]
    """)
    assert found == [("LP511", "warning", 4, 21)] and "`lm_head`" in plan.diagnostics[0].hint


def test_fan_in_fan_out_fixed_by_peft():
    _, found = run("""
        base_model: test
        lora:
          target_modules: [c_attn]
    """, "openai-community/gpt2")
    assert found == [("LP513", "info", 3, 3)]
    _plan, found = run("""
        base_model: test
        lora:
          target_modules: [q_proj]
          fan_in_fan_out: true
    """)
    assert found == [("LP513", "warning", 4, 3)]


def test_target_parameters_that_match_nothing():
    plan, found = run("""
        base_model: test
        lora:
          target_modules: []
          target_parameters:
            - experts.gate_up_proj
            - experts.gate_up_prj
    """, "openai/gpt-oss-20b")
    assert ("LP514", "error", 6, 7) in found
    assert only(plan, "LP514").hint == "did you mean `experts.gate_up_proj`?"


def test_modules_to_save_on_an_adapted_module():
    plan, found = run("""
        base_model: test
        lora:
          target_modules: [q_proj, lm_head]
          modules_to_save: [head]
    """)
    assert ("LP515", "error", 4, 21) in found and "TypeError" in only(plan, "LP515").message
    plan, found = run("""
        base_model: test
        lora:
          target_modules: [q_proj, lm_head]
          modules_to_save: [lm_head]
    """)  # an exact name keeps the module out of targeting instead
    assert found == [("LP502", "error", 3, 28), ("LP507", "warning", 4, 3)]


# --- dialects, and plans without a source ----------------------------------------------------------------


def test_axolotl_positions_point_into_the_original_file():
    _plan, found = run("""
        base_model: test
        adapter: lora
        lora_r: 8
        lora_alpha: 16
        lora_target_modules:
          - q_proj
          - v_porj
    """, dialect="axolotl")
    assert ("LP502", "warning", 7, 5) in found  # Axolotl runs it (PEFT is silent): compiler/axolotl.py


@pytest.mark.parametrize("arch_name", ["tiny:llama", "mistralai/Mixtral-8x7B-v0.1"])
def test_without_source_diagnostics_have_no_position(arch_name):
    from loraplan.schema.config import Config

    config = Config.model_validate({"base_model": "x", "lora": {"target_modules": ["q_proj", "v_porj"]}})
    plan = compile_plan(config, arch(arch_name))
    assert plan.diagnostics and all(d.line is None and d.file is None for d in plan.diagnostics)


def test_conversion_meets_options_parameter_adapters_refuse():
    plan, _ = run("""
        base_model: test
        lora:
          target_modules: all-linear
          lora_dropout: 0.05
    """, "mistralai/Mixtral-8x7B-v0.1")
    d = only(plan, "LP505")
    assert (d.line, d.column) == (4, 3) and "do not support lora_dropout 0.05" in d.message
    assert "conversion" in d.hint and "LP506" in d.hint


def test_regex_that_matches_nothing_shows_real_names():
    plan, found = run("""
        base_model: test
        lora:
          target_modules: .*\\.qproj
    """)
    assert found == [("LP502", "error", 3, 19)]
    assert plan.diagnostics[0].hint == ("module names look like `model.layers.0.self_attn.q_proj`, "
                                        "`model.layers.0.self_attn.k_proj`")


def test_all_linear_condensing_is_not_reported_when_it_changes_nothing():
    plan, _ = run("""
        base_model: test
        lora:
          target_modules: all-linear
    """, arch_name="meta-llama/Llama-3.2-1B")
    assert len(plan.injections) == 112  # 16 layers x 7: PEFT condenses them, selecting the same set
    assert not [d for d in plan.diagnostics if d.code == "LP509"]

