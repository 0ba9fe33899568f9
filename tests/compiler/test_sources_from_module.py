"""from_module on small custom modules: every kind, PEFT's layer index, tying, stacks."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn
from transformers.pytorch_utils import Conv1D

from loraplan.compiler.sources.from_module import classify, from_module, peft_layer_index


class FusedExperts(nn.Module):
    """transformers-v5 style MoE experts: 3-D parameters, no per-expert Linear."""

    def __init__(self, n: int, hidden: int, inter: int):
        super().__init__()
        self.gate_up_proj = nn.Parameter(torch.zeros(n, 2 * inter, hidden))
        self.down_proj = nn.Parameter(torch.zeros(n, hidden, inter))


class Block(nn.Module):
    def __init__(self, hidden: int = 8):
        super().__init__()
        self.attn = nn.MultiheadAttention(hidden, 2)
        self.q_proj = nn.Linear(hidden, 4, bias=False)
        self.c_fc = Conv1D(12, hidden)  # GPT-2 Conv1D(nf=out, nx=in): weight (in, out)
        self.norm = nn.LayerNorm(hidden)
        self.experts = FusedExperts(3, hidden, 5)
        self.act = nn.GELU()


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(20, 8, padding_idx=0)
        self.conv1 = nn.Conv1d(8, 6, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(3, 4, kernel_size=(3, 5), stride=2, groups=1)
        self.conv3 = nn.Conv3d(2, 2, kernel_size=1, groups=2, bias=False)
        self.model = nn.Module()
        self.model.layers = nn.ModuleList([Block() for _ in range(3)])
        self.vision = nn.ModuleList([nn.Linear(8, 8) for _ in range(2)])
        self.head = nn.Linear(8, 20, bias=False)
        self.head.weight = self.embed.weight  # tied


@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    return Toy()


@pytest.fixture(scope="module")
def arch(toy):
    return from_module(toy, name="toy")


def test_names_are_named_modules_without_root(toy, arch):
    assert [m.name for m in arch.modules] == [n for n, _ in toy.named_modules()][1:]
    assert arch.model_class == "Toy" and arch.model_type == "custom" and arch.source == "module"


def test_every_kind(arch):
    kinds = {m.name: m.kind for m in arch.modules}
    assert kinds["embed"] == "embedding"
    assert kinds["conv1"] == "conv1d"
    assert kinds["conv2"] == "conv2d"
    assert kinds["conv3"] == "conv3d"
    assert kinds["model.layers.0.attn"] == "mha"
    assert kinds["model.layers.0.attn.out_proj"] == "linear"  # NonDynamicallyQuantizableLinear
    assert kinds["model.layers.0.q_proj"] == "linear"
    assert kinds["model.layers.0.c_fc"] == "conv1d_gpt2"
    assert kinds["model.layers.0.norm"] == "other"
    assert kinds["model.layers.0.experts"] == "other"
    assert kinds["model.layers.0.act"] == "container"
    assert kinds["model"] == "container" and kinds["model.layers"] == "container"


def test_shapes_and_extras(arch):
    m = arch.module("model.layers.1.c_fc")
    assert (m.in_features, m.out_features, m.bias, m.weight_shape) == (8, 12, True, (8, 12))
    assert m.params == 8 * 12 + 12
    q = arch.module("model.layers.1.q_proj")
    assert (q.in_features, q.out_features, q.bias, q.weight_shape, q.params) == (8, 4, False, (4, 8), 32)
    e = arch.module("embed")
    assert (e.in_features, e.out_features, e.weight_shape) == (20, 8, (20, 8))
    c2 = arch.module("conv2")
    assert (c2.in_features, c2.out_features) == (3, 4)
    assert c2.extra == {"kernel_size": [3, 5], "stride": [2, 2], "padding": [0, 0], "dilation": [1, 1], "groups": 1}
    c3 = arch.module("conv3")
    assert c3.bias is False and c3.extra["groups"] == 2 and c3.weight_shape == (2, 1, 1, 1, 1)
    mha = arch.module("model.layers.2.attn")
    assert (mha.in_features, mha.out_features, mha.bias) == (8, 8, True)
    assert mha.extra == {"num_heads": 2, "kdim": 8, "vdim": 8}
    assert mha.weight_shape == (24, 8) and mha.params == 24 * 8 + 24


def test_fused_experts_parameters_listed(arch):
    by_name = {p.name: p for p in arch.parameters}
    gu = by_name["model.layers.2.experts.gate_up_proj"]
    assert gu.shape == (3, 10, 8) and gu.module == "model.layers.2.experts" and gu.layer == 2
    assert by_name["model.layers.2.experts.down_proj"].shape == (3, 8, 5)
    assert arch.module("model.layers.2.experts").params == 3 * 10 * 8 + 3 * 8 * 5


def test_tied_weights_listed_once(toy, arch):
    names = [p.name for p in arch.parameters]
    assert names == [n for n, _ in toy.named_parameters()]
    assert "head.weight" not in names and "embed.weight" in names
    assert arch.tied_parameters == {"head.weight": "embed.weight"}
    assert arch.tied_embeddings is True
    assert arch.total_params == sum(p.numel() for p in toy.parameters())
    assert arch.module("head").params == 160  # its own weight, tied or not


def test_output_embedding_only_for_transformers_models(arch):
    # PEFT's all-linear excludes get_output_embeddings() of PreTrainedModels only.
    assert arch.output_embedding is None
    assert arch.input_embedding == "embed"


def test_layer_index_is_peft_default_extraction(arch):
    # peft/tuners/tuners_utils.py check_target_module_exists, layers_pattern unset
    peft_re = re.compile(r".*?\.[^.]*\.(?P<idx>\d+)\.")
    for m in arch.modules:
        match = peft_re.match(m.name)
        assert m.layer == (int(match["idx"]) if match else None), m.name
    assert arch.module("model.layers.1.q_proj").layer == 1
    assert arch.module("model.layers.1").layer is None  # no dot after the index
    assert arch.module("vision.1").layer is None  # one segment before the index is not enough
    assert peft_layer_index("a.b.3.c.7.d") == 3  # the first index, not an expert's


def test_stacks_and_main_stack(arch):
    assert arch.layer_stacks == {"model.layers": 3, "vision": 2}
    assert arch.main_stack == "model.layers" and arch.num_layers == 3


def test_shared_module_listed_once_as_named_modules_does():
    shared = nn.Linear(4, 4)
    root = nn.Module()
    root.layers = nn.ModuleList([nn.Sequential(shared), nn.Sequential(shared)])
    arch = from_module(root)
    assert [m.name for m in arch.modules] == ["layers", "layers.0", "layers.0.0", "layers.1"]


def test_bitsandbytes_linear_by_class_name():
    class Linear4bit(nn.Module):  # stands in for bnb.nn.Linear4bit, which is not imported
        def __init__(self):
            super().__init__()
            self.in_features, self.out_features = 16, 4
            self.weight = nn.Parameter(torch.zeros(32, 1, dtype=torch.uint8), requires_grad=False)

    assert classify(Linear4bit()) == "linear"
    root = nn.Module()
    root.proj = Linear4bit()
    m = from_module(root).module("proj")
    assert (m.in_features, m.out_features, m.extra) == (16, 4, {"quantized": "4bit"})


def test_meta_device_module():
    with torch.device("meta"):
        root = nn.Module()
        root.lin = nn.Linear(1000, 1000)
    arch = from_module(root)
    assert arch.module("lin").params == 1000 * 1000 + 1000
    assert arch.total_params == 1_001_000


def test_real_bitsandbytes_4bit_reports_the_logical_shape():
    import bitsandbytes as bnb

    q = bnb.nn.Linear4bit(64, 32, bias=True)
    q.load_state_dict(nn.Linear(64, 32).state_dict())
    q = q.to("cpu")  # quantises: the stored weight is packed (1024, 1)
    assert tuple(q.weight.shape) != (32, 64)
    root = nn.Module()
    root.q = q
    arch = from_module(root)
    m = arch.module("q")
    assert (m.kind, m.in_features, m.out_features, m.weight_shape) == ("linear", 64, 32, (32, 64))
    assert m.extra == {"quantized": "4bit"}
    assert [p.shape for p in arch.parameters] == [(32, 64), (32,)]
