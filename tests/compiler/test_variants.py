"""Architecture variants: Axolotl's linearized Llama-4 experts, from the catalog and from the config key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from loraplan.compiler.catalog import load_catalog_architecture, lookup
from loraplan.compiler.catalog.regenerate import read_variant
from loraplan.compiler.compile import check_loaded, compile_plan
from loraplan.compiler.variants import LLAMA4_LINEARIZED, VariantError, apply_variant, linearize_llama4_experts
from loraplan.schema.load import load_file, load_text

SCOUT = "meta-llama/Llama-4-Scout-17B-16E-Instruct"
SCOUT_LINEARIZED = "axolotl-quants/Llama-4-Scout-17B-16E-Linearized-bnb-nf4-bf16"
MAVERICK_LINEARIZED = "axolotl-quants/Llama-4-Maverick-17B-128E-Linearized-bnb-nf4-bf16"
CORPUS = Path(__file__).resolve().parents[1] / "schema" / "data" / "axolotl-examples" / "llama-4"


def test_linearized_scout_has_one_linear_per_expert_and_projection():
    fused = load_catalog_architecture(SCOUT)
    arch = linearize_llama4_experts(fused)
    assert arch.total_params == fused.total_params == 108_641_793_536
    layer = "language_model.model.layers.7.feed_forward.experts"
    assert fused.module(layer).kind == "other" and arch.module(layer).kind == "container"
    for group, fan_in, fan_out in (("gate_projs", 5120, 8192), ("up_projs", 5120, 8192), ("down_projs", 8192, 5120)):
        assert arch.module(f"{layer}.{group}").cls == "ModuleList"
        for i in (0, 15):
            m = arch.module(f"{layer}.{group}.{i}")
            assert (m.kind, m.in_features, m.out_features, m.bias, m.layer) == ("linear", fan_in, fan_out, False, 7)
        assert arch.module(f"{layer}.{group}.16") is None
    assert not any(p.name.endswith(("gate_up_proj", "experts.down_proj")) for p in arch.parameters)
    unchanged = [m for m in fused.modules if ".experts" not in m.name]
    assert [m for m in arch.modules if ".experts" not in m.name] == unchanged  # router, shared expert, vision tower
    assert arch.fingerprint != fused.fingerprint and arch.config_attrs["variant"] == LLAMA4_LINEARIZED


def test_apply_variant_is_idempotent_and_refuses_other_models():
    arch = apply_variant(load_catalog_architecture(SCOUT), LLAMA4_LINEARIZED)
    assert apply_variant(arch, LLAMA4_LINEARIZED) is arch
    with pytest.raises(VariantError, match="no fused Llama-4 experts"):
        apply_variant(load_catalog_architecture("meta-llama/Llama-3.2-1B"), LLAMA4_LINEARIZED)
    with pytest.raises(VariantError, match="unknown architecture variant"):
        apply_variant(arch, "something-else")
    # a live model Axolotl already patched carries no marker, only the linear experts
    unmarked = dataclasses.replace(arch, config_attrs={k: v for k, v in arch.config_attrs.items() if k != "variant"})
    assert apply_variant(unmarked, LLAMA4_LINEARIZED).modules == arch.modules


def test_variant_files_are_read_strictly():
    assert read_variant({"model_type": "llama"}) is None
    spec = {"loraplan_variant": {"base": "x.json", "variant": LLAMA4_LINEARIZED}}
    assert read_variant(spec) == {"base": "x.json", "variant": LLAMA4_LINEARIZED}
    for bad in ({"base": "x.json"}, {"base": 3, "variant": LLAMA4_LINEARIZED}, {"variant": "linearized"}, "x"):
        with pytest.raises(ValueError, match="loraplan_variant needs"):
            read_variant({"loraplan_variant": bad})


def test_catalog_variants_resolve_to_the_linearized_tree():
    scout = lookup(SCOUT_LINEARIZED)
    assert scout.variant == LLAMA4_LINEARIZED and scout.base_config == lookup(SCOUT).config_file
    assert scout.hf_config_path == lookup(SCOUT).config_path
    arch = load_catalog_architecture(scout)
    assert arch.module("language_model.model.layers.0.feed_forward.experts.down_projs.3").in_features == 8192
    maverick = load_catalog_architecture(MAVERICK_LINEARIZED)
    moe = {m.layer for m in maverick.modules if m.name.endswith(".experts.gate_projs.127")}
    assert moe == set(range(1, 48, 2))  # interleave_moe_layer_step 2: dense layers keep their MLP
    assert maverick.module("language_model.model.layers.0.feed_forward.gate_proj").kind == "linear"


def test_axolotl_key_linearizes_a_plain_llama4_base():
    text = (
        f"base_model: {SCOUT}\nadapter: lora\nllama4_linearized_experts: true\nlora_r: 8\nlora_alpha: 16\n"
        "lora_target_modules: '.*\\.experts\\.gate_projs\\.[0-9]+'\n"
    )
    result = load_text(text, file="scout.yaml", dialect="axolotl")
    assert result.config.architecture_variant == LLAMA4_LINEARIZED
    plan, diags = check_loaded(result)
    assert not [d for d in diags if d.severity == "error"], diags
    adapted = {i.module for i in plan.injections}
    assert "language_model.model.layers.47.feed_forward.experts.gate_projs.15" in adapted
    assert len(adapted) == 48 * 16
    without = load_text(text.replace("llama4_linearized_experts: true\n", ""), file="s.yaml", dialect="axolotl")
    _, diags2 = check_loaded(without)
    assert any(d.code == "LP502" for d in diags2)  # the pattern matches nothing on the fused layout


def test_variant_on_a_model_without_llama4_experts_is_a_located_error():
    text = "base_model: meta-llama/Llama-3.2-1B\nllama4_linearized_experts: true\nlora_r: 8\nadapter: lora\n"
    result = load_text(text, file="bad.yaml", dialect="axolotl")
    plan, diags = check_loaded(result)
    assert plan is None
    (diag,) = diags
    assert diag.code == "LP512" and "does not apply" in diag.message
    assert (diag.file, diag.line) == ("bad.yaml", 2)


@pytest.mark.parametrize("value", ["maybe", "2", "[true]"])
def test_a_non_boolean_linearized_experts_flag_is_a_located_type_error(value):
    text = f"base_model: {SCOUT}\nadapter: lora\nlora_r: 8\nlora_alpha: 16\nlora_target_linear: true\n" \
           f"llama4_linearized_experts: {value}\n"
    result = load_text(text, file="flag.yaml", dialect="axolotl")
    (diag,) = result.diagnostics
    assert diag.code == "LP203" and diag.severity == "error" and "true or false" in diag.message
    assert (diag.file, diag.line, diag.column) == ("flag.yaml", 6, 28)


@pytest.mark.parametrize("value", ["false", "no", "0"])
def test_a_false_linearized_experts_flag_keeps_the_fused_layout(value):
    text = f"base_model: {SCOUT}\nadapter: lora\nlora_r: 8\nlora_alpha: 16\nlora_target_linear: true\n" \
           f"llama4_linearized_experts: {value}\n"
    result = load_text(text, file="flag.yaml", dialect="axolotl")
    assert not result.diagnostics
    assert result.config is not None and result.config.architecture_variant is None


def test_native_config_and_live_architecture_take_the_variant():
    config = load_text(f"base_model: {SCOUT}\narchitecture_variant: {LLAMA4_LINEARIZED}\nlora:\n  r: 4\n"
                       "  target_modules: ['down_projs.0']\n").config
    plan = compile_plan(config, load_catalog_architecture(SCOUT))
    assert len(plan.injections) == 48
    bad = load_text("base_model: x\narchitecture_variant: linearized\nlora: {r: 4}\n")
    assert bad.config is None and bad.diagnostics[0].line == 2


@pytest.mark.parametrize("path", sorted(CORPUS.rglob("*.yaml")), ids=lambda p: p.name)
def test_axolotl_llama4_examples_plan_cleanly(path):
    result = load_file(path)
    plan, diags = check_loaded(result)
    assert plan is not None, diags
    assert not [d for d in diags if d.severity == "error"], diags
    assert plan.totals.trainable_params > 0
