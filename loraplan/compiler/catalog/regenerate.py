"""Rebuild the catalog manifests from configs/ with the installed transformers.

    python -m loraplan.compiler.catalog.regenerate            # write manifests/ and index.json
    python -m loraplan.compiler.catalog.regenerate --check    # exit 1 listing stale ones

Each config is built on the meta device as `from_pretrained` would build it (its
`architectures[0]`), described as an Architecture and stored as a compact manifest. A manifest
is stale when its content differs from what the installed transformers builds now.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loraplan.compiler.catalog import (
    CONFIGS_DIR,
    INDEX_FILE,
    MANIFESTS_DIR,
    build_catalog,
    canonical_sha256,
    default_hub_id,
    read_sources,
)
from loraplan.compiler.catalog.manifest import dumps, encode
from loraplan.compiler.variants import VARIANTS, apply_variant

INDEX_FORMAT = 1
VARIANT_KEY = "loraplan_variant"
AUTO_CLASSES = (
    "AutoModelForCausalLM",
    "AutoModelForImageTextToText",
    "AutoModelForSeq2SeqLM",
    "AutoModelForMaskedLM",
    "AutoModelForSequenceClassification",
    "AutoModelForTokenClassification",
    "AutoModelForQuestionAnswering",
    "AutoModel",
)
# What may differ between a stored manifest and a fresh build without the manifest being stale.
VOLATILE = ("transformers_version",)


def config_files() -> list[str]:
    """Every config of the catalog, relative to configs/, sorted."""
    return sorted(p.relative_to(CONFIGS_DIR).as_posix() for p in CONFIGS_DIR.rglob("*.json"))


def manifest_name(config_file: str) -> str:
    return config_file  # same relative path under manifests/


def auto_classes(model_type: str) -> dict[str, str]:
    """Which class each AutoModel class builds for this model type (for model_class: AutoModel...)."""
    import transformers

    out: dict[str, str] = {}
    for auto in AUTO_CLASSES:
        try:
            names = getattr(transformers, auto)._model_mapping._model_mapping
        except Exception:
            continue
        value = names.get(model_type)
        if isinstance(value, str):
            out[auto] = value
    return out


@dataclass
class Built:
    config_file: str
    manifest: dict[str, Any] | None
    summary: dict[str, Any] | None
    error: str | None = None
    arch: Any = None  # the Architecture built now


def read_variant(data: Any) -> dict[str, str] | None:
    """A variant file's `{"base": config file, "variant": name}`; None for a plain config.json.

    A variant is a published config built by transformers, then changed the way a training tool
    patches the model class (see loraplan.compiler.variants); its file holds only that reference.
    """
    if not isinstance(data, dict) or VARIANT_KEY not in data:
        return None
    spec = data[VARIANT_KEY]
    if not isinstance(spec, dict) or not isinstance(spec.get("base"), str) or spec.get("variant") not in VARIANTS:
        raise ValueError(f"{VARIANT_KEY} needs 'base' (a config file) and 'variant' (one of {', '.join(VARIANTS)})")
    return {"base": spec["base"], "variant": spec["variant"]}


def build(config_file: str) -> Built:
    """Build one config's manifest and index summary with the installed transformers."""
    from loraplan.compiler.sources.from_config import from_config_json
    from loraplan.errors import LoraplanError

    path = CONFIGS_DIR / config_file
    variant = None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        variant = read_variant(data)
        hf_config = json.loads((CONFIGS_DIR / variant["base"]).read_text(encoding="utf-8")) if variant else data
        arch = from_config_json(hf_config, name=default_hub_id(config_file), origin="catalog")
        if variant:
            arch = apply_variant(arch, variant["variant"])
    except LoraplanError as exc:
        return Built(config_file, None, None, "; ".join(d.message for d in exc.diagnostics) or str(exc))
    except Exception as exc:  # a config transformers chokes on: reported, never fatal for the others
        return Built(config_file, None, None, f"{type(exc).__name__}: {exc}")
    sha = canonical_sha256(data)
    manifest = encode(arch, config_file=config_file, config_sha256=sha)
    summary = {
        "manifest": manifest_name(config_file),
        "model_type": arch.model_type,
        "model_class": arch.model_class,
        "num_layers": arch.num_layers,
        "total_params": arch.total_params,
        "num_modules": len(arch.modules),
        "transformers_version": arch.transformers_version,
        "config_sha256": sha,
        "auto_classes": auto_classes(arch.model_type),
    }
    if variant:
        summary.update(variant=variant["variant"], base_config=variant["base"])
    return Built(config_file, manifest, summary, arch=arch)


