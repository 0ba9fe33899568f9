"""Patched PEFT models compute what PEFT computes, keep PEFT's names, and fall back correctly."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import LlamaConfig, LlamaForCausalLM

from loraplan.compiler.fast_path import static_fallback_reason
from loraplan.runtime.fast import patch_model, unpatch_model

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def _tiny_llama(seed: int = 0, hidden: int = 32, intermediate: int = 64) -> LlamaForCausalLM:
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=97, hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )
    return LlamaForCausalLM(cfg).float()


def _pair(**lora_kwargs):
    base = _tiny_llama()
    ref = get_peft_model(copy.deepcopy(base), LoraConfig(**lora_kwargs))
    # B is zero at init: give it values so the update matters.
    torch.manual_seed(1)
    for n, p in ref.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.1)
    fast = copy.deepcopy(ref)
    return ref, fast


def _loss_and_grads(model, ids):
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    return out.logits.detach(), grads


def _rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


@pytest.mark.parametrize("mode", ["auto", "merged", "activation"])
@pytest.mark.parametrize("use_rslora", [False, True])
def test_fast_path_matches_peft_forward_and_every_gradient(use_rslora, mode):
    ref, fast = _pair(r=4, lora_alpha=8, target_modules=TARGETS, use_rslora=use_rslora)
    report = patch_model(fast, mode=mode)
    assert len(report.fast) == 2 * len(TARGETS) and not report.fallback
    ids = torch.randint(0, 97, (3, 11), generator=torch.Generator().manual_seed(5))
    logits_ref, grads_ref = _loss_and_grads(ref, ids)
    logits_fast, grads_fast = _loss_and_grads(fast, ids)
    assert _rel(logits_fast, logits_ref) < 1e-5
    assert grads_ref.keys() == grads_fast.keys() and len(grads_ref) == 4 * len(TARGETS)
    for name, want in grads_ref.items():
        assert _rel(grads_fast[name], want) < 1e-4, name


def test_names_state_dict_and_classes_stay_peft():
    ref, fast = _pair(r=4, lora_alpha=8, target_modules=TARGETS)
    patch_model(fast)
    assert list(fast.state_dict()) == list(ref.state_dict())
    assert [n for n, _ in fast.named_parameters()] == [n for n, _ in ref.named_parameters()]
    layer = fast.base_model.model.model.layers[0].self_attn.q_proj
    from peft.tuners.lora import Linear as PeftLinear

    assert isinstance(layer, PeftLinear) and type(layer).__name__ == "FastLinear"
    assert unpatch_model(fast) == 2 * len(TARGETS)
    assert type(layer) is PeftLinear


def test_saved_adapter_is_identical_to_peft(tmp_path):
    ref, fast = _pair(r=4, lora_alpha=8, target_modules=TARGETS)
    patch_model(fast)
    ref.save_pretrained(tmp_path / "ref")
    fast.save_pretrained(tmp_path / "fast")
    def config(which):
        data = json.loads((tmp_path / which / "adapter_config.json").read_text())
        data["target_modules"] = sorted(data["target_modules"])  # PEFT stores a set
        return data

    assert config("ref") == config("fast")
    from safetensors.torch import load_file

    a = load_file(tmp_path / "ref" / "adapter_model.safetensors")
    b = load_file(tmp_path / "fast" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"use_dora": True}, "variant"),
        ({"lora_bias": True}, "lora_bias"),
    ],
)
def test_ineligible_layers_fall_back_and_stay_correct(kwargs, reason):
    ref, fast = _pair(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], **kwargs)
    report = patch_model(fast)
    assert not report.fast
    assert len(report.fallback) == 4 and all(reason in r for r in report.fallback.values())
    ref.eval()
    fast.eval()
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(6))
    assert _rel(fast(input_ids=ids).logits, ref(input_ids=ids).logits) < 1e-6


def test_trainable_base_bias_is_not_fused():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.ReLU(), torch.nn.Linear(8, 4))
    peft_model = get_peft_model(model, LoraConfig(r=2, target_modules=["0", "2"], bias="all"))
    patch_model(peft_model)
    x = torch.randn(5, 8)
    peft_model(x).sum().backward()
    biases = [p for n, p in peft_model.named_parameters() if n.endswith("base_layer.bias")]
    assert len(biases) == 2 and all(b.grad is not None and b.grad.abs().sum() > 0 for b in biases)


def test_disabled_adapter_runs_base_only():
    ref, fast = _pair(r=4, lora_alpha=8, target_modules=TARGETS)
    patch_model(fast)
    ids = torch.randint(0, 97, (2, 5), generator=torch.Generator().manual_seed(7))
    with fast.disable_adapter(), ref.disable_adapter():
        assert _rel(fast(input_ids=ids).logits, ref(input_ids=ids).logits) < 1e-6


def test_static_eligibility_matches_the_live_check():
    assert static_fallback_reason("linear", dropout=0, use_dora=False, lora_bias=False) is None
    assert static_fallback_reason("linear", dropout=0.05, use_dora=False, lora_bias=False) is None
    assert "DoRA" in static_fallback_reason("linear", dropout=0, use_dora=True, lora_bias=False)
    assert "lora_bias" in static_fallback_reason("linear", dropout=0, use_dora=False, lora_bias=True)
    assert "MiCA" in static_fallback_reason("linear", dropout=0, use_dora=False, lora_bias=False, init="mica")
    assert "Linear" in static_fallback_reason("conv1d_gpt2", dropout=0, use_dora=False, lora_bias=False)


@pytest.mark.parametrize(
    ("lora", "fast"),
    [({}, True), ({"lora_dropout": 0.1}, True), ({"use_dora": True}, False), ({"lora_bias": True}, False)],
)
def test_the_plan_says_which_modules_run_the_fused_path_and_apply_agrees(lora, fast):
    import loraplan
    from loraplan.schema.config import Config

    model = _tiny_llama()
    config = Config.model_validate({"base_model": "tiny", "lora": {"r": 4, "target_modules": TARGETS, **lora}})
    plan = loraplan.compile(config, architecture=model)
    assert {i.fast_path for i in plan.injections} == {fast}
    assert all((i.fallback_reason is None) == fast for i in plan.injections)
    peft_model = loraplan.apply(plan, model)
    report = peft_model.loraplan_fast_report
    assert len(report.fast) == (len(plan.injections) if fast else 0)
    assert len(report.fallback) == (0 if fast else len(plan.injections))


def test_unknown_mode_is_refused():
    _, fast = _pair(r=2, target_modules=["q_proj"])
    with pytest.raises(ValueError, match="mode"):
        patch_model(fast, mode="fastest")


def _load_4bit(base, monkeypatch, cpu_kernels: str):
    """`base` through save/from_pretrained in NF4. cpu_kernels "off" makes bitsandbytes believe the
    CPU lacks AVX512-BF16 (its Linear4bit reads that when built), so both of its CPU branches run
    on a CPU that has it; "native" keeps what the CPU has."""
    import tempfile

    import bitsandbytes.nn.modules as bnb_modules
    from transformers import BitsAndBytesConfig

    if cpu_kernels == "off":
        monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: False)
    with tempfile.TemporaryDirectory() as tmp:
        base.save_pretrained(tmp)
        q = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.float32)
        return LlamaForCausalLM.from_pretrained(tmp, quantization_config=q, dtype=torch.float32)


def _repacked(model) -> list[str]:
    return [n for n, m in model.named_modules()
            if type(m).__name__ == "Linear4bit" and getattr(m.weight.quant_state, "packing_format_for_cpu", False)]


# Sizes bitsandbytes' CPU inference kernels take: out_features a multiple of 32, in_features of 64.
HIDDEN, INTERMEDIATE = 64, 128


@pytest.mark.parametrize("cpu_kernels", ["native", "off"])
@pytest.mark.parametrize("mode", ["merged", "activation"])
def test_4bit_base_matches_peft(mode, cpu_kernels, monkeypatch):
    """bitsandbytes NF4 (on the CPU, or the GPU where there is one): the fused paths compute PEFT's QLoRA."""
    model = _load_4bit(_tiny_llama(hidden=HIDDEN, intermediate=INTERMEDIATE), monkeypatch, cpu_kernels).train()
    ref = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS))
    torch.manual_seed(1)
    for n, p in ref.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.1)
    ids = torch.randint(0, 97, (2, 7), generator=torch.Generator().manual_seed(8)).to(ref.device)  # cuda if bnb has it
    logits_ref, grads_ref = _loss_and_grads(ref, ids)
    report = patch_model(ref, mode=mode)
    assert len(report.fast) == 2 * len(TARGETS)
    logits_fast, grads_fast = _loss_and_grads(ref, ids)
    assert _rel(logits_fast, logits_ref) < 1e-4
    for name, want in grads_ref.items():
        assert _rel(grads_fast[name], want) < 1e-3, name
    assert _repacked(ref) == []  # training mode: bitsandbytes' standard layout throughout


