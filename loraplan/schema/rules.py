"""Cross-field rules: the mistakes PEFT, transformers and bitsandbytes only raise after the model
is loaded (or never raise at all). Each rule returns located Diagnostics; all are collected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from loraplan.schema.config import Config
from loraplan.schema.diagnostic import Diagnostic
from loraplan.schema.yaml_source import SourceDoc

Rule = Callable[[Config, SourceDoc], Iterator[Diagnostic]]
RULES: list[Rule] = []


def rule(fn: Rule) -> Rule:
    RULES.append(fn)
    return fn


def _d(doc: SourceDoc, path: tuple, code: str, severity: str, message: str, hint: str | None = None,
       key: bool = True) -> Diagnostic:
    span = doc.key_span(path) if key else doc.span(path)
    return Diagnostic(code, severity, message, hint=hint).at(span, doc.file)  # type: ignore[arg-type]


def _name(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def _set(doc: SourceDoc, path: tuple) -> bool:
    """Whether the user wrote this key (defaults do not trigger rules that blame a key)."""
    return tuple(path) in doc.keys


@rule
def qlora_needs_4bit(c: Config, doc: SourceDoc) -> Iterator[Diagnostic]:
    if c.adapter == "qlora" and not c.load_in_4bit:
        yield _d(doc, ("adapter",), "LP301", "error",
                 "adapter 'qlora' needs a 4-bit base, but quantization.load_in_4bit is not true",
                 hint="add `quantization: {load_in_4bit: true, bnb_4bit_quant_type: nf4}` or use `adapter: lora`")


@rule
def lora_on_quantized_base(c: Config, doc: SourceDoc) -> Iterator[Diagnostic]:
    if c.adapter == "lora" and c.load_in_4bit and _set(doc, ("adapter",)):
        yield _d(doc, ("adapter",), "LP311", "warning",
                 "adapter is 'lora' but the base is loaded in 4 bits: this is QLoRA",
                 hint="write `adapter: qlora` so the plan and the memory estimate say what will run")


@rule
def bits_exclusive(c: Config, doc: SourceDoc) -> Iterator[Diagnostic]:
    if c.load_in_4bit and c.load_in_8bit:
        yield _d(doc, ("quantization", "load_in_8bit"), "LP302", "error",
                 "load_in_4bit and load_in_8bit are both true; bitsandbytes loads one or the other",
                 hint="keep load_in_4bit for QLoRA, or load_in_8bit for 8-bit LoRA")


@rule
def unused_quant_options(c: Config, doc: SourceDoc) -> Iterator[Diagnostic]:
    q = c.quantization
    if q is None:
        return
    four = [k for k in ("bnb_4bit_quant_type", "bnb_4bit_use_double_quant", "bnb_4bit_compute_dtype",
                        "bnb_4bit_quant_storage") if _set(doc, ("quantization", k))]
    eight = [k for k in ("llm_int8_threshold", "llm_int8_has_fp16_weight") if _set(doc, ("quantization", k))]
    if not q.load_in_4bit:
        for k in four:
            yield _d(doc, ("quantization", k), "LP307", "warning",
                     f"{k} has no effect: load_in_4bit is not true", hint="remove it or set load_in_4bit: true")
    if not q.load_in_8bit:
        for k in eight:
            yield _d(doc, ("quantization", k), "LP307", "warning",
                     f"{k} has no effect: load_in_8bit is not true", hint="remove it or set load_in_8bit: true")
    if not (q.load_in_4bit or q.load_in_8bit) and _set(doc, ("quantization",)):
        yield _d(doc, ("quantization",), "LP307", "warning",
                 "quantization block loads nothing quantised (neither load_in_4bit nor load_in_8bit is true)")


@rule
def compute_dtype(c: Config, doc: SourceDoc) -> Iterator[Diagnostic]:
    q = c.quantization
    if q is None or not q.load_in_4bit:
        return
    if not _set(doc, ("quantization", "bnb_4bit_compute_dtype")):
        yield _d(doc, ("quantization", "load_in_4bit"), "LP310", "warning",
                 "bnb_4bit_compute_dtype is not set: bitsandbytes computes 4-bit matmuls in float32, "
                 "several times slower than bfloat16",
                 hint=f"add `bnb_4bit_compute_dtype: {c.dtype}`")
    elif q.bnb_4bit_compute_dtype != c.dtype:
        yield _d(doc, ("quantization", "bnb_4bit_compute_dtype"), "LP310", "warning",
                 f"bnb_4bit_compute_dtype is {q.bnb_4bit_compute_dtype} but the model dtype is {c.dtype}: "
                 "every 4-bit matmul casts its input",
                 hint=f"use `bnb_4bit_compute_dtype: {c.dtype}`")


@rule
def layer_filter(c: Config, doc: SourceDoc) -> Iterator[Diagnostic]:
    lora = c.lora
    if lora.layers_pattern and lora.layers_to_transform is None:
        yield _d(doc, ("lora", "layers_pattern"), "LP303", "error",
                 "layers_pattern is set without layers_to_transform (PEFT refuses this)",
                 hint="add `layers_to_transform: [0, 1, ...]` or remove layers_pattern")
    if isinstance(lora.target_modules, str):
        # PEFT refuses any string here, 'all-linear' included (LoraConfig.__post_init__).
        linear = lora.target_modules == "all-linear"
        what = "'all-linear'" if linear else "a regex string"
        hint = ("list the module names instead of all-linear, e.g. [q_proj, k_proj, v_proj, o_proj]" if linear
                else "write target_modules as a list of names, or put the layer numbers in the regex")
        for key in ("layers_to_transform", "layers_pattern"):
            if getattr(lora, key) is not None:
                yield _d(doc, ("lora", key), "LP304", "error",
                         f"{key} cannot be used when target_modules is {what} (PEFT refuses this)", hint=hint)
    if isinstance(lora.layers_to_transform, list):
        seen = set()
        for i, idx in enumerate(lora.layers_to_transform):
            if idx in seen:
                yield _d(doc, ("lora", "layers_to_transform", i), "LP313", "warning",
                         f"layer {idx} is listed twice in layers_to_transform", key=False)
            seen.add(idx)
        if not lora.layers_to_transform:
            yield _d(doc, ("lora", "layers_to_transform"), "LP313", "error",
                     "layers_to_transform is an empty list: no layer would be adapted")


@rule
def target_parameters_rules(c: Config, doc: SourceDoc) -> Iterator[Diagnostic]:
    lora = c.lora
    if not lora.target_parameters:
        return
    if lora.lora_dropout != 0:
        yield _d(doc, ("lora", "lora_dropout"), "LP305", "error",
                 f"lora_dropout is {lora.lora_dropout} but target_parameters is set: PEFT's parameter adapters "
                 "do not support dropout", hint="set `lora_dropout: 0`")
    if lora.use_dora:
        yield _d(doc, ("lora", "use_dora"), "LP306", "error",
                 "DoRA is not supported with target_parameters", hint="set `use_dora: false`")
    for key in ("fan_in_fan_out", "lora_bias"):
        if getattr(lora, key):
            yield _d(doc, ("lora", key), "LP315", "error",
                     f"{key} is not supported with target_parameters (PEFT's parameter adapters refuse it)",
                     hint=f"set `{key}: false`")


@rule
def dora_rules(c: Config, doc: SourceDoc) -> Iterator[Diagnostic]:
    lora = c.lora
    if lora.use_dora and lora.lora_bias:
        yield _d(doc, ("lora", "lora_bias"), "LP306", "error",
                 "lora_bias is not supported with DoRA (PEFT refuses this)", hint="set `lora_bias: false`")
    if lora.use_dora and lora.init_lora_weights == "mica":
        yield _d(doc, ("lora", "init_lora_weights"), "LP306", "error",
                 "MiCA init is a LoRA variant of its own and cannot be combined with DoRA")


@rule
def init_rules(c: Config, doc: SourceDoc) -> Iterator[Diagnostic]:
    lora = c.lora
    init = lora.init_lora_weights
    if init == "loftq" and not lora.loftq_config:
        yield _d(doc, ("lora", "init_lora_weights"), "LP309", "error",
                 "init_lora_weights 'loftq' needs loftq_config (PEFT refuses it without)",
                 hint="add `loftq_config: {loftq_bits: 4, loftq_iter: 1}`")
    if lora.loftq_config and init != "loftq":
        yield _d(doc, ("lora", "loftq_config"), "LP307", "warning",
                 "loftq_config is ignored unless init_lora_weights is 'loftq'")
    if init == "loftq" and c.load_in_4bit:
        yield _d(doc, ("lora", "init_lora_weights"), "LP309", "warning",
                 "LoftQ initialises from the full-precision weights; load the base unquantised and let LoftQ "
                 "quantise it, not with load_in_4bit")
    if init == "orthogonal":
        # odd rank_pattern values: the compiler, on the layers they reach (Embedding ignores the init)
        odd = [(("lora", "r"), lora.r)] if lora.r % 2 else []
        for path, value in odd:
            yield _d(doc, path, "LP316", "error",
                     f"orthogonal init needs an even rank, but {_name(path)} is {value} (PEFT refuses odd ranks)",
                     hint=f"use rank {value + 1} or {value - 1}" if value > 1 else f"use rank {value + 1}",
                     key=False)
    if isinstance(init, str) and (init.startswith("pissa") or init in ("corda", "mica")) and (
        c.load_in_4bit or c.load_in_8bit
    ):
        yield _d(doc, ("lora", "init_lora_weights"), "LP317", "error",
                 f"init_lora_weights '{init}' decomposes the full-precision base weights; PEFT refuses it on a "
                 "quantized (bitsandbytes) base",
                 hint="initialise on the unquantised model, then quantise the residual model (see PEFT's PiSSA "
                      "docs), or use the default init")
    if lora.lora_bias and init not in (True, False):
        yield _d(doc, ("lora", "lora_bias"), "LP314", "error",
                 f"lora_bias needs init_lora_weights true or false, not {init!r} (PEFT refuses this)")
    if (
        lora.use_rslora
        and (lora.rank_pattern or lora.alpha_pattern)
        and isinstance(init, str)
        and (init.startswith("pissa") or init in ("olora", "corda"))
    ):
        yield _d(doc, ("lora", "use_rslora"), "LP307", "warning",
                 "rsLoRA with rank/alpha patterns and PiSSA/OLoRA/CorDA init: the converted adapter cannot be "
                 "restored with path_initial_model_for_weight_conversion")


@rule
def nothing_targeted(c: Config, doc: SourceDoc) -> Iterator[Diagnostic]:
    lora = c.lora
    if c.axolotl is not None and c.axolotl.target_linear:
        return  # Axolotl adds the model's linear layers to the list (expanded by the compiler)
    if isinstance(lora.target_modules, list) and not lora.target_modules and not lora.target_parameters:
        yield _d(doc, ("lora", "target_modules"), "LP308", "error",
                 "target_modules is an empty list and no target_parameters are given: nothing would be adapted",
                 hint="list module names, or write `target_modules: all-linear`")


def _looks_like_all_linear(text: str) -> bool:
    squeezed = "".join(ch for ch in text.lower() if ch.isalnum())
    return squeezed in ("alllinear", "alllinearlayers")


@rule
def all_linear_spelling(c: Config, doc: SourceDoc) -> Iterator[Diagnostic]:
    """LP215: PEFT's shorthand is exactly the string `all-linear` (any case); `all_linear` is a regex
    that matches a module literally named so, and a list item `all-linear` is a module name."""
    tm = c.lora.target_modules
    if isinstance(tm, str) and tm.lower() != "all-linear" and _looks_like_all_linear(tm):
        yield _d(doc, ("lora", "target_modules"), "LP215", "error",
                 f"target_modules '{tm}' is a regex matching a module named exactly '{tm}', not PEFT's shorthand",
                 hint="did you mean `all-linear`?", key=False)
    elif isinstance(tm, list):
        for i, item in enumerate(tm):
            if _looks_like_all_linear(item):
                yield _d(doc, ("lora", "target_modules", i), "LP215", "error",
                         f"'{item}' in a list is a module name; PEFT's shorthand is the string itself",
                         hint="write `target_modules: all-linear` (not in a list)", key=False)


@rule
def pattern_values(c: Config, doc: SourceDoc) -> Iterator[Diagnostic]:
    lora = c.lora
    for key in lora.rank_pattern:
        if key == "":
            yield _d(doc, ("lora", "rank_pattern", key), "LP312", "error", "rank_pattern has an empty key")
    for key in lora.alpha_pattern:
        if key == "":
            yield _d(doc, ("lora", "alpha_pattern", key), "LP312", "error", "alpha_pattern has an empty key")


@rule
def fsdp_storage(c: Config, doc: SourceDoc) -> Iterator[Diagnostic]:
    q = c.quantization
    written = q is not None and _set(doc, ("quantization", "bnb_4bit_quant_storage"))
    if written and c.distributed is None and q.load_in_4bit and q.bnb_4bit_quant_storage not in ("uint8", c.dtype):
        yield _d(doc, ("quantization", "bnb_4bit_quant_storage"), "LP310", "warning",
                 f"bnb_4bit_quant_storage {q.bnb_4bit_quant_storage} differs from the model dtype {c.dtype}: "
                 f"FSDP cannot flatten 4-bit and {c.dtype} parameters together",
                 hint=f"use `bnb_4bit_quant_storage: {c.dtype}` for FSDP")


from loraplan.schema import rules_peft  # noqa: E402, F401  (registers the LoraConfig option rules)


def check(config: Config, doc: SourceDoc) -> list[Diagnostic]:
    """Run every cross-field rule; findings are collected, never first-only."""
    out: list[Diagnostic] = []
    for fn in RULES:
        out.extend(fn(config, doc))
    return out


# The rules of `distributed:` register themselves here (they import `rule` from this module).
from loraplan.schema import rules_distributed as _rules_distributed  # noqa: E402,F401
