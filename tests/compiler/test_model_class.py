"""model_class names a model class of transformers, never any top-level name (issue 13)."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from loraplan.schema.load import load_text

CONFIG = "base_model: meta-llama/Llama-3.2-1B\nmodel_class: {mc}\nlora:\n  target_modules: [q_proj]\n"


@pytest.mark.parametrize("name", ["pipeline", "AutoTokenizer", "set_seed", "Trainer", "LlamaConfig", "logging"])
def test_other_names_are_refused_before_being_called(name, monkeypatch):
    import transformers

    from loraplan.compiler.compile import check_loaded

    called = []
    original = getattr(transformers, name)
    if callable(original):
        monkeypatch.setattr(transformers, name, _Spy(original, called) if not isinstance(original, type) else original)
    result = load_text(CONFIG.format(mc=name), "c.yaml")
    plan, found = check_loaded(result, offline_only=False)
    assert plan is None
    [d] = found
    assert d.code == "LP512" and f"model_class '{name}' is not a model class of transformers" in d.message
    assert called == []


@pytest.mark.parametrize("name", ["LlamaModel", "AutoModelForCausalLM", "LlamaForCausalLM"])
def test_model_classes_still_build(name):
    from loraplan.compiler.compile import check_loaded

    plan, found = check_loaded(load_text(CONFIG.format(mc=name), "c.yaml"), offline_only=False)
    assert plan is not None, found
    assert len(plan.injections) == 16


def test_runtime_load_refuses_too(tmp_path):
    import json

    from loraplan.errors import LoraplanError
    from loraplan.runtime.load import model_class

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    config = load_text(CONFIG.format(mc="pipeline"), "c.yaml").config
    with pytest.raises(LoraplanError, match="not a model class"):
        model_class(config, tmp_path)


class _Spy:
    def __init__(self, wrapped, calls):
        self.wrapped, self.calls = wrapped, calls

    def __call__(self, *args, **kwargs):
        self.calls.append(args)
        return self.wrapped(*args, **kwargs)
