"""Differential tests for PEFT's init modes, LoRA variants and task heads: the plan against
`get_peft_model` on tiny models with real CPU weights (the weight-reading inits run an SVD / QR,
which the meta device cannot do).

Each case would have caught one of the disagreements issue 14 lists: a token-classifier head
adapted by all-linear (PEFT: TypeError), weight-reading inits on fused-expert parameters or on a
MultiheadAttention (AttributeError), MiCA / KaSA with r above a layer's width, PiSSA / OLoRA
shrinking a narrow layer's adapter, and the extra parameters of KaSA, MonteCLoRA and BD-LoRA.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from peft_oracle import architecture, hf_factory, oracle
from test_peft_differential import check_layers, compare, config_of
from torch import nn
from transformers.pytorch_utils import Conv1D

from loraplan.compiler.compile import compile_plan, peft_config

OPTION_CODES = {"LP316", "LP560", "LP561", "LP562", "LP565", "LP566", "LP567"}


class Mixed(nn.Module):
    """One of each module type PEFT dispatches on, with a 1-wide Linear (a shared-expert gate)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(16, 12)
        self.gate = nn.Linear(16, 1, bias=False)
        self.gpt = Conv1D(8, 16)
        self.emb = nn.Embedding(10, 16)
        self.conv = nn.Conv1d(16, 16, 3)
        self.mha = nn.MultiheadAttention(16, 2)
        self.experts = nn.Module()
        self.experts.gate_up_proj = nn.Parameter(torch.randn(2, 8, 16))


def mixed():
    torch.manual_seed(0)
    return Mixed()


def run(factory, lora: dict[str, Any], expect_codes: set[str] | None = None) -> None:
    config = config_of(lora)
    plan = compile_plan(config, architecture(factory))
    expected = oracle(factory, config)
    compare(plan, expected)
    codes = {d.code for d in plan.diagnostics if d.severity == "error"}
    if expected.error is None:
        assert not codes & OPTION_CODES, [d.message for d in plan.diagnostics]
        check_layers(plan, factory, config)
    elif expect_codes is not None:
        assert codes & expect_codes, (expected.error, [d.message for d in plan.diagnostics])


INITS = ["pissa", "pissa_niter_2", "olora", "orthogonal", "eva", "mica", "lora_ga", "gaussian", False]
TARGETS = {
    "lin": {"target_modules": ["lin"]},
    "gate": {"target_modules": ["gate"]},
    "gpt": {"target_modules": ["gpt"]},
    "emb": {"target_modules": ["emb"]},
    "conv": {"target_modules": ["conv"]},
    "mha": {"target_modules": ["mha"]},
    "param": {"target_modules": [], "target_parameters": ["experts.gate_up_proj"]},
}


@pytest.mark.parametrize("init", INITS, ids=str)
@pytest.mark.parametrize("target", list(TARGETS))
def test_inits_on_every_module_type(init, target):
    run(mixed, {"r": 4, **TARGETS[target], "init_lora_weights": init})


@pytest.mark.parametrize("r", [2, 12, 16])
@pytest.mark.parametrize("init", ["pissa", "olora", "mica"])
def test_rank_against_layer_width(init, r):
    """PiSSA / OLoRA shrink A and B of a layer narrower than r; MiCA refuses r > min(in, out)."""
    run(mixed, {"r": r, "target_modules": ["lin", "gpt"], "init_lora_weights": init}, {"LP562"})


VARIANTS = [
    {"kasa_config": {}},
    {"kasa_config": {}, "r": 12},
    {"monteclora_config": {"num_samples": 3}},
    {"velora_config": {}},
    {"alora_invocation_tokens": [1, 2], "task_type": "CAUSAL_LM"},
    {"use_bdlora": {"target_modules_bd_a": ["q_proj"], "target_modules_bd_b": ["v_proj"], "nblocks": 2}},
    {"use_bdlora": {"target_modules_bd_a": ["q_proj"], "nblocks": 2}},
    {"use_bdlora": {"target_modules_bd_a": ["q_proj"], "nblocks": 2, "match_strict": False}},
    {"use_bdlora": {"target_modules_bd_b": ["q_proj", "v_proj"], "nblocks": 3}},
    {"use_bdlora": {"target_modules_bd_a": ["q_proj"], "target_modules_bd_b": ["v_proj"], "nblocks": 2},
     "lora_bias": True},  # a block-diagonal B has no bias
    {"use_qalora": True, "qalora_group_size": 8},
]


