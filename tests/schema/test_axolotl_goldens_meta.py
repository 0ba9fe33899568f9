"""The Axolotl goldens are complete and well-formed (runs without Axolotl: the files only).

The goldens are recorded by tools/axolotl_oracle/record.py from Axolotl 0.19.0's own code; the
dialect's comparison with them lives elsewhere. Here: one golden per corpus config and none
orphaned, the contract's fields (GOLDENS.md) with consistent values, the versions in _meta.json.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from loraplan.compiler.catalog import CONFIGS_DIR

DATA = Path(__file__).parent / "data"
EXAMPLES = DATA / "axolotl-examples"
GOLDENS = DATA / "axolotl-goldens"
STATUSES = {"ok", "axolotl_error", "unresolved"}
STAGES = {"schema", "normalize", "model", "load_lora", "get_peft_model"}
LAYER_FIELDS = {"layer", "r", "alpha", "scaling", "in", "out"}
LORA_KEYS = {
    "r", "lora_alpha", "lora_dropout", "target_modules", "target_parameters", "task_type", "bias", "use_dora",
    "use_rslora", "init_lora_weights", "modules_to_save", "layers_to_transform", "layers_pattern",
    "exclude_modules", "rank_pattern", "alpha_pattern", "fan_in_fan_out", "loftq_config",
}


def corpus() -> list[str]:
    return sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.rglob("*") if p.suffix in (".yml", ".yaml"))


def golden_name(rel: str) -> str:
    stem = rel.rsplit(".", 1)[0]
    return stem.replace("/", "__") + ".json"


def load(name: str) -> dict:
    return json.loads((GOLDENS / name).read_text(encoding="utf-8"))


CONFIGS = corpus()


def test_corpus_is_the_one_the_goldens_cover():
    assert len(CONFIGS) == 178
    assert len({golden_name(c) for c in CONFIGS}) == len(CONFIGS)  # the name mapping is one-to-one


def test_one_golden_per_config_and_none_orphaned():
    present = {p.name for p in GOLDENS.glob("*.json") if not p.name.startswith("_")}
    expected = {golden_name(c) for c in CONFIGS}
    assert sorted(expected - present) == []
    assert sorted(present - expected) == []


def test_meta_names_the_versions():
    meta = load("_meta.json")
    assert meta["axolotl"] == "0.19.0"
    assert meta["transformers"] == "5.16.1"
    assert meta["peft"] == "0.20.0"
    assert meta["torch"].startswith("2.")
    assert meta["script"] == "tools/axolotl_oracle/record.py"
    assert (GOLDENS.parents[3] / meta["script"]).is_file()
    assert len(meta["generated"]) >= 10 and meta["generated"][4] == "-"
    assert isinstance(meta["stubs"], list)
    assert all(s["module"] and s["why"] for s in meta["stubs"])
    statuses = [load(golden_name(c))["status"] for c in CONFIGS]
    assert meta["counts"] == {s: statuses.count(s) for s in sorted(set(statuses))}


def _check_layer(name: str, layer: dict, lora: dict) -> None:
    assert set(layer) >= LAYER_FIELDS, name
    assert isinstance(layer["r"], int) and layer["r"] > 0, name
    assert isinstance(layer["in"], int) and isinstance(layer["out"], int), name
    root = math.sqrt(layer["r"]) if lora["use_rslora"] else layer["r"]
    assert layer["scaling"] == pytest.approx(layer["alpha"] / root), name
    if not lora["rank_pattern"]:
        assert layer["r"] == lora["r"], name
    if not lora["alpha_pattern"]:
        assert layer["alpha"] == lora["lora_alpha"], name


@pytest.mark.parametrize("rel", CONFIGS)
def test_golden_is_well_formed(rel):
    text = (GOLDENS / golden_name(rel)).read_text(encoding="utf-8")
    golden = json.loads(text)
    assert text == json.dumps(golden, indent=1, sort_keys=True, ensure_ascii=False) + "\n"  # deterministic form
    assert golden["config"] == rel
    assert golden["status"] in STATUSES
    if golden["status"] == "unresolved":
        assert isinstance(golden["reason"], str) and golden["reason"]
        return
    assert (CONFIGS_DIR / golden["architecture"]).is_file() if "architecture" in golden else True
    if golden["status"] == "axolotl_error":
        error = golden["error"]
        assert error["stage"] in STAGES
        assert error["type"] and isinstance(error["message"], str)
        return
    assert (CONFIGS_DIR / golden["architecture"]).is_file()
    assert golden["model_class"]
    lora = golden["lora_config"]
    assert set(lora) >= LORA_KEYS
    assert lora["task_type"] in {"CAUSAL_LM", "SEQ_CLS", "TOKEN_CLS"}
    assert lora["bias"] == "none"  # Axolotl always passes bias="none"
    assert golden["modules"] or golden["parameters"]
    applied = golden.get("peft_config_applied", lora)  # PEFT may add rank/alpha patterns (fused MoE experts)
    for name, layer in golden["modules"].items():
        assert not name.startswith("base_model.model."), name
        _check_layer(name, layer, applied)
    for name, layer in golden["parameters"].items():
        assert layer["layer"] == "ParamWrapper", name
        _check_layer(name, layer, applied)
    assert golden["modules_to_save"] == sorted(golden["modules_to_save"])
    assert isinstance(golden["linear_leaf_names"], list)
    assert 0 < golden["trainable"] < golden["total"]
    plain = (not golden["parameters"] and not golden["modules_to_save"] and not golden.get("trainable_tokens")
             and not lora["use_dora"] and all(m["layer"] == "Linear" for m in golden["modules"].values()))
    if plain:  # then the trainable count is the LoRA matrices alone: r * (in + out) per module
        assert golden["trainable"] == sum(m["r"] * (m["in"] + m["out"]) for m in golden["modules"].values())


def test_target_linear_unions_the_leaf_names_axolotl_found():
    """lora_target_linear: Axolotl passes PEFT find_all_linear_names' list united with lora_target_modules."""
    checked = 0
    for rel in CONFIGS:
        golden = load(golden_name(rel))
        raw = yaml.safe_load((EXAMPLES / rel).read_text(encoding="utf-8")) or {}
        if golden["status"] != "ok" or not raw.get("lora_target_linear"):
            continue
        targets = set(golden["lora_config"]["target_modules"])
        assert set(golden["linear_leaf_names"]) <= targets, rel
        extra = raw.get("lora_target_modules") or []
        assert set([extra] if isinstance(extra, str) else extra) <= targets, rel
        checked += 1
    assert checked > 50  # about half the corpus sets lora_target_linear


