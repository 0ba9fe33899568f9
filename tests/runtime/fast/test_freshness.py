"""A forward after any edit of the adapters equals PEFT's, with no call from the user.

Each edit below moves no version counter (writes through `.data`, storage swaps as sharded
training does them) or a counter only; the patched model ran a training step first, so a copy
kept from that step would be stale. The earlier fast path kept such copies and failed the
`.data` cases (logits off by 0.8 on a tiny Llama, issue 12).
"""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from loraplan.runtime.fast import adapters_changed, patch_model

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _models(dtype):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    base = LlamaForCausalLM(cfg).to(dtype)
    ref = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS))
    for n, p in ref.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.1)
    return ref, copy.deepcopy(ref)


def _lora(model):
    return [(n, p) for n, p in model.named_parameters() if "lora_" in n]


def _normal(model, seed):
    gen = torch.Generator().manual_seed(seed)
    for _, p in _lora(model):
        p.data.normal_(0, 0.2, generator=gen)


def _copy(model, seed):
    gen = torch.Generator().manual_seed(seed)
    for _, p in _lora(model):
        p.data.copy_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _load_state_dict(model, seed):
    gen = torch.Generator().manual_seed(seed)
    state = {n: 0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype) for n, p in _lora(model)}
    missing = model.load_state_dict(state, strict=False)
    assert not missing.unexpected_keys


def _swap_storage(model, seed):
    """What FSDP2 does around each forward: free the storage, refill it, write through .data."""
    gen = torch.Generator().manual_seed(seed)
    for _, p in _lora(model):
        storage = p.data.untyped_storage()
        size = storage.nbytes()
        storage.resize_(0)
        storage.resize_(size)
        p.data.copy_(0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype))


def _replace_data(model, seed):
    gen = torch.Generator().manual_seed(seed)
    for _, p in _lora(model):
        p.data = 0.2 * torch.randn(p.shape, generator=gen, dtype=p.dtype)


EDITS = [_normal, _copy, _load_state_dict, _swap_storage, _replace_data]


@pytest.mark.parametrize("stack", [False, True])
@pytest.mark.parametrize("edit", EDITS, ids=lambda f: f.__name__.strip("_"))
def test_forward_after_an_edit_equals_peft(edit, stack):
    ref, fast = _models(torch.float32)
    report = patch_model(fast, stack=stack)
    assert len(report.fast) == 14
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(3))
    opt = torch.optim.SGD([p for p in fast.parameters() if p.requires_grad], lr=0.1)
    fast(input_ids=ids, labels=ids).loss.backward()  # one step: a kept copy would be of these values
    opt.step()
    with torch.no_grad():
        fast(input_ids=ids)  # a forward after the step: the copies a cache would keep
    for model in (ref, fast):
        edit(model, seed=7)
    with torch.no_grad():
        want = ref(input_ids=ids).logits
        got = fast(input_ids=ids).logits
    assert (got - want).norm() <= 1e-5 * want.norm(), (got - want).abs().max()
    fast.zero_grad()
    ref.zero_grad()
    fast(input_ids=ids, labels=ids).loss.backward()
    ref(input_ids=ids, labels=ids).loss.backward()
    for (name, p), (_, q) in zip(_lora(fast), _lora(ref)):
        assert (p.grad - q.grad).norm() <= 1e-4 * q.grad.norm(), name  # fp32 rounding only


def test_copies_in_another_dtype_follow_data_writes():
    """bf16 model, fp32 adapters (loraplan's default): the compute-dtype copies are casts."""
    ref, fast = _models(torch.bfloat16)
    for model in (ref, fast):
        for _, p in _lora(model):
            p.data = p.data.float()
    patch_model(fast)
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        fast(input_ids=ids)
        for model in (ref, fast):
            _normal(model, seed=11)
        want = get_logits_bf16_adapters(ref, ids)
        got = fast(input_ids=ids).logits.float()
    assert ((got - want).norm() / want.norm()) < 2e-2


def get_logits_bf16_adapters(ref, ids):
    """PEFT's forward with its adapters cast to bf16, as the fused path computes them."""
    saved = {n: p.data for n, p in _lora(ref)}
    for _, p in _lora(ref):
        p.data = p.data.bfloat16()
    try:
        return ref(input_ids=ids).logits.float()
    finally:
        for n, p in _lora(ref):
            p.data = saved[n]


def test_adapters_changed_is_kept_and_harmless():
    adapters_changed()
