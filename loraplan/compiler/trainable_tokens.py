"""trainable_token_indices: the embedding rows PEFT trains (peft.utils.other._set_trainable with
TrainableTokensWrapper, called from set_additional_trainable_modules after injection).

A list means the input embedding (its module name); a mapping names modules by suffix (plain
`endswith`, like modules_to_save). Each wrapped module gets a trainable delta of
(len(indices), embedding dim), counted in the trainable and the total parameters. On a model with
tied embeddings, the modules tied to the input embedding reuse its delta (nothing new to count)
unless a mapping gives them other ids (then each wraps its own; with ensure_weight_tying PEFT
raises). A mapping key also in modules_to_save, a key matching nothing and a wrapped module that
LoRA adapted are PEFT errors, and so is an id past the vocabulary (IndexError, with real weights).

modules_to_save here is PEFT's list by then: the task heads added and, with ensure_weight_tying and a
saved embed_tokens / lm_head, the embedding's full name in place of the tied modules' entries. Once
the input embedding is wrapped in a ModulesToSaveWrapper, transformers v5's tied keys no longer name
its parameters, so PEFT finds no tied module: each mapped layer gets a delta of its own, nothing
reuses the embedding's, and different ids are no conflict (found by the random search, seed 7954).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from loraplan.compiler.architecture import Architecture
from loraplan.compiler.weight_tying import tied_with_embedding


@dataclass
class TokenRows:
    module: str
    indices: list[int]
    dim: int
    vocab: int

    @property
    def params(self) -> int:
        return len(self.indices) * self.dim


@dataclass
class TokenPlan:
    rows: list[TokenRows] = field(default_factory=list)  # one trainable delta each
    tied: list[str] = field(default_factory=list)  # wrapped, sharing the input embedding's delta
    errors: list[str] = field(default_factory=list)


def _dims(arch: Architecture, name: str) -> tuple[int, int]:
    """(rows, row width) of an embedding-like module: Embedding (num, dim), Linear head (vocab, hidden)."""
    m = arch.module(name)
    if m is None:
        return 0, 0
    if m.weight_shape and len(m.weight_shape) == 2:
        return int(m.weight_shape[0]), int(m.weight_shape[1])
    return int(m.out_features or 0), int(m.in_features or 0)


def plan_tokens(lora: Any, arch: Architecture, adapted: set[str], saved: list[str] | None = None,
                wrapped: Iterable[str] = ()) -> TokenPlan:
    """`saved`: PEFT's modules_to_save list by then (default: the config's); `wrapped`: the modules in a
    ModulesToSaveWrapper."""
    out = TokenPlan()
    tti = lora.trainable_token_indices
    if tti is None:
        return out
    layers = dict(tti) if isinstance(tti, dict) else {arch.input_embedding or "embed_tokens": list(tti)}
    for key in layers:
        if key in ((lora.modules_to_save if saved is None else saved) or []):
            out.errors.append(f"`{key}` is in modules_to_save as well: PEFT refuses training it both in full and "
                              "by token rows")
    tied_names = [] if arch.input_embedding in set(wrapped) else tied_with_embedding(arch)
    ewt = bool(lora.ensure_weight_tying)
    skip: set[str] = set()
    mismatch = False
    if len(layers) > 1 and tied_names:
        embed = arch.input_embedding or ""
        keys = [k for k in layers if embed.endswith(k) or any(t.endswith(k) or k in t.split(".") for t in tied_names)]
        if len(keys) >= 2:
            mismatch = any(layers[k] != layers[keys[0]] for k in keys[1:])
            if mismatch and ewt:
                out.errors.append("ensure_weight_tying with different token ids for tied layers (" +
                                  ", ".join(f"{k}: {layers[k]}" for k in keys) + "): PEFT refuses")
            if not mismatch:
                skip = set(keys) & set(tied_names)
    names = [m.name for m in arch.modules]
    for key, indices in layers.items():
        if key in skip:
            continue
        hits = [n for n in names if n.endswith(key)]
        if not hits:
            out.errors.append(f"trainable_token_indices names `{key}`, which matches no module (PEFT: 'Target "
                              "modules not found')")
        for name in hits:
            if name in adapted:
                out.errors.append(f"`{name}` is adapted by LoRA: trainable_token_indices cannot wrap a LoRA layer "
                                  "(PEFT raises TypeError)")
                continue
            vocab, dim = _dims(arch, name)
            out.rows.append(TokenRows(name, list(indices), dim, vocab))
    wrapped_embed = any(r.module == arch.input_embedding for r in out.rows)
    if tied_names and wrapped_embed and (ewt or not mismatch):
        out.tied = [t for t in tied_names if not any(r.module == t for r in out.rows)]
    for r in out.rows:
        past = sorted({i for i in r.indices if r.vocab and i >= r.vocab})
        if past:
            out.errors.append(f"token id(s) {', '.join(map(str, past))} of `{r.module}` are past its {r.vocab} rows: "
                              "PEFT raises IndexError when it copies the rows")
    return out
