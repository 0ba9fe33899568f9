"""One layer group's forward + backward: output-side LoRA against stacked weights, GPU time only.

For the projections of the 1.1B Llama benchmark (N = 8 x 1024 tokens, r = 16, bf16 weights,
fp32 adapters) times forward and backward of: the frozen projections alone (the limit), the
output-side functions (GroupedLoraLinear for q/k/v and gate/up, FusedLoraLinear for o_proj and
down_proj) and the stacked one (StackedLoraLinear, with the low-rank columns padded to 8 or 64).
GPU microseconds come from a CUDA graph (no launch overhead); host microseconds are what Python
takes to issue one forward + backward. Also prints each variant's error against an fp32
reference (outputs and every gradient), since the stacked GEMM has another inner dimension.

    python benchmarks/stacked_linear.py [--out results.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from lowrank_kernels import timed  # benchmarks/ is the script's directory
from torch import nn

from loraplan.runtime.fast import stacked, torch_ops
from loraplan.runtime.fast.functions import FusedLoraLinear
from loraplan.runtime.fast.grouped import GroupedLoraLinear, fresh_copies

N, R, SCALE = 8 * 1024, 16, 2.0
GROUPS = {"q/k/v": (2048, [2048, 512, 512]), "o_proj": (2048, [2048]), "gate/up": (2048, [8192, 8192]),
          "down_proj": (8192, [2048])}  # fmt: skip


def make(d: int, outs: list[int]):
    gen = torch.Generator(device="cuda").manual_seed(0)
    bases = [nn.Linear(d, o, bias=False, device="cuda", dtype=torch.bfloat16).requires_grad_(False) for o in outs]
    a_list = [(torch.randn(R, d, device="cuda", generator=gen) / d**0.5).requires_grad_() for _ in outs]
    b_list = [(torch.randn(o, R, device="cuda", generator=gen) * 0.02).requires_grad_() for o in outs]
    x = torch.randn(N, d, device="cuda", dtype=torch.bfloat16, generator=gen).requires_grad_()
    grads = [torch.randn(N, o, device="cuda", dtype=torch.bfloat16, generator=gen) * 1e-3 for o in outs]
    return bases, a_list, b_list, x, grads


def variants(bases, a_list, b_list):
    k = len(bases)
    scalings = (SCALE,) * k

    def output_side(x):
        if k == 1:
            copies = fresh_copies(a_list, b_list, scalings, x.dtype)
            return (FusedLoraLinear.apply(x, bases[0].weight, None, a_list[0], b_list[0], SCALE, torch_ops,
                                          (copies[0], copies[1][0])),)  # fmt: skip
        spec = (k, scalings, torch_ops, *fresh_copies(a_list, b_list, scalings, x.dtype), None)
        return GroupedLoraLinear.apply(x, spec, *[b.weight for b in bases], *([None] * k), *a_list, *b_list)

    def stacked_with(pad):
        def run(x):
            stack = holder.get(pad)
            if stack is None:
                stacked.PAD = pad
                stack = holder[pad] = stacked.WeightStack(bases, [R] * k)
            stack.refresh(a_list, b_list, scalings)
            return stacked.StackedLoraLinear.apply(x, stack, scalings, *([None] * k), *a_list, *b_list)

        return run

    holder: dict = {}
    frozen = lambda x: tuple(torch.nn.functional.linear(x, b.weight) for b in bases)  # noqa: E731
    return {"frozen": frozen, "output-side": output_side, "stacked pad 8": stacked_with(8),
            "stacked pad 64": stacked_with(64)}  # fmt: skip


def step(fn, x, grads, params):
    outs = fn(x)
    torch.autograd.grad(outs, [x, *params], grads, allow_unused=True)


def warmed_timed(fn) -> tuple[float, float]:
    """lowrank_kernels.timed, after a warm-up on a side stream (autograd's first calls allocate)."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(side)
    return timed(fn, reps=10)


def errors(fn, bases, a_list, b_list, x, grads) -> float:
    """Worst relative error of outputs and gradients against fp32 arithmetic on the same values."""
    params = [*a_list, *b_list]
    outs = fn(x)
    got = [o.float() for o in outs] + [g.float() for g in torch.autograd.grad(outs, [x, *params], grads)]
    xf = x.detach().float().requires_grad_()
    ref_outs = [xf @ b.weight.float().t() + SCALE * (xf @ a.t()) @ bb.t() for b, a, bb in zip(bases, a_list, b_list)]
    want = ref_outs + list(torch.autograd.grad(ref_outs, [xf, *params], [g.float() for g in grads]))
    return max(((g - w).norm() / w.norm()).item() for g, w in zip(got, want))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    rows = []
    for group, (d, outs) in GROUPS.items():
        bases, a_list, b_list, x, grads = make(d, outs)
        for name, fn in variants(bases, a_list, b_list).items():
            if name.startswith("stacked") and not stacked.worth_stacking(d, sum(outs)):
                continue
            params = [] if name == "frozen" else [*a_list, *b_list]
            gpu_us, host_us = warmed_timed(lambda: step(fn, x, grads, params))  # noqa: B023
            err = None if name == "frozen" else errors(fn, bases, a_list, b_list, x, grads)
            rows.append({"group": group, "variant": name, "gpu_us": gpu_us, "host_us": host_us, "max_rel_err": err})
            print(json.dumps(rows[-1]), flush=True)
    stacked.PAD = 8
    print(f"\n{'group':<10} {'variant':<15} {'GPU us':>8} {'host us':>8} {'max rel err':>12}")
    for r in rows:
        err = "-" if r["max_rel_err"] is None else f"{r['max_rel_err']:.4f}"
        print(f"{r['group']:<10} {r['variant']:<15} {r['gpu_us']:>8.1f} {r['host_us']:>8.1f} {err:>12}")
    if args.out:
        Path(args.out).write_text(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                                              "rows": rows}, indent=1))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
