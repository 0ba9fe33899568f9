r"""Triton kernels for the rank-r products of LoRA training (imported only where Triton and CUDA are).

Memory-bound loops that read the large operand once, keep the r-wide side in registers, read
fp32 adapter masters directly (no cast kernels), and apply the LoRA scale in the epilogue:

    down(x, w, alpha)        alpha * x w^T          x: N x K, w: r x K         -> N x r
    reduce(s, x, alpha)      alpha * s^T x          s: N x r, x: N x D         -> r x D (fp32 sums)
    merge(w, b, a, alpha)    w + alpha * b a        w: M x K, b: M x r, a: r x K

Measured on an H200 (benchmarks/lowrank_kernels.py): `merge` runs 2-2.4x faster than cuBLAS's
rank-r `addmm`, and is what `loraplan::merge_lowrank` calls; the skinny `down` and `reduce`
products match cuBLAS, which already runs them near bandwidth, so they are opt-in
(`patch_model(kernels="triton")`).
`reduce` splits N over programs and sums the partials in a fixed order (deterministic).
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl


def _pad(r: int) -> int:
    return max(16, triton.next_power_of_2(r))


@triton.autotune(
    configs=[
        triton.Config({"BLOCK_N": bn, "BLOCK_K": bk}, num_warps=w, num_stages=s)
        for bn, bk, w, s in ((32, 128, 4, 4), (64, 128, 4, 4), (64, 64, 4, 5), (128, 64, 8, 4), (32, 256, 4, 3))
    ],
    key=["N", "K", "R_PAD"],
)
@triton.jit
def _down_kernel(x_ptr, w_ptr, y_ptr, N, K, R, sxn, sxk, swr, swk, syn, syr, alpha,
                 R_PAD: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):  # fmt: skip
    rows = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    rr = tl.arange(0, R_PAD)
    acc = tl.zeros((BLOCK_N, R_PAD), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        ks = k0 + tl.arange(0, BLOCK_K)
        x = tl.load(x_ptr + rows[:, None] * sxn + ks[None, :] * sxk, mask=(rows[:, None] < N) & (ks[None, :] < K),
                    other=0.0)  # fmt: skip
        w = tl.load(w_ptr + rr[None, :] * swr + ks[:, None] * swk, mask=(rr[None, :] < R) & (ks[:, None] < K),
                    other=0.0)  # fmt: skip
        acc += tl.dot(x, w.to(x.dtype))
    acc = acc * alpha
    mask = (rows[:, None] < N) & (rr[None, :] < R)
    tl.store(y_ptr + rows[:, None] * syn + rr[None, :] * syr, acc.to(y_ptr.dtype.element_ty), mask=mask)


@triton.autotune(
    configs=[
        triton.Config({"BLOCK_N": bn, "BLOCK_D": bd}, num_warps=w, num_stages=s)
        for bn, bd, w, s in ((64, 128, 4, 4), (128, 64, 4, 4), (64, 256, 8, 3), (128, 128, 8, 3))
    ],
    key=["N", "D", "R_PAD", "ROWS"],
)
@triton.jit
def _reduce_kernel(s_ptr, x_ptr, c_ptr, N, D, R, ROWS, ssn, ssr, sxn, sxd, csplit, csr, csd, alpha,
                   R_PAD: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr):  # fmt: skip
    ds = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
    split = tl.program_id(1)
    rr = tl.arange(0, R_PAD)
    acc = tl.zeros((R_PAD, BLOCK_D), dtype=tl.float32)
    start = split * ROWS
    stop = tl.minimum(start + ROWS, N)
    for n0 in range(start, stop, BLOCK_N):
        ns = n0 + tl.arange(0, BLOCK_N)
        s = tl.load(s_ptr + ns[None, :] * ssn + rr[:, None] * ssr, mask=(ns[None, :] < stop) & (rr[:, None] < R),
                    other=0.0)  # fmt: skip
        x = tl.load(x_ptr + ns[:, None] * sxn + ds[None, :] * sxd, mask=(ns[:, None] < stop) & (ds[None, :] < D),
                    other=0.0)  # fmt: skip
        acc += tl.dot(s.to(x.dtype), x)
    acc = acc * alpha
    mask = (rr[:, None] < R) & (ds[None, :] < D)
    ptrs = c_ptr + split * csplit + rr[:, None] * csr + ds[None, :] * csd
    tl.store(ptrs, acc.to(c_ptr.dtype.element_ty), mask=mask)


@triton.autotune(
    configs=[
        triton.Config({"BLOCK_M": bm, "BLOCK_K": bk}, num_warps=w, num_stages=s)
        for bm, bk, w, s in ((64, 128, 4, 3), (128, 128, 8, 3), (64, 256, 8, 3), (128, 64, 4, 3))
    ],
    key=["M", "K", "R_PAD"],
)
@triton.jit
def _merge_kernel(w_ptr, b_ptr, a_ptr, y_ptr, M, K, R, swm, swk, sbm, sbr, sar, sak, sym, syk, alpha,
                  R_PAD: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr):  # fmt: skip
    ms = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    ks = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)
    rr = tl.arange(0, R_PAD)
    w = tl.load(w_ptr + ms[:, None] * swm + ks[None, :] * swk, mask=(ms[:, None] < M) & (ks[None, :] < K), other=0.0)
    b = tl.load(b_ptr + ms[:, None] * sbm + rr[None, :] * sbr, mask=(ms[:, None] < M) & (rr[None, :] < R), other=0.0)
    a = tl.load(a_ptr + rr[:, None] * sar + ks[None, :] * sak, mask=(rr[:, None] < R) & (ks[None, :] < K), other=0.0)
    low = tl.dot(b.to(w.dtype), a.to(w.dtype))
    out = w.to(tl.float32) + low * alpha
    mask = (ms[:, None] < M) & (ks[None, :] < K)
    tl.store(y_ptr + ms[:, None] * sym + ks[None, :] * syk, out.to(y_ptr.dtype.element_ty), mask=mask)


@functools.lru_cache(maxsize=8)
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def down(x: torch.Tensor, w: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """alpha * x @ w^T for x (N x K) and a thin w (r x K, any float dtype), in x's dtype."""
    n, k = x.shape
    r = w.shape[0]
    y = torch.empty(n, r, dtype=x.dtype, device=x.device)
    grid = lambda meta: (triton.cdiv(n, meta["BLOCK_N"]),)  # noqa: E731
    _down_kernel[grid](x, w, y, n, k, r, *x.stride(), *w.stride(), *y.stride(), float(alpha), R_PAD=_pad(r))
    return y


