"""The fused layers under FSDP2 on one CUDA rank (world size 1, NCCL), through accelerate's
fsdp2_prepare_model as Axolotl runs it: LoRA on a bf16 base and QLoRA (nf4, double quantisation,
bnb_4bit_quant_storage = bfloat16), each against PEFT's own layer under the same FSDP2 and in
plain PyTorch. Skipped without CUDA. The CPU version on 2 gloo ranks is test_sharded.py.
"""

from __future__ import annotations

import os
import warnings

import pytest
import torch
import torch.distributed as dist
from sharded_worker import accelerate_fsdp2, adapted, batch, free_port, tiny_folder

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.filterwarnings("ignore"),
]
STEPS = 3


@pytest.fixture(scope="module")
def group():
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()), RANK="0", WORLD_SIZE="1",
                      LOCAL_RANK="0")
    torch.cuda.set_device(0)
    dist.init_process_group("nccl", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tiny_folder(str(tmp_path_factory.mktemp("tiny") / "llama"))


def train(folder, qlora, fast, dtype, mode="auto", fsdp=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model, _ = adapted(folder, qlora, fast=fast, mode=mode, dtype=dtype, device="cuda")
    report = model.loraplan_fast_report
    if fsdp:
        model = accelerate_fsdp2(model, "cuda")
    sharded = sum(type(p).__name__ == "DTensor" for p in model.parameters())
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    ids = batch().cuda()
    losses, grads = [], []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        grads.append({n: (p.grad.full_tensor() if hasattr(p.grad, "full_tensor") else p.grad).float().clone()
                      for n, p in model.named_parameters() if p.requires_grad})
        opt.step()
        losses.append(float(loss))
    return {"losses": losses, "grads": grads, "sharded": sharded,
            "fast": len(report.fast) if report else 0, "fallback": dict(report.fallback) if report else {}}


def same(a, b, loss_rtol, grad_rel):
    """Losses within loss_rtol; each gradient within grad_rel in relative norm, ||a - b|| / ||b||."""
    assert a["losses"] == pytest.approx(b["losses"], rel=loss_rtol)
    worst = 0.0
    for step in range(STEPS):
        assert set(a["grads"][step]) == set(b["grads"][step]) and len(b["grads"][step]) == 28
        for name, grad in b["grads"][step].items():
            err = ((a["grads"][step][name] - grad).norm() / grad.norm().clamp_min(1e-30)).item()
            worst = max(worst, err)
            assert err < grad_rel, (step, name, err)
    print(f"max relative gradient error {worst:.2e}")


@pytest.mark.parametrize(("qlora", "mode"), [(False, "auto"), (True, "auto"), (True, "merged")])
def test_fsdp2_one_rank_float32_matches_peft(group, folder, qlora, mode):
    """float32 base and compute (4-bit stored as float32): the fused layer equals PEFT's to rounding."""
    torch.backends.cuda.matmul.allow_tf32 = False
    fused = train(folder, qlora, fast=True, dtype="float32", mode=mode)
    peft = train(folder, qlora, fast=False, dtype="float32")
    plain = train(folder, qlora, fast=False, dtype="float32", fsdp=False)
    assert fused["sharded"] > 0 and fused["fast"] == 14 and fused["fallback"] == {}
    assert fused["losses"][-1] < fused["losses"][0]
    same(fused, peft, loss_rtol=1e-5, grad_rel=1e-4)
    same(peft, plain, loss_rtol=1e-5, grad_rel=1e-4)


@pytest.mark.parametrize(("qlora", "mode"), [(False, "auto"), (True, "auto"), (True, "merged")])
def test_fsdp2_one_rank_bfloat16_changes_nothing(group, folder, qlora, mode):
    """bf16 (QLoRA: nf4, double quant, storage bf16): FSDP2 changes neither layer's numbers; the fused and
    PEFT's layers differ only by bf16 rounding (PEFT runs the adapters in float32), on the loss < 1 %."""
    fused = train(folder, qlora, fast=True, dtype="bfloat16", mode=mode)
    fused_plain = train(folder, qlora, fast=True, dtype="bfloat16", mode=mode, fsdp=False)
    peft = train(folder, qlora, fast=False, dtype="bfloat16")
    peft_plain = train(folder, qlora, fast=False, dtype="bfloat16", fsdp=False)
    assert fused["sharded"] > 0 and fused["fast"] == 14 and fused["fallback"] == {}
    same(fused, fused_plain, loss_rtol=1e-3, grad_rel=1e-2)
    same(peft, peft_plain, loss_rtol=1e-3, grad_rel=1e-2)
    assert fused["losses"] == pytest.approx(peft["losses"], rel=1e-2)
