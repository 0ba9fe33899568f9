"""Stacked weights (frozen W and B in one tensor): same results as PEFT, and the weights stay PEFT's."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from peft.utils import get_peft_model_state_dict
from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

from loraplan.runtime.fast import patch_model, stacked, unpatch_model
from loraplan.runtime.fast.grouped import GroupedLoraLinear
from loraplan.runtime.fast.stacked import StackedLoraLinear, WeightStack, stack_blocker, worth_stacking


def _rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def _llama(layers=2, seed=0):
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=96, num_hidden_layers=layers,
                      num_attention_heads=4, num_key_value_heads=2)
    model = get_peft_model(LlamaForCausalLM(cfg).float(), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    torch.manual_seed(1)
    for n, p in model.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.1)
    return model


def _grads(model, ids):
    model.zero_grad(set_to_none=True)
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    return out.logits.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _assert_same(got, want, tol=1e-4):
    got_logits, got_grads = got
    want_logits, want_grads = want
    assert _rel(got_logits, want_logits) < 1e-5
    assert got_grads.keys() == want_grads.keys()
    for name, g in want_grads.items():
        assert _rel(got_grads[name], g) < tol, name


IDS = torch.randint(0, 97, (3, 9), generator=torch.Generator().manual_seed(2))


@pytest.fixture
def calls(monkeypatch):
    counts = {"stacked": 0, "grouped": 0}
    for name, fn in (("stacked", StackedLoraLinear), ("grouped", GroupedLoraLinear)):
        original = fn.apply

        def counting(*args, _name=name, _original=original):
            counts[_name] += 1
            return _original(*args)

        monkeypatch.setattr(fn, "apply", counting)
    return counts


def test_llama_stacks_gate_up_only_and_matches_peft(calls):
    ref = _llama()
    fast = copy.deepcopy(ref)
    patch_model(fast, stack=True)
    _assert_same(_grads(fast, IDS), _grads(ref, IDS))
    assert calls == {"stacked": 2, "grouped": 2}  # per layer: gate/up stacked, q/k/v grouped
    layer = fast.base_model.model.model.layers[0]
    assert layer.mlp.gate_proj._loraplan_group.stack is not None  # outputs 6 d wide
    assert layer.self_attn.q_proj._loraplan_group.stack is None  # 2 d: the output side was faster
    for narrow in (layer.self_attn.o_proj, layer.mlp.down_proj):
        assert narrow.__dict__.get("_loraplan_group") is None


def test_stacked_weights_are_views_with_peft_names_shapes_and_values():
    ref = _llama(layers=1)
    fast = copy.deepcopy(ref)
    patch_model(fast, stack=True)
    mlp = fast.base_model.model.model.layers[0].mlp
    weights = [mlp.gate_proj.base_layer.weight, mlp.up_proj.base_layer.weight]
    assert len({w.untyped_storage().data_ptr() for w in weights}) == 1  # one tensor, nothing stored twice
    assert not weights[0].is_contiguous()
    want, got = ref.state_dict(), fast.state_dict()
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key].shape == value.shape and torch.equal(got[key], value), key
    assert get_peft_model_state_dict(fast).keys() == get_peft_model_state_dict(ref).keys()
    assert unpatch_model(fast) > 0
    assert all(w.is_contiguous() for w in (mlp.gate_proj.base_layer.weight, mlp.up_proj.base_layer.weight))
    assert mlp.gate_proj.base_layer.weight.untyped_storage().data_ptr() != mlp.up_proj.base_layer.weight.data_ptr()
    for key, value in want.items():
        assert torch.equal(fast.state_dict()[key], value), key


def test_replaced_weights_are_noticed_and_restacked():
    """model.double() gives every parameter new storage; the stack follows, in the new dtype."""
    ref = _llama()
    fast = copy.deepcopy(ref)
    patch_model(fast, stack=True)
    ref.double()
    fast.double()
    _assert_same(_grads(fast, IDS), _grads(ref, IDS), tol=1e-9)
    stack = fast.base_model.model.model.layers[0].mlp.up_proj._loraplan_group.stack
    assert stack.store.dtype == torch.float64 and stack.rebuilds == 1


def test_weights_replaced_on_every_call_end_the_stacking_and_stay_correct(calls):
    ref = _llama(layers=1)
    fast = copy.deepcopy(ref)
    patch_model(fast, stack=True)
    group = fast.base_model.model.model.layers[0].mlp.gate_proj._loraplan_group
    for _ in range(stacked.MAX_REBUILDS + 2):  # as sharded training would: fresh storage every step
        for m in group.members:
            m.base_layer.weight.data = m.base_layer.weight.data.clone()
        _assert_same(_grads(fast, IDS), _grads(ref, IDS))
    assert group.stack.rebuilds == stacked.MAX_REBUILDS and not group.stack.ready()
    assert calls["grouped"] >= 2 * 2  # gate/up went back to the unstacked grouped function (as q/k/v)


def test_safe_merge_and_unload_gives_peft_merged_weights():
    ref = _llama(layers=1)
    fast = copy.deepcopy(ref)
    patch_model(fast, stack=True)
    _grads(fast, IDS)  # the stack is in use
    want = ref.merge_and_unload(safe_merge=True)(input_ids=IDS).logits
    got = fast.merge_and_unload(safe_merge=True)(input_ids=IDS).logits
    assert _rel(got, want) < 1e-6


def test_adapters_updated_by_the_optimizer_reach_the_stack():
    ref = _llama(layers=1)
    fast = copy.deepcopy(ref)
    patch_model(fast, stack=True)
    opts = [torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5) for m in (ref, fast)]
    for _ in range(3):
        for model, opt in zip((ref, fast), opts):
            _grads(model, IDS)
            opt.step()
    _assert_same(_grads(fast, IDS), _grads(ref, IDS))


def test_qwen2_biases_and_bf16_adapters_on_a_bf16_model():
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                      num_attention_heads=4, num_key_value_heads=2)
    base = Qwen2ForCausalLM(cfg).to(torch.bfloat16)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear")
    ref = get_peft_model(base, lora, autocast_adapter_dtype=False)
    fast = copy.deepcopy(ref)
    patch_model(fast, stack=True)
    want_logits, want = _grads(ref, IDS)
    got_logits, got = _grads(fast, IDS)
    assert _rel(got_logits, want_logits) < 2e-2
    for name, g in want.items():
        assert got[name].dtype == torch.bfloat16
        assert _rel(got[name], g) < 5e-2, name


def test_gradcheck_of_two_members_with_different_ranks_scales_and_biases():
    gen = torch.Generator().manual_seed(0)
    bases = [torch.nn.Linear(6, 5, dtype=torch.float64), torch.nn.Linear(6, 3, bias=False, dtype=torch.float64)]
    for b in bases:
        b.weight.requires_grad_(False)
        if b.bias is not None:
            b.bias.requires_grad_(False)
    ranks, scalings = [2, 3], (0.5, 2.0)
    a_list = [torch.randn(r, 6, generator=gen, dtype=torch.float64, requires_grad=True) for r in ranks]
    b_list = [torch.randn(b.out_features, r, generator=gen, dtype=torch.float64, requires_grad=True)
              for b, r in zip(bases, ranks)]
    x = torch.randn(2, 4, 6, generator=gen, dtype=torch.float64, requires_grad=True)

    def run(x, *ab):
        stack = WeightStack(bases, ranks)  # one per call: gradcheck keeps earlier graphs alive
        stack.refresh(ab[:2], ab[2:], scalings)
        return StackedLoraLinear.apply(x, stack, scalings, bases[0].bias, None, *ab)

    assert torch.autograd.gradcheck(run, (x, *a_list, *b_list))
    stack = WeightStack(bases, ranks)
    stack.refresh(a_list, b_list, scalings)
    with torch.no_grad():
        b_list[0].data.mul_(3.0)  # through .data: no version counter moves
    stack.refresh(a_list, b_list, scalings)
    assert torch.equal(stack.rows[0][:, 6:8], b_list[0])
    outs = StackedLoraLinear.apply(x, stack, scalings, bases[0].bias, None, *a_list, *b_list)
    for out, base, a, b, s in zip(outs, bases, a_list, b_list, scalings):
        assert torch.allclose(out, base(x) + s * x @ a.t() @ b.t())


def test_stacking_rule_and_blockers():
    assert worth_stacking(2048, 16384) and worth_stacking(2048, 8192)  # gate/up
    assert not worth_stacking(2048, 3072) and not worth_stacking(2048, 2048) and not worth_stacking(8192, 2048)
    trained = torch.nn.Linear(4, 4)
    assert "trained" in stack_blocker([trained])
    frozen = torch.nn.Linear(4, 4).requires_grad_(False)
    assert stack_blocker([frozen]) is None
    assert "dtype" in stack_blocker([frozen, torch.nn.Linear(4, 4, dtype=torch.float64).requires_grad_(False)])
    hooked = torch.nn.Linear(4, 4).requires_grad_(False)
    hooked._hf_hook = object()
    assert "accelerate" in stack_blocker([hooked])


def test_stacking_is_opt_in(calls):
    fast = _llama(layers=1)
    patch_model(fast)
    assert fast.base_model.model.model.layers[0].mlp.gate_proj.base_layer.weight.is_contiguous()
    _grads(fast, IDS)
    assert calls == {"stacked": 0, "grouped": 2}


def test_repatching_releases_the_old_stack():
    fast = _llama(layers=1)
    patch_model(fast, stack=True)
    patch_model(fast, mode="merged")  # merged mode does not stack
    assert fast.base_model.model.model.layers[0].mlp.gate_proj.base_layer.weight.is_contiguous()


class _WritesThroughData(torch.optim.Optimizer):
    """Like bitsandbytes' 8-bit optimizers: updates that bump no version counter."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    @torch.no_grad()
    def step(self):
        for group in self.param_groups:
            for p in group["params"]:
                p.data.add_(p.grad, alpha=-group["lr"])


