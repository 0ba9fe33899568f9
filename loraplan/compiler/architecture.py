"""Architecture: a model's module tree as plain data (names, kinds, shapes, counts), no tensors.

It can come from a live nn.Module, from transformers on the meta device, or from a bundled
manifest that needs no torch; the compiler only ever sees this type.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

ModuleKind = Literal[
    "linear",  # torch.nn.Linear (and subclasses: bnb Linear4bit/8bitLt, ...)
    "conv1d_gpt2",  # transformers.pytorch_utils.Conv1D: weight stored (in, out)
    "embedding",  # torch.nn.Embedding
    "conv1d",
    "conv2d",
    "conv3d",
    "mha",  # torch.nn.MultiheadAttention
    "other",  # anything else that owns parameters (norms, custom layers, fused MoE experts holders)
    "container",  # owns no parameters directly
]

# Kinds PEFT's LoRA can wrap as modules.
LORA_WRAPPABLE: frozenset[str] = frozenset({"linear", "conv1d_gpt2", "embedding", "conv1d", "conv2d", "conv3d", "mha"})


@dataclass(frozen=True)
class ModuleInfo:
    """One named module. `params` counts its own (non-recursive) parameters, tied ones included.

    `layer` is the index PEFT's default extraction reads from the name (first number after at
    least two dotted segments, followed by a dot): `model.layers.3.mlp` -> 3, the block
    `model.layers.3` itself -> None. `in_features`/`out_features`: Linear in/out, GPT-2 Conv1D
    from its (in, out) weight, Embedding (num_embeddings, embedding_dim), Conv channels, MHA embed_dim.
    """

    name: str
    cls: str
    kind: str
    in_features: int | None = None
    out_features: int | None = None
    bias: bool = False
    params: int = 0
    layer: int | None = None
    weight_shape: tuple[int, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # kernel_size, groups, num_embeddings, ...

    def __hash__(self) -> int:  # extra is a dict; identity is the name
        return hash(self.name)


@dataclass(frozen=True)
class ParamInfo:
    """One named parameter (after tying: each storage listed once, under its first name).

    `layer` is PEFT's default layer index extracted from the parameter's full name.
    """

    name: str
    module: str
    shape: tuple[int, ...]
    layer: int | None = None

    @property
    def numel(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n


@dataclass
class Architecture:
    """A concrete model class's module tree. Names are exactly what `named_modules()` yields."""

    name: str
    model_type: str
    model_class: str
    modules: list[ModuleInfo]
    parameters: list[ParamInfo]
    output_embedding: str | None = None  # e.g. "lm_head"
    input_embedding: str | None = None  # e.g. "model.embed_tokens"
    tied_embeddings: bool = False
    num_layers: int = 0  # decoder blocks of the main stack
    main_stack: str | None = None  # e.g. "model.layers": the ModuleList of the main decoder blocks
    layer_stacks: dict[str, int] = field(default_factory=dict)  # every block ModuleList -> its length
    tied_parameters: dict[str, str] = field(default_factory=dict)  # name not listed -> name listed
    source: str = "module"  # catalog | config.json | hf-cache | module
    transformers_version: str | None = None
    config_attrs: dict[str, Any] = field(default_factory=dict)  # hidden_size, heads, vocab, ... for estimates
    origin: dict[str, Any] = field(default_factory=dict)  # where it was resolved from (compiler/resolve.py)
    _index: dict[str, ModuleInfo] | None = field(default=None, repr=False, compare=False)

    def module(self, name: str) -> ModuleInfo | None:
        if self._index is None:
            self._index = {m.name: m for m in self.modules}
        return self._index.get(name)

    @property
    def total_params(self) -> int:
        return sum(p.numel for p in self.parameters)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("_index", None)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Architecture:
        modules = [
            ModuleInfo(**{**m, "weight_shape": tuple(m["weight_shape"]) if m.get("weight_shape") else None})
            for m in data["modules"]
        ]
        params = [ParamInfo(**{**p, "shape": tuple(p["shape"])}) for p in data["parameters"]]
        rest = {k: v for k, v in data.items() if k not in {"modules", "parameters", "_index"}}
        return cls(modules=modules, parameters=params, **rest)

    @property
    def fingerprint(self) -> str:
        """Hash of what a plan depends on: module names, kinds, shapes and parameter shapes."""
        h = hashlib.sha256()
        h.update(self.model_class.encode())
        for m in self.modules:
            h.update(json.dumps([m.name, m.kind, m.in_features, m.out_features, m.bias]).encode())
        for p in self.parameters:
            h.update(json.dumps([p.name, list(p.shape)]).encode())
        return "sha256:" + h.hexdigest()[:16]
