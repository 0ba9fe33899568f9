"""Axolotl model and training keys -> native `base_model`, `architecture`, `model_class`, `training:`.

- `base_model_config` names where the model config lives when `base_model` has none: it is the
  native `architecture` override.
- `model_type` is the transformers class Axolotl loads with, except that `AutoModelForCausalLM`,
  `trust_remote_code` or `gptq` make it use the auto loader (loaders/model.py `_build_model`); an
  `Auto*` class builds the config's own architecture, which is the native default, except the
  classification ones, which build `<Model>For{Sequence,Token}Classification` (task type SEQ_CLS /
  TOKEN_CLS in load_lora).
- Training defaults are Axolotl's schema defaults: sequence_len 512, micro_batch_size 1,
  gradient_accumulation_steps 1 (or batch_size // micro_batch_size), optimizer adamw_torch_fused.
"""

from __future__ import annotations

from loraplan.schema.axolotl.tree import Tree
from loraplan.schema.axolotl.values import (
    DEFAULT_OPTIMIZER,
    LEGACY_ATTN_FLAGS,
    OPTIMIZERS,
    lax_bool,
    lax_int,
    native_attn,
)

# Auto classes that change the model (and so the task type): Axolotl loads with them as named.
_TASK_AUTO_CLASSES = ("AutoModelForSequenceClassification", "AutoModelForTokenClassification")


def translate_model(t: Tree) -> None:
    if t.given("base_model"):
        t.put(("base_model",), t.raw("base_model"), ("base_model",), "base_model")
    if t.given("base_model_config"):
        t.put(("architecture",), t.raw("base_model_config"), ("base_model_config",), "base_model_config")
    if t.given("revision_of_model"):  # Axolotl passes it as `revision=` to from_pretrained
        t.put(("base_model_revision",), t.raw("revision_of_model"), ("revision_of_model",), "revision_of_model")
    key = "model_type" if t.given("model_type") else "type_of_model"
    model_type = t.raw(key)
    if (
        isinstance(model_type, str)
        and (not model_type.startswith("Auto") or model_type in _TASK_AUTO_CLASSES)
        and lax_bool(t.raw("trust_remote_code")) is not True
        and lax_bool(t.raw("gptq")) is not True
    ):
        t.put(("model_class",), model_type, (key,), key)
    if lax_bool(t.raw("trust_remote_code")) is True:  # the compiler checks the config's auto_map
        t.put(("axolotl", "trust_remote_code"), True, ("trust_remote_code",), "trust_remote_code")
    linearized = lax_bool(t.raw("llama4_linearized_experts"))
    if linearized is True:  # Axolotl patches Llama4TextExperts into nn.Linear
        t.put(("architecture_variant",), "axolotl-llama4-linearized-experts", ("llama4_linearized_experts",),
              "llama4_linearized_experts")
    elif linearized is not None and linearized is not False:  # Axolotl's schema: Optional[bool]
        t.report("LP203", "error", f"llama4_linearized_experts must be true or false, not {linearized!r}",
                 ("llama4_linearized_experts",), hint="`llama4_linearized_experts: true` (or remove the key)",
                 on_value=True)


def translate_training(t: Tree) -> None:
    seq = lax_int(t.raw("sequence_len", 512))
    mbs = lax_int(t.raw("micro_batch_size", 1))
    _put(t, "sequence_len", seq)
    _put(t, "micro_batch_size", mbs)
    if t.given("gradient_accumulation_steps"):
        _put(t, "gradient_accumulation_steps", lax_int(t.raw("gradient_accumulation_steps")))
    else:
        # Axolotl: gradient_accumulation_steps = gradient_accumulation_steps or batch_size // micro_batch_size
        batch = lax_int(t.raw("batch_size"))
        if _is_int(batch) and _is_int(mbs) and mbs > 0:
            t.put(("training", "gradient_accumulation_steps"), batch // mbs, ("batch_size",), "batch_size")
    gc = t.raw("gradient_checkpointing")
    if gc is not None:
        # true, or "offload" / "offload_disk" (checkpointing with the saved activations offloaded)
        value = True if gc in ("offload", "offload_disk") else lax_bool(gc)
        t.put(("training", "gradient_checkpointing"), value, ("gradient_checkpointing",), "gradient_checkpointing")
    if t.given("torch_compile"):
        t.put(("training", "torch_compile"), lax_bool(t.raw("torch_compile")), ("torch_compile",), "torch_compile")
    _optimizer(t)
    _attention(t)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _put(t: Tree, key: str, value: object) -> None:
    if t.given(key):
        t.put(("training", key), value, (key,), key)
    else:
        t.data.setdefault("training", {})[key] = value


def _optimizer(t: Tree) -> None:
    name = t.raw("optimizer")
    if name is None:
        t.data.setdefault("training", {})["optimizer"] = DEFAULT_OPTIMIZER
    elif isinstance(name, str) and name not in OPTIMIZERS:
        t.data.setdefault("training", {})["optimizer"] = DEFAULT_OPTIMIZER
        t.report("LP402", "info",
                 f"optimizer '{name}' has no loraplan equivalent: the memory estimate assumes "
                 f"{DEFAULT_OPTIMIZER} (two 32-bit states per trainable parameter)", ("optimizer",), on_value=True)
    else:
        value = OPTIMIZERS.get(name, name) if isinstance(name, str) else name
        t.put(("training", "optimizer"), value, ("optimizer",), "optimizer")


def _attention(t: Tree) -> None:
    impl_key = "attn_implementation"
    flags = [f for f in LEGACY_ATTN_FLAGS if lax_bool(t.raw(f)) is True]
    if t.given(impl_key) and flags:
        for flag in flags:
            t.report("LP404", "error",
                     f"{flag} cannot be combined with attn_implementation (Axolotl refuses the legacy flags "
                     "next to attn_implementation)", (flag,), hint=f"remove {flag}")
    if t.given(impl_key):
        src, impl = impl_key, t.raw(impl_key)
    elif flags:
        src, impl = flags[0], LEGACY_ATTN_FLAGS[flags[0]]
    elif lax_bool(t.raw("gemma4_hybrid_attn_impl")) is True:
        src, impl = "gemma4_hybrid_attn_impl", "flash_attention_2"  # Axolotl's default for it
    else:
        return
    native = native_attn(impl) if isinstance(impl, str) else impl
    if native is None:
        t.report("LP402", "info",
                 f"attention '{impl}' has no loraplan equivalent: the memory estimate treats it as sdpa "
                 "(no full attention matrix)", (src,), on_value=True)
        return
    t.put(("training", "attn_implementation"), native, (src,), src)
