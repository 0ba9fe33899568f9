"""LoRA dropout on the fused path: PEFT's function with the same mask, the mask made from a seed."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from loraplan.runtime.fast import dropout, patch_model
from loraplan.runtime.fast.functions import FusedLoraLinear, LoraAddInto
from loraplan.runtime.fast.grouped import GroupedLoraLinear

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
P = 0.3


class SeededDropout(nn.Module):
    """PEFT's dropout with loraplan's mask for a fixed seed: x * m / keep."""

    def __init__(self, p: float, seed: int) -> None:
        super().__init__()
        self.p, self.seed = p, seed

    def forward(self, x):
        keep = 1.0 - self.p
        return x * dropout.keep_mask(x, keep, self.seed) / keep


def _pair(**kwargs):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    ref = get_peft_model(LlamaForCausalLM(cfg), LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS,
                                                          lora_dropout=P, **kwargs))
    torch.manual_seed(1)
    for n, p in ref.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.1)
    return ref, copy.deepcopy(ref)


def _run(model, ids):
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


@pytest.mark.parametrize("stack", [False, True])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_fused_dropout_equals_peft_with_the_same_mask(monkeypatch, checkpointing, stack):
    ref, fast = _pair()
    report = patch_model(fast, stack=stack)
    assert len(report.fast) == 14 and not report.fallback  # dropout no longer falls back
    monkeypatch.setattr(dropout, "draw_seed", lambda: 1234)
    for m in ref.modules():
        if hasattr(m, "lora_dropout"):
            m.lora_dropout["default"] = SeededDropout(P, 1234)
    for model in (ref, fast):
        model.train()
        if checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    ids = torch.randint(0, 97, (3, 11), generator=torch.Generator().manual_seed(5))
    logits_ref, grads_ref = _run(ref, ids)
    logits_fast, grads_fast = _run(fast, ids)
    assert _rel(logits_fast, logits_ref) < 1e-5
    assert len(grads_ref) == 28
    for name, want in grads_ref.items():
        assert _rel(grads_fast[name], want) < 1e-4, name
    # the mask matters: without dropout the gradients are elsewhere
    fast.eval()
    _, grads_eval = _run(fast, ids)
    assert max(_rel(grads_eval[n], grads_ref[n]) for n in grads_ref) > 1e-2


def test_eval_mode_applies_no_dropout():
    ref, fast = _pair()
    patch_model(fast)
    ref.eval()
    fast.eval()
    ids = torch.randint(0, 97, (2, 7), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        assert _rel(fast(input_ids=ids).logits, ref(input_ids=ids).logits) < 1e-6


def test_each_call_and_each_member_draws_its_own_mask_and_checkpointing_draws_it_again():
    _, fast = _pair()
    patch_model(fast)
    fast.train()
    ids = torch.randint(0, 97, (2, 7), generator=torch.Generator().manual_seed(6))
    seeds = []
    real = dropout.keep_mask

    def spy(like, keep, seed):
        seeds.append(seed)
        return real(like, keep, seed)

    dropout.keep_mask, saved = spy, dropout.keep_mask
    try:
        torch.manual_seed(9)
        _, plain = _run(fast, ids)
        forward_seeds = seeds[: len(seeds) // 2]
        assert len(set(forward_seeds)) == 14  # one mask per adapted layer, q/k/v and gate/up included
        assert sorted(seeds[len(seeds) // 2 :]) == sorted(forward_seeds)  # backward: the same masks
        fast.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        torch.manual_seed(9)
        _, recomputed = _run(fast, ids)
    finally:
        dropout.keep_mask = saved
    for name, want in plain.items():
        assert _rel(recomputed[name], want) < 1e-5, name


def test_mask_rate_and_reproducibility():
    like = torch.empty(400, 500)
    m = dropout.keep_mask(like, 0.95, 7)
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    assert abs(m.mean().item() - 0.95) < 0.005
    assert torch.equal(m, dropout.keep_mask(like, 0.95, 7))
    assert not torch.equal(m, dropout.keep_mask(like, 0.95, 8))
    assert dropout.active_p(nn.Dropout(0.1).eval()) == 0.0 and dropout.active_p(nn.Identity()) == 0.0


def test_gradcheck_with_dropout():
    gen = torch.Generator().manual_seed(0)
    f64 = dict(dtype=torch.float64)
    x = torch.randn(2, 5, 6, generator=gen, requires_grad=True, **f64)
    w = torch.randn(4, 6, generator=gen, **f64)
    a = torch.randn(3, 6, generator=gen, requires_grad=True, **f64)
    b = torch.randn(4, 3, generator=gen, requires_grad=True, **f64)
    drop = (0.7, 42)
    assert torch.autograd.gradcheck(lambda x, a, b: FusedLoraLinear.apply(x, w, None, a, b, 0.5, *[None] * 0,
                                                                          dropout_ops(), None, drop), (x, a, b))
    assert torch.autograd.gradcheck(lambda o, x, a, b: LoraAddInto.apply(o.clone(), x, a, b, 0.5, dropout_ops(),
                                                                         None, drop),
                                    (torch.randn(2, 5, 4, generator=gen, requires_grad=True, **f64), x, a, b))
    ws = [torch.randn(4, 6, generator=gen, **f64), torch.randn(2, 6, generator=gen, **f64)]
    a2 = torch.randn(2, 6, generator=gen, requires_grad=True, **f64)
    b2 = torch.randn(2, 2, generator=gen, requires_grad=True, **f64)

    def grouped(x, a, a2, b, b2):
        bs = [b.detach() * 0.5, b2.detach() * 2.0]
        spec = (2, (0.5, 2.0), dropout_ops(), torch.cat([a.detach(), a2.detach()]), bs, ((0.7, 1), (0.9, 2)))
        return GroupedLoraLinear.apply(x, spec, *ws, None, None, a, a2, b, b2)

    assert torch.autograd.gradcheck(grouped, (x, a, a2, b, b2))
    # against the formula with the masks made from the same seeds
    out = grouped(x, a, a2, b, b2)
    x2 = x.reshape(-1, 6)
    for y, wi, ai, bi, s, (keep, seed) in zip(out, ws, (a, a2), (b, b2), (0.5, 2.0), ((0.7, 1), (0.9, 2))):
        want = x2 @ wi.t() + s * ((x2 * dropout.keep_mask(x2, keep, seed) / keep) @ ai.t()) @ bi.t()
        assert torch.allclose(y.reshape(-1, wi.shape[0]), want)


def dropout_ops():
    from loraplan.runtime.fast import torch_ops

    return torch_ops


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_dropout_equals_peft_with_the_same_mask(monkeypatch):
    """On CUDA in bf16 (the masks from a CUDA generator), against PEFT with bf16 adapters."""
    ref, fast = _pair()
    for model in (ref, fast):
        model.to("cuda", torch.bfloat16)
    patch_model(fast)
    monkeypatch.setattr(dropout, "draw_seed", lambda: 99)
    for m in ref.modules():
        if hasattr(m, "lora_dropout"):
            m.lora_dropout["default"] = SeededDropout(P, 99)
    ids = torch.randint(0, 97, (4, 64), device="cuda", generator=torch.Generator("cuda").manual_seed(5))
    logits_ref, grads_ref = _run(ref.train(), ids)
    logits_fast, grads_fast = _run(fast.train(), ids)
    assert _rel(logits_fast.float(), logits_ref.float()) < 2e-2
    errs = [_rel(grads_fast[n].float(), g.float()) for n, g in grads_ref.items()]
    assert max(errs) < 5e-2, max(errs)
    assert not any(torch.isnan(g).any() for g in grads_fast.values())
