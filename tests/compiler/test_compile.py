"""compile_plan: inputs it accepts, what each Injection says, totals, peft_config, check_loaded."""

from __future__ import annotations

import json
import math

import pytest
import torch
from peft_oracle import architecture, hf_factory, lora_config, oracle, plan_outcome
from torch import nn
from transformers.pytorch_utils import Conv1D

import loraplan
from loraplan.compiler.architecture import Architecture
from loraplan.compiler.compile import check_loaded, compile_plan, peft_config
from loraplan.compiler.counting import module_adapter, param_adapter
from loraplan.compiler.sources.from_module import from_module
from loraplan.schema.config import Config
from loraplan.schema.load import load_text

LLAMA = hf_factory("llama")


def cfg(**lora) -> Config:
    return Config.model_validate({"base_model": "test", "lora": {"r": 4, "lora_alpha": 8, **lora}})


@pytest.fixture(scope="module")
def llama() -> Architecture:
    return architecture(LLAMA)


class Zoo(nn.Module):
    """One module of every kind PEFT's LoRA wraps, with sizes that make mistakes visible."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(11, 6)
        self.lin = nn.Linear(6, 10, bias=True)
        self.gpt = Conv1D(14, 6)  # weight (6, 14): in 6, out 14
        self.conv = nn.Conv2d(6, 8, kernel_size=3, groups=2, bias=True)
        self.conv1 = nn.Conv1d(6, 6, kernel_size=5)
        self.mha = nn.MultiheadAttention(6, 2)
        self.norm = nn.LayerNorm(6)


def zoo() -> nn.Module:
    with torch.device("meta"):
        return Zoo()


# --- inputs ------------------------------------------------------------------------------------------


def test_accepts_architecture_module_and_catalog_name(llama):
    by_arch = compile_plan(cfg(target_modules=["q_proj"]), llama)
    by_module = compile_plan(cfg(target_modules=["q_proj"]), LLAMA())
    assert [i.module for i in by_arch.injections] == [i.module for i in by_module.injections]
    assert by_arch.architecture_fingerprint == by_module.architecture_fingerprint
    catalog = compile_plan(cfg(target_modules=["q_proj"]), "openai-community/gpt2")
    assert catalog.model_class == "GPT2LMHeadModel" and catalog.injections == []
    named = compile_plan(Config.model_validate({"base_model": "openai-community/gpt2",
                                                "lora": {"target_modules": ["c_attn"]}}))
    assert len(named.injections) == 12 and named.architecture == "openai-community/gpt2"


def test_public_api_compile(llama):
    plan = loraplan.compile(cfg(target_modules="all-linear"), llama)
    assert len(plan.injections) == 3 * 7


def test_unresolvable_architecture_raises_resolve_error():
    with pytest.raises(loraplan.ResolveError) as err:
        compile_plan(Config.model_validate({"base_model": "no-such/model-xyz", "lora": {}}))
    assert err.value.diagnostics and err.value.diagnostics[0].code == "LP501"


# --- injections --------------------------------------------------------------------------------------


def test_linear_injection_fields(llama):
    plan = compile_plan(cfg(target_modules=["q_proj", "k_proj"], lora_dropout=0.05,
                            rank_pattern={"k_proj": 2}, alpha_pattern={r"layers\.1\..*": 3}), llama)
    q0, k0 = plan.injections[0], plan.injections[1]
    assert (q0.module, q0.kind, q0.in_features, q0.out_features) == ("model.layers.0.self_attn.q_proj", "linear",
                                                                      32, 32)
    assert (q0.r, q0.lora_alpha, q0.scaling, q0.dropout, q0.init) == (4, 8, 2.0, 0.05, True)
    assert q0.params == 4 * 32 + 32 * 4 and q0.layer == 0 and q0.matched_by == ["q_proj"]
    assert (k0.out_features, k0.r, k0.rank_pattern, k0.scaling) == (16, 2, "k_proj", 4.0)
    assert k0.params == 2 * 32 + 16 * 2
    q1 = next(i for i in plan.injections if i.module == "model.layers.1.self_attn.q_proj")
    assert (q1.lora_alpha, q1.alpha_pattern, q1.scaling, q1.layer) == (3, r"layers\.1\..*", 0.75, 1)


def test_rslora_scaling(llama):
    plan = compile_plan(cfg(target_modules=["q_proj"], r=16, lora_alpha=8, use_rslora=True), llama)
    assert plan.injections[0].scaling == pytest.approx(8 / math.sqrt(16))


@pytest.mark.parametrize(
    ("lora", "expected"),
    [
        # name: (in, out, params) for r=4
        ({}, {"emb": (11, 6, 4 * 11 + 6 * 4), "lin": (6, 10, 4 * 6 + 10 * 4), "gpt": (6, 14, 4 * 6 + 14 * 4),
              "conv": (6, 8, 4 * 6 * 9 + 8 * 2), "conv1": (6, 6, 4 * 6 * 5 + 6 * 4),
              "mha": (6, 18, 4 * 6 + 18 * 4 + 4 * 6 + 6 * 4)}),
        ({"use_dora": True}, {"emb": (11, 6, 68 + 6), "lin": (6, 10, 64 + 10), "conv": (6, 8, 232 + 8)}),
        ({"lora_bias": True}, {"lin": (6, 10, 64 + 10), "gpt": (6, 14, 80 + 14), "conv": (6, 8, 232 + 8),
                               "mha": (6, 18, 144 + 18 + 6)}),
    ],
)
def test_every_module_kind_like_peft(lora, expected):
    config = cfg(target_modules=list(expected), **lora)
    plan = compile_plan(config, zoo())
    got = {i.module: (i.in_features, i.out_features, i.params) for i in plan.injections}
    assert got == expected
    ours, theirs = plan_outcome(plan), oracle(zoo, config)
    assert theirs.error is None and (ours.trainable, ours.total) == (theirs.trainable, theirs.total)


def test_refusals_of_module_kinds():
    plan = compile_plan(cfg(target_modules=["mha", "emb", "norm"], use_dora=True), zoo())
    errors = sorted(d.message for d in plan.diagnostics if d.severity == "error")
    assert any("DoRA is not supported on MultiheadAttention" in m for m in errors)
    assert any("LayerNorm" in m for m in errors)
    assert oracle(zoo, cfg(target_modules=["mha"], use_dora=True)).error is not None


class Odd(nn.Module):
    def __init__(self):
        super().__init__()
        self.mha = nn.MultiheadAttention(8, 2, kdim=4, vdim=4)
        self.conv = nn.Conv2d(4, 4, 3)
        self.lin = nn.Linear(4, 4)


@pytest.mark.parametrize(
    ("lora", "message"),
    [
        ({"target_modules": ["mha"]}, "equal query/key/value dims"),
        ({"target_modules": ["conv", "lin"], "init_lora_weights": "mica"}, "MiCA init is not supported on Conv2d"),
        ({"target_modules": ["lin"], "target_parameters": ["conv.weight"], "init_lora_weights": "mica"},
         "parameter adapters do not support MiCA init"),
    ],
)
def test_refusals_like_peft(lora, message):
    plan = compile_plan(cfg(**lora), Odd())
    assert any(message in d.message for d in plan.diagnostics if d.severity == "error")
    assert oracle(Odd, cfg(**lora)).error is not None


def test_param_adapter_shapes():
    assert param_adapter((8, 128, 32), 4) == param_adapter((8, 128, 32), 4, transposed=True).__class__(
        32, 128, 4 * 8 * 160, 4 * 8 * 160)
    assert param_adapter((8, 128, 32), 4, transposed=True).in_features == 128
    assert param_adapter((10, 6), 2).total == 2 * 16 and param_adapter((10, 6), 2).in_features == 6
    assert param_adapter((3,), 2).total == 0


def test_mica_freezes_b_like_peft():
    factory = hf_factory("llama", device="cpu")
    config = cfg(target_modules=["q_proj", "embed_tokens"], init_lora_weights="mica")
    plan = compile_plan(config, architecture(factory))
    ours, theirs = plan_outcome(plan), oracle(factory, config)
    assert theirs.error is None
    assert (ours.trainable, ours.total) == (theirs.trainable, theirs.total)
    q = plan.injections[-1]
    assert q.params == 4 * 32  # A only
    m = module_adapter(architecture(factory).module("model.embed_tokens"), 4, lora_bias=False, use_dora=False,
                       mica=True)
    assert (m.total, m.trainable) == (4 * 64 + 32 * 4, 4 * 64)


def test_parameters_of_fused_experts():
    factory = hf_factory("mixtral")
    plan = compile_plan(cfg(target_modules=[], target_parameters=["experts.gate_up_proj"], r=2), factory())
    p = plan.parameters[0]
    assert (p.module, p.kind) == ("model.layers.0.mlp.experts.gate_up_proj", "parameter")
    assert (p.in_features, p.out_features, p.r) == (32, 96, 2)  # (experts, 2*I, H): in H, out 2I
    assert p.params == 2 * 4 * (32 + 96) and p.matched_by == ["experts.gate_up_proj"]


def test_moe_conversion_doubles_rank_and_names_old_entries():
    plan = compile_plan(cfg(target_modules=["w1", "w3", "w2"], r=4, lora_alpha=8), hf_factory("mixtral")())
    gate_up = [p for p in plan.parameters if p.module.endswith("gate_up_proj")]
    down = [p for p in plan.parameters if p.module.endswith("down_proj")]
    assert gate_up and all((p.r, p.lora_alpha, p.matched_by) == (8, 16, ["w1", "w3"]) for p in gate_up)
    assert down and all((p.r, p.lora_alpha, p.matched_by) == (4, 8, ["w2"]) for p in down)
    assert {c.pattern: c.modules for c in plan.coverage} == {"w1": 2, "w3": 2, "w2": 2}


# --- totals ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bias", ["none", "all", "lora_only"])
def test_bias_modes_like_peft(bias):
    factory = hf_factory("gpt2")
    config = cfg(target_modules=["c_attn"], bias=bias)
    plan = compile_plan(config, architecture(factory))
    theirs = oracle(factory, config)
    assert plan.totals.trainable_params == theirs.trainable
    biases = {"none": 0, "lora_only": 3 * 96, "all": None}[bias]
    if biases is not None:
        assert plan.totals.bias_params == biases
    else:  # every *.bias of GPT-2: ln_1, c_attn, c_proj, ln_2, c_fc, c_proj per block, and ln_f
        assert plan.totals.bias_params == 3 * (32 + 96 + 32 + 32 + 128 + 32) + 32
    assert plan.totals.adapter_params + plan.totals.bias_params == plan.totals.trainable_params


def test_modules_to_save_copies_count(llama):
    plan = compile_plan(cfg(target_modules=["q_proj"], modules_to_save=["lm_head", "model.norm"]), llama)
    assert plan.modules_to_save == ["model.norm", "lm_head"]
    assert plan.totals.modules_to_save_params == 64 * 32 + 32
    assert plan.totals.total_params == llama.total_params + plan.totals.adapter_params + 64 * 32 + 32
    theirs = oracle(LLAMA, cfg(target_modules=["q_proj"], modules_to_save=["lm_head", "model.norm"]))
    assert (plan.totals.trainable_params, plan.totals.total_params) == (theirs.trainable, theirs.total)
    assert plan.totals.trainable_percent == pytest.approx(100 * theirs.trainable / theirs.total)


# --- peft_config ---------------------------------------------------------------------------------------


def test_peft_config_is_the_users_settings_and_builds_a_loraconfig():
    config = cfg(target_modules=["q_proj", "v_proj"], lora_alpha=16, rank_pattern={"q_proj": 8},
                 alpha_pattern={"v_proj": 4}, use_dora=True)
    kwargs = peft_config(config)
    assert kwargs["target_modules"] == ["q_proj", "v_proj"] and kwargs["lora_alpha"] == 16
    assert kwargs["rank_pattern"] == {"q_proj": 8} and kwargs["alpha_pattern"] == {"v_proj": 4}
    assert isinstance(kwargs["lora_alpha"], int) and kwargs["use_dora"] is True
    assert json.loads(json.dumps(kwargs)) == kwargs
    lc = lora_config(config)
    assert lc.r == 4 and lc.target_modules == {"q_proj", "v_proj"}


# --- check_loaded -----------------------------------------------------------------------------------------


def _load(text: str):
    return load_text(text, "cfg.yaml")


def test_check_loaded_compiles_catalog_configs_offline():
    result = _load("base_model: openai-community/gpt2\nlora:\n  target_modules: [c_attn, c_atn]\n")
    plan, diags = check_loaded(result)
    assert plan is not None and len(plan.injections) == 12
    assert [(d.code, d.line) for d in diags if d.severity == "error"] == [("LP502", 3)]


def test_check_loaded_says_when_targets_are_not_checked():
    plan, diags = check_loaded(_load("base_model: some-org/unknown-model\nlora:\n  r: 8\n"))
    assert plan is None
    assert [(d.code, d.severity, d.line, d.column) for d in diags] == [("LP520", "warning", 1, 13)]
    assert "targets not checked" in diags[0].message and "--online" in diags[0].hint
    assert check_loaded(_load("base_model: [oops]\n")) == (None, [])  # no config: the schema errors say it


def test_check_loaded_reports_resolve_errors_located():
    result = _load("base_model: some-org/unknown-model\nlora:\n  r: 8\n")
    plan, diags = check_loaded(result, offline_only=False)
    assert plan is None and diags and diags[0].code == "LP501" and diags[0].file == "cfg.yaml"
    assert diags[0].line == 1


def test_check_loaded_never_raises_on_internal_errors(monkeypatch):
    import loraplan.compiler.compile as compile_module

    def boom(*args, **kwargs):
        raise RuntimeError("bug")

    monkeypatch.setattr(compile_module, "resolve_targets", boom)
    plan, diags = check_loaded(_load("base_model: openai-community/gpt2\nlora:\n  r: 8\n"))
    assert plan is None and diags[0].code == "LP512" and "RuntimeError: bug" in diags[0].message


def test_from_module_of_a_custom_model_is_planned_like_peft():
    config = cfg(target_modules="all-linear")
    plan = compile_plan(config, from_module(zoo()))
    ours, theirs = plan_outcome(plan), oracle(zoo, config)
    assert ours.modules == theirs.modules == ["lin", "gpt", "mha.out_proj"]
    assert (ours.trainable, ours.total) == (theirs.trainable, theirs.total)


def test_transposed_fused_experts_are_oriented_as_peft_does():
    """gpt-oss stores experts transposed (is_transposed): gate_up_proj is (E, hidden, 2 x ffn)."""
    from loraplan.compiler.compile import compile_plan
    from loraplan.schema.load import load_text

    result = load_text(
        "base_model: openai/gpt-oss-20b\nlora:\n  r: 8\n  target_modules: [q_proj]\n"
        "  target_parameters: [mlp.experts.gate_up_proj]\n",
        "cfg.yaml",
    )
    plan = compile_plan(result.config, source=result.source)
    first = plan.parameters[0]
    assert first.module == "model.layers.0.mlp.experts.gate_up_proj"
    assert (first.in_features, first.out_features) == (2880, 5760)
    assert first.params == 8 * (2880 + 5760) * 32  # r x (in + out) for each of the 32 experts