def test_4bit_weights_repacked_by_cpu_inference_still_dequantise(monkeypatch):
    """After an eval/no-grad call on an AVX512-BF16 CPU, bitsandbytes has rewritten every 4-bit weight
    in place into its tiled CPU layout; the fused path must still read the same weights."""
    from bitsandbytes.functional import has_avx512bf16

    from loraplan.runtime.fast.patch import _dequantize_4bit

    if not has_avx512bf16():
        pytest.skip("bitsandbytes repacks 4-bit weights for its CPU kernels only on CPUs with AVX512-BF16, "
                    "which this one lacks (bitsandbytes.functional.has_avx512bf16() is False)")
    model = _load_4bit(_tiny_llama(hidden=HIDDEN, intermediate=INTERMEDIATE), monkeypatch, "native")
    if model.device.type != "cpu":
        pytest.skip("bitsandbytes put the model on a GPU; its CPU inference layout is not used there")
    layers = {n: m for n, m in model.named_modules() if type(m).__name__ == "Linear4bit"}
    before = {n: _dequantize_4bit(m.weight).float().clone() for n, m in layers.items()}
    ids = torch.randint(0, 97, (2, 7), generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        want = model.eval()(input_ids=ids).logits  # bitsandbytes' own bf16 CPU kernels, after repacking
    assert sorted(_repacked(model)) == sorted(layers)
    for n, m in layers.items():  # the same weights, up to the bf16 absmax bitsandbytes keeps
        assert _rel(_dequantize_4bit(m.weight).float(), before[n]) < 1e-2, n
    ref = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS))  # B = 0: a no-op adapter
    patch_model(ref, mode="merged")
    with torch.no_grad():
        got = ref(input_ids=ids).logits
    assert _rel(got, want) < 2e-2  # a wrong layout gives an error of order 1


