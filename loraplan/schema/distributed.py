"""The `distributed:` section: how many ranks train, and how FSDP or DeepSpeed ZeRO shard them.

Names are the engines' own, as accelerate passes them on: FSDP's `reshard_after_forward`
(torch `fully_shard`; FSDP1's FULL_SHARD / SHARD_GRAD_OP), `offload_params` (FSDP2
`CPUOffloadPolicy`, FSDP1 `CPUOffload(offload_params=True)`), accelerate's `dp_shard_size`
(HYBRID_SHARD when smaller than the world), and accelerate's DeepSpeedPlugin `zero_stage`,
`offload_optimizer_device`, `offload_param_device` (DeepSpeed's `zero_optimization.stage`,
`offload_optimizer.device`, `offload_param.device`). The plan's memory estimate is per rank
when this section is given (compiler/memory_distributed.py).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

OffloadDevice = Literal["none", "cpu", "nvme"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=False)


class FsdpSection(_Strict):
    """PyTorch FSDP, as accelerate (and Axolotl through it) sets it up."""

    version: Literal[1, 2] = Field(
        2, description="2: torch.distributed.fsdp.fully_shard (per-parameter DTensor shards); 1: the "
        "FullyShardedDataParallel wrapper (flat parameters of one dtype per unit).")
    reshard_after_forward: bool = Field(
        True, description="Free each unit's gathered parameters after its forward and gather them again in "
        "backward (FULL_SHARD); false keeps them from forward to backward (SHARD_GRAD_OP): more memory, "
        "fewer all-gathers.")
    dp_shard_size: int | None = Field(
        None, ge=1, description="Ranks one copy of the model is sharded over (default: world_size). Fewer "
        "than world_size is HYBRID_SHARD: sharded within groups of this size, replicated across groups.")
    offload_params: bool = Field(
        False, description="Keep the sharded parameters, their gradients and the optimizer step in host "
        "memory (FSDP2 CPUOffloadPolicy, FSDP1 CPUOffload(offload_params=True)).")


class DeepSpeedSection(_Strict):
    """DeepSpeed ZeRO, under accelerate's DeepSpeedPlugin names."""

    zero_stage: Literal[0, 1, 2, 3] = Field(
        ..., description="ZeRO stage: 1 shards the optimizer state, 2 also the gradients, 3 also the parameters.")
    offload_optimizer_device: OffloadDevice = Field(
        "none", description="ZeRO-Offload: optimizer state (and its step) on the CPU or NVMe (stages 1-3).")
    offload_param_device: OffloadDevice = Field(
        "none", description="ZeRO-Infinity: parameters on the CPU or NVMe (stage 3 only).")


class DistributedSection(_Strict):
    """Data-parallel training over several ranks (one GPU each)."""

    world_size: int = Field(..., ge=1, le=1_000_000, description="Ranks (GPUs) in total, over all nodes.")
    fsdp: FsdpSection | None = Field(None, description="Shard with PyTorch FSDP.")
    deepspeed: DeepSpeedSection | None = Field(None, description="Shard with DeepSpeed ZeRO.")

    @property
    def engine(self) -> str:
        """'fsdp1', 'fsdp2', 'zero0'..'zero3', or 'ddp' (replicas, nothing sharded)."""
        if self.fsdp is not None:
            return f"fsdp{self.fsdp.version}"
        if self.deepspeed is not None:
            return f"zero{self.deepspeed.zero_stage}"
        return "ddp"

    @property
    def shard_size(self) -> int:
        """Ranks the sharded state is divided over."""
        if self.fsdp is not None:
            return min(self.fsdp.dp_shard_size or self.world_size, self.world_size)
        if self.deepspeed is not None and self.deepspeed.zero_stage > 0:
            return self.world_size
        return 1
