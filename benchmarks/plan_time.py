"""How long a cold `loraplan plan` takes on the largest catalog models, against PEFT on meta.

The dry run a user would do without loraplan: build the model on the meta device with
transformers (no weights) and call PEFT's `get_peft_model` on it (`low_cpu_mem_usage=True`, so
the adapters stay on meta too). Both sides get the same LoRA config (r=16, all-linear). Every
measurement runs in a fresh interpreter, as a user would run it:

- `loraplan plan` (the CLI, table to /dev/null): wall clock and child CPU time, median of N runs
  after one warm-up run that writes the .pyc files;
- where loraplan's time goes, in-process (median of N fresh interpreters): imports, loading the
  YAML config, resolving the architecture (reading and expanding the catalog manifest), compiling
  (matching, counting, memory, diagnostics) and rendering;
- PEFT: importing torch + transformers + peft, building the model on meta, `get_peft_model`;
  median of M fresh interpreters. Their trainable counts are checked against the plan's.

    python benchmarks/plan_time.py                 # N = 11, M = 3
    python benchmarks/plan_time.py --runs 21 --peft-runs 5 --arch deepseek-ai/DeepSeek-V3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ARCHS = ("meta-llama/Llama-3.1-405B", "deepseek-ai/DeepSeek-V3", "zai-org/GLM-5.2")
CONFIG = """\
base_model: {arch}
adapter: lora
dtype: bfloat16
lora:
  r: 16
  lora_alpha: 32
  target_modules: all-linear
"""

PHASES = """
import json, sys, time
t0 = time.perf_counter()
from loraplan.commands.plan import document
from loraplan.compiler.compile import compile_plan
from loraplan.compiler.resolve import resolve_architecture
from loraplan.schema.load import load_file
t1 = time.perf_counter()
result = load_file(sys.argv[1])
t2 = time.perf_counter()
arch = resolve_architecture(result.config, None, result.source)
t3 = time.perf_counter()
plan = compile_plan(result.config, arch, source=result.source)
t4 = time.perf_counter()
text = document(plan, plan.diagnostics, sys.argv[1], "table", color=False, ascii_only=False)
t5 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "resolve": t3 - t2, "compile": t4 - t3, "render": t5 - t4,
                  "modules": len(arch.modules), "injections": len(plan.injections),
                  "trainable": plan.totals.trainable_params, "torch": "torch" in sys.modules}))
"""

PEFT = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
t0 = time.perf_counter()
import torch, transformers, peft
t1 = time.perf_counter()
from loraplan.compiler.catalog import lookup
from loraplan.compiler.compile import peft_config
from loraplan.compiler.sources.from_config import build_model, read_config_dict
from loraplan.schema.load import load_file
config = load_file(sys.argv[1]).config
data = read_config_dict(lookup(config.base_model).config_path)[0]
t2 = time.perf_counter()
model, _, name = build_model(data)
t3 = time.perf_counter()
pm = peft.get_peft_model(model, peft.LoraConfig(**peft_config(config)), low_cpu_mem_usage=True)
t4 = time.perf_counter()
trainable, total = pm.get_nb_trainable_parameters()
print(json.dumps({"import": t1 - t0, "build": t3 - t2, "peft": t4 - t3, "trainable": trainable, "class": name}))
"""


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(cmd: list[str]) -> tuple[float, float, str]:
    """(wall s, child CPU s, stdout) of one fresh process."""
    cpu0, t0 = child_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"})
    wall, cpu = time.perf_counter() - t0, child_cpu() - cpu0
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return wall, cpu, proc.stdout


def median_json(cmd: list[str], runs: int) -> dict:
    """Per-key medians of the JSON line a script prints, over `runs` fresh processes."""
    rows = [json.loads(timed(cmd)[2].strip().splitlines()[-1]) for _ in range(runs)]
    out = dict(rows[0])
    for key, value in rows[0].items():
        if isinstance(value, float):
            out[key] = statistics.median(r[key] for r in rows)
    return out


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f}"


def measure(arch: str, runs: int, peft_runs: int, folder: Path) -> dict:
    cfg = folder / (arch.replace("/", "--") + ".yaml")
    cfg.write_text(CONFIG.format(arch=arch), encoding="utf-8")
    cli = [sys.executable, "-m", "loraplan", "plan", str(cfg), "-o", os.devnull]
    timed(cli)  # warm-up: .pyc files
    walls, cpus = zip(*[timed(cli)[:2] for _ in range(runs)])
    phases = median_json([sys.executable, "-c", PHASES, str(cfg)], runs)
    peft = median_json([sys.executable, "-c", PEFT, str(cfg)], peft_runs) if peft_runs else None
    return {
        "arch": arch,
        "wall": statistics.median(walls),
        "wall_min": min(walls),
        "wall_max": max(walls),
        "cpu": statistics.median(cpus),
        "phases": phases,
        "peft": peft,
    }


def report(results: list[dict], runs: int, peft_runs: int) -> str:
    import peft as _peft
    import torch
    import transformers

    lines = [
        f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, peft {_peft.__version__}; load average "
        f"{os.getloadavg()[0]:.2f}; loraplan: median of {runs} fresh processes, PEFT: median of {peft_runs}",
        "",
        "| architecture | modules | injections | `loraplan plan` wall ms (min-max) | CPU ms "
        "| PEFT import ms | build on meta ms | get_peft_model ms | build + get_peft_model ms | same count |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        p, f = r["phases"], r["peft"]
        peft_cells = (
            [
                ms(f["import"]),
                ms(f["build"]),
                ms(f["peft"]),
                ms(f["build"] + f["peft"]),
                "yes" if f["trainable"] == p["trainable"] else f"NO ({f['trainable']:,} vs {p['trainable']:,})",
            ]
            if f
            else ["-"] * 5
        )
        lines.append(
            f"| {r['arch']} | {p['modules']:,} | {p['injections']:,} | {ms(r['wall'])} ({ms(r['wall_min'])}-"
            f"{ms(r['wall_max'])}) | {ms(r['cpu'])} | " + " | ".join(peft_cells) + " |"
        )
    lines += [
        "",
        "Where `loraplan plan`'s time goes (in-process, median ms; interpreter start-up not included):",
        "",
        "| architecture | imports | load config | resolve (manifest) | compile | render | total | torch imported |",
        "|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        p = r["phases"]
        total = sum(p[k] for k in ("import", "load", "resolve", "compile", "render"))
        lines.append(
            f"| {r['arch']} | {ms(p['import'])} | {ms(p['load'])} | {ms(p['resolve'])} | {ms(p['compile'])} | "
            f"{ms(p['render'])} | {ms(total)} | {'yes' if p['torch'] else 'no'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cold `loraplan plan` time against PEFT on the meta device.")
    parser.add_argument("--runs", type=int, default=11, help="fresh processes per loraplan measurement")
    parser.add_argument("--peft-runs", type=int, default=3, help="fresh processes per PEFT measurement (0: skip)")
    parser.add_argument("--arch", action="append", default=None, help="catalog architecture (repeatable)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        results = []
        for arch in args.arch or ARCHS:
            print(f"measuring {arch} ...", file=sys.stderr, flush=True)
            results.append(measure(arch, args.runs, args.peft_runs, Path(tmp)))
    print(report(results, args.runs, args.peft_runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
