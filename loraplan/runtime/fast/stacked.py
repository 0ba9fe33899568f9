r"""Frozen weights and LoRA's B side by side, so one GEMM per projection computes both terms.

For projections that read one input x (q/k/v, gate/up, or o_proj alone) with frozen W_i
(out_i x d), adapters A_i (r_i x d), B_i (out_i x r_i) and scales s_i:

    X'   = [x | x (sA)^T]                  N x (d + R),  sA = [s_1 A_1; ...; s_k A_k]
    W'_i = [W_i | 0 .. B_i .. 0]           out_i x (d + R), B_i in member i's columns
    y_i  = X' W'_i^T + b_i                 one GEMM: the base and the low-rank term

The backward's large GEMMs then yield the low-rank gradient as extra columns:

    G'     = sum_i g_i W'_i = [sum_i g_i W_i | g_1 B_1, ..., g_k B_k]
    dL/dx  = G'[:, :d] + (g B) sA          one rank-R GEMM, into a contiguous tensor
    dL/dA_i = s_i (g_i B_i)^T x,   dL/dB_i = g_i^T X'[:, member i's columns]

Against adding s (x A^T) B^T to each output (written, then re-read by the base GEMM) and
reading g once more for g B, this saves bytes on wide outputs and costs some on narrow ones:
the copy into X', a K of d + R for the large GEMMs, and a copy to hand on a contiguous dL/dx.
Measured per group on an H200 (benchmarks/stacked_linear.py, forward + backward, N = 8,192):
gate/up (outputs 8 d wide) 1,692 us against 1,862 us; q/k/v (1.5 d) 482 against 459; o_proj
(d) 326 against 291. So `patch_model(stack=True)` uses it where the outputs are at least 4 d
wide: gate/up. End to end it was within the noise, so it is opt-in.

The frozen weights live in the stack: each base layer's `weight` is a view of its rows, so no
weight is stored twice, and every parameter name, shape and value stays PEFT's. A weight that
gets replaced (`model.to`, PEFT's safe merge, deepcopy) is noticed by its data pointer and the
stack is rebuilt; one that keeps being replaced (sharded training) ends the stacking.
"""

from __future__ import annotations

import torch
from torch import nn

from loraplan.runtime.fast import torch_ops
from loraplan.runtime.fast.functions import _as

MAX_REBUILDS = 3
PAD = 64  # low-rank columns padded to a multiple: K = d + 64 ran 7 % faster than d + 32 (gate/up)


def worth_stacking(in_features: int, out_total: int) -> bool:
    """True where stacking was measured faster than the output-side update (module doc)."""
    return out_total >= 4 * in_features


def stack_blocker(bases: list[nn.Module]) -> str | None:
    """Why these base layers' weights cannot share one tensor (None: they can)."""
    weights = [b.weight for b in bases]
    if any(type(b) is not nn.Linear for b in bases):
        return "not nn.Linear"
    if any(type(w) is not nn.Parameter or w.requires_grad for w in weights):
        return "weights are trained or not plain parameters"
    if any(hasattr(b, "_hf_hook") for b in bases):
        return "weights are placed by accelerate hooks"
    first = weights[0]
    if first.is_meta or not first.is_floating_point():
        return "weights are not materialised floats"
    if any(w.device != first.device or w.dtype != first.dtype or w.shape[1] != first.shape[1] for w in weights):
        return "weights differ in device, dtype or input width"
    return None