def same(stored: dict[str, Any] | None, fresh: dict[str, Any]) -> bool:
    """Equal up to the volatile fields (the transformers version that wrote it)."""
    if stored is None:
        return False
    strip = lambda d: {k: v for k, v in d.items() if k not in VOLATILE}  # noqa: E731
    return strip(stored) == strip(json.loads(dumps(fresh)))


def read_manifest(config_file: str) -> dict[str, Any] | None:
    try:
        return json.loads((MANIFESTS_DIR / manifest_name(config_file)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def stored_manifests() -> list[str]:
    return sorted(p.relative_to(MANIFESTS_DIR).as_posix() for p in MANIFESTS_DIR.rglob("*.json") if p != INDEX_FILE)


def run(check: bool, only: list[str] | None = None, out=sys.stdout) -> int:
    import transformers

    files = config_files()
    if only:
        files = [f for f in files if any(o in f for o in only)]
    index = {"format": INDEX_FORMAT, "transformers_version": transformers.__version__, "entries": {}, "failed": {}}
    try:
        old_index = json.loads(INDEX_FILE.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        old_index = {"entries": {}, "failed": {}}
    problems: list[str] = []
    for config_file in files:
        built = build(config_file)
        if built.manifest is None:
            index["failed"][config_file] = built.error
            problems.append(f"{config_file}: cannot be built: {built.error}")
            print(f"FAILED  {config_file}: {built.error}", file=out)
            continue
        index["entries"][config_file] = built.summary
        stored = read_manifest(config_file)
        if same(stored, built.manifest):
            if not check and stored and stored.get("transformers_version") != built.manifest["transformers_version"]:
                _write(MANIFESTS_DIR / manifest_name(config_file), dumps(built.manifest))
            continue
        problems.append(f"{config_file}: manifest {'missing' if stored is None else 'stale'}")
        if check:
            print(f"STALE   {config_file}", file=out)
        else:
            _write(MANIFESTS_DIR / manifest_name(config_file), dumps(built.manifest))
            print(f"wrote   manifests/{manifest_name(config_file)}", file=out)
    if only:  # a partial run keeps the other entries as they are
        for key in ("entries", "failed"):
            for k, v in old_index.get(key, {}).items():
                if k not in files and k in config_files():
                    index[key].setdefault(k, v)
    index["entries"] = dict(sorted(index["entries"].items()))
    index["failed"] = dict(sorted(index["failed"].items()))
    orphans = [m for m in stored_manifests() if m not in set(config_files())]
    for m in orphans:
        problems.append(f"manifests/{m}: no config in configs/")
        if not check:
            (MANIFESTS_DIR / m).unlink()
            print(f"removed manifests/{m}", file=out)
    index_text = dump_index(index)
    if check:
        if not same_index(old_index, index):
            problems.append("manifests/index.json: stale")
    else:
        _write(INDEX_FILE, index_text)
    cat = build_catalog(index, read_sources())
    for row in cat.orphan_rows:
        print(f"warning: {row.tsv}:{row.line}: file '{row.file}' has no built config in configs/", file=out)
    for name, owners in sorted(cat.conflicts.items()):
        problems.append(f"name '{name}' refers to several entries: {', '.join(sorted(owners))}")
    ok = len(files) - len(index["failed"])
    print(f"{ok} manifests from {len(files)} configs; {len(problems)} problem(s)", file=out)
    for p in problems:
        print(f"  {p}", file=out)
    return 1 if (check and problems) else 0


def dump_index(index: dict[str, Any]) -> str:
    """One line per entry: small, fast to parse, readable in a diff."""

    def block(items: dict[str, Any]) -> str:
        rows = [f"  {json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}" for k, v in items.items()]
        return "{\n" + ",\n".join(rows) + "\n }" if rows else "{}"

    head = {k: v for k, v in index.items() if k not in ("entries", "failed")}
    lines = [f" {json.dumps(k)}: {json.dumps(v)}," for k, v in head.items()]
    lines.append(f' "entries": {block(index["entries"])},')
    lines.append(f' "failed": {block(index["failed"])}')
    return "{\n" + "\n".join(lines) + "\n}\n"


def same_index(old: dict[str, Any], new: dict[str, Any]) -> bool:
    def strip(index: dict[str, Any]) -> Any:
        entries = {
            k: {kk: vv for kk, vv in v.items() if kk not in VOLATILE} for k, v in index.get("entries", {}).items()
        }
        return entries, index.get("failed", {})

    return strip(old) == strip(new)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loraplan.compiler.catalog.regenerate", description=__doc__)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a manifest is stale")
    parser.add_argument("only", nargs="*", help="only configs whose path contains one of these")
    args = parser.parse_args(argv)
    return run(args.check, args.only or None)


if __name__ == "__main__":
    sys.exit(main())
