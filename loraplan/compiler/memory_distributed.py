"""Memory per rank under FSDP or DeepSpeed ZeRO: what each GPU holds, and what goes to host memory.

The one-device estimate (memory.py) is split by what each engine shards over its S ranks
(S = `dp_shard_size` under FSDP, the world size under ZeRO):

  weights        FSDP and ZeRO-3: 1/S of every parameter. bitsandbytes' quantisation constants
                 (absmax, nested absmax) live in each weight's quant_state, which is not a
                 parameter: every rank keeps all of them. 4-bit weights stored as uint8 are left
                 out of FSDP2's sharding by accelerate (fsdp2_prepare_model): whole on every rank.
                 ZeRO-0/1/2 and plain data parallel: whole on every rank.
  gathered       FSDP and ZeRO-3 all-gather one unit (a decoder block) before it runs and
                 prefetch the next: two blocks, whole, plus the embeddings, final norm and
                 output layer (FSDP2 keeps the root unit, accelerate the norm and output
                 layer's unit, gathered from forward to backward). Without
                 reshard_after_forward (SHARD_GRAD_OP) every block stays gathered until backward.
  adapters       sharded like the weights they sit in (FSDP, ZeRO-3), else whole
  gradients      FSDP and ZeRO-2/3: 1/S (reduce-scattered); ZeRO-0/1, data parallel: whole
  optimizer      FSDP and ZeRO-1/2/3: 1/S; data parallel: whole
  offload        FSDP offload_params: the shards of weights, adapters, gradients and optimizer
                 state are in host memory (the optimizer steps there); ZeRO offload_optimizer:
                 the optimizer state; ZeRO-3 offload_param: the parameter shards. Quantisation
                 constants stay on the GPU (not parameters).
  activations    each rank runs its own micro-batch: as on one device; logits likewise
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from loraplan.compiler.architecture import Architecture
from loraplan.compiler.counting import quantized_modules
from loraplan.compiler.plan import MemoryEstimate, Totals

ONE_GPU_BYTES = 141 * 10**9  # an H200, the largest card the project measures on (docs/benchmarks.md)


def _weight_parts(config: Any, arch: Architecture, dtype_bytes: int) -> tuple[dict[Any, float], float]:
    """(bytes of the parameters per decoder-layer index (None: outside the blocks), quant constants).

    Parameter bytes are what a shard holds: packed 4-bit data (0.5 byte per weight), int8 data,
    or dtype bytes. The quantisation constants are returned apart (never sharded).
    """
    from loraplan.compiler.memory import DOUBLE_QUANT_BLOCK, NF4_BLOCK

    q = config.quantization
    four = bool(q and q.load_in_4bit)
    eight = bool(q and q.load_in_8bit)
    quant = quantized_modules(arch, q.llm_int8_skip_modules) if (four or eight) else set()
    by_layer: dict[Any, float] = {}
    constants = 0.0
    for p in arch.parameters:
        n = p.numel
        if p.module in quant and p.name == f"{p.module}.weight":
            if four:
                blocks = -(-n // NF4_BLOCK)
                constants += (blocks + 4 * -(-blocks // DOUBLE_QUANT_BLOCK)) if q.bnb_4bit_use_double_quant \
                    else 4 * blocks
                size = n / 2
            else:
                size = n
                constants += 4 * (p.shape[0] if p.shape else 1)
        else:
            size = n * dtype_bytes
        by_layer[p.layer] = by_layer.get(p.layer, 0.0) + size
    return by_layer, constants


def _adapter_by_layer(modules: list, params: list) -> dict[Any, float]:
    out: dict[Any, float] = {}
    for i in [*modules, *params]:
        out[i.layer] = out.get(i.layer, 0.0) + i.params * 4  # float32 adapters (memory.ADAPTER_BYTES)
    return out


def per_rank(config: Any, arch: Architecture, single: MemoryEstimate, totals: Totals,
             modules: list, params: list) -> MemoryEstimate:
    """The one-device estimate `single` turned into what each rank of `config.distributed` holds."""
    from loraplan.compiler.memory import CUDA_CONTEXT_BYTES, DTYPE_BYTES, FRAGMENTATION

    d = config.distributed
    engine, s, world = d.engine, d.shard_size, d.world_size
    fsdp, ds = d.fsdp, d.deepspeed
    zero = ds.zero_stage if ds is not None else -1
    dtype_bytes = DTYPE_BYTES[config.dtype]
    by_layer, constants = _weight_parts(config, arch, dtype_bytes)
    adapters = _adapter_by_layer(modules, params)
    storage = config.quantization.bnb_4bit_quant_storage if config.load_in_4bit else None
    param_sharded = fsdp is not None or zero == 3
    packed_whole = fsdp is not None and storage == "uint8"  # accelerate keeps them out of FSDP2's shards
    q_total = sum(by_layer.values())
    b = single.breakdown
    adapter_total, grads, optim = b["adapters"], b["gradients"], b["optimizer"]
    assumptions = [f"per rank: {world} ranks, {_engine_words(d)}"]

    if param_sharded:
        packed = _packed_total(config, arch) if packed_whole else 0.0
        weights = (q_total - packed) / s + packed
        adapters_held = adapter_total / s
        blocks = {k: v + adapters.get(k, 0.0) for k, v in by_layer.items() if k is not None}
        biggest = max(blocks.values(), default=0.0)
        root = by_layer.get(None, 0.0) + adapters.get(None, 0.0)
        if fsdp is not None and not fsdp.reshard_after_forward:
            gathered = sum(blocks.values()) + root
            how = "every block stays gathered from its forward to its backward (reshard_after_forward false)"
        else:
            gathered = 2 * biggest + root
            how = "two decoder blocks gathered at a time (the running one and the prefetched next) plus the root unit"
        assumptions.append(
            f"weights: 1/{s} of every parameter per rank"
            + ("; the 4-bit weights stored as uint8 whole on every rank (accelerate fsdp2_prepare_model leaves "
               "non-floating Params4bit out of FSDP2)" if packed_whole else "")
            + (f"; 4-bit weights packed in {storage} so that they shard as {storage} (bnb_4bit_quant_storage)"
               if storage and storage != "uint8" else "")
            + ("; bitsandbytes' quantisation constants (quant_state, not parameters) whole on every rank"
               if constants else ""))
        assumptions.append(f"gathered parameters: {how}, adapters included; the embeddings, final norm and output "
                           "layer counted gathered through the step (FSDP2 does not reshard the root unit after "
                           "forward; accelerate 1.15 gives the final norm and output layer a unit kept gathered "
                           "until backward)")
    else:
        weights, adapters_held, gathered = q_total, adapter_total, 0.0
        assumptions.append("weights and adapters: whole on every rank (" + (f"ZeRO-{zero} shards no parameters)"
                           if zero >= 0 else "data parallel replicates the model)"))
    grad_div = s if (fsdp is not None or zero >= 2) else 1
    opt_div = s if (fsdp is not None or zero >= 1) else 1
    grads_held, optim_held = grads / grad_div, optim / opt_div
    assumptions.append(f"gradients 1/{grad_div}, optimizer state 1/{opt_div} per rank")

    host: dict[str, int] = {}
    if fsdp is not None and fsdp.offload_params:
        host = {"weights": int(weights - (_packed_total(config, arch) if packed_whole else 0.0)),
                "adapters": int(adapters_held), "gradients": int(grads_held), "optimizer": int(optim_held)}
        weights -= host["weights"]
        adapters_held = grads_held = optim_held = 0.0
        assumptions.append("offload_params: the shards of weights, adapters, gradients and optimizer state in host "
                           "memory (the optimizer steps on the CPU); the GPU holds the gathered blocks")
    if ds is not None and ds.offload_optimizer_device != "none":
        host["optimizer"] = int(optim_held)
        optim_held = 0.0
        assumptions.append(f"offload_optimizer_device {ds.offload_optimizer_device}: optimizer state off the GPU")
    if ds is not None and zero == 3 and ds.offload_param_device != "none":
        host["weights"], host["adapters"] = int(weights), int(adapters_held)
        weights = adapters_held = 0.0
        assumptions.append(f"offload_param_device {ds.offload_param_device}: parameter shards off the GPU")

    acts, logits, dequant = b["activations"], b["logits"], b["dequant_buffer"]
    subtotal = weights + constants + gathered + adapters_held + grads_held + optim_held + acts + logits
    frag = int(FRAGMENTATION * subtotal)
    breakdown = {
        "weights": int(weights),
        "quant_constants": int(constants),
        "gathered_params": int(gathered),
        "adapters": int(adapters_held),
        "gradients": int(grads_held),
        "optimizer": int(optim_held),
        "activations": acts,
        "logits": logits,
        "dequant_buffer": dequant,
        "cuda_context": CUDA_CONTEXT_BYTES,
        "fragmentation": frag,
    }
    assumptions.append("activations and logits: each rank runs its own micro-batch, as on one device; "
                       "collective buffers (NCCL) are not counted")
    peak = int(subtotal) + dequant
    return replace(
        single,
        weights_bytes=int(weights + constants + gathered),
        adapter_bytes=int(adapters_held),
        gradient_bytes=int(grads_held),
        optimizer_bytes=int(optim_held),
        overhead_bytes=CUDA_CONTEXT_BYTES + dequant + frag,
        total_bytes=peak + CUDA_CONTEXT_BYTES + frag,
        peak_allocated_bytes=peak,
        breakdown=breakdown,
        assumptions=[*single.assumptions, *assumptions],
        scope="per rank",
        world_size=world,
        host_bytes=sum(host.values()),
        host_breakdown={k: v for k, v in host.items() if v},
        engine=engine,
    )


def _packed_total(config: Any, arch: Architecture) -> float:
    """Packed 4-bit data bytes (0.5 per quantised weight)."""
    q = config.quantization
    quant = quantized_modules(arch, q.llm_int8_skip_modules)
    return sum(p.numel / 2 for p in arch.parameters if p.module in quant and p.name == f"{p.module}.weight")


def _engine_words(d: Any) -> str:
    if d.fsdp is not None:
        f = d.fsdp
        mode = "FULL_SHARD" if f.reshard_after_forward else "SHARD_GRAD_OP"
        if d.shard_size < d.world_size:
            mode = f"HYBRID_SHARD (sharded over {d.shard_size}, {d.world_size // d.shard_size} replicas)"
        return f"FSDP{f.version} {mode}" + (", parameters offloaded to the CPU" if f.offload_params else "")
    if d.deepspeed is not None:
        z = d.deepspeed
        off = [f"{k} to {v}" for k, v in (("optimizer", z.offload_optimizer_device),
                                          ("parameters", z.offload_param_device)) if v != "none"]
        return f"DeepSpeed ZeRO-{z.zero_stage}" + (f", {' and '.join(off)}" if off else "")
    return "data parallel (every rank holds the whole model)"



def fit_diagnostics(config: Any, memory: MemoryEstimate | None, source: Any) -> list:
    """LP580 / LP581: a step that no single GPU holds, said where the user can act on it."""
    from loraplan.schema.diagnostic import Diagnostic

    if memory is None or memory.total_bytes <= ONE_GPU_BYTES:
        return []
    need = f"{memory.total_bytes / 2**30:,.1f} GiB"
    if config.distributed is None:
        diag = Diagnostic(
            "LP580", "warning",
            f"the estimate for one training step on one device is {need}, more than one GPU holds (an H200 has "
            "141 GB = 131 GiB): this config needs several ranks",
            hint="add `distributed: {world_size: N, fsdp: {version: 2}}` (or deepspeed: {zero_stage: 3}) for an "
                 "estimate per rank; for Axolotl, fsdp / fsdp_config or deepspeed")
        path = ("base_model",)
    else:
        diag = Diagnostic(
            "LP581", "warning",
            f"the estimate per rank is {need} with {memory.world_size} ranks ({memory.engine}), more than one GPU "
            "holds (an H200 has 141 GB = 131 GiB)",
            hint="more ranks, FSDP / ZeRO-3 parameter sharding, CPU offload, or a shorter sequence")
        path = ("distributed",)
    if source is None:
        return [diag]
    return [diag.at(source.key_span(path) or source.key_span(("base_model",)), source.file)]
