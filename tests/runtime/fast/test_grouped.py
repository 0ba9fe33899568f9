"""Siblings reading one input (q/k/v, gate/up) run as one function: same results as PEFT."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import Qwen2Config, Qwen2ForCausalLM, T5Config, T5ForConditionalGeneration

from loraplan.runtime.fast import grouped as grouped_module
from loraplan.runtime.fast import patch_model
from loraplan.runtime.fast.grouped import GroupedLoraLinear


def _rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def _randomise_b(model):
    torch.manual_seed(1)
    for n, p in model.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.1)


def _grads(model, **batch):
    model.zero_grad(set_to_none=True)
    out = model(**batch)
    out.loss.backward()
    return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.fixture
def count_grouped(monkeypatch):
    calls = {"n": 0}
    original = GroupedLoraLinear.apply

    def counting(*args):
        calls["n"] += 1
        return original(*args)

    monkeypatch.setattr(grouped_module.GroupedLoraLinear, "apply", counting)
    return calls


def test_qkv_and_gate_up_with_biases_match_peft_and_run_grouped(count_grouped):
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)  # Qwen2: q/k/v carry biases
    ref = get_peft_model(Qwen2ForCausalLM(cfg).float(), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    _randomise_b(ref)
    fast = copy.deepcopy(ref)
    patch_model(fast, mode="activation")
    ids = torch.randint(0, 97, (3, 9), generator=torch.Generator().manual_seed(2))
    want_logits, want = _grads(ref, input_ids=ids, labels=ids)
    got_logits, got = _grads(fast, input_ids=ids, labels=ids)
    assert count_grouped["n"] == 2 * 2  # per layer: one call for q/k/v, one for gate/up
    assert _rel(got_logits, want_logits) < 1e-5
    assert got.keys() == want.keys()
    for name, g in want.items():
        assert _rel(got[name], g) < 1e-4, name


def test_cross_attention_siblings_on_different_inputs_fall_back_correctly():
    """T5's EncDecAttention: q reads the decoder, k and v the encoder: not a shared-input group."""
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=64, d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
                   decoder_start_token_id=0, dropout_rate=0.0)
    ref = get_peft_model(T5ForConditionalGeneration(cfg).float(),
                         LoraConfig(r=4, lora_alpha=8, target_modules=["q", "k", "v", "o"]))
    _randomise_b(ref)
    fast = copy.deepcopy(ref)
    patch_model(fast, mode="activation")
    ids = torch.randint(0, 64, (2, 7), generator=torch.Generator().manual_seed(3))
    labels = torch.randint(0, 64, (2, 5), generator=torch.Generator().manual_seed(4))
    want_logits, want = _grads(ref, input_ids=ids, labels=labels)
    got_logits, got = _grads(fast, input_ids=ids, labels=labels)
    cross = fast.base_model.model.decoder.block[0].layer[1].EncDecAttention
    assert cross.q._loraplan_group.enabled is False  # found out on the first call, and stopped
    assert fast.base_model.model.encoder.block[0].layer[0].SelfAttention.q._loraplan_group.enabled
    assert _rel(got_logits, want_logits) < 1e-5
    for name, g in want.items():
        assert _rel(got[name], g) < 1e-4, name


def test_a_deep_copy_of_a_patched_model_groups_its_own_layers():
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1)
    model = get_peft_model(Qwen2ForCausalLM(cfg), LoraConfig(r=2, target_modules=["q_proj", "k_proj", "v_proj"]))
    patch_model(model)
    twin = copy.deepcopy(model)
    attn = twin.base_model.model.model.layers[0].self_attn
    assert all(m in (attn.q_proj, attn.k_proj, attn.v_proj) for m in attn.q_proj._loraplan_group.members)


def test_grouped_layers_under_gradient_checkpointing_match_peft():
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)
    ref = get_peft_model(Qwen2ForCausalLM(cfg).float(), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    _randomise_b(ref)
    fast = copy.deepcopy(ref)
    for m in (ref, fast):
        m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        m.enable_input_require_grads()
        m.train()
    patch_model(fast)
    ids = torch.randint(0, 97, (2, 8), generator=torch.Generator().manual_seed(9))
    want_logits, want = _grads(ref, input_ids=ids, labels=ids)
    got_logits, got = _grads(fast, input_ids=ids, labels=ids)
    assert _rel(got_logits, want_logits) < 1e-5
    for name, g in want.items():
        assert _rel(got[name], g) < 1e-4, name
