"""Under torch.compile the fused path keeps no merged weight from forward to backward.

A compiled graph deduplicates identical calls: if the backward's W + s B A (and, for a 4-bit
base, its dequantisation) were the same call as the forward's, the graph would keep every
merged weight alive until backward, an extra copy of each adapted weight (four times a 4-bit
weight). The backward calls them as other calls (a plain addmm instead of loraplan::merge_lowrank,
a flat view of the packed bytes). This traces the partitioner inductor uses (min-cut, no code generation)
on the CPU and lists what it saves for backward; the gradients must still be eager's.
"""

from __future__ import annotations

import copy
import tempfile
from collections import Counter

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from loraplan.runtime.fast import patch_model

# Sizes bitsandbytes' CPU inference kernels take (out_features a multiple of 32, in_features of the
# 64-element block): on a CPU with AVX512-BF16 they repack 4-bit weights in eval/no-grad calls.
CFG = dict(vocab_size=97, hidden_size=64, intermediate_size=192, num_hidden_layers=2, num_attention_heads=4,
           num_key_value_heads=2)  # weights 64x64, 32x64, 192x64, 64x192: no activation has these shapes
WEIGHT_SHAPES = {(64, 64), (32, 64), (192, 64), (64, 192)}
IDS = torch.randint(0, 97, (2, 7), generator=torch.Generator().manual_seed(1))


def _base(four_bit: bool, device: str = "cpu", dtype: torch.dtype = torch.float32):
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**CFG))
    if not four_bit:
        return model.to(device, dtype)
    from transformers import BitsAndBytesConfig

    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
        model = LlamaForCausalLM.from_pretrained(tmp, quantization_config=q, dtype=dtype, device_map={"": device})
    # from_pretrained returns eval mode; training is what this test is about (and in eval/no-grad
    # calls bitsandbytes would switch to its CPU inference kernels, in bf16, on AVX512-BF16 CPUs).
    return model.train()


def _patched(four_bit: bool, device: str = "cpu", dtype: torch.dtype = torch.float32):
    model = get_peft_model(_base(four_bit, device, dtype), LoraConfig(r=4, target_modules="all-linear"))
    torch.manual_seed(2)
    for n, p in model.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.1)
    patch_model(model)  # mode "auto": the merged formulation under torch.compile
    return model


def _saved_and_grads(model, compiled: bool, backend: str = "aot_eager_decomp_partition"):
    params = {p.data_ptr() for p in model.parameters()}
    saved: list[tuple[int, ...]] = []

    def pack(t):
        if t.data_ptr() not in params:
            saved.append(tuple(t.shape))
        return t

    run = torch.compile(model, backend=backend) if compiled else model
    model.zero_grad(set_to_none=True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        ids = IDS.to(model.device)
        loss = run(input_ids=ids, labels=ids).loss
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if "lora_" in n}
    return Counter(s for s in saved if s in WEIGHT_SHAPES), loss.detach(), grads


@pytest.mark.parametrize("four_bit", [False, True], ids=["lora", "qlora"])
def test_compiled_graph_saves_no_merged_weight_and_matches_eager(four_bit):
    model = _patched(four_bit)
    eager = copy.deepcopy(model)
    saved, loss, grads = _saved_and_grads(model, compiled=True)
    assert saved == Counter()  # no 64x64, 32x64, 192x64 or 64x192 tensor kept for backward
    _, want_loss, want_grads = _saved_and_grads(eager, compiled=False)
    torch.testing.assert_close(loss, want_loss, rtol=1e-5, atol=1e-6)
    assert grads.keys() == want_grads.keys() and len(grads) == 2 * 2 * 7
    for name, g in want_grads.items():
        torch.testing.assert_close(grads[name], g, rtol=1e-4, atol=1e-6, msg=name)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("four_bit", [False, True], ids=["lora", "qlora"])
def test_inductor_on_cuda_saves_no_merged_weight_and_matches_eager(four_bit):
    """The same with inductor on the GPU, in bf16: the Triton merge and bitsandbytes' CUDA dequantisation."""
    model = _patched(four_bit, "cuda", torch.bfloat16)
    eager = _patched(four_bit, "cuda", torch.bfloat16)
    saved, loss, grads = _saved_and_grads(model, compiled=True, backend="inductor")
    assert saved == Counter()
    _, want_loss, want_grads = _saved_and_grads(eager, compiled=False)
    torch.testing.assert_close(loss.float(), want_loss.float(), rtol=2e-2, atol=1e-3)
    for name, g in want_grads.items():
        err = ((grads[name].float() - g.float()).norm() / g.float().norm().clamp_min(1e-12)).item()
        assert err < 5e-2, name
