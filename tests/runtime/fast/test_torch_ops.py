"""torch_ops, the reference rank-r products: each equals its definition in float64."""

from __future__ import annotations

import torch

from loraplan.runtime.fast import torch_ops


def test_products_match_their_definitions():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(40, 24, generator=gen, dtype=torch.float64)
    g = torch.randn(40, 12, generator=gen, dtype=torch.float64)
    a, b = torch.randn(4, 24, generator=gen), torch.randn(12, 4, generator=gen)  # fp32 masters
    w = torch.randn(12, 24, generator=gen, dtype=torch.float64)
    s = 0.75
    xa = torch_ops.down(x, a)
    assert xa.dtype == torch.float64 and torch.allclose(xa, x @ a.double().t())
    gs = torch_ops.down(g, b.t(), s)
    assert torch.allclose(gs, s * g @ b.double())
    assert torch.allclose(torch_ops.reduce(gs, x), gs.t() @ x)
    grad_b = torch_ops.reduce(xa, g, s, transpose=True)
    assert grad_b.shape == (12, 4) and torch.allclose(grad_b, s * g.t() @ xa)
    as_param = torch_ops.reduce(xa, g, s, transpose=True, dtype=torch.float32)  # in the parameter's dtype
    assert as_param.dtype == torch.float32 and torch.allclose(as_param, grad_b.float())
    merged = torch_ops.merge(w, b, a, s)
    assert merged.dtype == torch.float64 and torch.allclose(merged, w + s * b.double() @ a.double())
