r"""Fused LoRA autograd functions.

For a frozen base weight W (out x in), adapter A (r x in), B (out x r) and scale s:

    y  = x W^T + b + s (x A^T) B^T

PEFT computes this as separate modules: a cast of x to the adapter dtype (fp32 by default),
dropout, A, B, a multiply by s and an add, saving x in fp32, (x A^T) and the intermediates.
Here the forward runs two small GEMMs for the low-rank term and lets the base GEMM accumulate
onto it (`addmm_`, beta = 1), and saves only x (in the compute dtype) and the small product
xa = x A^T (N x r).
The backward, with g = dL/dy and gs = s (g B):

    dL/dx = g W + gs A          (one GEMM for the base, one accumulating addmm_), or, with
            g (W + s B A)       more tokens than outputs, the merged weight (`merged_dx_pays`)
    dL/dA = gs^T x              (r x in)
    dL/dB = s g^T xa            (out x r)

A and B may be kept in fp32 (PEFT's default, so the optimizer state stays fp32); they are cast
to the compute dtype for the matmuls (r x in and out x r: tiny), and their gradients are
returned in their own dtype. The rank-r products (x A^T, g B, gs^T x, g^T xa and the merged
weight) go through `ops`: `torch_ops` (cuBLAS, any device; its merge is the registered operator
`loraplan::merge_lowrank`, a Triton kernel on CUDA) or `triton_ops` (Triton for every product,
opt-in: cuBLAS already runs the skinny products near bandwidth, and Triton launches cost more
host time, which an eager step is short of; docs/benchmarks.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from loraplan.runtime.fast import dropout, torch_ops


def _flat(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(-1, x.shape[-1])


def _as(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """t in dtype; no dispatch when it already is (an eager step is partly bound by host-side calls)."""
    return t if t.dtype == dtype else t.to(dtype)


def adapter_copies(lora_a, lora_b, scaling: float, dtype: torch.dtype):
    """A and s B in the compute dtype (the small operands of every rank-r product)."""
    with torch.no_grad():
        return lora_a.detach().to(dtype), lora_b.detach().to(dtype) * scaling


def merged_dx_pays(tokens: int, out_features: int) -> bool:
    """dL/dx = g (W + s B A) instead of g W + (g s B) A, where that moves fewer bytes.

    The low-rank term of dL/dx is N x in values written and re-read (the base GEMM accumulates
    onto it); the merged weight is out x in read and written once (loraplan::merge_lowrank, a
    Triton kernel on CUDA). With N tokens beyond the output width, the weight is smaller: on the
    1.1B benchmark's down_proj (N = 8,192, out = 2,048) a quarter of the bytes.
    """
    return tokens >= out_features


class FusedLoraLinear(torch.autograd.Function):
    """y = linear(x, W, bias) + s * (x A^T) B^T with W frozen; saves x and x A^T only.

    The low-rank term is computed first and the large GEMM accumulates onto it (beta = 1), so
    the update costs no extra pass over the output: the large GEMM is compute-bound and reads
    the accumulator in its epilogue. `ops` computes the rank-r products (torch_ops or triton_ops);
    `copies` is (A, s B) in x's dtype when the caller made them already (else made here).
    `p` > 0 applies LoRA dropout to the low-rank input, its mask drawn again in backward (dropout.py).
    `dequant` turns a packed 4-bit `weight` into the compute dtype, in forward and again in
    backward, so no dequantised weight is kept between them (nf4.py).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling: float, ops=torch_ops, copies=None, p=0.0,
                dequant=None):  # fmt: skip
        x2 = _flat(x)
        a, bs = copies if copies is not None else adapter_copies(lora_a, lora_b, scaling, x.dtype)
        x_low, drop = dropout.draw(x2, p) if p > 0 else (x2, None)
        xa = ops.down(x_low, a)
        out = torch.mm(xa, bs.t()) if bias is None else torch.addmm(bias, xa, bs.t())
        out.addmm_(x2, (weight if dequant is None else dequant(weight)).t())
        ctx.save_for_backward(x2, xa, weight, a, bs)
        ctx.scaling, ctx.ops, ctx.x_shape, ctx.drop, ctx.dequant = scaling, ops, x.shape, drop, dequant
        ctx.ab_dtypes = (lora_a.dtype, lora_b.dtype)
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad_out):
        x2, xa, weight, a, bs = ctx.saved_tensors
        ops, s = ctx.ops, ctx.scaling
        if ctx.dequant is not None and ctx.needs_input_grad[0]:  # a 4-bit weight: dequantised again
            weight = ctx.dequant(weight)
        g = _as(_flat(grad_out), x2.dtype)
        gs = ops.down(g, bs.t())  # s (g B): N x r
        x_low, masked = dropout.again(x2, ctx.drop)  # the forward's mask, drawn again
        grad_x = None
        if ctx.needs_input_grad[0]:
            if ctx.drop is not None:  # the low-rank part goes through the mask
                grad_x = masked(torch.mm(gs, a)).addmm_(g, weight).view(ctx.x_shape)
            elif merged_dx_pays(g.shape[0], weight.shape[0]):  # g (W + s B A): W is smaller than dL/dx
                grad_x = torch.mm(g, torch_ops.merge(weight, bs, a)).view(ctx.x_shape)
            else:
                grad_x = torch.mm(gs, a).addmm_(g, weight).view(ctx.x_shape)
        grad_a = ops.reduce(gs, x_low, dtype=ctx.ab_dtypes[0]) if ctx.needs_input_grad[3] else None
        grad_b = ops.reduce(xa, g, s, transpose=True, dtype=ctx.ab_dtypes[1]) if ctx.needs_input_grad[4] else None
        return grad_x, None, None, grad_a, grad_b, None, None, None, None, None


