r"""Fused LoRA autograd functions.

For a frozen base weight W (out x in), adapter A (r x in), B (out x r) and scale s:

    y  = x W^T + b + s (x A^T) B^T

PEFT computes this as separate modules: a cast of x to the adapter dtype (fp32 by default),
dropout, A, B, a multiply by s and an add, saving x in fp32, (x A^T) and the intermediates.
Here the forward runs two small GEMMs for the low-rank term and lets the base GEMM accumulate
onto it (`addmm_`, beta = 1), and saves only x (in the compute dtype) and the small product
xa = x A^T (N x r).
The backward, with g = dL/dy and gs = s (g B):

    dL/dx = g W + gs A          (one GEMM for the base, one accumulating addmm_)
    dL/dA = gs^T x              (r x in)
    dL/dB = s g^T xa            (out x r)

A and B may be kept in fp32 (PEFT's default, so the optimizer state stays fp32); they are cast
to the compute dtype for the matmuls (r x in and out x r: tiny), and their gradients are
returned in their own dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1])


class FusedLoraLinear(torch.autograd.Function):
    """y = linear(x, W, bias) + s * (x A^T) B^T with W frozen; saves x and x A^T only.

    The low-rank term is computed first and the large GEMM accumulates onto it (beta = 1), so
    the update costs no extra pass over the output: the large GEMM is compute-bound and reads
    the accumulator in its epilogue.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling: float):
        x2 = _flat(x)
        a = lora_a.to(x.dtype)
        bs = lora_b.to(x.dtype) * scaling
        xa = x2 @ a.t()
        out = xa @ bs.t() if bias is None else torch.addmm(bias, xa, bs.t())
        out.addmm_(x2, weight.t())
        ctx.save_for_backward(x2, xa, weight, a, bs)
        ctx.scaling = scaling
        ctx.x_shape = x.shape
        ctx.ab_dtypes = (lora_a.dtype, lora_b.dtype)
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad_out):
        x2, xa, weight, a, bs = ctx.saved_tensors
        g = _flat(grad_out).to(x2.dtype)
        gs = g @ bs  # s (g B): N x r
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = (gs @ a).addmm_(g, weight).view(ctx.x_shape)
        grad_a = (gs.t() @ x2).to(ctx.ab_dtypes[0]) if ctx.needs_input_grad[3] else None
        grad_b = (g.t() @ xa).mul_(ctx.scaling).to(ctx.ab_dtypes[1]) if ctx.needs_input_grad[4] else None
        return grad_x, None, None, grad_a, grad_b, None


class LoraAddInto(torch.autograd.Function):
    """base_out += s * (x A^T) B^T in place, for bases with their own autograd (bnb 4-bit).

    The base's backward produces its part of dL/dx; this function adds s (g B) A.
    """

    @staticmethod
    def forward(ctx, base_out, x, lora_a, lora_b, scaling: float):
        x2 = _flat(x)
        a = lora_a.to(x.dtype)
        b = lora_b.to(x.dtype)
        xa = x2 @ a.t()
        _flat(base_out).addmm_(xa, b.t(), alpha=scaling)
        ctx.mark_dirty(base_out)
        ctx.save_for_backward(x2, xa, a, b)
        ctx.scaling = scaling
        ctx.x_shape = x.shape
        ctx.ab_dtypes = (lora_a.dtype, lora_b.dtype)
        return base_out

    @staticmethod
    def backward(ctx, grad_out):
        x2, xa, a, b = ctx.saved_tensors
        s = ctx.scaling
        g = _flat(grad_out).to(x2.dtype)
        gs = (g @ b).mul_(s)
        grad_x = (gs @ a).view(ctx.x_shape) if ctx.needs_input_grad[1] else None
        grad_a = (gs.t() @ x2).to(ctx.ab_dtypes[0]) if ctx.needs_input_grad[2] else None
        grad_b = (g.t() @ xa).mul_(s).to(ctx.ab_dtypes[1]) if ctx.needs_input_grad[3] else None
        return grad_out, grad_x, grad_a, grad_b, None


class MergedLoraLinear(torch.autograd.Function):
    """y = x (W + s B A)^T + bias: the low-rank update folded into the weight, one GEMM.

    At N tokens >> r, adding s B A to the weight (out x in, read and written once) moves far
    fewer bytes than adding s (x A^T) B^T to the output (N x out, written and re-read), and the
    backward needs no low-rank term for dL/dx: dL/dx = g (W + s B A). The merged weight is
    rebuilt in backward instead of saved. `dequant` (optional) turns a quantised base weight
    into the compute dtype first (bitsandbytes NF4/FP4), so dequantisation and the update share
    one pass. Saves x and x A^T, as the activation-side function does.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling: float, dequant=None):
        x2 = _flat(x)
        a = lora_a.to(x.dtype)
        bs = lora_b.to(x.dtype) * scaling
        merged = _merge(weight, dequant, bs, a, x.dtype)
        out = F.linear(x2, merged, bias)
        xa = x2 @ a.t()
        ctx.save_for_backward(x2, xa, a, bs)
        ctx.weight, ctx.dequant = weight, dequant
        ctx.scaling, ctx.x_shape = scaling, x.shape
        ctx.ab_dtypes = (lora_a.dtype, lora_b.dtype)
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad_out):
        x2, xa, a, bs = ctx.saved_tensors
        g = _flat(grad_out).to(x2.dtype)
        grad_x = None
        if ctx.needs_input_grad[0]:
            merged = _merge(ctx.weight, ctx.dequant, bs, a, x2.dtype)
            grad_x = (g @ merged).view(ctx.x_shape)
        gs = g @ bs
        grad_a = (gs.t() @ x2).to(ctx.ab_dtypes[0]) if ctx.needs_input_grad[3] else None
        grad_b = (g.t() @ xa).mul_(ctx.scaling).to(ctx.ab_dtypes[1]) if ctx.needs_input_grad[4] else None
        return grad_x, None, None, grad_a, grad_b, None, None


def _merge(weight, dequant, bs, a, dtype):
    """W + (s B) A in the compute dtype; a quantised W is dequantised into the result first."""
    if dequant is None:
        return torch.addmm(weight, bs, a)
    return dequant(weight).to(dtype).addmm_(bs, a)
