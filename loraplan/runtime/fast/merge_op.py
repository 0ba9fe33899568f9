"""`loraplan::merge_lowrank`, W + s B A as one PyTorch operator: Triton on CUDA, cuBLAS elsewhere.

A registered operator (not a Python call) so that torch.compile keeps it whole: inductor lowers
a rank-r `addmm` to cuBLAS, which runs this write-bound update at about half the bandwidth of
loraplan's Triton kernel on an H200 (benchmarks/lowrank_kernels.py), and the update runs twice
per step for every adapted layer in the merged formulation.
"""

from __future__ import annotations

import torch


def _addmm(w: torch.Tensor, b: torch.Tensor, a: torch.Tensor, alpha: float) -> torch.Tensor:
    return torch.addmm(w, b.to(w.dtype), a.to(w.dtype), alpha=alpha)


def _merge(w: torch.Tensor, b: torch.Tensor, a: torch.Tensor, alpha: float) -> torch.Tensor:
    if w.is_cuda and w.dtype in (torch.bfloat16, torch.float16):  # Triton's fp32 dot would be TF32
        from loraplan.runtime.fast.patch import triton_ops

        kernels = triton_ops()
        if kernels is not None:
            return kernels.merge(w, b, a, alpha)
    return _addmm(w, b, a, alpha)


def _operator(name: str, doc: str):
    """Register `loraplan::<name>`, computing `_merge`, with the fake that compiled graphs trace."""

    def merge(w: torch.Tensor, b: torch.Tensor, a: torch.Tensor, alpha: float) -> torch.Tensor:
        return _merge(w, b, a, alpha)

    merge.__doc__ = doc
    op = torch.library.custom_op(f"loraplan::{name}", merge, mutates_args=())
    op.register_fake(lambda w, b, a, alpha: torch.empty_like(w))
    return op


merge_lowrank = _operator("merge_lowrank", "w + alpha * b @ a in w's dtype (b: M x r, a: r x K, any float dtype).")
# The same under another name. The backward's recompute now uses a plain addmm instead (torch_ops.merge
# says why); kept for code that calls it. A compiled graph deduplicates
# identical calls: with one name, the backward's W + s B A is the forward's, which the graph then
# keeps alive from forward to backward, a merged copy of every adapted weight (for a 4-bit base,
# four times its 4-bit size). The second name makes the backward compute it afresh, as the eager
# autograd function does (tests/runtime/fast/test_compiled.py).
merge_lowrank_again = _operator("merge_lowrank_again", "merge_lowrank, recomputed in backward.")
