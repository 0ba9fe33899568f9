"""Seeded random small models and LoRA configs for differential tests against PEFT.

Models mix every module type PEFT dispatches on (Linear with/without bias, GPT-2 Conv1D,
Embedding, Conv1d/Conv2d with groups, MultiheadAttention), containers, norms, nested lists and
directly registered parameters, under random names and depths. Configs draw every target form
(lists with real names, suffixes, full names and typos; regexes; all-linear) and the options that
change what PEFT adapts or counts.
"""

from __future__ import annotations

import random
from typing import Any

import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

LEAF_NAMES = ["q_proj", "k_proj", "v_proj", "o_proj", "fc1", "fc2", "dense", "proj", "wi", "wo", "gate", "c_attn"]
STACK_NAMES = ["layers", "h", "blocks", "layer"]


class Container(nn.Module):
    pass


class WithParam(nn.Module):
    """A custom module owning parameters directly (like fused MoE experts)."""

    def __init__(self, rng: random.Random, width: int):
        super().__init__()
        experts = rng.choice([2, 3])
        self.gate_up_proj = nn.Parameter(torch.empty(experts, 2 * width, width))
        self.down_proj = nn.Parameter(torch.empty(experts, width, 2 * width))
        if rng.random() < 0.5:
            self.bias = nn.Parameter(torch.empty(width))


def _leaf(rng: random.Random, width: int) -> nn.Module:
    kind = rng.choices(
        ["linear", "conv1d_gpt2", "conv1d", "conv2d", "embedding", "mha", "norm", "param"],
        weights=[10, 3, 1, 1, 1, 1, 2, 1],
    )[0]
    out = rng.choice([width, 2 * width, width // 2])
    if kind == "linear":
        return nn.Linear(width, out, bias=rng.random() < 0.5)
    if kind == "conv1d_gpt2":
        return Conv1D(out, width)
    if kind == "conv1d":
        return nn.Conv1d(width, width, kernel_size=rng.choice([1, 3]), groups=rng.choice([1, 2]))
    if kind == "conv2d":
        return nn.Conv2d(width, out, kernel_size=rng.choice([1, 3]), bias=rng.random() < 0.5)
    if kind == "embedding":
        return nn.Embedding(rng.choice([10, 17]), width)
    if kind == "mha":
        return nn.MultiheadAttention(width, 2, bias=rng.random() < 0.7)
    if kind == "param":
        return WithParam(rng, width)
    return nn.LayerNorm(width)


def _block(rng: random.Random, width: int, depth: int) -> nn.Module:
    block = Container()
    for name in rng.sample(LEAF_NAMES, rng.randint(2, 5)):
        block.add_module(name, _leaf(rng, width))
    if depth > 0 and rng.random() < 0.3:
        block.add_module(rng.choice(["sub", "inner"]), _block(rng, width, depth - 1))
    if rng.random() < 0.3:
        block.add_module(rng.choice(["attn", "mlp", "self_attn"]), _block(rng, width, 0))
    return block


def random_model(seed: int) -> tuple[nn.Module, dict[str, Any]]:
    """A model on the meta device and facts about it the config generator uses."""
    rng = random.Random(seed)
    width = rng.choice([8, 16])
    with torch.device("meta"):
        model = Container()
        model.embed_tokens = nn.Embedding(32, width)
        stack = rng.choice(STACK_NAMES)
        n = rng.randint(1, 4)
        blocks = nn.ModuleList([_block(rng, width, rng.randint(0, 1)) for _ in range(n)])
        if rng.random() < 0.3:  # hybrid: alternate two block layouts
            other = [_block(rng, width, 0) for _ in range(n)]
            blocks = nn.ModuleList([blocks[i] if i % 2 == 0 else other[i] for i in range(n)])
        inner = Container()
        inner.add_module(stack, blocks)
        model.add_module(rng.choice(["model", "transformer", "backbone"]), inner)
        if rng.random() < 0.5:
            tower = Container()
            tower.add_module("layers", nn.ModuleList([_block(rng, width, 0) for _ in range(2)]))
            model.vision_tower = tower
        model.lm_head = nn.Linear(width, 32, bias=False)
        if rng.random() < 0.3:
            model.score = nn.Linear(width, 3)
    return model, {"n_layers": n, "stack": stack}


def random_lora(seed: int, modules: list[tuple[str, str]], facts: dict[str, Any]) -> dict[str, Any]:
    """A random `lora:` section drawn from the model's (name, kind) list, and some near misses.

    Names come mostly from modules LoRA can wrap, so that most configs are ones PEFT accepts.
    """
    rng = random.Random(seed * 7919 + 1)
    wrappable = {"linear", "conv1d_gpt2", "embedding", "conv1d", "conv2d", "mha"}
    names = [n for n, k in modules if k in wrappable] or [n for n, _ in modules]
    leaves = sorted({n.rsplit(".", 1)[-1] for n in names})
    if rng.random() < 0.1:
        leaves.append(rng.choice([n for n, _ in modules]).rsplit(".", 1)[-1])
    tails = sorted({".".join(n.split(".")[-2:]) for n in names if "." in n})
    form = rng.choices(["list", "regex", "all-linear", "none"], weights=[6, 2, 2, 1])[0]
    lora: dict[str, Any] = {"r": rng.choice([2, 4, 6]), "lora_alpha": rng.choice([4, 8, 16])}
    if form == "list":
        pool = leaves + tails + rng.sample(names, min(2, len(names))) + ["v_porj", "nothing"]
        lora["target_modules"] = rng.sample(pool, rng.randint(1, min(6, len(pool))))
    elif form == "regex":
        picks = rng.sample(leaves, min(len(leaves), rng.randint(1, 3)))
        lora["target_modules"] = rf".*\.({'|'.join(picks)})"
    elif form == "all-linear":
        lora["target_modules"] = "all-linear"
    else:
        lora["target_modules"] = []
        lora["target_parameters"] = rng.sample(["gate_up_proj", "down_proj", "fc1.weight", "q_proj.weight"], 2)
    if form in ("list", "all-linear") and rng.random() < 0.3:
        lora["layers_to_transform"] = sorted(rng.sample(range(facts["n_layers"] + 1), rng.randint(1, 2)))
        if rng.random() < 0.5:
            lora["layers_pattern"] = facts["stack"]
    if rng.random() < 0.25:
        lora["exclude_modules"] = rng.sample(leaves + tails, 1)
    if rng.random() < 0.3:
        lora["rank_pattern"] = {rng.choice(leaves): rng.choice([1, 3, 8])}
    if rng.random() < 0.2:
        lora["alpha_pattern"] = {rng.choice(tails or leaves): 5}
    if rng.random() < 0.2:
        lora["modules_to_save"] = rng.sample(["lm_head", "score", "head", "embed_tokens", "norm"], 1)
    if rng.random() < 0.2 and form != "none":
        lora["target_parameters"] = rng.sample(["gate_up_proj", "down_proj"], 1)
    lora["bias"] = rng.choice(["none", "none", "all", "lora_only"])
    lora["use_rslora"] = rng.random() < 0.3
    if "target_parameters" not in lora:
        lora["use_dora"] = rng.random() < 0.2
        lora["lora_bias"] = not lora["use_dora"] and rng.random() < 0.15
        lora["lora_dropout"] = rng.choice([0.0, 0.1])
    return lora
