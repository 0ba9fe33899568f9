"""What Axolotl's `load_lora` derives from the loaded model, replayed on an Architecture.

Axolotl 0.19.0 (src/axolotl/loaders/adapter.py) builds part of PEFT's LoraConfig from the model
itself, so an Axolotl config only becomes a LoraConfig once the architecture is known:
- `lora_target_linear: true` -> `find_all_linear_names(model)`: the last name component of every
  module that is a torch Linear (bitsandbytes' Linear4bit/Linear8bitLt are subclasses) or whose
  class name contains "Linear" (LlamaLinearScalingRotaryEmbedding aside), minus the output
  embedding's name for the model type (`get_linear_embedding_layers`), unioned with
  `lora_target_modules` and passed to PEFT as a list of names;
- `task_type` from the model class name: SequenceClassification -> SEQ_CLS,
  TokenClassification -> TOKEN_CLS, else CAUSAL_LM; `bias` is always "none".
Pure data work (no torch), so catalog plans stay torch-free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loraplan.compiler.architecture import Architecture

if TYPE_CHECKING:
    from loraplan.schema.config import Config

# loaders/utils.py get_linear_embedding_layers: model_type -> (input, output) embedding names.
_EMBEDDINGS = {
    "gpt_neox": ("embed_in", "embed_out"),
    "falcon": ("word_embeddings", "lm_head"),
    "nemotron_h": ("embeddings", "lm_head"),
    "bailing_hybrid": ("word_embeddings", "lm_head"),
}
_NOT_LINEAR = ("LlamaLinearScalingRotaryEmbedding",)


def linear_names(arch: Architecture) -> list[str]:
    """Axolotl's `find_all_linear_names`: leaf names of the linear layers, output embedding removed."""
    names = set()
    for m in arch.modules:
        if m.kind == "linear" or ("Linear" in m.cls and m.cls not in _NOT_LINEAR):
            names.add(m.name.split(".")[-1])
    names.discard(_EMBEDDINGS.get(arch.model_type, ("embed_tokens", "lm_head"))[1])
    return sorted(names)


def task_type(model_class: str) -> str:
    """Axolotl's `_get_peft_task_type`: from the class name of the model it loaded."""
    if "SequenceClassification" in model_class:
        return "SEQ_CLS"
    if "TokenClassification" in model_class:
        return "TOKEN_CLS"
    return "CAUSAL_LM"


def expand(config: Config, arch: Architecture) -> Config:
    """The native Config with Axolotl's model-derived LoraConfig settings filled in."""
    if config.axolotl is None:
        return config
    update: dict = {"task_type": task_type(arch.model_class), "bias": "none"}
    if config.axolotl.target_linear:
        listed = config.lora.target_modules
        listed = listed if isinstance(listed, list) else [] if listed is None else [listed]
        update["target_modules"] = sorted(set(listed) | set(linear_names(arch)))
    return config.model_copy(update={"lora": config.lora.model_copy(update=update)})
