"""The manifests test: every bundled manifest equals what the installed transformers builds now.

Each catalog config is built on the meta device (as `regenerate` does), encoded, and compared with
the stored manifest; the stored manifest, expanded, must give exactly that Architecture. A failure
here means: run `python -m loraplan.compiler.catalog.regenerate` and review the diff.
"""

from __future__ import annotations

import json

import pytest

from loraplan.compiler.catalog import MANIFESTS_DIR, read_index
from loraplan.compiler.catalog.manifest import decode
from loraplan.compiler.catalog.regenerate import VOLATILE, build, config_files, read_manifest, same, stored_manifests

CONFIGS = config_files()
FIELDS = (
    "model_type",
    "model_class",
    "output_embedding",
    "input_embedding",
    "tied_embeddings",
    "num_layers",
    "main_stack",
    "layer_stacks",
    "tied_parameters",
    "config_attrs",
)


@pytest.mark.parametrize("config_file", CONFIGS)
def test_manifest_equals_fresh_build(config_file):
    built = build(config_file)
    assert built.error is None, f"{config_file} no longer builds: {built.error}"
    stored = read_manifest(config_file)
    assert stored is not None, f"no manifest for {config_file}: run the regenerate command"
    assert same(stored, built.manifest), f"manifests/{config_file} is stale: run the regenerate command"
    expanded = decode(stored, built.arch.name, source=built.arch.source)
    assert expanded.modules == built.arch.modules
    assert expanded.parameters == built.arch.parameters
    for key in FIELDS:
        assert getattr(expanded, key) == getattr(built.arch, key), key
    assert expanded.fingerprint == built.arch.fingerprint
    entry = read_index()["entries"][config_file]
    strip = lambda d: {k: v for k, v in d.items() if k not in VOLATILE}  # noqa: E731
    assert strip(entry) == strip(built.summary)


def test_no_orphan_manifests_and_no_failures():
    assert set(stored_manifests()) == set(CONFIGS)
    index = read_index()
    assert index["failed"] == {}
    assert set(index["entries"]) == set(CONFIGS)


def test_manifests_stay_small():
    total = sum(p.stat().st_size for p in MANIFESTS_DIR.rglob("*.json"))
    assert total < 4 * 1024 * 1024
    for config_file in CONFIGS:
        data = json.loads((MANIFESTS_DIR / config_file).read_text())
        stacks = data["layer_stacks"]
        # repeated layers are stored once: far fewer templates than blocks
        assert len(data["templates"]) <= max(1, sum(stacks.values()) // 2 + len(stacks)), config_file
