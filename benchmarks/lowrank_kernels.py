"""The rank-r products of a LoRA step: cuBLAS (torch_ops) against loraplan's Triton kernels (triton_ops).

For each projection of the 1.1B Llama benchmark (N = 8 x 1024 tokens, r = 16, plus the grouped
q/k/v and gate/up widths) times every product the fused path runs, checks Triton against an fp32
reference, and prints GPU microseconds per call (from a CUDA graph, so without launch overhead),
effective bandwidth (bytes of the large operand, or of the weight read and written, over the
time) and the host microseconds it takes Python to issue one call.

    python benchmarks/lowrank_kernels.py [--out results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from loraplan.runtime.fast import torch_ops

N = 8 * 1024
SHAPES = {  # name: (in, out, r)
    "q_proj/o_proj": (2048, 2048, 16),
    "k_proj/v_proj": (2048, 512, 16),
    "gate_proj/up_proj": (2048, 8192, 16),
    "down_proj": (8192, 2048, 16),
    "q+k+v grouped": (2048, 3072, 48),
    "gate+up grouped": (2048, 16384, 32),
}


def timed(fn, reps: int = 20) -> tuple[float, float]:
    """(GPU microseconds per call, host microseconds to issue one call).

    GPU time comes from a CUDA graph of `reps` calls, so launch overhead is not counted: these
    products are a few microseconds of GPU work, less than it takes Python to launch them.
    """
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    host = (time.perf_counter() - t0) / reps * 1e6
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(reps):
            fn()
    graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(10):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        graph.replay()
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) * 1000 / reps)
    return statistics.median(times), host


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-30))


def cases(fan_in: int, fan_out: int, r: int):
    dev, bf = "cuda", torch.bfloat16
    x = torch.randn(N, fan_in, device=dev, dtype=bf)
    g = torch.randn(N, fan_out, device=dev, dtype=bf)
    a = torch.randn(r, fan_in, device=dev) / fan_in**0.5  # fp32 masters, as PEFT keeps them
    b = torch.randn(fan_out, r, device=dev) / r**0.5
    w = torch.randn(fan_out, fan_in, device=dev, dtype=bf)
    xa = (x.float() @ a.t()).to(bf)
    gs = (g.float() @ b).to(bf)
    s = 2.0
    e = 2  # bytes per bf16 element
    return [
        # name, call(ops), fp32 reference, bytes that must move
        ("x A^T", lambda o: o.down(x, a), lambda: x.float() @ a.t(), N * fan_in * e),
        ("s g B", lambda o: o.down(g, b.t(), s), lambda: s * g.float() @ b, N * fan_out * e),
        ("dA = gs^T x", lambda o: o.reduce(gs, x), lambda: gs.float().t() @ x.float(), N * fan_in * e),
        ("dB = s g^T xa", lambda o: o.reduce(xa, g, s, transpose=True), lambda: s * g.float().t() @ xa.float(),
         N * fan_out * e),
        ("W + s B A", lambda o: o.merge(w, b, a, s), lambda: w.float() + s * b @ a, 2 * fan_in * fan_out * e),
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    from loraplan.runtime.fast import triton_ops

    rows = []
    print(f"{'shape':18} {'product':15} {'cuBLAS us':>9} {'Triton us':>9} {'speed-up':>8} {'Triton GB/s':>11} "
          f"{'host cuBLAS':>11} {'host Triton':>11} {'err cuBLAS':>10} {'err Triton':>10}")  # fmt: skip
    for shape, (fan_in, fan_out, r) in SHAPES.items():
        for name, call, ref, nbytes in cases(fan_in, fan_out, r):
            expect = ref()
            err_t, err_c = rel(call(triton_ops), expect), rel(call(torch_ops), expect)
            (us_c, host_c), (us_t, host_t) = timed(lambda c=call: c(torch_ops)), timed(lambda c=call: c(triton_ops))
            row = dict(shape=shape, product=name, cublas_us=us_c, triton_us=us_t, bytes=nbytes, host_cublas_us=host_c,
                       host_triton_us=host_t, triton_gbs=nbytes / us_t / 1e3, cublas_gbs=nbytes / us_c / 1e3,
                       err_cublas=err_c, err_triton=err_t)  # fmt: skip
            rows.append(row)
            print(f"{shape:18} {name:15} {us_c:9.1f} {us_t:9.1f} {us_c / us_t:8.2f} {row['triton_gbs']:11.0f} "
                  f"{host_c:11.1f} {host_t:11.1f} {err_c:10.1e} {err_t:10.1e}", flush=True)  # fmt: skip
    if args.out:
        Path(args.out).write_text(json.dumps({"device": torch.cuda.get_device_name(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
