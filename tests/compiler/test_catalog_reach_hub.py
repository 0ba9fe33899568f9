"""Catalog reach through the hub: the stand-in serves every real config.json we have, and every
Axolotl corpus config whose base_model it serves plans through it.

The stand-in (tests/hub_standin.py) serves each catalog config under its own hub id and every file of
the shared corpus (/work/shared/corpus/hf-configs), with any revision (a corpus config may pin
one). The catalog lookup is switched off, so each base_model really goes hub -> HF cache ->
plan. A base_model whose config.json we do not have gets the hub's 404 (LP521), located; none of
the corpus needs remote code among the files served. The offline coverage (>= 80 %) is
test_catalog_coverage.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hub_standin import HubStandIn, Repo

from loraplan.compiler import catalog as catalog_module
from loraplan.compiler.compile import check_loaded
from loraplan.schema.load import load_file

CORPUS = Path(__file__).resolve().parents[1] / "schema" / "data" / "axolotl-examples"
SHARED = Path("/work/shared/corpus/hf-configs")
RESOLVE_CODES = {"LP501", "LP512", "LP521", "LP522", "LP523", "LP524", "LP525", "LP526", "LP527", "LP536"}


def served_configs() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for entry in catalog_module.list_catalog():
        if not entry.variant:  # a variant is a patched module tree, not a published file
            files.setdefault(entry.name.lower(), entry.config_path.read_bytes())
    if SHARED.is_dir():
        for path in SHARED.rglob("*.json"):
            files.setdefault(path.name.removesuffix(".json").replace("--", "/", 1).lower(), path.read_bytes())
    return files


def test_every_corpus_config_with_a_served_config_plans_through_the_hub(monkeypatch, tmp_path):
    served = served_configs()
    names = {}
    for entry in catalog_module.list_catalog():
        names.setdefault(entry.name.lower(), entry.name)
    repos = {names.get(k, k): Repo({"config.json": v}, revisions=None) for k, v in served.items()}
    hub = HubStandIn(repos=repos)
    url = hub.start()
    try:
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
        monkeypatch.setattr(catalog_module, "lookup", lambda name: None)  # hub only
        planned, refused = [], []
        for path in sorted(CORPUS.rglob("*.y*ml")):
            result = load_file(path)
            assert result.config is not None, path
            plan, diags = check_loaded(result, offline_only=False)
            base = result.config.base_model
            errors = [d for d in diags if d.severity == "error" and d.code in RESOLVE_CODES]
            if base.lower() in served:
                assert plan is not None and not errors, (path, [d.message for d in errors])
                assert plan.architecture_source["kind"] in ("hub", "hf-cache")
                planned.append(path)
            else:
                assert plan is None and [d.code for d in errors] == ["LP521"], path
                assert base in errors[0].message and errors[0].file == str(path) and errors[0].line
                refused.append(base)
    finally:
        hub.stop()
    assert len(planned) + len(refused) == 178
    assert len(planned) >= 89, len(planned)
    assert {p for _, p, _ in hub.requests if not p.endswith("/config.json")} == set()  # nothing else, ever
    print(f"\nhub stand-in: {len(planned)}/178 corpus configs plan through it; "
          f"{len(set(refused))} base models have no config.json here")


@pytest.mark.parametrize("name", ["Qwen/Qwen3-8B", "meta-llama/Llama-3.2-1B"])
def test_the_catalog_still_answers_first(name, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # would fail if asked
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    from loraplan.schema.load import load_text

    plan, _ = check_loaded(load_text(f"base_model: {name}\nlora:\n  target_modules: [q_proj]\n", "c.yaml"),
                           offline_only=False)
    assert plan.architecture_source["kind"] == "catalog"
