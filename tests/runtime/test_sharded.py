"""The fused layers under FSDP2 and DeepSpeed ZeRO-3 on 2 CPU processes (gloo): the same loss and
gradients as PEFT's layer in one process on the whole batch, for LoRA and QLoRA (bitsandbytes' CPU
backend, 4-bit weights stored in the model dtype so that FSDP shards them). Where the fused path
is not checked (4-bit under ZeRO-3, DeepSpeed versions not tested), apply keeps PEFT's layer and
says so on the plan (LP620).
"""

from __future__ import annotations

import importlib.util

import pytest
import torch
from sharded_worker import STEPS, adapted, reference, run_ranks, tiny_folder

from loraplan.runtime import engines

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_folder(str(tmp_path_factory.mktemp("tiny") / "llama"))


@pytest.fixture(scope="module")
def refs(folder):
    return {qlora: reference(folder, qlora) for qlora in (False, True)}


def assert_same(got, ref, rtol, steps=STEPS):
    """Losses (relative rtol) and every adapter gradient (relative norm error 10 x rtol) of the first `steps`."""
    assert got["losses"][:steps] == pytest.approx(ref["losses"][:steps], rel=rtol)
    for step in range(steps):
        assert set(got["grads"][step]) == set(ref["grads"][step]) and len(ref["grads"][step]) == 28  # 14 x (A, B)
        for name, grad in ref["grads"][step].items():
            err = ((got["grads"][step][name] - grad).norm() / grad.norm()).item()
            assert err < 10 * rtol, (step, name, err)


def check(got, ref, rtol, engine_steps=STEPS, detected="fsdp2"):
    """The fused run equals PEFT's layer under the same engine at every step, and one process on the whole
    batch for the first `engine_steps` steps (where the engine itself does; ZeRO-3: the first only)."""
    fused, peft = got["auto"], got["peft"]
    assert fused["fused_calls"] > 0 and peft["fused_calls"] == 0, "the fused path did not run (or PEFT's did not)"
    assert fused["sharded"] > 0, "nothing was sharded"
    assert fused["engine"] == detected  # engines.detect_engine on the wrapped model
    assert fused["fast"] == 14 and fused["fallback"] == {}
    assert fused["losses"][-1] < fused["losses"][0]
    assert_same(fused, peft, rtol)
    assert_same(peft, ref, rtol, engine_steps)


def runs(engine, folder, tmp_path, qlora=False, modes=("peft", "auto")):
    got = run_ranks(engine, [(qlora, m) for m in modes], folder, str(tmp_path / "out.pt"))
    return {mode: got[(qlora, mode)] for mode in modes}


def test_fsdp2_fully_shard_lora(folder, refs, tmp_path):
    """torch's fully_shard on each decoder block and the root: storage swapped every step."""
    check(runs("fsdp2", folder, tmp_path), refs[False], rtol=1e-5)


def test_fsdp2_through_accelerate_qlora(folder, refs, tmp_path):
    """accelerate's fsdp2_prepare_model (what Axolotl's accelerator.prepare runs) on QLoRA: the low-rank
    term added to bitsandbytes' output (auto), and merged into the dequantised weight, whose quant_state
    FSDP2 drops when it gathers (engines.py puts it back first, as bitsandbytes' own forward does)."""
    got = runs("accelerate", folder, tmp_path, qlora=True, modes=("peft", "auto", "merged"))
    check(got, refs[True], rtol=1e-4)
    assert got["merged"]["fused_calls"] > 0 and got["merged"]["fallback"] == {}
    assert_same(got["merged"], got["peft"], rtol=1e-4)


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None,
                    reason="DeepSpeed is not installed (see DEVELOPERS.md: a CPU-only install without CUDA torch)")
def test_zero3_lora(folder, refs, tmp_path):
    """DeepSpeed ZeRO-3 itself drifts from one process after the second AdamW step (PEFT's layer as much
    as the fused one, to the bit): the fused run is held to PEFT's under ZeRO-3 at every step."""
    got = runs("zero3", folder, tmp_path)
    check(got, refs[False], rtol=1e-5, engine_steps=2, detected="zero3")
    assert got["auto"]["lp620"] == []


def test_qlora_planned_for_zero3_keeps_peft_layers(folder):
    """4-bit layers are not checked under ZeRO-3: apply keeps PEFT's forward and says so on the plan."""
    model, plan = adapted(folder, qlora=True, fast=True, engine="zero3")
    report = model.loraplan_fast_report
    assert report.fast == [] and len(report.fallback) == 14
    assert all("ZeRO-3" in reason for reason in report.fallback.values())
    [diag] = [d for d in plan.diagnostics if d.code == "LP620"]
    assert diag.severity == "info" and "14 layer(s) keep PEFT's forward" in diag.message
    lora, plan = adapted(folder, qlora=False, fast=True, engine="zero3")
    assert len(lora.loraplan_fast_report.fast) == 14 and not [d for d in plan.diagnostics if d.code == "LP620"]


def test_untested_deepspeed_version_keeps_peft_layers(folder, monkeypatch):
    monkeypatch.setattr(engines, "_deepspeed_version", lambda: "0.14.4")
    model, _ = adapted(folder, qlora=False, fast=True, engine="zero3")
    assert model.loraplan_fast_report.fast == []
    assert all("DeepSpeed ZeRO-3 0.14.4" in r for r in model.loraplan_fast_report.fallback.values())
    ids = torch.randint(1, 96, (2, 8))
    peft, _ = adapted(folder, qlora=False, fast=False)
    torch.testing.assert_close(model(input_ids=ids).logits, peft(input_ids=ids).logits)


def test_detect_engine_on_a_plain_model(folder):
    model, _ = adapted(folder, qlora=False, fast=True)
    assert engines.detect_engine(model) is None
    assert engines.planned_engine(None) is None
