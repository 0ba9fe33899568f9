"""Plan <-> JSON: round trip, the key names other tools read, stable order and fingerprints."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from loraplan.compiler.catalog import load_catalog_architecture
from loraplan.compiler.compile import compile_plan
from loraplan.compiler.plan import Plan
from loraplan.schema.config import Config

SCRIPT = """
import sys
from loraplan.compiler.catalog import load_catalog_architecture
from loraplan.compiler.compile import compile_plan
from loraplan.schema.config import Config
arch = load_catalog_architecture("mistralai/Mixtral-8x7B-v0.1")
for lora in ({"target_modules": "all-linear", "r": 8}, {"target_modules": [f"model.layers.{i}.self_attn.q_proj"
             for i in range(24)] + ["w1", "w3", "v_porj"], "rank_pattern": {"q_proj": 4}}):
    plan = compile_plan(Config.model_validate({"base_model": "x", "lora": lora}), arch)
    sys.stdout.write(plan.to_json(indent=None) + "\\n")
"""


def config(**lora) -> Config:
    return Config.model_validate({"base_model": "x", "lora": {"r": 8, "lora_alpha": 16, **lora}})


@pytest.fixture(scope="module")
def mixtral():
    return load_catalog_architecture("mistralai/Mixtral-8x7B-v0.1")


@pytest.fixture(scope="module")
def plan(mixtral) -> Plan:
    return compile_plan(config(target_modules="all-linear", modules_to_save=["lm_head"], use_rslora=True), mixtral)


def test_round_trip(plan):
    text = plan.to_json()
    back = Plan.from_json(text)
    assert back == plan
    assert back.to_json() == text
    assert back.fingerprint == plan.fingerprint


def test_key_names(plan):
    data = json.loads(plan.to_json())
    for key in ("injections", "parameters", "modules_to_save", "coverage", "totals", "memory", "diagnostics",
                "peft_config", "architecture", "architecture_fingerprint", "fingerprint", "format_version"):
        assert key in data, key
    assert data["totals"]["trainable_params"] == plan.totals.trainable_params > 0
    inj = data["injections"][0]
    for key in ("module", "kind", "in_features", "out_features", "r", "lora_alpha", "scaling", "dropout", "init",
                "params", "layer", "matched_by"):
        assert key in inj, key
    assert data["parameters"][0]["kind"] == "parameter"
    assert {"pattern", "modules", "layers_covered", "layers_total"} <= set(data["coverage"][0])
    assert all({"severity", "code", "message"} <= set(d) for d in data["diagnostics"])
    assert data["memory"]["total_bytes"] == sum(data["memory"]["breakdown"].values())


def test_same_json_across_processes_and_hash_seeds():
    outputs = []
    for seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, check=True)
        outputs.append(proc.stdout)
    assert outputs[0] == outputs[1]
    assert len(outputs[0].splitlines()) == 2


def test_fingerprint_tracks_what_the_plan_does(mixtral, plan):
    same = compile_plan(config(target_modules="all-linear", modules_to_save=["lm_head"], use_rslora=True), mixtral)
    assert same.fingerprint == plan.fingerprint and same.fingerprint.startswith("sha256:")
    longer = Config.model_validate({**plan.config, "training": {"sequence_len": 8192}})
    assert compile_plan(longer, mixtral).fingerprint == plan.fingerprint  # memory is not what the plan does
    other_rank = compile_plan(config(target_modules="all-linear", modules_to_save=["lm_head"], use_rslora=True,
                                     r=16), mixtral)
    assert other_rank.fingerprint != plan.fingerprint
    no_save = compile_plan(config(target_modules="all-linear", use_rslora=True), mixtral)
    assert no_save.fingerprint != plan.fingerprint


def test_order_follows_the_model(plan, mixtral):
    order = {m.name: i for i, m in enumerate(mixtral.modules)}
    positions = [order[i.module] for i in plan.injections]
    assert positions == sorted(positions)
    assert [d.sort_key() for d in plan.diagnostics] == sorted(d.sort_key() for d in plan.diagnostics)
