"""compiler/axolotl.py: Axolotl's model-derived LoraConfig settings, on catalog architectures.

The expected counts are Axolotl's own (issue 10, from its `load_lora` on these configs): with
`lora_target_linear` Axolotl passes PEFT the leaf names of the linear layers, so on
transformers-v5 Mixtral (router and experts are not nn.Linear) only attention is adapted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from loraplan.compiler.architecture import Architecture, ModuleInfo
from loraplan.compiler.axolotl import linear_names, task_type
from loraplan.compiler.catalog import load_catalog_architecture, lookup
from loraplan.compiler.compile import check_loaded
from loraplan.compiler.plan import Plan
from loraplan.schema.load import load_file, load_text

CORPUS = Path(__file__).resolve().parents[1] / "schema" / "data" / "axolotl-examples"


def _plan(result):
    plan, diags = check_loaded(result)
    assert plan is not None, diags
    return plan, diags


@pytest.mark.parametrize(("config", "trainable", "modules"), [
    ("mistral/mixtral/mixtral.yml", 27_262_976, 128),
    ("mistral/mixtral/mixtral-8x22b-qlora-fsdp.yml", 69_730_304, 224),
])
def test_target_linear_on_fused_moe_adapts_attention_only(config, trainable, modules):
    plan, diags = _plan(load_file(CORPUS / config))
    assert plan.totals.trainable_params == trainable
    assert len(plan.injections) == modules and not plan.parameters
    assert plan.peft_config["target_modules"] == ["k_proj", "o_proj", "q_proj", "v_proj"]
    assert plan.peft_config["task_type"] == "CAUSAL_LM" and plan.peft_config["bias"] == "none"
    assert not [d for d in diags if d.severity == "error"]


def test_linear_names_are_leaves_without_the_output_embedding():
    arch = load_catalog_architecture(lookup("mistralai/Mixtral-8x7B-v0.1"))
    assert linear_names(arch) == ["k_proj", "o_proj", "q_proj", "v_proj"]  # lm_head dropped
    pythia = load_catalog_architecture(lookup("EleutherAI/pythia-1.4b-deduped"))
    names = linear_names(pythia)
    # gpt_neox's output embedding is embed_out (get_linear_embedding_layers), not lm_head
    assert "embed_out" not in names and "query_key_value" in names and "dense_4h_to_h" in names


def test_class_name_containing_linear_counts_even_without_a_weight():
    mods = [
        ModuleInfo("model", "M", "container"),
        ModuleInfo("model.layers.0.attn.q_proj", "Gemma4ClippableLinear", "container", layer=0),
        ModuleInfo("model.layers.0.attn.q_proj.linear", "Linear", "linear", 4, 4, params=16, layer=0),
        ModuleInfo("model.rope", "LlamaLinearScalingRotaryEmbedding", "container"),
        ModuleInfo("lm_head", "Linear", "linear", 4, 9, params=36),
    ]
    arch = Architecture("t", "gemma4", "Gemma4ForCausalLM", mods, [])
    assert linear_names(arch) == ["linear", "q_proj"]


@pytest.mark.parametrize(("cls", "task"), [
    ("LlamaForCausalLM", "CAUSAL_LM"), ("Llama4ForConditionalGeneration", "CAUSAL_LM"),
    ("Qwen2ForSequenceClassification", "SEQ_CLS"), ("BertForTokenClassification", "TOKEN_CLS"),
])
def test_task_type_from_the_class_name(cls, task):
    assert task_type(cls) == task


def test_union_with_listed_modules_and_findings_at_the_flag():
    text = ("base_model: mistralai/Mixtral-8x7B-v0.1\nadapter: lora\nlora_r: 8\nlora_alpha: 16\n"
            "lora_target_linear: true\nlora_target_modules: [embed_tokens]\n")
    plan, _ = _plan(load_text(text, "a.yml", dialect="axolotl"))
    assert plan.peft_config["target_modules"] == ["embed_tokens", "k_proj", "o_proj", "q_proj", "v_proj"]
    assert "model.embed_tokens" in {i.module for i in plan.injections}
    assert plan.config["lora"]["target_modules"] == plan.peft_config["target_modules"]


def test_dropout_on_converted_experts_is_axolotls_patch_not_an_error():
    plan, diags = _plan(load_file(CORPUS / "trinity/trinity-nano-preview-qlora.yaml"))
    assert not [d for d in diags if d.severity == "error"]
    assert plan.parameters and all(p.dropout == 0.0 for p in plan.parameters)  # nn.Identity in ParamWrapper
    assert all(i.dropout == 0.05 for i in plan.injections)  # the Linear layers keep it
    note = [d for d in diags if d.code == "LP407"]
    assert len(note) == 1 and note[0].severity == "warning" and note[0].line == 30  # at lora_dropout
    assert "Axolotl patches" in note[0].message


def test_same_config_native_keeps_peft_refusal():
    # Without Axolotl's patch PEFT's ParamWrapper refuses the dropout: the native dialect says so.
    text = ("base_model: mistralai/Mixtral-8x7B-v0.1\nlora:\n  target_modules: [w1, w2, w3]\n"
            "  lora_dropout: 0.05\n")
    _, diags = _plan(load_text(text, "n.yml"))
    assert [d.code for d in diags if d.severity == "error"] == ["LP505"]


def test_a_target_matching_nothing_while_others_match_is_a_warning_axolotl_runs():
    plan, diags = _plan(load_file(CORPUS / "glm47-flash/lora.yaml"))
    lp502 = sorted((d.line, d.severity) for d in diags if d.code == "LP502")
    assert lp502 == [(27, "warning"), (28, "warning"), (29, "warning")]  # q_proj, v_proj, k_proj (MLA)
    assert all(d.message.startswith("Axolotl runs this, but") for d in diags if d.code == "LP502")
    assert {i.module.rsplit(".", 1)[-1] for i in plan.injections if ".self_attn." in i.module} == {"o_proj"}


def test_nothing_matched_stays_an_error_where_axolotl_stops():
    _, diags = _plan(load_file(CORPUS / "voxtral/voxtral-mini-qlora.yml"))
    (d,) = [d for d in diags if d.severity == "error"]
    assert d.code == "LP502" and "Axolotl stops here" in d.message


def test_jamba_router_is_linear_under_axolotls_transformers():
    # transformers 5.16.1 (Axolotl's pin) builds feed_forward.router as nn.Linear; 5.23.0 does not
    plan, diags = _plan(load_file(CORPUS / "jamba/qlora.yaml"))
    assert (len(plan.injections), plan.totals.trainable_params) == (192, 19_588_096)
    assert "router" in plan.peft_config["target_modules"]
    (note,) = [d for d in diags if d.code == "LP408"]
    assert "5.16.1" in note.message and "5.23.0" in note.message and note.line == 1
    assert plan.module_tree.startswith("transformers 5.23.0, with") and "5.16.1" in plan.module_tree
    assert Plan.from_json(plan.to_json()).module_tree == plan.module_tree
    native = load_text("base_model: ai21labs/Jamba-v0.1\nlora:\n  target_modules: all-linear\n", "n.yml")
    plan, diags = _plan(native)
    assert not any(i.module.endswith(".router") for i in plan.injections)  # the catalog's own tree
    assert not [d for d in diags if d.code == "LP408"] and plan.module_tree == "transformers 5.23.0"


def test_quantize_moe_experts_quantises_the_fused_experts_in_the_estimate():
    from loraplan.compiler.compile import compile_plan

    result = load_file(CORPUS / "qwen3.5/35b-a3b-moe-qlora.yaml")
    assert result.config.axolotl.quantize_moe_experts
    arch = load_catalog_architecture(lookup("Qwen/Qwen3.5-35B-A3B"))
    with_q = compile_plan(result.config, arch, source=result.source).memory
    off = result.config.model_copy(update={"axolotl": result.config.axolotl.model_copy(
        update={"quantize_moe_experts": False})})
    without = compile_plan(off, arch, source=result.source).memory
    experts = [p for p in arch.parameters if len(p.shape) == 3 and "expert" in p.name]
    assert len(experts) == 80
    saved = 0.0
    for p in experts:  # bf16 -> nf4 (0.5 byte) + 8-bit absmax per 64 + fp32 per 256 blocks
        blocks = -(-p.numel // 64)
        saved += 2 * p.numel - (p.numel / 2 + blocks + 4 * -(-blocks // 256))
    assert abs((without.weights_bytes - with_q.weights_bytes) - saved) <= 1
    assert with_q.weights_bytes < 20 * 2**30 < 60 * 2**30 < without.weights_bytes  # issue 10: ~63 GiB before
    assert any("quantize_moe_experts" in a for a in with_q.assumptions)


def test_gemma4_clippable_linear_is_adapted_through_its_inner_linear():
    text = ("base_model: google/gemma-4-E2B-it\nadapter: lora\nlora_r: 8\nlora_alpha: 16\n"
            "lora_target_modules: [q_proj]\n")
    plan, diags = _plan(load_text(text, "a.yml", dialect="axolotl"))
    assert not [d for d in diags if d.severity == "error"]
    names = {i.module for i in plan.injections}
    assert "model.vision_tower.encoder.layers.0.self_attn.q_proj.linear" in names
    assert "model.vision_tower.encoder.layers.0.self_attn.q_proj" not in names
    assert [d.code for d in diags if "inner `.linear`" in d.message] == ["LP407"]
    # PEFT alone (the native dialect) refuses the wrapper
    native = "base_model: google/gemma-4-E2B-it\nlora:\n  target_modules: [q_proj]\n"
    _, diags = _plan(load_text(native, "n.yml"))
    assert [d.code for d in diags if d.severity == "error"] == ["LP505"]


def test_peft_version_difference_on_layer_index_is_said():
    from loraplan.compiler.compile import compile_plan

    # a tree whose block list is top-level (`layers.0.q`): PEFT 0.21 reads index 0, PEFT 0.20 none
    mods = [ModuleInfo("layers", "ModuleList", "container"), ModuleInfo("layers.0", "Block", "container"),
            ModuleInfo("layers.0.q", "Linear", "linear", 4, 4, params=16, layer=None)]
    from loraplan.compiler.architecture import ParamInfo
    arch = Architecture("t", "llama", "M", mods, [ParamInfo("layers.0.q.weight", "layers.0.q", (4, 4))])
    text = ("base_model: t\nadapter: lora\nlora_r: 2\nlora_alpha: 4\nlora_target_modules: [q]\n"
            "peft_layers_to_transform: [0]\npeft_layers_pattern: [layers]\n")
    result = load_text(text, "a.yml", dialect="axolotl")
    plan = compile_plan(result.config, arch, source=result.source)
    assert [i.module for i in plan.injections] == ["layers.0.q"]  # PEFT 0.21.2's choice
    (d,) = [d for d in plan.diagnostics if d.code == "LP412"]
    assert "0.20.0" in d.message and "0.21.2" in d.message and d.line == 7


def test_auto_sequence_classification_loader_gives_seq_cls():
    # model_type: AutoModelForSequenceClassification -> Axolotl loads LlamaForSequenceClassification
    from loraplan.compiler.compile import compile_plan

    text = ("base_model: meta-llama/Llama-3.2-1B\nmodel_type: AutoModelForSequenceClassification\nadapter: lora\n"
            "lora_r: 8\nlora_alpha: 16\nlora_target_linear: true\n")
    result = load_text(text, "a.yml", dialect="axolotl")
    assert result.config.model_class == "AutoModelForSequenceClassification"
    plan = compile_plan(result.config, source=result.source)
    assert plan.model_class == "LlamaForSequenceClassification"
    assert plan.peft_config["task_type"] == "SEQ_CLS" and plan.modules_to_save == ["score"]


def test_tree_renames_that_no_adapter_sees_are_not_reported():
    # Axolotl's transformers names Gemma's act_fn GELUActivation (5.23.0: GELUTanh): nothing to say
    text = "base_model: google/gemma-7b\nadapter: lora\nlora_r: 8\nlora_alpha: 16\nlora_target_linear: true\n"
    _, diags = _plan(load_text(text, "a.yml", dialect="axolotl"))
    assert not [d for d in diags if d.code == "LP408"]
