"""Tiny random transformers models for the runtime tests, built from configs (no download).

Each entry gives a builder (seeded, float32, eval-free) and a fixed batch whose loss the tests
drive down. Dimensions are the smallest that keep every module kind these tests need.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import transformers

from loraplan.schema.config import Config

VOCAB = 96


def llama_config() -> Any:
    return transformers.LlamaConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=64, architectures=["LlamaForCausalLM"],
    )


def gpt2_config() -> Any:
    return transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, architectures=["GPT2LMHeadModel"],
    )


def qwen3_moe_config() -> Any:
    return transformers.Qwen3MoeConfig(
        vocab_size=VOCAB, hidden_size=32, intermediate_size=64, moe_intermediate_size=16, num_experts=4,
        num_experts_per_tok=2, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
        max_position_embeddings=64, architectures=["Qwen3MoeForCausalLM"],
    )


def t5_config() -> Any:
    return transformers.T5Config(
        vocab_size=VOCAB, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
        decoder_start_token_id=0, architectures=["T5ForConditionalGeneration"],
    )


def llama_seq_cls_config() -> Any:
    cfg = llama_config()
    cfg.num_labels = 3
    cfg.pad_token_id = 0
    cfg.architectures = ["LlamaForSequenceClassification"]
    return cfg


@dataclass(frozen=True)
class Tiny:
    """A tiny model family: how to build it, a batch for it, and a config that adapts it."""

    name: str
    cls: Callable[..., Any]
    config: Callable[[], Any]
    lora: dict[str, Any]

    def build(self, seed: int = 0, **overrides: Any) -> Any:
        cfg = self.config()
        for key, value in overrides.items():
            setattr(cfg, key, value)
        torch.manual_seed(seed)
        return self.cls(cfg).float()

    def batch(self, seed: int = 1) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(1, VOCAB, (2, 12), generator=g)
        if self.name == "t5":
            labels = torch.randint(1, VOCAB, (2, 6), generator=g)
            return {"input_ids": ids, "labels": labels}
        if self.name == "llama_seq_cls":
            return {"input_ids": ids, "labels": torch.tensor([0, 2])}
        return {"input_ids": ids, "labels": ids.clone()}

    def loraplan_config(self, **lora: Any) -> Config:
        return Config.model_validate({"base_model": f"tiny/{self.name}", "lora": {**self.lora, **lora}})


TINY: dict[str, Tiny] = {
    t.name: t
    for t in [
        Tiny("llama", transformers.LlamaForCausalLM, llama_config,
             {"r": 4, "lora_alpha": 8, "target_modules": "all-linear", "task_type": "CAUSAL_LM"}),
        Tiny("gpt2", transformers.GPT2LMHeadModel, gpt2_config,
             {"r": 4, "lora_alpha": 8, "target_modules": ["c_attn", "c_proj", "c_fc"], "fan_in_fan_out": True,
              "task_type": "CAUSAL_LM"}),
        Tiny("qwen3_moe", transformers.Qwen3MoeForCausalLM, qwen3_moe_config,
             {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"],
              "target_parameters": ["mlp.experts.gate_up_proj", "mlp.experts.down_proj"], "task_type": "CAUSAL_LM"}),
        Tiny("t5", transformers.T5ForConditionalGeneration, t5_config,
             {"r": 4, "lora_alpha": 8, "target_modules": ["q", "v", "wi", "wo"], "task_type": "SEQ_2_SEQ_LM"}),
        Tiny("llama_seq_cls", transformers.LlamaForSequenceClassification, llama_seq_cls_config,
             {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"], "task_type": "SEQ_CLS"}),
    ]
}


def loss_of(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return model(**batch).loss


def train(model: Any, batch: dict[str, torch.Tensor], steps: int = 6, lr: float = 1e-2) -> list[float]:
    """A few AdamW steps on one fixed batch; the losses before each step and after the last."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    losses = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = loss_of(model, batch)
        loss.backward()
        opt.step()
        losses.append(float(loss))
    with torch.no_grad():
        losses.append(float(loss_of(model, batch)))
    model.eval()
    return losses


@torch.no_grad()
def logits(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    model.eval()
    return model(**batch).logits


def snapshot(model: Any) -> Any:
    """A copy of the base model before `apply` mutates it in place (for reloading in plain PEFT)."""
    return copy.deepcopy(model)


# Fields PEFT keeps as sets and writes as lists in arbitrary order.
SET_FIELDS = ("target_modules", "exclude_modules")


def config_differences(saved: dict[str, Any], exported: dict[str, Any]) -> list[str]:
    """Keys where two adapter_config.json dicts differ (set-valued fields compared as sets)."""
    out = []
    for key in sorted(set(saved) | set(exported)):
        a, b = saved.get(key, "<absent>"), exported.get(key, "<absent>")
        if key in SET_FIELDS and isinstance(a, list) and isinstance(b, list):
            a, b = sorted(a), sorted(b)
        if a != b or (key in saved) != (key in exported):
            out.append(f"{key}: saved {a!r}, exported {b!r}")
    return out
