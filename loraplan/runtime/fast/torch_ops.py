"""The rank-r products of LoRA training with plain PyTorch ops (any device; the reference).

Same functions and signatures as `triton_ops`, so the autograd functions take either:

    down(x, w, alpha)       alpha * x w^T          x: N x K, w: r x K         -> N x r, x's dtype
    reduce(s, x, alpha)     alpha * s^T x          s: N x r, x: N x D         -> r x D (D x r transposed)
    merge(w, b, a, alpha)   w + alpha * b a        w: M x K, b: M x r, a: r x K

The scale is applied to the small operand or result, never to an N-sized tensor. `merge` on
CUDA is the registered operator `loraplan::merge_lowrank` (merge_op.py), which torch.compile
keeps whole.
"""

from __future__ import annotations

import torch


def down(x: torch.Tensor, w: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    if w.dtype != x.dtype:  # every op here is also a host-side dispatch: skip the no-op ones
        w = w.to(x.dtype)
    if alpha != 1.0:
        w = w * alpha
    return torch.mm(x, w.t())


def reduce(s: torch.Tensor, x: torch.Tensor, alpha: float = 1.0, transpose: bool = False) -> torch.Tensor:
    out = torch.mm(x.t(), s) if transpose else torch.mm(s.t(), x)
    if alpha != 1.0:
        out.mul_(alpha)
    return out


def merge(w: torch.Tensor, b: torch.Tensor, a: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """On CUDA through `loraplan::merge_lowrank` (Triton where installed); cuBLAS addmm elsewhere."""
    if w.is_cuda:
        from loraplan.runtime.fast.merge_op import merge_lowrank

        return merge_lowrank(w, b, a, float(alpha))
    return torch.addmm(w, b.to(w.dtype), a.to(w.dtype), alpha=alpha)
