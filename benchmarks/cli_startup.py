"""Start-up cost of `loraplan validate`: a new process each run, against bare Python baselines.

`loraplan validate` runs in CI and in pre-commit on every commit, so a cold call must cost little
more than starting Python with pydantic and PyYAML (the only base dependencies). Each command
runs N times in a fresh interpreter (after one warm-up run that writes the .pyc files); the
table shows the median and the spread of wall-clock times, and the median CPU time (user + system)
of the child, which other load on the machine disturbs less than wall time.

    python benchmarks/cli_startup.py            # N = 21
    python benchmarks/cli_startup.py --runs 51
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = "examples/llama3-8b-qlora.yaml"


def loraplan_command() -> list[str]:
    """The installed console script next to this Python, else `python -m loraplan`."""
    script = Path(sys.executable).with_name("loraplan")
    if script.exists():
        return [str(script)]
    found = shutil.which("loraplan")
    return [found] if found else [sys.executable, "-m", "loraplan"]


def commands() -> list[tuple[str, list[str]]]:
    return [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ('python -c "import pydantic, yaml"', [sys.executable, "-c", "import pydantic, yaml"]),
        (
            'python -c "import pydantic, yaml; build a model"',
            [
                sys.executable,
                "-c",
                "import pydantic, yaml\nclass M(pydantic.BaseModel):\n    r: int = 8\nM.model_validate({'r': 16})",
            ],
        ),
        (
            "schema layer only (load_file, no CLI, no compiler)",
            [sys.executable, "-c", f"from loraplan.schema.load import load_file; load_file({EXAMPLE!r})"],
        ),
        (f"loraplan validate {EXAMPLE}", [*loraplan_command(), "validate", EXAMPLE]),
        ("loraplan schema", [*loraplan_command(), "schema"]),
    ]


def time_once(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one fresh process."""
    env = {**os.environ, "NO_COLOR": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.decode()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def measure(argv: list[str], runs: int) -> tuple[list[float], list[float]]:
    time_once(argv)  # warm-up: compile .pyc files, fill the page cache
    samples = [time_once(argv) for _ in range(runs)]
    return [w for w, _ in samples], [c for _, c in samples]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=21, help="fresh processes per command (default 21)")
    args = parser.parse_args()

    print(f"Python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs; "
          f"median of {args.runs} fresh processes each\n")
    results = [(label, *measure(argv, args.runs)) for label, argv in commands()]
    baseline = statistics.median(results[1][1])
    print(f"| {'command':<52} | wall median ms | min | max | CPU median ms | wall vs pydantic+yaml |")
    print(f"|{'-' * 54}|---------------:|----:|----:|--------------:|----------------------:|")
    for label, wall, cpu in results:
        med = statistics.median(wall)
        print(f"| {label:<52} | {med * 1000:14.0f} | {min(wall) * 1000:3.0f} | {max(wall) * 1000:3.0f} | "
              f"{statistics.median(cpu) * 1000:13.0f} | {(med - baseline) * 1000:+18.0f} ms |")


if __name__ == "__main__":
    main()
