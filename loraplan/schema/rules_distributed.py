"""Cross-field rules of `distributed:`: the combinations FSDP or DeepSpeed refuse, or that break.

Each finding names where the engine says so (its code or its documentation); the versions read
are those pinned in constraints/ci.txt (torch, accelerate 1.15, PEFT 0.21) and bitsandbytes'
FSDP-QLoRA guide. Registered with rules.py's RULES through `rules.rule`.
"""

from __future__ import annotations

from collections.abc import Iterator

from loraplan.schema.config import Config
from loraplan.schema.diagnostic import Diagnostic
from loraplan.schema.rules import _d, _set, rule
from loraplan.schema.yaml_source import SourceDoc

PEFT_FSDP = "PEFT docs, accelerate/fsdp.md"
PEFT_DS = "PEFT docs, accelerate/deepspeed.md"
ACCELERATE_FSDP2 = "accelerate utils/fsdp_utils.py fsdp2_prepare_model"


def _where(doc: SourceDoc, *paths: tuple) -> tuple:
    """The first of `paths` the user wrote, else the last (the section itself)."""
    return next((p for p in paths if _set(doc, p)), paths[-1])


@rule
def engines(c: Config, doc: SourceDoc) -> Iterator[Diagnostic]:
    d = c.distributed
    if d is None:
        return
    if d.fsdp is not None and d.deepspeed is not None:
        yield _d(doc, ("distributed", "deepspeed"), "LP350", "error",
                 "fsdp and deepspeed are both set: accelerate runs one distributed type (Axolotl refuses: "
                 "\"deepspeed and fsdp cannot be used together\")", hint="keep one of the two sections")
    if d.fsdp is not None and d.fsdp.dp_shard_size is not None:
        n = d.fsdp.dp_shard_size
        if n > d.world_size or d.world_size % n:
            yield _d(doc, ("distributed", "fsdp", "dp_shard_size"), "LP351", "error",
                     f"dp_shard_size {n} does not divide world_size {d.world_size}: accelerate's "
                     "ParallelismConfig needs dp_replicate_size x dp_shard_size = the number of processes",
                     hint=f"a divisor of {d.world_size}")
    ds = d.deepspeed
    if ds is not None and ds.offload_param_device != "none" and ds.zero_stage != 3:
        yield _d(doc, ("distributed", "deepspeed", "offload_param_device"), "LP352", "warning",
                 f"offload_param_device is ignored at ZeRO stage {ds.zero_stage}: DeepSpeed offloads parameters "
                 "only at stage 3 (DeepSpeed config docs, zero_optimization.offload_param: \"Valid only with "
                 "stage 3\"); the per-rank estimate keeps them on the GPU",
                 hint="set zero_stage: 3, or offload_param_device: none")


@rule
def quant_storage(c: Config, doc: SourceDoc) -> Iterator[Diagnostic]:
    """bnb_4bit_quant_storage must be the model dtype where the 4-bit weights are sharded."""
    d, q = c.distributed, c.quantization
    if d is None or q is None or not q.load_in_4bit:
        return
    shards = d.fsdp is not None or (d.deepspeed is not None and d.deepspeed.zero_stage == 3)
    storage = q.bnb_4bit_quant_storage
    if not shards or storage == c.dtype:
        return
    where = _where(doc, ("quantization", "bnb_4bit_quant_storage"), ("quantization", "load_in_4bit"))
    hint = f"bnb_4bit_quant_storage: {c.dtype} (the dtype the model is loaded in)"
    if d.fsdp is not None and d.fsdp.version == 2 and storage == "uint8":
        yield _d(doc, where, "LP353", "warning",
                 "4-bit weights stored as uint8 under FSDP2: accelerate leaves non-floating Params4bit out of "
                 f"the sharding ({ACCELERATE_FSDP2}: uint8 storage \"cannot survive fully_shard's DTensor "
                 "conversion\"), so every rank holds all 4-bit weights (counted so in the per-rank estimate)",
                 hint=hint)
    elif d.fsdp is not None and (d.fsdp.version == 1 or storage == "uint8"):
        yield _d(doc, where, "LP353", "error",
                 f"4-bit weights stored as {storage} with a {c.dtype} model under FSDP1: FSDP flattens each unit "
                 "into one tensor of one floating dtype (bitsandbytes FSDP-QLoRA guide: \"FSDP only supports "
                 "sharding float data types\"; PEFT: the model dtype must equal bnb_4bit_quant_storage)",
                 hint=hint)
    else:
        yield _d(doc, where, "LP353", "warning",
                 f"bnb_4bit_quant_storage {storage} differs from the model dtype {c.dtype}: "
                 + (f"{PEFT_FSDP} loads the model in the storage dtype for FSDP (float32 storage only with "
                    "float32 weights under autocast)" if d.fsdp is not None else
                    f"{PEFT_DS} loads the model in the storage dtype for ZeRO-3 QLoRA"), hint=hint)


@rule
def adapters_under_sharding(c: Config, doc: SourceDoc) -> Iterator[Diagnostic]:
    d = c.distributed
    if d is None:
        return
    zero3 = d.deepspeed is not None and d.deepspeed.zero_stage == 3
    sharded = d.fsdp is not None or zero3
    lora = c.lora
    if zero3 and lora.use_dora:
        yield _d(doc, _where(doc, ("lora", "use_dora"), ("distributed", "deepspeed")), "LP354", "warning",
                 "DoRA under ZeRO-3: PEFT's DoRA layer reads the base weight after the base layer's forward "
                 "(peft tuners/lora/dora.py DoraLinearLayer.forward, dequantize_module_weight(base_layer)), when "
                 "ZeRO-3 has partitioned it again; reported failing with a shape error (huggingface/peft#1731)",
                 hint="use FSDP for DoRA (PEFT: \"DoRA training with FSDP should work\"), or ZeRO-2")
    if sharded and c.load_in_8bit:
        yield _d(doc, _where(doc, ("quantization", "load_in_8bit"), ("distributed",)), "LP355", "warning",
                 f"8-bit base weights under {'FSDP' if d.fsdp else 'ZeRO-3'}: bitsandbytes' Int8Params cannot be "
                 f"sharded as float data ({PEFT_FSDP}: \"8-bit quantization has known issues and is not "
                 "recommended\"; PEFT dora.py: Int8Params cannot be deep-copied)",
                 hint="QLoRA (load_in_4bit with bnb_4bit_quant_storage = the model dtype) shards")
    if d.fsdp is not None and lora.modules_to_save:
        yield _d(doc, ("lora", "modules_to_save"), "LP356", "info",
                 f"modules_to_save under FSDP is untested by PEFT ({PEFT_FSDP}, caveats); the full copies are "
                 "sharded like any other parameter in the per-rank estimate")
    if d.fsdp is not None and c.load_in_4bit and c.training.optimizer == "paged_adamw_8bit":
        yield _d(doc, _where(doc, ("training", "optimizer"), ("distributed", "fsdp")), "LP357", "warning",
                 f"paged_adamw_8bit with FSDP + QLoRA fails when a checkpoint is saved ({PEFT_FSDP}, caveats)",
                 hint="adamw_torch_fused (or adamw_torch): the optimizer state is sharded anyway")
    ds = d.deepspeed
    if zero3 and c.load_in_4bit and ds is not None and "cpu" in (ds.offload_param_device, ds.offload_optimizer_device):
        yield _d(doc, ("distributed", "deepspeed"), "LP358", "info",
                 f"ZeRO-3 + QLoRA with CPU offload uses more GPU memory than without ({PEFT_DS}, caveats); the "
                 "adapters' optimizer state is small, so offloading it saves host-side memory only")
