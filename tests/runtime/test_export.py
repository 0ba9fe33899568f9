"""adapter_config.json without a model: PEFT's own dict, the no-PEFT snapshot, and the CLI."""

from __future__ import annotations

import json
import warnings

import peft
import pytest
from peft import PeftModel
from runtime_models import TINY, config_differences

from loraplan.cli import main
from loraplan.compiler.compile import compile_plan, peft_config
from loraplan.compiler.plan import Plan, Totals
from loraplan.runtime import export
from loraplan.runtime.apply import apply
from loraplan.runtime.export import adapter_config, auto_mapping, to_json
from loraplan.schema.config import Config


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _plan(lora: dict, model_class: str = "LlamaForCausalLM", base: str = "org/model") -> Plan:
    """A plan carrying only what the export reads (its config and peft_config)."""
    cfg = Config.model_validate({"base_model": base, "lora": lora})
    return Plan(
        config=cfg.model_dump(mode="json"), architecture="x", model_class=model_class,
        architecture_fingerprint="sha256:0", injections=[], parameters=[], modules_to_save=[], coverage=[],
        totals=Totals(0, 0, 0.0, 0), memory=None, diagnostics=[], peft_config=peft_config(cfg),
    )


CASES = {
    "defaults": {"target_modules": ["q_proj", "v_proj"]},
    "all_linear_causal": {"target_modules": "all-linear", "task_type": "CAUSAL_LM", "r": 16, "lora_alpha": 32.0},
    "regex": {"target_modules": r".*\.(q|v)_proj", "exclude_modules": ["lm_head"], "use_rslora": True},
    "patterns": {"target_modules": ["q_proj"], "rank_pattern": {"q_proj": 8}, "alpha_pattern": {"q_proj": 2.5}},
    "layers": {"target_modules": ["q_proj"], "layers_to_transform": [0, 2], "layers_pattern": "layers"},
    "dora_bias": {"target_modules": ["q_proj"], "use_dora": True, "bias": "lora_only", "lora_dropout": 0.05},
    "params": {"target_modules": ["q_proj"], "target_parameters": ["mlp.experts.gate_up_proj"]},
    "seq_cls": {"target_modules": ["q_proj"], "task_type": "SEQ_CLS", "modules_to_save": ["pooler"]},
    "qa": {"target_modules": ["q_proj"], "task_type": "QUESTION_ANS"},
    "eva": {"target_modules": ["q_proj"], "init_lora_weights": "eva"},
    "corda": {"target_modules": ["q_proj"], "init_lora_weights": "corda"},
    "loftq_ignored": {"target_modules": ["q_proj"], "loftq_config": {"loftq_bits": 4}},
    "pissa_niter": {"target_modules": ["q_proj"], "init_lora_weights": "pissa_niter_4", "lora_bias": False},
}


@pytest.mark.parametrize("case", list(CASES))
def test_snapshot_fallback_equals_peft(case):
    plan = _plan(CASES[case])
    with_peft = adapter_config(plan, use_peft=True)
    without = adapter_config(plan, use_peft=False)
    if peft.__version__ == json.loads(export.SNAPSHOT.read_text())["peft_version"]:
        assert without == with_peft
    else:  # another PEFT: everything but the version and fields added since must agree
        shared = set(with_peft) & set(without) - {"peft_version"}
        assert {k: without[k] for k in shared} == {k: with_peft[k] for k in shared}
    assert to_json(with_peft) == json.dumps(with_peft, indent=2, sort_keys=True)


def test_export_fields():
    data = adapter_config(_plan(CASES["seq_cls"]))
    assert data["peft_type"] == "LORA" and data["inference_mode"] is True
    assert data["base_model_name_or_path"] == "org/model"
    assert data["modules_to_save"] == ["pooler", "classifier", "score"]  # PEFT's order: user's, then heads
    assert data["auto_mapping"] is None and data["task_type"] == "SEQ_CLS"
    assert adapter_config(_plan(CASES["qa"]))["modules_to_save"] == ["qa_outputs"]
    data = adapter_config(_plan(CASES["defaults"]))
    assert data["auto_mapping"] == {
        "base_model_class": "LlamaForCausalLM", "parent_library": "transformers.models.llama.modeling_llama",
    }
    assert data["target_modules"] == ["q_proj", "v_proj"]


