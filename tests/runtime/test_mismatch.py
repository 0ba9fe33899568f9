"""apply refuses a model the plan was not compiled for, and says what differs."""

from __future__ import annotations

import warnings

import peft
import pytest
from runtime_models import TINY

from loraplan.compiler.compile import compile_plan
from loraplan.errors import LoraplanError, PlanMismatchError
from loraplan.runtime.apply import apply
from loraplan.runtime.mismatch import _fold
from loraplan.runtime.verify import MAX_LISTED, bounded
from loraplan.schema.config import Config


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def _no_adapters(model) -> bool:
    return not any(isinstance(m, peft.tuners.tuners_utils.BaseTunerLayer) for m in model.modules())


def _refusal(plan, model) -> PlanMismatchError:
    with pytest.raises(PlanMismatchError) as info:
        apply(plan, model)
    assert all(d.code == "LP601" for d in info.value.diagnostics)
    assert _no_adapters(model), "a refused model must be left untouched"
    return info.value


def test_other_layer_count_is_refused_with_the_count():
    tiny = TINY["llama"]
    plan = compile_plan(tiny.loraplan_config(), tiny.build())
    err = _refusal(plan, tiny.build(num_hidden_layers=3))
    messages = [d.message for d in err.diagnostics]
    assert "layer count: plan 2, model 3" in messages
    # layer 2's q_proj ... are not listed one by one: the layer count says it
    assert not any("layers.2." in m for m in messages)
    assert "layer count: plan 2, model 3" in str(err)


def test_other_width_is_refused_listing_folded_shapes():
    tiny = TINY["llama"]
    plan = compile_plan(tiny.loraplan_config(target_modules=["q_proj"]), tiny.build())
    err = _refusal(plan, tiny.build(hidden_size=48))
    messages = [d.message for d in err.diagnostics]
    assert "shape: model.layers.*.self_attn.q_proj (2 targets): plan linear 32->32, r=4, 256 params, " \
           "model linear 48->32, r=4, 320 params" in messages
    assert err.diagnostics[0].hint and "loraplan.compile" in err.diagnostics[0].hint


def test_other_class_is_refused():
    llama = TINY["llama"]
    plan = compile_plan(llama.loraplan_config(target_modules=["q_proj"]), llama.build())
    cls_model = TINY["llama_seq_cls"].build()
    err = _refusal(plan, cls_model)
    assert "model class: plan LlamaForCausalLM, model LlamaForSequenceClassification" in [
        d.message for d in err.diagnostics
    ]


def test_plan_from_config_json_applies_to_the_model_and_diffs_module_trees(tmp_path):
    """A plan compiled from a model folder's config.json (meta device) fits the model built from it;
    a model of another depth is refused with the two module trees compared."""
    tiny = TINY["llama"]
    tiny.config().save_pretrained(tmp_path)
    config = Config.model_validate({"base_model": str(tmp_path), "lora": tiny.lora})
    plan = compile_plan(config)
    assert isinstance(apply(plan, tiny.build()), peft.PeftModel)

    err = _refusal(plan, tiny.build(num_hidden_layers=3, intermediate_size=80))
    messages = [d.message for d in err.diagnostics]
    assert messages[0] == "layer count: plan 2, model 3"
    assert "shape: model.layers.*.mlp.up_proj (2 modules): plan linear 32->64, model linear 32->80" in messages
    assert "parameter shape: model.layers.*.mlp.up_proj.weight" not in " ".join(messages)  # module already says it


def test_extra_targets_in_the_model_are_listed():
    """Same depth and widths, but the model has biases on q/k/v (another fingerprint)."""
    tiny = TINY["llama"]
    plan = compile_plan(tiny.loraplan_config(), tiny.build())
    err = _refusal(plan, tiny.build(attention_bias=True))
    text = str(err)
    assert "plan linear 32->32, r=4, 256 params" not in text  # the adapters themselves are the same
    assert "fingerprint" in text and "does not adapt" in text


def test_peft_model_is_refused():
    tiny = TINY["llama"]
    model = tiny.build()
    plan = compile_plan(tiny.loraplan_config(), model)
    peft_model = apply(plan, model)
    with pytest.raises(PlanMismatchError, match="already a PeftModel"):
        apply(plan, peft_model)


def test_model_with_injected_adapters_is_refused():
    tiny = TINY["llama"]
    model = tiny.build()
    plan = compile_plan(tiny.loraplan_config(), model)
    peft.inject_adapter_in_model(peft.LoraConfig(target_modules=["q_proj"]), model)
    with pytest.raises(PlanMismatchError, match="already has 2 adapter layer"):
        apply(plan, model)


def test_plan_with_errors_is_refused():
    tiny = TINY["llama"]
    model = tiny.build()
    plan = compile_plan(tiny.loraplan_config(target_modules=["no_such_proj"]), model)
    assert any(d.severity == "error" for d in plan.diagnostics)
    with pytest.raises(LoraplanError, match="the plan has errors") as info:
        apply(plan, model)
    assert {d.code for d in info.value.diagnostics} == {d.code for d in plan.diagnostics if d.severity == "error"}
    assert _no_adapters(model)


def test_differences_are_bounded_and_folded():
    items = [f"d{i}" for i in range(MAX_LISTED + 7)]
    out = bounded(items)
    assert out[:MAX_LISTED] == items[:MAX_LISTED]
    assert out[-1] == "... and 7 more" and len(out) == MAX_LISTED + 1
    assert bounded(items[:3]) == items[:3]
    folded = _fold([("m.layers.0.q", "x"), ("m.layers.1.q", "x"), ("m.layers.1.k", "y"), ("m.h.10.q", "x")], "modules")
    assert folded == ["m.layers.*.q (2 modules): x", "m.layers.1.k: y", "m.h.10.q: x"]
