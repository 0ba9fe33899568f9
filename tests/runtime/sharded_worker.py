"""Ranks of the sharded-training tests: a tiny Llama on 2 gloo processes, FSDP2 or ZeRO-3, LoRA or QLoRA.

Each rank trains on its half of a fixed batch for STEPS AdamW steps and records the mean loss over
ranks and, at every step, every adapter gradient gathered whole (the engine's own average of the
ranks' gradients). The test compares both with one process training PEFT's layer on the
whole batch (`reference`). Kept out of the test file so spawned processes import only this.
"""

from __future__ import annotations

import os
import socket
import time
import warnings
from types import SimpleNamespace
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import transformers

from loraplan.compiler.compile import compile_plan
from loraplan.runtime.apply import apply
from loraplan.runtime.load import load_model
from loraplan.schema.config import Config

STEPS = int(os.environ.get("LORAPLAN_TEST_STEPS", "3"))
VOCAB = 96


def tiny_folder(path: str) -> str:
    """A tiny float32 Llama saved once (every rank and the reference load the same weights)."""
    if not os.path.exists(os.path.join(path, "config.json")):
        cfg = transformers.LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                                       architectures=["LlamaForCausalLM"])
        torch.manual_seed(0)
        transformers.LlamaForCausalLM(cfg).float().save_pretrained(path)
    return path


def config(folder: str, qlora: bool, engine: str | None = None, dtype: str = "float32") -> Config:
    data: dict[str, Any] = {
        "base_model": folder, "dtype": dtype,
        "lora": {"r": 4, "lora_alpha": 8, "target_modules": "all-linear", "init_lora_weights": False,
                 "task_type": "CAUSAL_LM"},
    }
    if qlora:  # storage = compute = model dtype: what FSDP needs (bnb_4bit_quant_storage)
        data["adapter"] = "qlora"
        data["quantization"] = {"load_in_4bit": True, "bnb_4bit_use_double_quant": True,
                                "bnb_4bit_compute_dtype": dtype, "bnb_4bit_quant_storage": dtype}
    if engine == "zero3":
        data["distributed"] = {"world_size": 2, "deepspeed": {"zero_stage": 3}}
    elif engine:
        data["distributed"] = {"world_size": 2, "fsdp": {"version": 2}}
    return Config.model_validate(data)


def batch() -> torch.Tensor:
    return torch.randint(1, VOCAB, (4, 12), generator=torch.Generator().manual_seed(1))


def adapted(folder: str, qlora: bool, fast: bool, mode: str = "auto", engine: str | None = None,
            dtype: str = "float32", device: str = "cpu"):
    """The tiny model through loraplan.apply (fast path or PEFT's layer), adapters seeded alike."""
    cfg = config(folder, qlora, engine, dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model(cfg, folder, device_map={"": device} if device != "cpu" else "cpu", progress=False)
    plan = compile_plan(cfg, model)
    torch.manual_seed(0)
    peft_model = apply(plan, model, fast=fast)
    if fast and mode not in ("auto", "peft"):
        from loraplan.runtime.fast import patch_model

        patch_model(peft_model, mode=mode)
    # training mode: in eval mode bitsandbytes' CPU backend repacks a 4-bit weight in place on its first
    # call without grad (Linear4bit.forward, _convert_weight_packed_for_cpu), another kernel
    peft_model.train()
    return peft_model, plan


def reference(folder: str, qlora: bool) -> dict[str, Any]:
    """One process, PEFT's own layer, the whole batch."""
    model, _ = adapted(folder, qlora, fast=False)
    ids = batch()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses, grads = [], []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        grads.append({n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad})
        opt.step()
        losses.append(float(loss))
    return {"losses": losses, "grads": grads}


class Counter:
    """Counts calls of the fused autograd functions (proof that the fused path ran, not PEFT's)."""

    def __init__(self):
        from loraplan.runtime.fast import patch

        self.calls = 0
        self._saved = []
        for name in ("FusedLoraLinear", "LoraAddInto", "MergedLoraLinear"):
            fn = getattr(patch, name)
            original = fn.apply
            self._saved.append((fn, original))
            fn.apply = self._counting(original)

    def _counting(self, original):
        def apply(*args):
            self.calls += 1
            return original(*args)
        return apply

    def close(self) -> None:
        for fn, original in self._saved:
            fn.apply = original


def accelerate_fsdp2(model, device: str = "cpu"):
    """accelerate's own FSDP2 preparation, as Axolotl's accelerator.prepare runs it (any accelerate with FSDP2)."""
    from accelerate.utils import FullyShardedDataParallelPlugin
    from accelerate.utils.fsdp_utils import fsdp2_prepare_model

    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap",
                                            transformer_cls_names_to_wrap=["LlamaDecoderLayer"],
                                            reshard_after_forward=True)
    acc = SimpleNamespace(state=SimpleNamespace(fsdp_plugin=plugin), torch_device_mesh=None, parallelism_config=None,
                          mixed_precision="no", is_main_process=dist.get_rank() == 0, device=torch.device(device))
    return fsdp2_prepare_model(acc, model)


