"""Why the fast path keeps no adapter copy between calls.

Earlier versions kept A and s B in the compute dtype from one optimizer step to the next and
renewed them when a version counter moved or an optimizer stepped. Writes through `.data`
(`p.data.normal_()`, `p.data.copy_(...)`), storage swaps by sharded training (FSDP2 unsharding
into a buffer, DeepSpeed ZeRO-3 gathering) and some loaders move no counter, so a kept copy
could go stale and the outputs were silently wrong (issue 12, item 6). No check reads a tensor's
values for free, so the copies are now made on every call from the live parameters: a cast and a
scale per adapter (two or three small kernels), shared by the members of a group.

`adapters_changed()` stays for code written against the old contract; it has nothing to do.
"""

from __future__ import annotations


def adapters_changed() -> None:
    """No-op, kept for compatibility: the fast path reads the adapters afresh on every call."""
