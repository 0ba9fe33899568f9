"""QLoRA + FSDP2 on several GPUs: PEFT (bf16 adapters) against loraplan's fused path, in one run.

The run of issue 16: the Llama-3.1-8B shape from its published config.json (the catalog's copy,
random weights), QLoRA nf4 with double quantisation and bnb_4bit_quant_storage = bfloat16 (the
compute dtype, so FSDP shards the 4-bit weights), LoRA r16 all-linear, dropout 0.05, gradient
checkpointing, FSDP2 through accelerate (`Accelerator(fsdp_plugin=...)`.prepare, as Axolotl runs
it; full shard of every decoder block), AdamW. Both runs see the same batches in the same order
and start from the same adapters. Each records, per step, the loss (mean over ranks) and the step
time; and the peak memory of every rank against the plan's per-rank estimate (`distributed:`).

    torchrun --standalone --nproc_per_node 2 benchmarks/fsdp_qlora.py --out results.json
    torchrun --standalone --nproc_per_node 2 benchmarks/fsdp_qlora.py --tiny --device cpu   # check, gloo

--tiny swaps in a 2-layer shape so the script runs anywhere; on the CPU accelerate has no FSDP
plugin, so its own `fsdp2_prepare_model` is called directly (the function `prepare` calls on GPUs).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parents[1]
CATALOG_CONFIG = ROOT / "loraplan/compiler/catalog/configs/meta-llama--Llama-3.1-8B.json"
TINY = dict(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=4096, architectures=["LlamaForCausalLM"])
GIB = 2**30


def native_config(folder: str, args) -> object:
    from loraplan.schema.config import Config

    return Config.model_validate({
        "base_model": folder, "adapter": "qlora", "dtype": "bfloat16",
        "lora": {"r": 16, "lora_alpha": 32, "lora_dropout": 0.05, "target_modules": "all-linear",
                 "task_type": "CAUSAL_LM"},
        "quantization": {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
                         "bnb_4bit_compute_dtype": "bfloat16", "bnb_4bit_quant_storage": "bfloat16"},
        "training": {"sequence_len": args.seq, "micro_batch_size": args.batch, "gradient_checkpointing": True,
                     "optimizer": "adamw_torch", "attn_implementation": "sdpa"},
        "distributed": {"world_size": dist.get_world_size(), "fsdp": {"version": 2}},
    })


def base_folder(args) -> str:
    """Random bf16 weights of the shape, saved once by rank 0 (loaded back quantised by every rank)."""
    import transformers

    folder = Path(args.workdir) / ("tiny" if args.tiny else "llama-3.1-8b")
    if dist.get_rank() == 0 and not (folder / "config.json").exists():
        cfg = (transformers.LlamaConfig(**TINY) if args.tiny else
               transformers.LlamaConfig.from_dict(json.loads(CATALOG_CONFIG.read_text())))
        torch.manual_seed(0)
        with torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu"):
            model = transformers.LlamaForCausalLM(cfg).to(torch.bfloat16)
        model.save_pretrained(folder)
        del model
    dist.barrier()
    return str(folder)


def prepare(model, args, device: torch.device):
    """FSDP2 through accelerate: full shard of each decoder block, as Axolotl's fsdp_version 2 sets it up.

    Returns (model, optimizer): accelerate's FSDP2 `prepare` takes both together (it rebuilds the
    optimizer's parameter list on the sharded parameters).
    """
    from accelerate.utils import FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap",
                                            transformer_cls_names_to_wrap=["LlamaDecoderLayer"],
                                            reshard_after_forward=True)
    if device.type == "cuda":
        from accelerate import Accelerator
        from torch.distributed.fsdp import FSDPModule

        accelerator = Accelerator(fsdp_plugin=plugin)
        opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)
        model, opt = accelerator.prepare(model, opt)
        if not isinstance(model, FSDPModule):  # accelerate runs FSDP only when launched distributed
            raise SystemExit(f"accelerate did not shard ({accelerator.distributed_type}): launch with torchrun")
        return model, opt
    from accelerate.utils.fsdp_utils import fsdp2_prepare_model

    fake = SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin), torch_device_mesh=None, parallelism_config=None,
                           mixed_precision="no", is_main_process=dist.get_rank() == 0, device=device)
    model = fsdp2_prepare_model(fake, model)
    return model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr)


def batches(args, vocab: int) -> list[torch.Tensor]:
    """The same token batches for every run: seeded by step and rank."""
    out = []
    for step in range(args.steps):
        g = torch.Generator().manual_seed(1000 * step + dist.get_rank())
        out.append(torch.randint(1, vocab, (args.batch, args.seq), generator=g))
    return out


def run(name: str, folder: str, plan, config, args, device: torch.device) -> dict:
    from loraplan.runtime.apply import apply
    from loraplan.runtime.load import load_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model(config, folder, device_map={"": device} if device.type == "cuda" else "cpu",
                           progress=False, gradient_checkpointing=True)
    torch.manual_seed(0)  # the same adapters in both runs
    fused = name == "loraplan"
    model = apply(plan, model, fast=fused, autocast_adapter_dtype=fused)  # PEFT: bf16 adapters
    report = model.loraplan_fast_report
    model.train()
    model, opt = prepare(model, args, device)
    data = batches(args, model.config.vocab_size)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    losses, times = [], []
    for ids in data:
        ids = ids.to(device)
        start = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
        mean = loss.detach().float()
        dist.all_reduce(mean)
        losses.append(mean.item() / dist.get_world_size())
    peak = torch.cuda.max_memory_allocated() if device.type == "cuda" else 0
    reserved = torch.cuda.max_memory_reserved() if device.type == "cuda" else 0
    peaks = [None] * dist.get_world_size()
    dist.all_gather_object(peaks, (peak, reserved))
    timed = times[args.warmup:] or times
    step = statistics.median(timed)
    tokens = args.batch * args.seq * dist.get_world_size()
    del model, opt
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "name": name, "losses": losses, "step_ms_median": step * 1e3, "step_ms": [t * 1e3 for t in times],
        "tokens_per_s": tokens / step, "peak_allocated_per_rank": [p[0] for p in peaks],
        "peak_reserved_per_rank": [p[1] for p in peaks],
        "fast_layers": len(report.fast) if report else 0, "fallback_layers": len(report.fallback) if report else 0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seq", type=int, default=8192)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=3, help="steps left out of the timing (never out of the losses)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--tiny", action="store_true", help="a 2-layer shape, to check the script anywhere")
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--runs", default="peft,loraplan")
    ap.add_argument("--workdir", default=os.environ.get("TMPDIR", "/tmp") + "/loraplan-fsdp-qlora")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    if args.tiny and args.seq == 8192:
        args.seq = 64
    cuda = args.device == "cuda"
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local)
    dist.init_process_group("nccl" if cuda else "gloo")
    device = torch.device("cuda", local) if cuda else torch.device("cpu")

    from loraplan.compiler.compile import compile_plan

    folder = base_folder(args)
    config = native_config(folder, args)
    plan = compile_plan(config)
    results = [run(name, folder, plan, config, args, device) for name in args.runs.split(",")]
    if dist.get_rank() == 0:
        report(results, plan, args, device)
    dist.barrier()
    dist.destroy_process_group()
    return 0


def report(results: list[dict], plan, args, device: torch.device) -> None:
    m = plan.memory
    card = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    out = {
        "card": card, "world_size": dist.get_world_size(), "shape": "tiny" if args.tiny else "Llama-3.1-8B",
        "seq": args.seq, "batch_per_rank": args.batch, "steps": args.steps, "torch": torch.__version__,
        "plan_peak_allocated_per_rank": m.peak_allocated_bytes, "plan_total_per_rank": m.total_bytes,
        "plan_breakdown": m.breakdown, "runs": results,
    }
    if len(results) == 2:
        a, b = results[0]["losses"], results[1]["losses"]
        out["max_abs_loss_difference"] = max(abs(x - y) for x, y in zip(a, b, strict=True))
    print(f"{card} x {dist.get_world_size()}, {out['shape']}, seq {args.seq} x batch {args.batch} per rank, "
          f"{args.steps} steps; plan per rank: PyTorch peak {m.peak_allocated_bytes / GIB:.2f} GiB, "
          f"total {m.total_bytes / GIB:.2f} GiB")
    for r in results:
        peaks = ", ".join(f"{p / GIB:.2f}" for p in r["peak_allocated_per_rank"])
        ratio = max(r["peak_allocated_per_rank"]) / m.peak_allocated_bytes - 1 if device.type == "cuda" else 0.0
        print(f"  {r['name']:9s} {r['step_ms_median']:9.1f} ms/step  {r['tokens_per_s']:10.0f} tokens/s  "
              f"peak GiB per rank [{peaks}] ({ratio:+.1%} vs plan)  fast layers {r['fast_layers']}, "
              f"PEFT's {r['fallback_layers']}  loss {r['losses'][0]:.4f} -> {r['losses'][-1]:.4f}")
    if "max_abs_loss_difference" in out:
        print(f"  max |loss difference| over {args.steps} steps: {out['max_abs_loss_difference']:.4f}")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    raise SystemExit(main())