def test_unknown_kernels_are_refused():
    _, fast = _pair(r=2, target_modules=["q_proj"])
    with pytest.raises(ValueError, match="kernels"):
        patch_model(fast, kernels="cutlass")


@pytest.mark.parametrize("adapter_dtype", [torch.float32, torch.float64])
def test_training_steps_track_peft_after_every_optimizer_update(adapter_dtype):
    """The compute-dtype adapter copies kept between calls are rebuilt after each in-place update."""
    ref, fast = _pair(r=4, lora_alpha=8, target_modules=TARGETS)
    if adapter_dtype is torch.float64:  # adapters in another dtype than the model: copies are casts
        for model in (ref, fast):
            for n, p in model.named_parameters():
                if "lora_" in n:
                    p.data = p.data.double()
    patch_model(fast)
    opts = [torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5) for m in (ref, fast)]
    ids = torch.randint(0, 97, (2, 9), generator=torch.Generator().manual_seed(3))
    for _ in range(3):
        for model, opt in zip((ref, fast), opts):
            model(input_ids=ids, labels=ids).loss.backward()
            opt.step()
            opt.zero_grad()
        logits_ref, grads_ref = _loss_and_grads(ref, ids)
        logits_fast, grads_fast = _loss_and_grads(fast, ids)
        assert _rel(logits_fast, logits_ref) < 1e-5
        for name, want in grads_ref.items():
            assert _rel(grads_fast[name], want) < 1e-4, name