def reduce(s: torch.Tensor, x: torch.Tensor, alpha: float = 1.0, transpose: bool = False, dtype=None) -> torch.Tensor:
    """alpha * s^T @ x (r x D, fp32 or `dtype`) for s (N x r) and x (N x D); transpose=True gives D x r."""
    n, r = s.shape
    d = x.shape[1]
    sms = _sm_count(x.device.index or 0)
    blocks_d = triton.cdiv(d, 128)
    splits = max(1, min(triton.cdiv(2 * sms, blocks_d), n // 512))
    rows = triton.cdiv(triton.cdiv(n, splits), 128) * 128  # a multiple of every BLOCK_N
    splits = triton.cdiv(n, rows)
    shape = (splits, d, r) if transpose else (splits, r, d)
    part = torch.empty(shape, dtype=torch.float32, device=x.device)
    csplit = part.stride(0)
    csr, csd = (part.stride(2), part.stride(1)) if transpose else (part.stride(1), part.stride(2))
    grid = lambda meta: (triton.cdiv(d, meta["BLOCK_D"]), splits)  # noqa: E731
    _reduce_kernel[grid](s, x, part, n, d, r, rows, *s.stride(), *x.stride(), csplit, csr, csd, float(alpha),
                         R_PAD=_pad(r))  # fmt: skip
    out = part[0] if splits == 1 else part.sum(0)
    return out if dtype is None or dtype == out.dtype else out.to(dtype)


def merge(w: torch.Tensor, b: torch.Tensor, a: torch.Tensor, alpha: float = 1.0) -> torch.Tensor:
    """w + alpha * b @ a in w's dtype, for w (M x K), b (M x r), a (r x K) of any float dtype."""
    m, k = w.shape
    r = a.shape[0]
    y = torch.empty_like(w)
    grid = lambda meta: (triton.cdiv(m, meta["BLOCK_M"]), triton.cdiv(k, meta["BLOCK_K"]))  # noqa: E731
    _merge_kernel[grid](w, b, a, y, m, k, r, *w.stride(), *b.stride(), *a.stride(), *y.stride(), float(alpha),
                        R_PAD=_pad(r))  # fmt: skip
    return y
