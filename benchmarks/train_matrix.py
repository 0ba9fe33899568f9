"""Issue 12's training-step matrix on one GPU: {LoRA, QLoRA} x dropout x checkpointing x compile, DoRA.

Two architectures of different shape, each from a real config: the Llama 1.1B of
benchmarks/train_step.py (batch 8 x 1024, vocab 32,000) and Qwen/Qwen2.5-0.5B (the catalog's
config, loraplan/compiler/catalog/configs/Qwen--Qwen2.5-0.5B.json: q/k/v biases, tied 151,936
vocabulary, hidden 896, 24 layers; batch 4 x 2048). Random weights, bf16, SDPA, AdamW, LoRA r16
alpha 32 all-linear, every model in train mode. Each cell runs the frozen base (the limit, same
checkpointing and compile), PEFT with bf16 adapters, loraplan (`loraplan.apply`) and, last in the
process because its attention patch is global, Axolotl 0.19.0's LoRA kernels. QLoRA cells also
run loraplan with `four_bit="layer"` (bitsandbytes' Linear4bit; the default before "direct").
The results files of 2026-12-06 call that default run "loraplan" and the direct path
"loraplan-direct" (it became the default after them). Median ms of
--steps after --warmup, with the spread (max - min); --repeat reruns the QLoRA cells, which are
host-bound and noisy. `--check` compares loraplan with PEFT's fp32-adapter reference first: logits
and every adapter gradient, and the loss over 40 AdamW steps.

    python benchmarks/train_matrix.py --arch llama-1.1b --check --out llama.json --minutes 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import train_step as ts

CATALOG = Path(__file__).parents[1] / "loraplan" / "compiler" / "catalog" / "configs"
ARCHS = {
    "llama-1.1b": {"batch": 8, "seq": 1024},
    "qwen2.5-0.5b": {"batch": 4, "seq": 2048, "config": "Qwen--Qwen2.5-0.5B.json"},
}
LORA = {"r": 16, "lora_alpha": 32, "target_modules": "all-linear"}
GIB = 1024**3
# (adapter, dropout, checkpointing, compiled), most common real config first (issue 12)
CELLS = [
    ("qlora", 0.05, True, False),
    ("lora", 0.05, False, False),
    ("dora", 0.0, False, False),
    ("lora", 0.0, False, False),
    ("lora", 0.0, False, True),
    ("lora", 0.05, True, False),
    ("qlora", 0.0, False, False),
    ("lora", 0.05, False, True),
    ("lora", 0.0, True, False),
    ("qlora", 0.05, False, False),
    ("qlora", 0.0, False, True),
    ("qlora", 0.05, True, True),
    ("lora", 0.05, True, True),
]


def hf_config(arch: str, layers: int | None = None):
    import transformers

    if arch == "llama-1.1b":
        data, cls = dict(ts.MODEL), transformers.LlamaConfig
    else:
        data, cls = json.loads((CATALOG / ARCHS[arch]["config"]).read_text()), transformers.Qwen2Config
    if layers:
        data["num_hidden_layers"] = layers
    return cls(**data, attn_implementation="sdpa")


def build(arch: str, layers: int | None = None):
    from transformers import AutoModelForCausalLM

    cfg = hf_config(arch, layers)
    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    model.config.use_cache = False
    return model


def loraplan_config(arch: str, adapter: str, dropout: float, gc: bool, compiled: bool):
    from loraplan.schema.config import Config

    shape = ARCHS[arch]
    data = {
        "base_model": f"benchmark-{arch}",
        "adapter": "qlora" if adapter == "qlora" else "lora",
        "dtype": "bfloat16",
        "lora": {**LORA, "lora_dropout": dropout, "use_dora": adapter == "dora"},
        "training": {"sequence_len": shape["seq"], "micro_batch_size": shape["batch"], "gradient_checkpointing": gc,
                     "optimizer": "adamw_torch", "attn_implementation": "sdpa", "torch_compile": compiled},
    }
    if adapter == "qlora":
        data["quantization"] = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
                                "bnb_4bit_compute_dtype": "bfloat16"}
    return Config.model_validate(data)


def peft_model(base, adapter: str, dropout: float, bf16: bool = True):
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(**LORA, lora_dropout=dropout, use_dora=adapter == "dora", task_type="CAUSAL_LM")
    return get_peft_model(base, cfg, autocast_adapter_dtype=not bf16)


def make(impl: str, arch: str, adapter: str, dropout: float, gc: bool, compiled: bool, model_dir: str):
    """(model, plan or None) for one run of a cell, in train mode."""
    import loraplan

    base = ts.load_4bit(model_dir) if adapter == "qlora" and impl != "frozen" else build(arch)
    plan = None
    if impl == "frozen":
        model = ts.freeze_with_input_grads(base)
    elif impl.startswith("loraplan"):
        plan = loraplan.compile(loraplan_config(arch, adapter, dropout, gc, compiled), architecture=base)
        model = loraplan.apply(plan, base)
        if impl == "loraplan-layer":  # 4-bit layers through bitsandbytes' Linear4bit (the default before)
            from loraplan.runtime.fast import patch_model

            patch_model(model, four_bit="layer")
    else:
        model = peft_model(base, adapter, dropout)
        if impl == "axolotl":
            apply_axolotl(model, model_dir)
    if gc:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.train()
    return model, plan


def apply_axolotl(model, model_dir: str) -> None:
    """Axolotl 0.19.0's LoRA kernels (qkv, o, SwiGLU MLP), as its `lora_*_kernel: true` options apply them.

    axolotl.monkeypatch.lora_kernels imports two modules it does not use on this path:
    axolotl.utils.callbacks (which imports `evaluate`) and addict (for its config class). Both
    are stubbed; the kernels and the patching code are Axolotl's own.
    """
    import types

    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    def prefix(model_type: str):
        name = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type]
        return name.replace("ForCausalLM", ""), name

    if "addict" not in sys.modules:
        sys.modules["addict"] = types.ModuleType("addict")
        sys.modules["addict"].Dict = dict
    for name in ("axolotl.utils.callbacks", "axolotl.utils.callbacks.models"):
        sys.modules.setdefault(name, types.ModuleType(name))
    sys.modules["axolotl.utils.callbacks.models"].get_causal_lm_model_cls_prefix = prefix
    from axolotl.monkeypatch import lora_kernels

    class Cfg(dict):
        __getattr__ = dict.get

    cfg = Cfg(base_model=model_dir, lora_qkv_kernel=True, lora_o_kernel=True, lora_mlp_kernel=True)
    lora_kernels.patch_self_attn_lora(cfg)
    lora_kernels.apply_lora_kernel_patches(model, cfg)


def run_cell(arch, impl, adapter, dropout, gc, compiled, model_dir, steps, warmup) -> dict:
    shape = ARCHS[arch]
    label = f"{arch} {adapter} d{dropout:g}{' gc' if gc else ''}{' compiled' if compiled else ''} {impl}"
    row = {"arch": arch, "impl": impl, "adapter": adapter, "dropout": dropout, "gc": gc, "compiled": compiled,
           "run": label}
    try:
        model, plan = make(impl, arch, adapter, dropout, gc, compiled, model_dir)
        row.update(ts.time_steps(model, shape["batch"], shape["seq"], steps, warmup, compiled, vocab(arch)))
        if plan is not None and plan.memory is not None:
            row["estimate_gib"] = plan.memory.peak_allocated_bytes / GIB
            row["estimate_error"] = row["estimate_gib"] / row["peak_gib"] - 1
            row["fast_layers"] = sum(1 for i in plan.injections if i.fast_path)
        report = getattr(model, "loraplan_fast_report", None)
        if report is not None:
            row["fast_live"], row["fallback_live"] = len(report.fast), len(report.fallback)
        del model, plan
    except Exception as exc:  # a failing run is reported; the others still run
        row["error"] = f"{type(exc).__name__}: {exc}"[:400]
    ts.release()
    print(json.dumps(row), flush=True)
    return row


def vocab(arch: str) -> int:
    return hf_config(arch).vocab_size


def check(arch: str, layers: int = 4, steps: int = 40) -> dict:
    """loraplan and PEFT-bf16 against PEFT's fp32-adapter reference: logits, gradients, a 40-step loss."""
    shape = ARCHS[arch]
    gen = torch.Generator(device="cuda").manual_seed(1000)
    ids = torch.randint(0, vocab(arch), (shape["batch"], shape["seq"]), device="cuda", generator=gen)
    out: dict = {}
    state = None
    for impl in ("reference", "peft-bf16", "loraplan"):
        import loraplan

        base = build(arch, layers)
        model = peft_model(base, "lora", 0.0, bf16=impl == "peft-bf16") if impl != "loraplan" else None
        if impl == "loraplan":
            plan = loraplan.compile(loraplan_config(arch, "lora", 0.0, False, False), architecture=base)
            model = loraplan.apply(plan, base)
        model.train()
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        if state is None:
            torch.manual_seed(7)
            for n, p in named:
                if "lora_B" in n:
                    p.data.normal_(0, 0.02)
            state = {n: p.detach().float().clone() for n, p in named}
        else:
            for n, p in named:
                p.data.copy_(state[n])
        loss = model(input_ids=ids, labels=ids)
        loss.loss.backward()
        logits = loss.logits.detach().float()
        grads = {n: p.grad.detach().float() for n, p in named}
        del loss
        opt = torch.optim.AdamW([p for _, p in named], lr=1e-3)
        opt.zero_grad(set_to_none=True)
        curve = []
        for _ in range(steps):
            step = model(input_ids=ids, labels=ids)
            step.loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            curve.append(float(step.loss.detach()))
            del step
        if impl == "reference":
            want_logits, want_grads, want_curve = logits, grads, curve
            out["reference_loss"] = [curve[0], curve[-1]]
        else:
            errs = [ts.rel(grads[n], want_grads[n]) for n in want_grads]
            out[impl] = {
                "logits_rel": ts.rel(logits, want_logits), "grad_rel_median": statistics.median(errs),
                "grad_rel_max": max(errs), "grads_compared": len(errs),
                "loss_first_last": [curve[0], curve[-1]],
                "loss_max_abs_diff": max(abs(a - b) for a, b in zip(curve, want_curve)),
                "nan": any(torch.isnan(g).any().item() for g in grads.values()),
            }
        del model, base, opt, named
        ts.release()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", choices=sorted(ARCHS), default="llama-1.1b")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=2, help="runs of each QLoRA cell")
    ap.add_argument("--cells", type=int, default=len(CELLS), help="the first N cells of the priority list")
    ap.add_argument("--select", default="", help="cells instead, e.g. 'lora,0.05,0,0;qlora,0.05,1,0'")
    ap.add_argument("--minutes", type=float, default=8.0, help="start no cell after this much wall time")
    ap.add_argument("--axolotl-minutes", type=float, default=1.5, help="more time for Axolotl's runs, after")
    ap.add_argument("--no-axolotl", action="store_true")
    ap.add_argument("--impls", default="", help="only these runs, e.g. 'frozen,loraplan,loraplan-layer'")
    ap.add_argument("--check", action="store_true")
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    t0 = time.time()
    arch = args.arch
    results: dict = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "arch": arch,
                     "shape": ARCHS[arch], "runs": [], "not_run": []}

    def save():
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=1))

    model_dir = str(Path(tempfile.mkdtemp()) / arch)
    m = build(arch)
    m.save_pretrained(model_dir)
    del m
    ts.release()
    if args.check:
        results["check"] = check(arch)
        print(json.dumps(results["check"]), flush=True)
        save()
    cells = CELLS[: args.cells]
    if args.select:
        cells = [(a, float(d), bool(int(g)), bool(int(c))) for a, d, g, c in
                 (spec.split(",") for spec in args.select.split(";"))]  # fmt: skip
    frozen_done = set()
    plan = []
    for adapter, dropout, gc, compiled in cells:
        if (gc, compiled) not in frozen_done:
            plan.append(("frozen", "lora", 0.0, gc, compiled))
            frozen_done.add((gc, compiled))
        impls = ("peft-bf16", "loraplan", "loraplan-layer") if adapter == "qlora" and not compiled else (
            "peft-bf16", "loraplan")
        for impl in impls:
            for _ in range(args.repeat if adapter == "qlora" else 1):
                plan.append((impl, adapter, dropout, gc, compiled))
    if not args.no_axolotl:  # last: the attention patch changes the class for every later model
        plan += [("axolotl", a, d, g, c) for a, d, g, c in cells if not c and a != "dora"]
    if args.impls:
        plan = [run for run in plan if run[0] in args.impls.split(",")]
    for impl, adapter, dropout, gc, compiled in plan:
        limit = args.minutes + (args.axolotl_minutes if impl == "axolotl" else 0)
        if time.time() - t0 > limit * 60:
            results["not_run"].append([impl, adapter, dropout, gc, compiled])
            continue
        results["runs"].append(run_cell(arch, impl, adapter, dropout, gc, compiled, model_dir, args.steps,
                                        args.warmup))
        save()
    save()
    print_table(results)
    return 0


