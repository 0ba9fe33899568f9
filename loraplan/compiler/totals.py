"""Trainable / total parameter counts after injection, as `PeftModel.get_nb_trainable_parameters` counts.

The adapted model's parameters are modelled as a list of entries (owner module, count, trainable),
then PEFT's steps are applied in its order: base frozen and adapters trainable
(`_mark_only_adapters_as_trainable`), the `bias` mode, then `modules_to_save` wrapping, which
freezes the original subtree (adapters inside included) and adds a trainable deep copy of it.
A copy nested inside an already wrapped module adds its subtree again, trainability unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from loraplan.compiler.architecture import Architecture
from loraplan.compiler.counting import packed_4bit_count, param_adapter, quantized_modules
from loraplan.compiler.lora_options import module_shape, quantized_names
from loraplan.compiler.plan import Totals
from loraplan.compiler.targets import Resolution
from loraplan.compiler.trainable_tokens import plan_tokens


@dataclass
class _Entry:
    owner: str  # module name the parameter lives under
    count: int
    trainable: bool
    kind: str  # base | adapter | bias


def _under(name: str, root: str) -> bool:
    return name == root or name.startswith(root + ".")


def base_entries(arch: Architecture, config: Any) -> list[_Entry]:
    """Every base parameter once, 4-bit weights counted as PEFT counts packed Params4bit."""
    quant = config.quantization
    four = bool(quant and quant.load_in_4bit)
    q4 = quantized_modules(arch, quant.llm_int8_skip_modules) if four else set()
    storage = quant.bnb_4bit_quant_storage if four else "uint8"
    out = []
    for p in arch.parameters:
        n = p.numel
        if p.module in q4 and p.name == f"{p.module}.weight":
            n = packed_4bit_count(n, storage)
        out.append(_Entry(p.module, n, False, "bias" if p.name == "bias" or p.name.endswith(".bias") else "base"))
    return out


def _tied_entries(arch: Architecture) -> list[_Entry]:
    """Tied duplicates: not counted in the base, but a deep copy of their module owns a new storage."""
    sizes = {p.name: p.numel for p in arch.parameters}
    return [_Entry(dup.rpartition(".")[0], sizes.get(src, 0), False, "tied")
            for dup, src in (getattr(arch, "tied_parameters", {}) or {}).items()]


def compute_totals(config: Any, res: Resolution, arch: Architecture) -> Totals:
    lora = config.lora
    quantized = quantized_names(config, arch)
    entries = base_entries(arch, config)
    for t in res.modules:
        s = module_shape(t.module, t.shape_r or t.r, lora, quantized)
        entries.append(_Entry(t.name, s.trainable, True, "adapter"))
        if s.total > s.trainable:
            entries.append(_Entry(t.name, s.total - s.trainable, False, "adapter_frozen"))
    for p in res.parameters:
        transposed = bool(p.module.extra.get("is_transposed", False))
        s = param_adapter(p.shape, p.r, transposed=transposed)
        entries.append(_Entry(p.module.name, s.total, True, "adapter"))

    bias_names = _trainable_biases(lora.bias, res, arch)
    by_name = {p.name: i for i, p in enumerate(arch.parameters)}
    tied_to = getattr(arch, "tied_parameters", {}) or {}
    for name in bias_names:
        name = tied_to.get(name, name)  # a bias shared with another module (BERT's decoder.bias)
        if name in by_name:
            entries[by_name[name]].trainable = True

    mts_params = 0
    wrapped: list[str] = []
    tied = _tied_entries(arch)
    for w in res.modules_to_save:
        subtree = [e for e in entries + tied if _under(e.owner, w) and e.kind != "copy"]
        size = sum(e.count for e in subtree)
        nested = any(_under(w, outer) for outer in wrapped)
        if not nested:
            for e in subtree:
                e.trainable = False
            for dup, src in (getattr(arch, "tied_parameters", {}) or {}).items():
                if _under(dup.rpartition(".")[0], w) and src in by_name:  # frozen through the tie as well
                    entries[by_name[src]].trainable = False
            mts_params += size
        entries.append(_Entry(w, size, not nested, "copy"))
        wrapped.append(w)

    tokens = plan_tokens(lora, arch, {t.name for t in res.modules}, res.spec.modules_to_save, res.modules_to_save)
    for rows in tokens.rows:  # trainable_token_indices deltas
        entries.append(_Entry(rows.module, rows.params, True, "tokens"))

    total = sum(e.count for e in entries)
    trainable = sum(e.count for e in entries if e.trainable)
    adapter = sum(e.count for e in entries if e.trainable and e.kind == "adapter")
    bias = sum(e.count for e in entries if e.trainable and e.kind == "bias")
    return Totals(
        trainable_params=trainable,
        total_params=total,
        trainable_percent=round(100.0 * trainable / total, 6) if total else 0.0,
        adapter_params=adapter,
        modules_to_save_params=mts_params,
        bias_params=bias,
    )


def _trainable_biases(mode: str, res: Resolution, arch: Architecture) -> list[str]:
    """Base biases the `bias` mode unfreezes (`all`: every `*.bias`; `lora_only`: adapted layers')."""
    if mode == "all":
        return [p.name for p in arch.parameters if p.name == "bias" or p.name.endswith(".bias")]
    if mode != "lora_only":
        return []
    names = []
    for t in res.modules:
        owner = f"{t.name}.out_proj" if t.module.kind == "mha" else t.name
        m = arch.module(owner)
        if m is not None and m.bias:
            names.append(f"{owner}.bias")
    for p in res.parameters:
        if p.module.bias:
            names.append(f"{p.module.name}.bias")
    return names