class WeightStack:
    """The frozen weights of a group and its B columns in one tensor; s A stacked beside it."""

    def __init__(self, bases: list[nn.Linear], ranks: list[int]) -> None:
        self.bases = list(bases)
        self.ranks = list(ranks)
        self.rebuilds = 0
        self._build()

    def _build(self) -> None:
        first = self.bases[0].weight
        d, rank = first.shape[1], sum(self.ranks)
        padded = -(-rank // PAD) * PAD
        outs = [b.weight.shape[0] for b in self.bases]
        with torch.no_grad():
            store = torch.zeros(sum(outs), d + padded, dtype=first.dtype, device=first.device)
            rows, start = [], 0
            for base, out in zip(self.bases, outs):
                row = store[start : start + out]
                row[:, :d].copy_(base.weight)
                base.weight.data = row[:, :d]
                rows.append(row)
                start += out
            self.a_cat = torch.zeros(padded, d, dtype=first.dtype, device=first.device)
        self.store, self.rows, self.d = store, rows, d
        self.ptrs = [b.weight.data_ptr() for b in self.bases]

    def ready(self) -> bool:
        """True when every base weight is (again) a view of the stack; False: stop stacking."""
        if all(b.weight.data_ptr() == p for b, p in zip(self.bases, self.ptrs)):
            return True
        if self.rebuilds >= MAX_REBUILDS or stack_blocker(self.bases) is not None:
            self.rebuilds = MAX_REBUILDS
            return False
        self.rebuilds += 1
        self._build()
        return True

    def refresh(self, a_list, b_list, scalings) -> None:
        """Write B_i into its columns and s_i A_i into the stacked A, on every call.

        Never skipped (freshness.py says why). The writes are in place, so a second forward
        before the first one's backward makes autograd refuse that backward, never silently
        use other adapters.
        """
        ranks = [a.shape[0] for a in a_list]
        if ranks != self.ranks:  # an adapter was re-created with another rank
            self.ranks = ranks
            self._build()
        with torch.no_grad():
            off = 0
            for row, a, b, s, r in zip(self.rows, a_list, b_list, scalings, ranks):
                row[:, self.d + off : self.d + off + r].copy_(b)
                torch.mul(a, s, out=self.a_cat[off : off + r])
                off += r

    def release(self) -> None:
        """Give every base layer a contiguous weight of its own again (unpatching)."""
        with torch.no_grad():
            for base, ptr in zip(self.bases, self.ptrs):
                if base.weight.data_ptr() == ptr:
                    base.weight.data = base.weight.data.clone(memory_format=torch.contiguous_format)
        self.ptrs = [-1] * len(self.bases)


class StackedLoraLinear(torch.autograd.Function):
    """Every member of a WeightStack on one input; saves X' = [x | x (sA)^T] only."""

    @staticmethod
    def forward(ctx, x, stack: WeightStack, scalings: tuple, *tensors):
        # tensors: k biases (or None), k A's, k B's: inputs, so that autograd routes their gradients
        k = len(stack.rows)
        biases, a_list, b_list = tensors[:k], tensors[k : 2 * k], tensors[2 * k :]
        x2 = x.reshape(-1, stack.d)
        xcat = torch.cat((x2, torch.mm(x2, stack.a_cat.t())), dim=1)
        outs = []
        for w, bias in zip(stack.rows, biases):
            y = torch.mm(xcat, w.t()) if bias is None else torch.addmm(bias, xcat, w.t())
            outs.append(y.view(*x.shape[:-1], w.shape[0]))
        ctx.save_for_backward(xcat, stack.a_cat, *stack.rows)
        ctx.d, ctx.k, ctx.scalings, ctx.x_shape = stack.d, k, scalings, x.shape
        ctx.ranks = [a.shape[0] for a in a_list]
        ctx.dtypes = [(a.dtype, b.dtype) for a, b in zip(a_list, b_list)]
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        xcat, a_cat, *rows = ctx.saved_tensors
        d, k, ranks = ctx.d, ctx.k, ctx.ranks
        flat = [_as(g.reshape(-1, g.shape[-1]), xcat.dtype) for g in grads]
        gx = torch.mm(flat[0], rows[0])
        for g, w in zip(flat[1:], rows[1:]):
            gx.addmm_(g, w)
        gb = gx[:, d:]  # [g_1 B_1, ..., g_k B_k] and zero padding
        x2 = xcat[:, :d]
        grad_as = _grad_as(ctx, gb, x2)
        grad_x = None
        if ctx.needs_input_grad[0]:
            # a contiguous result: CUDA's SDPA backward computes wrong gradients from a strided
            # grad_out (a view of G', row stride d + R) on an H200, so no view is handed on
            grad_x = torch.addmm(gx[:, :d], gb, a_cat).view(ctx.x_shape)
        grad_bs, off = [], d
        for i, (g, r) in enumerate(zip(flat, ranks)):
            needed = ctx.needs_input_grad[3 + 2 * k + i]
            grad_bs.append(torch_ops.reduce(xcat[:, off : off + r], g, transpose=True, dtype=ctx.dtypes[i][1])
                           if needed else None)  # fmt: skip
            off += r
        return (grad_x, None, None, *([None] * k), *grad_as, *grad_bs)


def _grad_as(ctx, gb: torch.Tensor, x2: torch.Tensor) -> list:
    """dL/dA_i = s_i (g_i B_i)^T x: one GEMM for the whole stack when the scales and dtypes agree."""
    k, ranks, scalings = ctx.k, ctx.ranks, ctx.scalings
    needed = [ctx.needs_input_grad[3 + k + i] for i in range(k)]
    a_dtypes = [a for a, _ in ctx.dtypes]
    if not any(needed):
        return [None] * k
    if len(set(scalings)) == 1 and len(set(a_dtypes)) == 1:
        whole = torch_ops.reduce(gb[:, : sum(ranks)], x2, scalings[0], dtype=a_dtypes[0])
        return [p if n else None for p, n in zip(whole.split(ranks), needed)]
    out, off = [], 0
    for r, s, dt, n in zip(ranks, scalings, a_dtypes, needed):
        out.append(torch_ops.reduce(gb[:, off : off + r], x2, s, dtype=dt) if n else None)
        off += r
    return out