def reestimate(path: str) -> int:
    """The plan's estimate for every loraplan row of a results file, recomputed on the CPU (no torch)."""
    import loraplan
    from loraplan.compiler.sources.from_config import from_config_json

    results = json.loads(Path(path).read_text())
    arch = results["arch"]
    if arch == "llama-1.1b":
        data = {**ts.MODEL, "model_type": "llama", "architectures": ["LlamaForCausalLM"]}
    else:
        data = json.loads((CATALOG / ARCHS[arch]["config"]).read_text())
    spec = from_config_json(data)
    print(f"{results['device']} {arch}: estimate against max_memory_allocated")
    for r in results["runs"]:
        if not r.get("impl", "").startswith("loraplan") or "peak_gib" not in r:
            continue
        plan = loraplan.compile(loraplan_config(arch, r["adapter"], r["dropout"], r["gc"], r["compiled"]),
                                architecture=spec)
        est = plan.memory.peak_allocated_bytes / GIB
        print(f"{r['run'][:44]:44} peak {r['peak_gib']:6.2f}  estimate {est:6.2f}  {est / r['peak_gib'] - 1:+7.1%}")
    return 0


def print_table(results: dict) -> None:
    rows = [r for r in results["runs"] if "ms" in r]
    frozen = {(r["gc"], r["compiled"]): r["ms"] for r in rows if r["impl"] == "frozen"}
    print(f"\n{results['device']} {results['arch']}")
    print(f"{'cell':44} {'ms':>7} {'spread':>6} {'host':>6} {'x frz':>6} {'GiB':>5} {'est':>7}")
    for r in results["runs"]:
        if "error" in r:
            print(f"{r['run'][:44]:44} ERROR {r['error'][:70]}")
            continue
        base = frozen.get((r["gc"], r["compiled"]))
        est = f"{r['estimate_error']:+7.1%}" if "estimate_error" in r else ""
        ratio = f"{r['ms'] / base:6.2f}" if base else "     -"
        print(f"{r['run'][:44]:44} {r['ms']:7.1f} {r['ms_spread']:6.1f} {r['host_ms']:6.1f} {ratio} "
              f"{r['peak_gib']:5.1f} {est}")
    if results["not_run"]:
        print("not run (time):", results["not_run"])


if __name__ == "__main__":
    if sys.argv[1:2] == ["--estimate"]:
        raise SystemExit(reestimate(sys.argv[2]))
    raise SystemExit(main())
