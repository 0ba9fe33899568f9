r"""LoRA dropout inside the fused functions, its mask regenerated from a seed instead of stored.

PEFT computes lora_B(lora_A(dropout(x))) s: the dropped input (and, in autograd, the mask)
stay alive until backward, for every adapted layer. Here each call draws a seed, and the mask
m (0 or 1, x's shape and dtype) is made from it twice: in forward for x A^T, in backward for
dL/dA and the low-rank part of dL/dx. Nothing N-sized beyond x is kept. With keep = 1 - p:

    y      = x W^T + b + s ((x * m) A^T / keep) B^T
    dL/dx  = g W + m * (gs A) / keep,     gs = s (g B)
    dL/dA  = gs^T (x * m) / keep,         dL/dB = s g^T xa

The seed comes from torch's CPU generator, so `torch.manual_seed` fixes the masks, and
activation checkpointing (which restores the CPU generator's state before recomputing) draws
the same ones again. Each adapted layer gets its own mask, as PEFT's per-layer dropout modules
do (Axolotl's kernels share one mask across q/k/v and across gate/up; PEFT does not).
"""

from __future__ import annotations

import torch
from torch import nn

_GENERATORS: dict[torch.device, torch.Generator] = {}


def active_p(module: nn.Module) -> float:
    """The dropout probability this module applies now (0.0: none, or eval mode)."""
    if isinstance(module, nn.Dropout) and module.training and module.p > 0:
        return float(module.p)
    return 0.0


def draw_seed() -> int:
    """A seed for one call's mask, from torch's CPU generator (host-side: no device sync)."""
    return int(torch.randint(0, 2**62, (), dtype=torch.int64))


def keep_mask(like: torch.Tensor, keep: float, seed: int) -> torch.Tensor:
    """0/1 in like's shape and dtype, 1 with probability `keep`: the same tensor for the same seed."""
    gen = _GENERATORS.get(like.device)
    if gen is None:
        gen = _GENERATORS[like.device] = torch.Generator(device=like.device)
    gen.manual_seed(seed)
    return torch.empty_like(like).bernoulli_(keep, generator=gen)


def dropped(x2: torch.Tensor, drop) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(x * m, m) for drop = (keep, seed); (x, None) for drop None."""
    if drop is None:
        return x2, None
    m = keep_mask(x2, drop[0], drop[1])
    return x2 * m, m
