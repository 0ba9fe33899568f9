"""Record Axolotl goldens: what Axolotl 0.19.0's own code builds for every corpus config.

Usage (from the repository root, in the isolated .venv-axolotl; `make axolotl-goldens` does both):
    .venv-axolotl/bin/python -m tools.axolotl_oracle.record [--jobs N] [--only SUBSTRING ...]

Each config runs in a forked child (Axolotl's patches are process-global); the parent imports
Axolotl, transformers and PEFT once before forking. Writes one JSON per config plus _meta.json and
_trees.json to tests/schema/data/axolotl-goldens (format: GOLDENS.md / README.md here). This module
is never imported by loraplan or its tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import os
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "tests/schema/data/axolotl-examples"
GOLDENS = ROOT / "tests/schema/data/axolotl-goldens"
SCRIPT = "tools/axolotl_oracle/record.py"


def golden_name(rel: str) -> str:
    """`mistral/mixtral/mixtral.yml` -> `mistral__mixtral__mixtral.json` (GOLDENS.md)."""
    stem = rel[: -len(".yaml")] if rel.endswith(".yaml") else rel[: -len(".yml")]
    return stem.replace("/", "__") + ".json"


def corpus() -> list[str]:
    return sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.rglob("*") if p.suffix in (".yml", ".yaml"))


def dump(data) -> str:
    return json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def _child(rel: str) -> dict:
    from tools.axolotl_oracle import run_config

    start = time.monotonic()
    try:
        golden = run_config.run(EXAMPLES, rel)
        golden["_seconds"] = time.monotonic() - start
        return golden
    except BaseException as exc:
        return {"config": rel, "status": "oracle_failure", "reason": f"{type(exc).__name__}: {exc}",
                "traceback": traceback.format_exc()}


def _preload() -> None:
    """Import what every child needs once, before forking (children share the pages)."""
    os.environ.setdefault("AXOLOTL_DO_NOT_TRACK", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    from tools.axolotl_oracle import stubs

    stubs.install()
    import axolotl.loaders.adapter
    import axolotl.loaders.model
    import axolotl.utils.config  # noqa: F401
    import peft  # noqa: F401
    import transformers  # noqa: F401

    from loraplan.compiler.catalog import catalog

    catalog()


def versions() -> dict[str, str]:
    return {name: metadata.version(name) for name in ("axolotl", "transformers", "peft", "torch", "bitsandbytes",
                                                       "accelerate", "pydantic")}


def check_pins() -> str | None:
    """The goldens name their versions: refuse to record with other ones than requirements.txt pins."""
    pins = {}
    for line in (Path(__file__).parent / "requirements.txt").read_text(encoding="utf-8").splitlines():
        name, _, version = line.split("#", 1)[0].strip().partition("==")
        if version:
            pins[name.lower()] = version
    found = versions()
    wrong = [f"{n} {found[n]} (pinned {pins[n]})" for n in ("axolotl", "transformers", "peft", "accelerate")
             if found[n] != pins.get(n)]
    return "; ".join(wrong) or None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=max(1, min(2, os.cpu_count() or 1)))
    parser.add_argument("--only", nargs="*", help="record only configs whose path contains one of these")
    parser.add_argument("--out", type=Path, default=GOLDENS)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))
    wrong = check_pins()
    if wrong:
        print(f"record.py: wrong environment: {wrong}; run `make axolotl-goldens`", file=sys.stderr)
        return 2
    _preload()
    from tools.axolotl_oracle import run_config, stubs

    configs = corpus()
    todo = [c for c in configs if not args.only or any(s in c for s in args.only)]
    args.out.mkdir(parents=True, exist_ok=True)
    trees_path = args.out / "_trees.json"
    trees = json.loads(trees_path.read_text()) if args.only and trees_path.exists() else {}
    start = time.monotonic()
    counts: dict[str, int] = {}
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(args.jobs, maxtasksperchild=1) as pool:
        for golden in pool.imap_unordered(_child, todo):
            seconds = golden.pop("_seconds", 0.0)
            tree = golden.pop("_tree", None)
            if tree is not None and golden.get("architecture"):
                trees.setdefault(golden["architecture"], {})[golden.get("model_class", "?")] = tree
            counts[golden["status"]] = counts.get(golden["status"], 0) + 1
            (args.out / golden_name(golden["config"])).write_text(dump(golden), encoding="utf-8")
            print(f"{golden['status']:15} {seconds:6.1f}s {golden['config']}", flush=True)
    if not args.only:  # a full run: drop goldens of configs that left the corpus
        keep = {golden_name(c) for c in configs}
        for path in args.out.glob("*.json"):
            if not path.name.startswith("_") and path.name not in keep:
                path.unlink()
    trees_path.write_text(dump(dict(sorted(trees.items()))), encoding="utf-8")
    meta = {
        **versions(),
        "generated": dt.date.today().isoformat(),
        "script": SCRIPT,
        "command": "make axolotl-goldens",
        "stubs": stubs.describe(),
        "capabilities": {"default": run_config.SINGLE_GPU,
                         "sharded": "n_gpu 8 where the config sets fsdp/fsdp_config/deepspeed or "
                                    "tensor/context_parallel_size > 1"},
        "corpus": "tests/schema/data/axolotl-examples",
        "configs": len(configs),
    }
    statuses: dict[str, int] = {}
    for path in sorted(args.out.glob("*.json")):
        if not path.name.startswith("_"):
            status = json.loads(path.read_text(encoding="utf-8")).get("status", "?")
            statuses[status] = statuses.get(status, 0) + 1
    meta["counts"] = dict(sorted(statuses.items()))
    if not args.only:
        meta["seconds"] = round(time.monotonic() - start)
    else:
        old = args.out / "_meta.json"
        prior = json.loads(old.read_text()) if old.exists() else {}
        meta = {**prior, **meta}
    (args.out / "_meta.json").write_text(dump(meta), encoding="utf-8")
    print(f"{sum(counts.values())} configs in {time.monotonic() - start:.0f}s: {counts}")
    return 1 if counts.get("oracle_failure") else 0


if __name__ == "__main__":
    sys.exit(main())
