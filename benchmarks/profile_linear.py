"""Per-linear cost of LoRA variants on one GPU, for the shapes of the 1.1B Llama benchmark.

For each projection shape (N = batch x seq tokens), times forward + backward of:
frozen F.linear (the limit), PEFT-style bf16 ops (A, B, scale, add as separate kernels), the
fused function with the update added after the base GEMM ("post"), and loraplan's fused
function (low-rank term first, base GEMM accumulating onto it). Then profiles one training
step of the fused model and prints the top CUDA kernels.

    python benchmarks/profile_linear.py
"""

from __future__ import annotations

import statistics
import sys

import torch
import torch.nn.functional as F

from loraplan.runtime.fast.functions import FusedLoraLinear, MergedLoraLinear

SHAPES = {  # name: (in, out)
    "q_proj": (2048, 2048),
    "k_proj": (2048, 512),
    "o_proj": (2048, 2048),
    "gate_proj": (2048, 8192),
    "down_proj": (8192, 2048),
}


class PostAdd(torch.autograd.Function):
    """The first fused version: base GEMM, then addmm_ of the update into its output."""

    @staticmethod
    def forward(ctx, x, w, a32, b32, s):
        a, b = a32.to(x.dtype), b32.to(x.dtype)
        out = F.linear(x, w)
        xa = x @ a.t()
        out.addmm_(xa, b.t(), alpha=s)
        ctx.save_for_backward(x, xa, w, a, b)
        ctx.s = s
        return out

    @staticmethod
    def backward(ctx, g):
        x, xa, w, a, b = ctx.saved_tensors
        gs = (g @ b).mul_(ctx.s)
        gx = g @ w
        gx.addmm_(gs, a)
        return gx, None, (gs.t() @ x).float(), (g.t() @ xa).mul_(ctx.s).float(), None


def bench(fn, reps: int = 30) -> float:
    for _ in range(5):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e))
    return statistics.median(times)


def time_shape(n: int, i: int, o: int, r: int, s: float) -> list[float]:
    x = torch.randn(n, i, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    w = torch.randn(o, i, device="cuda", dtype=torch.bfloat16) / i**0.5
    a = (torch.randn(r, i, device="cuda") / i**0.5).requires_grad_()
    b = (torch.randn(o, r, device="cuda") * 0.01).requires_grad_()
    a16 = a.detach().bfloat16().requires_grad_()
    b16 = b.detach().bfloat16().requires_grad_()
    g = torch.randn(n, o, device="cuda", dtype=torch.bfloat16)

    def frozen():
        F.linear(x, w).backward(g)

    def peft():
        (F.linear(x, w) + F.linear(F.linear(x, a16), b16) * s).backward(g)

    def post():
        PostAdd.apply(x, w, a, b, s).backward(g)

    def fused():
        FusedLoraLinear.apply(x, w, None, a, b, s).backward(g)

    def merged():
        MergedLoraLinear.apply(x, w, None, a, b, s).backward(g)

    return [bench(f) for f in (frozen, peft, post, fused, merged)]


def main() -> None:
    n, r, s = 8 * 1024, 16, 2.0
    print(f"{'shape':10} {'frozen':>8} {'peft-bf16':>10} {'post':>8} {'act':>8} {'merged':>8}  ms fwd+bwd N={n} r={r}")
    for name, (i, o) in SHAPES.items():
        row = time_shape(n, i, o, r, s)
        print(f"{name:10} {row[0]:8.3f} {row[1]:10.3f} {row[2]:8.3f} {row[3]:8.3f} {row[4]:8.3f}")
    if "--micro" in sys.argv:
        return

    profile_steps()


def kernel_times(model, ids, opt) -> dict[str, tuple[float, int]]:
    """CUDA time (ms) and call count per kernel name over one training step."""
    from torch.profiler import ProfilerActivity, profile

    def step():
        model(input_ids=ids, labels=ids).loss.backward()
        if opt is not None:
            opt.step()
            opt.zero_grad(set_to_none=True)

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    out = {}
    for evt in prof.key_averages():
        t = getattr(evt, "device_time_total", None) or getattr(evt, "cuda_time_total", 0)
        if t:
            out[evt.key] = (t / 1000, evt.count)
    return out


def profile_steps() -> None:
    """Kernels of one step: frozen base vs PEFT+fused (fp32 and bf16 adapters), side by side."""
    from train_step import build_bf16, freeze_with_input_grads, fused, peft_wrap  # beside this script

    ids = torch.randint(0, 32000, (8, 1024), device="cuda")
    tables = {}
    for label, make in (
        ("frozen", lambda: freeze_with_input_grads(build_bf16(16))),
        ("fused32", lambda: fused(peft_wrap(build_bf16(16), bf16_adapters=False))),
        ("fused16", lambda: fused(peft_wrap(build_bf16(16), bf16_adapters=True))),
    ):
        model = make()
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=1e-4) if params else None
        tables[label] = kernel_times(model, ids, opt)
        del model, opt
        torch.cuda.empty_cache()
    names = sorted(set().union(*tables.values()), key=lambda k: -max(t.get(k, (0, 0))[0] for t in tables.values()))
    print(f"\n{'kernel':70} " + " ".join(f"{lab:>16}" for lab in tables))
    for name in names[:45]:
        cells = " ".join(f"{t.get(name, (0, 0))[0]:9.2f}ms x{t.get(name, (0, 0))[1]:<4}" for t in tables.values())
        print(f"{name[:70]:70} {cells}")
    print(f"{'TOTAL':70} " + " ".join(f"{sum(v[0] for v in t.values()):9.2f}ms      " for t in tables.values()))


if __name__ == "__main__":
    main()
