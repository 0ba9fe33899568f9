"""Where the module tree Axolotl's pinned transformers builds differs from loraplan's catalog manifest.

The manifests (loraplan/compiler/catalog/manifests) were built with another transformers version;
a module whose class changed (Jamba's router: nn.Linear under 5.16.1, its own class under 5.23.0)
changes what `lora_target_linear` adapts. Only differences are kept, with layer indices collapsed.
"""

from __future__ import annotations

import json
import re
from typing import Any

_NUM = re.compile(r"\.(\d+)(?=\.|$)")


def _pattern(name: str) -> tuple[str, int | None]:
    first = _NUM.search(name)
    return _NUM.sub(".*", name), int(first.group(1)) if first else None


def _manifest_classes(config_file: str) -> tuple[dict[str, str], str, str | None]:
    from loraplan.compiler.catalog import lookup
    from loraplan.compiler.catalog.manifest import decode

    entry = lookup(config_file)
    data = json.loads(entry.manifest_path.read_text(encoding="utf-8"))
    arch = decode(data, entry.name)
    return {m.name: m.cls for m in arch.modules if m.name}, arch.model_class, arch.transformers_version


def diff(model, config_file: str) -> dict[str, Any]:
    """Differences between `model`'s named modules and the catalog manifest of `config_file`."""
    manifest, manifest_class, version = _manifest_classes(config_file)
    ours_class = type(model).__name__
    out: dict[str, Any] = {"manifest_transformers": version, "manifest_model_class": manifest_class}
    if ours_class != manifest_class:
        out["compared"] = False
        out["note"] = f"Axolotl builds {ours_class}, the manifest {manifest_class}: trees not compared"
        return out
    ours = {name: type(mod).__name__ for name, mod in model.named_modules() if name}
    groups: dict[tuple, list[int]] = {}
    for name in sorted(set(ours) | set(manifest)):
        a, b = ours.get(name), manifest.get(name)
        if a == b:
            continue
        pattern, layer = _pattern(name)
        groups.setdefault((pattern, a, b), []).append(layer)
    out["compared"] = True
    out["differences"] = [
        {"modules": pattern, "axolotl": a, "manifest": b, "count": len(layers),
         "indices": sorted({i for i in layers if i is not None})}
        for (pattern, a, b), layers in sorted(groups.items(), key=lambda kv: (kv[0][0], str(kv[0][1]), str(kv[0][2])))
    ]
    return out