def _shard(model, engine: str):
    if engine == "fsdp2":
        from torch.distributed.fsdp import fully_shard

        for layer in model.base_model.model.model.layers:
            fully_shard(layer)
        fully_shard(model)
        return model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    if engine == "accelerate":
        model = accelerate_fsdp2(model)
        return model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    import deepspeed

    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    engine_, opt, _, _ = deepspeed.initialize(model=model, optimizer=opt, config={
        "zero_optimization": {"stage": 3}, "train_micro_batch_size_per_gpu": 2, "gradient_accumulation_steps": 1,
        "zero_allow_untested_optimizer": True})
    return engine_, opt


def _full_grads(model, engine: str) -> dict[str, torch.Tensor]:
    out = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if engine == "zero3":
            from deepspeed.utils import safe_get_full_grad

            grad = safe_get_full_grad(p)
        else:
            grad = p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad
        out[name.removeprefix("module.")] = grad.detach().clone()
    return out


def _rank(rank: int, world: int, port: int, engine: str, variants: list[tuple], folder: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    warnings.simplefilter("ignore")
    if engine == "zero3":
        os.environ["DS_ACCELERATOR"] = "cpu"
        import deepspeed

        deepspeed.init_distributed(dist_backend="gloo")
    else:
        dist.init_process_group("gloo", rank=rank, world_size=world)
    ids = batch()[2 * rank:2 * rank + 2]
    results = {}
    for qlora, mode in variants:  # mode "peft": PEFT's own layer under the same engine
        model, plan = adapted(folder, qlora, fast=mode != "peft", mode=mode, engine=engine)
        report = model.loraplan_fast_report or SimpleNamespace(fast=[], fallback={})
        model, opt = _shard(model, engine)
        sharded = sum(type(p).__name__ == "DTensor" or hasattr(p, "ds_id") for p in model.parameters())
        from loraplan.runtime.engines import detect_engine

        detected = detect_engine(model)
        counter = Counter()
        losses, grads = [], []
        for _ in range(STEPS):
            opt.zero_grad()
            loss = model(input_ids=ids, labels=ids).loss
            if engine == "zero3":
                model.backward(loss)
                grads.append(_full_grads(model, engine))
                model.step()
            else:
                loss.backward()
                grads.append(_full_grads(model, engine))
                opt.step()
            losses.append(loss.detach())
        counter.close()
        mean = torch.stack(losses)
        dist.all_reduce(mean)
        results[(qlora, mode)] = {
            "losses": (mean / world).tolist(), "grads": grads, "fused_calls": counter.calls, "sharded": sharded,
            "fast": len(report.fast), "fallback": dict(report.fallback), "engine": detected,
            "lp620": [d.message for d in plan.diagnostics if d.code == "LP620"],
        }
    if rank == 0:
        torch.save(results, out)
    dist.barrier()
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(engine: str, variants: list[tuple], folder: str, out: str, timeout: float = 240.0) -> dict:
    """Run 2 ranks; kill them and fail after `timeout` seconds (a hung collective must not hang CI)."""
    ctx = mp.start_processes(_rank, args=(2, free_port(), engine, variants, folder, out), nprocs=2, join=False,
                             start_method="spawn")
    deadline = time.monotonic() + timeout
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            raise TimeoutError(f"{engine} ranks did not finish in {timeout:.0f} s")
    return torch.load(out, weights_only=False)
