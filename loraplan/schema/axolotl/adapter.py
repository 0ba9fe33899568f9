"""Axolotl's flat adapter keys -> the native `lora:` block (PEFT LoraConfig names).

Semantics follow Axolotl's own LoraConfig construction (src/axolotl/loaders/adapter.py,
`_build_peft_lora_config` and `_build_lora_config_kwargs`):
- `lora_target_linear: true` adds the leaf names of every linear layer (except the output
  embedding) to `lora_target_modules` (a union): an intent the compiler expands against the
  architecture (`axolotl.target_linear`); without any target Axolotl passes `target_modules=[]`;
- `lora_modules_to_save`, `peft_use_dora`, `peft_use_rslora`, `peft_init_lora_weights` and the
  rank/alpha patterns are passed only when truthy; `lora_exclude_modules` is read there too, but
  0.19.0's schema drops the key first, so it never reaches PEFT (refusals.py says so);
- `peft.loftq_config.loftq_bits` sets LoftQ init (`init_lora_weights: loftq`) with PEFT's
  `LoftQConfig(loftq_bits=N)`, whose loftq_iter defaults to 1; a truthy
  `peft_init_lora_weights` then overrides the init.
"""

from __future__ import annotations

from loraplan.schema.axolotl.keys import LOFTQ_KEYS, PEFT_BLOCK_KEYS
from loraplan.schema.axolotl.tree import Tree
from loraplan.schema.axolotl.values import lax_bool, lax_float, lax_int, lax_int_list
from loraplan.schema.pydantic_errors import suggest

# Axolotl key -> (native lora field, coercion); passed only when the value is set.
_DIRECT = {
    "lora_dropout": ("lora_dropout", lax_float),
    "peft_layers_to_transform": ("layers_to_transform", lax_int_list),
    "peft_layers_pattern": ("layers_pattern", None),
    "lora_fan_in_fan_out": ("fan_in_fan_out", lax_bool),
}
# Passed only when truthy (adapter.py: `if cfg.X: kwargs[...] = cfg.X`).
_TRUTHY = {
    "peft_use_dora": ("use_dora", lax_bool),
    "peft_use_rslora": ("use_rslora", lax_bool),
    "lora_rank_pattern": ("rank_pattern", None),
    "lora_alpha_pattern": ("alpha_pattern", None),
    "lora_modules_to_save": ("modules_to_save", None),
}
# Adapter keys that change what is trained but have no native counterpart.
_NOT_MODELLED = {
    "peft_layer_replication": "layer replication (extra, shared decoder layers)",
    "peft_trainable_token_indices": "trainable token indices (extra embedding rows)",
}


def translate_lora(t: Tree) -> None:
    t.data.setdefault("lora", {})
    _rank_and_alpha(t)
    for key, (field, coerce) in _DIRECT.items():
        if t.given(key):
            t.put(("lora", field), coerce(t.raw(key)) if coerce else t.raw(key), (key,), key)
    for key, (field, coerce) in _TRUTHY.items():
        value = coerce(t.raw(key)) if coerce else t.raw(key)
        if value:
            t.put(("lora", field), value, (key,), key)
    _targets(t)
    if t.given("lora_target_parameters"):
        t.put(("lora", "target_parameters"), t.raw("lora_target_parameters"), ("lora_target_parameters",),
              "lora_target_parameters")
    _peft_block(t)
    _init(t)
    _not_modelled(t)


def _rank_and_alpha(t: Tree) -> None:
    for key, field, coerce in (("lora_r", "r", lax_int), ("lora_alpha", "lora_alpha", lax_float)):
        if t.given(key):
            t.put(("lora", field), coerce(t.raw(key)), (key,), key)
        else:
            # PEFT fails on r=None (`r <= 0`) and lora_alpha=None (`alpha / r`) at injection.
            t.report("LP202", "error",
                     f"missing '{key}': Axolotl passes {field}=None to PEFT's LoraConfig, which fails "
                     "when the adapter is injected", ("adapter",), hint=f"add `{key}: 16`")


