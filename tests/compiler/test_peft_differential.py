"""Differential tests: the plan against PEFT itself (`get_peft_model` on the same model, meta device).

For every case the adapted module names (in PEFT's order), the adapted parameter names and
`get_nb_trainable_parameters()` (trainable and total) must be identical; where PEFT refuses the
config, the plan must carry an error, and where PEFT accepts it, the plan must not claim a refusal.
Per-module r, scaling, in/out features and adapter sizes are checked against the LoRA layers too.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import yaml
from peft_oracle import Outcome, architecture, hf_factory, lora_config, oracle, plan_outcome
from random_arch import random_lora, random_model

from loraplan.compiler.compile import compile_plan
from loraplan.compiler.sources.from_module import from_module
from loraplan.schema.load import load_text

REFUSAL_CODES = {"LP505", "LP506", "LP510", "LP515"}
VLM = dict(
    auto="AutoModelForImageTextToText",
    text_config=dict(model_type="llama", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, vocab_size=64),
    vision_config=dict(model_type="clip_vision_model", hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                       num_attention_heads=2, image_size=28, patch_size=14, projection_dim=16),
    image_token_index=63,
)


def config_of(lora: dict[str, Any]):
    result = load_text(yaml.safe_dump({"base_model": "test", "lora": {"r": 4, "lora_alpha": 8, **lora}}))
    assert result.config is not None, result.diagnostics
    return result.config


def compare(plan, expected: Outcome) -> None:
    got = plan_outcome(plan)
    refusals = {d.code for d in plan.diagnostics if d.severity == "error"} & REFUSAL_CODES
    if expected.error is not None:
        assert got.error, f"PEFT raised {expected.error!r} but the plan has no error"
        return
    assert not refusals, f"PEFT accepted the config but the plan says it refuses: {got.error}"
    assert got.modules == expected.modules
    assert got.parameters == expected.parameters
    assert (got.trainable, got.total) == (expected.trainable, expected.total)


def check_layers(plan, factory, config) -> None:
    """Each planned injection equals PEFT's LoRA layer: r, scaling, in/out, adapter parameter count."""
    from peft import get_peft_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = get_peft_model(factory(), lora_config(config)).base_model.model
    for inj in plan.injections:
        layer = model.get_submodule(inj.module)
        assert layer.r["default"] == inj.r, inj.module
        assert layer.scaling["default"] == pytest.approx(inj.scaling), inj.module
        assert (layer.in_features, layer.out_features) == (inj.in_features, inj.out_features), inj.module
        own = sum(p.numel() for n, p in layer.named_parameters() if "lora_" in n and p.requires_grad)
        assert own == inj.params, inj.module
    planned = {p.module: p for p in plan.parameters}
    for name, layer in model.named_modules():
        if type(layer).__name__ != "ParamWrapper":
            continue
        inj = planned.pop(f"{name.replace('.base_layer', '')}.{layer.parameter_name}")
        assert (layer.r["default"], layer.scaling["default"]) == (inj.r, pytest.approx(inj.scaling)), inj.module
        assert (layer.in_features, layer.out_features) == (inj.in_features, inj.out_features), inj.module
        own = sum(p.numel() for p in (*layer.lora_A["default"].parameters(), *layer.lora_B["default"].parameters()))
        assert own == inj.params, inj.module
    assert not planned


def run_case(factory, lora: dict[str, Any], arch=None, layers: bool = False) -> None:
    config = config_of(lora)
    plan = compile_plan(config, arch or architecture(factory))
    compare(plan, oracle(factory, config))
    if layers and not plan_outcome(plan).error:
        check_layers(plan, factory, config)


