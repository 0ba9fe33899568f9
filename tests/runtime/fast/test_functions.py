"""The fused autograd functions compute LoRA's function and every gradient exactly."""

from __future__ import annotations

import pytest
import torch

from loraplan.runtime.fast.functions import FusedLoraLinear, LoraAddInto, MergedLoraLinear, merged_dx_pays


def _reference(x, w, bias, a, b, s):
    return torch.nn.functional.linear(x, w, bias) + s * (x @ a.t()) @ b.t()


@pytest.mark.parametrize("with_bias", [False, True])
def test_fused_linear_gradcheck(with_bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 5, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(4, 5, dtype=torch.float64, generator=g)
    bias = torch.randn(4, dtype=torch.float64, generator=g) if with_bias else None
    a = torch.randn(2, 5, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(4, 2, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, a, b: FusedLoraLinear.apply(x, w, bias, a, b, 0.7), (x, a, b))


def test_fused_linear_gradcheck_with_fewer_tokens_than_outputs():
    """dL/dx through g W + (g s B) A: 3 tokens, 4 outputs (6 tokens above take g (W + s B A))."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 3, 5, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(4, 5, dtype=torch.float64, generator=g)
    a = torch.randn(2, 5, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(4, 2, dtype=torch.float64, generator=g, requires_grad=True)
    assert not merged_dx_pays(3, 4) and merged_dx_pays(6, 4)
    assert torch.autograd.gradcheck(lambda x, a, b: FusedLoraLinear.apply(x, w, None, a, b, 0.7), (x, a, b))


def test_add_into_gradcheck():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 5, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(4, 5, dtype=torch.float64, generator=g, requires_grad=True)
    a = torch.randn(3, 5, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(4, 3, dtype=torch.float64, generator=g, requires_grad=True)

    def fn(x, w, a, b):
        return LoraAddInto.apply(x @ w.t(), x, a, b, 1.5)

    assert torch.autograd.gradcheck(fn, (x, w, a, b))


def test_fused_matches_reference_float32_with_fp32_master_and_low_precision_compute():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 7, 32, generator=g)
    w = torch.randn(48, 32, generator=g) / 6
    a = (torch.randn(8, 32, generator=g) / 6).requires_grad_()
    b = (torch.randn(48, 8, generator=g) / 3).requires_grad_()
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    out = FusedLoraLinear.apply(x1, w, None, a, b, 2.0)
    ref = _reference(x2, w, None, a, b, 2.0)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    gout = torch.randn_like(out)
    grads = torch.autograd.grad(out, (x1, a, b), gout)
    refs = torch.autograd.grad(ref, (x2, a, b), gout)
    for got, want in zip(grads, refs):
        assert got.dtype == want.dtype
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_fp32_adapters_with_bf16_compute_return_fp32_grads():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(16, 64, generator=g).to(torch.bfloat16).requires_grad_()
    w = (torch.randn(32, 64, generator=g) / 8).to(torch.bfloat16)
    a = (torch.randn(4, 64, generator=g) / 8).requires_grad_()
    b = (torch.randn(32, 4, generator=g) / 2).requires_grad_()
    out = FusedLoraLinear.apply(x, w, None, a, b, 0.5)
    assert out.dtype == torch.bfloat16
    out.float().pow(2).sum().backward()
    assert a.grad.dtype == torch.float32 and b.grad.dtype == torch.float32
    # Against a float64 reference: bf16 operands land between 1e-3 and 1e-2 relative error.
    x64, w64, a64, b64 = (t.detach().double().requires_grad_() for t in (x, w, a, b))
    ref = _reference(x64, w64, None, a64, b64, 0.5)
    ref.pow(2).sum().backward()
    for got, want in ((out.double(), ref), (a.grad.double(), a64.grad), (b.grad.double(), b64.grad)):
        rel = (got - want).norm() / want.norm()
        assert rel < 1e-2, rel


@pytest.mark.parametrize("with_bias", [False, True])
def test_merged_linear_gradcheck(with_bias):
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 3, 5, dtype=torch.float64, generator=g, requires_grad=True)
    w = torch.randn(4, 5, dtype=torch.float64, generator=g)
    bias = torch.randn(4, dtype=torch.float64, generator=g) if with_bias else None
    a = torch.randn(2, 5, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(4, 2, dtype=torch.float64, generator=g, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, a, b: MergedLoraLinear.apply(x, w, bias, a, b, 0.7), (x, a, b))


def test_merged_with_dequantiser_matches_reference():
    g = torch.Generator().manual_seed(5)
    x = torch.randn(6, 8, dtype=torch.float64, generator=g, requires_grad=True)
    packed = torch.randn(8, 4, dtype=torch.float64, generator=g)  # stands for a quantised (in, out) store
    a = torch.randn(3, 8, dtype=torch.float64, generator=g, requires_grad=True)
    b = torch.randn(4, 3, dtype=torch.float64, generator=g, requires_grad=True)

    def dequant(w, again=False):
        return w.t() * 2

    out = MergedLoraLinear.apply(x, packed, None, a, b, 0.5, dequant)
    ref = _reference(x, packed.t() * 2, None, a, b, 0.5)
    torch.testing.assert_close(out, ref)
    assert torch.autograd.gradcheck(lambda x, a, b: MergedLoraLinear.apply(x, packed, None, a, b, 0.5, dequant),
                                    (x, a, b))
