"""Axolotl precision and quantisation keys -> native `dtype` and `quantization:`.

Where each rule comes from in Axolotl:
- dtype: `resolve_dtype` (src/axolotl/utils/config/__init__.py): `bf16: auto` (the schema
  default) becomes true on a bf16-capable GPU; then bf16/bfloat16 -> bfloat16, else
  load_in_8bit/fp16/float16 -> float16, else float32. It overwrites `cfg.torch_dtype`.
- QLoRA: `ModelLoader._set_quantization_config` (src/axolotl/loaders/model.py) builds the
  BitsAndBytesConfig only for `adapter: qlora` with `load_in_4bit`: nf4, double quantisation,
  compute dtype = the model dtype, quant storage bfloat16 (float32 for jamba/qwen2_moe without
  DeepSpeed/FSDP), then `bnb_config_kwargs` on top; for `adapter: lora` with `load_in_8bit` it
  builds `load_in_8bit=True` and nothing else.
- `peft: {backend: bnb, weight_dtype: nf4|int8}` (schemas/peft.py `auto_detect_qlora`) and
  `model_quantization_config: {bnb: {weight_dtype: ...}}` (schemas/model.py) are shorthands:
  nf4 promotes `adapter: lora` to qlora and defaults load_in_4bit on; int8 defaults load_in_8bit on.
"""

from __future__ import annotations

from loraplan.schema.axolotl.tree import Tree
from loraplan.schema.axolotl.values import lax_bool, native_dtype

# Axolotl's QLoRA BitsAndBytesConfig defaults (loaders/model.py `_set_quantization_config`).
QLORA_DEFAULTS = {
    "bnb_4bit_quant_type": "nf4",
    "bnb_4bit_use_double_quant": True,
    "bnb_4bit_quant_storage": "bfloat16",
}
_DTYPE_KEYS = ("bnb_4bit_compute_dtype", "bnb_4bit_quant_storage")


def translate_dtype(t: Tree) -> str:
    bf16 = t.raw("bf16", "auto")
    bf16 = bf16 if bf16 == "auto" else lax_bool(bf16)
    flags = {k: lax_bool(t.raw(k)) is True for k in ("bfloat16", "fp16", "float16", "load_in_8bit")}
    if bf16 is True or bf16 == "auto" or flags["bfloat16"]:
        # bf16: auto is taken as a bf16-capable GPU (Ampere or newer); older GPUs get float16.
        dtype = "bfloat16"
        src = "bf16" if t.given("bf16") and bf16 else ("bfloat16" if flags["bfloat16"] else None)
    elif flags["fp16"] or flags["float16"] or flags["load_in_8bit"]:
        dtype = "float16"
        src = next(k for k in ("fp16", "float16", "load_in_8bit") if flags[k])
    else:
        dtype, src = "float32", "bf16"
    if src is None:
        t.data["dtype"] = dtype
    else:
        t.put(("dtype",), dtype, (src,), src)
    torch_dtype = t.raw("torch_dtype")
    if torch_dtype is not None and native_dtype(torch_dtype) != dtype:
        t.report("LP307", "warning",
                 f"torch_dtype is ignored: Axolotl sets the model dtype from bf16/fp16 ({dtype} here) and "
                 "overwrites torch_dtype", ("torch_dtype",),
                 hint="set bf16 / fp16 / float16 instead, and remove torch_dtype")
    return dtype


def promote_adapter(t: Tree, adapter: str) -> tuple[str, dict[str, bool]]:
    """Apply the nf4/int8 shorthands; returns the adapter and the effective load_in_* flags."""
    flags = {k: lax_bool(t.raw(k)) is True for k in ("load_in_4bit", "load_in_8bit")}
    for src, block in _shorthands(t):
        weight = block.get("weight_dtype")
        if block.get("backend", "bnb") != "bnb":
            t.report("LP402", "info",
                     f"{block.get('backend')} quantisation of the base is not modelled: loraplan plans LoRA on "
                     "an unquantised base", src)
            return "lora", flags
        if weight == "nf4":
            adapter = "qlora" if adapter == "lora" else adapter
            if "load_in_4bit" not in t.src.data:  # Axolotl uses data.setdefault(...)
                flags["load_in_4bit"] = True
        elif weight == "int8" and "load_in_8bit" not in t.src.data:
            flags["load_in_8bit"] = True
    return adapter, flags


def _shorthands(t: Tree) -> list[tuple[tuple, dict]]:
    """None in Axolotl 0.19.0: its PeftConfig drops peft.backend/weight_dtype (refusals.py says so), and its
    model_quantization_config is only the name Mxfp4Config or FineGrainedFP8Config (a mapping is refused)."""
    mqc = t.raw("model_quantization_config")
    if mqc is not None and mqc not in ("Mxfp4Config", "FineGrainedFP8Config"):
        t.report("LP409", "error", "Axolotl 0.19.0 refuses this config: model_quantization_config must be "
                 "'Mxfp4Config' or 'FineGrainedFP8Config'", ("model_quantization_config",), on_value=True,
                 hint="for bitsandbytes write `load_in_4bit: true` with `adapter: qlora` (or load_in_8bit)")
    return []


