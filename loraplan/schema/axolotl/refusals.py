"""Where Axolotl 0.19.0's own config validation stops, for causes in loraplan's domain.

Each check mirrors one of Axolotl's validators (src/axolotl/utils/schemas/: peft.py
`validate_qlora`, validation.py `check_lora_kernels_8bit` / `check_lora_kernels_trust_remote_code`,
config.py `check_relora`, deprecated.py's removed keys); the message quotes Axolotl's own, so a
CI user learns before a GPU hour what Axolotl would say. Keys that 0.19.0's schema silently drops
are reported too: Axolotl ignores them, so the plan does not apply them.
"""

from __future__ import annotations

from loraplan.schema.axolotl.keys import DROPPED_KEYS, PEFT_BLOCK_DROPPED, REMOVED_KEYS
from loraplan.schema.axolotl.tree import Tree
from loraplan.schema.axolotl.values import lax_bool

VERSION = "0.19.0"
_KERNELS = ("lora_mlp_kernel", "lora_qkv_kernel", "lora_o_kernel")


def _on(t: Tree, key: str) -> bool:
    return lax_bool(t.raw(key)) is True


def _stop(t: Tree, key: str, why: str, hint: str | None = None) -> None:
    t.report("LP409", "error", f"Axolotl {VERSION} refuses this config: \"{why}\"", (key,), hint=hint)


def check_refusals(t: Tree) -> None:
    _removed(t)
    _merge_and_quantisation(t)
    _kernels(t)
    _relora(t)
    _dropped(t)


def _removed(t: Tree) -> None:
    for key, (when_set, why) in REMOVED_KEYS.items():
        value = t.src.data.get(key)
        if value is not None and (when_set or value):
            _stop(t, key, why, hint=f"remove `{key}`")


def _merge_and_quantisation(t: Tree) -> None:
    """peft.py LoraConfig.validate_qlora."""
    if t.raw("adapter") != "qlora":
        return
    if _on(t, "merge_lora"):
        for key, why in (("load_in_8bit", "Can't merge qlora if loaded in 8bit"), ("gptq", "Can't merge qlora if gptq"),
                         ("load_in_4bit", "Can't merge qlora if loaded in 4bit")):
            if _on(t, key):
                _stop(t, "merge_lora", why, hint=f"merge with `{key}: false` (the base loads unquantised to merge)")
                return
    elif _on(t, "load_in_8bit") and not _on(t, "load_in_4bit"):  # both on: LP302 says so
        _stop(t, "load_in_8bit", "Can't load qlora in 8bit", hint="use `adapter: lora` with load_in_8bit")


def _kernels(t: Tree) -> None:
    """validation.py: the LoRA kernels refuse 8-bit LoRA and remote code (when set by the user)."""
    on = [k for k in _KERNELS if _on(t, k)]
    if not on:
        return
    if t.raw("adapter") == "lora" and _on(t, "load_in_8bit"):
        _stop(t, on[0], "lora_mlp_kernel, lora_qkv_kernel, and lora_o_kernel are not compatible with 8-bit LoRA "
              "a the moment.", hint="set the lora_*_kernel keys to false, or drop load_in_8bit")
    if _on(t, "trust_remote_code"):
        _stop(t, on[0], "lora_mlp_kernel, lora_qkv_kernel, and lora_o_kernel are not compatible with "
              "trust_remote_code. Please disable trust_remote_code or explicitly set lora_*_kernel to false.")


def _relora(t: Tree) -> None:
    """config.py check_relora."""
    if not _on(t, "relora"):
        return
    if not t.raw("jagged_restart_steps"):
        _stop(t, "relora", "jagged_restart_steps must be set to use ReLoRA",
              hint="add `jagged_restart_steps: 150` (relora_steps is the name of older releases)"
              if t.given("relora_steps") else "add `jagged_restart_steps:`")
    if t.raw("fsdp") or t.raw("fsdp_config"):
        _stop(t, "relora", "fsdp not supported with ReLoRA")
    if t.raw("deepspeed"):
        _stop(t, "relora", "deepspeed not supported with ReLoRA")
    if t.raw("lr_scheduler") == "one_cycle":
        _stop(t, "relora", "ReLoRA is not compatible with the one_cycle scheduler")


def _dropped(t: Tree) -> None:
    for key, what in DROPPED_KEYS.items():
        if t.given(key):
            severity = "warning" if key == "lora_exclude_modules" else "info"
            t.report("LP410", severity, f"Axolotl {VERSION} ignores this key: its schema drops `{key}`, so {what}",
                     (key,), hint=f"remove `{key}`")
    peft = t.raw("peft")
    if isinstance(peft, dict):
        for key in [k for k in peft if k in PEFT_BLOCK_DROPPED]:  # in the file's order
            t.report("LP410", "warning", f"Axolotl {VERSION} ignores this key: its `peft:` block keeps only "
                     f"loftq_config, so `peft.{key}` has no effect", ("peft", key), hint=f"remove `peft.{key}`")
