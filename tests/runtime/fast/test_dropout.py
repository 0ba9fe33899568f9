"""LoRA dropout on the fused path draws PEFT's own masks and makes them again in backward."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from loraplan.runtime.fast import patch_model, torch_ops
from loraplan.runtime.fast.functions import FusedLoraLinear, LoraAddInto
from loraplan.runtime.fast.grouped import GroupedLoraLinear

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
P = 0.3


def _pair(dtype=torch.float32, device="cpu", bf16_adapters=False):
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    base = LlamaForCausalLM(cfg).to(device, dtype)
    ref = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, lora_dropout=P),
                         autocast_adapter_dtype=not bf16_adapters)
    torch.manual_seed(1)
    for n, p in ref.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.1)
    return ref, copy.deepcopy(ref)


def _run(model, ids, seed=11):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the generators both models draw their masks from
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize("stack", [False, True])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_fused_dropout_equals_peft_with_its_own_masks(checkpointing, stack):
    """Same seed, same masks: PEFT's nn.Dropout and the fused path draw in the same order."""
    ref, fast = _pair()
    report = patch_model(fast, stack=stack)
    assert len(report.fast) == 14 and not report.fallback  # dropout no longer falls back
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
    # the masks matter: another seed (other masks) or no dropout gives other gradients
    _, other = _run(fast, ids, seed=12)
    assert max(_rel(other[n], grads_ref[n]) for n in grads_ref) > 1e-2
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


def test_training_steps_track_peft():
    ref, fast = _pair()
    patch_model(fast)
    opts = [torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-2) for m in (ref, fast)]
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(3))
    for step in range(4):
        for model, opt in zip((ref, fast), opts):
            model.train()
            torch.manual_seed(100 + step)
            model(input_ids=ids, labels=ids).loss.backward()
            opt.step()
            opt.zero_grad()
    for (n, p), (_, q) in zip(ref.named_parameters(), fast.named_parameters()):
        if p.requires_grad:
            assert _rel(q, p) < 1e-4, n


def _seeded(fn, seed=3):
    def run(*args):
        torch.manual_seed(seed)  # every gradcheck call draws the same masks
        return fn(*args)

    return run


def test_gradcheck_with_dropout():
    gen = torch.Generator().manual_seed(0)
    f64 = dict(dtype=torch.float64)
    x = torch.randn(2, 5, 6, generator=gen, requires_grad=True, **f64)
    w = torch.randn(4, 6, generator=gen, **f64)
    a = torch.randn(3, 6, generator=gen, requires_grad=True, **f64)
    b = torch.randn(4, 3, generator=gen, requires_grad=True, **f64)
    fused = _seeded(lambda x, a, b: FusedLoraLinear.apply(x, w, None, a, b, 0.5, torch_ops, None, P))
    assert torch.autograd.gradcheck(fused, (x, a, b))
    out = torch.randn(2, 5, 4, generator=gen, requires_grad=True, **f64)
    add_into = _seeded(lambda o, x, a, b: LoraAddInto.apply(o.clone(), x, a, b, 0.5, torch_ops, None, P))
    assert torch.autograd.gradcheck(add_into, (out, x, a, b))
    ws = [torch.randn(4, 6, generator=gen, **f64), torch.randn(2, 6, generator=gen, **f64)]
    a2 = torch.randn(2, 6, generator=gen, requires_grad=True, **f64)
    b2 = torch.randn(2, 2, generator=gen, requires_grad=True, **f64)

    def grouped(x, a, a2, b, b2):
        spec = (2, (0.5, 2.0), torch_ops, torch.cat([a.detach(), a2.detach()]), [b.detach() * 0.5, b2.detach() * 2],
                (0.3, 0.1))
        return GroupedLoraLinear.apply(x, spec, *ws, None, None, a, a2, b, b2)

    assert torch.autograd.gradcheck(_seeded(grouped), (x, a, a2, b, b2))
    # against the formula, with the masks F.dropout draws from the same seed, member by member
    outs = _seeded(grouped)(x, a, a2, b, b2)
    torch.manual_seed(3)
    x2 = x.reshape(-1, 6)
    for y, wi, ai, bi, s, p in zip(outs, ws, (a, a2), (b, b2), (0.5, 2.0), (0.3, 0.1)):
        want = x2 @ wi.t() + s * (torch.nn.functional.dropout(x2, p, True) @ ai.t()) @ bi.t()
        assert torch.allclose(y.reshape(-1, wi.shape[0]), want)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_bf16_dropout_equals_peft_bf16_with_its_own_masks():
    """On CUDA in bf16, against PEFT with bf16 adapters (its dropout is native_dropout in bf16 too)."""
    ref, fast = _pair(torch.bfloat16, "cuda", bf16_adapters=True)
    for _, p in fast.named_parameters():  # loraplan keeps float32 masters
        if p.requires_grad:
            p.data = p.data.float()
    patch_model(fast)
    ids = torch.randint(0, 97, (4, 64), device="cuda", generator=torch.Generator("cuda").manual_seed(5))
    logits_ref, grads_ref = _run(ref.train(), ids)
    logits_fast, grads_fast = _run(fast.train(), ids)
    assert _rel(logits_fast, logits_ref) < 1e-2
    errs = [_rel(grads_fast[n], g) for n, g in grads_ref.items()]
    assert max(errs) < 3e-2, max(errs)
    _, other = _run(fast, ids, seed=12)  # other masks: far off, so the match above is the masks'
    assert max(_rel(other[n], grads_ref[n]) for n in grads_ref) > 0.1


def test_compiled_dropout_path_equals_peft():
    """Under torch.compile (aot_eager: eager kernels, so eager's generator) the plain-ops path is PEFT's."""
    ref, fast = _pair()
    patch_model(fast)
    compiled = torch.compile(fast, backend="aot_eager")
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(4))
    logits_ref, grads_ref = _run(ref.train(), ids)
    fast.train()
    fast.zero_grad(set_to_none=True)
    torch.manual_seed(11)
    out = compiled(input_ids=ids, labels=ids)
    out.loss.backward()
    assert _rel(out.logits.detach(), logits_ref) < 1e-5
    for n, p in fast.named_parameters():
        if p.requires_grad:
            assert _rel(p.grad, grads_ref[n]) < 1e-4, n
