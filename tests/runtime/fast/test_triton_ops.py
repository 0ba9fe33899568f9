"""triton_ops against torch_ops on a GPU, and the fused functions with Triton kernels against cuBLAS.

Skipped without CUDA or Triton. Shapes include ranks below 16 (padded in the kernels), ranks
that are not powers of two, non-contiguous slices (the grouped path hands column slices of
x A^T) and row counts that are not multiples of any block size.
"""

from __future__ import annotations

import pytest
import torch

from loraplan.runtime.fast import torch_ops
from loraplan.runtime.fast.functions import FusedLoraLinear, LoraAddInto, MergedLoraLinear
from loraplan.runtime.fast.patch import triton_ops

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available() or triton_ops() is None, reason="needs CUDA and Triton"),
]
BF = torch.bfloat16


def rel(a, b):
    return float((a.float() - b.float()).norm() / b.float().norm())


@pytest.mark.parametrize(("n", "k", "d", "r"), [(4096, 512, 1024, 16), (1000, 300, 136, 8), (777, 2048, 64, 24)])
def test_products_match_cublas(n, k, d, r):
    gen = torch.Generator(device="cuda").manual_seed(n)
    x = torch.randn(n, k, device="cuda", dtype=BF, generator=gen)
    g = torch.randn(n, d, device="cuda", dtype=BF, generator=gen)
    a = torch.randn(r, k, device="cuda", generator=gen)
    b = torch.randn(d, r, device="cuda", generator=gen)
    w = torch.randn(d, k, device="cuda", dtype=BF, generator=gen)
    ops = triton_ops()
    xa = ops.down(x, a)
    assert xa.dtype == BF and rel(xa, x.float() @ a.t()) < 1e-2
    assert rel(ops.down(g, b.t(), 0.5), 0.5 * g.float() @ b) < 1e-2
    wide = torch.randn(n, 3 * r, device="cuda", dtype=BF, generator=gen)[:, r : 2 * r]  # a column slice
    assert rel(ops.reduce(wide, x), wide.float().t() @ x.float()) < 1e-2
    got = ops.reduce(wide, g, 2.0, transpose=True)
    assert got.shape == (d, r) and got.dtype == torch.float32
    assert rel(got, 2.0 * g.float().t() @ wide.float()) < 1e-2
    assert torch.equal(ops.reduce(wide, x), ops.reduce(wide, x))  # fixed summation order
    assert torch.equal(ops.reduce(wide, x, dtype=BF), ops.reduce(wide, x).to(BF))  # a bf16 parameter's gradient
    fp32 = torch_ops.reduce(wide, g, 2.0, transpose=True, dtype=torch.float32)  # cuBLAS out_dtype where torch has it
    assert fp32.dtype == torch.float32 and rel(fp32, got) < 1e-2
    merged = ops.merge(w, b, a, 0.25)
    assert merged.dtype == BF and rel(merged, w.float() + 0.25 * b @ a) < 1e-2
    assert rel(merged, torch_ops.merge(w, b, a, 0.25)) < 1e-2


@pytest.mark.parametrize("fn", ["fused", "merged", "add_into"])
def test_functions_with_triton_equal_cublas(fn):
    gen = torch.Generator(device="cuda").manual_seed(1)
    n, k, d, r, s = 2048, 512, 768, 16, 2.0
    w = torch.randn(d, k, device="cuda", dtype=BF, generator=gen) / k**0.5
    a0 = torch.randn(r, k, device="cuda", generator=gen) / k**0.5
    b0 = torch.randn(d, r, device="cuda", generator=gen) / r**0.5
    x0 = torch.randn(4, n // 4, k, device="cuda", dtype=BF, generator=gen)
    grad = torch.randn(4, n // 4, d, device="cuda", dtype=BF, generator=gen)
    results = []
    for ops in (torch_ops, triton_ops()):
        x, a, b = (t.clone().requires_grad_(True) for t in (x0, a0, b0))
        if fn == "fused":
            out = FusedLoraLinear.apply(x, w, None, a, b, s, ops)
        elif fn == "merged":
            out = MergedLoraLinear.apply(x, w, None, a, b, s, None, ops)
        else:
            out = LoraAddInto.apply(x.detach() @ w.t(), x, a, b, s, ops)
        out.backward(grad)
        results.append((out, x.grad, a.grad, b.grad))
    for got, expect in zip(results[1], results[0]):
        assert got.dtype == expect.dtype and rel(got, expect) < 2e-2


def test_merge_operator_uses_the_kernel_and_compiles():
    from loraplan.runtime.fast.merge_op import merge_lowrank

    gen = torch.Generator(device="cuda").manual_seed(2)
    w = torch.randn(1536, 1024, device="cuda", dtype=BF, generator=gen)
    b = torch.randn(1536, 16, device="cuda", generator=gen)
    a = torch.randn(16, 1024, device="cuda", generator=gen)
    assert torch.equal(merge_lowrank(w, b, a, 0.5), triton_ops().merge(w, b, a, 0.5))
    fn = torch.compile(lambda w, b, a: torch.ops.loraplan.merge_lowrank(w, b, a, 0.5) + 1, fullgraph=True)
    assert rel(fn(w, b, a), triton_ops().merge(w, b, a, 0.5) + 1) < 1e-2
