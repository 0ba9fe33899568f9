"""Layers that keep PEFT's forward run with adapters in the compute dtype, as PEFT's fastest setting."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from loraplan.runtime.fast import patch_model

TARGETS = ["q_proj", "v_proj", "down_proj"]


def _bf16_pair(**kwargs):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    base = LlamaForCausalLM(cfg).to(torch.bfloat16)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, **kwargs)
    ours = get_peft_model(copy.deepcopy(base), config)  # PEFT's default: float32 adapters
    fastest = get_peft_model(base, copy.deepcopy(config), autocast_adapter_dtype=False)
    torch.manual_seed(1)
    for (n, p), (_, q) in zip(ours.named_parameters(), fastest.named_parameters()):
        if "lora_B" in n:
            p.data.normal_(0, 0.1)
        if p.requires_grad:
            q.data.copy_(p.data)
    return ours, fastest


@pytest.mark.parametrize("kwargs", [{"use_dora": True}, {"lora_bias": True}])
def test_fallback_adapters_take_the_compute_dtype_and_equal_peft_bf16(kwargs):
    ours, fastest = _bf16_pair(**kwargs)
    assert {p.dtype for n, p in ours.named_parameters() if p.requires_grad} == {torch.float32}
    report = patch_model(ours)
    assert len(report.fallback) == 6 and sorted(report.compute_dtype) == sorted(report.fallback)
    assert {p.dtype for n, p in ours.named_parameters() if p.requires_grad} == {torch.bfloat16}
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(2))
    for model in (ours, fastest):
        model.zero_grad()
        model(input_ids=ids, labels=ids).loss.backward()
    with torch.no_grad():
        assert torch.equal(ours(input_ids=ids).logits, fastest(input_ids=ids).logits)
    for (n, p), (_, q) in zip(ours.named_parameters(), fastest.named_parameters()):
        if p.requires_grad:
            assert torch.equal(p.grad, q.grad), n


def test_opt_out_and_float32_models_keep_their_adapters():
    ours, _ = _bf16_pair(use_dora=True)
    report = patch_model(ours, compute_dtype=False)
    assert not report.compute_dtype
    assert {p.dtype for n, p in ours.named_parameters() if p.requires_grad} == {torch.float32}
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2)
    fp32 = get_peft_model(LlamaForCausalLM(cfg), LoraConfig(r=4, target_modules=TARGETS, use_dora=True))
    assert not patch_model(fp32).compute_dtype
