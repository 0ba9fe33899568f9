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
called computes all outputs and hands the others theirs (`SharedInputGroup`).
"""

from __future__ import annotations

import weakref

import torch


class GroupedLoraLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, spec, *tensors):
        # tensors: k weights, k biases (or None), k A's, k B's; spec: (k, scalings)
        k, scalings = spec
        weights, biases, a_list, b_list = tensors[:k], tensors[k : 2 * k], tensors[2 * k : 3 * k], tensors[3 * k :]
        x2 = x.reshape(-1, x.shape[-1])
        a_cat = torch.cat([a.to(x.dtype) for a in a_list])
        bs = [b.to(x.dtype) * s for b, s in zip(b_list, scalings)]
        xa = x2 @ a_cat.t()
        outs, start = [], 0
        for w, bias, b in zip(weights, biases, bs):
            r = b.shape[1]
            part = xa[:, start : start + r]
            low = part @ b.t() if bias is None else torch.addmm(bias, part, b.t())
            outs.append(low.addmm_(x2, w.t()).view(*x.shape[:-1], w.shape[0]))
            start += r
        ctx.save_for_backward(x2, xa, a_cat, *weights, *bs)
        ctx.k, ctx.scalings, ctx.x_shape = k, scalings, x.shape
        ctx.ab_dtypes = [(a.dtype, b.dtype) for a, b in zip(a_list, b_list)]
        ctx.ranks = [b.shape[1] for b in b_list]
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads):
        k = ctx.k
        x2, xa, a_cat, *rest = ctx.saved_tensors
        weights, bs = rest[:k], rest[k:]
        flat = [None if g is None else g.reshape(-1, g.shape[-1]).to(x2.dtype) for g in grads]
        gs = torch.cat(
            [torch.zeros(x2.shape[0], r, dtype=x2.dtype, device=x2.device) if g is None else g @ b
             for g, b, r in zip(flat, bs, ctx.ranks)],
            dim=1,
        )  # fmt: skip
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = gs @ a_cat
            for g, w in zip(flat, weights):
                if g is not None:
                    grad_x.addmm_(g, w)
            grad_x = grad_x.view(ctx.x_shape)
        grad_a_cat = gs.t() @ x2
        grad_as, grad_bs, start = [], [], 0
        for i, (g, r) in enumerate(zip(flat, ctx.ranks)):
            a_dtype, b_dtype = ctx.ab_dtypes[i]
            grad_as.append(grad_a_cat[start : start + r].to(a_dtype))
            if g is None:
                grad_bs.append(None)
            else:
                grad_bs.append((g.t() @ xa[:, start : start + r]).mul_(ctx.scalings[i]).to(b_dtype))
            start += r
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

    def compute(self, member, x: torch.Tensor, name: str) -> torch.Tensor:
        layers = self.members
        weights, biases, a_list, b_list, scalings = [], [], [], [], []
        for layer in layers:
            base = layer.get_base_layer()
            weights.append(base.weight)
            biases.append(base.bias)
            a_list.append(layer.lora_A[name].weight)
            b_list.append(layer.lora_B[name].weight)
            scalings.append(layer.scaling[name])
        outs = GroupedLoraLinear.apply(x, (len(layers), tuple(scalings)), *weights, *biases, *a_list, *b_list)
        self._x, self._version = weakref.ref(x), x._version
        self._pending = {id(layer): out for layer, out in zip(layers, outs) if layer is not member}
        return outs[layers.index(member)]
