"""Every way an architecture reaches the compiler records where it came from (Plan.architecture_source)."""

from __future__ import annotations

from peft_oracle import hf_factory

from loraplan.compiler.catalog import CONFIGS_DIR
from loraplan.compiler.compile import compile_plan
from loraplan.compiler.plan import Plan
from loraplan.schema.config import Config

CONFIG = Config.model_validate({"base_model": "x/y", "lora": {"r": 4, "target_modules": ["q_proj"]}})


def test_live_module():
    plan = compile_plan(CONFIG, hf_factory("llama")())
    assert plan.architecture_source == {"kind": "module", "class": "LlamaForCausalLM"}


def test_catalog_name_and_file_with_catalog_content():
    plan = compile_plan(CONFIG, "meta-llama/Llama-3.2-1B")
    assert plan.architecture_source["kind"] == "catalog" and "alias" not in plan.architecture_source
    path = CONFIGS_DIR / "meta-llama--Llama-3.2-1B.json"
    src = compile_plan(CONFIG, str(path)).architecture_source
    assert src["kind"] == "file" and src["path"] == str(path) and src["same_as_catalog"] == "meta-llama/Llama-3.2-1B"


def test_source_survives_json():
    plan = compile_plan(CONFIG, "microsoft/Phi-3.5-mini-instruct")
    again = Plan.from_json(plan.to_json())
    assert again.architecture_source == plan.architecture_source and again.fingerprint == plan.fingerprint
    assert again.architecture_source["alias_of"] == "microsoft/Phi-3-mini-4k-instruct"
