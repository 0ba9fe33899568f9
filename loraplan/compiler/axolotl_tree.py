"""The module tree Axolotl's pinned transformers builds, where it differs from loraplan's catalog.

The catalog manifests are built with one transformers version (5.23.0); Axolotl 0.19.0 pins
5.16.1, and a module class can differ between the two: Jamba's `feed_forward.router` is an
`nn.Linear` under 5.16.1 (so `lora_target_linear` adapts it there) and its own `JambaTopKRouter`
under 5.23.0. The differences are recorded by the Axolotl oracle (tools/axolotl_oracle, its
`_trees.json` beside the goldens) and shipped as catalog/axolotl-trees.json; for an Axolotl
config the plan uses Axolotl's tree and says which modules differ and why.
Regenerate the data file with `python -m loraplan.compiler.axolotl_tree <goldens>/_trees.json`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any

from loraplan.compiler.architecture import Architecture

DATA = Path(__file__).with_name("catalog") / "axolotl-trees.json"
_WRAPPABLE = ("Embedding", "Conv1D", "Conv1d", "Conv2d", "Conv3d", "MultiheadAttention")


@cache
def _data() -> dict[str, Any]:
    return json.loads(DATA.read_text(encoding="utf-8"))


def pinned_transformers() -> str:
    return _data()["transformers"]


def from_oracle(trees: dict[str, Any], axolotl: str = "0.19.0", transformers: str = "5.16.1") -> dict[str, Any]:
    """The oracle's _trees.json -> the shipped data: only the classes whose trees differ."""
    out: dict[str, Any] = {}
    for config_file, classes in sorted(trees.items()):
        for model_class, found in sorted(classes.items()):
            if found.get("differences"):
                out.setdefault(config_file, {})[model_class] = [
                    {k: d[k] for k in ("modules", "indices", "axolotl", "manifest")} for d in found["differences"]]
    return {"axolotl": axolotl, "transformers": transformers, "catalog_transformers": "5.23.0",
            "source": "tools/axolotl_oracle (_trees.json beside the Axolotl goldens)", "trees": out}


def differences(arch: Architecture) -> list[dict[str, Any]]:
    """The recorded differences for a catalog architecture (none for other sources)."""
    if arch.source != "catalog":
        return []
    from loraplan.compiler.catalog import lookup

    entry = lookup(arch.name)
    if entry is None:
        return []
    found = _data()["trees"].get(entry.config_file, {}).get(arch.model_class, [])
    return [d for d in found if _matters(d)]


def _matters(diff: dict[str, Any]) -> bool:
    """A class change LoRA can see: one side is named a Linear (find_all_linear_names' test) or is a
    module type LoRA wraps. A renamed activation or rotary embedding changes nothing an adapter touches."""
    return any("Linear" in diff[side] or diff[side] in _WRAPPABLE for side in ("axolotl", "manifest"))


def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(r"\.".join(r"\d+" if part == "*" else re.escape(part) for part in pattern.split(".")))


def _first_index(name: str) -> int | None:
    found = re.search(r"\.(\d+)(?=\.|$)", name)
    return int(found.group(1)) if found else None


def axolotl_tree(arch: Architecture) -> tuple[Architecture, list[dict[str, Any]]]:
    """`arch` as Axolotl's pinned transformers builds it, and the differences applied."""
    diffs = differences(arch)
    if not diffs:
        return arch, []
    shapes = {p.name: p.shape for p in arch.parameters}
    modules = list(arch.modules)
    for d in diffs:
        rx, indices = _regex(d["modules"]), set(d.get("indices") or [])
        for k, m in enumerate(modules):
            if not rx.fullmatch(m.name) or (indices and _first_index(m.name) not in indices):
                continue
            if d["axolotl"] == "Linear" and len(shapes.get(f"{m.name}.weight", ())) == 2:
                out_f, in_f = shapes[f"{m.name}.weight"]
                modules[k] = dataclasses.replace(m, cls="Linear", kind="linear", in_features=in_f,
                                                 out_features=out_f, bias=f"{m.name}.bias" in shapes)
            else:
                kind = "other" if m.kind == "linear" else m.kind
                modules[k] = dataclasses.replace(m, cls=d["axolotl"], kind=kind)
    return dataclasses.replace(arch, modules=modules, _index=None), diffs


if __name__ == "__main__":  # python -m loraplan.compiler.axolotl_tree <goldens>/_trees.json
    trees = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    DATA.write_text(json.dumps(from_oracle(trees), indent=1, sort_keys=True) + "\n", encoding="utf-8")
