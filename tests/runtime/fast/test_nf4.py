"""QLoRA layers as one fused function with bitsandbytes' dequantisation kernels called directly."""

from __future__ import annotations

import copy
import tempfile
import warnings

import pytest
import torch

from loraplan.runtime.fast import patch_model, torch_ops
from loraplan.runtime.fast.functions import FusedLoraLinear


def test_fused_function_with_a_packed_weight_dequantises_in_forward_and_backward():
    """A stand-in packing (the weight stored flat and scaled): the function's gradients are exact."""
    gen = torch.Generator().manual_seed(0)
    f64 = dict(dtype=torch.float64)
    packed = torch.randn(24, generator=gen, **f64)  # a 4 x 6 weight, stored flat
    calls = []

    def dequant(w):
        calls.append(w.shape)
        return (w * 0.5).view(4, 6)

    x = torch.randn(2, 3, 6, generator=gen, requires_grad=True, **f64)
    a = torch.randn(2, 6, generator=gen, requires_grad=True, **f64)
    b = torch.randn(4, 2, generator=gen, requires_grad=True, **f64)
    bias = torch.randn(4, generator=gen, **f64)

    def run(x, a, b):
        return FusedLoraLinear.apply(x, packed, bias, a, b, 2.0, torch_ops, None, 0.0, dequant)

    assert torch.autograd.gradcheck(run, (x, a, b))
    y = run(x, a, b)
    want = x @ (packed * 0.5).view(4, 6).t() + bias + 2.0 * (x @ a.t()) @ b.t()
    assert torch.allclose(y, want)
    calls.clear()
    run(x, a, b).sum().backward()
    assert calls == [(24,), (24,)]  # once in forward, once in backward: nothing kept between them


def test_unknown_four_bit_mode_is_refused():
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(torch.nn.Sequential(torch.nn.Linear(4, 4)), LoraConfig(r=2, target_modules=["0"]))
    with pytest.raises(ValueError, match="four_bit"):
        patch_model(model, four_bit="fused")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("nested", [True, False])
def test_direct_dequantisation_equals_bitsandbytes(quant_type, nested):
    import bitsandbytes.functional as bnbf

    from loraplan.runtime.fast import nf4

    w = torch.randn(384, 256, device="cuda", dtype=torch.bfloat16)
    packed, state = bnbf.quantize_4bit(w, quant_type=quant_type, compress_statistics=nested)
    packed.quant_state = state
    assert torch.equal(nf4.dequantize(packed), bnbf.dequantize_4bit(packed, state))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dropout", [0.0, 0.1])
def test_direct_four_bit_layers_match_bitsandbytes_layers(dropout):
    from peft import LoraConfig, get_peft_model
    from transformers import BitsAndBytesConfig, LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=97, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(tmp)
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                               bnb_4bit_compute_dtype=torch.bfloat16)
        base = LlamaForCausalLM.from_pretrained(tmp, quantization_config=q, dtype=torch.bfloat16,
                                                device_map={"": 0})
    layer = get_peft_model(base, LoraConfig(r=8, target_modules="all-linear", lora_dropout=dropout))
    torch.manual_seed(1)
    for n, p in layer.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.05)
    direct = copy.deepcopy(layer)
    patch_model(layer, four_bit="layer")
    patch_model(direct)  # the default
    ids = torch.randint(0, 97, (2, 64), device="cuda", generator=torch.Generator("cuda").manual_seed(2))
    results = []
    for model in (layer, direct):
        model.train()
        torch.manual_seed(3)
        out = model(input_ids=ids, labels=ids)
        out.loss.backward()
        grads = {n: p.grad.float() for n, p in model.named_parameters() if p.requires_grad}
        results.append((out.logits.float(), grads))
    (want, want_grads), (got, got_grads) = results
    assert ((got - want).norm() / want.norm()) < 1e-2
    for n, g in want_grads.items():
        assert ((got_grads[n] - g).norm() / g.norm()) < 3e-2, n
