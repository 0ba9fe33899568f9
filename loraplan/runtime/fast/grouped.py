r"""Sibling projections that read the same input (q/k/v, gate/up) as one autograd function.

Per member i with frozen W_i, adapters A_i (r_i x in), B_i and scale s_i, on a shared input x:

    y_i = x W_i^T + b_i + (x A^T)[:, i] (s_i B_i)^T        with A = [A_1; ...; A_k]

The forward reads x once for every member's x A_i^T (one GEMM against the stacked A). The
backward, with gs = [g_1 s_1 B_1, ..., g_k s_k B_k] (N x sum r_i):

    dL/dx = gs A + sum_i g_i W_i       one low-rank GEMM, the k large ones accumulate onto it
    dL/dA = gs^T x                     one read of x for every member
    dL/dB_i = s_i g_i^T (x A_i^T)

so x is read twice instead of 2k times, and autograd does not have to add k separate input
gradients. Used in eager mode only: the module calls come one at a time, so the first member
called computes all outputs and hands the others theirs (`SharedInputGroup`). Where the group's
weights can share one tensor, it runs the stacked formulation instead (stacked.py).
"""

from __future__ import annotations

import weakref

import torch

from loraplan.runtime.fast import dropout, torch_ops
from loraplan.runtime.fast.functions import _as
from loraplan.runtime.fast.stacked import StackedLoraLinear, WeightStack


class GroupedLoraLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, spec, *tensors):
        # tensors: k weights, k biases (or None), k A's, k B's; spec: (k, scalings, ops, A_cat, [s_i B_i])
        # where A_cat and s_i B_i are compute-dtype copies of the adapters
        k, scalings, ops, a_cat, bs_list, drops = spec
        weights, biases, a_list, b_list = tensors[:k], tensors[k : 2 * k], tensors[2 * k : 3 * k], tensors[3 * k :]
        x2 = x.reshape(-1, x.shape[-1])
        ranks = [bs.shape[1] for bs in bs_list]
        if drops is None:
            xa = ops.down(x2, a_cat)
        else:  # a mask per member, drawn in the members' order, as PEFT's per-layer modules draw them
            parts, states = [], []
            for a, p in zip(a_cat.split(ranks), drops):
                x_low, state = dropout.draw(x2, p) if p > 0 else (x2, None)
                parts.append(ops.down(x_low, a))
                states.append(state)
            xa, drops = torch.cat(parts, dim=1), tuple(states)
        outs = []
        for w, bias, bs, part in zip(weights, biases, bs_list, xa.split(ranks, dim=1)):
            low = torch.mm(part, bs.t()) if bias is None else torch.addmm(bias, part, bs.t())
            outs.append(low.addmm_(x2, w.t()).view(*x.shape[:-1], w.shape[0]))
        ctx.save_for_backward(x2, xa, a_cat, *weights, *bs_list)
        ctx.k, ctx.scalings, ctx.ops, ctx.x_shape, ctx.drops = k, scalings, ops, x.shape, drops
        ctx.ab_dtypes = [(a.dtype, b.dtype) for a, b in zip(a_list, b_list)]
        ctx.ranks = ranks
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        k, ops = ctx.k, ctx.ops
        x2, xa, a_cat, *rest = ctx.saved_tensors
        weights, bs_list = rest[:k], rest[k:]
        flat = [None if g is None else _as(g.reshape(-1, g.shape[-1]), x2.dtype) for g in grads]
        gs = torch.cat(
            [torch.zeros(x2.shape[0], r, dtype=x2.dtype, device=x2.device) if g is None else ops.down(g, bs.t())
             for g, bs, r in zip(flat, bs_list, ctx.ranks)],
            dim=1,
        )  # fmt: skip
        if ctx.drops is not None:
            return _backward_dropped(ctx, x2, xa, a_cat, weights, flat, gs)
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.mm(gs, a_cat)
            for g, w in zip(flat, weights):
                if g is not None:
                    grad_x.addmm_(g, w)
            grad_x = grad_x.view(ctx.x_shape)
        a_dtypes = {a for a, _ in ctx.ab_dtypes}  # one dtype for the whole stack, not one cast per member
        grad_a_cat = ops.reduce(gs, x2, dtype=next(iter(a_dtypes)) if len(a_dtypes) == 1 else None)
        grad_as, grad_bs = [], []
        parts = zip(flat, grad_a_cat.split(ctx.ranks), xa.split(ctx.ranks, dim=1), ctx.scalings, ctx.ab_dtypes)
        for g, grad_a, xa_i, s, (a_dtype, b_dtype) in parts:
            grad_as.append(_as(grad_a, a_dtype))
            grad_bs.append(None if g is None else ops.reduce(xa_i, g, s, transpose=True, dtype=b_dtype))
        return (grad_x, None, *([None] * (2 * k)), *grad_as, *grad_bs)