@pytest.mark.parametrize("extra", VARIANTS, ids=lambda e: "-".join(e))
@pytest.mark.parametrize("target", [["q_proj", "v_proj"], ["q_proj", "embed_tokens"]], ids=["linear", "embedding"])
def test_variants_on_llama(extra, target):
    run(hf_factory("llama", device="cpu"), {"r": 4, "target_modules": target, **extra})


@pytest.mark.parametrize("extra", [*VARIANTS[:4], {"alora_invocation_tokens": [1]}], ids=lambda e: "-".join(e))
@pytest.mark.parametrize("target", ["conv", "mha", "gpt", "param"])
def test_variants_on_other_types(extra, target):
    run(mixed, {"r": 4, **TARGETS[target], **extra}, {"LP561"})


@pytest.mark.parametrize("init", ["pissa", "olora", "orthogonal", "lora_ga"])
def test_weight_reading_inits_on_converted_moe_experts(init):
    """Old expert names that PEFT converts to target_parameters on fused experts (transformers v5)."""
    lora = {"r": 4, "target_modules": ["w1", "w3", "q_proj"], "init_lora_weights": init}
    run(hf_factory("mixtral", device="cpu"), lora, {"LP560"})


@pytest.mark.parametrize("init", ["pissa", "olora"])
def test_pissa_olora_counts_on_qwen2_moe(init):
    """Qwen2-MoE's shared_expert_gate has one output: PiSSA / OLoRA give it a rank-1 adapter."""
    run(hf_factory("qwen2_moe", device="cpu"), {"r": 4, "target_modules": "all-linear", "init_lora_weights": init})


@pytest.mark.parametrize("task", ["TOKEN_CLS", "QUESTION_ANS", "SEQ_CLS"])
@pytest.mark.parametrize("model_type", ["bert", "llama"])
def test_task_heads(task, model_type):
    """PEFT 0.21 adds TOKEN_CLS / QUESTION_ANS heads to modules_to_save after injection: all-linear
    adapts the head first, and wrapping it then raises TypeError."""
    auto = {"TOKEN_CLS": "AutoModelForTokenClassification", "QUESTION_ANS": "AutoModelForQuestionAnswering",
            "SEQ_CLS": "AutoModelForSequenceClassification"}[task]
    factory = hf_factory(model_type, auto=auto)
    leaf = "query" if model_type == "bert" else "q_proj"
    for target in ("all-linear", [leaf]):
        run(factory, {"r": 4, "target_modules": target, "task_type": task}, {"LP515"})


