"""Training-step benchmark on one GPU: frozen base vs PEFT vs loraplan, LoRA and QLoRA.

Builds the Llama-architecture 1.1B model of the performance issue (hidden 2048, intermediate
8192, 16 layers, 32 heads, 8 KV heads, vocab 32000; bf16, SDPA), and measures in one process:
the frozen base (forward + backward, no weight grads: the limit), PEFT with its defaults (fp32
adapters), PEFT with bf16 adapters (`autocast_adapter_dtype=False`), and loraplan
(`loraplan.apply`, fused path), for LoRA r16 all-linear and QLoRA nf4, eager and compiled.
Prints ms/step (median of --steps after --warmup), tokens/s, peak GiB, the ratio to the frozen
step, and the plan's memory estimate against the measured peak. `--check` first compares
loraplan's forward and every adapter gradient with PEFT's on fresh random inputs.

    python benchmarks/train_step.py --out results.json

Issue 12's matrix (dropout, checkpointing, compile, DoRA, two architectures, Axolotl's kernels)
is benchmarks/train_matrix.py, which reuses this file's helpers: `--matrix ARGS...` runs it.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

MODEL = dict(
    vocab_size=32000,
    hidden_size=2048,
    intermediate_size=8192,
    num_hidden_layers=16,
    num_attention_heads=32,
    num_key_value_heads=8,
    max_position_embeddings=4096,
)
GIB = 1024**3
ACT = "activation"


def native_config(qlora: bool, batch: int, seq: int, layers: int, compiled: bool = False):
    """The loraplan Config of a run (all-linear r16, alpha 32, no dropout)."""
    from loraplan.schema.config import Config

    data = {
        "base_model": "benchmark-llama-1.1b",
        "adapter": "qlora" if qlora else "lora",
        "dtype": "bfloat16",
        "lora": {"r": 16, "lora_alpha": 32, "lora_dropout": 0.0, "target_modules": "all-linear"},
        "training": {
            "sequence_len": seq,
            "micro_batch_size": batch,
            "gradient_checkpointing": False,
            "optimizer": "adamw_torch",
            "attn_implementation": "sdpa",
            "torch_compile": compiled,
        },
    }
    if qlora:
        data["quantization"] = {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_use_double_quant": True,
            "bnb_4bit_compute_dtype": "bfloat16",
        }
    return Config.model_validate(data)


def build_bf16(layers: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**{**MODEL, "num_hidden_layers": layers}, attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = LlamaForCausalLM(cfg).to(torch.bfloat16)
    model.config.use_cache = False
    return model


def load_4bit(path: str):
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    bnb = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    model = AutoModelForCausalLM.from_pretrained(
        path, quantization_config=bnb, dtype=torch.bfloat16, device_map={"": 0}, attn_implementation="sdpa"
    )
    model.config.use_cache = False
    return model


def peft_wrap(model, *, bf16_adapters: bool):
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear")
    return get_peft_model(model, cfg, autocast_adapter_dtype=not bf16_adapters)


def loraplan_wrap(model, qlora: bool, batch: int, seq: int, layers: int, compiled: bool = False, **patch):
    """loraplan.apply; `patch` (mode=, kernels=, stack=) re-patches the fast path for a variant run."""
    import loraplan

    config = native_config(qlora, batch, seq, layers, compiled)
    plan = loraplan.compile(config, architecture=model)
    model = loraplan.apply(plan, model)
    if patch:
        from loraplan.runtime.fast import patch_model

        patch_model(model, **patch)
    return model, plan


def freeze_with_input_grads(model):
    for p in model.parameters():
        p.requires_grad_(False)
    model.enable_input_require_grads()
    return model


def time_steps(model, batch: int, seq: int, steps: int, warmup: int, compiled: bool, vocab: int = 0) -> dict:
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4) if params else None
    fwd = torch.compile(model) if compiled else model
    gen = torch.Generator(device="cuda").manual_seed(0)
    ids = torch.randint(0, vocab or MODEL["vocab_size"], (batch, seq), device="cuda", generator=gen)

    def step():
        out = fwd(input_ids=ids, labels=ids)
        out.loss.backward()
        if opt is not None:
            opt.step()
            opt.zero_grad(set_to_none=True)
        return out.loss.detach()

    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    warm_s = time.perf_counter() - t0
    torch.cuda.reset_peak_memory_stats()
    times, host, losses = [], [], []
    for _ in range(steps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0 = time.perf_counter()
        start.record()
        losses.append(step())
        host.append((time.perf_counter() - t0) * 1000)  # issuing the step; close to ms: launch-bound
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    ms = statistics.median(times)
    free, total = torch.cuda.mem_get_info()
    return {
        "ms": ms,
        "reserved_gib": torch.cuda.max_memory_reserved() / GIB,
        "device_used_gib": (total - free) / GIB,
        "ms_spread": max(times) - min(times),
        "host_ms": statistics.median(host),
        "tokens_per_s": batch * seq / (ms / 1000),
        "peak_gib": torch.cuda.max_memory_allocated() / GIB,
        "warmup_s": warm_s,
        "loss_first": float(losses[0]),
        "loss_last": float(losses[-1]),
    }


def release():
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


def rerun(model, state: dict, ids: torch.Tensor, dtype: torch.dtype):
    """Forward + backward with the adapter weights of `state` cast to `dtype`."""
    model.zero_grad(set_to_none=True)
    for n, p in model.named_parameters():
        if n in state:
            p.data = state[n].to(dtype)
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    grads = {n: p.grad.detach().float() for n, p in model.named_parameters() if p.requires_grad}
    return out.logits.detach().float(), grads


def check_against_peft(qlora: bool, path: str | None, layers: int, batch: int, seq: int) -> dict:
    """loraplan vs PEFT on the same weights and fresh random inputs: outputs and every gradient."""
    results = {}
    for trial in range(2):
        base = load_4bit(path) if qlora else build_bf16(layers)
        ref = peft_wrap(base, bf16_adapters=False)  # PEFT's default: fp32 adapters, the precise one
        torch.manual_seed(100 + trial)
        for n, p in ref.named_parameters():
            if "lora_B" in n:
                p.data.normal_(0, 0.02)  # B is zero at init: make the update count
        state = {n: p.detach().clone() for n, p in ref.named_parameters() if p.requires_grad}
        gen = torch.Generator(device="cuda").manual_seed(1000 + trial)
        ids = torch.randint(0, MODEL["vocab_size"], (batch, seq), device="cuda", generator=gen)
        out = ref(input_ids=ids, labels=ids)
        out.loss.backward()
        want_logits = out.logits.detach().float()
        want = {n: p.grad.detach().float() for n, p in ref.named_parameters() if p.requires_grad}
        del out
        from loraplan.runtime.fast import patch_model

        row = {}
        # PEFT with bf16 adapters (the usual fast setting), then loraplan's fused path.
        peft_logits, peft_grads = rerun(ref, state, ids, torch.bfloat16)
        report = patch_model(ref)  # same module objects, now on the fused path
        got_logits, got = rerun(ref, state, ids, torch.float32)
        for label, logits, grads in (("peft_bf16", peft_logits, peft_grads), ("loraplan", got_logits, got)):
            errs = [rel(grads[n], want[n]) for n in want]
            row[label] = {
                "logits_rel": rel(logits, want_logits),
                "grad_rel_max": max(errs),
                "grad_rel_median": statistics.median(errs),
                "grads_compared": len(errs),
                "nan": any(torch.isnan(g).any().item() for g in grads.values()),
            }
        row["fast_layers"], row["fallback_layers"] = len(report.fast), len(report.fallback)
        results[f"trial{trial}"] = row
        out = None
        del ref, base, out, got, want, state
        release()
    return results


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--matrix"]:
        import train_matrix

        return train_matrix.main(argv[1:])
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=1024)
    ap.add_argument("--layers", type=int, default=MODEL["num_hidden_layers"])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated run names to keep")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--check", action="store_true", help="compare with PEFT first")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    b, s, L = args.batch, args.seq, args.layers
    torch.zeros(1, device="cuda")  # CUDA context and allocator up, nothing else
    free, total = torch.cuda.mem_get_info()
    context_gib = (total - free) / GIB
    tmp = tempfile.mkdtemp()
    model_dir = str(Path(tmp) / "llama")
    m = build_bf16(L)
    m.save_pretrained(model_dir)
    del m
    release()

    runs: list[tuple[str, bool, Callable[[], tuple]]] = [
        ("frozen", False, lambda: (freeze_with_input_grads(build_bf16(L)), None)),
        ("lora/peft-default", False, lambda: (peft_wrap(build_bf16(L), bf16_adapters=False), None)),
        ("lora/peft-bf16", False, lambda: (peft_wrap(build_bf16(L), bf16_adapters=True), None)),
        ("lora/loraplan", False, lambda: loraplan_wrap(build_bf16(L), False, b, s, L)),
        ("lora/loraplan-stacked", False, lambda: loraplan_wrap(build_bf16(L), False, b, s, L, stack=True)),
        ("lora/loraplan-triton", False, lambda: loraplan_wrap(build_bf16(L), False, b, s, L, kernels="triton")),
        ("lora/loraplan-merged", False, lambda: loraplan_wrap(build_bf16(L), False, b, s, L, mode="merged")),
        ("qlora/peft-kbit-prep", False, lambda: (peft_kbit_prepared(model_dir), None)),
        ("qlora/peft-default", False, lambda: (peft_wrap(load_4bit(model_dir), bf16_adapters=False), None)),
        ("qlora/peft-bf16", False, lambda: (peft_wrap(load_4bit(model_dir), bf16_adapters=True), None)),
        ("qlora/loraplan", False, lambda: loraplan_wrap(load_4bit(model_dir), True, b, s, L)),
        ("qlora/loraplan-triton", False, lambda: loraplan_wrap(load_4bit(model_dir), True, b, s, L, kernels="triton")),
    ]
    if not args.no_compile:
        runs += [
            ("frozen", True, lambda: (freeze_with_input_grads(build_bf16(L)), None)),
            ("lora/peft-bf16", True, lambda: (peft_wrap(build_bf16(L), bf16_adapters=True), None)),
            ("lora/loraplan", True, lambda: loraplan_wrap(build_bf16(L), False, b, s, L, compiled=True)),
            ("qlora/peft-bf16", True, lambda: (peft_wrap(load_4bit(model_dir), bf16_adapters=True), None)),
            ("qlora/loraplan", True, lambda: loraplan_wrap(load_4bit(model_dir), True, b, s, L, compiled=True)),
        ]
    keep = {x for x in args.only.split(",") if x}
    results: dict = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "context_gib": context_gib,
        "runs": [],
    }
    import peft
    import transformers

    results["versions"] = {"transformers": transformers.__version__, "peft": peft.__version__}
    if args.check:
        results["check"] = {
            "lora": check_against_peft(False, None, min(L, 4), b, s),  # the timed batch: kernels differ by size
            "qlora": check_against_peft(True, model_dir, L, 2, 256),
        }
        print(json.dumps(results["check"], indent=1), flush=True)
    for name, compiled, make in runs:
        label = f"{name}{' (compiled)' if compiled else ''}"
        if keep and name not in keep and label not in keep:
            continue
        try:
            model, plan = make()
            row = {"run": label, **time_steps(model, b, s, args.steps, args.warmup, compiled)}
            if plan is not None and plan.memory is not None:
                # allocator peak against torch.cuda.max_memory_allocated; device total against
                # CUDA context + torch.cuda.max_memory_reserved
                row["estimate_gib"] = plan.memory.peak_allocated_bytes / GIB
                row["estimate_error"] = row["estimate_gib"] / row["peak_gib"] - 1
                row["estimate_device_gib"] = plan.memory.total_bytes / GIB
                row["device_peak_gib"] = context_gib + row["reserved_gib"]
                row["fast_layers"] = sum(1 for i in plan.injections if i.fast_path)
            del model, plan
        except Exception as exc:  # a failing run is reported, the others still run
            row = {"run": label, "error": f"{type(exc).__name__}: {exc}"[:400]}
        release()
        results["runs"].append(row)
        print(json.dumps(row), flush=True)
        if args.out:  # after every run, so a run cut short still leaves its rows
            Path(args.out).write_text(json.dumps(results, indent=1))
    print_table(results["runs"])
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    return 0


def fused(model, mode: str = "merged"):
    from loraplan.runtime.fast import patch_model

    patch_model(model, mode=mode)
    return model


def peft_kbit_prepared(path: str):
    from peft import prepare_model_for_kbit_training

    model = prepare_model_for_kbit_training(load_4bit(path))
    return peft_wrap(model, bf16_adapters=False)


def print_table(rows: list[dict]) -> None:
    frozen = {r["run"]: r["ms"] for r in rows if r["run"].startswith("frozen") and "ms" in r}
    print(f"\n{'run':34} {'ms/step':>8} {'host ms':>8} {'tok/s':>9} {'x frozen':>8} {'peak GiB':>8} {'est GiB':>8} "
          f"{'est err':>8}")
    for r in rows:
        if "error" in r:
            print(f"{r['run']:34} ERROR {r['error'][:80]}")
            continue
        base = frozen.get("frozen (compiled)" if "compiled" in r["run"] else "frozen")
        ratio = f"{r['ms'] / base:8.2f}" if base else "       -"
        est = f"{r['estimate_gib']:8.1f} {r['estimate_error']:+8.1%}" if "estimate_gib" in r else f"{'-':>8} {'-':>8}"
        host = f"{r['host_ms']:8.1f}" if "host_ms" in r else f"{'-':>8}"
        print(f"{r['run']:34} {r['ms']:8.1f} {host} {r['tokens_per_s']:9.0f} {ratio} {r['peak_gib']:8.1f} {est}")


if __name__ == "__main__":
    raise SystemExit(main())
