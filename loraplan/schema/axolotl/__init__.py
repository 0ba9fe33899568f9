"""Axolotl dialect: a flat Axolotl config -> the native tree, with source positions kept.

The adapter part (`adapter`, `lora_*`, `peft_*`, `load_in_*bit`, `bnb_config_kwargs`), the
precision flags and the training shape are translated into the native Config's tree; every
native value keeps the span of the Axolotl key it came from, so schema errors and cross-field
rules point at the user's own lines. Axolotl's other keys (datasets, wandb, fsdp, ...) pass;
misspelt adapter keys are flagged. The mapping is documented in docs/axolotl.md.

The package follows Axolotl's own load path, one module per stage:
- keys.py, unknown.py, values.py: the keys Axolotl's schema (utils/schemas/) keeps, and its lax
  pydantic coercion of their values;
- refusals.py: where Axolotl's validation stops, and the keys its schema drops;
- train.py, quant.py: what Axolotl's model loader (loaders/model.py) does with the model,
  dtype and quantisation keys;
- adapter.py: what `load_lora` (loaders/adapter.py) builds as PEFT's LoraConfig;
- tree.py: the native tree being built, with the source span of every part.
"""

from __future__ import annotations

import re
from dataclasses import replace

from loraplan.schema.axolotl.adapter import translate_lora
from loraplan.schema.axolotl.distributed import translate_distributed
from loraplan.schema.axolotl.keys import MARKER_KEYS
from loraplan.schema.axolotl.quant import promote_adapter, translate_dtype, translate_quantization
from loraplan.schema.axolotl.refusals import check_refusals
from loraplan.schema.axolotl.train import translate_model, translate_training
from loraplan.schema.axolotl.tree import Tree
from loraplan.schema.axolotl.unknown import check_unknown_keys
from loraplan.schema.diagnostic import Diagnostic
from loraplan.schema.pydantic_errors import suggest
from loraplan.schema.yaml_source import SourceDoc

__all__ = ["MARKER_KEYS", "reword", "translate"]


def translate(doc: SourceDoc) -> tuple[SourceDoc, list[Diagnostic], dict[tuple, str]]:
    """Axolotl SourceDoc -> (native SourceDoc with the original spans, findings, labels)."""
    t = Tree(doc)
    check_unknown_keys(t)
    check_refusals(t)
    translate_model(t)
    adapter = _adapter(t)
    dtype = translate_dtype(t)
    if adapter is None:
        t.data["lora"] = {}  # nothing to plan; LP403 says why
    else:
        adapter, flags = promote_adapter(t, adapter)
        t.put(("adapter",), adapter, ("adapter",), "adapter")
        t.data.setdefault("axolotl", {})  # load_lora's model-derived settings (compiler/axolotl.py)
        translate_lora(t)
        translate_quantization(t, adapter, dtype, flags)
    translate_training(t)
    translate_distributed(t)
    return t.native_doc(), t.diagnostics, t.labels


def _adapter(t: Tree) -> str | None:
    value = t.raw("adapter")
    if value in ("lora", "qlora"):
        return value
    if value is None:
        t.report("LP403", "error",
                 "no adapter: without `adapter:` Axolotl fine-tunes every weight of the model; loraplan plans "
                 "LoRA and QLoRA adapters only", None, hint="add `adapter: lora` (or `adapter: qlora` with "
                 "`load_in_4bit: true`)")
        return None
    what = "LLaMA-Adapter (prompt tuning), not LoRA" if value == "llama-adapter" else "not a LoRA adapter"
    guess = suggest(str(value).lower(), ["lora", "qlora"]) if isinstance(value, str) else None
    t.report("LP403", "error", f"adapter '{value}' is {what}: loraplan plans adapter lora and qlora only",
             ("adapter",), hint=f"did you mean '{guess}'?" if guess else None, on_value=True)
    return None


# Native field names in rule messages -> the Axolotl key a user of this dialect writes.
_AXOLOTL_NAMES = {
    "quantization.load_in_4bit": "load_in_4bit",
    "quantization.load_in_8bit": "load_in_8bit",
    "layers_to_transform": "peft_layers_to_transform",
    "layers_pattern": "peft_layers_pattern",
    "target_parameters": "lora_target_parameters",
    "target_modules": "lora_target_modules",
    "use_dora": "peft_use_dora",
    "use_rslora": "peft_use_rslora",
    "init_lora_weights": "peft_init_lora_weights",
    "modules_to_save": "lora_modules_to_save",
    "fan_in_fan_out": "lora_fan_in_fan_out",
    "rank_pattern": "lora_rank_pattern",
    "alpha_pattern": "lora_alpha_pattern",
    "exclude_modules": "lora_exclude_modules",
    "loftq_config": "peft.loftq_config",
}
_NAME_RE = re.compile(r"(?<![\w.])(" + "|".join(re.escape(k) for k in sorted(_AXOLOTL_NAMES, key=len,
                                                                              reverse=True)) + r")(?![\w])")


# Hints of native rules that show a native block; Axolotl users write flat keys instead.
_AXOLOTL_HINTS = {"LP301": "add `load_in_4bit: true`, or use `adapter: lora`"}


def reword(diagnostics: list[Diagnostic], labels: dict[tuple, str] | None = None) -> list[Diagnostic]:
    """Native rule findings in Axolotl's words (key names and hints).

    (With `lora_target_linear` the translation passes a list of names, as Axolotl does, so PEFT's
    refusal of a layer filter on a string target cannot arise there.)
    """

    def sub(text: str | None) -> str | None:
        return _NAME_RE.sub(lambda m: _AXOLOTL_NAMES[m.group(1)], text) if text else text

    return [
        replace(d, message=sub(d.message) or d.message, hint=_AXOLOTL_HINTS.get(d.code) or sub(d.hint))
        for d in diagnostics
    ]
