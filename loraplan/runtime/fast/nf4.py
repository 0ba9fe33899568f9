"""bitsandbytes' 4-bit dequantisation kernels called directly, with the least Python per call.

`bitsandbytes.functional.dequantize_4bit` validates its arguments and goes through two
registered Python operators on every call; an eager QLoRA step calls it twice per layer
(forward and backward), and that step is bound by the host (docs/benchmarks.md). Here each call
is the two kernels bitsandbytes itself launches for a double-quantised weight (the blockwise
absmax, then the 4-bit codes) through its C library, on the packed storage bitsandbytes keeps;
nothing about the storage format changes. Where that is not possible (CPU, an unfamiliar quant
state) it calls `dequantize_4bit` as before.
"""

from __future__ import annotations

import ctypes

import torch

_KERNELS: dict = {}


def _kernels():
    if not _KERNELS:
        from bitsandbytes.functional import lib

        _KERNELS.update({
            ("nf4", torch.bfloat16): lib.cdequantize_blockwise_bf16_nf4,
            ("nf4", torch.float16): lib.cdequantize_blockwise_fp16_nf4,
            ("nf4", torch.float32): lib.cdequantize_blockwise_fp32_nf4,
            ("fp4", torch.bfloat16): lib.cdequantize_blockwise_bf16_fp4,
            ("fp4", torch.float16): lib.cdequantize_blockwise_fp16_fp4,
            ("fp4", torch.float32): lib.cdequantize_blockwise_fp32_fp4,
            "absmax": lib.cdequantize_blockwise_fp32,
        })
    return _KERNELS


def _direct(weight: torch.Tensor) -> bool:
    qs = getattr(weight, "quant_state", None)
    return (weight.is_cuda and qs is not None and weight.is_contiguous() and (qs.quant_type, qs.dtype) in _kernels()
            and (not qs.nested or (qs.state2.absmax.dtype == torch.float32 and qs.absmax.is_contiguous())))


def dequantize(weight: torch.Tensor, again: bool = False) -> torch.Tensor:
    """The weight of a bitsandbytes 4-bit parameter in its quant state's dtype and shape.

    `again` is accepted for the merged formulation's callers (patch._dequantize_4bit) and ignored.
    """
    if not _direct(weight):
        import bitsandbytes.functional as bnbf

        return bnbf.dequantize_4bit(weight, weight.quant_state)
    qs = weight.quant_state
    kernels = _kernels()
    stream = ctypes.c_void_p(torch._C._cuda_getCurrentRawStream(weight.device.index))
    absmax = qs.absmax
    if qs.nested:
        n = absmax.numel()
        out_absmax = torch.empty(n, dtype=torch.float32, device=weight.device)
        s2 = qs.state2
        kernels["absmax"](ctypes.c_void_p(s2.code.data_ptr()), ctypes.c_void_p(absmax.data_ptr()),
                          ctypes.c_void_p(s2.absmax.data_ptr()), ctypes.c_void_p(out_absmax.data_ptr()),
                          ctypes.c_int(s2.blocksize), ctypes.c_int(n), stream)  # fmt: skip
        absmax = out_absmax.add_(qs.offset)
    out = torch.empty(tuple(qs.shape), dtype=qs.dtype, device=weight.device)
    kernels[(qs.quant_type, qs.dtype)](None, ctypes.c_void_p(weight.data_ptr()), ctypes.c_void_p(absmax.data_ptr()),
                                       ctypes.c_void_p(out.data_ptr()), ctypes.c_int(qs.blocksize),
                                       ctypes.c_int(out.numel()), stream)  # fmt: skip
    return out.t() if weight.shape[0] == 1 else out