def test_an_optimizer_that_writes_through_data_still_reaches_the_kept_copies():
    ref = _llama(layers=1)
    fast = copy.deepcopy(ref)
    patch_model(fast, stack=True)
    opts = [_WritesThroughData([p for p in m.parameters() if p.requires_grad], lr=0.5) for m in (ref, fast)]
    for _ in range(2):
        for model, opt in zip((ref, fast), opts):
            _grads(model, IDS)
            opt.step()
    _assert_same(_grads(fast, IDS), _grads(ref, IDS))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("stack", [True, False])
def test_on_cuda_bf16_model_with_fp32_adapters_matches_peft(stack):
    """The CUDA path: fp32 gradients written straight from bf16 products (aten::mm.dtype)."""
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=97, hidden_size=256, intermediate_size=768, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2)
    base = LlamaForCausalLM(cfg).to("cuda", torch.bfloat16)
    ref = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules="all-linear"))
    torch.manual_seed(1)
    for n, p in ref.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.02)
    fast = copy.deepcopy(ref)
    patch_model(fast, mode="activation", stack=stack)
    ids = IDS.cuda()
    want_logits, want = _grads(ref, ids)
    got_logits, got = _grads(fast, ids)
    assert _rel(got_logits.float(), want_logits.float()) < 3e-2
    for name, g in want.items():
        assert got[name].dtype == torch.float32
        assert _rel(got[name], g) < 6e-2, name


def test_a_bitsandbytes_optimizer_which_moves_no_version_counter_still_reaches_the_kept_copies():
    """bitsandbytes 0.50's optimizers write the parameters through their own op: `_version` stays put."""
    bnb = pytest.importorskip("bitsandbytes")
    ref = _llama(layers=1)
    fast = copy.deepcopy(ref)
    patch_model(fast)  # the default path, its A and s B copies kept between calls
    opts = [bnb.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=0.05) for m in (ref, fast)]
    lora_b = next(p for n, p in fast.named_parameters() if "lora_B" in n)
    for _ in range(2):
        for model, opt in zip((ref, fast), opts):
            _grads(model, IDS)
            version = lora_b._version
            opt.step()
        assert lora_b._version == version  # the premise: nothing but the step hook sees this update
    _assert_same(_grads(fast, IDS), _grads(ref, IDS))