def _targets(t: Tree) -> None:
    modules = t.raw("lora_target_modules")
    if lax_bool(t.raw("lora_target_linear")) is True:
        # load_lora: list(set(lora_target_modules as a list + find_all_linear_names(model))); the
        # compiler adds the linear-layer names from the architecture (compiler/axolotl.py).
        t.put(("axolotl", "target_linear"), True, ("lora_target_linear",), "lora_target_linear")
        listed = modules if isinstance(modules, list) else [] if modules is None else [modules]
        src = "lora_target_modules" if modules is not None else "lora_target_linear"
        t.put(("lora", "target_modules"), listed, (src,), src)
        if isinstance(modules, str):
            t.report("LP406", "warning",
                     "with lora_target_linear, Axolotl wraps the string lora_target_modules in a list, so PEFT "
                     "matches it as a module name, not as a regular expression", ("lora_target_modules",),
                     hint="write lora_target_modules as a list of names")
    elif modules is not None:
        t.put(("lora", "target_modules"), modules, ("lora_target_modules",), "lora_target_modules")
    else:
        # Axolotl passes `cfg.lora_target_modules or []`: an empty list, never PEFT's default.
        t.put(("lora", "target_modules"), [], ("adapter",), "lora_target_modules")


def _peft_block(t: Tree) -> None:
    peft = t.raw("peft")
    if not isinstance(peft, dict):
        return
    for key in peft:
        if key not in PEFT_BLOCK_KEYS:
            guess = suggest(str(key), sorted(PEFT_BLOCK_KEYS))
            t.report("LP401", "error", f"unknown key 'peft.{key}': Axolotl's peft block ignores it",
                     ("peft", key), hint=f"did you mean 'peft.{guess}'?" if guess else
                     f"known keys: {', '.join(sorted(PEFT_BLOCK_KEYS))}")
    loftq = peft.get("loftq_config")
    if not isinstance(loftq, dict):
        return
    for key in loftq:
        if key not in LOFTQ_KEYS:
            t.report("LP401", "warning",
                     f"'peft.loftq_config.{key}' is ignored: Axolotl's LoftQ settings read only loftq_bits",
                     ("peft", "loftq_config", key))
    # LoftQConfig's loftq_bits defaults to 4 when the block is given without it.
    bits = lax_int(4 if loftq.get("loftq_bits") is None else loftq["loftq_bits"])
    if bits:
        src = ("peft", "loftq_config")
        # LoftQConfig(loftq_bits=bits): PEFT's dataclass fills loftq_iter=1, and PEFT's LoftQ init reads both
        t.put(("lora", "loftq_config"), {"loftq_bits": bits, "loftq_iter": 1}, src, "peft.loftq_config")
        t.put(("lora", "init_lora_weights"), "loftq", src, "peft.loftq_config")


def _init(t: Tree) -> None:
    value = t.raw("peft_init_lora_weights")
    if value is False:
        t.report("LP307", "warning",
                 "peft_init_lora_weights: false has no effect: Axolotl passes it to PEFT only when it is "
                 "truthy, so the adapter starts from PEFT's default init (B = 0)", ("peft_init_lora_weights",),
                 hint="remove it, or name an init such as gaussian or pissa")
    elif value:
        t.put(("lora", "init_lora_weights"), value, ("peft_init_lora_weights",), "peft_init_lora_weights")


def _not_modelled(t: Tree) -> None:
    for key, what in _NOT_MODELLED.items():
        if t.raw(key):
            t.report("LP402", "info", f"{key}: loraplan does not plan {what}; the plan leaves it out", (key,))
    if t.given("lora_model_dir"):
        t.report("LP402", "info",
                 "lora_model_dir loads an existing adapter: its saved adapter_config.json, not these keys, "
                 "decides the targets, ranks and alphas Axolotl trains", ("lora_model_dir",),
                 hint="plan the saved adapter_config.json's settings to check what will be trained")
