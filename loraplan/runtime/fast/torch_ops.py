"""The rank-r products of LoRA training with plain PyTorch ops (any device; the reference).

Same functions and signatures as `triton_ops`, so the autograd functions take either:

    down(x, w, alpha)       alpha * x w^T          x: N x K, w: r x K         -> N x r, x's dtype
    reduce(s, x, alpha)     alpha * s^T x          s: N x r, x: N x D         -> r x D (D x r transposed),
                                                                                 in `dtype` when given
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


# aten::mm.dtype: cuBLAS writes an fp32 result from bf16/fp16 operands (torch >= 2.8, CUDA only)
_MM_OUT_DTYPE = "dtype" in torch.ops.aten.mm.overloads()


def reduce(s: torch.Tensor, x: torch.Tensor, alpha: float = 1.0, transpose: bool = False, dtype=None) -> torch.Tensor:
    """A parameter's gradient: `dtype` is the parameter's (fp32 masters: one cuBLAS call, no cast)."""
    m1, m2 = (x.t(), s) if transpose else (s.t(), x)
    if dtype is None or dtype == s.dtype:
        out = torch.mm(m1, m2)
    elif _MM_OUT_DTYPE and dtype == torch.float32 and s.is_cuda and not torch.compiler.is_compiling():
        out = torch.mm(m1, m2, out_dtype=dtype)
    else:
        out = torch.mm(m1, m2).to(dtype)
    if alpha != 1.0:
        out.mul_(alpha)
    return out


def merge(w: torch.Tensor, b: torch.Tensor, a: torch.Tensor, alpha: float = 1.0, again: bool = False) -> torch.Tensor:
    """Through `loraplan::merge_lowrank` (Triton on CUDA where installed, addmm elsewhere).

    again=True: the backward's recompute, as a plain `addmm` that inductor calls from its own
    code. It must not be the forward's call (a compiled graph would keep that result alive until
    backward, merge_op.py), and a registered Python operator costs host time on every call: with
    the operator in both passes, the compiled 1.1B step issued 98.7 ms of host work against 62.4
    for PEFT's and ran no faster than PEFT (H100, docs/benchmarks.md).
    """
    if again:
        return torch.addmm(w, _as(b, w.dtype), _as(a, w.dtype), alpha=alpha)
    from loraplan.runtime.fast.merge_op import merge_lowrank

    return merge_lowrank(w, b, a, float(alpha))


def _as(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return t if t.dtype == dtype else t.to(dtype)
