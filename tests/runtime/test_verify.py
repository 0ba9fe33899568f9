"""verify catches every way an adapted model can differ from its plan, all at once.

The plans here are tampered copies of a correct one (same architecture fingerprint), standing in
for a compiler or PEFT that disagree about what gets injected.
"""

from __future__ import annotations

import dataclasses
import warnings

import pytest
from runtime_models import TINY

from loraplan.compiler.compile import compile_plan
from loraplan.errors import PlanMismatchError
from loraplan.runtime.apply import apply
from loraplan.runtime.verify import differences, verify


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@pytest.fixture
def applied():
    tiny = TINY["llama"]
    model = tiny.build()
    plan = compile_plan(tiny.loraplan_config(target_modules=["q_proj", "v_proj"]), model)
    return plan, apply(plan, model)


def _with(plan, **changes):
    return dataclasses.replace(plan, **changes)


def test_the_true_plan_verifies(applied):
    plan, peft_model = applied
    assert differences(plan, peft_model) == []
    verify(plan, peft_model)


def test_rank_scaling_shape_and_count_differences_are_all_listed(applied):
    plan, peft_model = applied
    first = plan.injections[0]
    wrong = dataclasses.replace(first, r=8, scaling=0.5, params=999)
    tampered = _with(plan, injections=[wrong, *plan.injections[1:]])
    found = differences(tampered, peft_model)
    name = first.module
    assert f"{name}: rank 4, plan 8" in found
    assert f"{name}: scaling 2, plan 0.5" in found
    assert f"{name}: lora_A shape (4, 32), plan (8, 32)" in found
    assert f"{name}: lora_B shape (32, 4), plan (32, 8)" in found
    assert f"{name}: 256 adapter parameters, plan 999" in found
    with pytest.raises(PlanMismatchError) as info:
        verify(tampered, peft_model)
    assert {d.code for d in info.value.diagnostics} == {"LP602"}
    assert len(info.value.diagnostics) == len(found)


def test_missing_and_extra_modules_are_listed(applied):
    plan, peft_model = applied
    dropped = plan.injections[0]
    phantom = dataclasses.replace(plan.injections[1], module="model.layers.0.self_attn.k_proj")
    tampered = _with(plan, injections=[*plan.injections[1:], phantom])
    found = differences(tampered, peft_model)
    assert f"module adapted but not in the plan: {dropped.module}" in found
    assert "module planned but not adapted: model.layers.0.self_attn.k_proj" in found


def test_trainable_total_dropout_dora_and_modules_to_save_differences(applied):
    plan, peft_model = applied
    first = plan.injections[0]
    tampered = _with(
        plan,
        injections=[dataclasses.replace(first, dropout=0.1, use_dora=True), *plan.injections[1:]],
        totals=dataclasses.replace(plan.totals, trainable_params=plan.totals.trainable_params + 5),
        modules_to_save=["lm_head"],
    )
    found = differences(tampered, peft_model)
    assert f"{first.module}: dropout 0, plan 0.1" in found
    assert f"{first.module}: DoRA False, plan True" in found
    assert "modules_to_save entry planned but not adapted: lm_head" in found
    total = plan.totals.trainable_params
    assert f"trainable parameters: {total:,} on the model, plan {total + 5:,} (difference -5)" in found


def test_parameter_adapters_are_verified():
    tiny = TINY["qwen3_moe"]
    model = tiny.build()
    plan = compile_plan(tiny.loraplan_config(), model)
    peft_model = apply(plan, model)
    gate_up = next(p for p in plan.parameters if p.module.endswith("gate_up_proj"))
    tampered = _with(plan, parameters=[dataclasses.replace(gate_up, in_features=7)]
                     + [p for p in plan.parameters if p is not gate_up])
    found = differences(tampered, peft_model)
    assert found == [f"{gate_up.module}: lora_A shape (16, 32), plan (16, 7)"]


def test_apply_raises_on_mismatch_and_verify_false_skips(applied):
    plan, _ = applied
    tiny = TINY["llama"]
    tampered = _with(plan, totals=dataclasses.replace(plan.totals, trainable_params=1))
    with pytest.raises(PlanMismatchError, match="differs from the plan"):
        apply(tampered, tiny.build())
    assert apply(tampered, tiny.build(), verify=False) is not None
