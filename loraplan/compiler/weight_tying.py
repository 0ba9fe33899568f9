"""ensure_weight_tying with target_modules: PEFT's LoraModel._add_targets_to_tie, replayed on the Spec.

When the model ties its output layer to the input embedding and a target names `embed_tokens` or
`lm_head` (last name part; a regex string: fullmatched against those two words), PEFT adds the
input embedding's full name to the targets, removes the first entry matching each tied module,
skips the tied modules during matching and adapts them last, after the target_parameters, with
adapters tied to the embedding's. A tied module is then adapted even when no target names it.
The tied adapters take the embedding adapter's tensors, so their size follows the embedding's rank.
With `embed_tokens` / `lm_head` in modules_to_save instead, PEFT saves the input embedding (adding its
full name there, dropping the tied modules' entries) and ties the saved copies: nothing more to count.
"""

from __future__ import annotations

import re
from typing import Any

from loraplan.compiler.architecture import Architecture
from loraplan.compiler.peft_tables import EMBEDDING_LAYER_NAMES


def tied_with_embedding(arch: Architecture) -> list[str]:
    """Modules whose weight is the input embedding's (PEFT's _get_module_names_tied_with_embedding)."""
    if not arch.tied_embeddings or not arch.input_embedding:
        return []
    weight = f"{arch.input_embedding}.weight"
    out = []
    for dup, src in arch.tied_parameters.items():
        if src == weight and dup != weight:
            out.append(dup.rpartition(".")[0])
        elif dup == weight and src != weight:
            out.append(src.rpartition(".")[0])
    return sorted(set(out))


def embedding_in(raw: Any) -> bool:
    if isinstance(raw, str):
        return any(re.fullmatch(raw, m) for m in EMBEDDING_LAYER_NAMES)
    return any(m.split(".")[-1] in EMBEDDING_LAYER_NAMES for m in raw or [])


def rewrite(spec: Any, arch: Architecture, lora: Any) -> tuple[list[str], list[str]]:
    """Apply the rewrite to `spec` (before defaults and all-linear, as PEFT does).

    Returns (modules adapted last with tied adapters, modules wrapped as tied copies of the saved
    embedding); PEFT raises TypeError when one of the latter is a LoRA layer by then.
    """
    if not getattr(lora, "ensure_weight_tying", False):
        return [], []
    tied = tied_with_embedding(arch)
    saved = any(m.split(".")[-1] in EMBEDDING_LAYER_NAMES for m in spec.modules_to_save or [])
    embed = arch.input_embedding
    if tied and saved:  # _add_modules_to_save_to_tie: the embedding is saved, the tied copies share it
        keep = list(spec.modules_to_save)
        if embed not in keep:
            keep.append(embed)
        spec.modules_to_save = _drop_tied(keep, tied)
        return [], tied
    if not tied or not embedding_in(spec.target_modules):
        return [], []
    if isinstance(spec.target_modules, str):
        spec.target_modules = rf"(?:{spec.target_modules}|^{re.escape(embed)}$)"
        return tied, []
    spec.target_modules = set(_drop_tied(sorted({*spec.target_modules, embed}), tied))
    return tied, []


def _drop_tied(names: list[str], tied: list[str]) -> list[str]:
    """PEFT's tie loops: for each tied key, the first of `names` it names (itself or a parent) goes."""
    names = list(names)
    for key in tied:
        for m in names:
            if re.match(rf"(^|.*\.){m}($|\..*)", key):
                names.remove(m)
                break
    return names


def is_tied(name: str, tied: list[str]) -> bool:
    return name in tied or any(name.endswith(f".{t}") for t in tied)