def test_issue_numbers():
    """Figures the issue measured independently: Axolotl adapts attention only on Mixtral, Jamba's router."""
    assert load("mistral__mixtral__mixtral.json")["trainable"] == 27_262_976
    assert load("mistral__mixtral__mixtral-8x22b-qlora-fsdp.json")["trainable"] == 69_730_304
    jamba = load("jamba__qlora.json")
    assert (len(jamba["modules"]), jamba["trainable"]) == (192, 19_588_096)
    assert "router" in jamba["linear_leaf_names"]
    router = [d for d in load("_trees.json")["ai21labs--Jamba-v0.1.json"]["JambaForCausalLM"]["differences"]
              if d["modules"] == "model.layers.*.feed_forward.router"]
    assert router and router[0]["axolotl"] == "Linear" and router[0]["count"] == 16


def test_param_wrapper_dropout_patch_is_recorded():
    """Axolotl lets lora_dropout > 0 through on fused experts: Linear layers keep it, ParamWrappers get none."""
    seen = 0
    for rel in CONFIGS:
        golden = load(golden_name(rel))
        if golden["status"] != "ok" or not golden["parameters"] or not golden["lora_config"]["lora_dropout"]:
            continue
        seen += 1
        dropout = golden["lora_config"]["lora_dropout"]
        assert {p["dropout"] for p in golden["parameters"].values()} == {0.0}, rel
        assert {m["dropout"] for m in golden["modules"].values()} <= {dropout}, rel
        assert any("ParamWrapper" in w for w in golden["warnings"]), rel
    assert seen >= 1  # trinity-nano-preview-qlora, among others


def test_keys_axolotl_ignores_are_keys_of_the_file():
    for rel in CONFIGS:
        golden = load(golden_name(rel))
        if "unknown_keys" not in golden:
            assert golden["status"] == "axolotl_error" and golden["error"]["stage"] == "schema", rel
            continue
        raw = yaml.safe_load((EXAMPLES / rel).read_text(encoding="utf-8")) or {}
        assert set(golden["unknown_keys"]) <= set(raw), rel
        assert set(golden["unknown_keys"]) <= set(golden["dropped_keys"]) | {k for k, v in raw.items() if v is None}


def test_trees_name_catalog_configs():
    trees = load("_trees.json")
    assert trees
    for config_file, by_class in trees.items():
        assert (CONFIGS_DIR / config_file).is_file(), config_file
        for model_class, tree in by_class.items():
            assert model_class and "error" not in tree and "compared" in tree, (config_file, model_class)
            for diff in tree.get("differences", []):
                assert diff["axolotl"] != diff["manifest"] and diff["count"] > 0