STRUCTURE = [
    {"trainable_token_indices": [1, 2, 3]},
    {"trainable_token_indices": {"embed_tokens": [1, 2], "lm_head": [1, 2]}},
    {"trainable_token_indices": {"embed_tokens": [1, 2], "lm_head": [3]}},
    {"trainable_token_indices": {"embed_tokens": [1, 2], "lm_head": [3]}, "ensure_weight_tying": True},
    {"trainable_token_indices": [1, 2, 3], "ensure_weight_tying": True},
    {"trainable_token_indices": [1], "modules_to_save": ["embed_tokens"]},
    {"trainable_token_indices": {"embed_tokens": [1]}, "modules_to_save": ["embed_tokens"]},
    {"trainable_token_indices": {"nothing": [1]}},
    {"target_modules": ["q_proj", "embed_tokens"], "trainable_token_indices": [1]},
    {"target_modules": ["q_proj", "embed_tokens", "lm_head"], "ensure_weight_tying": True},
    {"target_modules": ["q_proj", "embed_tokens"], "ensure_weight_tying": True},
    {"target_modules": ["q_proj", "lm_head"], "ensure_weight_tying": True},
    {"target_modules": r".*\.(q_proj|embed_tokens)", "ensure_weight_tying": True},
    {"target_modules": ["q_proj"], "modules_to_save": ["embed_tokens"], "ensure_weight_tying": True},
    {"ensure_weight_tying": True},
    {"target_modules": ["q_proj", "lm_head"], "modules_to_save": ["lm_head"], "ensure_weight_tying": True},
    {"target_modules": ["q_proj", "lm_head"], "rank_pattern": {"lm_head": 2}, "ensure_weight_tying": True,
     "init_lora_weights": "orthogonal"},  # the init gives the tied adapter tensors of its own rank
    {"target_modules": ["q_proj", "lm_head"], "rank_pattern": {"lm_head": 2}, "ensure_weight_tying": True},
    # ensure_weight_tying saves the embedding in place of lm_head: PEFT then finds no module tied to the
    # wrapped embedding, so each mapped layer trains rows of its own (random search, seed 7954)
    {"trainable_token_indices": {"embed_tokens": [1], "lm_head": [1]}, "modules_to_save": ["lm_head"],
     "ensure_weight_tying": True},
    {"trainable_token_indices": {"embed_tokens": [1], "lm_head": [2, 3]}, "modules_to_save": ["lm_head"],
     "ensure_weight_tying": True},
    {"trainable_token_indices": {"lm_head": [1]}, "modules_to_save": ["lm_head"], "ensure_weight_tying": True},
    {"trainable_token_indices": [1], "modules_to_save": ["lm_head"], "ensure_weight_tying": True},
    {"trainable_token_indices": {"embed_tokens": [1], "lm_head": [1]}, "modules_to_save": ["model.embed_tokens"]},
    {"trainable_token_indices": [1], "modules_to_save": ["lm_head"]},
    {"layer_replication": [[0, 2], [1, 3]]},
    {"layer_replication": [[0, 1]]},
    {"layer_replication": [[2, 3], [0, 2]], "target_modules": "all-linear"},
    {"layer_replication": [[0, 4]]},
    {"layer_replication": [[0, 2], [1, 3]], "rank_pattern": {"layers.3.self_attn.q_proj": 2}},
]


@pytest.mark.parametrize("extra", STRUCTURE, ids=lambda e: "-".join(e))
@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
def test_tokens_tying_and_replication(extra, tied):
    """Extra embedding rows, tied adapters and replicated layers change the module tree or the counts."""
    run(hf_factory("llama", tie_word_embeddings=tied), {"r": 4, "target_modules": ["q_proj"], **extra})


@pytest.mark.parametrize("model_type", ["gpt2", "bert", "t5"])
def test_layer_replication_on_other_stacks(model_type):
    """GPT-2's `transformer.h`, BERT's `bert.encoder.layer`; T5 has none of PEFT's layer lists."""
    run(hf_factory(model_type), {"r": 4, "target_modules": "all-linear", "layer_replication": [[0, 2], [1, 2]]})


@pytest.mark.parametrize("indices", [[1, 63], [1, 64], {"lm_head": [70]}])
def test_token_ids_past_the_vocabulary(indices):
    """With real weights PEFT copies the rows at injection: an id past the 64 rows raises IndexError."""
    run(hf_factory("llama", device="cpu"), {"r": 4, "target_modules": ["q_proj"], "trainable_token_indices": indices},
        {"LP566"})