class LoraAddInto(torch.autograd.Function):
    """base_out += s * (x A^T) B^T in place, for bases with their own autograd (bnb 4-bit).

    The base's backward produces its part of dL/dx; this function adds s (g B) A.
    """

    @staticmethod
    def forward(ctx, base_out, x, lora_a, lora_b, scaling: float, ops=torch_ops, copies=None, p=0.0):
        x2 = _flat(x)
        a, bs = copies if copies is not None else adapter_copies(lora_a, lora_b, scaling, x.dtype)
        x_low, drop = dropout.draw(x2, p) if p > 0 else (x2, None)
        xa = ops.down(x_low, a)
        _flat(base_out).addmm_(xa, bs.t())
        ctx.mark_dirty(base_out)
        ctx.save_for_backward(x2, xa, a, bs)
        ctx.scaling, ctx.ops, ctx.x_shape, ctx.drop = scaling, ops, x.shape, drop
        ctx.ab_dtypes = (lora_a.dtype, lora_b.dtype)
        return base_out

    @staticmethod
    def backward(ctx, grad_out):
        x2, xa, a, bs = ctx.saved_tensors
        ops, s = ctx.ops, ctx.scaling
        g = _as(_flat(grad_out), x2.dtype)
        gs = ops.down(g, bs.t())
        x_low, masked = dropout.again(x2, ctx.drop)
        grad_x = masked(torch.mm(gs, a)).view(ctx.x_shape) if ctx.needs_input_grad[1] else None
        grad_a = ops.reduce(gs, x_low, dtype=ctx.ab_dtypes[0]) if ctx.needs_input_grad[2] else None
        grad_b = ops.reduce(xa, g, s, transpose=True, dtype=ctx.ab_dtypes[1]) if ctx.needs_input_grad[3] else None
        return grad_out, grad_x, grad_a, grad_b, None, None, None, None


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
    def forward(ctx, x, weight, bias, lora_a, lora_b, scaling: float, dequant=None, ops=torch_ops):
        x2 = _flat(x)
        merged = _merge(ops, weight, dequant, lora_b, lora_a, scaling, x.dtype)
        out = F.linear(x2, merged, bias)
        xa = ops.down(x2, lora_a)
        ctx.save_for_backward(x2, xa, lora_a, lora_b)
        ctx.weight, ctx.dequant, ctx.ops = weight, dequant, ops
        ctx.scaling, ctx.x_shape = scaling, x.shape
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, grad_out):
        x2, xa, lora_a, lora_b = ctx.saved_tensors
        ops, s = ctx.ops, ctx.scaling
        g = _as(_flat(grad_out), x2.dtype)
        grad_x = None
        if ctx.needs_input_grad[0]:
            merged = _merge(ops, ctx.weight, ctx.dequant, lora_b, lora_a, s, x2.dtype, again=True)
            grad_x = torch.mm(g, merged).view(ctx.x_shape)
        gs = ops.down(g, lora_b.t(), s)
        grad_a = ops.reduce(gs, x2, dtype=lora_a.dtype) if ctx.needs_input_grad[3] else None
        grad_b = ops.reduce(xa, g, s, transpose=True, dtype=lora_b.dtype) if ctx.needs_input_grad[4] else None
        return grad_x, None, None, grad_a, grad_b, None, None, None


def _merge(ops, weight, dequant, lora_b, lora_a, scaling, dtype, again: bool = False):
    """W + s B A in the compute dtype; a quantised W is dequantised into the result first.

    again=True in backward: recomputed under other calls (torch_ops.merge's operator and
    dequant(weight, again=True)), so that a compiled graph does not keep the forward's alive.
    """
    if dequant is None:
        w = weight
    else:
        w = (dequant(weight, again=True) if again else dequant(weight)).to(dtype)
    if again:
        return torch_ops.merge(w, lora_b, lora_a, scaling, again=True)
    return ops.merge(w, lora_b, lora_a, scaling)
