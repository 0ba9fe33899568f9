"""The plan's memory estimate against measured GPU peaks, recomputed without a GPU.

The estimate depends only on the config and the architecture, so it can be recomputed here for
the runs `benchmarks/train_step.py --out results.json` measured: the allocator peak estimate
against torch.cuda.max_memory_allocated, and the device total (with CUDA context and
fragmentation) against the CUDA context plus torch.cuda.max_memory_reserved.

    python benchmarks/memory_estimate.py benchmarks/results/train_step-h200-2026-11-28.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

GIB = 1024**3


def main(argv: list[str]) -> int:
    import train_step as ts  # beside this script (its folder is sys.path[0])

    import loraplan
    from loraplan.compiler.sources.from_config import from_config_json

    results = json.loads(Path(argv[0]).read_text())
    arch = from_config_json({**ts.MODEL, "model_type": "llama", "architectures": ["LlamaForCausalLM"]})
    ctx = results["context_gib"]
    print(f"{results['device']}: CUDA context {ctx:.2f} GiB")
    print(f"{'run':28} {'alloc GiB':>9} {'est':>6} {'err':>7}   {'device GiB':>10} {'est':>6} {'err':>7}")
    worst = 0.0
    for row in results["runs"]:
        if "/loraplan" not in row["run"] or "peak_gib" not in row:
            continue
        compiled = "compiled" in row["run"]
        config = ts.native_config(row["run"].startswith("qlora"), 8, 1024, ts.MODEL["num_hidden_layers"], compiled)
        memory = loraplan.compile(config, architecture=arch).memory
        est, dev = memory.peak_allocated_bytes / GIB, memory.total_bytes / GIB
        measured_dev = ctx + row["reserved_gib"]
        err, dev_err = est / row["peak_gib"] - 1, dev / measured_dev - 1
        worst = max(worst, abs(err), abs(dev_err))
        print(f"{row['run']:28} {row['peak_gib']:9.2f} {est:6.2f} {err:+7.1%}   {measured_dev:10.2f} {dev:6.2f} "
              f"{dev_err:+7.1%}")
    print(f"largest error: {worst:.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