@pytest.mark.parametrize(("width_in", "width_out"), [(16, 8), (16, 16)])
def test_olora_on_gpt2_conv1d_is_broken_in_peft(width_in, width_out):
    """PEFT accepts it, and the adapter is wrong: the plan's LP570 error is true for the user's model."""
    class One(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = Conv1D(width_out, width_in)

        def forward(self, x):
            return self.c(x)

    from peft import LoraConfig, get_peft_model

    plan = compile_plan(config_of({"r": 4, "target_modules": ["c"], "init_lora_weights": "olora"}), One())
    assert "LP570" in {d.code for d in plan.diagnostics if d.severity == "error"}
    torch.manual_seed(0)
    model, x = One(), torch.randn(2, width_in)
    before = model(x)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["c"], init_lora_weights="olora"))
    try:
        after = peft_model(x)
    except RuntimeError:
        return  # in != out: the shapes do not fit
    assert not torch.allclose(after, before, atol=1e-4)  # an init meant to keep the output does not


@pytest.mark.parametrize("target", ["emb", "lin", "gpt"])
def test_orthogonal_odd_rank_from_rank_pattern(target):
    """PEFT refuses an odd rank only where the orthogonal init runs (Linear, Conv1D); Embedding ignores it."""
    run(mixed, {"r": 4, **TARGETS[target], "init_lora_weights": "orthogonal", "rank_pattern": {target: 3}},
        {"LP316"})


def test_run_time_options_are_shown_in_the_plan():
    from loraplan.compiler.diagnose_options import RUN_TIME

    lora = {"r": 4, "target_modules": ["q_proj"], "alora_invocation_tokens": [1], "revision": "main",
            "runtime_config": {"ephemeral_gpu_offload": True}}
    plan = compile_plan(config_of(lora), architecture(hf_factory("llama")))
    notes = {d.message for d in plan.diagnostics if d.code == "LP571"}
    assert notes == {RUN_TIME["alora_invocation_tokens"], RUN_TIME["revision"], RUN_TIME["runtime_config"]}
    plain = compile_plan(config_of({"r": 4, "target_modules": ["q_proj"]}), architecture(hf_factory("llama")))
    assert not [d for d in plain.diagnostics if d.code == "LP571"]


@pytest.mark.parametrize("ewt", [False, True])
def test_tied_decoder_bias_with_lora_only(ewt):
    """BERT's MLM decoder shares its bias with cls.predictions.bias; `lora_only` unfreezes it through the tie."""
    run(hf_factory("bert", auto="AutoModelForMaskedLM"),
        {"r": 4, "target_modules": ["decoder", "query", "word_embeddings"], "bias": "lora_only",
         "ensure_weight_tying": ewt})


@pytest.mark.parametrize("init", ["corda", "lora_ga", "eva"])
def test_data_driven_inits_say_what_they_need(init):
    """CorDA raises without preprocess_corda; LoRA-GA silently falls back without preprocess_loraga; EVA
    initialises later with initialize_lora_eva_weights. The plan says so (LP564), and the statement holds."""
    from peft import LoraConfig, get_peft_model

    extra = {"lora_ga_config": {}} if init == "lora_ga" else {}
    config = config_of({"r": 4, "target_modules": ["lin"], "init_lora_weights": init, **extra})
    plan = compile_plan(config, architecture(mixed))
    (note,) = [d for d in plan.diagnostics if d.code == "LP564"]
    assert {"corda": "preprocess_corda", "lora_ga": "preprocess_loraga", "eva": "initialize_lora_eva_weights"}[
        init] in note.message
    expected = oracle(mixed, config)
    if init == "corda":
        assert expected.error and "eigens" in expected.error and note.severity == "warning"
    else:
        assert expected.error is None
    if init == "lora_ga":  # no gradients attached: PEFT's default init (B = 0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = get_peft_model(mixed(), LoraConfig(**peft_config(config)))
        assert not model.base_model.model.lin.lora_B["default"].weight.any()


def test_tied_embeddings_keep_their_own_rank():
    """T5 ties encoder/decoder embed_tokens and lm_head to `shared`: only the Linear lm_head takes the
    embedding adapter's tensors (and so its rank); tied Embeddings get adapters of their own rank."""
    run(hf_factory("t5"), {"r": 6, "target_modules": ["o", "lm_head"], "rank_pattern": {"shared": 8},
                           "ensure_weight_tying": True, "init_lora_weights": False})
