"""Seeded random cases for the PEFT random search: a tiny model (transformers classes with task heads,
or random_arch's custom trees) on the CPU with real weights, and a `lora:` section drawing the
init modes, LoRA variants and structural options (token rows, tying, replication) on top of the
target forms random_arch draws. Each case is reproducible from its seed alone.
"""

from __future__ import annotations

import random
from typing import Any

import torch
from peft_oracle import hf_factory
from random_arch import random_lora, random_model

HEADS = {  # model type -> [(auto class, task_type)]
    "llama": [("AutoModelForCausalLM", "CAUSAL_LM"), ("AutoModelForSequenceClassification", "SEQ_CLS"),
              ("AutoModelForTokenClassification", "TOKEN_CLS"), ("AutoModelForQuestionAnswering", "QUESTION_ANS"),
              ("AutoModelForCausalLM", None)],
    "bert": [("AutoModelForSequenceClassification", "SEQ_CLS"), ("AutoModelForTokenClassification", "TOKEN_CLS"),
             ("AutoModelForQuestionAnswering", "QUESTION_ANS"), ("AutoModelForMaskedLM", None)],
    "gpt2": [("AutoModelForCausalLM", "CAUSAL_LM"), ("AutoModelForTokenClassification", "TOKEN_CLS")],
    "qwen2_moe": [("AutoModelForCausalLM", "CAUSAL_LM")],
    "mixtral": [("AutoModelForCausalLM", None)],
    "phi3": [("AutoModelForCausalLM", "CAUSAL_LM")],
    "t5": [("AutoModelForSeq2SeqLM", "SEQ_2_SEQ_LM")],
    "qwen3_moe": [("AutoModelForCausalLM", "CAUSAL_LM")],
    "deepseek_v3": [("AutoModelForCausalLM", None)],
    "gpt_oss": [("AutoModelForCausalLM", "CAUSAL_LM")],
    "jamba": [("AutoModelForCausalLM", None)],
    "falcon_h1": [("AutoModelForCausalLM", "CAUSAL_LM")],
}
INITS = [True, True, False, "gaussian", "pissa", "pissa_niter_1", "olora", "orthogonal", "eva", "mica", "lora_ga"]


def random_case(seed: int) -> tuple[Any, dict[str, Any], str]:
    """(zero-argument model factory, lora section, description)."""
    rng = random.Random(seed * 104729 + 7)
    if rng.random() < 0.35:
        def factory():
            model = random_model(seed)[0].to_empty(device="cpu")
            torch.manual_seed(seed)
            for p in model.parameters():
                torch.nn.init.normal_(p, std=0.1)
            return model
        model, facts = random_model(seed)
        from loraplan.compiler.sources.from_module import from_module

        modules = [(m.name, m.kind) for m in from_module(model).modules]
        what, task = f"random_model({seed})", None
    else:
        model_type = rng.choice(sorted(HEADS))
        auto, task = rng.choice(HEADS[model_type])
        extra = {"tie_word_embeddings": rng.random() < 0.5} if model_type in ("llama", "phi3") else {}
        factory = hf_factory(model_type, auto=auto, device="cpu", **extra)
        from peft_oracle import architecture

        arch = architecture(factory)
        modules = [(m.name, m.kind) for m in arch.modules]
        facts = {"n_layers": arch.num_layers, "stack": (arch.main_stack or "layers").rsplit(".", 1)[-1]}
        what = f"{model_type} {auto} {extra or ''}"
    lora = random_lora(seed, modules, facts)
    if task and rng.random() < 0.8:
        lora["task_type"] = task
    _options(rng, lora, facts, modules)
    return factory, lora, what


def _options(rng: random.Random, lora: dict[str, Any], facts: dict[str, Any], modules: list[tuple[str, str]]) -> None:
    """Init modes, variants and structural options, each with some probability."""
    if rng.random() < 0.5:
        init = rng.choice(INITS)
        lora["init_lora_weights"] = init
        if init == "lora_ga":
            lora["lora_ga_config"] = {"direction": rng.choice(["ArB2r", "ArBr"])}
        if init == "eva" and rng.random() < 0.5:
            lora["eva_config"] = {"rho": rng.choice([1.0, 2.0])}
        if init not in (True, False):
            lora.pop("lora_bias", None)
    variant = rng.choices(["none", "kasa", "monteclora", "velora", "alora", "bdlora"], weights=[10, 2, 1, 1, 1, 2])[0]
    if variant != "none":
        lora.pop("use_dora", None)
        if lora.get("init_lora_weights") == "mica":
            lora["init_lora_weights"] = True
    if variant == "kasa":
        lora["kasa_config"] = {}
    elif variant == "monteclora":
        lora["monteclora_config"] = {"num_samples": rng.choice([2, 4])}
    elif variant == "velora":
        lora["velora_config"] = {"num_groups": 4}
    elif variant == "alora":
        lora["alora_invocation_tokens"] = [1, 2]
    elif variant == "bdlora":
        leaves = sorted({n.rsplit(".", 1)[-1] for n, k in modules if k == "linear"})
        a = rng.sample(leaves, min(len(leaves), rng.randint(0, 2)))
        b = [x for x in rng.sample(leaves, min(len(leaves), rng.randint(0, 2))) if x not in a]
        lora["use_bdlora"] = {"target_modules_bd_a": a, "target_modules_bd_b": b, "nblocks": rng.choice([1, 2, 4]),
                              "match_strict": rng.random() < 0.5}
    if rng.random() < 0.15:
        lora["trainable_token_indices"] = rng.choice([[1, 2], [0, 5, 5], {"embed_tokens": [3]},
                                                      {"embed_tokens": [1], "lm_head": [1]}, {"wte": [2]}])
    if rng.random() < 0.15:
        lora["ensure_weight_tying"] = True
    if rng.random() < 0.1:
        n = max(1, facts.get("n_layers") or 1)
        lora["layer_replication"] = rng.choice([[[0, n]], [[0, min(2, n)], [max(0, n - 1), n]], [[0, n + 1]]])
    if rng.random() < 0.1:
        lora["use_qalora"] = True