def test_auto_mapping_without_the_class():
    assert auto_mapping("NoSuchClass", "xlm-roberta") == {
        "base_model_class": "NoSuchClass", "parent_library": "transformers.models.xlm_roberta.modeling_xlm_roberta",
    }


def test_peft_is_only_imported_when_its_version_differs(monkeypatch):
    snapshot_version = json.loads(export.SNAPSHOT.read_text())["peft_version"]

    def boom(kwargs):
        raise AssertionError("PEFT used")

    monkeypatch.setattr(export, "_installed_peft", lambda: snapshot_version)
    monkeypatch.setattr(export, "_with_peft", boom)
    assert adapter_config(_plan(CASES["defaults"]))["peft_version"] == snapshot_version
    monkeypatch.setattr(export, "_installed_peft", lambda: "0.0.1")
    with pytest.raises(AssertionError, match="PEFT used"):
        adapter_config(_plan(CASES["defaults"]))


def test_snapshot_rejects_unknown_fields():
    plan = _plan(CASES["defaults"])
    plan.peft_config["no_such_field"] = 1
    with pytest.raises(TypeError, match="no_such_field"):
        adapter_config(plan, use_peft=False)


def test_saved_config_without_task_type_equals_export(tmp_path):
    """No task type: a plain PeftModel, whose saved config carries auto_mapping."""
    tiny = TINY["llama"]
    model = tiny.build()
    plan = compile_plan(tiny.loraplan_config(task_type=None), model)
    peft_model = apply(plan, model)
    assert type(peft_model) is PeftModel
    peft_model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "adapter_config.json").read_text())
    assert saved["auto_mapping"]["base_model_class"] == "LlamaForCausalLM"
    assert config_differences(saved, adapter_config(plan)) == []


@pytest.fixture
def cli_setup(tmp_path):
    arch = tmp_path / "model"
    TINY["llama"].config().save_pretrained(arch)
    cfg = tmp_path / "lora.yaml"
    cfg.write_text("base_model: org/tiny\nlora:\n  r: 4\n  target_modules: [q_proj, v_proj]\n  task_type: CAUSAL_LM\n")
    return cfg, arch


def test_cli_writes_the_adapter_config(cli_setup, tmp_path, capsys):
    cfg, arch = cli_setup
    out = tmp_path / "adapter"
    assert main(["export-peft", str(cfg), "--arch", str(arch), "-o", str(out)]) == 0
    written = json.loads((out / "adapter_config.json").read_text())
    config = Config.model_validate({"base_model": "org/tiny", "lora": {
        "r": 4, "target_modules": ["q_proj", "v_proj"], "task_type": "CAUSAL_LM"}})
    assert written == adapter_config(compile_plan(config, TINY["llama"].build()))
    assert written["r"] == 4 and written["base_model_name_or_path"] == "org/tiny"
    assert "wrote" in capsys.readouterr().err


def test_cli_prints_to_stdout(cli_setup, capsys):
    cfg, arch = cli_setup
    assert main(["export-peft", str(cfg), "--arch", str(arch)]) == 0
    assert json.loads(capsys.readouterr().out)["target_modules"] == ["q_proj", "v_proj"]


def test_cli_refuses_a_config_with_errors(cli_setup, tmp_path, capsys):
    _, arch = cli_setup
    bad = tmp_path / "bad.yaml"
    bad.write_text("base_model: org/tiny\nlora:\n  r: 4\n  target_modules: [nope_proj]\n")
    out = tmp_path / "adapter"
    assert main(["export-peft", str(bad), "--arch", str(arch), "-o", str(out)]) == 1
    err = capsys.readouterr().err
    assert "LP502" in err and "bad.yaml:4" in err
    assert not out.exists()
    assert main(["export-peft", str(tmp_path / "missing.yaml")]) == 2  # a missing path is a usage error
