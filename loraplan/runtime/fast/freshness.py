"""When the compute-dtype copies of the adapters (and the B columns of a stack) must be remade.

The fast path keeps A, s B (or B in a stack) in the compute dtype between calls: remaking them
is a handful of kernel launches per layer, and an eager step is partly bound by launches. A copy
is stale once an adapter changes, which shows in one of three ways:

- its storage (`data_ptr`) or version counter changed: in-place updates through the tensor
  itself (torch optimizers, `load_state_dict`, `copy_` under `no_grad`);
- any optimizer stepped: bitsandbytes' optimizers (0.50: AdamW, AdamW8bit, the paged ones)
  write the parameters through their own operator without bumping version counters, as fused
  C++-extension optimizers do, so every `torch.optim.Optimizer.step` (theirs included) counts
  as a change, through a global step hook;
- `adapters_changed()` was called: for writes through `.data`, which nothing can see.
"""

from __future__ import annotations

from torch.optim.optimizer import register_optimizer_step_post_hook

_GENERATION = [0]
_HOOK: list = []


def adapters_changed() -> None:
    """Mark every kept adapter copy stale (call after editing adapters through `.data`)."""
    _GENERATION[0] += 1


def watch_optimizers() -> None:
    """Count every optimizer step as an adapter change (installed once per process)."""
    if not _HOOK:
        _HOOK.append(register_optimizer_step_post_hook(lambda *_: adapters_changed()))


def key(tensors, *extra) -> tuple:
    """A value that changes whenever any of `tensors` may have changed (see module doc)."""
    return (_GENERATION[0], *extra, *((t.data_ptr(), t._version) for t in tensors))
