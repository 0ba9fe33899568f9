"""Under torch.compile the fused path's merged weights are saved for backward, as the memory estimate assumes.

The compiled graph computes W + s B A once per fused Linear and keeps it for dL/dx (the backward's
merge is the forward's, deduplicated). compiler/memory.py counts those copies; this test traces the
same partitioner inductor uses (min-cut, without code generation) on the CPU and lists what it
saves, so a torch release that changes it shows up here.
"""

from __future__ import annotations

from collections import Counter

import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from loraplan.runtime.fast import patch_model


def test_compiled_graph_keeps_one_merged_weight_per_fused_linear_that_needs_dx():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, hidden_size=48, intermediate_size=160, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)  # k/v: 24 x 48, no activation has these shapes
    model = get_peft_model(LlamaForCausalLM(cfg), LoraConfig(r=4, target_modules="all-linear"))
    patch_model(model)
    params = {p.data_ptr() for p in model.parameters()}
    saved: list[tuple[int, ...]] = []

    def pack(t):
        if t.data_ptr() not in params:
            saved.append(tuple(t.shape))
        return t

    ids = torch.randint(0, 97, (2, 7), generator=torch.Generator().manual_seed(1))
    compiled = torch.compile(model, backend="aot_eager_decomp_partition")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = compiled(input_ids=ids, labels=ids).loss
    loss.backward()
    weight_shapes = {(48, 48), (24, 48), (160, 48), (48, 160)}
    merged = Counter(s for s in saved if s in weight_shapes)
    # every fused Linear but layer 0's q/k/v, whose input (the frozen embedding) needs no gradient
    assert merged == Counter({(48, 48): 3, (24, 48): 2, (160, 48): 4, (48, 160): 2})
    assert all(p.grad is not None for n, p in model.named_parameters() if "lora_" in n)