def translate_quantization(t: Tree, adapter: str, dtype: str, flags: dict[str, bool]) -> None:
    four, eight = flags["load_in_4bit"], flags["load_in_8bit"]
    qlora = adapter == "qlora" and four
    if qlora:
        src4 = ("load_in_4bit",) if t.given("load_in_4bit") else ("adapter",)
        t.put(("quantization", "load_in_4bit"), True, src4, src4[0])
        for key, value in QLORA_DEFAULTS.items():
            t.put(("quantization", key), value, src4, src4[0], register_key=key != "bnb_4bit_quant_storage")
        t.put(("quantization", "bnb_4bit_compute_dtype"), dtype, src4, src4[0])
        _bnb_kwargs(t)
    elif adapter == "lora" and four:
        t.report("LP404", "warning",
                 f"load_in_4bit has no effect with adapter: lora: Axolotl builds its 4-bit BitsAndBytesConfig "
                 f"only for adapter: qlora, so the base loads unquantised in {dtype}", ("load_in_4bit",),
                 hint="write `adapter: qlora` for QLoRA, or remove load_in_4bit")
    if eight:
        src8 = ("load_in_8bit",) if t.given("load_in_8bit") else ("adapter",)
        t.put(("quantization", "load_in_8bit"), True, src8, src8[0])
    if t.given("bnb_config_kwargs") and not qlora:
        t.report("LP307", "warning",
                 "bnb_config_kwargs has no effect: Axolotl applies it only with adapter: qlora and "
                 "load_in_4bit: true", ("bnb_config_kwargs",))
    _gptq(t, adapter)
    _moe_experts(t, four or eight)
    _base_quantization(t, dtype)


def _moe_experts(t: Tree, quantized: bool) -> None:
    """schemas/config.py `check_quantize_moe_experts` refuses these two combinations; otherwise the
    memory estimate quantises the fused experts as Axolotl does (compiler/axolotl.py)."""
    if lax_bool(t.raw("quantize_moe_experts")) is not True:
        return
    t.put(("axolotl", "quantize_moe_experts"), True, ("quantize_moe_experts",), "quantize_moe_experts")
    if lax_bool(t.raw("lora_target_linear")) is True:
        t.report("LP404", "error", "quantize_moe_experts cannot be combined with lora_target_linear (Axolotl "
                 "refuses it)", ("quantize_moe_experts",),
                 hint="target the experts with lora_target_parameters and list the other modules")
    if not quantized:
        t.report("LP404", "error", "quantize_moe_experts needs load_in_4bit or load_in_8bit (Axolotl refuses "
                 "it otherwise)", ("quantize_moe_experts",))


def _bnb_kwargs(t: Tree) -> None:
    kwargs = t.raw("bnb_config_kwargs")
    if kwargs is None:
        return
    if not isinstance(kwargs, dict):
        t.report("LP203", "error", "'bnb_config_kwargs' should be a mapping of BitsAndBytesConfig arguments",
                 ("bnb_config_kwargs",), on_value=True)
        return
    for key, value in kwargs.items():
        if key in _DTYPE_KEYS and native_dtype(value):
            value = native_dtype(value)
        elif str(key).startswith(("load_in_", "bnb_4bit_use", "llm_int8_enable", "llm_int8_has")):
            value = lax_bool(value)
        t.put(("quantization", key), value, ("bnb_config_kwargs", key), f"bnb_config_kwargs.{key}")


def _gptq(t: Tree, adapter: str) -> None:
    if lax_bool(t.raw("gptq")) is not True:
        return
    if adapter == "qlora":
        t.report("LP404", "error", "gptq: true cannot be combined with adapter: qlora (Axolotl refuses: "
                 "\"Can't load qlora if gptq\")", ("gptq",), hint="use `adapter: lora` on a GPTQ model")
    else:
        t.report("LP402", "info", "gptq: the base weights are GPTQ-quantised; loraplan plans the adapter but "
                 "its memory estimate assumes an unquantised base", ("gptq",))


def _base_quantization(t: Tree, dtype: str) -> None:
    mqc = t.raw("model_quantization_config")
    if isinstance(mqc, str):
        kwargs = t.raw("model_quantization_config_kwargs") or {}
        if isinstance(kwargs, dict) and lax_bool(kwargs.get("dequantize")) is True:
            return  # the weights are dequantised to the model dtype on load
        what = mqc
    else:
        return
    t.report("LP402", "info", f"model_quantization_config {what}: the base stays quantised; loraplan plans the "
             f"adapter but its memory estimate assumes a {dtype} base", ("model_quantization_config",))