def _backward_dropped(ctx, x2, xa, a_cat, weights, flat, gs):
    """The backward with per-member dropout: each member's mask made again from its seed."""
    k, ops, ranks = ctx.k, ctx.ops, ctx.ranks
    grad_x = None
    grad_as, grad_bs = [], []
    parts = zip(flat, a_cat.split(ranks), gs.split(ranks, dim=1), xa.split(ranks, dim=1), ctx.scalings,
                ctx.ab_dtypes, ctx.drops)  # fmt: skip
    for g, a, gs_i, xa_i, s, (a_dtype, b_dtype), drop in parts:
        x_low, masked = dropout.again(x2, drop)
        if ctx.needs_input_grad[0] and g is not None:
            if grad_x is None:
                grad_x = masked(torch.mm(gs_i, a))
            elif drop is None:
                grad_x.addmm_(gs_i, a)
            else:
                grad_x.add_(masked(torch.mm(gs_i, a)))
        grad_as.append(None if g is None else ops.reduce(gs_i, x_low, dtype=a_dtype))
        grad_bs.append(None if g is None else ops.reduce(xa_i, g, s, transpose=True, dtype=b_dtype))
    if grad_x is not None:
        for g, w in zip(flat, weights):
            if g is not None:
                grad_x.addmm_(g, w)
        grad_x = grad_x.view(ctx.x_shape)
    return (grad_x, None, *([None] * (2 * k)), *grad_as, *grad_bs)


class SharedInputGroup:
    """Coordinates sibling layers: the first one called on an input computes every member.

    The others, called next on the very same tensor, take their precomputed outputs. A member
    called on another tensor (cross-attention: k and v read the encoder states) computes alone,
    and the group turns itself off, so no work is spent on outputs nobody uses.
    """

    def __init__(self, members: list) -> None:
        self.members = list(members)  # strong references: deepcopy of a model copies the group with it
        self.enabled = True
        self.stack: WeightStack | None = None  # set by patch_model where stacking pays (stacked.py)
        self._x: weakref.ref | None = None
        self._version = -1
        self._pending: dict[int, torch.Tensor] = {}

    def take(self, member, x: torch.Tensor) -> torch.Tensor | None:
        """The output precomputed for `member` on `x`, or None."""
        if self._x is not None and self._x() is x and x._version == self._version and id(member) in self._pending:
            return self._pending.pop(id(member))
        if self._pending and id(member) in self._pending:
            self.enabled = False  # called on another input than its siblings: not a shared-input group
            self._pending.clear()
        return None

    def compute(self, member, x: torch.Tensor, name: str, ops, drops=None) -> torch.Tensor:
        """Every member's output on x; drops: each member's dropout p, or None when none drops."""
        layers = self.members
        weights, biases, a_list, b_list, scalings = [], [], [], [], []
        for layer in layers:
            base = layer.get_base_layer()
            weights.append(base.weight)
            biases.append(base.bias)
            a_list.append(layer.lora_A[name].weight)
            b_list.append(layer.lora_B[name].weight)
            scalings.append(layer.scaling[name])
        stack = self.stack
        if stack is not None and ops is torch_ops and drops is None and stack.ready():
            stack.refresh(a_list, b_list, scalings)
            outs = StackedLoraLinear.apply(x, stack, tuple(scalings), *biases, *a_list, *b_list)
        else:
            copies = fresh_copies(a_list, b_list, scalings, x.dtype)
            spec = (len(layers), tuple(scalings), ops, *copies, drops)
            outs = GroupedLoraLinear.apply(x, spec, *weights, *biases, *a_list, *b_list)
        self._x, self._version = weakref.ref(x), x._version
        self._pending = {id(layer): out for layer, out in zip(layers, outs) if layer is not member}
        return outs[layers.index(member)]


def fresh_copies(a_list, b_list, scalings, dtype) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(cat of the A's, [s_i B_i]) in `dtype`, made from the live parameters on every call.

    Never kept between calls (freshness.py says why): one cast of the stacked A's and one
    scaled cast per B, for all members of a group together.
    """
    with torch.no_grad():
        a_cat = a_list[0].detach() if len(a_list) == 1 else torch.cat([a.detach() for a in a_list])
        a_cat = _as(a_cat, dtype)
        bs = [_as(b.detach(), dtype) * s if s != 1.0 else _as(b.detach(), dtype) for b, s in zip(b_list, scalings)]
    return a_cat, bs