def generic_configs(arch) -> list[dict[str, Any]]:
    """Config shapes every architecture gets, built from its own module names."""
    linear = [m.name for m in arch.modules if m.kind in ("linear", "conv1d_gpt2")]
    leaves = list(dict.fromkeys(n.rsplit(".", 1)[-1] for n in linear))
    a, b = leaves[0], leaves[min(1, len(leaves) - 1)]
    tail = ".".join(linear[0].split(".")[-2:])
    stack = (arch.main_stack or "layers").rsplit(".", 1)[-1]
    last = max(arch.num_layers - 1, 0)
    return [
        {"target_modules": "all-linear"},
        {"target_modules": [a, b]},
        {"target_modules": [tail, linear[-1]]},
        {"target_modules": leaves, "layers_to_transform": [0, last], "layers_pattern": stack},
        {"target_modules": leaves[:3], "layers_to_transform": last},
        {"target_modules": rf".*\.({a}|{b})"},
        {"target_modules": "all-linear", "exclude_modules": [a], "rank_pattern": {b: 2}, "alpha_pattern": {b: 3},
         "use_rslora": True},
        {"target_modules": leaves[:3], "use_dora": True, "bias": "all", "lora_dropout": 0.1},
        {"target_modules": leaves[:3], "lora_bias": True, "bias": "lora_only"},
        {"target_modules": [a], "modules_to_save": [arch.output_embedding or linear[-1]], "init_lora_weights": False},
        {},
    ]


HF_ARCHS = {
    "llama": hf_factory("llama"),
    "gpt2": hf_factory("gpt2"),
    "mixtral": hf_factory("mixtral"),
    "qwen3_moe": hf_factory("qwen3_moe"),
    "qwen2_moe": hf_factory("qwen2_moe"),
    "deepseek_v3": hf_factory("deepseek_v3"),
    "gpt_oss": hf_factory("gpt_oss"),
    "t5": hf_factory("t5"),
    "bert": hf_factory("bert"),
    "jamba": hf_factory("jamba"),
    "falcon_h1": hf_factory("falcon_h1"),
    "phi3": hf_factory("phi3"),
    "llava": hf_factory("llava", **VLM),
}

