"""Test helpers: tiny models on the meta device, their Architecture, and PEFT as the oracle.

`oracle(model_factory, lora_kwargs)` runs `get_peft_model` on a fresh model and returns what PEFT
did (targeted modules, targeted parameters, trainable/total counts) or the exception it raised.
`loraplan_view(plan)` returns the same triple from a Plan, so tests compare them directly.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import torch

from loraplan.compiler.sources.from_module import from_module

TINY = {
    "llama": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=64),
    "gpt2": dict(n_embd=32, n_layer=3, n_head=4, vocab_size=64, n_positions=64),
    "mixtral": dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, vocab_size=64, num_local_experts=4),
    "qwen3_moe": dict(hidden_size=32, intermediate_size=64, moe_intermediate_size=16, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, vocab_size=64, num_experts=4,
                      num_experts_per_tok=2, head_dim=8),
    "qwen2_moe": dict(hidden_size=32, intermediate_size=64, moe_intermediate_size=16,
                      shared_expert_intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=64, num_experts=4, num_experts_per_tok=2),
    "deepseek_v3": dict(hidden_size=32, intermediate_size=64, moe_intermediate_size=16, num_hidden_layers=3,
                        first_k_dense_replace=1, num_attention_heads=4, num_key_value_heads=4, vocab_size=64,
                        n_routed_experts=4, num_experts_per_tok=2, n_group=1, topk_group=1, q_lora_rank=16,
                        kv_lora_rank=16, qk_rope_head_dim=4, qk_nope_head_dim=4, v_head_dim=8),
    "gpt_oss": dict(hidden_size=32, intermediate_size=32, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, vocab_size=64, num_local_experts=4, head_dim=8),
    "t5": dict(d_model=32, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4, d_kv=8, vocab_size=64),
    "bert": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 vocab_size=64, max_position_embeddings=64),
    "jamba": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=4,
                  num_key_value_heads=2, vocab_size=64, num_experts=4, attn_layer_period=2, attn_layer_offset=1,
                  expert_layer_period=2, expert_layer_offset=1, mamba_d_state=4, mamba_expand=2, mamba_dt_rank=4,
                  use_mamba_kernels=False),
    "falcon_h1": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, vocab_size=64, mamba_d_ssm=32, mamba_n_heads=4, mamba_d_head=8,
                      mamba_d_state=4, mamba_n_groups=1),
    "phi3": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=4, vocab_size=64, pad_token_id=0),
}

AUTO = {
    "bert": "AutoModelForSequenceClassification",
    "t5": "AutoModelForSeq2SeqLM",
}


def hf_factory(model_type: str, auto: str | None = None, device: str = "meta", **overrides: Any):
    """A zero-argument function building a fresh tiny `model_type` model (meta device: no weights)."""
    import transformers

    cfg_kwargs = {**TINY.get(model_type, {}), **overrides}
    auto_cls = getattr(transformers, auto or AUTO.get(model_type, "AutoModelForCausalLM"))

    def make():
        cfg = transformers.AutoConfig.for_model(model_type, **cfg_kwargs)
        torch.manual_seed(0)
        with torch.device(device):
            return auto_cls.from_config(cfg)

    return make


def architecture(factory) -> Any:
    """from_module of a fresh model, plus what the plan reads that from_module does not record yet.

    `extra["is_transposed"]` (experts stored as (experts, in, out)) and `keep_in_fp32_modules` are
    filled in from the live model here until the architecture sources record them.
    """
    model = factory()
    return complete(from_module(model), model)


def complete(arch: Any, model: Any) -> Any:
    live = dict(model.named_modules())
    for m in arch.modules:
        flag = getattr(live.get(m.name), "is_transposed", None)
        if isinstance(flag, bool) and "is_transposed" not in m.extra:
            m.extra["is_transposed"] = flag
    keep = sorted(getattr(model, "_keep_in_fp32_modules", None) or [])
    if keep and "keep_in_fp32_modules" not in arch.config_attrs:
        arch.config_attrs["keep_in_fp32_modules"] = keep
    return arch


@dataclass
class Outcome:
    modules: list[str] | None
    parameters: list[str] | None
    trainable: int | None
    total: int | None
    error: str | None = None


def lora_config(config: Any):
    """The LoraConfig the runtime builds from a Config (plan.peft_config)."""
    from peft import LoraConfig

    from loraplan.compiler.compile import peft_config

    return LoraConfig(**peft_config(config))


def oracle(factory, config: Any, low_cpu_mem_usage: bool = False) -> Outcome:
    """What get_peft_model does on a fresh model (low_cpu_mem_usage: adapters on meta, for big models)."""
    from peft import get_peft_model

    model = factory()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pm = get_peft_model(model, lora_config(config), low_cpu_mem_usage=low_cpu_mem_usage)
    except Exception as exc:  # PEFT's refusal is a result too
        return Outcome(None, None, None, None, f"{type(exc).__name__}: {exc}")
    trainable, total = pm.get_nb_trainable_parameters()
    return Outcome(
        list(pm.base_model.targeted_module_names),
        list(pm.base_model.targeted_parameter_names),
        trainable,
        total,
    )


def plan_outcome(plan: Any) -> Outcome:
    errors = [d for d in plan.diagnostics if d.severity == "error"]
    return Outcome(
        [i.module for i in plan.injections],
        [p.module for p in plan.parameters],
        plan.totals.trainable_params,
        plan.totals.total_params,
        "; ".join(f"{d.code} {d.message}" for d in errors) or None,
    )
