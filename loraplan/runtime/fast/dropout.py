r"""LoRA dropout inside the fused functions: PEFT's masks, made again in backward instead of stored.

PEFT computes lora_B(lora_A(dropout(x))) s with an nn.Dropout per layer, whose dropped input
and mask stay alive until backward. Here the forward draws the dropped input with the same call
from the same generator state as PEFT's nn.Dropout (`torch.native_dropout` on CUDA, where
`F.dropout` runs it; `F.dropout` elsewhere), keeps only that generator's state (a few bytes on
the host), and the backward sets the state back to draw the same mask again. With the same seed
and the layers called in the same order, the masks are PEFT's (tests/runtime/fast/test_dropout.py);
nothing N-sized beyond x is kept. With keep = 1 - p and d = x * m / keep:

    y      = x W^T + b + s (d A^T) B^T
    dL/dx  = g W + m * (gs A) / keep,     gs = s (g B)
    dL/dA  = gs^T d,                      dL/dB = s g^T (d A^T)

Activation checkpointing sets the generators back before recomputing, so it draws the same masks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def active_p(module: nn.Module) -> float:
    """The dropout probability this module applies now (0.0: none, or eval mode)."""
    if type(module) is nn.Dropout and module.training and module.p > 0:
        return float(module.p)
    return 0.0


def supported(device: torch.device) -> bool:
    """Devices whose default generator the fused path can set back (others keep PEFT's layer)."""
    return device.type in ("cuda", "cpu")


def _generator(device: torch.device) -> torch.Generator:
    if device.type == "cuda":
        return torch.cuda.default_generators[device.index if device.index is not None else torch.cuda.current_device()]
    return torch.default_generator


def draw(x2: torch.Tensor, p: float) -> tuple[torch.Tensor, tuple]:
    """(x * m / keep, how to draw m again): the forward's dropped input, as nn.Dropout draws it."""
    state = _generator(x2.device).get_state()
    if x2.is_cuda:
        return torch.native_dropout(x2, p, True)[0], (p, state)
    return F.dropout(x2, p, True), (p, state)


def again(x2: torch.Tensor, drop: tuple | None):
    """(x * m / keep, masker) with the forward's mask m; masker(t) = t * m / keep (may reuse t).

    drop None (no dropout): (x2, identity).
    """
    if drop is None:
        return x2, _same
    p, state = drop
    gen = _generator(x2.device)
    now = gen.get_state()
    gen.set_state(state)
    try:
        if x2.is_cuda:
            dropped, m = torch.native_dropout(x2, p, True)
            scale = 1.0 / (1.0 - p)
            return dropped, lambda t: torch.ops.aten.native_dropout_backward(t, m, scale)
        mk = F.dropout(torch.ones_like(x2), p, True)  # the same noise as F.dropout(x2) draws: m / keep
        return x2 * mk, lambda t: t.mul_(mk)
    finally:
        gen.set_state(now)


def _same(t: torch.Tensor) -> torch.Tensor:
    return t