SPECIFIC: dict[str, list[dict[str, Any]]] = {
    "llama": [
        {"target_modules": ["q_proj", "model.layers.0.self_attn.v_proj"], "layers_to_transform": [1]},
        {"target_modules": ["q_proj", "v_porj"]},
        {"target_modules": ["embed_tokens", "lm_head", "q_proj"], "use_dora": True},
        {"target_modules": ["q_proj"], "target_parameters": ["mlp.gate_proj.weight"]},
        {"target_modules": ["q_proj"], "modules_to_save": ["head"]},  # plain-suffix wrap of lm_head
        {"target_modules": ["lm_head"], "modules_to_save": ["lm_head"]},
        {"target_modules": ["q_proj", "v_proj"], "rank_pattern": {"q_proj": 2, "layers.1.self_attn.q_proj": 7},
         "alpha_pattern": {r"layers\.[01]\..*": 5}},
        {"target_modules": [f"model.layers.{i}.{p}" for i in range(3) for p in (
            "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
            "mlp.up_proj", "mlp.down_proj")] + ["lm_head"], "layers_to_transform": [1]},  # 20+ names: condensed
        {"target_modules": [f"model.layers.{i}.self_attn.{p}" for i in range(3) for p in ("q_proj", "k_proj",
                                                                                        "v_proj", "o_proj")]
         + ["gate_proj"], "layers_to_transform": [1]},  # fewer than 20 full names: they skip the filter
        {"target_modules": "all-linear", "task_type": "CAUSAL_LM", "init_lora_weights": "gaussian"},
        {"target_modules": ["self_attn"]},
    ],
    "gpt2": [
        {"target_modules": ["c_attn", "c_proj"], "lora_bias": True, "fan_in_fan_out": True},
        {"target_modules": ["c_attn", "lm_head"]},
        {"target_modules": ["wte"], "use_dora": True},
        {"modules_to_save": ["attn"], "target_modules": ["c_fc"]},  # nested modules_to_save wraps
    ],
    "mixtral": [
        {"target_modules": ["w1", "w2", "w3", "q_proj"]},
        {"target_modules": ["w1", "w2"]},
        {"target_modules": ["w1", "w3"], "rank_pattern": {"gate_up_proj": 6}},
        {"target_modules": [], "target_parameters": ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"]},
        {"target_modules": ["q_proj"], "target_parameters": ["experts.down_proj"], "layers_to_transform": [0]},
        {"target_modules": ["experts"]},
        {"target_modules": r".*\.(q_proj|w1|w3)"},
    ],
    "qwen3_moe": [
        {"target_modules": ["gate_proj", "up_proj", "down_proj"]},
        {"target_modules": ["gate_proj"]},
        {"target_modules": r".*(gate|up|down)_proj"},
        {"target_modules": "all-linear", "target_parameters": ["experts.down_proj"]},
    ],
    "qwen2_moe": [
        {"target_modules": ["gate_proj", "up_proj", "down_proj"]},
        {"target_modules": ["shared_expert.gate_proj"]},
        {"target_modules": [], "target_parameters": ["experts.gate_up_proj"]},
    ],
    "deepseek_v3": [
        {"target_modules": ["gate_proj", "up_proj", "down_proj", "q_a_proj"]},
        {"target_modules": ["q_a_proj"], "target_parameters": ["shared_experts.gate_proj.weight"]},
    ],
    "gpt_oss": [
        {"target_modules": ["q_proj"], "target_parameters": ["experts.gate_up_proj", "experts.down_proj"]},
        {"target_modules": ["q_proj", "gate_proj"]},
        {"target_modules": ["router"]},
    ],
    "t5": [
        {"target_modules": ["q", "v"], "layers_to_transform": [1], "layers_pattern": "block"},
        {"target_modules": ["wo"], "modules_to_save": ["lm_head"], "bias": "all"},
        {"target_modules": ["shared"]},
    ],
    "bert": [
        {"target_modules": ["query", "value"], "task_type": "SEQ_CLS"},
        {"target_modules": "all-linear", "task_type": "SEQ_CLS", "bias": "all"},
        {"target_modules": ["query"], "task_type": "TOKEN_CLS", "modules_to_save": ["pooler"]},
        {"target_modules": ["classifier"], "task_type": "SEQ_CLS"},
    ],
    "jamba": [
        {"target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"]},
        {"target_modules": ["in_proj", "x_proj", "out_proj", "q_proj"]},
        {"target_modules": ["conv1d"], "r": 4},
    ],
    "falcon_h1": [
        {"target_modules": ["in_proj", "q_proj"]},
        {"target_modules": ["out_proj"]},
    ],
    "phi3": [
        {"target_modules": ["q_proj", "v_proj"]},
        {"target_modules": ["qkv_proj", "gate_up_proj"]},
    ],
    "llava": [
        {"target_modules": r".*language_model.*\.(q_proj|v_proj)"},
        {"target_modules": ["q_proj"], "layers_to_transform": [1]},
        {"target_modules": ["linear_1", "linear_2"], "modules_to_save": ["multi_modal_projector"]},
    ],
}

CASES = [(name, lora) for name in HF_ARCHS for lora in SPECIFIC.get(name, [])]


@pytest.fixture(scope="module")
def archs() -> dict[str, Any]:
    return {name: architecture(factory) for name, factory in HF_ARCHS.items()}


@pytest.mark.parametrize("name", list(HF_ARCHS))
def test_generic_configs(name, archs):
    arch = archs[name]
    for lora in generic_configs(arch):
        run_case(HF_ARCHS[name], lora, arch, layers=True)


