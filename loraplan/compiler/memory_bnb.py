"""What two bitsandbytes loading options do to GPU memory (memory.py calls these).

- llm_int8_has_fp16_weight: transformers' Int8Params keep the 16-bit weight (2 bytes per element,
  no int8 copy, no per-row scale at rest), and bitsandbytes' MatMul8bitLt quantises it again on
  every forward (int8_vectorwise_quant: one int8 element plus one float32 scale per row, freed after
  the matmul): the scratch of the largest quantised weight is added to the overhead.
- llm_int8_enable_fp32_cpu_offload: only with a device_map that places modules on "cpu" / "disk";
  transformers then leaves those modules unquantised, in float32, in CPU memory. loraplan's config
  has no device_map, so the GPU estimate is unchanged; the assumption says so.
"""

from __future__ import annotations

from typing import Any


def int8_weight_bytes(quant: Any, numel: int, rows: int) -> float:
    """Bytes of one LLM.int8 weight at rest."""
    if quant.llm_int8_has_fp16_weight:
        return 2.0 * numel
    return numel + 4.0 * rows  # int8 + one float32 scale (SCB) per output row


def int8_scratch_bytes(quant: Any, largest: int, largest_rows: int) -> int:
    """The per-forward int8 copy has_fp16_weight makes of the largest weight (0 otherwise)."""
    if quant is None or not quant.load_in_8bit or not quant.llm_int8_has_fp16_weight:
        return 0
    return int(largest + 4 * largest_rows)


def assumptions(quant: Any) -> list[str]:
    out: list[str] = []
    if quant is None:
        return out
    if quant.load_in_8bit and quant.llm_int8_has_fp16_weight:
        out.append("llm_int8_has_fp16_weight: the 8-bit modules keep 16-bit weights (2 bytes/element) and are "
                   "quantised again at each forward (one int8 copy of the largest weight in the overhead)")
    if quant.llm_int8_enable_fp32_cpu_offload and (quant.load_in_8bit or quant.load_in_4bit):
        out.append("llm_int8_enable_fp32_cpu_offload: modules a device_map sends to cpu/disk stay unquantised in "
                   "float32 in CPU memory; with no device_map (as here) every module is on this GPU, as estimated")
    return out