@pytest.mark.parametrize(("name", "lora"), CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_specific_configs(name, lora, archs):
    run_case(HF_ARCHS[name], lora, archs[name], layers=True)


@pytest.mark.parametrize("seed", range(120))
def test_random_models(seed):
    model, facts = random_model(seed)
    arch = from_module(model)
    lora = random_lora(seed, [(m.name, m.kind) for m in arch.modules], facts)
    result = load_text(yaml.safe_dump({"base_model": "custom", "lora": lora}))
    if not result.ok:  # the schema refuses it before PEFT would see it
        assert any(d.severity == "error" for d in result.diagnostics)
        return
    plan = compile_plan(result.config, arch)
    compare(plan, oracle(lambda: random_model(seed)[0], result.config))


@pytest.mark.parametrize("seed", range(12))
def test_random_configs_on_hf_archs(seed, archs):
    """Random config shapes drawn from each tiny transformers model's own module names."""
    for name, factory in HF_ARCHS.items():
        arch = archs[name]
        facts = {"n_layers": arch.num_layers, "stack": (arch.main_stack or "layers").rsplit(".", 1)[-1]}
        lora = random_lora(seed, [(m.name, m.kind) for m in arch.modules], facts)
        if seed % 3 == 0:
            lora["task_type"] = {"bert": "SEQ_CLS", "t5": "SEQ_2_SEQ_LM"}.get(name, "CAUSAL_LM")
        result = load_text(yaml.safe_dump({"base_model": name, "lora": lora}))
        if result.ok:
            compare(compile_plan(result.config, arch), oracle(factory, result.config))


def _catalog():
    from loraplan.compiler.catalog import list_catalog

    return list_catalog()


def catalog_configs(arch, index: int) -> list[dict[str, Any]]:
    """all-linear, plus one of several other shapes (rotating over the catalog to bound the run time)."""
    linear = [m.name for m in arch.modules if m.kind in ("linear", "conv1d_gpt2")]
    leaves = list(dict.fromkeys(n.rsplit(".", 1)[-1] for n in linear))
    a, b = leaves[0], leaves[min(1, len(leaves) - 1)]
    stack = (arch.main_stack or "layers").rsplit(".", 1)[-1]
    shapes = [
        {"target_modules": leaves[:4], "use_dora": True, "rank_pattern": {a: 2}},
        {"target_modules": rf".*\.({a}|{b})", "alpha_pattern": {b: 3}, "use_rslora": True},
        {"target_modules": leaves, "layers_to_transform": [0, max(arch.num_layers - 1, 0)], "layers_pattern": stack,
         "exclude_modules": [b]},
        {"target_modules": [a, b], "bias": "all", "modules_to_save": [arch.output_embedding or linear[-1]]},
        {"target_modules": [], "target_parameters": ["experts.gate_up_proj", "experts.down_proj", "experts.up_proj"]}
        if any(len(p.shape) == 3 for p in arch.parameters) else {"target_modules": leaves[-2:], "lora_bias": True},
    ]
    return [{"target_modules": "all-linear"}, shapes[index % len(shapes)]]


CATALOG = _catalog()


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(CATALOG)), ids=[e.name for e in CATALOG])
def test_catalog_architectures(index):
    """Every bundled architecture, planned from its manifest (no torch), against PEFT on the real class."""
    import json

    from loraplan.compiler.catalog import load_catalog_architecture
    from loraplan.compiler.sources.from_config import build_model

    entry = CATALOG[index]
    arch = load_catalog_architecture(entry)
    data = json.loads(entry.hf_config_path.read_text(encoding="utf-8"))

    def factory():
        model = build_model(data, entry.model_class)[0]
        return patch_like_axolotl(model) if entry.variant else model

    for lora in catalog_configs(arch, index):
        config = config_of(lora)
        plan = compile_plan(config, arch)
        compare(plan, oracle(factory, config, low_cpu_mem_usage=True))


def patch_like_axolotl(model):
    """Axolotl's `llama4_linearized_experts` module tree: one nn.Linear per expert and projection.

    Written from Axolotl's monkeypatch (src/axolotl/monkeypatch/models/llama4/modeling.py), independently
    of loraplan.compiler.variants, so the variant manifests are checked against PEFT on real modules.
    """
    import torch
    from torch import nn

    for name, module in list(model.named_modules()):
        if type(module).__name__ != "Llama4TextExperts":
            continue
        experts, hidden, inter = module.num_experts, module.hidden_size, module.intermediate_size
        with torch.device("meta"):
            linear = nn.Module()
            linear.gate_projs = nn.ModuleList(nn.Linear(hidden, inter, bias=False) for _ in range(experts))
            linear.up_projs = nn.ModuleList(nn.Linear(hidden, inter, bias=False) for _ in range(experts))
            linear.down_projs = nn.ModuleList(nn.Linear(inter, hidden, bias=False) for _ in range(experts))
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent), leaf, linear)
    return model
